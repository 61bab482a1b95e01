"""Saving stages whose fitted state is numpy arrays (centroids, weights) inside a Pipeline.

The Params go to ``metadata/`` exactly as :class:`DefaultParamsWriter` writes them; the arrays go
to ``data/`` as one Parquet row holding an ``.npz`` blob. Both are written by Spark, so a model
saves to any Hadoop path (local, HDFS, S3) and loads back inside a ``PipelineModel``.
"""

from __future__ import annotations

import io

import numpy as np
from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter, MLReadable, MLWritable


class _ArraysWriter(DefaultParamsWriter):
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


def to_npy(array: np.ndarray) -> bytes:
    """An array as ``.npy`` bytes (to pass through Arrow columns and Spark results)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array))
    return buf.getvalue()


def from_npy(blob: bytes) -> np.ndarray:
    """The array of :func:`to_npy` bytes (no pickles: ``allow_pickle`` stays False)."""
    return np.load(io.BytesIO(blob))


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
