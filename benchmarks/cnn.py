"""The CNN end to end through `sparkvision run --model cnn`, against the same recipe as a plain
PyTorch loop in one process without Spark, back to back on the same machine.

    .venv/bin/python benchmarks/cnn.py DATA [--epochs E] [--widths 64,128,128] [--only spark|plain]
                                            [--processes N] [--param NAME=VALUE] [--batch-sizes 1024,256]
                                            [--json FILE]

DATA is a folder holding cifar-10-batches-py (make it from ../shared/data with
make_cifar_batches.py). Steps, each timed:

1. ``sparkvision run --model cnn`` as a child process (Python, Spark and torchrun start, the
   image table, the shard, training, evaluation with TTA through predict_batch_udf, save). Its
   metrics.json gives the accuracy on the 20 % hold-out and where the time went.
2. The plain loop: the same hold-out split exported once with Spark (not timed), then in this
   process: read the training rows, ``cnn.training.train`` in one process with 2 threads, and the
   hold-out accuracy with the same test-time augmentation (``cnn.inference.Predictor``).

Printed: the CPU model, each step's figures, and Spark's cost as the ratio of the two wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

PY = sys.executable


def cpu_model() -> str:
    """The CPU model line of lscpu (or /proc/cpuinfo)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def run_spark(data: Path, work: Path, out: Path, epochs: float | None, widths: str | None,
              processes: int | None, extra: list[str]) -> dict:
    argv = [PY, "-m", "sparkvision", "run", "--model", "cnn", "--data", str(data), "--work-dir", str(work),
            "--out", str(out), "--conf", "spark.ui.enabled=false"]
    if epochs is not None:
        argv += ["--epochs", str(epochs)]
    if widths:
        argv += ["--param", f"widths={widths}"]
    if processes:
        argv += ["--param", f"numProcesses={processes}"]
    t = time.perf_counter()
    subprocess.run(argv + extra, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    m = json.loads((out / "metrics.json").read_text())
    return {"wall": round(wall, 1), "accuracy": m["accuracy"], "seconds": m["seconds"], "cnn": m.get("cnn", {})}


def export_split(data: Path, work: Path, folder: Path) -> None:
    """The hold-out split `sparkvision run` uses (seed 42, 20 %), as train/ and test/ Parquet."""
    import sparkvision as sv

    spark = sv.session("local[2]", conf={"spark.ui.enabled": "false"}, show_progress=False)
    table = sv.load_cifar10(spark, str(data), work_dir=str(work), progress=False)
    train, test = sv.split_table(table.df, table.info.has_test, 0.2, seed=42)
    for name, df in (("train", train), ("test", test)):
        df.select("label", "data").coalesce(1).write.mode("overwrite").parquet(str(folder / name))
    spark.stop()


def parse_params(pairs: list[str]) -> dict:
    """``--param NAME=VALUE`` pairs as `sparkvision run` reads them."""
    from sparkvision.cli.commands import param_value
    from sparkvision.models.cnn.settings import parse_cnn_value

    return {name: parse_cnn_value(name, param_value(text))
            for name, _, text in (pair.partition("=") for pair in pairs)}


def run_plain(folder: Path, work: Path, epochs: float | None, widths: str | None,
              batch_size: int | None = None, params: dict | None = None) -> dict:
    """The recipe in this process: training, then hold-out accuracy with TTA. Unset values are the
    preset's of this CPU's precision and hardware, as `sparkvision run` takes them; ``params`` are the Spark
    run's ``--param`` values."""
    import numpy as np
    import torch

    from sparkvision.models.cnn.inference import Predictor
    from sparkvision.models.cnn.settings import CNN_DEFAULTS, preset_name, resolve_precision, with_preset
    from sparkvision.models.cnn.training import TrainJob, TrainSettings, read_shard, train

    params = dict(params or {})
    precision = resolve_precision(params.pop("precision", "auto"), False)
    given = {"epochs": epochs, "widths": [int(w) for w in widths.split(",")] if widths else None,
             "batchSize": batch_size}
    given = {**params, **{k: v for k, v in given.items() if v is not None}}
    preset = preset_name(precision, False)
    values = with_preset({**CNN_DEFAULTS, **given}, preset, set(given))
    # The same settings as CNNClassifier's, but one process of two threads.
    settings = TrainSettings.from_params(values, precision=precision, num_classes=10, seed=42, threads=2,
                                         use_gpu=False)
    train_file = next((folder / "train").glob("part-*.parquet"))
    test_file = next((folder / "test").glob("part-*.parquet"))
    # A folder per batch size: a checkpoint left by another run would be resumed from.
    run = work / f"plain-batch{settings.batch_size}"
    job = TrainJob([str(train_file)], (32, 32, 3), str(run / "ckpt"), str(run / "plain.safetensors"),
                   settings.to_json(), progress=True)
    t0 = time.perf_counter()
    result = train(json.dumps(job.__dict__))
    t1 = time.perf_counter()
    images, labels = read_shard(str(test_file), (32, 32, 3))
    predictor = Predictor((run / "plain.safetensors").read_bytes(),
                          {"widths": list(settings.widths), "numClasses": 10, "imageShape": [32, 32, 3],
                           "tta": settings.tta, "precision": settings.precision}, threads=2)
    predictions = np.concatenate([predictor.predict_images(images[i:i + 1000].numpy())[1].argmax(1)
                                  for i in range(0, len(images), 1000)])
    t2 = time.perf_counter()
    accuracy = float((predictions == labels.numpy()).mean())
    return {"wall": round(t2 - t0, 1), "train_s": round(t1 - t0, 1), "evaluate_s": round(t2 - t1, 1),
            "accuracy": accuracy, "precision": settings.precision, "preset": preset, "batch_size": settings.batch_size,
            "curve": result["curve"],
            "torch": torch.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--epochs", type=float, default=None)
    parser.add_argument("--widths", default=None, help="e.g. 64,128,128 (default: the package's)")
    parser.add_argument("--processes", type=int, default=None, help="numProcesses of the Spark run")
    parser.add_argument("--only", choices=("spark", "plain"), default=None)
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="another Param for both runs (e.g. tta=false)")
    parser.add_argument("--batch-sizes", default=None, metavar="B1,B2,...",
                        help="the plain loop once per batch size, side by side (default: the preset's, once)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    record = {"date": datetime.now(timezone.utc).isoformat(timespec="minutes"), "cpu": cpu_model(),
              "cores": os.cpu_count(), "epochs": args.epochs, "widths": args.widths}
    print(f"CPU: {record['cpu']} ({record['cores']} cores)", flush=True)
    with tempfile.TemporaryDirectory(prefix="cnn-bench-") as tmp:
        tmp_path = Path(tmp)
        work = tmp_path / "work"
        if args.only != "plain":
            record["spark"] = run_spark(args.data, work, tmp_path / "run", args.epochs, args.widths,
                                        args.processes, [a for p in args.param for a in ("--param", p)])
            print(f"sparkvision run --model cnn: {record['spark']['wall']} s, accuracy "
                  f"{record['spark']['accuracy']:.2%}, phases {record['spark']['seconds']}", flush=True)
        if args.only != "spark":
            export_split(args.data, work, tmp_path / "split")
            sizes = [int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes else [None]
            for size in sizes:
                plain = run_plain(tmp_path / "split", work, args.epochs, args.widths, size,
                                  parse_params(args.param))
                record.setdefault("plain_by_batch", []).append(plain)
                print(f"plain PyTorch, one process, batches of {plain['batch_size']}: {plain['wall']} s "
                      f"(train {plain['train_s']} s, evaluate {plain['evaluate_s']} s), accuracy "
                      f"{plain['accuracy']:.2%}", flush=True)
            record["plain"] = record["plain_by_batch"][0]
        if "spark" in record and "plain" in record:
            record["spark_cost"] = round(record["spark"]["wall"] / record["plain"]["wall"] - 1, 4)
            print(f"Spark's cost: sparkvision / plain = {record['spark']['wall'] / record['plain']['wall']:.3f} "
                  f"({record['spark_cost']:+.1%})", flush=True)
    if args.json:
        args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
