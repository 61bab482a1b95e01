"""The Python driver of sparkvision's resident Spark Connect server (run by spark-submit, not imported).

``sparkvision server start`` runs ``spark-submit ... connect_host.py`` with Spark Connect's own
service as a driver plugin (``spark.plugins=org.apache.spark.sql.connect.SparkConnectPlugin``)
and artifact isolation off. Spark's ``SparkConnectServer`` main class forces isolation on, and
with it every client session gets a Python daemon and workers of its own: each run paid 2-4 s
to start them and import pyarrow, pandas and pyspark.ml again, and the server kept one idle
daemon per past client. Here all sessions share one set of Python workers, warm after the first run.

This file only starts the session, then waits; it imports nothing but pyspark. It ends when its
JVM does (its parent process, which ``sparkvision server stop`` signals), or on SIGTERM.
"""

import os
import signal
import threading
import time


def main() -> None:
    """Start the Spark session (the plugin starts the Connect service with it) and wait."""
    from pyspark.sql import SparkSession

    parent = os.getppid()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    spark = SparkSession.builder.getOrCreate()
    print("sparkvision: the Spark Connect service runs in this driver", flush=True)
    # A JVM killed outright cannot tell its Python child: the parent's pid changing says it.
    while not stopping.is_set() and os.getppid() == parent:
        time.sleep(0.5)
    if os.getppid() == parent:
        spark.stop()


if __name__ == "__main__":
    main()
