"""The numpy kernels of sparkvision's own stages, importable without pyspark.

The Spark stages (``features/pixels.py``, ``features/patches.py``, ``models/ridge/stage.py``) apply them to Arrow batches inside tasks; the
local engine of ``sparkvision predict`` (``inference/local.py``) applies them to arrays in the
driver, without starting Java. One implementation for both is what makes the two engines give
the same numbers. The patch features' numerics are in ``patch_math.py`` (also pyspark-free).
"""

from __future__ import annotations

import numpy as np


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """Gray levels of interleaved RGB bytes, exactly as Pillow's ``Image.convert('L')`` computes them.

    Pillow uses the ITU-R 601-2 luma weights in 16-bit fixed point, rounded: (R·19595 +
    G·38470 + B·7471 + 2¹⁵) >> 16.
    """
    px = rgb.reshape(-1, 3).astype(np.uint32)
    return ((px[:, 0] * 19595 + px[:, 1] * 38470 + px[:, 2] * 7471 + 0x8000) >> 16).astype(np.uint8)


def scale_pixels(values: np.ndarray, max_value: float) -> np.ndarray:
    """Pixel bytes as doubles divided by ``max_value`` (PixelVectorizer).

    A division, as pixel/255 is, not a product with 1/255: bit-identical to the assignment's values.
    """
    return values / np.float64(max_value)


def patch_features(encoder, images: np.ndarray, pairs: tuple[np.ndarray, np.ndarray] | None,
                   power: float) -> np.ndarray:
    """PatchFeaturesModel's output for (B, H, W, C) uint8 images: float32 (B, features).

    ``encoder`` is a :class:`patch_math.PatchEncoder`; ``pairs`` (from ``patch_math.fold_pairs``)
    adds each feature to its mirror partner, when the model is flip-invariant; then each value is
    raised to ``power``.
    """
    features = encoder.encode(images)
    if pairs is not None:
        features = features[:, pairs[0]] + features[:, pairs[1]]
    if power != 1.0:
        np.power(features, np.float32(power), out=features)
    return features


def ridge_scores(x: np.ndarray, coef: np.ndarray, bias: np.ndarray,
                 scale: float) -> tuple[np.ndarray, np.ndarray]:
    """RidgeClassifierModel's (raw scores, probabilities), both float64 (B, classes).

    Scores are ``x·W + b`` in float32 (``x``, ``coef`` and ``bias`` float32); probabilities are
    softmax(``scale`` × scores), computed in float64 from the largest score down.
    """
    raw = (x @ coef + bias).astype(np.float64)
    z = scale * (raw - raw.max(axis=1, keepdims=True))
    prob = np.exp(z)
    prob /= prob.sum(axis=1, keepdims=True)
    return raw, prob
