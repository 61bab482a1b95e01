"""Learned patch features (Coates, Lee & Ng 2011): :class:`PatchFeatures` learns a dictionary of
whitened image patches (k-means, or sampled patches) and its :class:`PatchFeaturesModel` encodes
each image as pooled, flip-invariant patch activations. The numerics are in
:mod:`sparkvision.features.patch_math`, the per-batch encoder in :mod:`sparkvision.features.kernels`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel, keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.functions import array_to_vector
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol, HasSeed
from pyspark.ml.util import DefaultParamsReadable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, FloatType

from sparkvision.features import patch_math
from sparkvision.features.arrow_kernels import image_array
from sparkvision.features.kernels import patch_features
from sparkvision.defaults import CENTROIDS as DEFAULT_CENTROIDS, PATCH_SIZE
from sparkvision.runtime.arrow import list_array
from sparkvision.runtime.connect import is_connect
from sparkvision.runtime.npy import from_npy, to_npy
from sparkvision.runtime.stage_io import ArraysReadWrite, ParamsWritable


class _Shared:
    """A value shipped with a task's function, read as ``.value`` like a broadcast variable."""

    def __init__(self, value) -> None:
        self.value = value

    def unpersist(self) -> None:
        """Nothing to free: the value went with the function."""


class _PatchParams(HasInputCol, HasOutputCol, HasSeed):
    """Params shared by :class:`PatchFeatures` and :class:`PatchFeaturesModel`."""

    k = Param(Params._dummy(), "k", "number of centroids (even: half are learned, half their mirror images)",
              typeConverter=TypeConverters.toInt)
    patchSize = Param(Params._dummy(), "patchSize", "side of the square patches, in pixels",
                      typeConverter=TypeConverters.toInt)
    stride = Param(Params._dummy(), "stride", "step between encoded windows, in pixels", typeConverter=TypeConverters.toInt)
    poolingGrid = Param(Params._dummy(), "poolingGrid", "codes are summed over grid × grid regions",
                        typeConverter=TypeConverters.toInt)
    encoder = Param(Params._dummy(), "encoder", "'triangle' (max(0, mean(z) − z_k)) or 'soft' (max(0, c·x − alpha))",
                    typeConverter=TypeConverters.toString)
    alpha = Param(Params._dummy(), "alpha", "threshold of the soft encoder", typeConverter=TypeConverters.toFloat)
    whiteningEps = Param(Params._dummy(), "whiteningEps", "added to the patch covariance's eigenvalues before whitening",
                         typeConverter=TypeConverters.toFloat)
    dictionary = Param(Params._dummy(), "dictionary", "'kmeans' (learned centroids) or 'random' (sampled patches)",
                       typeConverter=TypeConverters.toString)
    numPatches = Param(Params._dummy(), "numPatches", "how many patches to sample for whitening and k-means",
                       typeConverter=TypeConverters.toInt)
    maxIter = Param(Params._dummy(), "maxIter", "k-means iterations", typeConverter=TypeConverters.toInt)
    flipInvariant = Param(Params._dummy(), "flipInvariant",
                          "add each feature to its mirror partner: equal features for an image and its mirror "
                          "(half as many values)", typeConverter=TypeConverters.toBoolean)
    power = Param(Params._dummy(), "power", "each pooled value is raised to this power (0.5: square root; "
                  "evens out large and small sums for the linear classifier)", typeConverter=TypeConverters.toFloat)
    imageHeight = Param(Params._dummy(), "imageHeight", "image height in pixels", typeConverter=TypeConverters.toInt)
    imageWidth = Param(Params._dummy(), "imageWidth", "image width in pixels", typeConverter=TypeConverters.toInt)
    imageChannels = Param(Params._dummy(), "imageChannels", "channels per pixel (3: RGB)", typeConverter=TypeConverters.toInt)

    _DEFAULTS = dict(inputCol="data", outputCol="features", k=DEFAULT_CENTROIDS, patchSize=PATCH_SIZE, stride=1, poolingGrid=2,
                     encoder="triangle", alpha=0.25, whiteningEps=0.1, dictionary="kmeans", numPatches=200_000,
                     maxIter=10, flipInvariant=True, power=0.5, imageHeight=32, imageWidth=32, imageChannels=3, seed=42)

    def _check(self) -> None:
        param = self.getOrDefault
        if param(self.k) < 2 or param(self.k) % 2:
            raise ValueError(f"k must be an even number of centroids ≥ 2, not {param(self.k)}")
        if param(self.encoder) not in ("triangle", "soft"):
            raise ValueError(f"encoder must be 'triangle' or 'soft', not {param(self.encoder)!r}")
        if not 0 < param(self.power) <= 1:
            raise ValueError(f"power must be in (0, 1], not {param(self.power)}")
        if param(self.dictionary) not in ("kmeans", "random"):
            raise ValueError(f"dictionary must be 'kmeans' or 'random', not {param(self.dictionary)!r}")
        for name in ("patchSize", "stride", "poolingGrid", "numPatches", "maxIter", "imageHeight", "imageWidth",
                     "imageChannels"):
            if param(self.getParam(name)) < (0 if name == "maxIter" else 1):
                raise ValueError(f"{name} must be positive, not {param(self.getParam(name))}")
        side = min(param(self.imageHeight), param(self.imageWidth))
        if param(self.patchSize) > side:
            raise ValueError(f"patchSize {param(self.patchSize)} is larger than the images ({side} pixels)")
        if param(self.poolingGrid) > patch_math.window_positions(side, param(self.patchSize), param(self.stride)):
            raise ValueError(f"poolingGrid {param(self.poolingGrid)} has more regions than there are windows")

    def _shape(self) -> tuple[int, int, int]:
        return (self.getOrDefault(self.imageHeight), self.getOrDefault(self.imageWidth),
                self.getOrDefault(self.imageChannels))

    def numFeatures(self) -> int:
        """Length of the output vector."""
        n = self.getOrDefault(self.poolingGrid) ** 2 * self.getOrDefault(self.k)
        return n // 2 if self.getOrDefault(self.flipInvariant) else n



