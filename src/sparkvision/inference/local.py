"""A saved PipelineModel evaluated in numpy, without Spark: the local engine of ``sparkvision predict``.

For a few images, ``predict`` through Spark spends nearly all its time on fixed costs: starting
the JVM, ``PipelineModel.load`` (several small Spark jobs) and the first Python worker. This
module reads the saved folder directly — each stage's ``metadata/part-*`` (one JSON line: class,
Params) and its ``data/`` Parquet files, with pyarrow — and applies the stages to numpy arrays
in this process. It never imports pyspark.

Stages it evaluates, each exactly as its Spark implementation does:

* ours: ``Grayscale``, ``PixelVectorizer``, ``PatchFeaturesModel``, ``RidgeClassifierModel``,
  through the same kernels the Spark stages run in their tasks (``kernels.py``, ``patch_math.py``);
* MLlib's ``RandomForestClassificationModel`` and ``DecisionTreeClassificationModel``
  (continuous splits: a value ≤ threshold goes left; a leaf's class counts, normalised and
  summed over the trees in order, then normalised — ``predictRaw`` and ``raw2probability``),
  ``LogisticRegressionModel`` (multinomial: softmax of the margins; binomial: the logistic of
  the margin) and ``NaiveBayesModel`` (gaussian and multinomial; softmax of the log-likelihoods).

Any other stage (one-vs-rest, the perceptron, a categorical tree split, …) raises
:class:`UnsupportedModelError`, and ``predict --engine auto`` uses Spark instead.

:func:`check_model` checks every file of a saved model folder, for both engines, before either
reads it: a missing one is a DataNotFoundError, a damaged one (metadata that is not JSON,
Parquet without its footer, a file that no longer matches the checksum Spark wrote beside it,
weights that are not safetensors, a class list that does not fit the classifier) or a stage
class this version does not have is a BadDataError, each naming the file.

Agreement with Spark (``tests/test_predict_local.py``): forests and trees give bit-identical
probabilities (the same operations in the same order). Logistic regression and naive Bayes
agree to about 1e-14 relative (Spark's gemv adds the products in another order; Java's exp and
log may differ from C's in the last bit). Ridge scores are float32 products whose last bits
depend on BLAS's code path, so probabilities agree to about 1e-4 relative: Spark's own values
move by as much with how images fall into its Arrow batches (a one-row batch takes the gemv
path, a larger one gemm, whose blocking depends on the number of rows).
"""

from __future__ import annotations

import functools
import io
import json
import math
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sparkvision.errors import BadDataError, ConfigError, DataNotFoundError, SparkVisionError
from sparkvision.models.labels import image_sides

_FOREST = "org.apache.spark.ml.classification.RandomForestClassificationModel"
_TREE = "org.apache.spark.ml.classification.DecisionTreeClassificationModel"
_LOGISTIC = "org.apache.spark.ml.classification.LogisticRegressionModel"
_BAYES = "org.apache.spark.ml.classification.NaiveBayesModel"
_PIPELINES = ("pyspark.ml.pipeline.PipelineModel", "org.apache.spark.ml.PipelineModel")


class UnsupportedModelError(ConfigError):
    """A saved model holds a stage the local engine cannot evaluate exactly.

    ``what`` names it briefly (for ``--engine auto``'s summary); the message adds where and the fix.
    """

    def __init__(self, where: object, what: str, detail: str = "") -> None:
        super().__init__(f"{where}: {what}, which the local engine does not evaluate{detail}. Use --engine spark.")
        self.what = what


# ---------------------------------------------------------------------------------------------
# Reading what Spark wrote


_AGAIN = "copy the model folder again, or train again"


def _metadata(folder: Path) -> dict[str, Any]:
    """A stage's (or pipeline's) metadata: the JSON line DefaultParamsWriter writes to metadata/part-*.

    A missing file is a DataNotFoundError, one that is not such a line a BadDataError, each naming
    the file.
    """
    parts = sorted((folder / "metadata").glob("part-*"))
    if not parts:
        raise DataNotFoundError(f"{folder}: no metadata/part-* file; the model folder is incomplete: {_AGAIN}.")
    try:
        lines = parts[0].read_text(encoding="utf-8").splitlines()
        meta = json.loads(lines[0]) if lines else None
    except (ValueError, OSError) as exc:  # not JSON, not UTF-8 (UnicodeDecodeError is a ValueError), unreadable
        why = f"{type(exc).__name__}: {exc}" if isinstance(exc, ValueError) else exc.strerror or str(exc)
        raise BadDataError(f"{parts[0]}: not the metadata of a saved model ({why}); the model folder is damaged: "
                           f"{_AGAIN}.") from None
    if not (isinstance(meta, dict) and isinstance(meta.get("class"), str) and isinstance(meta.get("paramMap", {}), dict)
            and isinstance(meta.get("defaultParamMap", {}), dict)):
        found = "an empty file" if meta is None else f"JSON without a class and its Params: {json.dumps(meta)[:60]}"
        raise BadDataError(f"{parts[0]}: not the metadata of a saved model ({found}); the model folder is damaged: "
                           f"{_AGAIN}.")
    meta["class"] = _RENAMED.get(meta["class"], meta["class"])
    return meta


