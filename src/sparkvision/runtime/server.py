"""A resident Spark Connect server on 127.0.0.1: ``sparkvision server start|stop|status``.

PySpark ships Spark Connect's service (the ``spark-connect`` jar). It is started here as a
driver plugin of a Spark application whose Python driver, :mod:`sparkvision.runtime.connect_host`,
only waits: ``bin/spark-submit --conf spark.plugins=...SparkConnectPlugin connect_host.py``.
spark-submit ``exec``s the JVM, so the process this module starts *is* the server and its pid
is known. It runs in a session of its own, so it outlives the command that started it and its
Ctrl-C; a run pointed at it (``--remote local``) pays the JVM's start and Spark's first
compilations once, not every time.

Why not Spark's ``SparkConnectServer`` main class: it forces artifact isolation on, and then
every client session gets Python workers of its own (a daemon per session, started and loaded
with pyarrow, pandas and pyspark.ml again on every run, then left idle). With isolation off, all
sessions share one set of warm workers. So every client sees the artifacts another added, and a
client of this server does not ship the package: the server's Python is this one, with this
sparkvision installed. The state file records a fingerprint of the package's files; a client
whose sparkvision differs is told to restart the server rather than run with the old code.

The server gets sparkvision's settings: the driver memory sized from this machine, quiet logs,
loopback only, this interpreter for its Python, and the driver's class archive when classic
runs have written one. Its state is one JSON file (pid, port, address, log, python, package)
under the cache folder; a file whose process is gone is removed by the next look at it. Two
starts at once take a lock, so they make one server.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sparkvision import defaults
from sparkvision.errors import ConfigError
from sparkvision.runtime import class_archive
from sparkvision.runtime.cluster import package_fingerprint
from sparkvision.runtime.java import java_binary, java_version
from sparkvision.runtime.fs import cache_root, pid_alive, write_atomic
from sparkvision.runtime.memory import default_driver_memory
from sparkvision.runtime.stopping import raise_if_stopped

CONNECT_PLUGIN = "org.apache.spark.sql.connect.SparkConnectPlugin"
HOST_SCRIPT = Path(__file__).with_name("connect_host.py")  # the server's Python driver
# The main class earlier builds of this module started: such a server is still found, stopped and used
# (its sessions isolated, so the package is shipped to it).
LEGACY_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
HOST = "127.0.0.1"
START_TIMEOUT_S = 180.0
PORT_ENV = "SPARKVISION_CONNECT_PORT"  # the port `server start` and `--remote local` use


def state_dir() -> Path:
    """Where the server's state file and log are kept: ``connect/`` in the cache folder."""
    return cache_root() / "connect"


@dataclass(frozen=True)
class ServerStatus:
    """What ``sparkvision server status`` reports (``python`` and ``package``: what it runs)."""

    running: bool
    pid: int | None = None
    address: str | None = None
    rss_bytes: int | None = None
    log: str | None = None
    python: str | None = None
    package: str | None = None


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port`` (IPv4 or IPv6)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:  # refused, unreachable, timed out, or a name that does not resolve
        return False


def _is_server(pid: int) -> bool:
    """``pid`` runs and is a Connect server (not another process that reused the pid)."""
    if not pid_alive(pid):
        return False
    cmdline, state = "", ""
    for _ in range(20):  # the command line reads empty for an instant while spark-submit execs java
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            return False
        if cmdline or state == "Z":
            break
        time.sleep(0.05)
    if state == "Z":  # killed, not yet reaped: reap it when it is our child
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return (str(HOST_SCRIPT) in cmdline and CONNECT_PLUGIN in cmdline) or LEGACY_SERVER_CLASS in cmdline


def _rss(pid: int) -> int | None:
    """Resident memory of ``pid`` and every process under it (its Python driver and workers)."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError, IndexError, ValueError):
            if proc.name.isdigit():
                parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(proc.name))
    total, found, todo = 0, False, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, ()))
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    found = True
    return total if found else None


def status(folder: Path | None = None) -> ServerStatus:
    """Whether the server runs, its pid, address and memory; a dead server's state file is removed."""
    state_file = (folder or state_dir()) / "server.json"
    try:
        info = json.loads(state_file.read_text())
        pid, address = int(info["pid"]), str(info["address"])
    except (OSError, ValueError, KeyError, TypeError):
        return ServerStatus(False)
    if not _is_server(pid):
        state_file.unlink(missing_ok=True)
        return ServerStatus(False)
    return ServerStatus(True, pid, address, _rss(pid), info.get("log"), info.get("python"), info.get("package"))


