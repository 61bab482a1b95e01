"""numpy arrays as ``.npy`` bytes and back: how arrays travel through Arrow columns, Spark
results and saved models' ``data/`` folders. No pickles, and no pyspark import."""

from __future__ import annotations

import io

import numpy as np


def to_npy(array: np.ndarray) -> bytes:
    """An array as ``.npy`` bytes (to pass through Arrow columns and Spark results)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array))
    return buf.getvalue()



def from_npy(blob: bytes) -> np.ndarray:
    """The array of :func:`to_npy` bytes (no pickles: ``allow_pickle`` stays False)."""
    return np.load(io.BytesIO(blob))
