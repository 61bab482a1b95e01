"""Test-only hooks: one Spark task failing on its first attempt, and a run holding at a named point.

Spark retries a failed task (``local[N,F]`` allows F attempts; a cluster, 4 by default). To show
that a retried task gives exactly the result a clean run gives, ``tests/test_faults.py`` sets
``SPARKVISION_FAIL_FIRST_ATTEMPT=ingest`` in the environment of ``sparkvision run``: the first
attempt of the first ingestion task then raises, and only that attempt. Python workers of a
local master inherit the driver's environment; on a cluster the variable would have to reach
the executors (``spark.executorEnv.*``). Unset, the hook costs one dictionary lookup per task.

The tests that kill a run part-way (``tests/test_faults.py``, ``test_cnn.py``, ``test_experiment.py``)
must signal it while it is at a given point, not after it has moved on: on a loaded machine the few
seconds a tiny run spends there can pass before the test reads the line that announces it. With
``SPARKVISION_HOLD_AT=SITE`` a process reaching :func:`hold` at ``SITE`` waits there (at most
:data:`HOLD_SECONDS`, and no longer than its process group's leader lives), so the signal lands
where the test means it to. Unset, :func:`hold` costs one dictionary lookup.
"""

from __future__ import annotations

import os
import time

ENV = "SPARKVISION_FAIL_FIRST_ATTEMPT"
HOLD_ENV = "SPARKVISION_HOLD_AT"
HOLD_SECONDS = 30.0


def fail_first_attempt(site: str) -> None:
    """Inside a task: raise if ``$SPARKVISION_FAIL_FIRST_ATTEMPT`` names ``site`` and this is the
    first attempt of partition 0."""
    if os.environ.get(ENV) != site:
        return
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if ctx is not None and ctx.partitionId() == 0 and ctx.attemptNumber() == 0:
        raise RuntimeError(f"injected failure ({ENV}={site}): partition 0, attempt 0")


def hold(site: str) -> None:
    """Wait here while ``$SPARKVISION_HOLD_AT`` names ``site``: until the process group's leader (the
    ``sparkvision`` command a test started in a session of its own) is gone, or for at most
    :data:`HOLD_SECONDS`, then go on. A signal's handler runs during the wait as anywhere else."""
    if os.environ.get(HOLD_ENV) != site:
        return
    leader, deadline = os.getpgid(0), time.monotonic() + HOLD_SECONDS
    while time.monotonic() < deadline:
        try:
            os.kill(leader, 0)
        except ProcessLookupError:  # the command was killed (and reaped): its children need not wait
            return
        except PermissionError:  # a leader that is not ours: wait out the time
            pass
        time.sleep(0.05)
