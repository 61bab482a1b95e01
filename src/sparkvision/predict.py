"""Labelling new pictures with a saved model: ``sparkvision predict MODEL_DIR INPUT…``.

Inputs are image files, folders (searched recursively) or glob patterns. Images are decoded and
resized inside Spark tasks by the same policy as training (``datasets/folder.py``), so a folder
of any size is handled in parallel; predictions stream to the output file without the driver
ever holding them all. A model trained on gray features takes colour pictures: its Pipeline
starts with the Grayscale stage.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator

from sparkvision.errors import ConfigError, DataNotFoundError


def find_model(model_dir: str | os.PathLike) -> tuple[Path, list[str], int]:
    """(PipelineModel folder, class names, image size) from a run folder or a model folder."""
    from sparkvision.job import LABELS_FILE

    path = Path(model_dir)
    for candidate in (path, path / "model"):
        if (candidate / LABELS_FILE).is_file():
            meta = json.loads((candidate / LABELS_FILE).read_text())
            return candidate, list(meta["class_names"]), int(meta.get("image_size", 32))
    if not path.exists():
        raise DataNotFoundError(f"{path}: no such model folder.")
    raise DataNotFoundError(f"{path}: not a sparkvision model (no {LABELS_FILE} in it or in {path / 'model'}). "
                            "Pass the --out folder of `sparkvision run`, or its model/ folder.")


def expand_inputs(inputs: list[str]) -> tuple[list[str], int]:
    """(paths to hand to Spark, number of image files): folders stay folders, globs are expanded."""
    from sparkvision.datasets.folder import EXTENSIONS, _image_files

    paths, count = [], 0
    for item in inputs:
        matches = sorted(glob.glob(item, recursive=True)) if any(c in item for c in "*?[") else [item]
        if not matches or not all(os.path.exists(m) for m in matches):
            raise DataNotFoundError(f"{item}: no such file, folder or matching path.")
        for m in matches:
            if os.path.isdir(m):
                n = sum(1 for _ in _image_files(Path(m)))
                if n:
                    paths.append(os.path.abspath(m))
                    count += n
            elif m.lower().endswith(EXTENSIONS):
                paths.append(os.path.abspath(m))
                count += 1
    if not count:
        raise DataNotFoundError(f"no image files in {' '.join(inputs)} (looked for {', '.join(EXTENSIONS)}).")
    return paths, count


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
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}") if out else None
    handle = open(tmp, "w", newline="") if tmp else sys.stdout
    n = 0
    try:
        writer = csv.writer(handle) if fmt == "csv" else None
        if writer:
            writer.writerow(["path"] + [f"{c}_{i}" for i in range(1, k + 1) for c in ("label", "probability")])
        for row in rows:
            pairs = list(zip(row.labels, row.probabilities))
            if writer:
                writer.writerow([row.path] + [v for pair in pairs for v in pair])
            else:
                handle.write(json.dumps({"path": row.path, "top": [{"label": l, "probability": p}
                                                                   for l, p in pairs]}) + "\n")
            n += 1
    except BaseException:
        if tmp:  # a half-written file is never left where the output is expected
            handle.close()
            tmp.unlink(missing_ok=True)
        raise
    if tmp:
        handle.close()
        os.replace(tmp, out)
    return n


def predict(spark, model_dir: str, inputs: list[str], *, top_k: int = 3, out: str | None = None,
            fmt: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Label every image in ``inputs``; write CSV or JSON lines to ``out`` (stdout when None)."""
    from pyspark.ml import PipelineModel
    from pyspark.sql import functions as F

    from sparkvision.datasets.folder import FolderSource, read_images

    out_path = Path(out) if out else None
    fmt = fmt or ("jsonl" if out_path and out_path.suffix in (".jsonl", ".json") else "csv")
    if fmt not in ("csv", "jsonl"):
        raise ConfigError(f"--format {fmt!r}: choose csv or jsonl.")
    model_path, class_names, size = find_model(model_dir)
    if not 1 <= top_k <= len(class_names):
        raise ConfigError(f"--top-k must be between 1 and {len(class_names)}, not {top_k}.")
    paths, count = expand_inputs(inputs)
    if progress:
        print(f"  labelling {count:,} image(s) with {model_path}", file=sys.stderr)
    model = PipelineModel.load(str(model_path))
    source = FolderSource(root="/", class_names=tuple(class_names), split_layout=False, has_test=False, size=size)
    old = spark.conf.get("spark.sql.files.openCostInBytes")
    spark.conf.set("spark.sql.files.openCostInBytes", "8192")  # many small files per task, as in ingestion
    try:
        # Cached: the predictions and the list of unreadable files both read the decoded images.
        decoded = read_images(spark, paths, source, labelled=False).persist()
        good = decoded.filter(F.col("error").isNull()).drop("error")
        rows = _top_k(model.transform(good), class_names, top_k).toLocalIterator()
        written = _write(rows, out_path, fmt, top_k)
        bad = [{"path": r.origin, "reason": r.error} for r in
               decoded.filter(F.col("error").isNotNull()).select("origin", "error").limit(1000).collect()]
        decoded.unpersist()
    finally:
        spark.conf.set("spark.sql.files.openCostInBytes", old)
    return {"predicted": written, "skipped": bad, "out": str(out_path) if out_path else None, "format": fmt}