# Where the stages lived before the package was split into the flow's stages (0.1.0's first
# layout): models saved then name these, and read the same.
_RENAMED = {
    "sparkvision.features.Grayscale": "sparkvision.features.pixels.Grayscale",
    "sparkvision.features.PixelVectorizer": "sparkvision.features.pixels.PixelVectorizer",
    "sparkvision.features.PatchFeaturesModel": "sparkvision.features.patches.PatchFeaturesModel",
    "sparkvision.linear.RidgeClassifierModel": "sparkvision.models.ridge.stage.RidgeClassifierModel",
    "sparkvision.cnn.stages.CNNClassificationModel": "sparkvision.models.cnn.stages.CNNClassificationModel",
}


def _stage_paths(model_path: Path, meta: dict[str, Any]) -> list[Path]:
    """The stage folders a PipelineModel's metadata lists (``stages/IDX_UID``, as pyspark names them)."""
    uids = meta.get("paramMap", {}).get("stageUids")
    if not (isinstance(uids, list) and uids and all(isinstance(u, str) and u for u in uids)):
        raise BadDataError(f"{model_path / 'metadata'}: no list of stages (paramMap.stageUids) in the pipeline's "
                           f"metadata; the model folder is damaged: {_AGAIN}.")
    width = len(str(len(uids)))
    return [model_path / "stages" / f"{i:0{width}d}_{uid}" for i, uid in enumerate(uids)]


def _params(meta: dict[str, Any]) -> dict[str, Any]:
    """The stage's Params: those set, over the defaults."""
    return {**meta.get("defaultParamMap", {}), **meta.get("paramMap", {})}


def _parquet_rows(folder: Path) -> list[dict[str, Any]]:
    """Every row of the Parquet files Spark wrote into ``folder`` (part files; _SUCCESS, .crc skipped)."""
    import pyarrow.parquet as pq

    files = _parquet_files(folder)
    try:
        return [row for f in files for row in pq.ParquetFile(f).read().to_pylist()]  # not read_table: no pyarrow.dataset, pandas
    except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError, ArrowIOError an OSError
        raise BadDataError(f"{folder}: not readable Parquet ({type(exc).__name__}: {exc}); the model folder is "
                           f"damaged: {_AGAIN}.") from None


def _parquet_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.glob("part-*") if p.suffix == ".parquet")
    if not files:
        raise DataNotFoundError(f"{folder}: no Parquet part files; the model folder is incomplete: {_AGAIN}.")
    return files


def _vector(udt: dict[str, Any]) -> np.ndarray:
    """An ``ml.linalg`` vector as stored in Parquet (VectorUDT: type 0 sparse, 1 dense)."""
    if udt["type"] == 1:
        return np.asarray(udt["values"], dtype=np.float64)
    out = np.zeros(udt["size"], np.float64)
    out[np.asarray(udt["indices"], dtype=np.int64)] = udt["values"]
    return out


def _matrix(udt: dict[str, Any]) -> np.ndarray:
    """An ``ml.linalg`` matrix as stored in Parquet (MatrixUDT), as a dense rows × cols array.

    Dense values are column-major, row-major when ``isTransposed``; sparse ones are CSC, CSR when
    ``isTransposed`` (``colPtrs`` then point at rows and ``rowIndices`` hold columns).
    """
    rows, cols, values = udt["numRows"], udt["numCols"], np.asarray(udt["values"], dtype=np.float64)
    transposed = bool(udt["isTransposed"])
    if udt["type"] == 1:
        return values.reshape(rows, cols) if transposed else values.reshape(cols, rows).T
    out = np.zeros((rows, cols), np.float64)
    ptrs, idx = np.asarray(udt["colPtrs"], dtype=np.int64), np.asarray(udt["rowIndices"], dtype=np.int64)
    outer = np.repeat(np.arange(len(ptrs) - 1), np.diff(ptrs))
    if transposed:
        out[outer, idx] = values
    else:
        out[idx, outer] = values
    return out


