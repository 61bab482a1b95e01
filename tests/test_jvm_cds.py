"""The driver JVM's class archive: written by a first JVM, renamed into place only when complete
and mappable, mapped by later JVMs, and never a reason for Spark not to start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from sparkvision.runtime import class_archive as jvm_cds
from sparkvision.runtime.java import java_binary, java_version

SPARK = "4.3.0-test"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(jvm_cds.ENV_CACHE, str(tmp_path))
    monkeypatch.delenv(jvm_cds.ENV_SWITCH, raising=False)
    return tmp_path / "jvm"


def _java(options: str) -> subprocess.Popen:
    """A JVM started with ``options`` (a tiny one: ``java -version`` stands in for Spark's driver)."""
    return subprocess.Popen([java_binary(), *options.split(), "-version"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def test_first_jvm_writes_the_archive_and_the_next_maps_it(cache):
    java, line = java_binary(), java_version()[1]
    first = jvm_cds.plan(java, line, SPARK)
    assert "-XX:ArchiveClassesAtExit=" in first.options and first.writing is not None
    proc = _java(first.options)
    first.started(proc.pid)
    other = jvm_cds.plan(java, line, SPARK)  # a second JVM meanwhile writes one too, a third does not
    assert other.writing not in (None, first.writing)
    other.started(os.getpid())  # (stands for a JVM still running)
    assert jvm_cds.plan(java, line, SPARK).options == ""
    assert proc.wait() == 0
    assert first.writing.is_file()  # written as the JVM exited, under its temporary name

    second = jvm_cds.plan(java, line, SPARK)
    final = jvm_cds.archive_path(java, line, SPARK)
    assert second.options.startswith(f"-XX:SharedArchiveFile={final} ") and second.mapping == final
    assert final.is_file()
    # Left: the archive, its install's marker, and the sidecar of the writer still running (its
    # archive, when it comes, is removed).
    assert sorted(p.name for p in cache.iterdir()) == sorted([final.name, final.name + jvm_cds.HOME_SUFFIX,
                                                              other.writing.name + ".jvm"])
    assert (cache / (final.name + jvm_cds.HOME_SUFFIX)).read_text() == f"{socket.gethostname()}\n{jvm_cds.spark_home()}"
    assert _java(second.options).wait() == 0
    assert jvm_cds.archive_path(java, line, "another-spark") != final
    # Another install of the same Spark (another virtual environment) has other jars on its class path.
    assert jvm_cds.archive_path(java, line, SPARK, home=str(cache / "another-venv")) != final


def test_a_truncated_archive_is_never_put_in_place(cache):
    java, line = java_binary(), java_version()[1]
    first = jvm_cds.plan(java, line, SPARK)
    proc = _java(first.options)
    first.started(proc.pid)
    proc.wait()
    data = first.writing.read_bytes()
    os.chmod(first.writing, 0o644)
    first.writing.write_bytes(data[: len(data) // 2])  # as if its JVM was killed while writing
    assert not jvm_cds.usable(java, first.writing)
    again = jvm_cds.plan(java, line, SPARK)
    assert "SharedArchiveFile" not in again.options and not jvm_cds.archive_path(java, line, SPARK).exists()
    assert not first.writing.exists()


def test_archives_no_start_has_used_for_a_month_are_removed(cache):
    java, line = java_binary(), java_version()[1]
    final = jvm_cds.archive_path(java, line, SPARK)
    cache.mkdir()
    old, recent = cache / "spark-3.5.0-0123456789abcdef.jsa", cache / "spark-4.3.0-fedcba9876543210.jsa"
    for archive in (final, old, recent):
        archive.write_bytes(b"archive")
    month_ago = os.path.getmtime(final) - jvm_cds.UNUSED_S - 60
    for archive in (final, old):
        os.utime(archive, (month_ago, month_ago))
    plan = jvm_cds.plan(java, line, SPARK)
    assert plan.mapping == final and final.is_file()  # this start's own archive is kept, however old,
    assert os.path.getmtime(final) > month_ago + jvm_cds.UNUSED_S  # and marked as used now
    assert not old.exists() and recent.exists()  # another install's is removed only when unused


def test_another_installs_finished_temporary_is_removed_once_its_archive_is_in_place(cache):
    """The second writer's temporary of a deleted virtual environment would otherwise stay for good."""
    java, line = java_binary(), java_version()[1]
    cache.mkdir()
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = done.stdout.strip()  # a process that has exited
    placed, unplaced = cache / "spark-4.3.0-0123456789abcdef.jsa", "spark-4.3.0-fedcba9876543210.jsa"
    placed.write_bytes(b"archive")
    temporaries = {}
    for name, archive, pid in [("stale", placed.name, dead), ("writing", placed.name, str(os.getpid())),
                               ("unplaced", unplaced, dead), ("starting", placed.name, None)]:
        tmp = cache / f".{archive}.tmp-{socket.gethostname()}-{name}"
        tmp.write_bytes(b"partial")
        if pid is not None:
            tmp.with_name(tmp.name + ".jvm").write_text(pid)
        temporaries[name] = tmp
    jvm_cds.plan(java, line, SPARK)
    # removed: the finished writer's, whose archive is in place; kept: one still written, one whose
    # own install may yet promote it, one whose JVM has not said its pid yet
    assert not temporaries["stale"].exists()
    assert not (cache / (temporaries["stale"].name + ".jvm")).exists()
    assert all(temporaries[name].exists() for name in ("writing", "unplaced", "starting"))


def test_switched_off_by_the_environment(cache, monkeypatch):
    monkeypatch.setenv(jvm_cds.ENV_SWITCH, "0")
    assert jvm_cds.plan(java_binary(), java_version()[1], SPARK).options == ""
    assert not cache.exists()


def test_spark_starts_when_its_archive_is_damaged(tmp_path, monkeypatch):
    """A damaged archive in place (say, the disk filled while copying the cache) is removed and
    Spark starts without it."""
    import pyspark

    java, line = java_binary(), java_version()[1]
    monkeypatch.setenv(jvm_cds.ENV_CACHE, str(tmp_path / "made"))
    made = jvm_cds.plan(java, line, SPARK)
    proc = _java(made.options)
    made.started(proc.pid)
    proc.wait()
    final = tmp_path / "jvm" / jvm_cds.archive_path(java, line, pyspark.__version__).name
    final.parent.mkdir()
    data = made.writing.read_bytes()
    final.write_bytes(data[: len(data) // 2])
    assert not jvm_cds.usable(java, final)  # this one would crash the JVM that maps it
    script = ("from sparkvision.runtime.session import SparkSettings, build_session\n"
              "s = build_session(SparkSettings(master='local[1]', driver_memory='1g', "
              "conf={'spark.ui.enabled': 'false'}), show_progress=False)\n"
              "print('rows', s.range(3).count())\n")
    env = {**os.environ, jvm_cds.ENV_CACHE: str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=180,
                          cwd=tmp_path)  # where the crashing JVM leaves its hs_err_pid*.log
    assert done.returncode == 0, done.stderr
    assert "rows 3" in done.stdout
    assert not final.exists()


def test_a_jvm_that_only_maps_creates_nothing_and_maps_what_is_there(cache):
    """The Connect server maps the archive classic runs wrote; it never writes one, so where there is
    none it starts without options and leaves no empty folder in the user's cache."""
    java, line = java_binary(), java_version()[1]
    assert jvm_cds.plan(java, line, SPARK, write=False).options == ""
    assert not cache.exists()
    cache.mkdir()
    assert jvm_cds.plan(java, line, SPARK, write=False).options == "" and not list(cache.iterdir())
    first = jvm_cds.plan(java, line, SPARK)  # a classic run's JVM writes one as it exits
    proc = _java(first.options)
    first.started(proc.pid)
    assert proc.wait() == 0
    mapped = jvm_cds.plan(java, line, SPARK, write=False)
    final = jvm_cds.archive_path(java, line, SPARK)
    assert mapped.mapping == final and mapped.options.startswith(f"-XX:SharedArchiveFile={final} ")


def test_an_archive_whose_install_is_gone_is_removed_by_the_next_start(cache, tmp_path):
    """Each virtual environment (each fresh clone's `make test`) writes its own ~190 MB archive; once
    that environment is deleted nothing can map it, so the next start of any install removes it,
    with its finished temporaries, rather than 30 days later. Another host's, or a live one's, stays."""
    java, line = java_binary(), java_version()[1]
    cache.mkdir()
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = done.stdout.strip()
    alive_home = tmp_path / "venv-kept"
    alive_home.mkdir()
    host = socket.gethostname()
    cases = {"gone": (host, tmp_path / "venv-deleted"), "kept": (host, alive_home),
             "elsewhere": ("another-host", tmp_path / "venv-deleted")}
    archives = {}
    for i, (case, (where, home)) in enumerate(cases.items()):
        archive = cache / f"spark-4.3.0-{i:016x}.jsa"
        archive.write_bytes(b"archive")
        archive.with_name(archive.name + jvm_cds.HOME_SUFFIX).write_text(f"{where}\n{home}")
        archives[case] = archive
    # the gone install's second writer, exited: its temporary goes with the archive
    tmp = cache / f".{archives['gone'].name}.tmp-{host}-second"
    tmp.write_bytes(b"partial")
    tmp.with_name(tmp.name + ".jvm").write_text(dead)
    plan = jvm_cds.plan(java, line, SPARK)
    assert plan.writing is not None  # this install has no archive yet: it writes one
    assert not archives["gone"].exists() and not tmp.exists()
    assert not archives["gone"].with_name(archives["gone"].name + jvm_cds.HOME_SUFFIX).exists()
    assert archives["kept"].exists() and archives["elsewhere"].exists()


def test_map_only_by_the_environment(cache, monkeypatch):
    """SPARKVISION_JVM_CDS=map: a long-lived JVM maps the archive that is there and never writes one."""
    java, line = java_binary(), java_version()[1]
    monkeypatch.setenv(jvm_cds.ENV_SWITCH, "map")
    assert jvm_cds.plan(java, line, SPARK).options == "" and not list(cache.glob(".*"))
    monkeypatch.delenv(jvm_cds.ENV_SWITCH)
    first = jvm_cds.plan(java, line, SPARK)
    proc = _java(first.options)
    first.started(proc.pid)
    assert proc.wait() == 0
    monkeypatch.setenv(jvm_cds.ENV_SWITCH, "map")
    assert jvm_cds.plan(java, line, SPARK).mapping == jvm_cds.archive_path(java, line, SPARK)


def test_a_writer_that_exited_but_is_not_yet_reaped_counts_as_finished():
    """A JVM whose Python has exited is an orphan: it writes the archive as it exits, then waits as a
    zombie until init collects it, which some inits do seconds later. Meanwhile it has finished, so
    the next start promotes its archive instead of becoming a second writer."""
    import time

    from sparkvision.runtime.fs import pid_alive

    proc = subprocess.Popen([sys.executable, "-c", "pass"])  # not waited for: a zombie once it exits
    stat = f"/proc/{proc.pid}/stat"
    deadline = time.time() + 30
    while time.time() < deadline and not open(stat).read().rsplit(")", 1)[1].startswith(" Z"):
        time.sleep(0.05)
    try:
        assert not pid_alive(proc.pid)
    finally:
        proc.wait()
    assert pid_alive(os.getpid()) and not pid_alive(proc.pid)
