"""A class-data-sharing archive for the driver JVM: Spark starts seconds faster from the second run.

Starting Spark's JVM and running its first job is mostly loading, parsing and verifying some
ten thousand classes from Spark's jars. Java's application class-data sharing (AppCDS) keeps
those classes, already parsed, in one archive file that later JVMs map into memory. The first
JVM started with a given Java and Spark writes the archive as it exits
(``-XX:ArchiveClassesAtExit``); every later one maps it (``-XX:SharedArchiveFile``).

The archive lives in the user's cache (``SPARKVISION_CACHE_DIR``, else ``$XDG_CACHE_HOME`` or
``~/.cache``, then ``sparkvision/jvm``), keyed by the Java and the Spark install it was made with
(one no start has mapped for 30 days is removed, and so is another install's temporary once its
writer has exited and its archive is in place). It is
written under a temporary name and renamed into place by a later run once the JVM that wrote
it has exited, so a JVM never maps a half-written archive. An archive Java cannot use costs
only the speed-up: Java then loads classes the ordinary way (``-Xshare:auto``, its default).
An archive is checked once, in a throwaway ``java -version``, before it is renamed into place
(a truncated archive would crash the JVM that maps it), and one that fails a JVM start later is
removed and the start retried without it. ``SPARKVISION_JVM_CDS=0`` turns the archive off.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import time
from pathlib import Path

from sparkvision.runtime.fs import cache_root, pid_alive

ENV_SWITCH = "SPARKVISION_JVM_CDS"  # "0": no archive
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


def remove_unused(final: Path, now: float | None = None) -> list[Path]:
    """Remove the cache's other archives that no start has mapped for :data:`UNUSED_S`, and other
    installs' temporaries whose writer has exited where their archive is in place already (only that
    install's next start would remove them, and a deleted virtual environment has none) or that are
    as old; return what was removed."""
    now = time.time() if now is None else now
    removed = []
    for other in final.parent.glob("spark-*.jsa"):
        try:
            if other != final and now - other.stat().st_mtime > UNUSED_S:
                other.unlink()
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
            if (tmp.parent / tmp.name[1:].split(".tmp-")[0]).exists() or age > UNUSED_S:
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
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return ArchivePlan("")
    final = archive_path(java, java_line, spark_version)
    if not write and not final.parent.is_dir():
        return ArchivePlan("")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        promote_finished(java, final)
        remove_unused(final)
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