def _sum_in_order(a: np.ndarray) -> np.ndarray:
    """Row sums added left to right, as Scala's ``Array.sum`` does (numpy's sum is pairwise)."""
    total = a[:, 0].copy()
    for j in range(1, a.shape[1]):
        total += a[:, j]
    return total


def _normalise(a: np.ndarray) -> np.ndarray:
    """Spark's ``normalizeToProbabilitiesInPlace``: each row divided by its in-order sum (all-zero rows kept)."""
    total = _sum_in_order(a)
    total[total == 0] = 1.0
    return a / total[:, None]


# ---------------------------------------------------------------------------------------------
# Stages: each reads its input column from ``cols`` and adds its output columns.

Columns = dict[str, np.ndarray]


@dataclass
class _Stage:
    name: str                                     # the stage's folder name, for messages
    apply: Callable[[Columns], None]


def _bytes_column(cols: Columns, name: str, stage: str) -> np.ndarray:
    x = cols.get(name)
    if x is None or x.dtype != np.uint8:
        raise ConfigError(f"stage {stage}: column {name!r} is not image bytes here; use --engine spark.")
    return x


def _vector_column(cols: Columns, name: str, stage: str, size: int | None = None) -> np.ndarray:
    x = cols.get(name)
    if x is None or x.dtype != np.float64:
        raise ConfigError(f"stage {stage}: column {name!r} is not a feature vector here; use --engine spark.")
    if size is not None and x.shape[1] != size:
        raise ConfigError(f"stage {stage} expects {size} features, its input has {x.shape[1]}.")
    return x


def _grayscale(folder: Path, p: dict[str, Any]) -> Callable[[Columns], None]:
    from sparkvision.features.kernels import rgb_to_gray

    source, target = p["inputCol"], p["outputCol"]  # now: a model without them fails on loading

    def apply(cols: Columns) -> None:
        x = _bytes_column(cols, source, folder.name)
        if x.shape[1] % 3:
            raise ValueError("Grayscale needs RGB bytes (a multiple of 3 per image)")
        cols[target] = rgb_to_gray(x).reshape(len(x), -1)
    return apply


def _pixel_vectorizer(folder: Path, p: dict[str, Any]) -> Callable[[Columns], None]:
    from sparkvision.features.kernels import scale_pixels

    max_value = float(p["maxValue"])
    if max_value <= 0:
        raise ValueError(f"PixelVectorizer.maxValue must be positive, not {max_value}")

    def apply(cols: Columns) -> None:
        cols[p["outputCol"]] = scale_pixels(_bytes_column(cols, p["inputCol"], folder.name), max_value)
    return apply


def _arrays(folder: Path, dtype) -> dict[str, np.ndarray]:
    """The arrays ``stage_io.ArraysReadWrite`` saved: one Parquet row holding an .npz blob."""
    (row,) = _parquet_rows(folder / "data")
    with np.load(io.BytesIO(row["arrays"])) as arrays:  # allow_pickle stays False
        return {name: np.asarray(arrays[name], dtype=dtype) for name in arrays.files}


def _patch_features(folder: Path, p: dict[str, Any]) -> Callable[[Columns], None]:
    from sparkvision.features import patch_math
    from sparkvision.features.kernels import patch_features

    arrays = _arrays(folder, np.float32)  # PatchFeaturesModel keeps its arrays in float32
    shape = (int(p["imageHeight"]), int(p["imageWidth"]), int(p["imageChannels"]))
    encoder, pairs = patch_math.encoder_from(arrays, p)
    power = float(p["power"])

    def apply(cols: Columns) -> None:
        from threadpoolctl import threadpool_limits

        x = _bytes_column(cols, p["inputCol"], folder.name)
        if x.shape[1] != shape[0] * shape[1] * shape[2]:
            raise ValueError(f"PatchFeatures expects {shape[0]}×{shape[1]}×{shape[2]} images "
                             f"({shape[0] * shape[1] * shape[2]} bytes); a row has {x.shape[1]} bytes.")
        with threadpool_limits(1):  # as in the Spark tasks: the same BLAS code path, the same float32 sums
            features = patch_features(encoder, x.reshape(len(x), *shape), pairs, power)
        # array_to_vector: float32 → double (exact), one row after another. Row-major matters: the
        # mirror folding leaves a column-major array, and BLAS sums a column-major x·W in another order.
        cols[p["outputCol"]] = features.astype(np.float64, order="C")
    return apply


