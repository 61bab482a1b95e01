"""The assignment's code against `sparkvision run`, side by side on the same data, in one run.

    .venv/bin/python benchmarks/seed_vs_sparkvision.py DATA [--json FILE]

DATA is a folder holding cifar-10-batches-py (make it from ../shared/data with
make_cifar_batches.py). Each contender runs as a child process of this script, one after the
other, so all pay their own start-up and share the machine's state:

1. ``seed_baseline.py``: the assignment's code (driver-side PNG encoding, parallelize, union,
   row-at-a-time Python UDFs).
2. ``sparkvision run`` cold: a fresh work directory, so ingestion into the image table is paid.
3. ``sparkvision run`` warm: the same work directory again, so the table is reused (a second
   ``make run``).
4. ``sparkvision run --remote local``, first: no Connect server runs, so this run starts
   sparkvision's resident one (``sparkvision server``), then ingests into a fresh work directory.
5. ``sparkvision run --remote local`` again, warm: the server is up and the table written; the
   client process (Python start, imports, the Connect session) is all this run pays besides its work.
6. scikit-learn's RandomForestClassifier, same parameters (10 trees, depth 5) on the same
   features (Pillow-exact gray / 255) and an 80/20 split: the single-machine reference.

The Connect server gets a cache folder and a port of its own (``XDG_CACHE_HOME``,
``SPARKVISION_CONNECT_PORT``), and is stopped at the end.

Printed: each phase, each accuracy, and the wall-time ratios. Wall times are of the whole child
process, Python and JVM start included. Both Spark contenders run with the UI off.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable


def _child(argv: list[str], env: dict | None = None) -> float:
    """Run a child process to completion; its wall time in seconds (it fails loudly)."""
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    return time.perf_counter() - t


def _cpu_model() -> str:
    """The CPU's model name, as lscpu reports it (every benchmark record names it)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def run_seed(data: Path, tmp: Path) -> dict:
    out = tmp / "seed.json"
    wall = _child([PY, str(HERE / "seed_baseline.py"), str(data), "--json", str(out)])
    result = json.loads(out.read_text())
    return {"wall": wall, "accuracy": result["accuracy"], "seconds": result["seconds"]}


def run_sparkvision(data: Path, work: Path, out: Path, *extra: str, env: dict | None = None) -> dict:
    # The UI off for the classic runs; sparkvision's Connect server starts with it off (a client cannot change it).
    ui = [] if "--remote" in extra else ["--conf", "spark.ui.enabled=false"]
    wall = _child([PY, "-m", "sparkvision", "run", "--data", str(data), "--work-dir", str(work),
                   "--out", str(out), *ui, "--quiet", *extra], env=env)
    metrics = json.loads((out / "metrics.json").read_text())
    return {"wall": wall, "accuracy": metrics["accuracy"], "seconds": metrics["seconds"]}


def run_sklearn(data: Path) -> dict:
    """scikit-learn on the same features, timed in this process (numpy load included)."""
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    from sparkvision.data.ingest import locate_cifar as locate
    from sparkvision.data.sources.cifar import CIFAR10, parse_python_batch, planes_to_hwc
    from sparkvision.features.kernels import rgb_to_gray

    t0 = time.perf_counter()
    source = locate(data, tempfile.mkdtemp(), CIFAR10, progress=False)
    parts = [parse_python_batch(Path(f.path).read_bytes(), f.path) for f in source.files]
    labels = np.concatenate([p[0] for p in parts])
    gray = rgb_to_gray(planes_to_hwc(np.concatenate([p[1] for p in parts]))).reshape(len(labels), -1) / 255.0
    x_train, x_test, y_train, y_test = train_test_split(gray, labels, test_size=0.2, random_state=42)
    t1 = time.perf_counter()
    model = RandomForestClassifier(n_estimators=10, max_depth=5, n_jobs=os.cpu_count(), random_state=42)
    model.fit(x_train, y_train)
    t2 = time.perf_counter()
    accuracy = float((model.predict(x_test) == y_test).mean())
    t3 = time.perf_counter()
    return {"wall": t3 - t0, "accuracy": accuracy,
            "seconds": {"load": t1 - t0, "fit": t2 - t1, "evaluate": t3 - t2, "total": t3 - t0}}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="folder holding cifar-10-batches-py")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="sv-bench-") as tmp:
        tmp = Path(tmp)
        print("running the seed baseline ...", file=sys.stderr, flush=True)
        results["seed baseline"] = run_seed(args.data, tmp)
        print("running sparkvision (cold: ingests) ...", file=sys.stderr, flush=True)
        results["sparkvision cold"] = run_sparkvision(args.data, tmp / "work", tmp / "out1")
        print("running sparkvision (warm: table reused) ...", file=sys.stderr, flush=True)
        results["sparkvision warm"] = run_sparkvision(args.data, tmp / "work", tmp / "out2")
        with socket.socket() as s:  # a free port for this run's own Connect server
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        # The server's state in a cache of its own; the driver's class archive where the classic runs
        # find theirs (the server maps it as they do).
        from sparkvision.runtime.fs import cache_root

        connect_env = {"XDG_CACHE_HOME": str(tmp / "cache"), "SPARKVISION_CONNECT_PORT": str(port),
                       "SPARKVISION_CACHE_DIR": os.environ.get("SPARKVISION_CACHE_DIR") or str(cache_root())}
        try:
            print("running sparkvision over Connect (first: starts the server, ingests) ...", file=sys.stderr, flush=True)
            results["connect first"] = run_sparkvision(args.data, tmp / "work-connect", tmp / "out3", "--remote", "local",
                                                       env=connect_env)
            print("running sparkvision over Connect (warm server, table reused) ...", file=sys.stderr, flush=True)
            results["connect warm"] = run_sparkvision(args.data, tmp / "work-connect", tmp / "out4", "--remote", "local",
                                                      env=connect_env)
        finally:
            subprocess.run([PY, "-m", "sparkvision", "server", "stop"], env={**os.environ, **connect_env},
                           stdout=subprocess.DEVNULL)
        print("running scikit-learn ...", file=sys.stderr, flush=True)
        results["scikit-learn"] = run_sklearn(args.data)

    print(f"\n{'contender':<18} {'wall s':>7} {'accuracy':>9}   phases (s)")
    for name, r in results.items():
        phases = "  ".join(f"{k} {v:.1f}" for k, v in r["seconds"].items())
        print(f"{name:<18} {r['wall']:7.1f} {r['accuracy']:9.2%}   {phases}")
    seed, cold, warm, first, connected, skl = (results[k]["wall"] for k in results)
    ratios = {"seed / sparkvision cold": seed / cold, "seed / sparkvision warm": seed / warm,
              "seed / connect warm": seed / connected, "connect first / sparkvision cold": first / cold,
              "sparkvision cold / scikit-learn": cold / skl, "sparkvision warm / scikit-learn": warm / skl}
    print()
    for k, v in ratios.items():
        print(f"{k:<34} {v:5.2f}x")
    print(f"accuracy gap (sparkvision cold - seed): "
          f"{(results['sparkvision cold']['accuracy'] - results['seed baseline']['accuracy']) * 100:+.2f} points")
    print(f"accuracy gap (connect warm - sparkvision cold): "
          f"{(results['connect warm']['accuracy'] - results['sparkvision cold']['accuracy']) * 100:+.2f} points")
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": _cpu_model(), "machine":
              f"{platform.node()} {os.cpu_count()} cores {platform.machine()}", "results": results, "ratios": ratios}
    print(f"cpu: {report['cpu']}, {os.cpu_count()} cores")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
