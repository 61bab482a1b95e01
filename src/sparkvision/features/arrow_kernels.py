"""The Arrow-batch bodies of the feature stages' UDFs: image bytes in, gray bytes or pixel vectors out.

Kept apart from :mod:`sparkvision.features.pixels` (which imports pyspark.ml): a Python worker
imports the module a UDF's function lives in, and pyspark.ml with its dependencies costs about
0.9 s per worker, paid inside the first task of every run. This module imports only numpy,
pyarrow, :mod:`sparkvision.runtime.arrow` and :mod:`sparkvision.features.kernels`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from sparkvision.features.kernels import rgb_to_gray, scale_pixels
from sparkvision.runtime.arrow import binary_array, binary_parts, dense_vector_array, list_array


def gray_batch(data: pa.Array) -> pa.Array:
    """Grayscale's UDF body: RGB image bytes → gray bytes (Pillow's ``convert('L')``), per Arrow batch."""
    offsets, values = binary_parts(data)
    if (offsets % 3).any():
        raise ValueError("Grayscale needs RGB bytes (a multiple of 3 per image)")
    # Rows are contiguous and each a multiple of 3 long, so pixel triples never straddle rows.
    return binary_array(offsets // 3, rgb_to_gray(values))



def scaled_batch(data: pa.Array, max_value: float) -> pa.Array:
    """PixelVectorizer's UDF body: image bytes → list<double> of byte / ``max_value``, per Arrow batch."""
    offsets, values = binary_parts(data)
    return list_array(offsets, scale_pixels(values, max_value))



def vector_batch(data: pa.Array, max_value: float) -> pa.Array:
    """PixelVectorizer's UDF body where Spark takes vectors from Python: image bytes → ``DenseVector``
    structs of byte / ``max_value`` (see :func:`dense_vector_array`)."""
    offsets, values = binary_parts(data)
    return dense_vector_array(offsets, scale_pixels(values, max_value))



def image_array(data: pa.Array, shape: tuple[int, int, int]) -> np.ndarray:
    """A binary column of equal-size images as a (n, height, width, channels) uint8 array, no copy."""
    offsets, values = binary_parts(data)
    size = shape[0] * shape[1] * shape[2]
    if (np.diff(offsets) != size).any():
        bad = int(np.flatnonzero(np.diff(offsets) != size)[0])
        raise ValueError(f"PatchFeatures expects {shape[0]}×{shape[1]}×{shape[2]} images ({size} bytes); "
                         f"a row has {int(np.diff(offsets)[bad])} bytes. Set imageHeight/imageWidth/imageChannels.")
    return values.reshape(-1, *shape)
