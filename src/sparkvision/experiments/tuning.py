"""Tuning a scenario's Params inside its fit: MLlib's TrainValidationSplit or CrossValidator over
the scenario's ``[scenario.tune]`` grid, scored by accuracy."""


from __future__ import annotations

import math

from pyspark.ml.evaluation import MulticlassClassificationEvaluator
from pyspark.ml.tuning import CrossValidator, ParamGridBuilder, TrainValidationSplit

from sparkvision.errors import ConfigError
from sparkvision.experiments.spec import Scenario, as_list


def tune(est, scenario: Scenario, train, seed: int):
    """Search ``tune.params`` on a validation part carved from the training data only."""
    tune = scenario.tune
    target = est.getClassifier() if hasattr(est, "getClassifier") else est
    grid = ParamGridBuilder()
    for name, values in tune["params"].items():
        grid.addGrid(target.getParam(name), as_list(values))
    maps = grid.build()
    if target is not est:  # OneVsRest: search over copies of the inner classifier
        maps = [{est.classifier: target.copy(m)} for m in maps]
    evaluator = MulticlassClassificationEvaluator(metricName="accuracy")
    if tune["method"] == "cross_validator":
        rows = train.count()  # cached for the fit: cheap; more folds than rows leave folds empty
        if tune["folds"] > rows:
            raise ConfigError(f"tune.folds = {tune['folds']}, but the scenario trains on {rows} images: a fold "
                              f"needs images to validate on. Set tune.folds to {max(2, min(10, rows))} or fewer, "
                              "or use more data.")
        search = CrossValidator(estimator=est, estimatorParamMaps=maps, evaluator=evaluator,
                                numFolds=tune["folds"], parallelism=tune["parallelism"], seed=seed)
        fitted = search.fit(train)
        scores = fitted.avgMetrics
    else:
        search = TrainValidationSplit(estimator=est, estimatorParamMaps=maps, evaluator=evaluator,
                                      trainRatio=tune["train_ratio"], parallelism=tune["parallelism"], seed=seed)
        fitted = search.fit(train)
        scores = fitted.validationMetrics
    # An empty validation part scores NaN, and max() over NaNs would pick the first point unannounced.
    if any(math.isnan(score) for score in scores):
        raise ConfigError(f"tune: a validation part of the training data came out empty (scores {scores}); use "
                          "more data, a smaller tune.train_ratio, or fewer tune.folds.")
    best = max(range(len(scores)), key=scores.__getitem__)
    chosen = maps[best]
    if target is not est:
        chosen = {p.name: v for p, v in chosen[est.classifier].extractParamMap().items() if p.name in tune["params"]}
    else:
        chosen = {p.name: v for p, v in chosen.items()}
    return fitted.bestModel, {"method": tune["method"], "best_params": chosen,
                              "validation_accuracy": float(scores[best])}
