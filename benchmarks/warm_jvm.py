"""What the default run costs once the JVM is warm: the same job several times in one process.

    .venv/bin/python benchmarks/warm_jvm.py DATA [--rounds 3] [--json FILE]

DATA is a folder holding cifar-10-batches-py. One session is started (as ``sparkvision run``
starts it, Python workers warmed), then the default job (gray pixels, the assignment's forest,
seed 42) runs ``--rounds`` times in it, each into a new output folder:

* round 1: a new work folder, so the image table is ingested: this is the cold run's work, and
  it pays the JIT compiling Spark's and MLlib's code for the first time in this JVM;
* round 2: another new work folder, so the ingestion is done again, now by a warm JVM;
* rounds 3 and on: the table of round 2 is reused (a warm run on a warm JVM).

Round 1 minus round 2 is what a fresh process pays for its JVM's warm-up (the JIT's compiling
and first-use costs), which Java 17 and 21 keep no record of between processes. Round 2 is the
cold run's own work, which a faster sparkvision could shorten. Both are judged against issue 2's
target in BENCHMARKS.md section 1. The work folders are temporary and removed at the end.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

PHASES = ("ingest", "fit", "evaluate", "save")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--rounds", type=int, default=3, help="runs in the one process (at least 2)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error("--rounds must be at least 2")

    from sparkvision.jobs.run import RunConfig, run_job
    from sparkvision.features.warmup import warm_python_workers
    from sparkvision.runtime.session import build_session

    scratch = Path(tempfile.mkdtemp(prefix="sparkvision-warm-jvm-"))
    rounds = []
    try:
        started = time.perf_counter()
        spark = build_session(RunConfig().spark, show_progress=False)
        warm_python_workers(spark)
        session = time.perf_counter() - started
        print(f"session started in {session:.1f} s", flush=True)
        for i in range(args.rounds):
            work = scratch / ("work-1" if i == 0 else "work-2")  # rounds 1 and 2 ingest, later ones reuse
            config = RunConfig(data=args.data, work_dir=str(work), out=str(scratch / f"out-{i + 1}"))
            t = time.perf_counter()
            metrics = run_job(config, progress=False, spark=spark)
            wall = time.perf_counter() - t
            phases = {k: round(metrics["seconds"][k], 2) for k in PHASES}
            rounds.append({"round": i + 1, "wall_s": round(wall, 2), "phases_s": phases,
                           "table_reused": metrics["data"]["table_reused"], "accuracy": metrics["accuracy"]})
            print(f"round {i + 1}: {wall:5.1f} s  " + "  ".join(f"{k} {v:.1f}" for k, v in phases.items())
                  + f"  accuracy {metrics['accuracy']:.2%}" + ("  (table reused)" if rounds[-1]["table_reused"]
                                                                else "  (table ingested)"), flush=True)
        spark.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    warm_up = rounds[0]["wall_s"] - rounds[1]["wall_s"]
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()}, Python {platform.python_version()}",
        "command": " ".join(["benchmarks/warm_jvm.py", *(argv if argv is not None else sys.argv[1:])]),
        "session_s": round(session, 2),
        "rounds": rounds,
        "jvm_warm_up_s": round(warm_up, 2),
    }
    print(f"\nsession {session:.1f} s; round 1 (cold JVM, table ingested) {rounds[0]['wall_s']:.1f} s; "
          f"round 2 (warm JVM, table ingested) {rounds[1]['wall_s']:.1f} s; "
          f"the JVM's warm-up: {warm_up:.1f} s of round 1")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
