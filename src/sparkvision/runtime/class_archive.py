"""A class-data-sharing archive for the driver JVM: Spark starts seconds faster from the second run.

Starting Spark's JVM and running its first job is mostly loading, parsing and verifying some
ten thousand classes from Spark's jars. Java's application class-data sharing (AppCDS) keeps
those classes, already parsed, in one archive file that later JVMs map into memory. The first
JVM started with a given Java and Spark writes the archive as it exits
(``-XX:ArchiveClassesAtExit``); every later one maps it (``-XX:SharedArchiveFile``).

The archive lives in the user's cache (``SPARKVISION_CACHE_DIR``, else ``$XDG_CACHE_HOME`` or
``~/.cache``, then ``sparkvision/jvm``), keyed by the Java and the Spark install it was made with
(one no start has mapped for 30 days is removed, and so is another install's temporary once its
writer has exited and its archive is in place). Each archive has a marker naming its host and its
Spark install (``<archive>.home``): an archive whose install on this host is gone (a deleted
virtual environment, a removed clone) is removed by the next start, not 30 days later. It is
written under a temporary name and renamed into place by a later run once the JVM that wrote
it has exited, so a JVM never maps a half-written archive. An archive Java cannot use costs
only the speed-up: Java then loads classes the ordinary way (``-Xshare:auto``, its default).
An archive is checked once, in a throwaway ``java -version``, before it is renamed into place
(a truncated archive would crash the JVM that maps it), and one that fails a JVM start later is
removed and the start retried without it. ``SPARKVISION_JVM_CDS=0`` turns the archive off;
``SPARKVISION_JVM_CDS=map`` maps one but never writes one, for a long-lived JVM (the tests' own
sessions) whose archive would be written only as it exits, a minute or more of CPU then.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import time
from pathlib import Path

from sparkvision.runtime.fs import cache_root, pid_alive

ENV_SWITCH = "SPARKVISION_JVM_CDS"  # "0": no archive; "map": map one, never write one
ENV_CACHE = "SPARKVISION_CACHE_DIR"
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"  # an unusable archive is not worth a console warning
# JVMs that may be writing an archive at once. More than one: a long-lived session (a notebook,
# a service) writes only when it exits, and a short run started meanwhile should not wait for it.
# The first complete one is put in place; the others are removed.
MAX_WRITERS = 2
ABANDONED_S = 3600  # a temporary archive whose JVM never said its pid (it failed to start) is removed after this
# An archive no JVM has mapped for this long (an older Spark or Java, a deleted virtual environment)
# is removed: each is about 200 MB, and every start marks the one it maps by its modification time.
UNUSED_S = 30 * 24 * 3600


def cache_dir() -> Path:
    """Where archives are kept: ``$SPARKVISION_CACHE_DIR/jvm``, else ``jvm`` in :func:`~sparkvision.runtime.fs.cache_root`."""
    return Path(os.environ.get(ENV_CACHE) or cache_root()) / "jvm"


def spark_home() -> str:
    """Where the Spark that PySpark starts is installed (``SPARK_HOME``, else pyspark's folder)."""
    from pyspark.find_spark_home import _find_spark_home

    return os.path.realpath(_find_spark_home())


def archive_path(java: str, java_line: str, spark_version: str, home: str | None = None) -> Path:
    """The archive for this Java binary, its version line, this Spark version and its install folder
    ``home`` (default :func:`spark_home`). Java maps an archive only into a JVM with the class path
    it was made with (Spark's jars folder), so two installs (two virtual environments) need two."""
    home = home or spark_home()
    key = hashlib.sha256(f"{os.path.realpath(java)}|{java_line}|{spark_version}|{home}".encode()).hexdigest()[:16]
    return cache_dir() / f"spark-{spark_version}-{key}.jsa"


def _temporaries(final: Path) -> list[Path]:
    prefix = f".{final.name}.tmp-{socket.gethostname()}-"
    return [p for p in final.parent.glob(f"{prefix}*") if not p.name.endswith(".jvm")]


def usable(java: str, archive: Path) -> bool:
    """Whether ``java`` can map ``archive``: a truncated one (its writer killed mid-write) crashes
    the JVM that maps it, so an archive is tried in a throwaway ``java -version`` (0.2 s) first."""
    import subprocess

    try:
        done = subprocess.run([java, f"-XX:SharedArchiveFile={archive}", "-XX:+SuppressFatalErrorMessage",
                               *QUIET.split(), "-version"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def promote_finished(java: str, final: Path) -> None:
    """Rename into place an archive whose writing JVM has exited and that Java can map; remove
    unusable and abandoned temporaries."""
    for tmp in _temporaries(final):
        sidecar = tmp.with_name(tmp.name + ".jvm")
        try:
            pid = int(sidecar.read_text())
        except (OSError, ValueError):
            if time.time() - tmp.stat().st_mtime > ABANDONED_S:
                tmp.unlink(missing_ok=True)
            continue
        if pid_alive(pid):
            continue  # still running: it writes the archive as it exits
        if tmp.stat().st_size > 0 and not final.exists() and usable(java, tmp):
            os.replace(tmp, final)
        else:
            tmp.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
    for sidecar in final.parent.glob(f".{final.name}.tmp-{socket.gethostname()}-*.jvm"):
        if not sidecar.with_name(sidecar.name[:-4]).exists():  # its JVM was killed before writing anything
            try:
                if not pid_alive(int(sidecar.read_text())):
                    sidecar.unlink(missing_ok=True)
            except (OSError, ValueError):
                sidecar.unlink(missing_ok=True)


HOME_SUFFIX = ".home"  # beside an archive: "host\nSpark install folder"


def record_install(final: Path, home: str) -> None:
    """Write the marker naming this host and the Spark install ``home`` beside the archive ``final``
    (once), so a start of another install can tell when this one is gone."""
    marker = final.with_name(final.name + HOME_SUFFIX)
    if not marker.exists():
        try:
            marker.write_text(f"{socket.gethostname()}\n{home}")
        except OSError:  # a read-only cache: the 30-day rule still applies
            pass


def _installs_gone(folder: Path, final: Path) -> set[str]:
    """Names of the archives in ``folder`` (not ``final``) whose marker names an install on this
    host that no longer exists."""
    gone = set()
    for marker in folder.glob(f"spark-*.jsa{HOME_SUFFIX}"):
        name = marker.name[:-len(HOME_SUFFIX)]
        try:
            host, home = marker.read_text().split("\n", 1)
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if name != final.name and host == socket.gethostname() and not os.path.isdir(home):
            gone.add(name)
    return gone


def remove_unused(final: Path, now: float | None = None) -> list[Path]:
    """Remove the cache's other archives whose install on this host is gone (their marker names a
    folder that no longer exists) or that no start has mapped for :data:`UNUSED_S`, and other
    installs' temporaries whose writer has exited where their archive is in place already (only that
    install's next start would remove them, and a deleted virtual environment has none), is gone
    with its install, or that are as old; return what was removed."""
    now = time.time() if now is None else now
    removed = []
    gone = _installs_gone(final.parent, final)
    for name in gone:
        archive = final.parent / name
        try:
            if archive.exists():
                archive.unlink()
                removed.append(archive)
            archive.with_name(name + HOME_SUFFIX).unlink(missing_ok=True)
        except OSError:  # gone meanwhile, or another user's
            pass
    for other in final.parent.glob("spark-*.jsa"):
        try:
            if other != final and now - other.stat().st_mtime > UNUSED_S:
                other.unlink()
                other.with_name(other.name + HOME_SUFFIX).unlink(missing_ok=True)
                removed.append(other)
        except OSError:  # gone meanwhile, or another user's
            pass
    for tmp in final.parent.glob(f".spark-*.jsa.tmp-{socket.gethostname()}-*"):
        if tmp.name.endswith(".jvm") or tmp.name.startswith(f".{final.name}.tmp-"):
            continue  # a sidecar, or this install's own: promote_finished decides
        sidecar = tmp.with_name(tmp.name + ".jvm")
        try:
            age = now - tmp.stat().st_mtime
            pid = int(sidecar.read_text()) if sidecar.exists() else None
            if (pid is None and age <= ABANDONED_S) or (pid is not None and pid_alive(pid)):
                continue  # its JVM may still be starting, or is writing it
            archive = tmp.name[1:].split(".tmp-")[0]
            if (tmp.parent / archive).exists() or archive in gone or age > UNUSED_S:
                tmp.unlink()
                sidecar.unlink(missing_ok=True)
                removed.append(tmp)
        except (OSError, ValueError):  # gone meanwhile, another user's, or a sidecar being written
            pass
    return removed


class ArchivePlan:
    """The JVM options for one driver start, and what to record once the JVM runs."""

    def __init__(self, options: str, writing: Path | None = None, mapping: Path | None = None) -> None:
        self.options = options
        self.writing = writing  # the temporary archive this JVM will write as it exits
        self.mapping = mapping  # the archive this JVM maps

    def started(self, jvm_pid: int) -> None:
        """Record the JVM's pid beside its temporary archive, so a later run knows when it is complete."""
        if self.writing is not None:
            try:
                self.writing.with_name(self.writing.name + ".jvm").write_text(str(jvm_pid))
            except OSError:
                pass


def plan(java: str, java_line: str, spark_version: str, write: bool = True) -> ArchivePlan:
    """Options that map the archive if there is one, else write it as this JVM exits. With ``write``
    false (a JVM that only maps one: the Connect server), no archive there means no options, and
    nothing is created: not even the folder."""
    switch = os.environ.get(ENV_SWITCH, "1")
    if switch == "0":
        return ArchivePlan("")
    write = write and switch != "map"
    home = spark_home()
    final = archive_path(java, java_line, spark_version, home)
    if not write and not final.parent.is_dir():
        return ArchivePlan("")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        promote_finished(java, final)
        remove_unused(final)
        if write:
            record_install(final, home)
    except OSError:  # a read-only or odd cache folder: start without the archive
        return ArchivePlan("")
    if final.is_file():
        try:
            os.utime(final)  # in use: not to be removed as unused
        except OSError:  # another user's archive in a shared cache: still mappable
            pass
        return ArchivePlan(f"-XX:SharedArchiveFile={final} {QUIET}", mapping=final)
    if not write:
        return ArchivePlan("")
    if len(list(final.parent.glob(f".{final.name}.tmp-*.jvm"))) >= MAX_WRITERS:
        return ArchivePlan("")  # enough JVMs will write one as they exit
    tmp = final.with_name(f".{final.name}.tmp-{socket.gethostname()}-{secrets.token_hex(4)}")
    return ArchivePlan(f"-XX:ArchiveClassesAtExit={tmp} {QUIET}", tmp)
