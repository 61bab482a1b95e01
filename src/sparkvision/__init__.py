"""sparkvision: image classification on Apache Spark.

The first job is CIFAR-10: read the release's batches inside Spark tasks into a Parquet image
table, turn pixels into features with vectorised pyspark.ml stages, and fit an MLlib classifier
in a Pipeline. ``sparkvision run`` does it end to end; see README.md.
"""

__version__ = "0.1.0"
