"""Metrics agree with MLlib's evaluator and with scikit-learn's definitions."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml.evaluation import MulticlassClassificationEvaluator

from sparkvision.evaluation import evaluate


def test_metrics_match_mllib_and_sklearn(spark):
    from sklearn.metrics import confusion_matrix, f1_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 500)
    p = np.where(rng.random(500) < 0.6, y, rng.integers(0, 4, 500))
    df = spark.createDataFrame([(float(a), float(b)) for a, b in zip(y, p)], ["label", "prediction"])
    m = evaluate(df, ["a", "b", "c", "d"])
    acc = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(df)
    assert m["accuracy"] == pytest.approx(acc)
    assert m["f1_macro"] == pytest.approx(f1_score(y, p, average="macro"))
    assert m["confusion_matrix"] == confusion_matrix(y, p).tolist()
    assert m["per_class_accuracy"]["b"] == pytest.approx(np.mean(p[y == 1] == 1))
    assert m["num_evaluated"] == 500


def test_a_class_never_predicted_scores_zero_not_nan(spark):
    df = spark.createDataFrame([(0.0, 0.0), (1.0, 0.0), (2.0, 2.0)], ["label", "prediction"])
    m = evaluate(df, ["x", "y", "z"])
    assert m["per_class_accuracy"] == {"x": 1.0, "y": 0.0, "z": 1.0}
    assert m["f1_macro"] == pytest.approx((2 / 3 + 0 + 1) / 3)
