"""Spark Connect: a real Connect server on 127.0.0.1, started and stopped by these tests.

The clients run in child processes (``python -m sparkvision ... --remote``): a process that has
made a Connect session stays in Connect mode, and the other tests share a classic session. The
classic runs they are compared with use that shared session, in this process.
"""

from __future__ import annotations

import json
import re
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from helpers import run_cli
from sparkvision.cli import main

pytest.importorskip("grpc", reason="the connect extra (pip install 'sparkvision[connect]') is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def connect(tmp_path_factory):
    """(address, env) of a Connect server this module starts (its state under a cache of its own)."""
    cache = tmp_path_factory.mktemp("connect-cache")
    env = {"XDG_CACHE_HOME": str(cache), "SPARKVISION_CONNECT_PORT": str(_free_port())}
    env.pop("SPARK_REMOTE", None)
    started = run_cli("server", "start", env=env)
    assert started.returncode == 0, started.stderr
    address = f"sc://127.0.0.1:{env['SPARKVISION_CONNECT_PORT']}"
    assert address in started.stdout
    yield address, env
    run_cli("server", "stop", env=env)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    """Six PNG files of the synthetic classes, to label."""
    from PIL import Image

    from sparkvision.data.sources.synthetic import synthetic_images

    root = tmp_path_factory.mktemp("to-label")
    _, data = synthetic_images(6, seed=11)
    for i, planes in enumerate(data):
        Image.fromarray(planes.reshape(3, 32, 32).transpose(1, 2, 0)).save(root / f"{i}.png")
    return root


def _run_args(data: Path, base: Path, name: str, *extra: str) -> list[str]:
    return ["run", "--data", str(data), "--work-dir", str(base / "work"), "--out", str(base / name), "--quiet",
            *extra]


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


FOREST = ["--num-trees", "3", "--max-depth", "3"]  # the assignment's model, kept small to be imperfect
PATCHES = ["--features", "patches", "--centroids", "16", "--model", "ridge"]  # patch features at small K


@pytest.fixture(scope="module")
def remote_forest(connect, cifar_py, tmp_path_factory) -> Path:
    """The run folder of one forest run over Connect, shared by the tests that need a run made there."""
    address, env = connect
    base = tmp_path_factory.mktemp("remote-forest")
    done = run_cli(*_run_args(cifar_py, base, "remote", *FOREST), "--remote", address, env=env, timeout=400)
    assert done.returncode == 0, done.stderr
    return base / "remote"


@pytest.mark.parametrize("extra", [FOREST, PATCHES], ids=["forest", "patches-ridge"])
def test_a_run_over_connect_gives_the_classic_metrics(spark, connect, cifar_py, tmp_path, extra, request):
    address, env = connect
    if extra is FOREST:
        remote = request.getfixturevalue("remote_forest")
    else:
        remote = tmp_path / "remote"
        done = run_cli(*_run_args(cifar_py, tmp_path, "remote", *extra), "--remote", address, env=env, timeout=400)
        assert done.returncode == 0, done.stderr
    assert main(_run_args(cifar_py, tmp_path, "classic", *extra)) == 0
    over_connect, classic = _metrics(remote), _metrics(tmp_path / "classic")
    assert over_connect["accuracy"] == classic["accuracy"]
    assert over_connect["confusion_matrix"] == classic["confusion_matrix"]
    assert over_connect["spark_master"].startswith("local")  # the server's own master, as it reports it
    assert (remote / "model" / "sparkvision-labels.json").is_file()


def test_a_model_saved_over_connect_predicts_through_connect_and_locally(connect, remote_forest, pictures):
    address, env = connect
    through_spark = run_cli("predict", str(remote_forest), str(pictures), "--engine", "spark", "--remote", address,
                            env=env)
    assert through_spark.returncode == 0, through_spark.stderr
    assert "Spark" in through_spark.stderr
    local = run_cli("predict", str(remote_forest), str(pictures), "--engine", "local", env=env)
    assert local.returncode == 0, local.stderr
    rows = lambda out: sorted(line.split(",")[:2] for line in out.strip().splitlines()[1:])  # path, top label
    assert rows(through_spark.stdout) == rows(local.stdout) and len(rows(local.stdout)) > 0


def _python_daemons(server_pid: int) -> list[int]:
    """The pyspark.daemon processes the server's JVM started."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == server_pid:
                if b"pyspark.daemon" in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def test_client_runs_share_the_servers_python_workers(connect, remote_forest, cifar_py, tmp_path):
    # Spark's SparkConnectServer isolates sessions, and each client run got (and left behind) a
    # Python daemon of its own; sparkvision's server shares one across clients: the fixture's run
    # and this one.
    address, env = connect
    pid = json.loads((Path(env["XDG_CACHE_HOME"]) / "sparkvision" / "connect" / "server.json").read_text())["pid"]
    done = run_cli(*_run_args(cifar_py, tmp_path, "second", "--num-trees", "1", "--max-depth", "1"),
                   "--remote", address, env=env, timeout=400)
    assert done.returncode == 0, done.stderr
    assert len(_python_daemons(pid)) == 1


def test_a_server_running_other_sparkvision_code_is_a_clear_error(connect, cifar_py, tmp_path):
    address, env = connect
    state = Path(env["XDG_CACHE_HOME"]) / "sparkvision" / "connect" / "server.json"
    original = state.read_text()
    state.write_text(json.dumps({**json.loads(original), "package": "0000000000000000"}))  # as if started by other code
    try:
        result = run_cli(*_run_args(cifar_py, tmp_path, "out"), "--remote", "local", env=env, timeout=120)
    finally:
        state.write_text(original)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "runs other sparkvision code" in result.stderr and "sparkvision server stop" in result.stderr
    assert not (tmp_path / "out").exists()


def test_server_status_and_a_second_start(connect):
    address, env = connect
    status = run_cli("server", "status", env=env)
    assert status.returncode == 0 and address in status.stdout and "resident memory" in status.stdout
    again = run_cli("server", "start", env=env)
    assert again.returncode == 0 and "already running" in again.stdout
    pid = json.loads((Path(env["XDG_CACHE_HOME"]) / "sparkvision" / "connect" / "server.json").read_text())["pid"]
    assert f"pid {pid}" in again.stdout  # the same server, not a second one


def test_a_killed_server_is_detected_and_remote_local_starts_a_new_one(connect, cifar_py, tmp_path):
    address, env = connect
    state = Path(env["XDG_CACHE_HOME"]) / "sparkvision" / "connect" / "server.json"
    pid = json.loads(state.read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 30
    while Path(f"/proc/{pid}").exists() and time.time() < deadline:
        time.sleep(0.1)
    status = run_cli("server", "status", env=env)
    assert status.returncode == 3 and "no Spark Connect server is running" in status.stdout
    assert not state.exists()  # the dead server's state is gone
    rerun = run_cli(*_run_args(cifar_py, tmp_path, "run"), "--remote", "local", env=env, timeout=400)
    assert rerun.returncode == 0, rerun.stderr
    assert "starting a Spark Connect server" in rerun.stderr  # started for the run
    assert json.loads(state.read_text())["pid"] != pid
    _stop_ends_the_server(env, state)


def _stop_ends_the_server(env: dict, state: Path) -> None:
    """`server stop` ends the server the state file names, removes the file, and says so when none runs.
    (Checked on the server the run above started, rather than on one started only to be stopped.)"""
    pid = json.loads(state.read_text())["pid"]
    stopped = run_cli("server", "stop", env=env)
    assert stopped.returncode == 0 and f"pid {pid}" in stopped.stdout
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    assert not state.exists()
    assert "no Spark Connect server was running" in run_cli("server", "stop", env=env).stdout


def test_an_unreachable_remote_is_a_clear_error_within_seconds(cifar_py, tmp_path):
    started = time.perf_counter()
    result = run_cli(*_run_args(cifar_py, tmp_path, "out"), "--remote", f"sc://127.0.0.1:{_free_port()}")
    elapsed = time.perf_counter() - started
    assert result.returncode == 2
    assert "no Spark Connect server answers at 127.0.0.1:" in result.stderr and "Traceback" not in result.stderr
    assert elapsed < 20  # a probe, not gRPC's minutes of retries (the child's Python start is most of it)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("address, said", [
    ("sc://nosuchhost.invalid:15002", "the host 'nosuchhost.invalid' cannot be resolved"),
    ("sc://[::1", "not an address (Invalid IPv6 URL)"),
    ("sc://127.0.0.1:99999", "the port must be a whole number from 1 to 65535"),
])
def test_a_remote_address_that_cannot_be_reached_as_written_is_named(address, said):
    """Each said "unexpected gaierror" or "unexpected ValueError"; checked before any session starts."""
    from sparkvision.runtime.connect import _endpoint
    from sparkvision.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(f"--remote {address!r}: {said}")):
        _endpoint(address)


def test_another_program_at_the_remote_port_is_named_as_not_a_connect_server(cifar_py, tmp_path):
    """An HTTP server at the port: the error blamed a --conf setting the user never gave."""
    import http.server
    import threading

    httpd = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        address = f"sc://127.0.0.1:{httpd.server_address[1]}"
        result = run_cli(*_run_args(cifar_py, tmp_path, "out"), "--remote", address, timeout=120)
    finally:
        httpd.shutdown()
    assert result.returncode == 2, result.stderr
    assert f"--remote {address}: something accepts connections at 127.0.0.1:" in result.stderr
    assert "does not answer as a Spark Connect server" in result.stderr and "--conf" not in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
