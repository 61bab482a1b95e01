"""sparkvision on a real Spark standalone cluster: a master and two one-core workers, all on
127.0.0.1, started with pyspark's own launcher (``bin/spark-class``).

The workers' Python cannot import the installed sparkvision (see ``worker_python``), so a run
that works proves the package reaches the executors as it must on a real cluster: shipped by
the driver (``cluster.ship_package``). The cluster tests are slow (minutes on a busy 2-core
machine): marked ``cluster``, run by ``make cluster-test`` and left out of ``make test``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from helpers import ROOT
from sparkvision.errors import JavaNotFoundError

RUN_TIMEOUT = 420  # seconds: a run that cannot get executors waits forever; fail instead


def _java_or_skip() -> None:
    from sparkvision.runtime.java import java_version

    try:
        java_version()
    except JavaNotFoundError as err:
        pytest.skip(f"no usable Java, so no Spark cluster: {err}")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StandaloneCluster:
    """A standalone master and workers on 127.0.0.1, each in its own process group."""

    def __init__(self, base: Path) -> None:
        import pyspark

        self.home = Path(pyspark.__file__).resolve().parent  # pip's pyspark is a whole Spark install
        self.spark_class = self.home / "bin" / "spark-class"
        self.base = base
        self.port, self.ui_port = free_port(), free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.master: subprocess.Popen | None = None
        self.workers: list[tuple[subprocess.Popen, Path]] = []  # (process, its work dir)
        (base / "conf").mkdir(parents=True, exist_ok=True)  # an empty conf dir: no user defaults leak in

    def _env(self) -> dict[str, str]:
        return {**os.environ, "SPARK_HOME": str(self.home), "SPARK_CONF_DIR": str(self.base / "conf"),
                "SPARK_LOCAL_IP": "127.0.0.1",  # nothing listens on other interfaces
                # the master's REST submission server would take the fixed port 6066
                "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false"}

    def _start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.base / f"{name}.log", "wb")
        try:
            return subprocess.Popen([str(self.spark_class), *args], stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=self._env(), start_new_session=True)
        finally:
            log.close()  # the child keeps its own copy

    def start_master(self) -> None:
        self.master = self._start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                  "--port", str(self.port), "--webui-port", str(self.ui_port))

    def start_worker(self) -> None:
        work = self.base / f"worker-{len(self.workers)}"
        work.mkdir()
        proc = self._start(work.name, "org.apache.spark.deploy.worker.Worker", self.url, "--host", "127.0.0.1",
                           "--port", str(free_port()), "--webui-port", str(free_port()), "--cores", "1",
                           "--memory", "1g", "--work-dir", str(work))
        self.workers.append((proc, work))

    def state(self) -> dict:
        """The master's own view (its web UI's JSON), or {} while it is not up."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as resp:
                return json.loads(resp.read())
        except OSError:
            return {}

    def wait_for_workers(self, n: int, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.state().get("aliveworkers", 0) >= n:
                return
            if self.master is not None and self.master.poll() is not None:
                break
            time.sleep(0.5)
        logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in self.base.glob("*.log"))
        raise RuntimeError(f"the standalone cluster did not come up with {n} workers:\n{logs}")

    def ensure_workers(self, n: int) -> None:
        """Start workers until ``n`` are alive (a test before may have killed one)."""
        alive = sum(p.poll() is None for p, _ in self.workers)
        for _ in range(n - alive):
            self.start_worker()
        self.wait_for_workers(n)

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        """SIGKILL a daemon's whole process group: the JVM and any executor it launched."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def stop(self) -> None:
        for proc, _ in self.workers:
            self.kill(proc)
        if self.master is not None:
            self.kill(self.master)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running standalone cluster of two one-core, 1g workers; stopped whatever happens."""
    _java_or_skip()
    c = StandaloneCluster(tmp_path_factory.mktemp("standalone"))
    try:
        c.start_master()
        c.start_worker()
        c.start_worker()
        c.wait_for_workers(2)
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def worker_python(tmp_path_factory) -> str:
    """A Python for the executors that has sparkvision's dependencies but not sparkvision itself.

    ``-S`` skips site-packages and its ``.pth`` files (an editable install is one); the path is
    rebuilt from links to every installed distribution except sparkvision. The workers share this
    machine's venv, so without this a run would work even if nothing were shipped.
    """
    base = tmp_path_factory.mktemp("worker-python")
    site = base / "site-packages"
    site.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.lower().startswith(("sparkvision", "__editable__")):
            (site / entry.name).symlink_to(entry)
    wrapper = base / "python"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="${{PYTHONPATH:+$PYTHONPATH:}}{site}" exec {sys.executable} -S "$@"\n')
    wrapper.chmod(0o755)
    check = subprocess.run([str(wrapper), "-c", "import numpy, pyarrow, pandas, PIL, pyspark\nimport sparkvision"],
                           capture_output=True, text=True, cwd=base)
    assert "No module named 'sparkvision'" in check.stderr, check.stderr  # the dependencies import; sparkvision not
    return str(wrapper)


