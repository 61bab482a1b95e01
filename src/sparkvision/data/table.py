"""The image table: writing it atomically, and reading it back (its schema: :mod:`sparkvision.data.schema`).

One row per image, named as Spark's own image schema names its fields (``height``, ``width``,
``nChannels``, ``data``, ``origin``) so a reader of ``spark.read.format("image")`` output feels
at home. One difference, on purpose: ``data`` holds **RGB** bytes (Spark's reader gives BGR),
row-major height × width × channels.

A table is written once per set of inputs, under ``WORK/tables/<dataset>-<fingerprint>``, to a
temporary folder that is renamed only when Spark's write has finished, so a killed run never
leaves a table that looks complete. The next run with the same inputs reads it back.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from sparkvision.data.schema import TABLE_SCHEMA, TABLE_VERSION
from sparkvision.runtime.fs import remove_stale_in, temp_path
from sparkvision.runtime.faults import hold
from sparkvision.runtime.stopping import raise_if_stopped
from sparkvision.errors import BadDataError, task_errors


_META = "_sparkvision.json"  # Spark's readers skip files starting with "_"
_SKIPPED = "_skipped.json"
MAX_SKIPPED = 1000  # unreadable files listed (all are counted)


@dataclass(frozen=True)
class TableInfo:
    """What the table holds, written beside it so a reader needs no pass over the data."""

    dataset: str
    fingerprint: str
    class_names: tuple[str, ...]
    num_images: int
    has_test: bool
    source: str
    height: int = 32
    width: int = 32
    channels: int = 3
    skipped: int = 0              # unreadable files left out (class-folder sources)
    error_column: bool = False    # rows of unreadable files are stored, with an error, and filtered out on read
    version: int = TABLE_VERSION
    files: dict[str, int] | None = None  # the data files as written (name: bytes), to tell a table changed since


@dataclass
class ImageTable:
    """A written image table: where it is, what it holds, and a DataFrame over it."""

    path: Path
    info: TableInfo
    df: DataFrame
    reused: bool
    skipped: list[dict] = field(default_factory=list)  # [{"path", "reason"}], the first 1,000


def table_path(work_dir: str | os.PathLike, dataset: str, fingerprint: str) -> Path:
    """Where the table for these inputs lives under the work directory."""
    # Absolute: a Spark Connect server resolves a relative path against its own working folder.
    return Path(work_dir).expanduser().absolute() / "tables" / f"{dataset}-v{TABLE_VERSION}-{fingerprint}"


def read_table(spark: SparkSession, path: str | os.PathLike) -> ImageTable:
    """Read a table written by :func:`write_table` (its rows and its info)."""
    path = Path(path)
    meta = json.loads((path / _META).read_text())
    meta["class_names"] = tuple(meta["class_names"])
    info = TableInfo(**meta)
    skipped = json.loads((path / _SKIPPED).read_text()) if (path / _SKIPPED).is_file() else []
    return ImageTable(path, info, _rows(spark, path, info.error_column), reused=True, skipped=skipped)


def _rows(spark: SparkSession, path: Path, error_column: bool) -> DataFrame:
    if not error_column:
        return spark.read.schema(TABLE_SCHEMA).parquet(str(path))
    from pyspark.sql import functions as F

    stored = spark.read.parquet(str(path))
    return stored.filter(F.col("error").isNull()).select(*TABLE_SCHEMA.fieldNames())


def write_table(spark: SparkSession, rows: DataFrame, path: str | os.PathLike, info: TableInfo,
                strict: bool = False, skipped_before: Sequence[tuple[str, str]] = ()) -> ImageTable:
    """Write ``rows`` as Parquet at ``path`` atomically, with ``info`` beside it.

    ``rows`` may carry an ``error`` column (files that could not be decoded): those rows are
    stored but left out when the table is read, and listed in ``_skipped.json`` — one decoding
    pass finds both. ``skipped_before``: (path, reason) of files the listing found unreadable before
    any task ran (empty files, which Spark's reader drops silently), counted and listed with them.
    With ``strict``, any such row is an error and no table is left. Errors that tasks raised about
    the data come back as the project's own error types.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_in(path.parent)  # what killed runs left: this table's, and tables of older inputs
    tmp = temp_path(path)
    try:
        with task_errors():  # a project error raised in a task comes back as itself
            # Files of ~12 MB (and row groups of 8 MB) let a reader spread the table evenly over any
            # number of cores; one file per task would leave cores idle when tasks are few. No
            # compression: Snappy (Spark's default) made the CIFAR table 149 MB instead of 150 MB, for
            # 0.25-0.3 s more per write (pixels do not compress; benchmarked in BENCHMARKS.md).
            (rows.write.option("maxRecordsPerFile", 4096).option("parquet.block.size", 8 << 20)
             .option("compression", "none").parquet(str(tmp)))
            has_errors = "error" in rows.columns
            skipped = [{"path": p, "reason": why} for p, why in skipped_before][:MAX_SKIPPED]
            num_bad = len(skipped_before)
            if has_errors:  # one pass over the small error column counts both kinds
                stored = spark.read.parquet(str(tmp))
                counts = {r.ok: r["count"] for r in
                          stored.groupBy(F.col("error").isNull().alias("ok")).count().collect()}
                num_images, num_decode_bad = counts.get(True, 0), counts.get(False, 0)
                if num_decode_bad and len(skipped) < MAX_SKIPPED:
                    bad = stored.filter(F.col("error").isNotNull()).select("origin", "error").limit(MAX_SKIPPED - len(skipped))
                    skipped += [{"path": r.origin, "reason": r.error} for r in bad.collect()]
                num_bad += num_decode_bad
                if num_bad and strict:
                    raise BadDataError(f"{skipped[0]['path']}: cannot be read as an image ({skipped[0]['reason']}); "
                                       f"{num_bad} such file(s) under {info.source}. Remove or fix them, or run "
                                       "without --strict to skip and list them.")
            else:
                num_images = _rows(spark, tmp, False).count()
            info = TableInfo(**{**asdict(info), "num_images": num_images, "skipped": num_bad, "error_column": has_errors,
                                "files": _data_files(tmp)})
            (tmp / _META).write_text(json.dumps(asdict(info), indent=2))
            if skipped:
                (tmp / _SKIPPED).write_text(json.dumps(skipped, indent=1))
            hold("table-written")  # test-only: see sparkvision.runtime.faults
            raise_if_stopped()
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return read_table(spark, path)


def _data_files(path: Path) -> dict[str, int]:
    """The table's data files (Spark's part files; its own start with "_" or ".") and their sizes."""
    return {e.name: e.stat().st_size for e in os.scandir(path) if e.is_file() and not e.name.startswith(("_", "."))}


def table_changed(path: Path) -> str | None:
    """How the table at ``path`` differs from what was written (a data file gone, added, or of
    another size), or None when it is as written (or from a version that kept no list)."""
    try:
        written = json.loads((path / _META).read_text()).get("files")
    except (OSError, ValueError):
        return f"its {_META} cannot be read"
    if written is None:
        return None
    now = _data_files(path)
    for name in sorted(set(written) | set(now)):
        if name not in now:
            return f"{name} is missing"
        if name not in written:
            return f"{name} was added"
        if now[name] != written[name]:
            return f"{name} holds {now[name]:,} bytes where {written[name]:,} were written"
    return None


def reuse_table(spark: SparkSession, path: Path, progress: bool) -> ImageTable | None:
    """The table already at ``path``, if there is one (tables are renamed into place only when
    complete). A table changed since it was written (a file deleted or cut short) would lose
    images without a word or fail deep in Spark: it is removed, said, and written again."""
    if not (path / _META).is_file():
        return None
    changed = table_changed(path)
    if changed:
        print(f"  the image table {path} changed since it was written ({changed}): writing it again",
              file=sys.stderr)
        shutil.rmtree(path)
        return None
    if progress:
        print(f"  reusing the image table {path}", file=sys.stderr)
    return read_table(spark, path)


