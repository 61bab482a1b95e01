"""Feature stages: pyspark.ml Transformers that turn image bytes into feature vectors.

Both stages run as Arrow UDFs: a whole Arrow batch of images is one numpy operation, with no
PNG round trip and no Python object per pixel. They are ordinary pyspark.ml stages, so they
sit in a Pipeline and save and load with it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.functions import array_to_vector
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, BinaryType, DoubleType

from sparkvision.arrow_bytes import binary_parts, binary_array


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """Gray levels of interleaved RGB bytes, exactly as Pillow's ``Image.convert('L')`` computes them.

    Pillow uses the ITU-R 601-2 luma weights in 16-bit fixed point, rounded: (R·19595 +
    G·38470 + B·7471 + 2¹⁵) >> 16.
    """
    px = rgb.reshape(-1, 3).astype(np.uint32)
    return ((px[:, 0] * 19595 + px[:, 1] * 38470 + px[:, 2] * 7471 + 0x8000) >> 16).astype(np.uint8)


def _gray_batch(data: pa.Array) -> pa.Array:
    offsets, values = binary_parts(data)
    if (offsets % 3).any():
        raise ValueError("Grayscale needs RGB bytes (a multiple of 3 per image)")
    # Rows are contiguous and each a multiple of 3 long, so pixel triples never straddle rows.
    return binary_array(offsets // 3, rgb_to_gray(values))


_gray_udf = F.arrow_udf(_gray_batch, BinaryType())


class Grayscale(Transformer, HasInputCol, HasOutputCol, DefaultParamsReadable, DefaultParamsWritable):
    """Convert RGB image bytes (height × width × RGB) to one gray byte per pixel.

    Bit-for-bit what Pillow's ``Image.convert('L')`` gives, computed on whole Arrow batches.

    Examples
    --------
    >>> df = spark.createDataFrame([(bytes([255, 0, 0, 0, 255, 0]),)], ["data"])
    >>> list(Grayscale().transform(df).head().gray)
    [76, 150]
    """

    @keyword_only
    def __init__(self, *, inputCol: str = "data", outputCol: str = "gray") -> None:
        super().__init__()
        self._setDefault(inputCol="data", outputCol="gray")
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, inputCol: str = "data", outputCol: str = "gray") -> "Grayscale":
        """Set this stage's parameters; returns the stage."""
        return self._set(**self._input_kwargs)

    def setInputCol(self, value: str) -> "Grayscale":
        return self._set(inputCol=value)

    def setOutputCol(self, value: str) -> "Grayscale":
        return self._set(outputCol=value)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        return dataset.withColumn(self.getOutputCol(), _gray_udf(F.col(self.getInputCol())))


def _scaled_batch(data: pa.Array, max_value: float) -> pa.Array:
    offsets, values = binary_parts(data)
    scaled = values / np.float64(max_value)  # a division, as pixel/255 is: bit-identical values
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(scaled))


class PixelVectorizer(Transformer, HasInputCol, HasOutputCol, DefaultParamsReadable, DefaultParamsWritable):
    """Turn image bytes (gray or RGB) into a ``DenseVector`` of pixel values / ``maxValue``.

    The default, 255, maps bytes to [0, 1] as the assignment does. Bytes become a
    double array in one Arrow batch operation; Spark's ``array_to_vector`` makes the vector.

    Examples
    --------
    >>> df = spark.createDataFrame([(bytes([0, 51, 255]),)], ["gray"])
    >>> PixelVectorizer().transform(df).head().features
    DenseVector([0.0, 0.2, 1.0])
    """

    maxValue = Param(Params._dummy(), "maxValue", "each byte is divided by this (255 maps to [0, 1])",
                     typeConverter=TypeConverters.toFloat)

    @keyword_only
    def __init__(self, *, inputCol: str = "gray", outputCol: str = "features", maxValue: float = 255.0) -> None:
        super().__init__()
        self._setDefault(inputCol="gray", outputCol="features", maxValue=255.0)
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, inputCol: str = "gray", outputCol: str = "features",
                  maxValue: float = 255.0) -> "PixelVectorizer":
        """Set this stage's parameters; returns the stage."""
        return self._set(**self._input_kwargs)

    def setInputCol(self, value: str) -> "PixelVectorizer":
        return self._set(inputCol=value)

    def setOutputCol(self, value: str) -> "PixelVectorizer":
        return self._set(outputCol=value)

    def setMaxValue(self, value: float) -> "PixelVectorizer":
        return self._set(maxValue=value)

    def getMaxValue(self) -> float:
        return self.getOrDefault(self.maxValue)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        max_value = float(self.getMaxValue())
        if max_value <= 0:
            raise ValueError(f"PixelVectorizer.maxValue must be positive, not {max_value}")
        pixels = F.arrow_udf(lambda data: _scaled_batch(data, max_value), ArrayType(DoubleType(), False))
        return dataset.withColumn(self.getOutputCol(), array_to_vector(pixels(F.col(self.getInputCol()))))


def feature_size(features: str, info) -> int:
    """How many values a feature set gives per image of the table described by ``info``."""
    per_pixel = {"gray": 1, "rgb": info.channels}
    if features not in per_pixel:
        raise ValueError(f"unknown feature set {features!r}: choose gray or rgb")
    return info.height * info.width * per_pixel[features]


def feature_stages(features: str) -> list[Transformer]:
    """The stages that turn the table's ``data`` column into ``features`` for a named feature set.

    ``gray``: Grayscale then PixelVectorizer (1,024 values for 32×32); ``rgb``: all three
    channels (3,072 values).
    """
    if features == "gray":
        return [Grayscale(inputCol="data", outputCol="gray"),
                PixelVectorizer(inputCol="gray", outputCol="features")]
    if features == "rgb":
        return [PixelVectorizer(inputCol="data", outputCol="features")]
    raise ValueError(f"unknown feature set {features!r}: choose gray or rgb")
