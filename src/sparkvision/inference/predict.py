"""Labelling new pictures with a saved model: ``sparkvision predict MODEL_DIR INPUT…``.

Inputs are image files, folders (searched recursively) or glob patterns. Images are decoded and
resized by the same policy as training (``data/sources/folder.py``). Two engines give the same
output:

* **spark**: images are decoded inside Spark tasks and the loaded ``PipelineModel`` transforms
  them, so a folder of any size is handled in parallel (or on a cluster); predictions stream to
  the output file without the driver ever holding them all.
* **local** (:func:`predict_local`): no JVM. The saved model is read with pyarrow and evaluated
  in numpy (``inference/local.py``), images are decoded in this process. A single image takes
  0.2–0.7 s instead of the ~13 s that starting Spark and loading the model cost.

``--engine auto`` (the default) takes the local engine when every stage of the model is one it
evaluates, no ``--master`` was given, and there are at most :data:`LOCAL_MAX_IMAGES` images.
A model trained on gray features takes colour pictures: its Pipeline starts with the Grayscale
stage.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

from sparkvision.defaults import ENGINES, TOP_K
from sparkvision.errors import BadDataError, ConfigError, DataNotFoundError, failure_summary
from sparkvision.models.labels import LABELS_FILE, read_labels
from sparkvision.runtime.fs import atomic_output

# --engine auto: the local engine up to this many images, Spark beyond. Measured on this 2-core
# machine with CIFAR-sized JPEGs, the local engine was faster at every size tried, with no
# crossover in sight: 10,000 images in 1.8 s against 18.5 s through Spark (forest on gray), in
# 21.4 s against 53.8 s (patches:1600, ridge); its cost per image is lower too (no JVM, no
# serialisation between JVM and Python, the same cores). The limit is for bigger machines, where
# Spark's local[*] grows with the cores and the local engine's threads less (they share one
# interpreter), so that past some size Spark's fixed ~12 s pays back: a guess, not measured.
LOCAL_MAX_IMAGES = 10_000



def _looks_like_data(path: Path) -> str | None:
    """What ``path`` holds when it is training data rather than a model (a quick look, two levels deep)."""
    from sparkvision.data.sources.cifar import RELEASES  # only on this error's way: numpy, no pyspark
    from sparkvision.data.sources.folder import IMAGE_SUFFIXES, hidden_name

    if any((path / n).is_dir() for r in RELEASES.values() for n in (r.base_folder, r.bin_folder)) or any(
            (path / n).is_file() for r in RELEASES.values() for n in (r.filename, r.train_list[0], r.train_list[0] + ".bin")):
        return "a CIFAR release"
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)[:200]
        for sub in entries:
            if sub.is_dir() and not hidden_name(sub.name):
                for inner in sorted(os.scandir(sub.path), key=lambda e: e.name)[:200]:
                    if inner.name.endswith(IMAGE_SUFFIXES) or (inner.is_dir() and any(
                            n.endswith(IMAGE_SUFFIXES) for n in sorted(os.listdir(inner.path))[:200])):
                        return "folders of images"
        if any(e.name.endswith(IMAGE_SUFFIXES) for e in entries):
            return "images"
    except OSError:
        return None
    return None


def find_model(model_dir: str | os.PathLike) -> tuple[Path, list[str], int]:
    """(PipelineModel folder, class names, image size) from a run folder or a model folder.

    Each way this can be wrong is a DataNotFoundError or BadDataError saying which folder or file
    and what to do: no such folder, a file, training data, a Spark model without the class list
    sparkvision writes beside it, a damaged class list.
    """
    path = Path(model_dir)
    for candidate in (path, path / "model"):
        labels = candidate / LABELS_FILE
        if labels.is_file():
            return (candidate, *read_labels(labels))
    how = "Pass the --out folder of a `sparkvision run` (or its model/ folder)."
    if not path.exists():
        raise DataNotFoundError(f"{path}: no such model folder. {how}")
    if not path.is_dir():
        raise DataNotFoundError(f"{path}: a file, not a model folder. The model comes first: sparkvision predict "
                                f"MODEL_DIR INPUT… . {how}")
    for candidate in (path, path / "model"):
        if (candidate / "metadata").is_dir():
            raise DataNotFoundError(
                f"{candidate}: a saved Spark model, but without {LABELS_FILE} (the class names and image size "
                f"sparkvision writes beside it). Copy the whole folder `sparkvision run` wrote, or save the model "
                "with sparkvision.save_model(model, path, class_names).")
    data = _looks_like_data(path)
    if data:
        raise DataNotFoundError(f"{path}: holds {data}, training data rather than a model (no {LABELS_FILE}). Train "
                                f"on it first (sparkvision run --data {path} --out runs/x), then pass runs/x here.")
    raise DataNotFoundError(f"{path}: not a sparkvision model (no {LABELS_FILE} in it or in {path / 'model'}). "
                            "Pass the --out folder of `sparkvision run`, or its model/ folder.")


class Inputs(NamedTuple):
    """predict's inputs, listed: what to read and what not, with reasons."""

    paths: list[str]     # to hand to Spark: given files, and folders holding image files
    files: list[str]     # the image files Spark's reader reads there (each once)
    skipped: list[dict[str, str]]  # image files that cannot be read (empty, links to nothing): path, reason
    ignored: list[dict[str, str]]  # not images to read (other formats, hidden names): path, reason


