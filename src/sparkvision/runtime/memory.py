"""Memory defaults sized from the machine, and the check that a setting can fit before the JVM starts.

:func:`size_memory` is the rule, a pure function of (memory, cores) so it is tested as one;
:func:`machine_memory` reads this machine's figures (a container's limit counts, not the host's
memory); :func:`check_driver_memory` refuses a driver heap that cannot fit, with the setting
that would, instead of a JVM that fails to start or is killed once its heap fills.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from sparkvision.errors import ConfigError

MiB, GiB = 1 << 20, 1 << 30
MIN_HEAP = 512 * MiB              # Spark refuses a heap under 450 MiB (300 MiB reserved, × 1.5)
MAX_HEAP = 31 * GiB               # from 32 GiB on the JVM loses compressed object pointers: a bigger heap holds less
OS_ROOM = 1 * GiB                 # the OS, the JVM's own memory outside its heap, the driver's Python process
PYTHON_ROOM_PER_CORE = 512 * MiB  # one Python worker per core in local mode (Arrow batches, numpy copies)
_SIZE = re.compile(r"^(\d+)([kmgt]?)$", re.I)
_UNITS = {"": 1, "k": 1 << 10, "m": MiB, "g": GiB, "t": 1 << 40}


def parse_memory(value: str) -> int:
    """Bytes in a JVM memory size; a bare number is bytes.

    >>> parse_memory("4g") == 4 * GiB, parse_memory("512m") == 512 * MiB
    (True, True)
    """
    match = _SIZE.match(value.strip())
    if not match:
        raise ConfigError(f"{value!r} is not a memory size: use a number with k, m, g or t, e.g. 4g.")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def format_memory(size: int) -> str:
    """A JVM memory size for ``size`` bytes: whole gigabytes as ``6g``, else megabytes.

    >>> format_memory(6 * GiB), format_memory(5632 * MiB)
    ('6g', '5632m')
    """
    return f"{size // GiB}g" if size % GiB == 0 else f"{size // MiB}m"


def machine_memory() -> tuple[int, int]:
    """(bytes of memory, cores) this process may use: physical memory, or the container's limit
    (cgroup v2 or v1) when that is lower, and the cores it may run on."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():  # v2 writes "max" for no limit; v1 a number larger than the machine
            total = min(total, int(text))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return total, cores


@dataclass(frozen=True)
class MemoryDefaults:
    """The memory settings :func:`size_memory` chose, as JVM sizes."""

    driver_memory: str


def size_memory(total: int, cores: int) -> MemoryDefaults:
    """Default memory settings for a machine with ``total`` bytes of memory and ``cores`` cores.

    **Driver memory** is the heap of the JVM started on this machine. In local mode that JVM is
    also the executor: it holds the cached features (8 KB per gray image) and MLlib's working
    data, so more heap means less spilling to disk, but the rest of the machine is needed too.
    The rule: a quarter of the machine's memory, but no more than what is left after 1 GiB
    (the OS, the JVM's memory outside its heap, the driver's Python) and 512 MiB per core (one
    Python worker per core in local mode); at least 512m (Spark's minimum) and at most 31g
    (above that the JVM loses compressed pointers); rounded down to 256 MiB. A 16 GiB machine
    gets the assignment's 4g, a 2 GiB one 512m, a 24 GiB one 6g, a 200 GB one 31g. On a cluster
    the driver holds only metadata and small results; the rule still applies, and is generous.

    **Executor memory** (4g) and **overhead** (512m) are the assignment's. They size executors on
    a cluster's workers, whose memory this machine cannot see, so they are not derived from it;
    in local mode they are not used. Set them to fit your workers.

    >>> size_memory(16 * GiB, 8)
    MemoryDefaults(driver_memory='4g')
    >>> size_memory(2 * GiB, 2).driver_memory, size_memory(24 * GiB, 2).driver_memory
    ('512m', '6g')
    """
    heap = min(total // 4, total - OS_ROOM - cores * PYTHON_ROOM_PER_CORE, MAX_HEAP)
    heap = max(MIN_HEAP, heap // (256 * MiB) * (256 * MiB))
    return MemoryDefaults(format_memory(heap))


def default_driver_memory() -> str:
    """:func:`size_memory`'s driver memory for this machine."""
    return size_memory(*machine_memory()).driver_memory


def check_driver_memory(driver_memory: str, total: int, cores: int = 1) -> None:
    """Raise :class:`ConfigError`, naming a setting that works, when a driver heap of
    ``driver_memory`` cannot fit in ``total`` bytes or is below Spark's minimum.

    The heap may take all but 1 GiB (the JVM's memory outside its heap and the OS need that
    much). A bigger one is accepted by the JVM at start, which only reserves it, and fails later:
    the kernel kills the JVM, or the machine swaps, once the heap fills.

    >>> check_driver_memory("500g", 24 * GiB)
    Traceback (most recent call last):
    ...
    sparkvision.errors.ConfigError: driver memory 500g cannot fit in this machine's 24.0 GiB of memory (physical memory or the container's limit): use --driver-memory 23g or less, or leave it out for the default sized from this machine (6g).
    """
    size = parse_memory(driver_memory)
    default = size_memory(total, cores).driver_memory
    if size < MIN_HEAP:
        raise ConfigError(f"driver memory {driver_memory} is below Spark's minimum: use --driver-memory 512m or "
                          f"more, or leave it out for the default sized from this machine ({default}).")
    fits = max(MIN_HEAP, total - OS_ROOM)
    if size > fits:
        raise ConfigError(f"driver memory {driver_memory} cannot fit in this machine's {total / GiB:.1f} GiB of "
                          f"memory (physical memory or the container's limit): use --driver-memory "
                          f"{format_memory(fits // MiB * MiB)} or less, or leave it out for the default sized from "
                          f"this machine ({default}).")
