"""sparkvision: image classification on Apache Spark.

The first job is CIFAR-10: read the release's batches inside Spark tasks into a Parquet image
table, turn pixels into features with vectorised pyspark.ml stages, and fit an MLlib classifier
in a Pipeline. ``sparkvision run`` does it end to end; see README.md.

The same pieces are a Python API (loaded on first use, so the command line starts fast):

>>> import sparkvision as sv
>>> sorted(sv.CLASSIFIERS)[:3]
['cnn', 'decision_tree', 'gbt']
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module it lives in; imported when first asked for (PEP 562)
_API = {
    "session": "sparkvision.api", "load_cifar10": "sparkvision.api", "load_folder": "sparkvision.api",
    "save_model": "sparkvision.api", "load_model": "sparkvision.api",
    "Grayscale": "sparkvision.features.pixels", "PixelVectorizer": "sparkvision.features.pixels",
    "feature_stages": "sparkvision.features.sets", "rgb_to_gray": "sparkvision.features.kernels",
    "PatchFeatures": "sparkvision.features.patches", "PatchFeaturesModel": "sparkvision.features.patches",
    "RidgeClassifier": "sparkvision.models.ridge.stage",
    "CNNClassifier": "sparkvision.models.cnn.stages", "CNNClassificationModel": "sparkvision.models.cnn.stages",
    "build_classifier": "sparkvision.models.registry", "CLASSIFIERS": "sparkvision.models.registry",
    "fit_pipeline": "sparkvision.models.fitting", "label_with_classes": "sparkvision.models.fitting",
    "split_table": "sparkvision.data.ingest", "evaluate": "sparkvision.evaluation",
    "predict": "sparkvision.inference.predict", "write_python_release": "sparkvision.data.sources.synthetic",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sparkvision' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
