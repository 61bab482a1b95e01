"""Building the SparkSession: local mode by default, any ``--master``, memory settings, Java check.

Driver memory defaults to a share of this machine's memory (``memory.size_memory``); the others
are the assignment's (executor memory 4g, 512m overhead, 100 shuffle partitions). Every one can
be overridden from the command line.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import sparkvision
from sparkvision import defaults
from sparkvision.defaults import (
    APP_NAME,
    EXECUTOR_MEMORY,
    MASTER,
    MEMORY_OVERHEAD,
    SHUFFLE_PARTITIONS,
)
from sparkvision.errors import ConfigError, JavaNotFoundError
from sparkvision.runtime import class_archive as jvm_cds
from sparkvision.runtime.connect import connect_session, remote_url
from sparkvision.runtime.java import java_binary, java_version
from sparkvision.runtime.cluster import ship_package, submitted_conf, wait_for_executors
from sparkvision.runtime.memory import (GiB, MiB, check_driver_memory, default_driver_memory, format_memory,
                                        machine_memory, parse_memory)

_MEMORY = re.compile(r"^\d+[kmgt]?$", re.I)


def _check_memory(name: str, value: str) -> str:
    if not _MEMORY.match(value):
        raise ConfigError(f"{name} {value!r} is not a memory size: use a number with k, m, g or t, e.g. 4g.")
    return value


@dataclass
class SparkSettings:
    """How to start Spark. Memory values are JVM sizes such as ``4g`` or ``512m``."""
    master: str = MASTER
    driver_memory: str = field(default_factory=default_driver_memory)  # sized from the machine: memory.size_memory
    executor_memory: str = EXECUTOR_MEMORY      # used on a cluster; in local mode the driver is the executor
    memory_overhead: str = MEMORY_OVERHEAD    # off-heap room per executor, mostly for Python workers
    shuffle_partitions: int = SHUFFLE_PARTITIONS
    app_name: str = APP_NAME
    conf: dict[str, str] = field(default_factory=dict)  # any other spark.* setting, applied last
    remote: str | None = None  # sc://HOST:PORT or "local": a Spark Connect server instead (default $SPARK_REMOTE)


# Spark 4.3 feeds Arrow UDFs columnar input when this is on, and on that path it cannot turn a
# vector (a user-defined type) returned by Python into columns: a cached result fails with
# UNSUPPORTED_DATATYPE. build_session turns it off; features.vectors_from_python reads it.
COLUMNAR_INPUT = defaults.COLUMNAR_INPUT


def _is_loopback_master(master: str) -> bool:
    return master.startswith("local") or bool(re.match(r"spark://(127\.0\.0\.1|localhost)[:/]", master))


_MASTER = re.compile(r"local(\[(\d+|\*)(,\d+)?\])?|local-cluster\[\d+,\d+,\d+\]|yarn|spark://\S+|k8s://\S+")


def check_master(master: str, from_conf: bool = False) -> None:
    """Refuse, before the JVM starts, a master URL Spark would refuse: it says so in a Java stack
    trace and the JVM exits before PySpark can say why.

    >>> check_master("local[2]"), check_master("spark://127.0.0.1:7077")
    (None, None)
    """
    if not _MASTER.fullmatch(master):
        given = f"--conf spark.master={master}" if from_conf else f"master {master!r} (--master)"
        raise ConfigError(f"{given}: not a master URL Spark takes. Give local, local[N], local[*], local[N,RETRIES], "
                          "spark://HOST:PORT (a standalone cluster), k8s://URL or yarn.")


def build_session(settings: SparkSettings | None = None, *, show_progress: bool | None = None):
    """Start (or reuse) a SparkSession configured from ``settings``.

    Local mode binds the driver to 127.0.0.1, so nothing listens on other interfaces, and its
    Python workers use this interpreter unless PYSPARK_PYTHON says otherwise. Spark's console progress
    bar is shown only when stderr is a terminal (``show_progress`` overrides). A driver memory
    that cannot fit in this machine is refused before the JVM starts. Launched by spark-submit,
    its settings win (its JVM already runs) and ``settings`` fill in the rest. On a cluster
    master the package is shipped to the executors (``runtime.cluster.ship_package``); a standalone
    master that gives no executor is an error (``cluster.wait_for_executors``).
    """
    import pyspark
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    s = settings or SparkSettings()
    remote = s.remote or remote_url()
    if remote:  # a Connect client: the server has its own JVM, memory and master
        conf = {"spark.sql.shuffle.partitions": str(s.shuffle_partitions), **s.conf}
        return connect_session(remote, conf=conf, progress=show_progress is not False)
    for name, value in (("driver memory", s.driver_memory), ("executor memory", s.executor_memory),
                        ("memory overhead", s.memory_overhead)):
        _check_memory(name, value)
    if s.shuffle_partitions < 1:
        raise ConfigError(f"shuffle partitions must be at least 1, not {s.shuffle_partitions}.")
    _, java_line = java_version()
    java = java_binary() or "java"
    driver_memory = s.conf.get("spark.driver.memory", s.driver_memory)
    submitted = submitted_conf()
    # --conf spark.master, set after the builder's master, is the one Spark uses
    master = submitted.get("spark.master", s.conf.get("spark.master", s.master))
    archive = jvm_cds.ArchivePlan("")
    if not submitted and SparkContext._active_spark_context is None:  # the JVM starts here: check it fits first
        check_master(master, "spark.master" in s.conf)
        check_driver_memory(driver_memory, *machine_memory())
        archive = jvm_cds.plan(java, java_line, pyspark.__version__)
    if show_progress is None:
        show_progress = sys.stderr.isatty()
    log_conf = Path(__file__).with_name("log4j2.properties")
    conf = {
        "spark.driver.memory": s.driver_memory,
        "spark.executor.memory": s.executor_memory,
        "spark.executor.memoryOverhead": s.memory_overhead,
        "spark.sql.shuffle.partitions": str(s.shuffle_partitions),
        "spark.ui.showConsoleProgress": str(bool(show_progress)).lower(),
        # Arrow batches of 2,048 rows, not 10,000: a batch of patch features (8,000 values a row)
        # would otherwise be 640 MB at each JVM/Python crossing.
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(defaults.ARROW_BATCH_ROWS),
        # Spark 4.3's columnar input to Arrow UDFs cannot take vectors back from Python; with it
        # off, PixelVectorizer hands Spark vectors directly (features.vectors_from_python).
        COLUMNAR_INPUT: "false",
        # The ridge's sums reach the driver one partition at a time (toLocalIterator): at large K a
        # partition's share passes Spark's default 1g limit on one result. Half the driver's heap.
        "spark.driver.maxResultSize": format_memory(max(GiB, parse_memory(driver_memory) // 2 // MiB * MiB)),
        # The user's own options (--conf) come after ours, so theirs win where they clash.
        "spark.driver.extraJavaOptions": " ".join(filter(None, (
            f"-Dlog4j2.configurationFile=file:{log_conf}", archive.options,
            s.conf.get("spark.driver.extraJavaOptions")))),
    }
    if _is_loopback_master(master):
        # Executors on this machine run this interpreter; on a real cluster the workers' own
        # Python is used unless PYSPARK_PYTHON or spark.pyspark.python says otherwise.
        conf["spark.pyspark.python"] = os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # nothing listens on other interfaces
        conf["spark.driver.host"] = "127.0.0.1"
        conf["spark.driver.bindAddress"] = "127.0.0.1"
    conf.update({k: v for k, v in s.conf.items() if k != "spark.driver.extraJavaOptions"})
    if submitted:  # spark-submit's own settings stand, and its JVM's memory can no longer change
        conf = {k: v for k, v in conf.items() if k not in submitted and k != "spark.driver.memory"}
    builder = SparkSession.builder.master(master).appName(s.app_name)
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        try:
            spark = builder.getOrCreate()
        except Exception:
            if archive.mapping is None or jvm_cds.usable(java, archive.mapping):
                raise
            # The class archive is damaged: remove it and start the ordinary way.
            archive.mapping.unlink(missing_ok=True)
            options = conf["spark.driver.extraJavaOptions"].replace(archive.options, "")
            archive = jvm_cds.ArchivePlan("")
            spark = builder.config("spark.driver.extraJavaOptions", " ".join(options.split())).getOrCreate()
    except Exception as exc:  # the JVM did not start: say why in one paragraph
        raise ConfigError(
            f"Spark could not start with master {master!r}, driver memory {s.driver_memory}: "
            f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}. "
            "Check --master and the memory settings (they must fit in this machine's memory)."
        ) from exc
    if archive.writing is not None:
        archive.started(spark._jvm.java.lang.ProcessHandle.current().pid())
    spark.sparkContext.setLogLevel("ERROR")
    ship_package(spark)
    wait_for_executors(spark)
    return spark


def versions(spark) -> dict[str, str]:
    """The versions a run's metrics record: sparkvision, Spark, Python, numpy, pyarrow, pandas, Java."""
    import numpy
    import pandas
    import pyarrow

    return {"sparkvision": sparkvision.__version__, "spark": spark.version, "python": platform.python_version(),
            "numpy": numpy.__version__, "pyarrow": pyarrow.__version__, "pandas": pandas.__version__,
            "java": _java_line()}


def _java_line() -> str:
    try:
        return java_version()[1]
    except JavaNotFoundError:  # a Spark Connect client needs no Java: the server has its own
        return "none on this client"
