"""From what the user names (``--data``) to an image table: locate the source, check it in the
driver, and read it into the table inside Spark tasks (written once per set of inputs, then
reused). Then the train/test split every model is fitted and evaluated on.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from sparkvision.data.download import download, extract_archive
from sparkvision.data.sources.cifar import RELEASES, how_to_pass, CIFAR10, CifarRelease, CifarSource, \
    binary_layout, python_layout, read_batches
from sparkvision.data.sources.folder import FolderSource, hidden_name, locate_folder, read_images
from sparkvision.data.table import ImageTable, TableInfo, reuse_table, table_path, write_table
from sparkvision.errors import BadDataError, ConfigError, DataNotFoundError, UnsafeDataError
from sparkvision.runtime.connect import parallelism


def locate_cifar(data: str | os.PathLike, cache_dir: str | os.PathLike, release: CifarRelease = CIFAR10,
           *, progress: bool = True) -> CifarSource:
    """Find the release at ``data`` and check it; ``"auto"`` downloads it into ``cache_dir``.

    ``data`` may be the python or binary batches folder, a folder holding one of them or the
    archive, or the archive itself (extracted once into ``cache_dir``). Raises
    :class:`DataNotFoundError` when nothing usable is there, naming what is missing.
    """
    cache = Path(cache_dir)
    if str(data) == "auto":
        data = download(release, cache / "downloads", progress=progress)
    path = Path(data).expanduser()
    if not path.exists():
        raise DataNotFoundError(f"{path}: no such file or folder. {how_to_pass(release)}")
    if path.is_file():
        if path.name.endswith((".tar.gz", ".tgz")):
            return _extracted(path, cache, release)
        raise DataNotFoundError(f"{path}: a file, but not a .tar.gz archive. {how_to_pass(release)}")
    for candidate, layout in ((path, None), (path / release.base_folder, "python"), (path / release.bin_folder, "binary")):
        if not candidate.is_dir():
            continue
        names = set(os.listdir(candidate))
        if layout in (None, "python") and names & set(release.train_list + release.test_list):
            return python_layout(candidate, release)
        if layout in (None, "binary") and names & {f"{n}.bin" for n in release.train_list + release.test_list}:
            return binary_layout(candidate, release)
    if (path / release.filename).is_file():
        return _extracted(path / release.filename, cache, release)
    other = next((r for r in RELEASES.values() if r.base_folder != release.base_folder and any(
        (path / n).exists() for n in (r.base_folder, r.bin_folder, r.filename, r.train_list[0], r.train_list[0] + ".bin"))),
        None)
    hint = f" It holds the {other.name} release: pass --dataset {other.name}." if other else ""
    raise DataNotFoundError(
        f"{path}: no {release.name} batches found (looked for {release.base_folder}/, {release.bin_folder}/, "
        f"{release.filename} or the batch files themselves).{hint} {how_to_pass(release)}"
    )


def _extracted(archive: Path, cache: Path, release: CifarRelease) -> CifarSource:
    """The release inside ``archive``, extracted once into ``cache``; its errors name the archive."""
    folder = extract_archive(archive, cache / "extracted", release)
    with _naming_archive(str(archive)):
        return replace(python_layout(folder, release), archive=str(archive))


@contextmanager
def _naming_archive(archive: str | None) -> Iterator[None]:
    """A damaged file of an extracted archive is named by its place in the cache, and "copy it
    again" would not mend it: say which archive it came from, which is what to replace."""
    try:
        yield
    except (BadDataError, DataNotFoundError) as exc:
        if archive is None:
            raise
        if isinstance(exc, UnsafeDataError):  # not damage: the archive holds a pickle that asks to run code
            raise type(exc)(f"{exc} It was extracted from {archive}: do not use that archive; download the "
                            "release again from its official source.") from None
        raise type(exc)(f"{exc} It was extracted from {archive}: that archive is damaged or incomplete; "
                        "download or copy it again (the extracted copy is replaced when the archive changes).") from None


