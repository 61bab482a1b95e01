"""Learned patch features end to end: accuracy and minutes of `sparkvision run --features patches` per K.

    .venv/bin/python benchmarks/patch_features.py DATA [--centroids 400,1600,4000] [--json FILE]
        [--driver-memory M] [--skip-runs]

DATA holds the real cifar-10-batches-py (make it from ../shared/data with make_cifar_batches.py).

Two measurements:

1. **Encoder throughput** (no Spark): ``patch_math.PatchEncoder.encode`` on 256 real images with
   one BLAS thread, per K: images per second per core, and the GFLOP/s of its matrix product
   (2 · windows · (patch values + 2) · K per image), against the product alone.
2. **End to end**: for each K, one ``sparkvision run --features patches --centroids K`` in a
   child process (20 % hold-out of the 50,000 training images, seed 42, ridge classifier with
   its regularisation chosen on held-out sums), with the table already ingested so the figure
   is about features and classifier. Reported: accuracy, wall minutes of the child process
   (JVM start included), the phases and the fit's parts from metrics.json, and the peak
   resident memory of the driver's Python process and of the JVM (sampled every 0.2 s; in
   local mode the JVM is also the executor).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scaling import MemorySampler  # noqa: E402  (the same sampler as the scaling benchmark)

ROOT = Path(__file__).resolve().parents[1]


def real_images(data: Path, n: int) -> np.ndarray:
    folder = data / "cifar-10-batches-py" if (data / "cifar-10-batches-py").is_dir() else data
    with open(folder / "data_batch_1", "rb") as f:
        batch = pickle.load(f, encoding="bytes")  # our own generated file: trusted
    return batch[b"data"][:n].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()


def encoder_throughput(images: np.ndarray, k: int) -> dict:
    from threadpoolctl import threadpool_limits

    from sparkvision.features import patch_math as pm

    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(k, 108)).astype(np.float32)
    enc = pm.PatchEncoder(centroids, np.zeros(108, np.float32), np.eye(108, dtype=np.float32), size=6, stride=1,
                          grid=2, height=32, width=32)
    with threadpool_limits(1):
        enc.encode(images[:2])  # compile the kernel
        t0 = time.perf_counter()
        enc.encode(images)
        full = time.perf_counter() - t0
        ext = rng.normal(size=(729, 110)).astype(np.float32)
        t0 = time.perf_counter()
        for _ in range(len(images)):
            ext @ enc.filters
        product = time.perf_counter() - t0
    flops = 2 * 729 * 110 * k * len(images)
    return {"k": k, "images_per_s_per_core": len(images) / full, "gemm_share": product / full,
            "gflops_encode": flops / full / 1e9, "gflops_product_alone": flops / product / 1e9}


def run_once(data: Path, k: int, out: Path, driver_memory: str | None) -> dict:
    cmd = [str(ROOT / ".venv" / "bin" / "sparkvision"), "run", "--data", str(data), "--features", "patches",
           "--centroids", str(k), "--out", str(out), "--quiet"]
    if driver_memory:
        cmd += ["--driver-memory", driver_memory]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with MemorySampler(proc.pid) as mem:
        output, _ = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"run with K={k} failed ({proc.returncode}):\n{output}")
    m = json.loads((out / "metrics.json").read_text())
    return {"k": k, "accuracy": m["accuracy"], "wall_minutes": wall / 60, "seconds": m["seconds"],
            "fit_seconds": m.get("fit_seconds", {}), "regParam": m.get("regParam_chosen"),
            "num_features": 2 * k, "peak_rss_mb": {name: v / 2**20 for name, v in mem.peak.items()}}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--centroids", default="400,1600,4000")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--driver-memory", default=None, help="default: sparkvision's (sized from the machine)")
    parser.add_argument("--skip-runs", action="store_true", help="only the encoder throughput")
    args = parser.parse_args(argv)
    ks = [int(k) for k in args.centroids.split(",")]
    images = real_images(args.data, 256)
    result: dict = {"encoder": [], "runs": []}
    print(f"{'K':>6} {'images/s/core':>14} {'GFLOP/s':>8} {'product alone':>14} {'product share':>14}")
    for k in ks:
        e = encoder_throughput(images, k)
        result["encoder"].append(e)
        print(f"{k:>6} {e['images_per_s_per_core']:>14.0f} {e['gflops_encode']:>8.1f} "
              f"{e['gflops_product_alone']:>14.1f} {e['gemm_share']:>14.0%}", flush=True)
    if not args.skip_runs:
        with tempfile.TemporaryDirectory() as scratch:
            for k in ks:
                r = run_once(args.data, k, Path(scratch) / f"k{k}", args.driver_memory)
                result["runs"].append(r)
                fit = ", ".join(f"{name} {v:.0f}s" for name, v in r["fit_seconds"].items())
                print(f"K={k}: accuracy {r['accuracy']:.2%} in {r['wall_minutes']:.1f} min "
                      f"(regParam {r['regParam']}); phases "
                      + ", ".join(f"{p} {v:.0f}s" for p, v in r["seconds"].items()) + f"; fit: {fit}; "
                      f"peak RSS driver python {r['peak_rss_mb']['driver_python']:.0f} MB, "
                      f"JVM {r['peak_rss_mb']['driver_jvm']:.0f} MB, "
                      f"python workers {r['peak_rss_mb']['python_workers']:.0f} MB", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
