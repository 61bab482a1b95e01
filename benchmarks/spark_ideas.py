"""The Spark ideas the course assignment asks about, measured side by side on real CIFAR-10.

    .venv/bin/python benchmarks/spark_ideas.py [DATA] [--json FILE] [--images N]

DATA (default /tmp/cifar) holds ``cifar-10-batches-py`` (or is that folder). ``--images N``
limits every section to about N images for a quick check (section b rounds up to whole batch
files, because reading in tasks reads whole files). Everything runs in this one process with one
SparkSession (``local[2]``, UI off, bound to 127.0.0.1). The sections run in the order b, c, a, d,
e: b measures the driver's memory, which must not follow a's 50,000 decoded images.

a. Serialization: per-image cost, on one core in plain Python, of the assignment's PNG round
   trips (encode RGB, decode, ``convert('L')`` + re-encode, decode) against the raw-bytes path
   (numpy plane reorder + ``sparkvision.features.kernels.rgb_to_gray``, 10,000 images at a time as a
   task does, and on the whole array at once), and the PNG sizes against 3,072 raw bytes.
b. Getting the images into Spark: through the driver (unpickle, a Python list of Rows,
   ``parallelize``, ``createDataFrame``, ``union``, ``count``) with raw bytes and with PNG bytes
   (the assignment's way), against reading the batch files inside tasks
   (``sparkvision.data.sources.cifar.read_batches``); with the driver's peak memory growth.
c. ``union``: the time of the union calls alone (lazy) and the partitions they add up to.
d. UDF styles on the same jobs: grayscale RGB bytes (row-at-a-time Python UDF, Arrow-optimised
   Python UDF, pandas UDF, sparkvision's Arrow UDF), then scale a 1,024-double array by 1/255
   (built-in ``transform``, Python UDF, pandas UDF, Arrow UDF). Each job runs twice on a cached
   input; the second (warm) run is the figure reported.
e. Normalisation: logistic regression, a multilayer perceptron and a random forest on gray
   pixels 0..255 against /255, same split, same seed.

Prints a table per section and writes everything to ``--json``. About 4 minutes on 2 cores (233 s on 2026-11-25).
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import math
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

# Spark's Python workers must run this interpreter (and its virtualenv).
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
from PIL import Image  # noqa: E402
from pyspark import StorageLevel  # noqa: E402
from pyspark.ml.classification import (LogisticRegression, MultilayerPerceptronClassifier,  # noqa: E402
                                       RandomForestClassifier)
from pyspark.ml.functions import vector_to_array  # noqa: E402
from pyspark.sql import DataFrame, Row, SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402
from pyspark.sql.types import (ArrayType, BinaryType, DoubleType, IntegerType, StructField,  # noqa: E402
                               StructType)

from sparkvision.data.ingest import locate_cifar as locate
from sparkvision.data.sources.cifar import CIFAR10, CifarSource, parse_python_batch, planes_to_hwc, read_batches  # noqa: E402
from sparkvision.data.ingest import ingest_cifar  # noqa: E402
from sparkvision.features.kernels import rgb_to_gray  # noqa: E402
from sparkvision.features.pixels import Grayscale, PixelVectorizer
from sparkvision.models.fitting import label_with_classes  # noqa: E402
from sparkvision.data.ingest import split_table  # noqa: E402
from sparkvision.runtime.session import SparkSettings, build_session  # noqa: E402

RAW_BYTES = 32 * 32 * 3


# ── Small helpers: timing and memory ──────────────────────────────────────────────────────────

def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of calling ``fn``."""
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def noop_write(df: DataFrame) -> None:
    """Compute every row and column of ``df`` and throw it away: an action with no output cost."""
    df.write.format("noop").mode("overwrite").save()


def cold_warm(df: DataFrame) -> dict[str, float]:
    """Run the same job twice. The first pays one-off costs (Python workers starting and
    importing numpy, code generation); the second is the steady-state figure we report."""
    cold, _ = timed(lambda: noop_write(df))
    warm, _ = timed(lambda: noop_write(df))
    return {"cold_s": cold, "warm_s": warm}