def ingest_cifar(spark: SparkSession, source, work_dir: str | os.PathLike, *,
                 progress: bool = True) -> ImageTable:
    """The image table for a located CIFAR release: reused when its inputs are unchanged."""

    fp = source.fingerprint()
    path = table_path(work_dir, source.release.name, fp)
    if (existing := reuse_table(spark, path, progress)) is not None:
        return existing
    if progress:
        print(f"  reading {len(source.files)} batch files from {source.root} in Spark tasks", file=sys.stderr)
    info = TableInfo(dataset=source.release.name, fingerprint=fp, class_names=source.label_names,
                     num_images=-1, has_test=source.has_test, source=source.root)
    with _naming_archive(source.archive):
        table = write_table(spark, read_batches(spark, source), path, info)
    table.reused = False
    return table



OPEN_COST = 8192  # bytes a small file counts for when Spark packs files into tasks



@contextmanager
def small_file_tasks(spark: SparkSession, num_files: int, num_bytes: int, num_paths: int = 1) -> Iterator[None]:
    """Spark settings for reading many small files: a few tasks of thousands of files each.

    Each file counts for its size plus 8 KB, not Spark's default 4 MB "open cost" (which gives a
    task per few dozen files: the main cost of Spark's own image source). Tasks are sized so there
    are two per core: three equal tasks on two cores would leave one core idle for a third of
    the time. ``num_paths`` folders (class folders, read one by one) are listed in the driver, not
    by a Spark job of their own as Spark does past 32. The settings are restored afterwards.
    """
    keys = ("spark.sql.files.openCostInBytes", "spark.sql.files.maxPartitionBytes",
            "spark.sql.sources.parallelPartitionDiscovery.threshold")
    old = {k: spark.conf.get(k) for k in keys}
    tasks = 2 * parallelism(spark)
    per_task = -(-(num_bytes + num_files * OPEN_COST) // tasks)
    spark.conf.set(keys[0], str(OPEN_COST))
    if num_bytes:  # unknown sizes (0): keep Spark's own partition size
        spark.conf.set(keys[1], str(per_task))
    if num_paths > int(old[keys[2]]):  # many class folders: listed here, not by a Spark job of their own
        spark.conf.set(keys[2], str(num_paths))
    try:
        yield
    finally:
        for k, v in old.items():
            spark.conf.set(k, v)



def ingest_folder(spark: SparkSession, source, work_dir: str | os.PathLike, *, strict: bool = False,
                  progress: bool = True) -> ImageTable:
    """The image table for a class-folder tree: decoded in tasks, bad files skipped and listed.

    With ``strict``, any unreadable file is an error naming it, and no table is written.
    """

    if strict and source.skipped:  # found by the listing: no need to start reading
        (first, why), n = source.skipped[0], len(source.skipped)
        raise BadDataError(f"{first}: cannot be read as an image ({why}); {n} such file(s) under {source.root}. "
                           "Remove or fix them, or run without --strict to skip and list them.")
    fp = source.fingerprint()
    path = table_path(work_dir, "folder", fp)
    if (existing := reuse_table(spark, path, progress)) is not None:
        return existing
    if progress:
        print(f"  decoding {source.num_files:,} image files under {source.root} in Spark tasks", file=sys.stderr)
    info = TableInfo(dataset="folder", fingerprint=fp, class_names=source.class_names, num_images=-1,
                     has_test=source.has_test, source=source.root, height=source.size, width=source.size)
    # The root, or its class folders when files lie beside them (locate_folder says which)
    paths = list(source.paths) or [source.root]
    with small_file_tasks(spark, source.num_files, source.num_bytes, len(paths)):
        table = write_table(spark, read_images(spark, paths, source), path, info, strict=strict,
                            skipped_before=source.skipped)
    if table.info.num_images == 0:
        shutil.rmtree(path, ignore_errors=True)  # a table of nothing is no table
        first = table.skipped[0]
        raise BadDataError(f"{source.root}: none of the {source.num_files} image files could be read "
                           f"(first: {first['path']}: {first['reason']}).")
    table.reused = False
    return table


def looks_like_cifar(path: Path, dataset: str = "cifar10") -> bool:
    """Whether the folder (or file) ``path`` is a CIFAR release rather than a tree of class folders.

    A release is told by what only a release holds: its folders (``cifar-10-batches-py/`` …) as
    folders, its archive and first batch file as files. CIFAR-100's python batches are named
    ``train`` and ``test``, as are the folders of the class-folder layout ``{train,test}/<class>/``:
    so ``train`` counts only as a file, and beside class folders only with ``--dataset cifar100``
    (or ``cifar100-coarse``).
    """

    if path.is_file():
        return True
    releases = RELEASES.values()
    if any((path / n).is_dir() for r in releases for n in (r.base_folder, r.bin_folder)):
        return True
    batches = [n for r in releases for n in (r.filename, r.train_list[0], r.train_list[0] + ".bin")
               if (path / n).is_file()]
    if not batches:
        return False
    if set(batches) != {"train"} or RELEASES[dataset].train_list == ("train",):
        return True
    # Only a file named train, and --dataset cifar10: CIFAR-100's batches, or a file beside class folders?
    return not any(e.is_dir() and not hidden_name(e.name) for e in os.scandir(path))



def check_out_outside_data(out: str | os.PathLike, data: str) -> None:
    """Refuse an output folder inside the ``--data`` folder: the next run would read the run's files
    as data (a class named after the folder, or files listed as ignored), before anything is written."""
    if data == "auto" or not str(data).strip():
        return
    root = Path(data).expanduser()
    if not root.is_dir():
        return  # an archive, or nothing there (locate_data says so)
    target, root = Path(out).expanduser().absolute().resolve(), root.resolve()
    if target == root or root in target.parents:
        raise ConfigError(f"--out {out} is inside --data {data}: the next run would read its files as data (a class "
                          f"named after the folder, or files listed as ignored). Choose a folder outside {data}.")


def check_work_dir(work_dir: str) -> None:
    """A --work-dir that cannot hold tables is a ConfigError now, before any work (not a traceback later)."""
    path = Path(work_dir).expanduser()
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"--work-dir {work_dir}: {existing} is a file, not a folder; choose another work folder "
                          "(it keeps the image tables and downloads between runs).")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--work-dir {work_dir}: cannot write in {existing} (permission denied); choose another "
                          "work folder.")
    # What os.access cannot see (/sys, /proc, a read-only mount for root): try, and take back what was made
    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkstemp(prefix=".sparkvision-probe-", dir=path)
        os.close(probe[0])
        os.unlink(probe[1])
    except OSError as exc:
        raise ConfigError(f"--work-dir {work_dir}: cannot write there ({exc.strerror}); choose another work "
                          "folder (it keeps the image tables and downloads between runs).") from None
    finally:
        for made in missing:  # deepest first; nothing is left by a check
            try:
                made.rmdir()
            except OSError:
                break



