"""Metrics of a classifier's predictions: accuracy, macro F1, per-class accuracy, confusion matrix.

Everything is derived from one small aggregation (counts per (label, prediction) pair, at most
classes² rows), so evaluation is one pass over the predictions and no dataset reaches the driver.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from pyspark.sql import DataFrame


def confusion_matrix(predictions: DataFrame, num_classes: int, *, labelCol: str = "label",
                     predictionCol: str = "prediction") -> np.ndarray:
    """Counts ``cm[true, predicted]`` from a DataFrame of predictions, in one Spark job."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    pairs = predictions.groupBy(labelCol, predictionCol).count().collect()  # ≤ classes² rows
    for row in pairs:
        cm[int(row[0]), int(row[1])] += int(row[2])
    return cm


def metrics_from_confusion(cm: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro F1 and per-class accuracy (recall) from a confusion matrix."""
    total = cm.sum()
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)
    # macro F1: the unweighted mean over the classes that occur (MLlib's "f1" is weighted, not this)
    present = support > 0
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "f1_macro": float(f1[present].mean()) if present.any() else 0.0,
        # classes with no image evaluated have no accuracy: left out, not scored 0
        "per_class_accuracy": {name: float(r) for name, r, n in zip(class_names, recall, support) if n > 0},
        "confusion_matrix": cm.tolist(),
        "num_evaluated": int(total),
    }


def evaluate(predictions: DataFrame, class_names: Sequence[str], *, labelCol: str = "label",
             predictionCol: str = "prediction") -> dict[str, Any]:
    """All metrics for ``predictions`` (a DataFrame with label and prediction columns)."""
    cm = confusion_matrix(predictions, len(class_names), labelCol=labelCol, predictionCol=predictionCol)
    return metrics_from_confusion(cm, class_names)
