"""Why PatchFeatures does not use MLlib's KMeans: both on the same whitened patches, side by side.

    .venv/bin/python benchmarks/kmeans_mllib_vs_gemm.py DATA [--patches 100000] [--k 800] [--steps 5]

Samples ``--patches`` normalised, whitened 6×6×3 patches from the real images in DATA
(cifar-10-batches-py), caches them in a local[2] session, then times ``--steps`` Lloyd steps
from the same random start: MLlib's ``KMeans`` (initMode random, tol 0) on a vector column, and
sparkvision's step (``patch_math.assign`` in the tasks over blocks of patches, one matrix product
per block, sums and counts back to the driver). Prints both times, the ratio, and each
result's within-cluster cost, so the two can be seen to do the same work.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from patch_features import real_images  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--patches", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=800)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)

    import pyarrow as pa
    from pyspark import StorageLevel
    from pyspark.ml.clustering import KMeans
    from pyspark.ml.functions import array_to_vector

    from sparkvision.features import patch_math as pm
    from sparkvision.runtime.session import SparkSettings, build_session
    from sparkvision.runtime.npy import from_npy, to_npy

    rng = np.random.default_rng(0)
    images = real_images(args.data, 10_000)
    which, ys, xs = (rng.integers(0, len(images), args.patches), rng.integers(0, 27, args.patches),
                     rng.integers(0, 27, args.patches))
    patches = np.stack([images[i, y:y + 6, x:x + 6].transpose(2, 0, 1).ravel() for i, y, x in zip(which, ys, xs)])
    patches = pm.normalise(patches.astype(np.float32))
    order = pm.mirror_order(6, 3)
    mean = pm.symmetric_mean(patches.mean(axis=0), order)
    white = (patches - mean) @ pm.whitening(mean, np.cov(patches, rowvar=False), 0.1, order)
    start = white[rng.choice(len(white), args.k, replace=False)].astype(np.float32)

    spark = build_session(SparkSettings(master="local[2]"), show_progress=False)
    blocks = [white[i:i + 8192] for i in range(0, len(white), 8192)]
    blob_df = spark.createDataFrame([(to_npy(b),) for b in blocks], "patches binary").repartition(2)
    blob_df = blob_df.persist(StorageLevel.MEMORY_ONLY)
    blob_df.count()
    vec_df = spark.createDataFrame([(row.tolist(),) for row in white], "a array<float>").repartition(2)
    vec_df = vec_df.select(array_to_vector("a").alias("features")).persist(StorageLevel.MEMORY_ONLY)
    vec_df.count()

    t0 = time.perf_counter()
    centroids = start
    for _ in range(args.steps):
        shared = spark.sparkContext.broadcast(centroids)

        def step(batches, shared=shared):
            sums, counts = 0.0, 0
            for batch in batches:
                for blob in batch.column(0).to_pylist():
                    s, c, _ = pm.assign(from_npy(blob), shared.value)
                    sums, counts = sums + s, counts + c
            yield pa.RecordBatch.from_arrays([pa.array([to_npy(np.asarray(sums))], pa.binary()),
                                              pa.array([to_npy(np.asarray(counts))], pa.binary())], ["s", "c"])

        rows = blob_df.mapInArrow(step, "s binary, c binary").collect()
        sums = sum(from_npy(r.s) for r in rows)
        counts = sum(from_npy(r.c) for r in rows)
        centroids = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centroids).astype(np.float32)
    ours = time.perf_counter() - t0
    our_cost = pm.assign(white, centroids)[2]

    # MLlib takes no initial centroids from Python; a random start of the same size gives the same
    # work per step.
    km = KMeans(k=args.k, maxIter=args.steps, tol=0.0, seed=1, initMode="random")
    t0 = time.perf_counter()
    model = km.fit(vec_df)
    mllib = time.perf_counter() - t0
    mllib_cost = float(model.summary.trainingCost)
    print(f"{args.patches:,} patches, k={args.k}, {args.steps} Lloyd steps, local[2]")
    print(f"  MLlib KMeans       {mllib:7.1f} s   cost {mllib_cost:,.0f}")
    print(f"  sparkvision steps  {ours:7.1f} s   cost {our_cost:,.0f}")
    print(f"  ratio              {mllib / ours:7.1f}×")
    spark.stop()


if __name__ == "__main__":
    main()
