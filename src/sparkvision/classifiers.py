"""Named MLlib classifiers with sensible defaults.

``build_classifier("random_forest", numTrees=10, maxDepth=5)`` returns a configured estimator
reading ``features`` and ``label``. The defaults of ``random_forest`` are the assignment's.
"""

from __future__ import annotations

from typing import Any, Callable

from pyspark.ml.classification import RandomForestClassifier


def _random_forest(**params: Any) -> RandomForestClassifier:
    return RandomForestClassifier(**{"numTrees": 10, "maxDepth": 5, **params})


CLASSIFIERS: dict[str, Callable[..., Any]] = {
    "random_forest": _random_forest,
}


def build_classifier(name: str, *, featuresCol: str = "features", labelCol: str = "label",
                     seed: int | None = None, **params: Any):
    """A configured MLlib estimator by name; ``params`` are its Params (camelCase)."""
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown model {name!r}: choose one of {', '.join(sorted(CLASSIFIERS))}")
    est = CLASSIFIERS[name](featuresCol=featuresCol, labelCol=labelCol, **params)
    if seed is not None and est.hasParam("seed"):
        est.setSeed(seed)
    return est
