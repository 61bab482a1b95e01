"""What the driver JVM's class archive (``sparkvision.runtime.class_archive``) saves: fresh processes, with and without it.

    .venv/bin/python benchmarks/jvm_start.py [--rounds 5] [--data DIR] [--json FILE]

Each round starts, one after the other, a fresh Python process with the archive switched off
(``SPARKVISION_JVM_CDS=0``) and one with it, so both see the same machine load. Each process
times the session start (JVM launch), Spark's first job (``spark.range(10).count()``) and a first
Python (Arrow) job. With ``--data`` (a folder holding cifar-10-batches-py, its image table already
in the work directory) each round also times a whole ``sparkvision run`` both ways, wall clock.
The archive is made first (one JVM run) if the cache has none.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROBE = r"""
import json, time
t0 = time.perf_counter()
from sparkvision.runtime.session import SparkSettings, build_session
spark = build_session(SparkSettings(conf={"spark.ui.enabled": "false"}), show_progress=False)
t1 = time.perf_counter()
spark.range(10).count()
t2 = time.perf_counter()
def same(batches):
    yield from batches
spark.range(0, 100, numPartitions=2).mapInArrow(same, "id long").count()
t3 = time.perf_counter()
print(json.dumps({"session": t1 - t0, "first_job": t2 - t1, "python_job": t3 - t2}))
"""


def probe(cds: bool) -> dict:
    env = {**os.environ, "SPARKVISION_JVM_CDS": "1" if cds else "0"}
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process"] = time.perf_counter() - t
    time.sleep(3)  # the JVM that wrote nothing still exits after its Python: let it go first
    return result


def full_run(cds: bool, data: str, out: Path) -> float:
    env = {**os.environ, "SPARKVISION_JVM_CDS": "1" if cds else "0"}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sparkvision", "run", "--data", data, "--out", str(out), "--quiet",
                    "--conf", "spark.ui.enabled=false"], env=env, check=True, capture_output=True)
    secs = time.perf_counter() - t
    time.sleep(3)
    return secs


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--data", default=None)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    import tempfile

    from sparkvision.runtime import class_archive as jvm_cds
    print(f"archive cache: {jvm_cds.cache_dir()}", file=sys.stderr)
    probe(True)  # makes the archive if there is none (written as that JVM exits)
    time.sleep(10)
    rows = {"off": [], "on": []}
    runs = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="sv-jvm-") as tmp:
        for r in range(args.rounds):
            for name, cds in (("off", False), ("on", True)):
                rows[name].append(probe(cds))
                if args.data:
                    runs[name].append(full_run(cds, args.data, Path(tmp) / f"{name}-{r}"))
            print(f"round {r + 1}/{args.rounds}: " + "  ".join(
                f"{n} session {rows[n][-1]['session']:.2f}s first job {rows[n][-1]['first_job']:.2f}s "
                f"python job {rows[n][-1]['python_job']:.2f}s" for n in rows), file=sys.stderr, flush=True)
    result: dict = {"rounds": args.rounds}
    for key in ("session", "first_job", "python_job", "process"):
        off = statistics.median(x[key] for x in rows["off"])
        on = statistics.median(x[key] for x in rows["on"])
        result[key] = {"off": off, "on": on, "saved": off - on}
    if args.data:
        off, on = statistics.median(runs["off"]), statistics.median(runs["on"])
        result["sparkvision_run"] = {"off": off, "on": on, "saved": off - on, "all_off": runs["off"],
                                     "all_on": runs["on"]}
    print(f"\nmedian of {args.rounds} rounds (seconds)      without archive   with archive   saved")
    for key in [k for k in result if k != "rounds"]:
        v = result[key]
        print(f"  {key:28} {v['off']:15.2f} {v['on']:14.2f} {v['saved']:7.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
