"""A test-only hook that makes one Spark task fail on its first attempt.

Spark retries a failed task (``local[N,F]`` allows F attempts; a cluster, 4 by default). To show
that a retried task gives exactly the result a clean run gives, ``tests/test_faults.py`` sets
``SPARKVISION_FAIL_FIRST_ATTEMPT=ingest`` in the environment of ``sparkvision run``: the first
attempt of the first ingestion task then raises, and only that attempt. Python workers of a
local master inherit the driver's environment; on a cluster the variable would have to reach
the executors (``spark.executorEnv.*``). Unset, the hook costs one dictionary lookup per task.
"""

from __future__ import annotations

import os

ENV = "SPARKVISION_FAIL_FIRST_ATTEMPT"


def fail_first_attempt(site: str) -> None:
    """Inside a task: raise if ``$SPARKVISION_FAIL_FIRST_ATTEMPT`` names ``site`` and this is the
    first attempt of partition 0."""
    if os.environ.get(ENV) != site:
        return
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if ctx is not None and ctx.partitionId() == 0 and ctx.attemptNumber() == 0:
        raise RuntimeError(f"injected failure ({ENV}={site}): partition 0, attempt 0")