def _classifier_outputs(cols: Columns, p: dict[str, Any], raw: np.ndarray, prob: np.ndarray | None,
                        prediction: np.ndarray) -> None:
    """Add the columns a ProbabilisticClassificationModel adds (those whose names are set)."""
    for name, value in ((p.get("rawPredictionCol"), raw), (p.get("probabilityCol"), prob),
                        (p.get("predictionCol"), prediction)):
        if name and value is not None:
            cols[name] = value


def _ridge(folder: Path, p: dict[str, Any]) -> Callable[[Columns], None]:
    from sparkvision.features.kernels import ridge_scores

    arrays = _arrays(folder, np.float64)  # RidgeClassifierModel keeps float64; scores use float32
    coef, bias = arrays["coefficients"].astype(np.float32), arrays["intercept"].astype(np.float32)
    scale = float(p["softmaxScale"])

    def apply(cols: Columns) -> None:
        from threadpoolctl import threadpool_limits

        # vector_to_array(…, "float32"), row-major as linear._rows makes it
        x = _vector_column(cols, p["featuresCol"], folder.name, coef.shape[0]).astype(np.float32, order="C")
        with threadpool_limits(1):
            raw, prob = ridge_scores(x, coef, bias, scale)
        _classifier_outputs(cols, p, raw, prob, raw.argmax(axis=1).astype(np.float64))
    return apply


@dataclass
class _Tree:
    """One fitted tree as arrays indexed by node id (Spark numbers nodes 0..n-1 in pre-order)."""

    feature: np.ndarray      # split feature, -1 at leaves
    threshold: np.ndarray    # continuous split: value <= threshold goes left
    left: np.ndarray
    right: np.ndarray
    stats: np.ndarray        # (nodes, classes): impurityStats, the class counts of training rows

    @classmethod
    def from_nodes(cls, nodes: list[dict[str, Any]], where: str) -> "_Tree":
        n = max(node["id"] for node in nodes) + 1
        if n != len(nodes):
            raise UnsupportedModelError(where, f"a tree whose node ids are not 0..{len(nodes) - 1}")
        feature, threshold = np.full(n, -1, np.int64), np.zeros(n, np.float64)
        left, right = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
        stats = np.zeros((n, len(nodes[0]["impurityStats"])), np.float64)
        for node in nodes:
            i, split = node["id"], node["split"]
            stats[i] = node["impurityStats"]
            if node["leftChild"] < 0:
                continue
            if split["numCategories"] != -1:
                raise UnsupportedModelError(where, f"a categorical split (feature {split['featureIndex']})")
            feature[i], threshold[i] = split["featureIndex"], split["leftCategoriesOrThreshold"][0]
            left[i], right[i] = node["leftChild"], node["rightChild"]
        return cls(feature, threshold, left, right, stats)

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """The leaf each row of ``x`` reaches (``Node.predictImpl``: NaN goes right, as ``NaN <= t`` is false)."""
        node = np.zeros(len(x), np.int64)
        rows = np.arange(len(x))
        while True:
            inner = self.left[node] >= 0
            if not inner.any():
                return node
            r, nd = rows[inner], node[inner]
            go_left = x[r, self.feature[nd]] <= self.threshold[nd]
            node[inner] = np.where(go_left, self.left[nd], self.right[nd])


def _trees(folder: Path, forest: bool) -> list[_Tree]:
    rows = _parquet_rows(folder / "data")
    by_tree: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_tree.setdefault(row.get("treeID", 0), []).append(row["nodeData"] if forest else row)
    return [_Tree.from_nodes(by_tree[t], f"{folder.name}, tree {t}") for t in sorted(by_tree)]


def _forest(folder: Path, p: dict[str, Any], meta: dict[str, Any]) -> Callable[[Columns], None]:
    trees = _trees(folder, forest=True)
    classes, size = int(meta["numClasses"]), int(meta["numFeatures"])
    # Each leaf's vote, as RandomForestClassificationModel.predictRaw computes it: the class counts
    # divided by their (in-order) total, nothing when the total is 0.
    votes = []
    for tree in trees:
        total = _sum_in_order(tree.stats)
        votes.append(np.where(total[:, None] != 0, tree.stats / np.where(total == 0, 1.0, total)[:, None], 0.0))

    def apply(cols: Columns) -> None:
        x = _vector_column(cols, p["featuresCol"], folder.name, size)
        raw = np.zeros((len(x), classes))
        for tree, vote in zip(trees, votes):  # summed tree by tree, in treeID order, as Spark does
            raw += vote[tree.leaves(x)]
        _classifier_outputs(cols, p, raw, _normalise(raw), raw.argmax(axis=1).astype(np.float64))
    return apply


