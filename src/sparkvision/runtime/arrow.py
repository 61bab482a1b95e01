"""Arrow columns as numpy arrays and back, without copies.

Kept free of pyspark.ml: a Python worker imports the module a UDF's function lives in, and
pyspark.ml with its dependencies costs about 0.9 s per worker, paid inside the first task of
every run. This module imports only numpy and pyarrow.
"""

from __future__ import annotations

from typing import Sequence

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


def bytes_array(items: Sequence[bytes | str | None], kind: pa.DataType = pa.binary()) -> pa.Array:
    """A binary or string Arrow array of Python values (``None`` is null), built from buffers.

    ``pa.array`` would do the same, but its first call in a process imports pandas (0.4 s in
    every Python worker, inside a run's first task) to look for pandas objects.
    """
    encoded = [b"" if x is None else x.encode() if isinstance(x, str) else bytes(x) for x in items]
    ends = np.cumsum([len(b) for b in encoded], dtype=np.int64)
    if len(ends) and ends[-1] > np.iinfo(np.int32).max:  # past 32-bit offsets: let pyarrow chunk or refuse it
        return pa.array(list(items), kind)
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    offsets[1:] = ends
    nulls = np.fromiter((x is None for x in items), dtype=bool, count=len(items))
    validity = pa.py_buffer(np.packbits(~nulls, bitorder="little")) if nulls.any() else None
    return pa.Array.from_buffers(kind, len(encoded), [validity, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))],
                                 null_count=int(nulls.sum()))


def int32_array(values: Sequence[int] | np.ndarray) -> pa.Array:
    """An int32 Arrow array of integers, built from a buffer (see :func:`bytes_array` on pandas)."""
    v = np.ascontiguousarray(values, dtype=np.int32)
    return pa.Array.from_buffers(pa.int32(), len(v), [None, pa.py_buffer(v)])


def float_rows(arr: pa.Array) -> np.ndarray:
    """A list<float> Arrow column of equal-length rows as an (n, d) float32 matrix, no Python loop."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    values = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return values.reshape(len(arr), -1) if len(arr) else values.reshape(0, 0)


def list_array(offsets: np.ndarray, values: np.ndarray) -> pa.Array:
    """A list<float or double> Arrow array over a 1-d numpy array cut at ``offsets`` (n + 1), no copy.

    Built from buffers, not with ``pa.array``: that one imports pandas on first use to check
    for pandas objects (0.5 s in every Python worker).
    """
    child = float_array(values)
    return pa.Array.from_buffers(pa.list_(child.type), len(offsets) - 1,
                                 [None, pa.py_buffer(np.asarray(offsets, dtype=np.int32))], children=[child])


def float_array(values: np.ndarray) -> pa.Array:
    """A float or double Arrow array over a 1-d numpy array, no copy (and no pandas import, see :func:`list_array`)."""
    values = np.ascontiguousarray(values)
    kind = {np.dtype(np.float32): pa.float32(), np.dtype(np.float64): pa.float64()}[values.dtype]
    return pa.Array.from_buffers(kind, len(values), [None, pa.py_buffer(values)])


def dense_vector_array(offsets: np.ndarray, values: np.ndarray) -> pa.Array:
    """MLlib ``DenseVector`` structs (``VectorUDT``'s storage) over a 1-d float64 array cut at ``offsets``.

    An Arrow UDF declared to return ``VectorUDT()`` hands Spark these structs (type 1 = dense,
    values = the row's slice) and Spark stores them as vectors as they are. The alternative,
    returning list<double> and calling ``array_to_vector``, boxes every value in the JVM (that
    function is a Scala UDF over ``Seq[Double]``).
    """
    n = len(offsets) - 1
    kind = pa.Array.from_buffers(pa.int8(), n, [None, pa.py_buffer(np.ones(n, dtype=np.int8))])
    no_rows = pa.py_buffer(np.zeros((n + 7) // 8, dtype=np.uint8))  # validity bitmap: every row null
    size = pa.Array.from_buffers(pa.int32(), n, [no_rows, pa.py_buffer(np.zeros(n, dtype=np.int32))], null_count=n)
    indices = pa.Array.from_buffers(pa.list_(pa.int32()), n, [no_rows, pa.py_buffer(np.zeros(n + 1, dtype=np.int32))],
                                    null_count=n, children=[pa.Array.from_buffers(pa.int32(), 0, [None, pa.py_buffer(b"")])])
    return pa.StructArray.from_arrays([kind, size, indices, list_array(offsets, values)],
                                      names=["type", "size", "indices", "values"])