def _run_args(data: Path, out: Path, work: Path) -> list[str]:
    return ["run", "--data", str(data), "--out", str(out), "--work-dir", str(work), "--seed", "42",
            "--driver-memory", "1g", "--conf", "spark.ui.enabled=false"]


@pytest.fixture(scope="module")
def local_run(spark, cifar_py, tmp_path_factory) -> Path:
    """The same run in local mode (in this process, on the shared local[2] session): the
    reference every cluster run must equal."""
    from sparkvision.cli import main

    base = tmp_path_factory.mktemp("local")
    assert main(_run_args(cifar_py, base / "out", base / "work") + ["--quiet"]) == 0
    return base / "out"


def _same_results(spark, out: Path, reference: Path) -> None:
    """Equal metrics, and the very same forest (the synthetic classes are easy: equal accuracy alone is weak)."""
    from pyspark.ml import PipelineModel

    got, want = (json.loads((p / "metrics.json").read_text()) for p in (out, reference))
    for key in ("accuracy", "f1_macro", "per_class_accuracy", "confusion_matrix", "num_evaluated"):
        assert got[key] == want[key], key
    assert got["data"]["num_images"] == want["data"]["num_images"] == 400
    # every split and leaf of every tree; the first line names the model's random uid
    trees = [PipelineModel.load(str(p / "model")).stages[-1].toDebugString.split("\n", 1)[1] for p in (out, reference)]
    assert trees[0] == trees[1] and trees[0].count("Tree ") == 10


def _cluster_env(worker_python: str) -> dict[str, str]:
    # spark.pyspark.python: the executors' Python, which cannot import an installed sparkvision
    return {**os.environ, "PYSPARK_PYTHON": worker_python}


@pytest.mark.cluster
def test_run_on_the_cluster_equals_local_mode(spark, cluster, worker_python, local_run, cifar_py, tmp_path):
    cluster.ensure_workers(2)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "sparkvision", *_run_args(cifar_py, out, tmp_path / "work"),
                           "--master", cluster.url, "--executor-memory", "512m"],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT, env=_cluster_env(worker_python))
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["spark_master"] == cluster.url
    assert not metrics["data"]["table_reused"]  # ingested by the executors, into the work dir shared by path
    _same_results(spark, out, local_run)
    # Both workers ran an executor, and each fetched the shipped package into its working folder.
    for _, work in cluster.workers:
        assert list(work.glob("app-*/*/sparkvision-*.zip")), f"no shipped package under {work}"


