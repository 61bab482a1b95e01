"""Feature stages: pyspark.ml stages that turn the image table's bytes into feature vectors.

``pixels`` (Grayscale, PixelVectorizer), ``patches`` (learned patch features), ``names`` and
``sets`` (the named feature sets a run or an experiment asks for, and their stages).
``kernels``, ``patch_math`` and ``arrow_kernels`` are the numpy and Arrow code the stages run
per batch; the local inference engine runs the same code without Spark.

The stages are also attributes of this package, loaded on first use so that importing the
numpy kernels (in every Python worker, and in the local engine) does not import pyspark.ml.
Models saved before the package was split name their stages this way
(``sparkvision.features.Grayscale``), and pyspark.ml finds them here.
"""

from __future__ import annotations

import importlib
from typing import Any

_STAGES = {"Grayscale": "pixels", "PixelVectorizer": "pixels", "PatchFeatures": "patches",
           "PatchFeaturesModel": "patches"}


def __getattr__(name: str) -> Any:
    if name in _STAGES:
        return getattr(importlib.import_module(f"{__name__}.{_STAGES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
