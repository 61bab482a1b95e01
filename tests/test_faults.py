"""Faults lose nothing: a task that fails once is retried to the same result, and a run killed
mid-way leaves nothing half-written, so the next one starts cleanly and succeeds.

(An executor lost mid-run is in test_cluster.py; a killed experiment resumes in test_experiment.py.)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import kill_when, run_cli
from sparkvision.jobs.run import Progress
from sparkvision.runtime import faults, stopping
from sparkvision.runtime.fs import atomic_output, remove_stale, remove_stale_in, temp_path
from sparkvision.cli import main
from sparkvision.runtime.faults import ENV


def _run(data: Path, out: Path, work: Path, *extra: str) -> list[str]:
    return ["run", "--data", str(data), "--out", str(out), "--work-dir", str(work), "--seed", "42",
            "--driver-memory", "1g", "--conf", "spark.ui.enabled=false", *extra]


@pytest.fixture(scope="module")
def reference(spark, cifar_py, tmp_path_factory) -> dict:
    """A run with nothing going wrong (in this process, on the shared local[2] session): the
    metrics the faulty runs must give again."""
    base = tmp_path_factory.mktemp("reference")
    assert main(_run(cifar_py, base / "out", base / "work", "--quiet")) == 0
    return json.loads((base / "out" / "metrics.json").read_text())


def _same_metrics(got: dict, want: dict) -> None:
    for key in ("accuracy", "f1_macro", "per_class_accuracy", "confusion_matrix", "num_evaluated"):
        assert got[key] == want[key], key
    assert got["data"]["num_images"] == want["data"]["num_images"] == 400  # a retried write adds no rows


def _failed_tasks(event_log_dir: Path) -> list[dict]:
    """Spark's own record (its event log) of every task attempt that ended in an exception."""
    failed = []
    for log in event_log_dir.rglob("events_*"):  # a folder per application, with rolling files
        for line in log.read_text().splitlines():
            event = json.loads(line)
            if event["Event"] == "SparkListenerTaskEnd" and event["Task End Reason"]["Reason"] == "ExceptionFailure":
                failed.append(event)
    return failed


