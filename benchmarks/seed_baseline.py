"""Seed baseline: a faithful reproduction of the PySpark course assignment.

This is the baseline that sparkvision has to beat. It reproduces, step by
step, the assignment's CIFAR-10 pipeline:

1. Start a local SparkSession (4g driver/executor memory, 100 shuffle
   partitions).
2. For each ``data_batch_N`` pickle: unpickle it in the driver, turn every
   3072-byte row (R, G, B planes) into a 32x32x3 image, PNG-encode it with
   Pillow, collect ``Row(image=png, label=label)`` into a Python list,
   ``sc.parallelize`` that list and ``createDataFrame`` it; then ``union``
   the five DataFrames.
3. A row-at-a-time Python UDF decodes each PNG, converts it to grayscale
   (``Image.convert('L')``) and re-encodes it as PNG; a second Python UDF
   decodes the gray PNG into a ``DenseVector`` of ``pixel / 255.0``.
4. ``randomSplit([0.8, 0.2], seed=42)``, fit a ``Pipeline`` holding a
   ``RandomForestClassifier(numTrees=10)`` (default maxDepth 5), transform the
   test split and measure accuracy with ``MulticlassClassificationEvaluator``.

It is deliberately slow and must NOT be optimised -- it is the yardstick:

* PNG encoding of all 50,000 images happens in the single driver process,
  serially, before Spark is involved at all.
* ``sc.parallelize`` of a Python list of Rows pickles every row through the
  driver into the JVM; nothing is read in parallel from storage.
* The UDFs are row-at-a-time Python UDFs (not vectorised/Arrow), so each row
  crosses the JVM <-> Python boundary and is PNG-decoded, converted,
  re-encoded and decoded again.
* Nothing is cached, so the random forest re-runs the whole lineage --
  parallelize, union, both UDFs -- on every pass it makes over the data
  before its binned copy is cached (class count, feature count, example
  count, the split-finding sample, binning), and ``transform`` runs it once
  more on the test split.

Run (from the repository root)::

    .venv/bin/python benchmarks/seed_baseline.py /tmp/cifar
    .venv/bin/python benchmarks/seed_baseline.py /tmp/cifar \\
        --limit-batches 1 --json seed.json

``DATA`` is a folder that contains ``cifar-10-batches-py`` (or that folder
itself). ``--limit-batches N`` uses only the first N training batches for a
quick check.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

# Spark's Python workers must run the same interpreter (and virtualenv) as us.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # house rule: loopback only

from pyspark.ml import Pipeline  # noqa: E402
from pyspark.ml.classification import RandomForestClassifier  # noqa: E402
from pyspark.ml.evaluation import MulticlassClassificationEvaluator  # noqa: E402
from pyspark.ml.linalg import DenseVector, VectorUDT  # noqa: E402
from pyspark.sql import DataFrame, Row, SparkSession  # noqa: E402
from pyspark.sql.functions import col, udf  # noqa: E402
from pyspark.sql.types import BinaryType  # noqa: E402

BATCHES_DIR = "cifar-10-batches-py"


# ---------------------------------------------------------------------------
# Session
# ---------------------------------------------------------------------------

def build_session() -> SparkSession:
    """The assignment's SparkSession, plus our house rules for benchmarks."""
    spark = (
        SparkSession.builder.appName("seed-baseline")
        .master("local[*]")
        # Assignment settings.
        .config("spark.driver.memory", "4g")
        .config("spark.executor.memory", "4g")
        .config("spark.executor.memoryOverhead", "512m")
        .config("spark.sql.shuffle.partitions", "100")
        # House rules: loopback only, no UI, quiet console.
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


# ---------------------------------------------------------------------------
# Load: driver-side unpickle + PNG encode, parallelize, union
# ---------------------------------------------------------------------------

def find_batches_dir(data: Path) -> Path:
    """Accept either the parent folder or cifar-10-batches-py itself."""
    if (data / BATCHES_DIR).is_dir():
        return data / BATCHES_DIR
    if (data / "data_batch_1").is_file():
        return data
    raise FileNotFoundError(f"no {BATCHES_DIR} (or data_batch_1) under {data}")


def unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def to_png(row: np.ndarray) -> bytes:
    """3072 bytes as R, G, B planes -> 32x32x3 image -> PNG bytes."""
    img = row.reshape(3, 32, 32).transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def load_batch(spark: SparkSession, path: Path) -> DataFrame:
    """One pickle -> Python list of Rows -> RDD -> DataFrame (all via the driver)."""
    batch = unpickle(path)
    rows = [
        Row(image=to_png(pixels), label=int(label))
        for pixels, label in zip(batch[b"data"], batch[b"labels"])
    ]
    rdd = spark.sparkContext.parallelize(rows)
    return spark.createDataFrame(rdd)


def load_cifar(spark: SparkSession, batches_dir: Path, n_batches: int) -> DataFrame:
    """Union of the per-batch DataFrames, in file order."""
    df = None
    for i in range(1, n_batches + 1):
        batch_df = load_batch(spark, batches_dir / f"data_batch_{i}")
        df = batch_df if df is None else df.union(batch_df)
    return df


# ---------------------------------------------------------------------------
# Features: row-at-a-time Python UDFs
# ---------------------------------------------------------------------------

def png_to_gray_png(data: bytes) -> bytes:
    """Decode PNG, convert to grayscale, re-encode as PNG."""
    img = Image.open(io.BytesIO(data)).convert("L")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def gray_png_to_vector(data: bytes) -> DenseVector:
    """Decode the gray PNG into 1024 features scaled to [0, 1]."""
    img = Image.open(io.BytesIO(data))
    return DenseVector(np.asarray(img, dtype=np.float64).flatten() / 255.0)


# useArrow=False pins the assignment's plain row-at-a-time (pickled, non-Arrow)
# UDF; it also stops PySpark trying to infer a pandas UDF from the type hints.
to_gray_udf = udf(png_to_gray_png, BinaryType(), useArrow=False)
to_vector_udf = udf(gray_png_to_vector, VectorUDT(), useArrow=False)


def add_features(df: DataFrame) -> DataFrame:
    """Lazy: the UDFs run whenever a later action pulls on these columns."""
    df = df.withColumn("gray", to_gray_udf(col("image")))
    return df.withColumn("features", to_vector_udf(col("gray")))


# ---------------------------------------------------------------------------
# Model: random forest pipeline and evaluation
# ---------------------------------------------------------------------------

def build_pipeline() -> Pipeline:
    rf = RandomForestClassifier(labelCol="label", featuresCol="features", numTrees=10)
    return Pipeline(stages=[rf])


def evaluate(model, test: DataFrame) -> float:
    predictions = model.transform(test)
    evaluator = MulticlassClassificationEvaluator(
        labelCol="label", predictionCol="prediction", metricName="accuracy"
    )
    return evaluator.evaluate(predictions)


# ---------------------------------------------------------------------------
# Main: run the phases in order and time each one
# ---------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path, help="folder holding cifar-10-batches-py (or that folder)")
    p.add_argument("--json", type=Path, default=None, help="write results as JSON to this file")
    p.add_argument("--limit-batches", type=int, default=5, choices=range(1, 6),
                   metavar="N", help="use only the first N training batches (1-5, default 5)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    batches_dir = find_batches_dir(args.data)
    seconds: dict[str, float] = {}
    t_start = time.perf_counter()

    # Session: JVM start-up.
    t = time.perf_counter()
    spark = build_session()
    seconds["session"] = time.perf_counter() - t

    try:
        # Load. The assignment calls count()/show() right after building the
        # DataFrame; we force it with count() so this cost lands here, where
        # the assignment pays it, rather than hiding inside fit.
        t = time.perf_counter()
        df = load_cifar(spark, batches_dir, args.limit_batches)
        n_images = df.count()
        seconds["load"] = time.perf_counter() - t

        df = add_features(df)
        train, test = df.randomSplit([0.8, 0.2], seed=42)

        # Fit: nothing is cached, so every pass of the forest over `train`
        # recomputes parallelize -> union -> both Python UDFs.
        t = time.perf_counter()
        model = build_pipeline().fit(train)
        seconds["fit"] = time.perf_counter() - t

        # Evaluate: transform reruns the whole lineage on `test`.
        t = time.perf_counter()
        accuracy = evaluate(model, test)
        seconds["evaluate"] = time.perf_counter() - t
    finally:
        spark.stop()

    seconds["total"] = time.perf_counter() - t_start

    print(f"seed baseline: {n_images} images from {args.limit_batches} batch(es)")
    for phase, s in seconds.items():
        print(f"  {phase:<9s}{s:8.1f} s")
    print(f"  accuracy  {accuracy:8.4f}")

    result = {"accuracy": accuracy, "seconds": seconds, "n_images": n_images}
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
