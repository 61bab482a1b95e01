"""Saving sparkvision's stages, and the Pipelines that hold them, in pyspark.ml's layout.

The Params go to ``metadata/`` as the JSON :class:`DefaultParamsWriter` writes; a fitted stage's
numpy arrays (centroids, weights) go to ``data/`` as one Parquet row holding an ``.npz`` blob.
Everything loads back with ``PipelineModel.load``, on any Hadoop path (local, HDFS, S3).

Metadata is one line of JSON, and pyspark.ml writes each with a Spark job (a one-row DataFrame
written as text): about 0.15-0.3 s apiece, three of them for the default model, half its save
time. On the local file system (a ``file:`` path, or no scheme while Hadoop's default file system
is local) :func:`save_metadata` writes the same file directly; elsewhere it leaves it to Spark.
"""

from __future__ import annotations

import io
import os
from urllib.parse import urlparse

import numpy as np
from pyspark.ml.util import DefaultParamsReader, DefaultParamsWritable, DefaultParamsWriter, MLReadable, MLWritable

from sparkvision.runtime.connect import is_connect


def is_local_path(path: str, default_fs: str = "file:///") -> bool:
    """True when Hadoop would resolve ``path`` on the local file system (``default_fs``: its
    ``fs.defaultFS``, used for paths without a scheme)."""
    scheme = urlparse(str(path)).scheme
    if not scheme or len(scheme) == 1:  # no scheme (or a Windows drive letter): the default file system's
        scheme = urlparse(default_fs).scheme or "file"
    return scheme == "file"


def _local_file_path(path: str) -> str:
    parsed = urlparse(str(path))
    return parsed.path if parsed.scheme == "file" else str(path)


def save_metadata(instance, path: str, spark, extra_metadata: dict | None = None,
                  param_map: dict | None = None) -> None:
    """``DefaultParamsWriter.saveMetadata``: the same JSON in ``path/metadata``, written directly
    (``part-00000`` and ``_SUCCESS``, as Spark's text writer leaves them) when ``path`` is local."""
    if is_connect(spark):  # the server writes it (its file system may not be this machine's)
        DefaultParamsWriter.saveMetadata(instance, path, spark, extra_metadata, param_map)
        return
    default_fs = spark.sparkContext._jsc.hadoopConfiguration().get("fs.defaultFS") or "file:///"
    if not is_local_path(path, default_fs):
        DefaultParamsWriter.saveMetadata(instance, path, spark, extra_metadata, param_map)
        return
    text = DefaultParamsWriter._get_metadata_to_save(instance, spark, extra_metadata, param_map)
    folder = os.path.join(_local_file_path(path), "metadata")
    os.makedirs(folder)  # like Spark's writer: an existing folder is an error, not overwritten
    with open(os.path.join(folder, "part-00000"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    open(os.path.join(folder, "_SUCCESS"), "w").close()


def save_pipeline_model(model, path: str, spark=None) -> None:
    """Save a ``PipelineModel`` as ``model.write().save(path)`` does for one with Python stages
    (``language: Python``, stages in ``stages/IDX_UID``), its own metadata by :func:`save_metadata`.
    ``spark``: the session to save with (default: the active one)."""
    from pyspark.ml.pipeline import PipelineSharedReadWrite
    from pyspark.sql import SparkSession

    spark = spark or SparkSession.active()
    stages = model.stages
    PipelineSharedReadWrite.validateStages(stages)
    if PipelineSharedReadWrite.checkStagesForJava(stages):  # all Java: pyspark hands the whole save to the JVM
        model.write().session(spark).save(path)
        return
    save_metadata(model, path, spark, param_map={"stageUids": [s.uid for s in stages], "language": "Python"})
    stages_dir = os.path.join(path, "stages")
    for index, stage in enumerate(stages):
        stage.write().session(spark).save(PipelineSharedReadWrite.getStagePath(stage.uid, index, len(stages),
                                                                                 stages_dir))


class ParamsWriter(DefaultParamsWriter):
    """:class:`DefaultParamsWriter` whose metadata goes through :func:`save_metadata`."""

    def saveImpl(self, path: str) -> None:
        save_metadata(self.instance, path, self.sparkSession)


class ParamsWritable(DefaultParamsWritable):
    """:class:`DefaultParamsWritable` for stages whose state is their Params; saves with :class:`ParamsWriter`."""

    def write(self) -> ParamsWriter:
        """An MLWriter that saves the Params."""
        return ParamsWriter(self)


class _ArraysWriter(ParamsWriter):
    def saveImpl(self, path: str) -> None:
        super().saveImpl(path)
        blob = io.BytesIO()
        np.savez(blob, **self.instance._get_arrays())
        frame = self.sparkSession.createDataFrame([(bytearray(blob.getvalue()),)], "arrays binary")
        frame.coalesce(1).write.parquet(path.rstrip("/") + "/data")


class _ArraysReader(DefaultParamsReader):
    def load(self, path: str):
        instance = super().load(path)
        row = self.sparkSession.read.parquet(path.rstrip("/") + "/data").head()
        with np.load(io.BytesIO(row.arrays)) as arrays:
            instance._set_arrays({name: arrays[name] for name in arrays.files})
        return instance


class ArraysReadWrite(MLReadable, MLWritable):
    """Mixin for fitted models: Params plus the named arrays in ``self._arrays``, saved and loaded.

    ``_array_dtype`` is the dtype arrays are kept in.
    """

    _array_dtype = np.float32

    def _get_arrays(self) -> dict[str, np.ndarray]:
        return dict(getattr(self, "_arrays", {}))

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self._arrays = {name: np.asarray(a, dtype=self._array_dtype) for name, a in arrays.items()}

    def write(self) -> _ArraysWriter:
        """An MLWriter that saves the Params and the arrays."""
        return _ArraysWriter(self)

    @classmethod
    def read(cls) -> _ArraysReader:
        """An MLReader that loads what :meth:`write` saved."""
        return _ArraysReader(cls)