def _command(port: int, memory: str, log_conf: Path, java_options: str = "") -> list[str]:
    from pyspark.find_spark_home import _find_spark_home

    conf = {
        "spark.connect.grpc.binding.address": HOST,
        "spark.connect.grpc.binding.port": str(port),
        "spark.driver.host": HOST,
        "spark.driver.bindAddress": HOST,
        "spark.pyspark.python": sys.executable,
        "spark.ui.showConsoleProgress": "false",
        "spark.ui.enabled": "false",
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{log_conf} {java_options}".strip(),
        # The same session settings as a classic run (runtime.session.build_session).
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(defaults.ARROW_BATCH_ROWS),
        defaults.COLUMNAR_INPUT: "false",
        "spark.sql.shuffle.partitions": str(defaults.SHUFFLE_PARTITIONS),
    }
    conf.update({
        "spark.plugins": CONNECT_PLUGIN,
        # One set of Python workers for every client session (see the module's docstring).
        "spark.sql.artifact.isolation.enabled": "false",
        "spark.pyspark.driver.python": sys.executable,
    })
    argv = [os.path.join(_find_spark_home(), "bin", "spark-submit"), "--name", "sparkvision-connect",
            "--master", "local[*]", "--driver-memory", memory]
    for key, value in conf.items():
        argv += ["--conf", f"{key}={value}"]
    return argv + [str(HOST_SCRIPT)]


def default_port() -> int:
    """``$SPARKVISION_CONNECT_PORT``, else Spark Connect's own default (15002)."""
    value = os.environ.get(PORT_ENV, "")
    if value and not (value.isdigit() and 0 < int(value) < 65536):
        raise ConfigError(f"{PORT_ENV}={value!r}: a port number from 1 to 65535.")
    return int(value) if value else defaults.CONNECT_PORT


_LAUNCHED: set[str] = set()  # addresses of the servers this process started


def launch(port: int | None = None, *, memory: str | None = None, folder: Path | None = None,
           progress: bool = True) -> str:
    """Start the server's process unless one runs, without waiting for it to accept connections;
    its ``sc://`` address. ``run --remote local`` calls this first, so the server's JVM starts
    while the client imports and checks the data; :func:`start` then waits for it."""
    folder = folder or state_dir()
    port = port or default_port()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "server.lock", "w") as lock:  # two starts at once make one server
        fcntl.flock(lock, fcntl.LOCK_EX)
        now = status(folder)
        if now.running:
            return now.address
        if port_open(HOST, port):
            raise ConfigError(f"port {port} on {HOST} is already in use by another program: start the server on "
                              "another one with `sparkvision server start --port N`.")
        import pyspark

        _, java_line = java_version()  # the same check as a classic run
        # The class archive classic runs made (runtime.class_archive) maps into this JVM too: the
        # same java and jars. The server only maps one; classic runs write it.
        archive = class_archive.plan(java_binary() or "java", java_line, pyspark.__version__, write=False)
        java_options = archive.options
        log = folder / "server.log"
        log_conf = Path(__file__).with_name("log4j2.properties")
        env = {k: v for k, v in os.environ.items()  # the server is a classic Spark driver, not a client
               if k not in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "SPARK_LOCAL_REMOTE", "MASTER")}
        env.update(SPARK_LOCAL_IP=HOST, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
        if progress:
            print(f"  starting a Spark Connect server on {HOST}:{port} (log: {log}) ...", file=sys.stderr)
        raise_if_stopped()  # not after Popen: a detached server must get its server.json
        with open(log, "ab") as out:
            proc = subprocess.Popen(_command(port, memory or default_driver_memory(), log_conf, java_options),
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
        address = f"sc://{HOST}:{port}"
        write_atomic(folder / "server.json", json.dumps({
            "pid": proc.pid, "port": port, "address": address, "log": str(log),
            "python": sys.executable, "package": package_fingerprint()}).encode())
        _LAUNCHED.add(address)
        return address


def start(port: int | None = None, *, memory: str | None = None, folder: Path | None = None,
          timeout: float = START_TIMEOUT_S, progress: bool = True) -> tuple[str, bool]:
    """Start the server, or find the one already running; (its ``sc://`` address, whether this
    process started it). Returns once the server accepts connections."""
    folder = folder or state_dir()
    address = launch(port, memory=memory, folder=folder, progress=progress)
    now = status(folder)
    if not now.running:  # it died at once
        raise _start_failure(folder)
    _wait(now.pid, int(now.address.rsplit(":", 1)[1]), folder, timeout)
    return address, address in _LAUNCHED


def _start_failure(folder: Path) -> ConfigError:
    """The error for a server that ended while starting, with the end of its log; its state removed."""
    (folder / "server.json").unlink(missing_ok=True)
    lines = (folder / "server.log").read_text(errors="replace").strip().splitlines()[-5:]
    return ConfigError("the Spark Connect server stopped while starting; the end of its log "
                       f"({folder / 'server.log'}):\n  " + "\n  ".join(lines))


def _wait(pid: int, port: int, folder: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(HOST, port):
            return
        if not _is_server(pid):
            raise _start_failure(folder)
        time.sleep(0.2)
    stop(folder)
    raise ConfigError(f"the Spark Connect server did not accept connections within {timeout:.0f} s; "
                      f"see {folder / 'server.log'}.")


def stop(folder: Path | None = None, timeout: float = 30.0) -> ServerStatus:
    """Stop the server (SIGTERM, then SIGKILL after ``timeout``); what was running."""
    folder = folder or state_dir()
    now = status(folder)
    if now.running:
        os.kill(now.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _is_server(now.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _is_server(now.pid):
            os.kill(now.pid, signal.SIGKILL)
    (folder / "server.json").unlink(missing_ok=True)
    return now