def list_inputs(inputs: list[str]) -> Inputs:
    """Every input (a file, folder or glob) listed as Spark's ``binaryFile`` source reads it, and
    everything else found with the reason it is not read.

    Folders are searched recursively, following links (a link to a folder above it is an error:
    Spark would read it forever); names Spark treats as hidden (``.x``, ``_x``) are not read
    below a given folder nor as given files; the extension must be one of ``EXTENSIONS`` in
    lower or upper case (the ``pathGlobFilter``); a file or folder reached twice is read once.
    Order: as given, each folder's files sorted by path.
    """
    from sparkvision.data.sources.folder import EXTENSIONS, FileEntry, Listing, classify_file, walk_images

    paths: list[str] = []
    found: dict[str, None] = {}
    skipped: dict[tuple[str, str], None] = {}
    ignored: dict[tuple[str, str], None] = {}
    seen: set[str] = set()
    for item in inputs:
        # A pattern, unless a file or folder has that very name ("photos [2024]", "what?.jpg")
        glob_like = any(c in item for c in "*?[") and not os.path.lexists(item)
        matches = sorted(glob.glob(item, recursive=True)) if glob_like else [item]
        if not matches or not all(os.path.lexists(m) for m in matches):
            raise DataNotFoundError(f"{item}: no such file, folder or matching path.")
        for m in map(os.path.abspath, matches):
            listing = Listing()
            if os.path.isdir(m):
                if os.path.realpath(m) not in seen:
                    walk_images(m, listing, seen=seen)
            else:
                classify_file(FileEntry(m), listing)
            files = [e.path for e in listing.images]
            if files:
                paths.append(m)
                found.update(dict.fromkeys(files))
            skipped.update(dict.fromkeys(listing.skipped))
            ignored.update(dict.fromkeys(listing.ignored))
    if not found and not skipped:
        detail = f"; found {len(ignored)} other file(s), the first {next(iter(ignored))[0]}: {next(iter(ignored))[1]}" \
            if ignored else ""
        raise DataNotFoundError(f"no image files in {' '.join(inputs)} (looked for {', '.join(EXTENSIONS)}){detail}.")
    return Inputs(paths, list(found), [{"path": p, "reason": r} for p, r in skipped],
                  [{"path": p, "reason": r} for p, r in ignored])


def expand_inputs(inputs: list[str]) -> tuple[list[str], int]:
    """(paths to hand to Spark, number of image files): folders stay folders, globs are expanded.

    The count is of the files Spark's reader will read (:func:`list_inputs`: hidden names
    and odd-case extensions such as ``.Jpg`` left out), so the progress line matches what is labelled.
    """
    listed = list_inputs(inputs)
    return listed.paths, len(listed.files)


