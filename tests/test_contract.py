"""One contract for every stage and every named classifier, after scikit-learn's ``check_estimator``.

Each case is a factory (a stage built with its defaults, or as ``build_classifier`` builds it) and
the columns it reads. Every case is checked the same way:

- constructed with defaults, it has a default or a value for every Param, and ``copy`` gives an
  independent stage with the same Params and a new one for ``copy({param: value})``;
- fitted (an Estimator) or used as it is (a Transformer) inside a Pipeline on a tiny DataFrame;
- the fitted PipelineModel is saved and loaded, and the loaded one transforms the same rows to
  the same output;
- every Param set on the stage reads back after the round trip.

A new stage is checked by adding one line to ``CASES``.
"""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.functions import vector_to_array
from pyspark.ml.param import Params

from sparkvision.data.sources.synthetic import synthetic_images
from sparkvision.features.patches import PatchFeatures
from sparkvision.features.pixels import Grayscale, PixelVectorizer
from sparkvision.models.registry import CLASSIFIERS, build_classifier
from sparkvision.models.ridge.stage import RidgeClassifier
from sparkvision.runtime.stage_io import save_pipeline_model

N_IMAGES = 60
N_CLASSES = 4  # few: the one-vs-rest wrappers fit a model per class
GRAY = [Grayscale(inputCol="data", outputCol="gray"), PixelVectorizer(inputCol="gray", outputCol="features")]


def _tiny_patches():
    return PatchFeatures(inputCol="data", outputCol="features", k=8, numPatches=2000, maxIter=2)


def _classifier(name: str):
    if name == "cnn":
        pytest.importorskip("torch")
        return build_classifier("cnn", seed=1, epochs=1.0, widths=[8, 16, 16], batchSize=32, tta=False,
                                numProcesses=1)
    # A few iterations: the contract is about Params, persistence and columns, not accuracy (the
    # one-vs-rest wrappers fit one model per class, each iteration a Spark job).
    few = {"gbt": {"maxIter": 1, "maxDepth": 2}, "linear_svc": {"maxIter": 1}}.get(name, {})
    return build_classifier(name, seed=1, num_features=1024, num_classes=N_CLASSES, **few)


# (id, factory of the stage under test, stages before it, the column whose values are compared)
CASES = [
    ("Grayscale", lambda: Grayscale(inputCol="data", outputCol="gray"), [], "gray"),
    ("PixelVectorizer", lambda: PixelVectorizer(inputCol="data", outputCol="features"), [], "features"),
    ("PatchFeatures", _tiny_patches, [], "features"),
    ("RidgeClassifier", lambda: RidgeClassifier(seed=1), GRAY, "probability"),
    # Every named classifier that is ours (the ridge, the CNN) or that we wrap (one-vs-rest): MLlib's
    # own are MLlib's to test.
    *[(name, lambda name=name: _classifier(name), [] if spec.reads_images else GRAY, "prediction")
      for name, spec in CLASSIFIERS.items() if spec.one_vs_rest or spec.estimator.__module__.startswith("sparkvision.")],
]


@pytest.fixture(scope="module")
def images(spark):
    labels, data = synthetic_images(N_IMAGES, N_CLASSES, seed=3)
    hwc = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).reshape(N_IMAGES, -1)  # the table's RGB rows
    rows = [(int(label), bytes(row)) for label, row in zip(labels, hwc)]
    return spark.createDataFrame(rows, "label int, data binary").cache()


def _comparable(value):
    """A Param's value, with a nested stage (OneVsRest's classifier) as its class and own Params."""
    if isinstance(value, Params):
        return type(value).__name__, _param_values(value)
    return value


def _param_values(stage) -> dict:
    return {p.name: _comparable(stage.getOrDefault(p)) for p in stage.params if stage.isDefined(p)}


def _values(df, column: str) -> list:
    if dict(df.dtypes)[column] == "vector":
        df = df.withColumn(column, vector_to_array(column))
    return [row[0] for row in df.select(column).collect()]


def test_the_contract_covers_our_stages_and_wrappers():
    assert {"Grayscale", "PixelVectorizer", "PatchFeatures", "RidgeClassifier", "ridge", "cnn", "gbt",
            "linear_svc"} <= {case[0] for case in CASES}


@pytest.mark.parametrize("make, before, column", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_stage_contract(spark, images, tmp_path, make, before, column):
    stage = make()
    # Constructed with defaults: every Param has a value to read.
    for param in stage.params:
        if stage.hasDefault(param) or stage.isSet(param):
            stage.getOrDefault(param)
    # copy: the same Params, an independent stage; an extra value applies to the copy only.
    twin = stage.copy()
    assert twin is not stage and twin.uid == stage.uid
    assert _param_values(twin) == _param_values(stage)
    changed_param = next((p for p in stage.params if p.name in ("outputCol", "predictionCol")), None)
    if changed_param is not None:
        other = stage.copy({changed_param: "renamed"})
        assert other.getOrDefault(changed_param) == "renamed" and stage.getOrDefault(changed_param) != "renamed"

    # In a Pipeline on a tiny DataFrame, saved and loaded.
    model = Pipeline(stages=[*before, stage]).fit(images)
    out = model.transform(images)
    assert out.count() == N_IMAGES and column in out.columns
    path = str(tmp_path / "model")
    save_pipeline_model(model, path)
    loaded = PipelineModel.load(path)
    again = loaded.transform(images)
    first, second = _values(out, column), _values(again, column)
    if column == "gray":
        assert first == second
    else:
        np.testing.assert_allclose(np.asarray(first, dtype=float), np.asarray(second, dtype=float),
                                   rtol=1e-5, atol=1e-6)

    # Every Param of the saved stage reads back the same.
    fitted, restored = model.stages[-1], loaded.stages[-1]
    assert type(restored) is type(fitted)
    for param in fitted.params:
        if fitted.isSet(param):
            assert restored.isSet(restored.getParam(param.name))
            assert _comparable(restored.getOrDefault(param.name)) == _comparable(fitted.getOrDefault(param))