def _decision_tree(folder: Path, p: dict[str, Any], meta: dict[str, Any]) -> Callable[[Columns], None]:
    (tree,) = _trees(folder, forest=False)
    size = int(meta["numFeatures"])

    def apply(cols: Columns) -> None:
        x = _vector_column(cols, p["featuresCol"], folder.name, size)
        raw = tree.stats[tree.leaves(x)]
        _classifier_outputs(cols, p, raw, _normalise(raw), raw.argmax(axis=1).astype(np.float64))
    return apply


def _softmax(raw: np.ndarray) -> np.ndarray:
    """Spark's ``Utils.softmax``: exp(v − max), divided by the in-order sum; an infinite margin wins alone."""
    top = raw.max(axis=1, keepdims=True)
    e = np.exp(raw - top)
    prob = e / _sum_in_order(e)[:, None]
    inf = np.isposinf(top[:, 0])
    if inf.any():
        first = np.argmax(np.isposinf(raw[inf]), axis=1)
        prob[inf] = 0.0
        prob[np.flatnonzero(inf), first] = 1.0
    return prob


def _logistic(folder: Path, p: dict[str, Any], meta: dict[str, Any]) -> Callable[[Columns], None]:
    (row,) = _parquet_rows(folder / "data")
    coef, intercept = _matrix(row["coefficientMatrix"]), _vector(row["interceptVector"])
    multinomial = bool(row["isMultinomial"])
    threshold = float(p.get("threshold", 0.5))
    if not multinomial and p.get("thresholds"):
        raise UnsupportedModelError(folder.name, "a binomial logistic regression with `thresholds`")

    def apply(cols: Columns) -> None:
        x = _vector_column(cols, p["featuresCol"], folder.name, coef.shape[1])
        if multinomial:  # margins = coefficients · x + intercepts; softmax
            raw = x @ coef.T + intercept
            prob = _softmax(raw)
            prediction = raw.argmax(axis=1)
        else:  # margin m, raw (−m, m); p(0) = 1 / (1 + exp(m)), p(1) = 1 − p(0)
            m = x @ coef[0] + intercept[0]
            raw = np.stack([-m, m], axis=1)
            p0 = 1.0 / (1.0 + np.exp(m))
            prob = np.stack([p0, 1.0 - p0], axis=1)
            cut = -math.inf if threshold == 0 else math.inf if threshold == 1 else math.log(threshold / (1 - threshold))
            prediction = (m > cut).astype(np.int64)
        _classifier_outputs(cols, p, raw, prob, prediction.astype(np.float64))
    return apply


def _naive_bayes(folder: Path, p: dict[str, Any], meta: dict[str, Any]) -> Callable[[Columns], None]:
    kind = p.get("modelType", "multinomial")
    if kind not in ("gaussian", "multinomial"):
        raise UnsupportedModelError(folder.name, f"naive Bayes of type {kind!r}", " (gaussian and multinomial it does)")
    (row,) = _parquet_rows(folder / "data")
    pi, theta = _vector(row["pi"]), _matrix(row["theta"])  # log priors; per class, per feature
    if kind == "gaussian":
        sigma = _matrix(row["sigma"])
        log_var_sum = _sum_in_order(np.log(sigma))  # NaiveBayesModel.logVarSum: features added in order

    def apply(cols: Columns) -> None:
        x = _vector_column(cols, p["featuresCol"], folder.name, theta.shape[1])
        if kind == "gaussian":  # pi − (Σ_j (x_j − θ_j)² / σ_j + Σ_j log σ_j) / 2, the sum in feature order
            s = np.zeros((len(x), len(pi)))
            for j in range(theta.shape[1]):
                d = x[:, j, None] - theta[:, j]
                s += d * d / sigma[:, j]
            raw = pi - (s + log_var_sum) / 2
        else:  # pi + θ · x
            if (x < 0).any():
                raise ValueError("multinomial naive Bayes requires nonnegative feature values")
            raw = x @ theta.T + pi
        _classifier_outputs(cols, p, raw, _softmax(raw), raw.argmax(axis=1).astype(np.float64))
    return apply