def _top_k(pred, class_names: list[str], k: int):
    """Columns path, labels (array), probabilities (array): the k most probable classes, built-ins only."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    names = F.array(*[F.lit(n) for n in class_names])
    if "probability" not in pred.columns:  # one-vs-rest SVMs give no probabilities: the winner only
        return pred.select(F.col("origin").alias("path"),
                           F.array(F.element_at(names, F.col("prediction").cast("int") + 1)).alias("labels"),
                           F.array(F.lit(None).cast("double")).alias("probabilities"))
    p = vector_to_array("probability")
    ranked = F.slice(F.array_sort(
        F.transform(F.sequence(F.lit(0), F.size(p) - 1), lambda i: F.struct((-p[i]).alias("neg"), i.alias("i")))),
        1, k)
    return pred.select(F.col("origin").alias("path"),
                       F.transform(ranked, lambda s: F.element_at(names, s["i"] + 1)).alias("labels"),
                       F.transform(ranked, lambda s: -s["neg"]).alias("probabilities"))


def _write(rows: Iterator, out: Path | None, fmt: str, k: int) -> int:
    """Stream prediction rows as CSV or JSON lines to ``out`` (temp name, renamed when complete) or stdout."""
    with contextlib.ExitStack() as stack:
        handle = sys.stdout
        if out:
            tmp = stack.enter_context(atomic_output(out))  # a half-written file is never left at ``out``
            try:
                handle = stack.enter_context(open(tmp, "w", newline=""))
            except OSError as exc:
                raise ConfigError(f"--out {out}: cannot write there ({exc.strerror or exc}); "
                                  "choose another place.") from None
        writer = csv.writer(handle) if fmt == "csv" else None
        if writer:
            writer.writerow(["path"] + [f"{c}_{i}" for i in range(1, k + 1) for c in ("label", "probability")])
        n = 0
        for row in rows:
            pairs = list(zip(row.labels, row.probabilities))
            if writer:
                writer.writerow([row.path] + [v for pair in pairs for v in pair])
            else:
                handle.write(json.dumps({"path": row.path, "top": [{"label": l, "probability": p}
                                                                   for l, p in pairs]}) + "\n")
            n += 1
    return n


class _Job(NamedTuple):
    """What both engines need, checked before either starts."""

    model_path: Path
    class_names: list[str]
    size: int
    paths: list[str]
    count: int
    out: Path | None
    fmt: str
    inputs: Inputs
    top_k: int


def _check_out_spares_inputs(out: Path, model_path: Path, listed: Inputs) -> None:
    """Refuse an ``--out`` that would overwrite an image to label, a file of the model's folder, or
    the ``metrics.json`` of the run that saved it (a labels file beside that is fine)."""
    target = os.path.realpath(out)
    folder = os.path.realpath(model_path)
    if os.path.commonpath([target, folder]) == folder:
        raise ConfigError(f"--out {out} is inside the model's folder {folder}: writing there would change the "
                          "model. Choose a file outside it, e.g. labels.csv.")
    if target == os.path.join(os.path.dirname(folder), "metrics.json"):
        raise ConfigError(f"--out {out} is the metrics.json of the run that saved the model: writing there would "
                          "replace it. Choose another file name, e.g. labels.csv.")
    images = {os.path.realpath(p) for p in listed.files} | {os.path.realpath(s["path"]) for s in listed.skipped}
    if target in images:
        raise ConfigError(f"--out {out} is one of the images to label: writing the labels there would replace it. "
                          "Choose another file name, e.g. labels.csv.")


def prepare_job(model_dir: str, inputs: list[str], top_k: int | None, out: str | None, fmt: str | None) -> _Job:
    """Check everything about a predict request that can be checked without Spark (the model
    folder, the inputs, ``--top-k``, ``--format``, ``--out``) and return what the engines need.

    ``top_k`` None: :data:`~sparkvision.defaults.TOP_K` labels, or every class of a model with fewer.
    """
    out_path = Path(out) if out else None
    if out_path and out_path.is_dir():
        raise ConfigError(f"--out {out_path} is a folder; give the name of the file to write, e.g. {out_path / 'labels.csv'}.")
    if out_path and not out_path.parent.is_dir():
        raise ConfigError(f"--out {out_path}: the folder {out_path.parent} does not exist; create it first.")
    if out_path and not os.access(out_path.parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out_path}: cannot write in {out_path.parent} (permission denied); choose another "
                          "place.")
    if out_path and out_path.suffix.lower() in (".gz", ".bz2", ".xz", ".zst", ".zip"):
        raise ConfigError(f"--out {out}: predict writes plain text, not {out_path.suffix} compressed; name the file "
                          f"{out_path.with_suffix('').name} and compress it afterwards if you need to.")
    named = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}.get(out_path.suffix.lower()) if out_path else None
    if fmt is not None and fmt not in ("csv", "jsonl"):
        raise ConfigError(f"--format {fmt!r}: choose csv or jsonl.")
    if fmt is not None and named is not None and fmt != named:  # a file named for one format, holding the other
        raise ConfigError(f"--format {fmt} and --out {out} (a .{named} name) disagree; give one of them, or a name "
                          f"ending .{fmt}.")
    fmt = fmt or named or "csv"
    from sparkvision.inference.local import check_model  # numpy, no pyspark (this module is imported to build the parser)

    model_path, class_names, size = find_model(model_dir)
    check_model(model_path, class_names, size, labels=model_path / LABELS_FILE)  # every file it holds, no Spark
    if top_k is None:  # the default asks for no more labels than the model has
        top_k = min(TOP_K, len(class_names))
    elif not 1 <= top_k <= len(class_names):
        raise ConfigError(f"--top-k must be between 1 and {len(class_names)}, not {top_k}.")
    listed = list_inputs(inputs)
    if out_path:
        _check_out_spares_inputs(out_path, model_path, listed)
    return _Job(model_path, class_names, size, listed.paths, len(listed.files), out_path, fmt, listed, top_k)


def choose_engine(engine: str, model_dir: str, inputs: list[str], *, master_given: bool = False) -> tuple[str, str]:
    """("local" or "spark", why) for ``--engine``; ``auto`` prefers local for few images and a supported model.

    ``--engine local`` on a model with a stage the local engine cannot evaluate is a ConfigError
    naming the stage (:class:`sparkvision.inference.local.UnsupportedModelError`).
    """
    from sparkvision.inference.local import UnsupportedModelError, load_pipeline

    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r}: choose {', '.join(ENGINES)}.")
    if engine == "spark":
        return "spark", "--engine spark"
    model_path, _, _ = find_model(model_dir)
    if engine == "local":
        if master_given:
            raise ConfigError("--engine local runs without Spark, so --master has nothing to do; drop one of them.")
        load_pipeline(model_path)
        return "local", "--engine local"
    if master_given:
        return "spark", "--master given"
    if "PYSPARK_GATEWAY_PORT" in os.environ:  # launched by spark-submit: its JVM and settings are there to use
        return "spark", "launched by spark-submit"
    _, count = expand_inputs(inputs)
    if count > LOCAL_MAX_IMAGES:
        return "spark", f"{count:,} images (more than {LOCAL_MAX_IMAGES:,})"
    try:
        load_pipeline(model_path)
    except UnsupportedModelError as err:
        return "spark", f"the local engine does not evaluate {err.what}"
    return "local", f"{count:,} image(s), every stage supported"


def check_spark_reads_names(inputs: Inputs, engine_was: str = "") -> None:
    """Raise :class:`BadDataError` for the first image whose name Spark's reader cannot take
    (:func:`sparkvision.data.sources.folder.spark_name_problem`): the local engine reads it."""
    from sparkvision.data.sources.folder import spark_name_problem

    for path in inputs.files:
        problem = spark_name_problem(path)
        if problem:
            raise BadDataError(problem + _local_engine_hint(engine_was) + ".")


def _local_engine_hint(engine_was: str) -> str:
    """How to label such a file anyway, from why Spark was chosen (the local engine reads any name)."""
    if engine_was.startswith("the local engine does not"):
        return ""  # this model needs Spark
    if engine_was == "--master given":
        return "; or drop --master/--remote (and SPARK_REMOTE) to label it with the local engine"
    if engine_was == "launched by spark-submit":
        return "; or run `sparkvision predict --engine local` outside spark-submit"
    return "; or label it with --engine local"


def predict(spark, model_dir: str, inputs: list[str], *, top_k: int | None = None, out: str | None = None,
            fmt: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Label every image in ``inputs`` with Spark; write CSV or JSON lines to ``out`` (stdout when None)."""
    from pyspark.sql import functions as F

    from sparkvision.data.sources.folder import FolderSource, read_images
    from sparkvision.data.ingest import small_file_tasks

    job = prepare_job(model_dir, inputs, top_k, out, fmt)
    check_spark_reads_names(job.inputs)
    if progress:
        print(f"  labelling {job.count:,} image(s) with {job.model_path} (Spark)", file=sys.stderr)
    model = _load_with_spark(job.model_path)
    source = FolderSource(root="/", class_names=tuple(job.class_names), split_layout=False, has_test=False,
                          size=job.size)
    # Many small files per task, as in ingestion (their total size is not known here).
    with small_file_tasks(spark, job.count, 0, len(job.paths)):
        # Cached: the predictions and the list of unreadable files both read the decoded images.
        decoded = read_images(spark, job.paths, source, labelled=False).persist()
        good = decoded.filter(F.col("error").isNull()).drop("error")
        rows = _top_k(model.transform(good), job.class_names, job.top_k).toLocalIterator()
        written = _write(rows, job.out, job.fmt, job.top_k)
        bad = job.inputs.skipped[:MAX_SKIPPED_LISTED]  # found by the listing (Spark's reader drops them silently)
        failed = decoded.filter(F.col("error").isNotNull())
        undecoded = failed.count()  # all of them counted, the first MAX_SKIPPED_LISTED listed
        if len(bad) < MAX_SKIPPED_LISTED and undecoded:
            bad += [{"path": r.origin, "reason": r.error} for r in failed
                    .select("origin", "error").limit(MAX_SKIPPED_LISTED - len(bad)).collect()]
        decoded.unpersist()
    return {"predicted": written, "skipped": bad, "skipped_count": len(job.inputs.skipped) + undecoded,
            "ignored": job.inputs.ignored[:MAX_SKIPPED_LISTED], "ignored_count": len(job.inputs.ignored),
            "out": str(job.out) if job.out else None, "format": job.fmt, "engine": "spark"}


