"""Spark Connect sessions: every command with ``--remote sc://HOST:PORT`` (or ``SPARK_REMOTE``).

Under Connect this process is a thin client: the server plans and runs everything, so nothing
here may use a SparkContext, the JVM gateway or RDDs. The few things a run asks of its session
(how many cores, which master, where to ship the package) have an answer for both kinds of
session in this module, so the code above it does not branch on the kind itself.

``--remote local`` means sparkvision's own resident server on 127.0.0.1
(:mod:`sparkvision.runtime.server`), started when it is not running.
"""

from __future__ import annotations

import os
import sys
import warnings
from urllib.parse import urlparse

from sparkvision import defaults
from sparkvision.errors import ConfigError
from sparkvision.runtime import server
from sparkvision.runtime.cluster import package_fingerprint, package_zip

PROBE_TIMEOUT_S = 3.0
_SHIPPED: set[str] = set()  # Connect session ids the package was added to


def is_connect(spark) -> bool:
    """Whether ``spark`` is a Spark Connect session (a client of a remote server)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def remote_url() -> str | None:
    """The remote pyspark itself would use: ``SPARK_REMOTE`` when set (pyspark's own variable)."""
    return os.environ.get("SPARK_REMOTE") or None


def _endpoint(url: str) -> tuple[str, int]:
    """(host, port) of an ``sc://`` address, its host resolved; ConfigError naming what is wrong."""
    import socket

    try:
        parsed = urlparse(url)
        hostname = parsed.hostname
    except ValueError as exc:  # "Invalid IPv6 URL"
        raise ConfigError(f"--remote {url!r}: not an address ({exc}); a Spark Connect address is sc://HOST:PORT, "
                          "with an IPv6 host in brackets (sc://[::1]:15002).") from None
    if parsed.scheme != "sc" or not hostname:
        raise ConfigError(f"--remote {url!r}: a Spark Connect address is sc://HOST:PORT (or local, for "
                          "sparkvision's own server on this machine).")
    try:
        port = parsed.port or defaults.CONNECT_PORT
    except ValueError:
        raise ConfigError(f"--remote {url!r}: the port must be a whole number from 1 to 65535, as in "
                          "sc://HOST:15002.") from None
    try:
        socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"--remote {url!r}: the host {hostname!r} cannot be resolved ({exc}); check the address "
                          "(a name this machine's resolver knows, or an IP address).") from None
    return hostname, port


def connect_session(remote: str, *, conf: dict[str, str] | None = None, progress: bool = True):
    """A Spark Connect session to ``remote`` (``sc://HOST:PORT``, or ``local``), with the package
    added as an artifact so the server's Python workers import this version of sparkvision
    (sparkvision's own server has it installed: see :func:`ship_package`)."""
    from pyspark.sql import SparkSession

    if remote == "local":
        remote, started = server.start(progress=progress)
        if started and progress:
            print(f"  the Spark Connect server runs at {remote} (stop it with `sparkvision server stop`)",
                  file=sys.stderr)
    host, port = _endpoint(remote)
    # gRPC retries an unreachable server for minutes; a plain socket says so in seconds.
    if not server.port_open(host, port, timeout=PROBE_TIMEOUT_S):
        hint = ("start one with `sparkvision server start`, or use --remote local" if host in ("127.0.0.1", "localhost")
                else "check the address and that the server runs and accepts connections from here")
        raise ConfigError(f"--remote {remote}: no Spark Connect server answers at {host}:{port} "
                          f"(waited {PROBE_TIMEOUT_S:.0f} s); {hint}.")
    try:
        spark = SparkSession.builder.remote(remote).getOrCreate()
    except Exception as exc:
        raise ConfigError(f"--remote {remote}: the Spark Connect client could not connect "
                          f"({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}). "
                          "Is pyspark's connect extra installed (pip install 'sparkvision[connect]')?") from exc
    # gRPC's own policy retries a lost server for about ten minutes before an action fails: a few
    # quick retries ride out a blip, and a server that died mid-run is an error in seconds.
    from pyspark.sql.connect.client.retries import DefaultPolicy

    spark.client.set_retry_policies([DefaultPolicy(max_retries=3, initial_backoff=200, max_backoff=1000)])
    try:  # the first call: a program other than a Connect server at that port fails here
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pyspark's RETRIES_EXCEEDED warning: the error below says it
            spark.version
    except Exception as exc:
        spark.stop()
        raise ConfigError(f"--remote {remote}: something accepts connections at {host}:{port}, but it does not answer "
                          f"as a Spark Connect server ({_first_line(exc)}). Check the port (Spark Connect's default "
                          f"is {defaults.CONNECT_PORT}), or start a server with `sparkvision server start`.") from None
    session_conf = {defaults.COLUMNAR_INPUT: "false",
                    "spark.sql.execution.arrow.maxRecordsPerBatch": str(defaults.ARROW_BATCH_ROWS),
                    **(conf or {})}
    for key, value in session_conf.items():
        try:
            spark.conf.set(key, value)
        except Exception as exc:  # a static setting: fixed when the server started
            raise ConfigError(f"--conf {key}={value}: the Spark Connect server does not take this setting from a "
                              f"client ({str(exc).strip().splitlines()[0]}); set it where the server starts.") from None
    ship_package(spark, remote)
    return spark


def ship_package(spark, remote: str) -> None:
    """Add this process's sparkvision as a Python artifact of the Connect session, once.

    Not to sparkvision's own server at ``remote``: its Python workers, shared by every session,
    import the sparkvision installed beside it (:mod:`sparkvision.runtime.server`). When that is
    not this process's code (another version, or source edited since it started), they would
    run the old code, so that is an error saying to restart the server.
    """
    if spark.session_id in _SHIPPED:
        return
    ours = server.status()
    if ours.running and ours.address == remote and ours.package is not None:
        mine = package_fingerprint()
        if ours.package != mine:
            raise ConfigError(
                f"--remote {remote}: sparkvision's server there runs other sparkvision code (package "
                f"{ours.package}, started by {ours.python}; this process has {mine}: another "
                "version, or source edited since), and its Python workers would run that. Restart it: "
                "`sparkvision server stop`, then run again.")
    else:
        spark.addArtifacts(package_zip(), pyfile=True)
    _SHIPPED.add(spark.session_id)


def master(spark) -> str:
    """The master the session's work runs on (a Connect server's own, as it reports it)."""
    if is_connect(spark):
        return spark.conf.get("spark.master", "unknown")
    return spark.sparkContext.master


def parallelism(spark) -> int:
    """How many tasks run at once: the session's default parallelism."""
    if not is_connect(spark):
        return max(1, spark.sparkContext.defaultParallelism)
    value = spark.conf.get("spark.default.parallelism", None)
    if value and value.isdigit():
        return max(1, int(value))
    found = master(spark)
    if found.startswith("local[") and found[6:-1].isdigit():
        return int(found[6:-1])
    return max(1, os.cpu_count() or 1)  # local[*] on this machine, the usual Connect server here
