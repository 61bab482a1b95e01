"""Files and folders: where sparkvision keeps its caches, and outputs that appear only when complete.

Every output is assembled under a temporary name, ``.<name>.tmp-<host>-<pid>`` beside its final
name, and renamed into place when complete (:func:`atomic_output`, :func:`write_atomic`), so a
killed run never leaves anything that looks finished. What it does leave is a hidden temporary;
the next run writing the same output (or into the same folder) removes it once the process
named in it is gone (:func:`remove_stale`, :func:`remove_stale_in`). Only this host's processes
are judged: a work directory shared with other machines may hold their live temporaries.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sparkvision.runtime.stopping import raise_if_stopped

WORK_DIR_ENV = "SPARKVISION_WORK_DIR"


def cache_root() -> Path:
    """The user's cache folder for sparkvision: ``$XDG_CACHE_HOME/sparkvision``, else ``~/.cache/sparkvision``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sparkvision"


def default_work_dir() -> str:
    """Where ingested tables and downloads are kept between runs: ``$SPARKVISION_WORK_DIR``, else :func:`cache_root`."""
    return os.environ.get(WORK_DIR_ENV) or str(cache_root())


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host (another user's counts as running). A
    zombie does not: it has exited, and only waits for its parent (or init, for an orphan such as
    a JVM whose Python is gone) to collect its status, which some inits do only seconds later."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS), or gone meanwhile: the signal said it exists
        return True
    return stat[stat.rfind(")") + 2:][:1] != "Z"  # the state follows the command name "(...)"


def temp_path(final: str | os.PathLike) -> Path:
    """Where to assemble ``final`` before renaming it: a hidden sibling naming this host and process."""
    final = Path(final)
    return final.parent / f".{final.name}.tmp-{socket.gethostname()}-{os.getpid()}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_output(final: str | os.PathLike) -> Iterator[Path]:
    """Yield the temporary path to write ``final`` at (a file or a folder); rename it into place
    when the block ends without an error, remove it when it does not. Leftovers of dead
    processes for the same ``final`` are removed first."""
    final = Path(final)
    remove_stale(final)
    tmp = temp_path(final)
    _remove(tmp)
    try:
        yield tmp
        raise_if_stopped()  # a stopped run renames nothing into place
        os.replace(tmp, final)
    finally:
        if tmp.exists() or tmp.is_symlink():
            _remove(tmp)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to the file ``path`` all at once: a reader sees the old file or the new one, never half."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def remove_stale(final: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of ``final`` left by processes of this host that no longer run; return them."""
    final = Path(final)
    return _remove_dead(final.parent, glob.escape(f".{final.name}.tmp-{socket.gethostname()}-") + "*")


def remove_stale_in(folder: str | os.PathLike) -> list[Path]:
    """Remove every temporary in ``folder`` left by a process of this host that no longer runs.

    For outputs whose names never repeat (``runs/<timestamp>``, a table under an old
    fingerprint): :func:`remove_stale` alone would never see their leftovers again.
    """
    return _remove_dead(Path(folder), ".*.tmp-" + glob.escape(socket.gethostname()) + "-*")


def _remove_dead(folder: Path, pattern: str) -> list[Path]:
    marker = f".tmp-{socket.gethostname()}-"
    removed = []
    for path in folder.glob(pattern):
        pid = path.name.rpartition(marker)[2]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            _remove(path)
            removed.append(path)
    return removed