def _load_with_spark(model_path: Path):
    """``PipelineModel.load``, its failures on a damaged or foreign model folder as a BadDataError.

    :func:`check_model` has checked the files already; what Spark still refuses (a Param this
    Spark does not know, say) is named here with the folder, not as a Java stack trace.
    """
    from py4j.protocol import Py4JNetworkError
    from pyspark.ml import PipelineModel

    try:
        return PipelineModel.load(str(Path(model_path).absolute()))  # a Connect server resolves relative paths itself
    except (Py4JNetworkError, ConnectionError):  # the JVM is gone: not the model's fault
        raise
    except Exception as exc:
        raise BadDataError(f"{model_path}: Spark could not load the saved model ({failure_summary(exc)}). The folder "
                           "is damaged, or was saved by another version of sparkvision or Spark: train again, or "
                           "copy the model folder again.") from exc


# ---------------------------------------------------------------------------------------------
# The local engine: the files Spark would read, decoded here, the model evaluated in numpy.

MAX_SKIPPED_LISTED = 1000  # skipped and ignored files listed in the result (both engines); all are counted
_CHUNK = 256               # images decoded and labelled at a time: output streams, memory stays small


def list_image_files(paths: list[str]) -> list[str]:
    """The files Spark's ``binaryFile`` source reads for ``paths`` (as ``read_images`` sets it up);
    :func:`list_inputs` says why the others are not read."""
    try:
        return list_inputs(paths).files
    except DataNotFoundError:  # no image files there
        return []


