"""Fitting a Pipeline so its classifier reads cached features once, not recomputed per pass.

MLlib's tree and linear learners pass over their input several times (class count, feature
count, sampling for splits, binning, iterations). Inside a plain ``Pipeline.fit`` every pass
recomputes the feature stages; :func:`fit_pipeline` persists just the columns the final
estimator reads, fits it, and unpersists. The result is an ordinary ``PipelineModel``.
"""

from __future__ import annotations

import time
from typing import Sequence

from pyspark import StorageLevel
from pyspark.ml import Estimator, PipelineModel, Transformer
from pyspark.ml.base import Model
from pyspark.ml.param import Params
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pyspark.sql.utils import is_remote

from sparkvision.errors import ConfigError


def label_with_classes(df: DataFrame, class_names: Sequence[str], labelCol: str = "label") -> DataFrame:
    """Attach the class names to the label column as ML nominal-attribute metadata.

    Classifiers then know the number of classes without a pass over the data to find the
    largest label.
    """
    meta = {"ml_attr": {"type": "nominal", "name": labelCol, "vals": [str(c) for c in class_names]}}
    return df.withColumn(labelCol, F.col(labelCol).alias(labelCol, metadata=meta))


def num_classes(df: DataFrame, labelCol: str, stage: str) -> int:
    """The number of classes: from the label's metadata (:func:`label_with_classes`), else the
    largest label + 1 (one pass); ValueError naming ``stage`` on an empty dataset."""
    vals = df.schema[labelCol].metadata.get("ml_attr", {}).get("vals")
    if vals:
        return len(vals)
    top = df.agg(F.max(labelCol)).head()[0]
    if top is None:
        raise ValueError(f"{stage} cannot fit on an empty dataset")
    return int(top) + 1


def check_on_jvm(stage: Params) -> None:
    """Hand a JVM-backed stage's Params to its Java object now, so a bad value (numTrees=0)
    fails before any data is read rather than deep inside a fit. Needs an active session."""

    if is_remote():  # a Connect client holds no Java objects: the server checks the values when it fits
        return
    stages = [stage] + ([stage.getClassifier()] if hasattr(stage, "getClassifier") else [])
    for s in stages:
        if hasattr(s, "_transfer_params_to_java"):
            try:
                s._transfer_params_to_java()
            except Exception as exc:  # IllegalArgumentException from the JVM, as text
                text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ConfigError(f"{type(s).__name__}: {text}") from None


def _input_columns(stage: Params) -> list[str]:
    cols = []
    for name in ("labelCol", "featuresCol", "weightCol"):
        if stage.hasParam(name) and stage.isDefined(stage.getParam(name)):
            value = stage.getOrDefault(stage.getParam(name))
            if value and value not in cols:
                cols.append(value)
    return cols


def fit_pipeline(stages: Sequence[Params], dataset: DataFrame, timings: dict[str, float] | None = None) -> PipelineModel:
    """Fit ``stages`` on ``dataset`` as ``Pipeline(stages).fit`` would, caching the last estimator's input.

    Transformers before the last estimator are applied as usual; the last estimator's input
    (only the label, features and weight columns it reads) is persisted in memory (spilling to
    disk), filled by the estimator's first pass, and released after its fit. An estimator with
    ``reads_input_once = True`` (one pass, e.g. :class:`~sparkvision.models.ridge.stage.RidgeClassifier`)
    reads its input uncached. ``timings``, when given, receives the seconds each estimator's
    fit took, by class name (a fit includes computing its input, since Spark is lazy).
    """
    estimators = [i for i, s in enumerate(stages) if isinstance(s, Estimator)]
    last = estimators[-1] if estimators else -1
    fitted: list[Transformer] = []
    df = dataset
    for i, stage in enumerate(stages):
        started = time.perf_counter()
        if i == last and getattr(stage, "reads_input_once", False):
            fitted.append(stage.fit(df))  # one pass: a cache would only cost memory
        elif i == last:
            cols = _input_columns(stage)
            cached = (df.select(*cols) if cols else df).persist(StorageLevel.MEMORY_AND_DISK)
            try:
                # No count() first: the estimator's first full pass fills the cache, and a
                # separate materialising pass would cost one more scan.
                fitted.append(stage.fit(cached))
            finally:
                cached.unpersist()
        elif isinstance(stage, Estimator):
            model = stage.fit(df)
            fitted.append(model)
            df = model.transform(df)
        elif isinstance(stage, (Transformer, Model)):
            fitted.append(stage)
            if i < last:
                df = stage.transform(df)
        else:
            raise TypeError(f"stage {stage!r} is neither an Estimator nor a Transformer")
        if timings is not None and isinstance(stage, Estimator):
            timings[f"fit {type(stage).__name__}"] = round(time.perf_counter() - started, 3)
    return PipelineModel(fitted)