def _status_kb(pid: int | str, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak(pid: int | str = "self") -> bool:
    """Reset a process's peak-RSS mark (VmHWM) to its current RSS (Linux: clear_refs ``5``), so
    each measurement starts from now; False where that is not possible."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """Peak RSS of a process in MB (VmHWM), or ru_maxrss for this process where /proc is absent."""
    kb = _status_kb(pid, "VmHWM")
    if kb is None and pid == "self":
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux
    return None if kb is None else kb / 1024


def rss_mb(pid: int | str = "self") -> float | None:
    kb = _status_kb(pid, "VmRSS")
    return None if kb is None else kb / 1024


def jvm_pid(spark: SparkSession) -> int | None:
    """The JVM's pid: PySpark starts it with spark-submit, which execs java in place."""
    proc = getattr(spark.sparkContext._gateway, "proc", None)
    return getattr(proc, "pid", None)


class PeakGrowth:
    """How much a block of code raised the peak RSS of the Python driver and of the JVM."""

    def __init__(self, jvm: int | None):
        self.jvm = jvm

    def __enter__(self) -> "PeakGrowth":
        gc.collect()
        self.exact = reset_peak("self")
        self.py0 = rss_mb("self") if self.exact else peak_rss_mb("self")
        self.jvm_exact = self.jvm is not None and reset_peak(self.jvm)
        self.jvm0 = rss_mb(self.jvm) if self.jvm_exact else None
        return self

    def __exit__(self, *exc: Any) -> None:
        self.python_mb = (peak_rss_mb("self") or 0) - (self.py0 or 0)
        self.jvm_mb = (peak_rss_mb(self.jvm) or 0) - self.jvm0 if self.jvm_exact else None

    def as_dict(self) -> dict[str, Any]:
        return {"python_driver_peak_growth_mb": round(self.python_mb, 1),
                "jvm_peak_growth_mb": None if self.jvm_mb is None else round(self.jvm_mb, 1),
                "peak_reset_exact": self.exact}


def subset_source(source: CifarSource, images: int | None) -> CifarSource:
    """The located release cut to the whole batch files that hold ``images`` images."""
    if images is None:
        return source
    per_file = source.records_per_batch or 10_000
    return replace(source, files=source.files[:max(1, math.ceil(images / per_file))])


def load_planes(source: CifarSource, images: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(labels, [N, 3072] R,G,B planes) of the first ``images`` images, read in this process."""
    parts = [parse_python_batch(Path(f.path).read_bytes(), f.path) for f in source.files]
    labels = np.concatenate([p[0] for p in parts])[:images]
    planes = np.concatenate([p[1] for p in parts])[:images]
    return labels, planes


# ── a. Serialization: the PNG round trips against raw bytes ──────────────────────────────────

def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def measure_serialization(planes: np.ndarray) -> dict[str, Any]:
    """Per-image µs of each step of the assignment's PNG path against sparkvision's raw path."""
    n = len(planes)
    hwc = planes_to_hwc(planes).reshape(n, 32, 32, 3)

    # The assignment's load: every image becomes a PNG in the driver.
    t_encode, pngs = timed(lambda: [png_bytes(Image.fromarray(im)) for im in hwc])

    # Its first UDF: decode the PNG ...
    def decode_all() -> list[Image.Image]:
        out = []
        for b in pngs:
            im = Image.open(io.BytesIO(b))
            im.load()  # Pillow decodes lazily; force it so the decode is what we time
            out.append(im)
        return out
    t_decode, images = timed(decode_all)
    # ... convert to gray and re-encode; its second UDF decodes the gray PNG into pixels.
    t_gray_encode, gray_pngs = timed(lambda: [png_bytes(im.convert("L")) for im in images])
    t_gray_decode, gray = timed(lambda: [np.asarray(Image.open(io.BytesIO(b))) for b in gray_pngs])
    del images

    # sparkvision's path: the pixels are already uint8 arrays; reorder planes and weight them,
    # 10,000 images at a time as a task does (one batch file; one Arrow batch at most), and, for
    # comparison, the whole array at once (its temporaries no longer fit in cache).
    def raw_in_batches() -> np.ndarray:
        return np.concatenate([rgb_to_gray(planes_to_hwc(planes[i:i + 10_000])).reshape(-1, 1024)
                               for i in range(0, n, 10_000)])
    t_raw, raw_gray = timed(raw_in_batches)
    t_raw_whole, _ = timed(lambda: rgb_to_gray(planes_to_hwc(planes)))
    same = bool(np.array_equal(np.stack(gray).reshape(n, 1024), raw_gray))

    per = lambda s: s / n * 1e6  # noqa: E731  µs per image
    png_path = t_encode + t_decode + t_gray_encode + t_gray_decode
    return {
        "images": n,
        "us_per_image": {"png_encode_rgb": per(t_encode), "png_decode_rgb": per(t_decode),
                         "convert_L_and_png_encode": per(t_gray_encode), "png_decode_gray": per(t_gray_decode),
                         "png_path_total": per(png_path), "raw_reorder_and_gray": per(t_raw),
                         "raw_reorder_and_gray_whole_array": per(t_raw_whole)},
        "png_path_seconds_total": png_path,
        "raw_path_seconds_total": t_raw,
        "speedup_raw_vs_png": png_path / t_raw,
        "mean_png_bytes_rgb": float(np.mean([len(b) for b in pngs])),
        "mean_png_bytes_gray": float(np.mean([len(b) for b in gray_pngs])),
        "raw_bytes_rgb": RAW_BYTES, "raw_bytes_gray": 1024,
        "pillow_gray_equals_rgb_to_gray": same,
    }


# ── b./c. Into Spark: parallelize from the driver against reading in tasks; union ────────────

ROW_SCHEMA = StructType([StructField("image", BinaryType(), False), StructField("label", IntegerType(), False)])


def to_png(pixels: np.ndarray) -> bytes:
    """The assignment's encoding: 3,072 bytes as R,G,B planes → 32×32×3 image → PNG."""
    return png_bytes(Image.fromarray(pixels.reshape(3, 32, 32).transpose(1, 2, 0)))


def via_driver(spark: SparkSession, source: CifarSource, png: bool) -> dict[str, Any]:
    """The assignment's load (with raw bytes or PNG): per batch, unpickle in the driver, a list of
    Rows, parallelize, createDataFrame; then union the batches and count."""
    sc = spark.sparkContext
    frames, t0 = [], time.perf_counter()
    for f in source.files:
        # parse_python_batch unpickles with pickle, allowing only numpy arrays (never a bare load).
        labels, planes = parse_python_batch(Path(f.path).read_bytes(), f.path)
        if png:
            rows = [Row(image=to_png(px), label=int(y)) for px, y in zip(planes, labels)]
        else:
            hwc = planes_to_hwc(planes)
            rows = [Row(image=px.tobytes(), label=int(y)) for px, y in zip(hwc, labels)]
        # An explicit schema (the assignment infers it) keeps a schema-inference job out of the figure.
        frames.append(spark.createDataFrame(sc.parallelize(rows), ROW_SCHEMA))
        del rows, planes
    t_build = time.perf_counter() - t0

    # c. union is lazy: it only joins the plans. Time the calls alone, and check no job ran.
    sc.setJobGroup("union-only", "union calls")
    t0 = time.perf_counter()
    df = frames[0]
    for other in frames[1:]:
        df = df.union(other)
    t_union = time.perf_counter() - t0
    jobs_during_union = len(sc.statusTracker().getJobIdsForGroup("union-only"))
    sc.setJobGroup("spark-ideas", "measurements")
    parts_in = [fr.rdd.getNumPartitions() for fr in frames]  # building an RDD runs no job
    parts_out = df.rdd.getNumPartitions()

    t_count, n = timed(df.count)
    return {"images": n, "build_s": t_build, "union_s": t_union, "count_s": t_count,
            "total_s": t_build + t_union + t_count, "partitions_in": parts_in, "partitions_union": parts_out,
            "jobs_during_union": jobs_during_union}


def in_tasks(spark: SparkSession, source: CifarSource) -> dict[str, Any]:
    """sparkvision's load: Spark's binaryFile source hands whole batch files to tasks, which parse
    them; the driver only plans."""
    df = read_batches(spark, source)
    t, _ = timed(lambda: noop_write(df))
    return {"images": sum(source.records_per_batch or 10_000 for _ in source.files), "total_s": t,
            "partitions": df.rdd.getNumPartitions()}


def warm_up(spark: SparkSession) -> None:
    """Tiny jobs down the same paths (Python workers, Arrow, createDataFrame from an RDD), so the
    first timed way does not pay one-off start-up costs the others then skip."""
    rows = [Row(image=bytes(RAW_BYTES), label=0)] * 100
    df = spark.createDataFrame(spark.sparkContext.parallelize(rows), ROW_SCHEMA)
    df.union(df).count()
    noop_write(spark.range(100).mapInArrow(lambda it: it, "id long"))


def measure_loading(spark: SparkSession, source: CifarSource) -> dict[str, Any]:
    warm_up(spark)
    jvm = jvm_pid(spark)
    out: dict[str, Any] = {"files": [f.name for f in source.files]}
    # Reading in tasks first: peak marks only rise, and where they cannot be reset an earlier
    # driver copy would hide this one's (small) growth.
    for name, fn in (("tasks_read_batches", lambda: in_tasks(spark, source)),
                     ("driver_parallelize_raw", lambda: via_driver(spark, source, png=False)),
                     ("driver_parallelize_png", lambda: via_driver(spark, source, png=True))):
        with PeakGrowth(jvm) as mem:
            result = fn()
        out[name] = {**result, **mem.as_dict()}
    return out


# ── d. UDF styles: the same job as a Python UDF, an Arrow Python UDF, a pandas UDF, an Arrow UDF ──

def _gray_row(b: bytes) -> bytes:
    return rgb_to_gray(np.frombuffer(b, np.uint8)).tobytes()


def _gray_pandas(s: pd.Series) -> pd.Series:
    # One numpy call for the whole Arrow batch, then cut it back into rows.
    lengths = s.map(len).to_numpy() // 3
    gray = rgb_to_gray(np.frombuffer(b"".join(s), np.uint8))
    ends = np.cumsum(lengths)
    return pd.Series([gray[e - k:e].tobytes() for e, k in zip(ends, lengths)])


def _scale_row(a: list[float]) -> list[float]:
    return [v / 255.0 for v in a]


def _scale_pandas(s: pd.Series) -> pd.Series:
    return pd.Series([a / 255.0 for a in s])


def _scale_arrow(arr: pa.Array) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    values = arr.flatten().to_numpy() / 255.0  # flatten() honours a sliced array's offset
    offsets = np.asarray(arr.offsets, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets - offsets[0]), pa.array(values))


Style = tuple[Callable[[DataFrame], DataFrame], str]  # (build the job's DataFrame, how it runs)


def eval_type(u: Any) -> str:
    """The name of a UDF's evaluation type, so the JSON shows each style is what it claims."""
    from pyspark.util import PythonEvalType

    names = {v: k for k, v in vars(PythonEvalType).items() if k.startswith("SQL_")}
    return names.get(u.evalType, str(u.evalType))


def gray_styles() -> dict[str, Style]:
    row_udf = F.udf(_gray_row, BinaryType(), useArrow=False)
    arrow_py_udf = F.udf(_gray_row, BinaryType(), useArrow=True)
    pandas_udf = F.pandas_udf(_gray_pandas, BinaryType())
    from sparkvision.features.pixels import _gray_udf  # only to name its type; the stage is used below
    return {
        "python_udf_row": (lambda df: df.select(row_udf("data").alias("out")), eval_type(row_udf)),
        "python_udf_arrow": (lambda df: df.select(arrow_py_udf("data").alias("out")), eval_type(arrow_py_udf)),
        "pandas_udf": (lambda df: df.select(pandas_udf("data").alias("out")), eval_type(pandas_udf)),
        "sparkvision_arrow_udf": (lambda df: Grayscale(inputCol="data", outputCol="out").transform(df).select("out"),
                                  eval_type(_gray_udf)),
    }


def scale_styles() -> dict[str, Style]:
    row_udf = F.udf(_scale_row, ArrayType(DoubleType()), useArrow=False)
    pandas_udf = F.pandas_udf(_scale_pandas, ArrayType(DoubleType()))
    arrow_udf = F.arrow_udf(_scale_arrow, ArrayType(DoubleType()))
    return {
        "builtin_transform": (lambda df: df.select(F.transform("pixels", lambda x: x / 255).alias("out")),
                              "built-in (JVM, no Python)"),
        "python_udf_row": (lambda df: df.select(row_udf("pixels").alias("out")), eval_type(row_udf)),
        "pandas_udf": (lambda df: df.select(pandas_udf("pixels").alias("out")), eval_type(pandas_udf)),
        "arrow_udf": (lambda df: df.select(arrow_udf("pixels").alias("out")), eval_type(arrow_udf)),
    }


def same_outputs(df: DataFrame, styles: dict[str, Style], n: int = 64) -> bool:
    """Every style gives exactly the same values on the first ``n`` rows."""
    sample = df.limit(n).cache()
    try:
        outs = [[tuple(r.out) for r in build(sample).collect()] for build, _ in styles.values()]
    finally:
        sample.unpersist()
    return len(outs[0]) > 0 and all(o == outs[0] for o in outs[1:])


def race(df: DataFrame, n: int, styles: dict[str, Style]) -> dict[str, Any]:
    out = {}
    for name, (build, kind) in styles.items():
        t = cold_warm(build(df))
        out[name] = {"eval_type": kind, **t, "images_per_s": n / t["warm_s"]}
    return out


def measure_udfs(spark: SparkSession, source: CifarSource, work: Path, images: int | None) -> dict[str, Any]:
    # The image table, as `sparkvision run` makes it (read in tasks, written as Parquet).
    t_ingest, table = timed(lambda: ingest_cifar(spark, source, work, progress=False))
    rgb = table.df.select("data")
    if images is not None:
        rgb = rgb.limit(images)
    rgb = rgb.persist(StorageLevel.MEMORY_ONLY)
    n = rgb.count()  # fills the cache: reading Parquet is not part of what we time

    gray = gray_styles()
    sample = rgb.limit(16).collect()
    pillow_same = all(bytes(r.out) == Image.frombytes("RGB", (32, 32), bytes(s.data)).convert("L").tobytes()
                      for r, s in zip(gray["python_udf_row"][0](spark.createDataFrame(sample)).collect(), sample))
    gray_result = {"identical_outputs": same_outputs(rgb, gray), "equal_to_pillow_convert_L": pillow_same,
                   "styles": race(rgb, n, gray)}

    # An array<double> column of 0..255 pixel values, the input of the second job.
    pixels = PixelVectorizer(inputCol="gray", outputCol="v", maxValue=1.0).transform(
        Grayscale(inputCol="data", outputCol="gray").transform(rgb))
    arr = pixels.select(vector_to_array("v").alias("pixels")).persist(StorageLevel.MEMORY_ONLY)
    arr.count()
    rgb.unpersist()
    scale = scale_styles()
    scale_result = {"identical_outputs": same_outputs(arr, scale), "styles": race(arr, n, scale)}
    arr.unpersist()
    return {"images": n, "ingest_table_s": t_ingest, "grayscale": gray_result, "scale_array": scale_result}


# ── e. Normalisation: 0..255 against /255 for gradient-based and tree models ──────────────────

def _iterations(model: Any) -> tuple[int | None, float | None]:
    """(iterations, final training loss) from a model's training summary, where it has one."""
    try:
        summary = model.summary
        summary = summary() if callable(summary) else summary
        history = list(summary.objectiveHistory)
        iterations = int(summary.totalIterations)
    except Exception:  # no summary for this model type
        return None, None
    if iterations == 0:  # trees are not iterative: their summary says 0
        return None, None
    return iterations, float(history[-1]) if history else None


def compare_scaling(make: Callable[[str], Any], train: DataFrame, test: DataFrame) -> dict[str, Any]:
    """Fit ``make(features column)`` on 0..255 and on /255; accuracies and agreement on test."""
    out: dict[str, Any] = {}
    models = {}
    for col in ("x255", "x01"):
        t, model = timed(lambda: make(col).fit(train))
        iters, loss = _iterations(model)
        models[col] = model
        out[col] = {"fit_s": t, "iterations": iters, "final_loss": loss}
    pred = test
    for col, model in models.items():  # both models predict on the same rows, side by side
        model = model.copy()
        for setter, name in (("setPredictionCol", "p"), ("setRawPredictionCol", "raw"),
                             ("setProbabilityCol", "prob")):
            if hasattr(model, setter):
                getattr(model, setter)(f"{name}_{col}")
        pred = model.transform(pred)
    row = pred.agg(F.avg((F.col("label") == F.col("p_x255")).cast("double")).alias("a255"),
                   F.avg((F.col("label") == F.col("p_x01")).cast("double")).alias("a01"),
                   F.avg((F.col("p_x255") == F.col("p_x01")).cast("double")).alias("agree")).head()
    out["x255"]["accuracy"], out["x01"]["accuracy"], out["prediction_agreement"] = row.a255, row.a01, row.agree
    return out


def measure_scaling(spark: SparkSession, table_df: DataFrame, class_names: tuple[str, ...],
                    images: int | None) -> dict[str, Any]:
    n = min(images or 10_000, 10_000)
    # The first batch file's first n images, and the same seeded hash split `sparkvision run` uses.
    index = F.split("id", ":").getItem(1).cast("int")
    subset = table_df.filter(F.col("id").startswith("data_batch_1:") & (index < n))
    subset = label_with_classes(subset, class_names)
    gray = Grayscale(inputCol="data", outputCol="gray").transform(subset)
    feats = PixelVectorizer(inputCol="gray", outputCol="x255", maxValue=1.0).transform(gray)
    feats = PixelVectorizer(inputCol="gray", outputCol="x01", maxValue=255.0).transform(feats)
    feats = feats.select("id", "label", "x255", "x01")
    train, test = split_table(feats, has_test=False, test_fraction=0.2, seed=42)
    train, test = train.persist(StorageLevel.MEMORY_ONLY), test.persist(StorageLevel.MEMORY_ONLY)
    n_train, n_test = train.count(), test.count()
    # Untimed short fits of each model type first, so neither timed fit pays the JVM's warm-up.
    LogisticRegression(featuresCol="x01", maxIter=3, family="multinomial").fit(train)
    MultilayerPerceptronClassifier(featuresCol="x01", layers=[1024, 4, 10], maxIter=3, seed=42).fit(train)
    RandomForestClassifier(featuresCol="x01", numTrees=2, maxDepth=2, seed=42).fit(train)
    try:
        return {
            "images": n_train + n_test, "train": n_train, "test": n_test,
            # standardization=False only changes how a penalty is weighed; with regParam 0 there is none.
            "logistic_regression": compare_scaling(lambda c: LogisticRegression(
                featuresCol=c, maxIter=50, family="multinomial", standardization=False), train, test),
            "mlp": compare_scaling(lambda c: MultilayerPerceptronClassifier(
                featuresCol=c, layers=[1024, 32, 10], maxIter=50, seed=42), train, test),
            "random_forest": compare_scaling(lambda c: RandomForestClassifier(
                featuresCol=c, numTrees=10, maxDepth=5, seed=42), train, test),
        }
    finally:
        train.unpersist()
        test.unpersist()


# ── Printing ─────────────────────────────────────────────────────────────────────────────────

def print_report(r: dict[str, Any]) -> None:
    a = r["a_serialization"]
    print(f"\na. serialization, one core, plain Python, {a['images']:,} images (µs per image)")
    for k, v in a["us_per_image"].items():
        print(f"   {k:<34}{v:9.1f}")
    print(f"   raw path is {a['speedup_raw_vs_png']:.0f}x faster than the PNG path; "
          f"Pillow gray == rgb_to_gray: {a['pillow_gray_equals_rgb_to_gray']}")
    print(f"   mean PNG size: RGB {a['mean_png_bytes_rgb']:.0f} B (raw {a['raw_bytes_rgb']}), "
          f"gray {a['mean_png_bytes_gray']:.0f} B (raw {a['raw_bytes_gray']})")

    b = r["b_loading"]
    print(f"\nb. into a Spark DataFrame ({', '.join(b['files'])})")
    print(f"   {'way':<24}{'images':>8}{'seconds':>9}{'py peak +MB':>13}{'JVM peak +MB':>14}  (run order)")
    for i, k in enumerate(("tasks_read_batches", "driver_parallelize_raw", "driver_parallelize_png"), 1):
        v = b[k]
        jvm = "n/a" if v["jvm_peak_growth_mb"] is None else f"{v['jvm_peak_growth_mb']:.0f}"
        print(f"   {k:<24}{v['images']:>8,}{v['total_s']:9.2f}{v['python_driver_peak_growth_mb']:13.0f}{jvm:>14}  ({i})")
    print("   py peak: growth of this Python driver's peak RSS, reset before each way; memory freed by one way\n"
          "   is reused by the next. JVM peak: in local mode the driver and the executors are one JVM, whose\n"
          "   heap grows once and stays, so the first way pays for it: not a driver-vs-executor figure.")
    print(f"   tasks_read_batches: {b['tasks_read_batches']['partitions']} partitions (binaryFile packs whole files "
          "into splits of about total size / cores)")
    for k in ("driver_parallelize_raw", "driver_parallelize_png"):
        v = b[k]
        print(f"   {k}: driver build {v['build_s']:.2f} s + union {v['union_s'] * 1e3:.1f} ms + count {v['count_s']:.2f} s")

    c = r["c_union"]
    print(f"\nc. union of {len(c['partitions_in'])} DataFrames: {c['union_ms']:.2f} ms, {c['jobs_during_union']} "
          f"Spark jobs; partitions {' + '.join(map(str, c['partitions_in']))} = {c['partitions_union']}")

    d = r["d_udfs"]
    print(f"\nd. UDF styles, {d['images']:,} images, cached input, noop write; warm = second run "
          f"(image table ingested in {d['ingest_table_s']:.1f} s)")
    for job, title in (("grayscale", "grayscale RGB bytes → gray bytes"),
                       ("scale_array", "scale array<double>[1024] by 1/255")):
        print(f"   {title}: identical outputs {d[job]['identical_outputs']}"
              + (f", equal to Pillow {d[job]['equal_to_pillow_convert_L']}" if job == "grayscale" else ""))
        print(f"   {'style':<24}{'cold s':>8}{'warm s':>8}{'images/s':>11}")
        for k, v in d[job]["styles"].items():
            print(f"   {k:<24}{v['cold_s']:8.2f}{v['warm_s']:8.2f}{v['images_per_s']:11,.0f}   {v['eval_type']}")

    e = r["e_scaling"]
    print(f"\ne. normalisation, {e['images']:,} images of data_batch_1 ({e['train']:,} train / {e['test']:,} test)")
    print(f"   {'model':<22}{'input':<8}{'accuracy':>9}{'iters':>7}{'fit s':>8}{'final loss':>12}")
    for m in ("logistic_regression", "mlp", "random_forest"):
        for col, label in (("x255", "0..255"), ("x01", "/255")):
            v = e[m][col]
            iters = "-" if v["iterations"] is None else str(v["iterations"])
            loss = "-" if v["final_loss"] is None else f"{v['final_loss']:.4f}"
            print(f"   {m:<22}{label:<8}{v['accuracy']:9.2%}{iters:>7}{v['fit_s']:8.2f}{loss:>12}")
        print(f"   {'':<22}predictions agree on {e[m]['prediction_agreement']:.2%} of the test images")
    print(f"\ntotal {r['seconds_total']:.0f} s")


# ── Main ─────────────────────────────────────────────────────────────────────────────────────

def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default="/tmp/cifar", help="folder holding cifar-10-batches-py")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--images", type=int, help="use about this many images (quick check)")
    args = ap.parse_args(argv)
    if args.images is not None and args.images < 1:
        ap.error("--images must be positive")

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="spark-ideas-"))
    result: dict[str, Any] = {
        "date": datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "master": "local[2]",
    }
    try:
        source = subset_source(locate(args.data, work, CIFAR10, progress=False), args.images)
        spark = build_session(SparkSettings(master="local[2]", conf={"spark.ui.enabled": "false"}),
                              show_progress=False)
        spark.sparkContext.setJobGroup("spark-ideas", "measurements")
        result["versions"] = {"spark": spark.version, "numpy": np.__version__, "pyarrow": pa.__version__,
                              "pandas": pd.__version__, "pillow": Image.__version__}
        try:
            # b. runs before a.: its driver-memory figures need a Python process that has not yet
            # held (and freed into its allocator) 50,000 decoded images.
            print(f"b. parallelize vs reading in tasks ({len(source.files)} batch file(s)) ...",
                  file=sys.stderr, flush=True)
            result["b_loading"] = measure_loading(spark, source)
            raw = result["b_loading"]["driver_parallelize_raw"]
            result["c_union"] = {"union_ms": raw["union_s"] * 1e3, "jobs_during_union": raw["jobs_during_union"],
                                 "partitions_in": raw["partitions_in"], "partitions_union": raw["partitions_union"],
                                 "count_after_union_s": raw["count_s"]}
            print("a. serialization (plain Python, Spark idle) ...", file=sys.stderr, flush=True)
            _, planes = load_planes(source, args.images)
            result["a_serialization"] = measure_serialization(planes)
            del planes
            gc.collect()
            print("d. UDF styles ...", file=sys.stderr, flush=True)
            result["d_udfs"] = measure_udfs(spark, source, work, args.images)
            print("e. normalisation ...", file=sys.stderr, flush=True)
            table = ingest_cifar(spark, source, work, progress=False)  # reused: written in d.
            result["e_scaling"] = measure_scaling(spark, table.df, table.info.class_names, args.images)
        finally:
            spark.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["seconds_total"] = time.perf_counter() - started
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
