"""The project's exception types: one per kind of failure, each carrying a message with the fix.

``cli.main`` catches :class:`SparkVisionError` and prints its message as one paragraph; the
exit code says which kind it was.
"""

from __future__ import annotations


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
