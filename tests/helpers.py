"""Helpers for the tests: running the real command line, finding the shared real data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sparkvision.runtime.class_archive import ENV_SWITCH
from sparkvision.runtime.faults import HOLD_ENV

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def child_env(extra: dict | None = None) -> dict:
    """The environment for a child process that starts its own JVM on the tests' small data.

    Such a JVM runs a few hundred images, where the JIT's second tier (C2) costs more CPU than its
    code saves: measured here, a 400-image ``sparkvision run`` took 17-18 s and 30-32 CPU-s with
    both tiers, 12-13 s and 17-18 CPU-s with the first tier only. So the tests' child JVMs run on
    the first tier (``JDK_JAVA_OPTIONS``, read by every ``java`` launch). Java's results do not
    depend on the tier. The tests' own sessions (conftest's ``spark``) run on the first tier too.
    """
    options = f"{os.environ.get('JDK_JAVA_OPTIONS', '')} -XX:TieredStopAtLevel=1".strip()
    if os.environ.get("TMPDIR"):  # conftest's folder for children's temporary files (Java ignores TMPDIR)
        options += f" -Djava.io.tmpdir={os.environ['TMPDIR']}"
    return {**os.environ, "JDK_JAVA_OPTIONS": options, **(extra or {})}


def run_cli(*args: str, env: dict | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    """Run the real ``sparkvision`` command in a child process; returns its output and status."""
    full_env = child_env(env)
    return subprocess.run([sys.executable, "-m", "sparkvision", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=ROOT)


def kill_when(argv: list[str], ready, hold_at: str, timeout: float = 240, sig: int = signal.SIGKILL) -> int:
    """Start ``sparkvision`` with ``argv``, send ``sig`` to its Python process (``kill -9 PID`` by
    default) as soon as ``ready(stderr lines so far)`` is true, check that its JVM and Python
    workers go too, and return its exit status. Its JVM maps the class archive but does not write
    one: a writer dumps it as it exits, which on a slow host can outlast the minute given to the
    JVM to go. The run holds at the point ``hold_at`` names
    (``sparkvision.runtime.faults.hold``), so the signal lands there however late the test reads
    the line: ``ready`` must become true by then."""
    proc = subprocess.Popen([sys.executable, "-m", "sparkvision", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True,
                            env=child_env({HOLD_ENV: hold_at, ENV_SWITCH: "map"}))
    lines: list[str] = []

    def read() -> None:  # the progress lines, as they come
        for line in proc.stderr:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.time() + timeout
        while not ready(lines):
            assert proc.poll() is None and time.time() < deadline, "".join(lines)  # it must not finish first
            time.sleep(0.02)
        # A loaded host can read the awaited line only after the run ended: say so, not "wrong status".
        assert proc.poll() is None, "the run finished before the signal could be sent:\n" + "".join(lines)
        os.kill(proc.pid, sig)
        status = proc.wait()
        gone = time.time() + 60
        while time.time() < gone:  # the JVM exits when its Python's pipe closes; its workers follow
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the run's JVM outlived its killed Python process by a minute")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        reader.join(timeout=10)
    return status
