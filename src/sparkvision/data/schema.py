"""The image table's schema: one row per image, as Spark's own image schema names its fields.

``height``, ``width``, ``nChannels``, ``data``, ``origin`` as ``spark.read.format("image")`` gives
them, with one difference on purpose: ``data`` holds **RGB** bytes (Spark's reader gives BGR),
row-major height × width × channels. The sources build rows of this schema inside Spark tasks.
"""

from __future__ import annotations

import pyarrow as pa
from pyspark.sql.types import BinaryType, IntegerType, StringType, StructField, StructType


TABLE_VERSION = 1  # bump when the schema or its meaning changes: old tables are then not reused



TABLE_SCHEMA = StructType([
    StructField("id", StringType(), False),         # stable: "<batch file>:<index>"
    StructField("label", IntegerType(), False),
    StructField("split", StringType(), False),      # "train" or "test", as the source says
    StructField("height", IntegerType(), False),
    StructField("width", IntegerType(), False),
    StructField("nChannels", IntegerType(), False),
    StructField("data", BinaryType(), False),       # uint8, height × width × RGB, row-major
    StructField("origin", StringType(), False),     # the file the image came from
])



TABLE_ARROW_SCHEMA = pa.schema([
    ("id", pa.string()), ("label", pa.int32()), ("split", pa.string()), ("height", pa.int32()),
    ("width", pa.int32()), ("nChannels", pa.int32()), ("data", pa.binary()), ("origin", pa.string()),
])
