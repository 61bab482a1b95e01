"""Starting the executors' Python workers early, on the feature UDFs' own path, while the driver
reads the image table and plans the fit."""

from __future__ import annotations

import threading

from pyspark.sql import functions as F

from sparkvision.features.pixels import Grayscale, PixelVectorizer
from sparkvision.runtime.connect import parallelism

WARM_UP_GROUP = "sparkvision-warm-workers"  # the warm-up job's Spark job group


def warm_python_workers(spark) -> threading.Thread:
    """Start the executors' Python workers now, in the background, on the feature UDFs' own path.

    Spark starts a Python worker inside the first task that needs one: with the image table
    already written, that is the fit's first task, which then waits a second or more for the
    worker to start and import what the feature UDFs use, and for the JVM's first Arrow-UDF job
    (its classes loaded, its code run for the first time). A tiny job (job group
    :data:`WARM_UP_GROUP`), run in a thread while the driver reads the table and plans the fit,
    does both earlier: it runs Grayscale and PixelVectorizer on two blank 2×2 images per core,
    so its workers are the ones the feature UDFs reuse (``spark.python.worker.reuse``, on by
    default). Failures are ignored: the real tasks start their own workers as before. Returns
    the thread.

    Classic sessions only. sparkvision's own Connect server keeps its workers warm from one
    client to the next (:mod:`sparkvision.runtime.server`); on another Connect server each session
    gets workers of its own, but a client has next to nothing to do before its fit, so the
    warm-up job would start with the fit's first job (measured on 2026-12-01: no gain).
    """
    tasks = parallelism(spark)

    def run() -> None:
        try:
            spark.sparkContext.setJobGroup(WARM_UP_GROUP, "start the Python workers", interruptOnCancel=False)
            blank = spark.range(0, 2 * tasks, 1, tasks).select(F.lit(bytes(12)).alias("data"))  # 2×2 RGB
            gray = Grayscale(inputCol="data", outputCol="gray").transform(blank)
            PixelVectorizer(inputCol="gray", outputCol="v").transform(gray).select("v").collect()
        except Exception:  # a stopped session, a cluster without our package: nothing lost
            pass

    thread = threading.Thread(target=run, name="sparkvision-warm-workers", daemon=True)
    thread.start()
    return thread
