"""The project's exception types: one per kind of failure, each carrying a message with the fix.

``cli.main`` catches :class:`SparkVisionError` and prints its message as one paragraph; the
exit code says which kind it was.
"""

from __future__ import annotations

import contextlib
from typing import Iterator


class SparkVisionError(Exception):
    """Base class: a failure the user can act on. ``str(err)`` says what is wrong and what to do."""

    exit_code = 1


class ConfigError(SparkVisionError):
    """A command-line option or setting that cannot work (bad value, existing output folder)."""

    exit_code = 2


class DataNotFoundError(SparkVisionError):
    """The dataset, or a file it needs, is not where we were told to look."""

    exit_code = 3


class BadDataError(SparkVisionError):
    """A data file exists but is not what it should be (wrong keys, shape, labels, truncated)."""

    exit_code = 4


class UnsafeDataError(BadDataError):
    """A pickle asks to load something a CIFAR batch never needs; nothing from it was run."""


class DownloadError(SparkVisionError):
    """The dataset could not be downloaded, or the download did not verify."""

    exit_code = 5


class JavaNotFoundError(SparkVisionError):
    """No usable Java runtime (Spark 4 needs OpenJDK 17 or 21)."""

    exit_code = 6


# Errors raised inside Spark tasks reach the driver only as text inside a Py4J/Python exception.
# Tasks wrap them in this marker so the driver can raise the original type with its own message.
_MARK = "SPARKVISION-ERROR"
_KINDS = {cls.__name__: cls for cls in (BadDataError, UnsafeDataError, DataNotFoundError)}


def encode_task_error(err: SparkVisionError) -> RuntimeError:
    """Wrap ``err`` (raised in a Spark task) so :func:`decode_task_error` can recover it."""
    return RuntimeError(f"<{_MARK} {type(err).__name__}>{err}</{_MARK}>")


def decode_task_error(exc: BaseException) -> SparkVisionError | None:
    """Return the project error hidden in a failed Spark job's exception text, if there is one."""
    import re

    match = re.search(rf"<{_MARK} (\w+)>(.*?)</{_MARK}>", str(exc), re.S)
    if not match:
        return None
    return _KINDS.get(match.group(1), BadDataError)(match.group(2))


@contextlib.contextmanager
def task_errors() -> Iterator[None]:
    """Re-raise a project error that a Spark task raised (it comes back wrapped in a Java exception)
    as itself, so the user reads its message rather than the job's trace."""
    try:
        yield
    except SparkVisionError:
        raise
    except Exception as exc:
        err = decode_task_error(exc)
        if err is not None:
            raise err from None
        raise


def failure_summary(exc: BaseException) -> str:
    """One line saying why an unexpected failure happened, from its text.

    A failed Spark job comes back as a Java exception whose text is mostly stack frames; its last
    line is a frame (``at org.apache.spark.util.EventLoop…``), which says nothing. This picks, in
    order: the Python exception raised inside a task, the innermost "Job aborted due to stage
    failure" reason, the first Java exception line, else the first line that is not a frame.
    """
    import re

    text = str(exc)
    python = re.findall(r"Traceback \(most recent call last\):\n(?:[ \t].*\n)*(\S[^\n]*)", text)
    if python:
        return python[-1].strip()
    aborted = re.findall(r"Job aborted due to stage failure: ([^\n]+)", text)
    if aborted:
        return aborted[-1].strip()
    java = re.search(r"^[:\s]*((?:[a-z_]\w*\.)+[A-Z]\w*(?:Exception|Error)\b[^\n]*)", text, re.M)
    if java:
        return java.group(1).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("at ")]
    return lines[0] if lines else type(exc).__name__
