"""Named MLlib classifiers: sensible defaults, the parameters each one tunes, one way to build them.

``build_classifier("random_forest", numTrees=50)`` returns a configured estimator reading
``features`` and ``label``. Gradient-boosted trees and linear SVMs are binary in MLlib, so they
come wrapped in ``OneVsRest``; their parameters go to the inner binary classifier. The
multilayer perceptron needs the input and output sizes, which the caller passes as
``num_features`` and ``num_classes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from pyspark.ml.classification import (DecisionTreeClassifier, GBTClassifier, LinearSVC, LogisticRegression,
                                       MultilayerPerceptronClassifier, NaiveBayes, OneVsRest,
                                       RandomForestClassifier)
from pyspark.ml.param import Param, TypeConverters

from sparkvision import defaults
from sparkvision.errors import ConfigError
from sparkvision.models.cnn.settings import CNN_DEFAULTS, check_cnn_params, parse_cnn_value
from sparkvision.models.cnn.stages import CNNClassifier
from sparkvision.models.ridge.stage import RidgeClassifier, check_ridge_params


@dataclass(frozen=True)
class ClassifierSpec:
    """One named classifier: how to build it, its defaults, and the parameters users may set."""

    name: str
    summary: str
    estimator: Callable[..., Any]            # the MLlib class (the inner one when wrapped)
    defaults: dict[str, Any] = field(default_factory=dict)
    tunable: tuple[str, ...] = ()
    one_vs_rest: bool = False
    check: Callable[[dict[str, Any]], None] | None = None  # ranges checked before Spark (ours: CNN, ridge; MLlib's are the JVM's)
    reads_images: bool = False  # takes the image table's bytes directly: no feature stages before it
    parse: Callable[[str, Any], Any] | None = None  # a command-line value (e.g. "64,128,128") to the Param's type


def check_fits_our_features(name: str, params: dict[str, Any]) -> None:
    """Raise ValueError for a model setting that cannot fit sparkvision's own feature sets (run and
    experiments; a user of ``build_classifier`` may bring other features). Bernoulli naive Bayes
    takes only 0/1 values, and MLlib would refuse ours mid-fit, printing thousands of them."""
    if name == "naive_bayes" and params.get("modelType") == "bernoulli":
        raise ValueError("modelType=bernoulli needs features that are all 0 or 1, and sparkvision's (pixel values, "
                         "patch responses) are not: use gaussian (the default) or multinomial")


CLASSIFIERS: dict[str, ClassifierSpec] = {spec.name: spec for spec in [
    ClassifierSpec("random_forest", "bagged decision trees (the assignment's model)", RandomForestClassifier,
                   dict(defaults.FOREST),
                   ("numTrees", "maxDepth", "maxBins", "subsamplingRate", "featureSubsetStrategy",
                    "minInstancesPerNode", "impurity")),
    ClassifierSpec("decision_tree", "one decision tree", DecisionTreeClassifier, {"maxDepth": 5},
                   ("maxDepth", "maxBins", "minInstancesPerNode", "impurity")),
    ClassifierSpec("logistic_regression", "multinomial logistic regression (softmax)", LogisticRegression,
                   {"family": "multinomial", "maxIter": 100, "regParam": 0.01, "elasticNetParam": 0.0},
                   ("maxIter", "regParam", "elasticNetParam", "tol", "standardization")),
    ClassifierSpec("mlp", "multilayer perceptron; `hidden` lists the hidden layer sizes",
                   MultilayerPerceptronClassifier, {"hidden": [128], "maxIter": 100, "blockSize": 128},
                   ("hidden", "maxIter", "blockSize", "stepSize", "tol", "solver")),
    ClassifierSpec("gbt", "gradient-boosted trees, one-vs-rest over the classes", GBTClassifier,
                   {"maxIter": 10, "maxDepth": 3},
                   ("maxIter", "maxDepth", "stepSize", "subsamplingRate", "maxBins"), one_vs_rest=True),
    ClassifierSpec("linear_svc", "linear support vector machine, one-vs-rest over the classes", LinearSVC,
                   {"maxIter": 50, "regParam": 0.01}, ("maxIter", "regParam", "tol", "standardization"),
                   one_vs_rest=True),
    ClassifierSpec("ridge", "ridge regression onto one-hot labels, fitted in one pass (for wide features)",
                   RidgeClassifier, {}, ("regParam", "regGrid", "validationFraction", "standardization"),
                   check=check_ridge_params),
    ClassifierSpec("naive_bayes", "Gaussian naive Bayes", NaiveBayes, {"modelType": "gaussian"},
                   ("modelType", "smoothing")),
    ClassifierSpec("cnn", "airbench's convolutional network on the RGB images, trained with TorchDistributor "
                   "(needs the torch extra)", CNNClassifier, {}, (*CNN_DEFAULTS, "checkpointDir"),
                   check=check_cnn_params, reads_images=True, parse=parse_cnn_value),
]}


def check_params(name: str, params: dict[str, Any]) -> None:
    """Raise ValueError naming the first unknown model or parameter, or a value of the wrong type
    (``numTrees=abc``, ``hidden=128``), before any work starts: no JVM is needed.

    Types are checked with each Param's own converter; ranges (``numTrees=0``) are MLlib's to
    check, on the JVM (:func:`sparkvision.models.fitting.check_on_jvm`).
    """
    check_names(name, params)
    params = as_param_types(name, params)  # as build_classifier passes them on
    for key, value in params.items():
        try:
            check_value(name, key, value)
        except ValueError as exc:
            raise ValueError(f"{key}={value!r}: {exc}") from None
    spec = CLASSIFIERS[name]
    if spec.check is not None:
        converted = {key: getattr(spec.estimator, key).typeConverter(value) for key, value in params.items()}
        spec.check(converted)


def check_names(name: str, params: Iterable[str]) -> None:
    """Raise ValueError naming an unknown model, or a parameter it does not tune."""
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown model {name!r}: choose one of {', '.join(CLASSIFIERS)}")
    spec = CLASSIFIERS[name]
    unknown = sorted(set(params) - set(spec.tunable))
    if unknown:
        raise ValueError(f"model {name} has no parameter {unknown[0]!r}: it tunes {', '.join(spec.tunable)}")


def as_param_types(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with a number given to a Param that takes text made its text: ``--param
    featureSubsetStrategy=0.5`` (read as a number) and ``featureSubsetStrategy = 0.5`` in an
    experiment file mean MLlib's ``"0.5"``, which its converter alone would refuse."""
    estimator = CLASSIFIERS[name].estimator if name in CLASSIFIERS else None

    def takes_text(key: str) -> bool:
        param = getattr(estimator, key, None)
        return isinstance(param, Param) and param.typeConverter is TypeConverters.toString

    return {key: str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and takes_text(key)
            else value for key, value in params.items()}


