"""Training and inference rates of the CNN on this CPU, by widths, precision and threads.

    .venv/bin/python benchmarks/cnn_rates.py [--threads 2] [--widths 64,128,128 64,256,256] [--batches 256]
                                             [--sizes 32] [--seconds 6]

Random images, one process, no Spark: the network's own speed (a training step is forward,
backward and a Nesterov SGD step on a batch of 256, or of each of ``--batches``: a core is faster
on small batches, which is why training computes a step in chunks of 128). It shows whether
bfloat16 pays on this CPU: native only with AMX or AVX512-BF16
(``cnn.settings.cpu_has_native_bfloat16``); elsewhere PyTorch emulates it. ``--sizes`` shows what
the smaller images of progressive resizing save. ``--weight-grad both`` times each bfloat16 row
twice, side by side: with the network's own weight-gradient paths (``cnn.weight_grad``) and with
oneDNN's alone, and prints their ratio.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from cnn import cpu_model
from sparkvision.models.cnn import weight_grad
from sparkvision.models.cnn.network import Network
from sparkvision.models.cnn.settings import cpu_has_native_bfloat16


def rate(widths: tuple[int, int, int], precision: str, seconds: float, batch: int = 256,
         size: int = 32) -> tuple[float, float]:
    """(training images/s, inference images/s) for one configuration."""
    net = Network(widths).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    bf16 = precision == "bfloat16"

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = net(x)
        loss = F.cross_entropy(out.float(), y, label_smoothing=0.2, reduction="sum")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def timed(fn) -> float:
        fn()  # warm-up: oneDNN picks its kernels on the first call
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            fn()
            n += batch
        return n / (time.perf_counter() - start)

    train = timed(step)
    net.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        infer = timed(lambda: net(x))
    return train, infer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--widths", nargs="+", default=["64,128,128", "64,256,256"])
    parser.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--batches", type=int, nargs="+", default=[256])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32], help="image sides, e.g. 16 24 32")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--weight-grad", choices=["ours", "onednn", "both"], default="ours",
                        help="bfloat16 weight gradients: cnn.weight_grad's paths, oneDNN's, or both side by side")
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}; native bfloat16: {cpu_has_native_bfloat16()}; torch {torch.__version__}")
    print("| widths | precision | threads | batch | side | training images/s | inference images/s (one view) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for widths in args.widths:
            for precision in args.precisions:
                for batch in args.batches:
                    for size in args.sizes:
                        paths = ["ours", "onednn"] if args.weight_grad == "both" else [args.weight_grad]
                        if precision == "float32":
                            paths = paths[:1]  # the paths differ in bfloat16 only
                        trains = []
                        for path in paths:
                            weight_grad.ENABLED = path == "ours"
                            train, infer = rate(tuple(int(w) for w in widths.split(",")), precision, args.seconds,
                                                batch, size)
                            trains.append(train)
                            label = f" ({path} weight gradients)" if precision == "bfloat16" else ""
                            print(f"| {widths.replace(',', '/')} | {precision}{label} | {threads} | {batch} | {size} "
                                  f"| {train:,.0f} | {infer:,.0f} |", flush=True)
                        if len(trains) == 2:
                            print(f"|   ours / oneDNN's, training | | | | | {trains[0] / trains[1]:.3f} | |", flush=True)


if __name__ == "__main__":
    main()
