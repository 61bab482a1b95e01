"""Temporary names for outputs that are renamed into place when complete, and the clean-up of
those a killed run left behind.

A run writes a table or a run folder under ``.<name>.tmp-<host>-<pid>`` beside its final name
and renames it when complete, so a killed run never leaves anything that looks finished. What
it does leave is a hidden temporary folder; the next run writing the same output removes it
once the process named in it is gone. Only this host's processes are judged: a work directory
shared with other machines may hold their live temporaries.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
from pathlib import Path


def temp_path(final: str | os.PathLike) -> Path:
    """Where to assemble ``final`` before renaming it: a hidden sibling naming this host and process."""
    final = Path(final)
    return final.parent / f".{final.name}.tmp-{socket.gethostname()}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


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
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed.append(path)
    return removed