def check_value(name: str, key: str, value: Any) -> None:
    """Raise ValueError (the reason alone) when ``value`` is of the wrong type for ``key`` of model ``name``."""
    if name == "mlp" and key == "hidden":
        if not (isinstance(value, list) and value and all(type(h) is int and h > 0 for h in value)):
            raise ValueError("give the hidden layer sizes as a list of positive integers, e.g. [128] or [256, 64]")
        return
    param = getattr(CLASSIFIERS[name].estimator, key, None)
    if isinstance(param, Param) and param.typeConverter is not None:
        try:
            param.typeConverter(as_param_types(name, {key: value})[key])
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None


def build_classifier(name: str, *, featuresCol: str = "features", labelCol: str = "label",
                     seed: int | None = None, num_features: int | None = None,
                     num_classes: int | None = None, **params: Any):
    """A configured MLlib estimator by name; ``params`` are its Params (camelCase).

    >>> build_classifier("random_forest", numTrees=20).getNumTrees()
    20
    >>> type(build_classifier("linear_svc")).__name__
    'OneVsRest'
    """
    check_params(name, params)
    from pyspark import SparkContext
    from pyspark.ml.wrapper import JavaParams
    from pyspark.sql.utils import is_remote

    jvm_backed = issubclass(CLASSIFIERS[name].estimator, JavaParams) or CLASSIFIERS[name].one_vs_rest
    if jvm_backed and SparkContext._active_spark_context is None and not is_remote():  # pyspark: a bare AssertionError
        raise ConfigError(f"build_classifier({name!r}) needs a running Spark session (MLlib's estimators live in "
                          "its JVM): start one first, e.g. spark = sv.session().")
    spec = CLASSIFIERS[name]
    values = {**spec.defaults, **as_param_types(name, params)}
    if name == "mlp":
        if num_features is None or num_classes is None:
            raise ValueError("the mlp needs num_features and num_classes to size its layers")
        values["layers"] = [num_features, *[int(h) for h in values.pop("hidden")], num_classes]
    inner = spec.estimator(**values)
    if seed is not None and inner.hasParam("seed"):
        inner.setSeed(seed)
    if spec.reads_images:  # reads the image bytes (``data``), not a feature vector
        return inner.setLabelCol(labelCol)
    if not spec.one_vs_rest:
        return inner.setFeaturesCol(featuresCol).setLabelCol(labelCol)
    return OneVsRest(classifier=inner, featuresCol=featuresCol, labelCol=labelCol)