class PatchFeatures(Estimator, _PatchParams, DefaultParamsReadable, ParamsWritable):
    """Learn a dictionary of image patches; its model encodes images as pooled patch activations.

    ``fit`` samples ``numPatches`` patches inside Spark tasks (a fraction of the images, a few
    random windows each), normalises their brightness and contrast, computes a ZCA whitening
    from their mean and covariance (summed across partitions), and learns ``k``/2 centroids
    by k-means (Lloyd's algorithm, each step one Spark pass over the cached patch sample with
    matrix products in numpy); the other half of the dictionary is their mirror images.
    ``dictionary='random'`` uses whitened random patches instead of k-means. Only the
    sample's sums and the centroids reach the driver.

    Examples
    --------
    >>> from sparkvision.data.sources.synthetic import synthetic_images
    >>> labels, planes = synthetic_images(8, seed=1)
    >>> pixels = planes.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # the table's height × width × RGB
    >>> df = spark.createDataFrame([(im.tobytes(),) for im in pixels], ["data"])
    >>> model = PatchFeatures(k=8, numPatches=500, maxIter=2).fit(df)
    >>> model.numFeatures(), len(model.transform(df).head().features)
    (16, 16)
    """

    @keyword_only
    def __init__(self, *, inputCol: str = "data", outputCol: str = "features", k: int = DEFAULT_CENTROIDS, patchSize: int = PATCH_SIZE,
                 stride: int = 1, poolingGrid: int = 2, encoder: str = "triangle", alpha: float = 0.25,
                 whiteningEps: float = 0.1, dictionary: str = "kmeans", numPatches: int = 200_000,
                 maxIter: int = 10, flipInvariant: bool = True, power: float = 0.5, imageHeight: int = 32,
                 imageWidth: int = 32, imageChannels: int = 3, seed: int = 42) -> None:
        super().__init__()
        self._setDefault(**self._DEFAULTS)
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, inputCol: str = "data", outputCol: str = "features", k: int = DEFAULT_CENTROIDS, patchSize: int = PATCH_SIZE,
                  stride: int = 1, poolingGrid: int = 2, encoder: str = "triangle", alpha: float = 0.25,
                  whiteningEps: float = 0.1, dictionary: str = "kmeans", numPatches: int = 200_000,
                  maxIter: int = 10, flipInvariant: bool = True, power: float = 0.5, imageHeight: int = 32,
                  imageWidth: int = 32, imageChannels: int = 3, seed: int = 42) -> "PatchFeatures":
        """Set this stage's parameters; returns the stage."""
        return self._set(**self._input_kwargs)

    def setK(self, value: int) -> "PatchFeatures":
        return self._set(k=value)

    def getK(self) -> int:
        return self.getOrDefault(self.k)

    def _fit(self, dataset: DataFrame) -> "PatchFeaturesModel":
        self._check()
        param = self.getOrDefault
        shape, size, seed = self._shape(), param(self.patchSize), param(self.seed)
        order = patch_math.mirror_order(size, shape[2])
        total = dataset.count()
        if total == 0:
            raise ValueError("PatchFeatures cannot fit on an empty dataset")
        per_image = 8
        fraction = min(1.0, param(self.numPatches) / (per_image * total))
        column = param(self.inputCol)

        def sample(batches):  # runs in the tasks: a few random normalised patches per sampled image
            from pyspark import TaskContext

            rng = np.random.default_rng([seed, TaskContext.get().partitionId()])
            for batch in batches:
                images = image_array(batch.column(0), shape)
                sampled = images[rng.random(len(images)) < fraction]
                if not len(sampled):
                    continue
                n = len(sampled) * per_image
                ys = rng.integers(0, shape[0] - size + 1, n)
                xs = rng.integers(0, shape[1] - size + 1, n)
                which = np.repeat(np.arange(len(sampled)), per_image)
                rows = np.arange(size)[None, :, None]
                cols = np.arange(size)[None, None, :]
                patches = sampled[which[:, None, None], ys[:, None, None] + rows, xs[:, None, None] + cols]
                patches = patch_math.normalise(patches.transpose(0, 3, 1, 2).reshape(n, -1).astype(np.float32))
                yield pa.RecordBatch.from_arrays([pa.array([to_npy(patches)], pa.binary())], ["patches"])

        blocks = dataset.select(column).mapInArrow(sample, "patches binary").persist(StorageLevel.MEMORY_AND_DISK)
        try:
            mean, cov = self._moments(blocks, order)
            whiten = patch_math.whitening(mean, cov, param(self.whiteningEps), order)
            centroids = self._dictionary(blocks, mean, whiten, order)
        finally:
            blocks.unpersist()
        model = PatchFeaturesModel()
        self._copyValues(model)
        model._set_arrays({"centroids": patch_math.with_mirrors(centroids, order), "mean": mean, "whiten": whiten})
        return model

    @staticmethod
    def _moments(blocks: DataFrame, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        def partial(batches):
            n, s, ss = 0, 0.0, 0.0
            for batch in batches:
                for blob in batch.column(0).to_pylist():
                    p = from_npy(blob).astype(np.float64)
                    p = np.concatenate([p, p[:, order]])  # the sample with every patch's mirror
                    n, s, ss = n + len(p), s + p.sum(axis=0), ss + p.T @ p
            if n:
                yield pa.RecordBatch.from_arrays([pa.array([to_npy(np.asarray(s))], pa.binary()),
                                                  pa.array([to_npy(np.asarray(ss))], pa.binary()), pa.array([n])],
                                                 ["s", "ss", "n"])

        n, s, ss = 0, 0.0, 0.0
        for row in blocks.mapInArrow(partial, "s binary, ss binary, n long").collect():  # one small row per partition
            n, s, ss = n + row.n, s + from_npy(row.s), ss + from_npy(row.ss)
        if n < 2:
            raise ValueError("PatchFeatures sampled fewer than 2 patches: give it more images or a larger numPatches")
        mean = s / n
        cov = (ss - n * np.outer(mean, mean)) / (n - 1)
        return patch_math.symmetric_mean(mean, order), cov

    def _dictionary(self, blocks: DataFrame, mean: np.ndarray, whiten: np.ndarray, order: np.ndarray) -> np.ndarray:
        param = self.getOrDefault
        half = param(self.k) // 2
        bias = -(mean @ whiten)

        def whitened(blob: bytes) -> np.ndarray:
            p = from_npy(blob)
            p = np.concatenate([p, p[:, order]]) @ whiten
            p += bias
            return p

        # Initial centroids: the first patches of the first blocks (each block is a random sample).
        start, taken = [], 0
        for row in blocks.toLocalIterator():
            start.append(whitened(row.patches)[:half - taken])
            taken += len(start[-1])
            if taken >= half:
                break
        centroids = np.concatenate(start).astype(np.float32)
        if len(centroids) < half:
            raise ValueError(f"PatchFeatures sampled {len(centroids)} patches, fewer than k/2 = {half} centroids: "
                             "raise numPatches or lower k")
        if param(self.dictionary) == "random":
            return centroids
        rng = np.random.default_rng(param(self.seed))
        spark = blocks.sparkSession
        for _ in range(param(self.maxIter)):
            # A Connect client has no SparkContext to broadcast with: the centroids (k × 108
            # floats) then travel inside the function itself.
            shared = _Shared(centroids) if is_connect(spark) else spark.sparkContext.broadcast(centroids)

            def step(batches, shared=shared):
                sums, counts = 0.0, 0
                for batch in batches:
                    for blob in batch.column(0).to_pylist():
                        s, c, _ = patch_math.assign(whitened(blob), shared.value)  # the cost: for benchmarks
                        sums, counts = sums + s, counts + c
                yield pa.RecordBatch.from_arrays([pa.array([to_npy(np.asarray(sums))], pa.binary()),
                                                  pa.array([to_npy(np.asarray(counts))], pa.binary())],
                                                 ["sums", "counts"])

            sums, counts = 0.0, 0
            for row in blocks.mapInArrow(step, "sums binary, counts binary").collect():  # k × D per partition
                if np.ndim(from_npy(row.sums)):
                    sums, counts = sums + from_npy(row.sums), counts + from_npy(row.counts)
            shared.unpersist()
            empty = counts == 0
            # An empty cluster restarts at a random earlier centroid plus noise, so k stays k.
            fresh = centroids[rng.integers(0, half, int(empty.sum()))] + rng.normal(0, 0.1, (int(empty.sum()), centroids.shape[1]))
            centroids = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
            centroids[empty] = fresh
        return centroids



class PatchFeaturesModel(Model, _PatchParams, ArraysReadWrite):
    """Encode images with a learned patch dictionary (see :class:`PatchFeatures`).

    Each Arrow batch of images becomes one matrix product per image plus one fused pass over
    the window × centroid distances (``patch_math.PatchEncoder``). The output is a
    ``DenseVector`` of ``numFeatures()`` values. The centroids, mean and whitening matrix are
    saved with the model.
    """

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(**self._DEFAULTS)
        self._arrays: dict[str, np.ndarray] = {}

    @property
    def centroids(self) -> np.ndarray:
        """The dictionary in whitened space (k × patch values): learned centroids, then their mirrors."""
        return self._arrays["centroids"]

    def _encoder_and_pairs(self) -> tuple[patch_math.PatchEncoder, tuple[np.ndarray, np.ndarray] | None]:
        return patch_math.encoder_from(self._arrays, {p.name: self.getOrDefault(p) for p in (
            self.patchSize, self.stride, self.poolingGrid, self.imageHeight, self.imageWidth, self.encoder,
            self.alpha, self.flipInvariant)})

    def patch_encoder(self) -> patch_math.PatchEncoder:
        """The numpy encoder this model applies to every batch of images."""
        return self._encoder_and_pairs()[0]

    def _transform(self, dataset: DataFrame) -> DataFrame:
        self._check()
        if not self._arrays:
            raise ValueError("PatchFeaturesModel has no centroids: fit PatchFeatures or load a saved model")
        shape, power = self._shape(), self.getOrDefault(self.power)
        # Built once here and shipped with the UDF: the pooling table and extended filters are
        # not recomputed for every Arrow batch.
        enc, pairs = self._encoder_and_pairs()

        def encode(data: pa.Array) -> pa.Array:
            from threadpoolctl import threadpool_limits

            images = image_array(data, shape)
            with threadpool_limits(1):  # one task per core already: BLAS threads would oversubscribe
                features = patch_features(enc, images, pairs, power)
            width = features.shape[1]
            return list_array(np.arange(0, (len(features) + 1) * width, width), features.ravel())

        udf = F.arrow_udf(encode, ArrayType(FloatType(), False))
        return dataset.withColumn(self.getOutputCol(), array_to_vector(udf(F.col(self.getInputCol()))))
