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
    prefix = f".{final.name}.tmp-{socket.gethostname()}-"
    removed = []
    for path in final.parent.glob(glob.escape(prefix) + "*"):
        pid = path.name[len(prefix):]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
