"""A ridge-regression classifier fitted in one distributed pass (normal equations).

For wide dense features (thousands of patch features) MLlib's iterative learners pay a full
pass over the data per iteration (``LogisticRegression``: about 3 s per iteration for 40,000
× 8,000 features on 2 cores, and a few hundred iterations). Least squares onto one-hot
labels needs one pass: every task sums XᵀX, Xᵀy and the column sums of its rows with
float32 matrix products; the driver adds the partitions' sums (d×d, independent of the number
of images), standardises them, and solves (XᵀX + λI)W = XᵀY. This is how KeystoneML fits its
CIFAR-10 pipeline on Spark.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel, keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import (HasFeaturesCol, HasLabelCol, HasPredictionCol, HasProbabilityCol,
                                     HasRawPredictionCol, HasRegParam, HasSeed, HasStandardization)
from pyspark.ml.util import DefaultParamsReadable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, StructField, StructType

from sparkvision.runtime.arrow import float_array, float_rows, list_array
from sparkvision.models.fitting import num_classes
from sparkvision.features.kernels import ridge_scores
from sparkvision.models.ridge.solver import NormalEquations
from sparkvision.runtime.npy import from_npy
from sparkvision.runtime.stage_io import ArraysReadWrite, ParamsWritable


class _RidgeParams(HasFeaturesCol, HasLabelCol, HasPredictionCol, HasProbabilityCol, HasRawPredictionCol,
                   HasRegParam, HasSeed, HasStandardization):
    """Params shared by :class:`RidgeClassifier` and its model."""

    regGrid = Param(Params._dummy(), "regGrid",
                    "when regParam is not set: candidates, the one with the least validation error is used",
                    typeConverter=TypeConverters.toListFloat)
    validationFraction = Param(Params._dummy(), "validationFraction",
                               "share of the rows held out (in the same pass) to choose regParam from regGrid",
                               typeConverter=TypeConverters.toFloat)
    softmaxScale = Param(Params._dummy(), "softmaxScale",
                         "probability = softmax(scale × score); scores rank classes, they are not calibrated",
                         typeConverter=TypeConverters.toFloat)

    _DEFAULTS = dict(featuresCol="features", labelCol="label", predictionCol="prediction",
                     probabilityCol="probability", rawPredictionCol="rawPrediction",
                     regGrid=[1e-4, 3e-4, 1e-3, 3e-3, 1e-2], validationFraction=0.1, seed=42,
                     standardization=True, softmaxScale=10.0)


def check_ridge_params(values: dict) -> None:
    """Raise ValueError (naming the Param) for ridge values that cannot fit: checked before Spark
    starts (the registry's check) and again by ``fit``.

    >>> check_ridge_params({"regParam": -1})
    Traceback (most recent call last):
    ...
    ValueError: regParam must be a finite number ≥ 0, not -1
    """
    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < math.inf

    if "regParam" in values and values["regParam"] is not None and not number(values["regParam"]):
        raise ValueError(f"regParam must be a finite number ≥ 0, not {values['regParam']!r}")
    grid = values.get("regGrid", [1.0])
    if "regParam" not in values and (not isinstance(grid, (list, tuple)) or not grid or not all(map(number, grid))):
        raise ValueError(f"regGrid must be a list of finite numbers ≥ 0 to choose regParam from, not {grid!r}")
    fraction = values.get("validationFraction", 0.1)  # used only to choose regParam from the grid
    if values.get("regParam") is None and not (number(fraction) and fraction < 1):
        raise ValueError(f"validationFraction must be in [0, 1), not {fraction!r}")


class RidgeClassifier(Estimator, _RidgeParams, DefaultParamsReadable, ParamsWritable):
    """Linear classifier: ridge regression of one-hot labels, argmax of the scores.

    ``regParam`` is relative: with standardised features λ = regParam × number of rows, so the
    same value suits any data size. Left unset, it is chosen from ``regGrid``: a
    ``validationFraction`` of the rows is summed apart in the same pass, each candidate is
    solved on the rest, and the one with the least squared error on the held-out sums wins
    (when that is the grid's first or last value, the search goes on past it, in half-decades,
    while the error falls: at most three more solves); the final weights use all rows. The fit
    reads its input once (no cache needed).

    Examples
    --------
    >>> from pyspark.ml.linalg import Vectors
    >>> df = spark.createDataFrame([(Vectors.dense([0.0, 1.0]), 0.0), (Vectors.dense([1.0, 0.0]), 1.0),
    ...                             (Vectors.dense([0.1, 0.9]), 0.0), (Vectors.dense([0.9, 0.2]), 1.0)],
    ...                            ["features", "label"])
    >>> model = RidgeClassifier().fit(df)
    >>> [r.prediction for r in model.transform(df).collect()]
    [0.0, 1.0, 0.0, 1.0]
    """

    reads_input_once = True  # fitting.fit_pipeline does not cache the input of a one-pass fit

    @keyword_only
    def __init__(self, *, featuresCol: str = "features", labelCol: str = "label", predictionCol: str = "prediction",
                 probabilityCol: str = "probability", rawPredictionCol: str = "rawPrediction",
                 regParam: float | None = None, regGrid: list[float] | None = None,
                 validationFraction: float = 0.1, seed: int = 42, standardization: bool = True,
                 softmaxScale: float = 10.0) -> None:
        super().__init__()
        self._setDefault(**self._DEFAULTS)
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, featuresCol: str = "features", labelCol: str = "label", predictionCol: str = "prediction",
                  probabilityCol: str = "probability", rawPredictionCol: str = "rawPrediction",
                  regParam: float | None = None, regGrid: list[float] | None = None,
                  validationFraction: float = 0.1, seed: int = 42, standardization: bool = True,
                  softmaxScale: float = 10.0) -> "RidgeClassifier":
        """Set this stage's parameters; returns the stage."""
        return self._set(**{k: v for k, v in self._input_kwargs.items() if v is not None})

    def setRegParam(self, value: float) -> "RidgeClassifier":
        return self._set(regParam=value)

    def setSeed(self, value: int) -> "RidgeClassifier":
        return self._set(seed=value)

    def setFeaturesCol(self, value: str) -> "RidgeClassifier":
        return self._set(featuresCol=value)

    def setLabelCol(self, value: str) -> "RidgeClassifier":
        return self._set(labelCol=value)

    def _fit(self, dataset: DataFrame) -> "RidgeClassifierModel":
        check_ridge_params({p.name: self.getOrDefault(p) for p in (self.regGrid, self.validationFraction)}
                           | ({"regParam": self.getRegParam()} if self.isSet(self.regParam) else {}))
        grid = [] if self.isSet(self.regParam) else list(self.getOrDefault(self.regGrid))
        holdout = float(self.getOrDefault(self.validationFraction)) if len(grid) > 1 else 0.0
        classes, seed = num_classes(dataset, self.getLabelCol(), "RidgeClassifier"), self.getOrDefault(self.seed)
        rows = dataset.select(vector_to_array(F.col(self.getFeaturesCol()), "float32").alias("x"),
                              F.col(self.getLabelCol()).cast("int").alias("y"))

        def partial_sums(batches):  # in the tasks: the sums of this partition, per part (fit, validation)
            from pyspark import TaskContext
            from threadpoolctl import threadpool_limits

            rng = np.random.default_rng([seed, TaskContext.get().partitionId()])
            parts: dict[int, NormalEquations] = {}
            with threadpool_limits(1):
                for batch in batches:
                    x, y = float_rows(batch.column(0)), batch.column(1).to_numpy(zero_copy_only=False)
                    if (y < 0).any() or (y >= classes).any():
                        raise ValueError(f"labels must be in [0, {classes}); found {int(y.min())}..{int(y.max())}")
                    in_validation = rng.random(len(y)) < holdout
                    for part, mask in ((0, ~in_validation), (1, in_validation)):
                        if mask.any():
                            # XᵀX summed in float64. A float32 running sum (tried) halves the task's
                            # memory, but its rounding, magnified by the centring XᵀX − nμμᵀ (the
                            # features' means are large against their spread), made the smallest
                            # regularisations' systems indefinite.
                            parts.setdefault(part, NormalEquations.empty(x.shape[1], classes)).add(x[mask], y[mask])
            for part, sums in parts.items():
                for start, blobs in sums.blocks():
                    yield pa.RecordBatch.from_arrays(
                        [pa.array([part], pa.int32()), pa.array([start], pa.int32())]
                        + [pa.array([b], pa.binary()) for b in blobs], ["part", "start", *NormalEquations.FIELDS])

        started = time.perf_counter()
        parts: dict[int, NormalEquations] = {}
        # One row per partition and part. All partitions are summed in parallel into a cache (count),
        # then fetched one at a time, so the driver's Python holds a few d×d arrays whatever the
        # number of partitions (toLocalIterator alone would also compute them one at a time).
        schema = "part int, start int, " + ", ".join(f"{name} binary" for name in NormalEquations.FIELDS)
        # On disk, not in the JVM's heap: XᵀX is hundreds of MB per partition at d = 8,000, so it
        # travels in blocks of rows, each added into the driver's running sum as it arrives.
        summed_rows = rows.mapInArrow(partial_sums, schema).persist(StorageLevel.DISK_ONLY)
        try:
            summed_rows.count()
            for row in summed_rows.toLocalIterator():
                arrays = [from_npy(row[name]) for name in NormalEquations.FIELDS]
                if row.part not in parts:
                    parts[row.part] = NormalEquations.empty(NormalEquations.size_of_block(row.start, arrays), arrays[1].shape[1])
                parts[row.part].add_block(row.start, arrays)
        finally:
            summed_rows.unpersist()
        for sums in parts.values():
            sums.mirror()
        if not parts:
            raise ValueError("RidgeClassifier cannot fit on an empty dataset")
        summed = time.perf_counter()
        standardize = self.getStandardization()
        if self.isSet(self.regParam):
            best_reg, errors = self.getRegParam(), {}
        elif 0 in parts and 1 in parts:
            def error(reg: float) -> float:
                return parts[1].squared_error(*parts[0].solve(reg, standardize)) / parts[1].n

            errors = {reg: error(reg) for reg in grid}
            best_reg = min(errors, key=errors.get)
            # The best value on the grid's edge means the best may lie beyond it: carry on past that
            # edge in half-decades while the held-out error keeps falling (at most EDGE_STEPS).
            for _ in range(EDGE_STEPS):
                if best_reg not in (min(errors), max(errors)) or len(errors) < 2:
                    break
                step = EDGE_FACTOR if best_reg == max(errors) else 1 / EDGE_FACTOR
                beyond = best_reg * step
                errors[beyond] = error(beyond)
                if errors[beyond] >= errors[best_reg]:
                    break
                best_reg = beyond
        else:  # too few rows to hold any out
            best_reg, errors = grid[len(grid) // 2], {}
        all_rows = parts.pop(0).absorb(parts.pop(1)) if len(parts) == 2 else next(iter(parts.values()))
        coef, intercept = all_rows.solve(best_reg, standardize)
        model = RidgeClassifierModel()
        self._copyValues(model)
        model._set(regParam=best_reg)
        model.validationErrors = errors
        # The pass includes computing the features (Spark is lazy); the solves run in the driver.
        model.fitSeconds = {"pass": round(summed - started, 3), "solve": round(time.perf_counter() - summed, 3)}
        model._set_arrays({"coefficients": coef, "intercept": intercept})
        return model


EDGE_STEPS = 3            # how far past the edge of regGrid the choice may go
EDGE_FACTOR = 10 ** 0.5   # in half-decades, as the default grid is spaced


class RidgeClassifierModel(Model, _RidgeParams, ArraysReadWrite):
    """A fitted :class:`RidgeClassifier`: scores = x·W + b, prediction = argmax."""

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(**self._DEFAULTS)
        self._arrays: dict[str, np.ndarray] = {}
        self.validationErrors: dict[float, float] = {}  # regParam → mean squared error, when it was reg
        self.fitSeconds: dict[str, float] = {}  # the fit's pass over the data and its solves in the driver

    _array_dtype = np.float64

    @property
    def coefficients(self) -> np.ndarray:
        """Weights, features × classes."""
        return self._arrays["coefficients"]

    @property
    def intercept(self) -> np.ndarray:
        """One bias per class."""
        return self._arrays["intercept"]

    @property
    def numClasses(self) -> int:
        return self.coefficients.shape[1]

    def _transform(self, dataset: DataFrame) -> DataFrame:
        if not self._arrays:
            raise ValueError("RidgeClassifierModel has no weights: fit RidgeClassifier or load a saved model")
        coef, bias = self.coefficients.astype(np.float32), self.intercept.astype(np.float32)
        scale = float(self.getOrDefault(self.softmaxScale))
        out_type = StructType([StructField("raw", ArrayType(DoubleType(), False), False),
                               StructField("prob", ArrayType(DoubleType(), False), False),
                               StructField("pred", DoubleType(), False)])

        def score(x: pa.Array) -> pa.Array:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(1):
                raw, prob = ridge_scores(float_rows(x), coef, bias, scale)
            c = raw.shape[1]
            offsets = np.arange(0, (len(raw) + 1) * c, c)
            return pa.StructArray.from_arrays(
                [list_array(offsets, raw.ravel()), list_array(offsets, prob.ravel()),
                 float_array(raw.argmax(axis=1).astype(np.float64))], ["raw", "prob", "pred"])

        udf = F.arrow_udf(score, out_type)
        tmp = "__ridge_scores"
        out = dataset.withColumn(tmp, udf(vector_to_array(F.col(self.getFeaturesCol()), "float32")))
        return (out.withColumn(self.getRawPredictionCol(), array_to_vector(F.col(f"{tmp}.raw")))
                .withColumn(self.getProbabilityCol(), array_to_vector(F.col(f"{tmp}.prob")))
                .withColumn(self.getPredictionCol(), F.col(f"{tmp}.pred"))
                .drop(tmp))