def _cnn(folder: Path, p: dict[str, Any]) -> Callable[[Columns], None]:
    """The CNN through torch in this process (``cnn.inference.Predictor``, as in the Spark tasks)."""
    from sparkvision.models.cnn.inference import Predictor
    from sparkvision.models.cnn.settings import check_safetensors, require_torch

    require_torch()
    (row,) = _parquet_rows(folder / "data")
    weights = bytes(row["weights"])
    check_safetensors(weights, folder / "data")
    config = {"widths": p["widths"], "numClasses": p["numClasses"], "imageShape": p["imageShape"],
              "tta": p["tta"], "precision": p["precision"]}
    try:
        predictor = Predictor(weights, config)
    except ValueError as exc:
        raise BadDataError(f"{folder / 'data'}: {exc}. Train again, or copy the model folder again.") from None

    def apply(cols: Columns) -> None:
        x = _bytes_column(cols, p["inputCol"], folder.name)
        raw, prob = predictor.predict_images(x.reshape(len(x), *predictor.shape))
        _classifier_outputs(cols, p, raw.astype(np.float64), prob.astype(np.float64),
                            prob.argmax(axis=1).astype(np.float64))
    return apply


# Stage class → the function that builds it: ours from the folder and Params, MLlib's with the metadata too
_OURS: dict[str, Callable[[Path, dict[str, Any]], Callable[[Columns], None]]] = {
    "sparkvision.features.pixels.Grayscale": _grayscale,
    "sparkvision.features.pixels.PixelVectorizer": _pixel_vectorizer,
    "sparkvision.features.patches.PatchFeaturesModel": _patch_features,
    "sparkvision.models.ridge.stage.RidgeClassifierModel": _ridge,
    "sparkvision.models.cnn.stages.CNNClassificationModel": _cnn,
}
_MLLIB: dict[str, Callable[[Path, dict[str, Any], dict[str, Any]], Callable[[Columns], None]]] = {
    _FOREST: _forest,
    _TREE: _decision_tree,
    _LOGISTIC: _logistic,
    _BAYES: _naive_bayes,
}
SUPPORTED = tuple(_OURS) + tuple(_MLLIB)


# ---------------------------------------------------------------------------------------------
# The pipeline


