"""The stages each named feature set (``gray``, ``rgb``, ``patches[:K]``) stands for, and its size."""

from __future__ import annotations

from sparkvision.features.names import parse_feature_set
from sparkvision.features.pixels import Grayscale, PixelVectorizer


def _patch_features():
    # Imported when a patch feature set is asked for: its numerics load numba (0.4 s), which
    # a gray or RGB run does not need.
    from sparkvision.features.patches import PatchFeatures

    return PatchFeatures


def feature_size(features: str, info) -> int:
    """How many values a feature set gives per image of the table described by ``info``."""
    kind, k = parse_feature_set(features)
    if kind == "patches":
        return _patch_features()(k=k).numFeatures()
    return info.height * info.width * (1 if kind == "gray" else info.channels)


def feature_stages(features: str, *, shape: tuple[int, int, int] = (32, 32, 3), seed: int = 42) -> list:
    """The stages that turn the table's ``data`` column into ``features`` for a named feature set.

    ``gray``: Grayscale then PixelVectorizer (1,024 values for 32×32); ``rgb``: all three
    channels (3,072 values); ``patches`` or ``patches:K``: learned patch features with K
    centroids (default 1,600; 2K flip-invariant values), an Estimator fitted with the Pipeline.
    ``shape`` is the images' (height, width, channels).
    """
    kind, k = parse_feature_set(features)
    if kind == "gray":
        return [Grayscale(inputCol="data", outputCol="gray"),
                PixelVectorizer(inputCol="gray", outputCol="features")]
    if kind == "rgb":
        return [PixelVectorizer(inputCol="data", outputCol="features")]
    return [_patch_features()(inputCol="data", outputCol="features", k=k, seed=seed, imageHeight=shape[0],
                          imageWidth=shape[1], imageChannels=shape[2])]