def locate_data(data: str, work_dir: str, *, dataset: str = "cifar10", image_size: int = 32,
                progress: bool = True):
    """The source at ``data``: a CIFAR release (folder, archive, or ``auto``) or a class-folder tree.

    ``dataset`` names the CIFAR release (cifar10, cifar100 or cifar100-coarse); a folder of
    class folders is recognised by having none of a release's files.
    """

    if dataset not in RELEASES:
        raise ConfigError(f"--dataset {dataset!r}: choose one of {', '.join(RELEASES)}.")
    if not str(data).strip():
        raise ConfigError("--data is empty: pass a folder of class folders, a CIFAR release folder or archive, "
                          "or auto to download CIFAR-10.")
    check_work_dir(work_dir)
    if _is_class_folder_tree(data, dataset):
        return locate_folder(Path(data).expanduser(), image_size)
    return locate_cifar(data, Path(work_dir), RELEASES[dataset], progress=progress)


def _is_class_folder_tree(data: str, dataset: str) -> bool:
    path = Path(data).expanduser()
    return data != "auto" and path.is_dir() and not looks_like_cifar(path, dataset)


def names_cifar_release(data: str, dataset: str = "cifar10") -> bool:
    """Whether :func:`locate_data` would take ``data`` as a CIFAR release (``auto``, an archive, or a
    release folder), decided without downloading or extracting anything; False for class folders
    and for a path that does not exist."""
    return data == "auto" or (Path(data).expanduser().exists() and not _is_class_folder_tree(data, dataset))



