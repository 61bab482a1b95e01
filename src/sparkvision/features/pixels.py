"""Pixel stages: pyspark.ml Transformers that turn image bytes into gray bytes and pixel vectors.

Both stages run as Arrow UDFs: a whole Arrow batch of images is one numpy operation, with no
PNG round trip and no Python object per pixel. They are ordinary pyspark.ml stages, so they
sit in a Pipeline and save and load with it.
"""

from __future__ import annotations

from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.functions import array_to_vector
from pyspark.ml.linalg import VectorUDT
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, BinaryType, DoubleType
from pyspark.sql.utils import is_remote

from sparkvision.features.arrow_kernels import gray_batch, scaled_batch, vector_batch
from sparkvision.runtime.session import COLUMNAR_INPUT
from sparkvision.runtime.stage_io import ParamsWritable

# The UDF bodies live in arrow_kernels, not here, so the Python workers do not import pyspark.ml.
_gray_udf = F.arrow_udf(gray_batch, BinaryType())


class Grayscale(Transformer, HasInputCol, HasOutputCol, DefaultParamsReadable, ParamsWritable):
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
        # A UDF made at import is a classic session's; a Connect client makes its own.
        udf = F.arrow_udf(gray_batch, BinaryType()) if is_remote() else _gray_udf
        return dataset.withColumn(self.getOutputCol(), udf(F.col(self.getInputCol())))


class PixelVectorizer(Transformer, HasInputCol, HasOutputCol, DefaultParamsReadable, ParamsWritable):
    """Turn image bytes (gray or RGB) into a ``DenseVector`` of pixel values / ``maxValue``.

    The default, 255, maps bytes to [0, 1] as the assignment does. Bytes become doubles in one
    Arrow batch operation, handed to Spark as vectors already (:func:`vectors_from_python`), or
    else as double arrays that Spark's ``array_to_vector`` turns into vectors.

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
        pixels = F.col(self.getInputCol())
        if vectors_from_python(dataset):
            return dataset.withColumn(self.getOutputCol(), _pixel_vector_udf(max_value)(pixels))
        return dataset.withColumn(self.getOutputCol(), array_to_vector(_pixel_udf(max_value)(pixels)))


def vectors_from_python(dataset: DataFrame) -> bool:
    """Whether an Arrow UDF may return ``VectorUDT`` values in ``dataset``'s session.

    Returning vectors saves the JVM ``array_to_vector``'s work: it is a Scala UDF over
    ``Seq[Double]`` that boxes every value (1,024 per image here), a third of the features'
    cost in the JVM. Where the session's columnar UDF input is on, the array path is used.
    """
    return dataset.sparkSession.conf.get(COLUMNAR_INPUT, "true").strip().lower() == "false"


def _pixel_udf(max_value: float):
    """PixelVectorizer's Arrow UDF (its body, like Grayscale's, comes from the light arrow_kernels module)."""
    return F.arrow_udf(lambda data: scaled_batch(data, max_value), ArrayType(DoubleType(), False))


def _pixel_vector_udf(max_value: float):
    """PixelVectorizer's Arrow UDF returning vectors (:func:`vectors_from_python`)."""
    return F.arrow_udf(lambda data: vector_batch(data, max_value), VectorUDT())