def test_a_task_failing_once_is_retried_to_the_same_result(reference, cifar_py, tmp_path):
    events = tmp_path / "events"
    events.mkdir()
    # local[2,3]: two cores, up to 3 attempts per task (plain local[2] gives up at the first failure).
    done = run_cli(*_run(cifar_py, tmp_path / "out", tmp_path / "work", "--master", "local[2,3]",
                         "--conf", "spark.eventLog.enabled=true", "--conf", f"spark.eventLog.dir={events}",
                         "--conf", "spark.eventLog.compress=false"),
                   env={ENV: "ingest"})
    assert done.returncode == 0, done.stderr
    failed = _failed_tasks(events)
    assert len(failed) == 1  # the injected failure happened, once, in the ingestion write
    assert "injected failure" in failed[0]["Task End Reason"]["Full Stack Trace"]
    assert failed[0]["Task Info"]["Attempt"] == 0
    _same_metrics(json.loads((tmp_path / "out" / "metrics.json").read_text()), reference)


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.is_dir() else []


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def test_a_run_killed_mid_way_leaves_nothing_half_written(spark, reference, cifar_py, tmp_path):
    work, runs = tmp_path / "work", tmp_path / "runs"
    out, tables = runs / "out", work / "tables"
    argv = _run(cifar_py, out, work, "--master", "local[2]")

    # Killed while Spark writes the image table: only a hidden temporary folder is left.
    kill_when(argv, lambda lines: bool(_hidden(tables)), hold_at="table-written")
    assert _visible(tables) == [] and not out.exists()
    assert _hidden(runs) != []  # the run folder's temporary, never renamed

    # Stopped with SIGTERM (`kill PID`, a scheduler's time limit) while training: the table was
    # complete (renamed into place), the run folder was not; the run cleans up its own temporary
    # as it exits (and, as it started, removed the one the first killed run left).
    assert kill_when(argv, lambda lines: any(line.startswith("[3/5]") for line in lines), hold_at="fit",
                     sig=signal.SIGTERM) == 143
    assert not out.exists() and _hidden(runs) == []
    [table] = _visible(tables)
    assert (tables / table / "_sparkvision.json").is_file()

    # The next run (in this process, on the shared session: no third JVM to start) reuses the
    # complete table, removes what the killed runs left, and succeeds.
    assert main([*argv, "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["table_reused"]
    _same_metrics(metrics, reference)
    assert _hidden(tables) == [] and _hidden(runs) == []


class _JavaReference:
    """Stands for a collected Java reference: its finaliser is where the stop signal's handler ran."""

    def __del__(self):
        stopping.request_stop(signal.SIGTERM)


@pytest.mark.parametrize("where", ["in a phase", "between phases", "in an atomic output"])
def test_a_stop_swallowed_by_a_finaliser_still_stops_the_run_and_renames_nothing(monkeypatch, tmp_path, where):
    """SIGTERM's handler raises wherever the main thread is; in a finaliser (py4j's) Python only
    reports it and goes on. The recorded signal stops the run at the next boundary: the end of the
    phase it came in, the start of the next one, or the rename of an output into place."""
    monkeypatch.setattr(stopping, "_requested", None)
    swallowed = []
    monkeypatch.setattr(sys, "unraisablehook", swallowed.append)
    progress, reached, final = Progress(3, enabled=False), [], tmp_path / "table"
    with pytest.raises(stopping.Stopped) as stopped:
        if where == "in a phase":
            with progress.phase("fit", "fitting"):
                _JavaReference()  # collected at once: its exception goes to the unraisable hook
                reached.append("after the swallowed stop")
            reached.append("after the phase")
        elif where == "between phases":
            _JavaReference()
            reached.append("after the swallowed stop")
            with progress.phase("evaluate", "evaluating"):
                reached.append("in the next phase")
        else:
            with atomic_output(final) as tmp:
                tmp.mkdir()
                _JavaReference()
                reached.append("after the swallowed stop")
    assert [type(u.exc_value) for u in swallowed] == [stopping.Stopped]
    assert reached == ["after the swallowed stop"] and stopped.value.signum == signal.SIGTERM
    assert list(tmp_path.iterdir()) == []  # nothing renamed into place, no temporary left


def test_a_new_command_line_starts_unstopped_and_prints_no_traceback_for_a_swallowed_stop(monkeypatch, capsys):
    monkeypatch.setattr(stopping, "_requested", signal.SIGTERM)  # a stop left from before
    earlier = []
    monkeypatch.setattr(sys, "unraisablehook", earlier.append)  # a hook someone installed before
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    stopping.handle_stop_signals()
    try:
        stopping.raise_if_stopped()  # the flag was reset
        assert signal.getsignal(signal.SIGTERM) is stopping.request_stop
        _JavaReference()
        assert capsys.readouterr().err == "" and earlier == []  # the stop: no traceback anywhere

        class Other:
            def __del__(self):
                raise ValueError("a finaliser's own error")
        Other()
        assert [str(u.exc_value) for u in earlier] == ["a finaliser's own error"]  # the hook before
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def test_only_temporaries_of_finished_processes_on_this_host_are_removed(tmp_path):
    final = tmp_path / "out"
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    host = socket.gethostname()
    dead, mine = tmp_path / f".out.tmp-{host}-{finished.pid}", temp_path(final)
    elsewhere, other = tmp_path / ".out.tmp-another-host-1", tmp_path / f".other.tmp-{host}-{finished.pid}"
    for folder in (dead, mine, elsewhere, other):
        folder.mkdir()
    assert remove_stale(final) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (mine, elsewhere, other))
    # Folder-wide (runs/<timestamp> never repeats a name): any name's, still only finished processes here.
    alive = tmp_path / f".run-2.tmp-{host}-{os.getppid()}"
    alive.mkdir()
    assert remove_stale_in(tmp_path) == [other]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (mine, elsewhere, alive))


_HOLDER = """
import subprocess, sys, time
from sparkvision.runtime import faults
if sys.argv[1] == "leader":  # its own session's leader: holds the whole time, elsewhere not at all
    faults.HOLD_SECONDS = 0.5
    t0 = time.monotonic()
    faults.hold("save")
    elsewhere = time.monotonic() - t0
    faults.hold("fit")
    print(elsewhere, time.monotonic() - t0)
    # a child in its group holds until this leader is gone (the test reaps it), not its 30 s
    # (not on this process's pipes: the test would wait for them to close before it reaps this one)
    subprocess.Popen([sys.executable, "-c", sys.argv[2], "child"], stdout=open(sys.argv[3], "w"),
                     stderr=subprocess.DEVNULL)
else:
    t0 = time.monotonic()
    faults.hold("fit")
    print(time.monotonic() - t0, flush=True)
"""


def test_a_hold_waits_only_at_its_own_site_and_while_its_command_lives(tmp_path):
    """The kill tests' hook (``SPARKVISION_HOLD_AT``): a process holds at the site it names, for at
    most ``HOLD_SECONDS``, and no longer than its process group's leader (the killed command) lives;
    at any other site it goes straight on."""
    released = tmp_path / "child.txt"
    leader = subprocess.run([sys.executable, "-c", _HOLDER, "leader", _HOLDER, str(released)], capture_output=True,
                            text=True, timeout=60, start_new_session=True, env={**os.environ, faults.HOLD_ENV: "fit"})
    assert leader.returncode == 0, leader.stderr
    elsewhere, total = map(float, leader.stdout.split())
    assert elsewhere < 0.2 and total >= 0.5
    deadline = time.monotonic() + 20  # the child's own limit is 30 s: released well before, it was the leader's going
    while time.monotonic() < deadline and not released.read_text().strip():
        time.sleep(0.05)
    assert float(released.read_text()) < 15
