"""What running on a cluster needs beyond local mode: the package shipped to the executors, and
spark-submit's settings respected, and a standalone master that cannot give executors is an error,
not a silent wait.

Tasks import sparkvision (the batch reader, the image decoder, the feature stages), so every
executor must have the driver's code. :func:`ship_package` sends it as a zip with
``addPyFile``; the workers need only its dependencies (``pyproject.toml``: numpy, pyarrow, …).
``tests/test_cluster.py`` proves it on a standalone cluster whose workers' Python cannot import
an installed sparkvision.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

from sparkvision.errors import ConfigError

_ZIPS: dict[str, str] = {}  # package folder -> its zip, made once per process


def submitted_conf() -> dict[str, str]:
    """The settings spark-submit gave, when it launched this process; empty otherwise.

    spark-submit starts the driver's JVM first (with its ``--master``, ``--driver-memory`` and
    ``--conf``) and then this Python; a session built here must not override them.
    """
    if "PYSPARK_GATEWAY_PORT" not in os.environ:  # set by spark-submit for the Python it launches
        return {}
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # connects to spark-submit's running JVM; starts none
    return dict(SparkConf().getAll())


def _package() -> Path:
    """The imported ``sparkvision`` package's folder."""
    import sparkvision

    return Path(sparkvision.__file__).resolve().parent


def _package_files(package: Path) -> list[Path]:
    """The package's files (no bytecode), sorted."""
    return [f for f in sorted(package.rglob("*"))
            if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc"]


def package_fingerprint() -> str:
    """A digest of the imported package's files (names and contents): equal only for the same code."""
    import hashlib

    package = _package()
    digest = hashlib.sha256()
    for file in _package_files(package):
        digest.update(str(file.relative_to(package)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def package_zip() -> str:
    """The imported ``sparkvision`` package as a zip (made once per process, removed at exit)."""
    import sparkvision

    package = _package()
    if str(package) not in _ZIPS:
        folder = tempfile.mkdtemp(prefix="sparkvision-pyfiles-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        path = Path(folder) / f"sparkvision-{sparkvision.__version__}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for file in _package_files(package):
                zf.write(file, Path("sparkvision") / file.relative_to(package))
        _ZIPS[str(package)] = str(path)
    return _ZIPS[str(package)]


EXECUTOR_WAIT = "spark.sparkvision.executorWaitSeconds"  # how long a standalone master may take to give executors
DEFAULT_EXECUTOR_WAIT = 120


def wait_for_executors(spark) -> None:
    """On a standalone master (``spark://``), wait until at least one executor has registered;
    raise :class:`ConfigError` when none has within ``spark.sparkvision.executorWaitSeconds``.

    A standalone master that has no worker able to hold an executor of ``--executor-memory``
    leaves the application waiting, silently, forever (seen with two 1g workers and the default
    4g; ``tests/test_cluster.py`` checks the error). With dynamic allocation, executors come
    only with tasks, so nothing is checked then.
    """

    sc = spark.sparkContext
    conf = sc.getConf()
    if not sc.master.startswith("spark://") or conf.get("spark.dynamicAllocation.enabled", "false") == "true":
        return
    wait = float(conf.get(EXECUTOR_WAIT, str(DEFAULT_EXECUTOR_WAIT)))
    memory = conf.get("spark.executor.memory", "1g")  # Spark's own default when nothing set it
    deadline = time.monotonic() + wait
    while sc._jsc.sc().getExecutorMemoryStatus().size() < 2:  # the driver's own block manager is one
        if time.monotonic() > deadline:
            spark.stop()
            raise ConfigError(
                f"the standalone master {sc.master} gave this application no executor in {wait:.0f} s. Each "
                f"executor needs {memory} of memory (--executor-memory) and a core on one worker: if no worker "
                "offers that much (a worker offers its --memory, or SPARK_WORKER_MEMORY), lower --executor-memory; "
                f"if the cluster is busy, wait longer with --conf {EXECUTOR_WAIT}=600.")
        time.sleep(0.5)


def ship_package(spark) -> str | None:
    """On a cluster master, send this process's sparkvision code to the executors; the zip's path.

    The zip goes first on each executor's Python path, so executors run the driver's code
    whatever version, if any, the workers have installed. Local masters need nothing shipped
    (their tasks run this machine's Python), and get ``None``.
    """
    sc = spark.sparkContext
    if sc.master.startswith("local"):
        return None
    path = package_zip()
    sc.addPyFile(path)  # Spark ignores a path it already has, so a reused session is fine
    return path