def _stage_folders(model_path: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(folder, metadata) of every stage, in order; UnsupportedModelError for a stage we cannot evaluate."""
    meta = _metadata(model_path)
    if meta.get("class") not in _PIPELINES:
        raise UnsupportedModelError(model_path, f"a {meta.get('class')}, not a PipelineModel")
    stages = []
    for folder in _stage_paths(model_path, meta):  # stageUids: where pyspark's and Scala's writers both put them
        stage_meta = _metadata(folder)
        if stage_meta.get("class") not in SUPPORTED:
            done = ", ".join(c.rsplit(".", 1)[1] for c in SUPPORTED)
            raise UnsupportedModelError(model_path, f"stage {folder.name}, a {stage_meta.get('class')}",
                                        f" (it evaluates {done})")
        stages.append((folder, stage_meta))
    return stages


# ---------------------------------------------------------------------------------------------
# Checking a saved model's files before either engine reads them

_CNN = "sparkvision.models.cnn.stages.CNNClassificationModel"
# The folders each stage's reader needs besides metadata/ (Spark's loaders and ours)
_RIDGE = "sparkvision.models.ridge.stage.RidgeClassifierModel"
_DATA_FOLDERS = {_FOREST: ("data", "treesMetadata"), _TREE: ("data",), _LOGISTIC: ("data",), _BAYES: ("data",),
                 "sparkvision.features.patches.PatchFeaturesModel": ("data",), _RIDGE: ("data",), _CNN: ("data",)}


def _check_checksums(model_path: Path) -> None:
    """Every file Spark wrote with a Hadoop checksum beside it (``.NAME.crc``: CRC-32 of each 512-byte
    chunk) still matches it: Spark refuses a file that does not, with a ChecksumException."""
    for crc in sorted(model_path.rglob(".*.crc")):
        target = crc.with_name(crc.name[1:-4])
        if not target.is_file():
            continue
        raw = crc.read_bytes()
        if len(raw) < 8 or raw[:4] != b"crc\0" or (len(raw) - 8) % 4:
            raise BadDataError(f"{crc}: not a Hadoop checksum file; the model folder is damaged: {_AGAIN} (or delete "
                               "that .crc file if only it is).")
        chunk = struct.unpack(">i", raw[4:8])[0]
        data = target.read_bytes()
        sums = struct.unpack(f">{(len(raw) - 8) // 4}I", raw[8:])
        if chunk <= 0 or len(sums) != -(-len(data) // chunk) or any(
                zlib.crc32(data[i * chunk:(i + 1) * chunk]) != want for i, want in enumerate(sums)):
            raise BadDataError(f"{target}: does not match its checksum ({crc.name}): the file was changed or damaged "
                               f"after Spark wrote it, and Spark refuses to read it. {_AGAIN[0].upper()}{_AGAIN[1:]}.")


def _check_parquet(folder: Path) -> None:
    import pyarrow.parquet as pq

    for f in _parquet_files(folder):
        try:
            pq.ParquetFile(f)  # its footer: the schema and row groups
        except (OSError, ValueError) as exc:
            raise BadDataError(f"{f}: not a readable Parquet file ({type(exc).__name__}: {exc}); the model folder is "
                               f"damaged: {_AGAIN}.") from None


def _classes_of(folder: Path, cls: str, meta: dict[str, Any]) -> int | None:
    """How many classes a classifier stage predicts (None: not a classifier, or not known without Spark)."""
    p = _params(meta)
    if cls in (_FOREST, _TREE):
        return int(meta["numClasses"])
    if cls in ("org.apache.spark.ml.classification.GBTClassificationModel",
               "org.apache.spark.ml.classification.LinearSVCModel"):
        return 2
    if cls == "org.apache.spark.ml.classification.MultilayerPerceptronClassificationModel" and p.get("layers"):
        return int(p["layers"][-1])
    if cls == _CNN:
        return int(p["numClasses"])
    if cls == _RIDGE:
        return int(_arrays(folder, np.float64)["coefficients"].shape[1])
    if cls == _LOGISTIC:
        (row,) = _parquet_rows(folder / "data")
        return int(row["numClasses"])
    if cls == _BAYES:
        (row,) = _parquet_rows(folder / "data")
        return int(_vector(row["pi"]).size)
    return None


def _features_of(folder: Path, cls: str, meta: dict[str, Any]) -> int | None:
    """How many features a classifier stage takes (None: not a classifier, or not known without Spark)."""
    p = _params(meta)
    if cls in (_FOREST, _TREE):
        return int(meta["numFeatures"])
    if cls == "org.apache.spark.ml.classification.MultilayerPerceptronClassificationModel" and p.get("layers"):
        return int(p["layers"][0])
    if cls == _RIDGE:
        return int(_arrays(folder, np.float64)["coefficients"].shape[0])
    if cls in (_LOGISTIC, _BAYES):
        (row,) = _parquet_rows(folder / "data")
        return int(_matrix(row["coefficientMatrix" if cls == _LOGISTIC else "theta"]).shape[1])
    return None


_GRAY, _PIXELS = "sparkvision.features.pixels.Grayscale", "sparkvision.features.pixels.PixelVectorizer"


def check_model(model_path: str | Path, class_names: list[str] | None = None, image_size: int | None = None, *,
                labels: object = None) -> None:
    """Check, without Spark, every file a saved model holds, before either engine reads it.

    The pipeline's and each stage's metadata (JSON with a class and Params), the stage folders it
    lists, their data (Parquet footers), Hadoop's checksums of what Spark wrote, the CNN's
    weights, and that ``class_names`` and ``image_size`` (from the labels file ``labels``) fit
    the classifier. Raises DataNotFoundError for a missing file or folder and BadDataError for a
    damaged one or a model this version cannot read (a stage class it does not have), each
    naming the file and what to do.
    """
    from sparkvision import __version__

    model_path = Path(model_path)
    labels = labels or "the class list"
    _check_checksums(model_path)
    meta = _metadata(model_path)
    if meta["class"] not in _PIPELINES:
        raise BadDataError(f"{model_path}: its metadata says it is a {meta['class']}, not a PipelineModel; "
                           f"sparkvision saves a fitted Pipeline. Pass the model folder `sparkvision run` wrote.")
    classes = None
    channels, pixel_features = 3, None  # what the pixel stages make of image_size-sided images
    for folder in _stage_paths(model_path, meta):
        if not folder.is_dir():
            raise DataNotFoundError(f"{folder}: missing, though the model's metadata lists this stage; the model "
                                    f"folder is incomplete: {_AGAIN}.")
        stage = _metadata(folder)
        cls, p = stage["class"], _params(stage)
        if cls.startswith("sparkvision.") and cls not in _OURS:
            raise BadDataError(f"{folder}: a {cls}, a stage this sparkvision ({__version__}) does not have: the model "
                               "was saved by another version. Train it again with this one, or predict with the "
                               "version that saved it.")
        for sub in _DATA_FOLDERS.get(cls, ()):
            if not (folder / sub).is_dir():
                raise DataNotFoundError(f"{folder / sub}: missing; the stage cannot be loaded without it. The model "
                                        f"folder is incomplete: {_AGAIN}.")
        for sub in sorted(d for d in folder.iterdir() if d.is_dir() and d.name != "metadata"):
            _check_parquet(sub)
        try:
            if cls == _CNN:
                from sparkvision.models.cnn.settings import check_safetensors

                (row,) = _parquet_rows(folder / "data")
                check_safetensors(bytes(row["weights"]), folder / "data")
            found = _classes_of(folder, cls, stage)
            shape = image_sides(p)
            takes = _features_of(folder, cls, stage) if pixel_features is not None else None
        except SparkVisionError:
            raise
        except (KeyError, ValueError, TypeError, IndexError, OSError, EOFError, zipfile.BadZipFile) as exc:
            what = f"no {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
            raise BadDataError(f"{folder}: the saved stage cannot be read ({what}); it is damaged, or was saved by "
                               f"another version of sparkvision: {_AGAIN}.") from None
        if found is not None:
            classes = (found, folder)
        if image_size is not None and shape and shape != (image_size, image_size):
            raise BadDataError(f"{labels}: image size {image_size}, but stage {folder.name} takes "
                               f"{shape[0]}×{shape[1]} images, so this file does not belong to this model: {_AGAIN}.")
        channels = 1 if cls == _GRAY else channels
        if cls == _PIXELS and image_size is not None:
            pixel_features = image_size * image_size * channels
        if takes is not None and takes != pixel_features:  # pixel stages record no size: their classifier does
            raise BadDataError(f"{labels}: image size {image_size}, which gives {pixel_features} pixel features, but "
                               f"the classifier ({folder.name}) takes {takes}, so this file does not belong to this "
                               f"model: {_AGAIN}.")
    if class_names is not None and classes is not None and classes[0] != len(class_names):
        raise BadDataError(f"{labels}: {len(class_names)} class names, but the classifier ({classes[1].name}) "
                           f"predicts {classes[0]} classes, so this file does not belong to this model: {_AGAIN}.")


class LocalPipeline:
    """The stages of a saved PipelineModel as numpy functions.

    :meth:`predict` takes (B, H, W, 3) uint8 RGB images — the image table's ``data`` — and gives
    the classifier's ``probability`` (None when the model gives none) and ``prediction`` columns.
    """

    def __init__(self, model_path: str | Path) -> None:
        self.path = Path(model_path)
        self.stages: list[_Stage] = []
        for folder, meta in _stage_folders(self.path):
            cls, params = meta["class"], _params(meta)
            try:
                build = _OURS[cls](folder, params) if cls in _OURS else _MLLIB[cls](folder, params, meta)
            except SparkVisionError:
                raise
            except (KeyError, ValueError, TypeError, IndexError, AttributeError, OSError, EOFError,
                    zipfile.BadZipFile) as exc:  # a Param or array missing or of another shape
                what = f"no {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
                raise BadDataError(f"{folder}: the saved stage cannot be read ({what}); it is damaged, or was saved by "
                                   f"another version of sparkvision: {_AGAIN}.") from None
            self.stages.append(_Stage(folder.name, build))

    def predict(self, images: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """(probability (B, classes) or None, prediction (B,)) for (B, H, W, 3) uint8 images."""
        cols: Columns = {"data": images.reshape(len(images), -1)}
        for stage in self.stages:
            try:
                stage.apply(cols)
            except (KeyError, ValueError) as exc:  # a Param it needs missing, or arrays that do not fit
                what = f"no {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
                raise BadDataError(f"{self.path / 'stages' / stage.name}: the saved stage cannot be applied ({what}); "
                                   f"it is damaged, or was saved by another version of sparkvision: {_AGAIN}.") from None
        if "prediction" not in cols:
            raise ConfigError(f"{self.path}: the model gives no `prediction` column; it is not a classifier.")
        return cols.get("probability"), cols["prediction"]


def load_pipeline(model_path: str | Path) -> LocalPipeline:
    """The :class:`LocalPipeline` of a saved model folder, read once per process (again if the
    folder is saved anew).

    Raises :class:`UnsupportedModelError` naming the first stage (or split, or model type) the
    local engine cannot evaluate: ``predict --engine auto`` asks this before choosing.
    """
    path = Path(model_path).resolve()
    return _load(path, (path / "metadata").stat().st_mtime_ns if (path / "metadata").exists() else 0)


@functools.lru_cache(maxsize=4)
def _load(path: Path, saved_at: int) -> LocalPipeline:
    return LocalPipeline(path)
