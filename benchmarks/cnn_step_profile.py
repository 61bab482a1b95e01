"""Where a CNN training step's time goes on this CPU, by PyTorch operator, and what the
whitening bias's gradient costs once its rate is 0.

    .venv/bin/python benchmarks/cnn_step_profile.py [--widths 32,128,128] [--batch 128] [--threads 1]
                                                    [--precision float32] [--rounds 4] [--seconds 4]

One process, random images, no Spark: forward, backward and nothing else (the optimizer's step
is the same either way). Two variants are timed in alternation, ``--rounds`` times each for
``--seconds``, so a noisy host slows both alike:

* *learning*: the whitening conv's bias takes a gradient, as in the first ``whiten_bias_epochs``;
* *frozen*: it does not, as training runs after them (``cnn.training.train`` freezes it), so
  backward skips the first conv group's gradient with respect to its full-resolution input.

Printed: the CPU model, each variant's images/s (median of the rounds), their ratio, and the
operators' share of a *learning* step (``torch.profiler``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from cnn import cpu_model
from sparkvision.models.cnn.network import Network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", default="32,128,128")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--precision", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    widths = tuple(int(w) for w in args.widths.split(","))
    net = Network(widths).to(memory_format=torch.channels_last)
    x = torch.randn(args.batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,))
    bf16 = args.precision == "bfloat16"

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = net(x)
        F.cross_entropy(out.float(), y, label_smoothing=0.2, reduction="sum").backward()
        net.zero_grad(set_to_none=True)

    def rate(learning: bool) -> float:
        net.whiten.bias.requires_grad_(learning)
        step()  # warm-up: oneDNN picks its kernels on the first call
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < args.seconds:
            step()
            n += args.batch
        return n / (time.perf_counter() - start)

    rates: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.rounds):
        for learning in (True, False):
            rates[learning].append(rate(learning))
    learning, frozen = statistics.median(rates[True]), statistics.median(rates[False])
    print(f"CPU: {cpu_model()}; torch {torch.__version__}; {args.threads} thread(s); widths {args.widths}; "
          f"batch {args.batch}; {args.precision}")
    print(f"forward + backward, images/s (median of {args.rounds} rounds of {args.seconds:g} s):")
    print(f"  whitening bias learning {learning:8.1f}   ({', '.join(f'{r:.0f}' for r in rates[True])})")
    print(f"  whitening bias frozen   {frozen:8.1f}   ({', '.join(f'{r:.0f}' for r in rates[False])})")
    print(f"  frozen / learning       {frozen / learning:8.3f}")

    from torch.profiler import ProfilerActivity, profile

    net.whiten.bias.requires_grad_(True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    print("a learning step's CPU time by operator (self time, 5 steps):")
    for e in events[:8]:
        print(f"  {e.key:40} {100 * e.self_cpu_time_total / total:5.1f} %")


if __name__ == "__main__":
    main()