def ingest(spark, source, work_dir: str, *, strict: bool = False, progress: bool = True):
    """The image table of a located source (written once, then reused)."""

    if isinstance(source, FolderSource):
        return ingest_folder(spark, source, work_dir, strict=strict, progress=progress)
    return ingest_cifar(spark, source, work_dir, progress=progress)



def split_table(df, has_test: bool, test_fraction: float, seed: int):
    """(train, test): the source's own test split when it has one, else a seeded random hold-out.

    The hold-out is drawn by hashing each image's stable ``id`` with ``seed``: the same images
    are held out whatever the partitioning, on one core or a cluster, and no sort is needed
    (``randomSplit`` sorts every partition by all columns, image bytes included, to be
    repeatable).

    A source's test split is spread over the session's cores: its rows come from one batch
    file, and so mostly from one of the table's read partitions (8,672 of a test batch's
    10,000 in one task of three, measured), which left evaluation, the CNN's with test-time
    augmentation above all (136 s against 75 s), to a single core.
    """
    if has_test:
        test = df.filter(F.col("split") == "test")
        return df.filter(F.col("split") == "train"), test.repartition(parallelism(df.sparkSession))
    # xxhash64 is uniform over its 64 bits; a bucket in [0, 10000) gives 0.01 % granularity.
    bucket = F.pmod(F.xxhash64(F.col("id"), F.lit(seed)), F.lit(10_000))
    held_out = bucket < F.lit(int(round(test_fraction * 10_000)))
    return df.filter(~held_out), df.filter(held_out)


def check_both_splits_hold_images(train, test, table: ImageTable, test_fraction: float,
                                  retry: str = "another --seed draws another hold-out") -> None:
    """Refuse, before fitting, a split with no image in it: MLlib would fail deep inside its fit
    (an empty training set) or the run would report a score on no images (an empty hold-out).

    Only where a split can be empty: files were skipped, or a random hold-out expecting fewer than
    25 images in a part (the odds that such a part comes out empty are below e⁻²⁵ ≈ 10⁻¹¹ beyond).
    Elsewhere it would add a Spark job to every run for nothing. Then, for a random hold-out of
    class folders, that every class keeps a training image. ``retry`` says how to draw again.
    """
    n = table.info.num_images
    can_be_empty = table.skipped or not (table.info.has_test or min(test_fraction, 1 - test_fraction) * n >= 25)
    for name, part in (("training", train), ("test" if table.info.has_test else "hold-out", test)):
        if not can_be_empty or not part.isEmpty():
            continue
        if table.skipped and (name == "training" or table.info.has_test):
            first = table.skipped[0]
            why = (f"{table.info.skipped} file(s) could not be read, the first {first['path']}: {first['reason']}. "
                   "Replace or remove the unreadable files")
        elif table.info.has_test:
            why = f"{table.info.source} has no {name} images. Add some"
        else:
            why = f"a {test_fraction:.1%} hold-out of {n} image(s) leaves none for {name}. Add images ({retry})"
            if table.skipped:
                why = f"{why}; {table.info.skipped} file(s) could not be read, the first {table.skipped[0]['path']}"
        raise BadDataError(f"no {name} images: {why}.")
    if not table.info.has_test and table.info.dataset == "folder":
        _check_every_class_trains(train, table, test_fraction, retry)


def _check_every_class_trains(train, table: ImageTable, test_fraction: float, retry: str) -> None:
    """A class folder of a few images can be held out whole by the random split: the model would
    never learn that class, and no error would say so. One pass over the training rows' labels
    (a column of the Parquet table) finds it; CIFAR releases, thousands of images a class, skip it."""
    trained = {r[0] for r in train.select("label").distinct().collect()}  # ≤ classes rows
    missing = [k for k in range(len(table.info.class_names)) if k not in trained]
    if missing:
        name = table.info.class_names[missing[0]]
        others = f" (and {len(missing) - 1} more class(es))" if len(missing) > 1 else ""
        raise BadDataError(f"no training images of class {name}{others}: the {test_fraction:.0%} random hold-out "
                           f"drew every image of it from {table.info.source}, so the model would never learn it. Add "
                           f"images of {name} (a class needs several) ({retry}).")