def _decode_file(path: str, size: int):
    """(pixels, None) or (None, reason): the file decoded as ``read_images`` decodes it in a task."""
    from sparkvision.data.sources.folder import decode_image, unreadable_reason

    try:
        with open(path, "rb") as f:
            content = f.read()
        return decode_image(content, size), None
    except Exception as exc:  # Pillow raises many types for broken files
        return None, unreadable_reason(exc)


class _Row(NamedTuple):
    path: str
    labels: list[str]
    probabilities: list[float | None]


def _ranked(paths: list[str], probability, prediction, class_names: list[str], k: int) -> Iterator[_Row]:
    """The rows ``_top_k`` gives: classes by probability, highest first, ties to the lower class index."""
    import numpy as np

    if probability is None:  # as _top_k: the winner only, no probability
        for path, p in zip(paths, prediction.tolist()):
            yield _Row(path, [class_names[int(p)]], [None])
        return
    order = np.argsort(-probability, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(probability, order, axis=1)
    for path, idx, prob in zip(paths, order.tolist(), top.tolist()):
        yield _Row(path, [class_names[i] for i in idx], prob)


def _chunks(items: list[str], n: int) -> Iterable[list[str]]:
    for start in range(0, len(items), n):
        yield items[start:start + n]


def predict_local(model_dir: str, inputs: list[str], *, top_k: int | None = None, out: str | None = None,
                  fmt: str | None = None, progress: bool = True) -> dict[str, Any]:
    """:func:`predict` without Spark: the same output, for a model ``inference.local`` can evaluate.

    Files are labelled in chunks of at most :data:`_CHUNK`, one thread per core, each thread
    decoding its chunk and evaluating the model on it (Pillow, numpy's BLAS and the patch
    encoder release the GIL; BLAS itself is held to one thread, as in Spark's tasks). Rows are
    written in input order as chunks finish, so the output streams as with Spark.
    """
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from threadpoolctl import threadpool_limits

    from sparkvision.inference.local import load_pipeline

    job = prepare_job(model_dir, inputs, top_k, out, fmt)
    if progress:
        print(f"  labelling {job.count:,} image(s) with {job.model_path} (local engine, no Spark)", file=sys.stderr)
    model = load_pipeline(job.model_path)
    files = job.inputs.files
    threads = max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
                         len(files)))
    size = min(_CHUNK, -(-len(files) // threads)) if files else 1
    bad: list[dict[str, str]] = list(job.inputs.skipped)  # found by the listing: empty files, links to nothing

    def label(chunk: list[str]) -> tuple[list[_Row], list[dict[str, str]]]:
        decoded = [_decode_file(f, job.size) for f in chunk]
        good = [(f, px) for f, (px, _) in zip(chunk, decoded) if px is not None]
        skipped = [{"path": f, "reason": why} for f, (_, why) in zip(chunk, decoded) if why is not None]
        if not good:
            return [], skipped
        probability, prediction = model.predict(np.stack([px for _, px in good]))
        return list(_ranked([f for f, _ in good], probability, prediction, job.class_names, job.top_k)), skipped

    def rows(results) -> Iterator[_Row]:
        for labelled, skipped in results:
            bad.extend(skipped)
            yield from labelled

    with threadpool_limits(1):  # for the whole run: the threads are the parallelism
        if threads == 1:
            written = _write(rows(map(label, _chunks(files, size))), job.out, job.fmt, job.top_k)
        else:
            pool = ThreadPoolExecutor(threads)
            try:
                written = _write(rows(pool.map(label, _chunks(files, size))), job.out, job.fmt, job.top_k)
            finally:  # on an error or Ctrl-C, chunks not started are dropped, not labelled for nothing
                pool.shutdown(wait=True, cancel_futures=True)
    return {"predicted": written, "skipped": bad[:MAX_SKIPPED_LISTED], "skipped_count": len(bad),
            "ignored": job.inputs.ignored[:MAX_SKIPPED_LISTED], "ignored_count": len(job.inputs.ignored),
            "out": str(job.out) if job.out else None, "format": job.fmt, "engine": "local"}