@pytest.mark.cluster
def test_the_cnn_trains_in_barrier_tasks_on_the_cluster(cluster, worker_python, cifar_py, tmp_path):
    """TorchDistributor's cluster mode: one barrier task per process, torchrun in each, DDP over gloo;
    the workers import sparkvision only from the shipped zip, torchrun's processes included."""
    cluster.ensure_workers(2)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "sparkvision", *_run_args(cifar_py, out, tmp_path / "work"),
                           "--master", cluster.url, "--executor-memory", "512m", "--model", "cnn", "--epochs", "3",
                           "--param", "widths=16,32,32", "--param", "batchSize=64"],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT, env=_cluster_env(worker_python))
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["spark_master"] == cluster.url
    cnn = metrics["cnn"]
    assert cnn["processes"] == 2 and cnn["world_size"] == 2 and len(cnn["curve"]) == 3
    assert metrics["accuracy"] > 0.2  # chance is 0.1; the tiny local run in test_cnn.py learns the same way
    assert "epoch 3/3" in done.stderr  # rank 0's progress lines reach the driver


@pytest.mark.cluster
def test_spark_submit_settings_are_used(spark, cluster, worker_python, local_run, cifar_py, tmp_path):
    """spark-submit's --master and --executor-memory hold (sparkvision's defaults, local[*] and
    4g, would run locally or wait forever for a 4g executor on these 1g workers)."""
    cluster.ensure_workers(2)
    out = tmp_path / "out"
    main = Path(__import__("sparkvision").__file__).with_name("__main__.py")
    args = [a for a in _run_args(cifar_py, out, tmp_path / "work") if a not in ("--driver-memory", "1g")]
    done = subprocess.run([str(cluster.home / "bin" / "spark-submit"), "--master", cluster.url, "--driver-memory", "1g",
                           "--executor-memory", "512m", str(main), *args],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT,
                          env={**_cluster_env(worker_python), "PYSPARK_DRIVER_PYTHON": sys.executable,
                               "SPARK_HOME": str(cluster.home), "SPARK_LOCAL_IP": "127.0.0.1"})
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "metrics.json").read_text())["spark_master"] == cluster.url
    _same_results(spark, out, local_run)


@pytest.mark.cluster
def test_executors_no_worker_can_hold_are_a_clear_error(cluster, cifar_py, tmp_path):
    """The default 4g executors cannot start on 1g workers: the master would leave the run waiting forever."""
    cluster.ensure_workers(2)
    done = subprocess.run([sys.executable, "-m", "sparkvision", *_run_args(cifar_py, tmp_path / "out", tmp_path / "work"),
                           "--master", cluster.url, "--conf", "spark.sparkvision.executorWaitSeconds=10"],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    assert "gave this application no executor in 10 s" in done.stderr and "lower --executor-memory" in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.cluster
def test_a_worker_killed_mid_run_is_survived(spark, cluster, worker_python, local_run, cifar_py, tmp_path):
    cluster.ensure_workers(2)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "sparkvision", *_run_args(cifar_py, out, tmp_path / "work"),
                             "--master", cluster.url, "--executor-memory", "512m"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=_cluster_env(worker_python), start_new_session=True)
    victim, victim_work = next((p, w) for p, w in cluster.workers if p.poll() is None)
    apps_before = set(victim_work.glob("app-*"))
    try:
        seen = []
        for line in proc.stderr:  # progress lines: kill a worker once fitting has begun
            seen.append(line)
            if line.startswith("[3/5]"):
                break
        assert proc.poll() is None, "".join(seen)
        # This run has an executor on the victim (it ingested there), which dies with it, cached blocks and all.
        assert len(set(victim_work.glob("app-*")) - apps_before) == 1
        cluster.kill(victim)
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, "".join(seen) + stderr
    assert cluster.state()["aliveworkers"] == 1
    _same_results(spark, out, local_run)


def test_the_shipped_zip_holds_the_code_tasks_import(spark):
    from sparkvision.runtime.cluster import package_zip, ship_package

    names = zipfile.ZipFile(package_zip()).namelist()
    assert {"sparkvision/__init__.py", "sparkvision/data/sources/cifar.py", "sparkvision/data/sources/folder.py",
            "sparkvision/features/pixels.py", "sparkvision/runtime/arrow.py"} <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert ship_package(spark) is None  # a local master runs this machine's Python: nothing to ship
