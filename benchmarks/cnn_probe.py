"""One CNN training probe in a plain loop (no Spark): train the recipe with some settings changed,
then score the 20 % hold-out with the BatchNorm statistics as trained and again with them recomputed
over all the training images (a cumulative average, no augmentation).

    .venv/bin/python benchmarks/cnn_probe.py DATA --tag NAME [--epochs E] [--param NAME=VALUE ...]
                                                   [--micro-batch N]

DATA is a folder holding cifar-10-batches-py; the split is `sparkvision run`'s (seed 42, 20 %),
exported once to a Parquet folder beside the work files (``--split``, default /tmp/cnn-probe-split).
Unset values are this CPU's preset, as `sparkvision run` takes them; ``--param`` takes the run's
Params (``precision=float32``, ``widths=64,256,256``, ``batchSize=2000`` ...), and ``--micro-batch``
the images per forward pass in the process (``training.CPU_MICRO_BATCH``, 128 by default). The
training runs in this process with 2 threads, so its time is the plain loop's, not a Spark run's.

Printed: the CPU model, the settings, the training curve, and one JSON line: training seconds and
hold-out accuracy with and without test-time augmentation, before and after the recomputation.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cnn as bench  # noqa: E402  (this folder's end-to-end benchmark: its split and --param reading)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--tag", required=True, help="names the probe's work folder and its JSON line")
    parser.add_argument("--epochs", type=float, default=None)
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--micro-batch", type=int, default=None)
    parser.add_argument("--split", type=Path, default=Path("/tmp/cnn-probe-split"))
    args = parser.parse_args()

    import torch
    from safetensors.torch import load_file

    from sparkvision.models.cnn import training as T
    from sparkvision.models.cnn.network import Network, normalise, predict_logits
    from sparkvision.models.cnn.settings import CNN_DEFAULTS, preset_name, resolve_precision, with_preset

    print("CPU:", bench.cpu_model(), flush=True)
    if not (args.split / "test").is_dir():
        bench.export_split(args.data, args.split.with_name(args.split.name + "-work"), args.split)
    params = bench.parse_params(args.param)
    precision = resolve_precision(params.pop("precision", "auto"), False)
    given = {**params, **({"epochs": args.epochs} if args.epochs else {})}
    values = with_preset({**CNN_DEFAULTS, **given}, preset_name(precision, False), set(given))
    settings = T.TrainSettings.from_params(values, precision=precision, num_classes=10, seed=42, threads=2,
                                           use_gpu=False)
    if args.micro_batch is not None:
        settings.micro_batch = args.micro_batch
    print(settings, flush=True)

    run = args.split.with_name(f"cnn-probe-{args.tag}")
    shutil.rmtree(run, ignore_errors=True)  # a checkpoint left there would be resumed from
    train_file = str(next((args.split / "train").glob("part-*.parquet")))
    test_file = str(next((args.split / "test").glob("part-*.parquet")))
    job = T.TrainJob([train_file], (32, 32, 3), str(run / "ckpt"), str(run / "weights.safetensors"),
                     settings.to_json(), progress=True)
    t0 = time.perf_counter()
    T.train(json.dumps(job.__dict__))
    train_s = time.perf_counter() - t0

    net = Network(tuple(settings.widths))
    net.load_state_dict(load_file(str(run / "weights.safetensors")))
    net = net.to(memory_format=torch.channels_last)
    images, labels = T.read_shard(test_file, (32, 32, 3))
    held_out = normalise(images).contiguous(memory_format=torch.channels_last)
    dtype = T.precision_dtype(settings.precision)

    def accuracy(tta: bool) -> float:
        return round(float((predict_logits(net, held_out, tta=tta, dtype=dtype).argmax(1) == labels).float().mean()), 4)

    result = {"tag": args.tag, "train_s": round(train_s, 1), "accuracy_tta": accuracy(True),
              "accuracy_no_tta": accuracy(False)}
    # BatchNorm's running statistics recomputed: reset, then a cumulative average over every training image.
    training_images, _ = T.read_shard(train_file, (32, 32, 3))
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    net.train()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        for start in range(0, len(training_images), 500):
            net(normalise(training_images[start:start + 500]).contiguous(memory_format=torch.channels_last))
    result.update(accuracy_tta_bn_recomputed=accuracy(True), accuracy_no_tta_bn_recomputed=accuracy(False))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
