"""Where a run's CPU time goes: every thread of the process tree, by kind, sampled from /proc.

Usage (from the repository root; Linux only)::

    .venv/bin/python benchmarks/cpu_by_thread.py -- .venv/bin/sparkvision run --data /tmp/cifar --quiet

Runs the command after ``--`` and, every 0.1 s while it runs, reads the CPU time of each thread
of the command and of its descendants (the JVM, Python workers) from ``/proc``; a thread's last
reading is its total. Threads are grouped by process kind (``jvm``, ``python worker``,
``driver``) and by thread name with its numbers dropped, so the JIT compilers (``C2
CompilerThread``, ``C1 CompilerThread``), Spark's task threads (``Executor task …``),
the garbage collector and the rest each get one line. It then prints the wall time, the busy CPU
seconds of the whole machine over the same span (``/proc/stat``) and the cores' capacity, which
together say whether the run was CPU-bound. A thread that starts and ends between two samples
is missed, so the per-thread sum is a lower bound.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections import Counter

TICK = os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(parent, []).append(int(entry))
    return kids


def _tree(root: int) -> list[int]:
    kids, out, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def _kind(pid: int, root: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            argv = f.read().split("\0")
    except OSError:
        return "other"
    if os.path.basename(argv[0]) == "java":
        return "jvm"
    if any("pyspark" in a or "daemon" in a for a in argv):
        return "python worker"
    return "driver" if pid == root else os.path.basename(argv[0])


# Linux keeps 15 characters of a thread's name; these are the ones that matter here, in full.
NAMES = {
    "C2 CompilerThre": "C2 CompilerThread (JIT)", "C1 CompilerThre": "C1 CompilerThread (JIT)",
    "Executor task l": "Executor task (Spark tasks)", "Executor task i": "Executor task (Spark tasks)",
    "Thread-N": "Thread-N (py4j: the driver's calls)", "GC Thread#": "GC Thread (G1)", "G1 Conc#": "G1 Conc (G1)",
    "java": "java (the JVM's main thread)",
}


def _group(name: str) -> str:
    """A thread name without its numbers ("Thread-3" and "Thread-7" → one group), spelled out."""
    short = re.sub(r"[#\d]+$", "", name) if name.startswith(("GC Thread", "G1 ")) else re.sub(r"-\d+", "-N", name)
    short = short if short.endswith("#") or not short.startswith(("GC Thread", "G1 ")) else short + "#"
    return NAMES.get(short, short)


def _busy() -> tuple[int, int]:
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in f.readline().split()[1:9])
    return user + nice + system + irq + softirq + steal, idle + iowait


def measure(command: list[str], interval: float = 0.1) -> dict:
    """Run ``command``; return wall seconds, machine busy/idle CPU seconds and CPU seconds by thread kind."""
    last: dict[tuple[int, int], tuple[str, str, int]] = {}
    busy0, idle0 = _busy()
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    while proc.poll() is None:
        for pid in _tree(proc.pid):
            kind = _kind(pid, proc.pid)
            try:
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{tid}/stat") as f:
                        text = f.read()
                    name = text[text.index("(") + 1: text.rindex(")")]
                    fields = text.rsplit(")", 1)[1].split()
                    last[(pid, int(tid))] = (kind, name, int(fields[11]) + int(fields[12]))  # utime + stime
            except (OSError, ValueError):
                continue  # the process or thread ended meanwhile
        time.sleep(interval)
    wall = time.perf_counter() - started
    busy1, idle1 = _busy()
    by_kind: Counter[tuple[str, str]] = Counter()
    for kind, name, ticks in last.values():
        by_kind[(kind, _group(name))] += ticks
    return {"command": command, "returncode": proc.returncode, "wall": wall,
            "machine_busy_cpu_s": (busy1 - busy0) / TICK, "machine_idle_cpu_s": (idle1 - idle0) / TICK,
            "cores": os.cpu_count(), "threads": {f"{k} / {n}": t / TICK for (k, n), t in by_kind.most_common()}}


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        sys.exit("usage: cpu_by_thread.py [--top N] -- COMMAND ...")
    cut = argv.index("--")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=12, help="thread groups to print (default 12)")
    args = parser.parse_args(argv[:cut])
    result = measure(argv[cut + 1:])
    print(f"wall {result['wall']:.1f} s; machine busy {result['machine_busy_cpu_s']:.1f} CPU-s, idle "
          f"{result['machine_idle_cpu_s']:.1f} CPU-s ({result['cores']} cores: {result['cores'] * result['wall']:.1f} "
          f"CPU-s available); exit status {result['returncode']}")
    print(f"threads of the run: {sum(result['threads'].values()):.1f} CPU-s")
    for name, seconds in list(result["threads"].items())[:args.top]:
        print(f"  {seconds:7.2f}  {name}")
    return result


if __name__ == "__main__":
    main()
