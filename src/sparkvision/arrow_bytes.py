"""Binary Arrow columns as numpy bytes and back, without copies.

Kept apart from ``features`` so that Python workers which only read batch files (ingestion)
do not import pyspark.ml.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def binary_parts(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets relative to the first value, the values as uint8) of a binary Arrow array, no copy."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.null_count:
        raise ValueError("image bytes are null in some rows; drop or fill them before this stage")
    width = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=width)[arr.offset: arr.offset + len(arr) + 1]
    values = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0]: offsets[-1]] if len(arr) else np.empty(0, np.uint8)
    return (offsets - offsets[0]).astype(np.int64), values


def binary_array(offsets: np.ndarray, values: np.ndarray) -> pa.Array:
    """A binary Arrow array over ``values`` (contiguous bytes) cut at ``offsets`` (n + 1 of them), no copy."""
    return pa.Array.from_buffers(pa.binary(), len(offsets) - 1,
                                 [None, pa.py_buffer(np.asarray(offsets, dtype=np.int32)), pa.py_buffer(values)])
