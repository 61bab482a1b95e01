"""An experiment file (TOML): its scenarios, each a model, feature sets and a grid of Params, checked
in full before any work starts.

Top-level ``name``, ``seed``, ``test_fraction``, ``repeats``, and ``[[scenario]]`` blocks, each naming
a model, one or more feature sets and its parameters, where any list is a grid axis. A model that
reads the images itself (``model = "cnn"``) has no feature set: ``features`` is left out or
``"rgb"``; its grid axes are its Params (``widths = [[16, 32, 32], [32, 64, 64]]``: a list of
numbers is one value of ``widths``). The built-in experiment is ``default.toml`` beside this module.
"""


from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sparkvision import defaults
from sparkvision.errors import (
    ConfigError,
)
from sparkvision.features.names import parse_feature_set
from sparkvision.models.registry import (
    CLASSIFIERS,
    check_fits_our_features,
    check_names,
    check_params,
    check_value,
)


_TOP_KEYS = {"name", "seed", "test_fraction", "repeats", "scenario"}



_SCENARIO_KEYS = {"name", "model", "features", "params", "repeats", "tune"}



_TUNE_KEYS = {"method", "params", "folds", "train_ratio", "parallelism"}



_TUNE_METHODS = ("train_validation_split", "cross_validator")



_LIST_VALUED = {"hidden", "widths", "regGrid"}  # Params whose one value is a list (mlp's layers, the CNN's conv widths, ridge's grid)



IMAGE_FEATURES = "rgb"  # what a model that reads the images (the CNN) is listed with: the table's RGB bytes



def _shown(value: Any) -> str:
    # Lists without spaces, so a name reads as one token per parameter: widths=[64,128,128].
    return "[" + ",".join(map(_shown, value)) + "]" if isinstance(value, list) else str(value)



@dataclass(frozen=True)
class Scenario:
    """One point of the grid: a feature set, a model and its parameters."""
    group: str
    features: str
    model: str
    params: dict[str, Any]
    repeats: int = 1
    tune: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        shown = " ".join(f"{k}={_shown(v)}" for k, v in self.params.items())
        return f"{self.model} {self.features}" + (f" {shown}" if shown else "") + (" tuned" if self.tune else "")

    def key(self, context: str) -> str:
        """Stable identity: the same scenario on the same table and split has the same key."""
        spec = json.dumps([context, self.features, self.model, self.params, self.repeats, self.tune],
                          sort_keys=True, default=str)
        return hashlib.sha256(spec.encode()).hexdigest()[:12]



@dataclass
class Experiment:
    """A parsed, checked experiment file."""
    name: str
    scenarios: list[Scenario]
    seed: int = defaults.SEED
    test_fraction: float = defaults.TEST_FRACTION
    source: str = "built-in default"
    text: str = ""



def _fail(where: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {message}")



def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]



def _check_keys(table: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise _fail(where, f"unknown key {unknown[0]!r}; allowed keys are {', '.join(sorted(allowed))}")



def _axes(params: dict[str, Any]) -> dict[str, list[Any]]:
    # A list is an axis of the grid, except for `hidden`, `widths` and `regGrid`, whose single value is itself a
    # list: for them only a list of lists is an axis.
    return {k: (v if isinstance(v, list) and (k not in _LIST_VALUED or all(isinstance(x, list) for x in v)) else [v])
            for k, v in params.items()}



def param_grid(params: dict[str, Any]) -> list[dict[str, Any]]:
    axes = _axes(params)
    names = list(axes)
    return [dict(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names))]



def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # TOML's true is not a count



def _check_types(model: str, key: str, values: list[Any], where: str) -> None:
    """Check the values of ``key`` (``params.numTrees``) as ``--param`` values are checked.

    Each MLlib Param's own type converter needs no Spark session, so ``numTrees = "abc"`` fails
    as the file is read, not after the data is ingested; ranges (``numTrees = 0``) are the JVM's
    to judge, in :func:`_check_values`.
    """

    if not values:  # an empty axis makes the grid empty: nothing would run, silently
        raise _fail(where, f"{key} is an empty list, which gives nothing to run; list at least one value")
    for value in values:
        try:
            check_value(model, key.rpartition(".")[2], value)
        except ValueError as exc:
            raise _fail(where, f"{key} = {value!r}: {exc}") from None



def _check_tune(tune: Any, where: str) -> dict[str, Any]:
    """The scenario's ``tune`` table with its defaults filled in, every setting checked."""
    if not isinstance(tune, dict):
        raise _fail(where, f"tune must be a table, e.g. tune = {{ params = {{ regParam = [0.01, 0.1] }} }}, "
                           f"not {tune!r}")
    _check_keys(tune, _TUNE_KEYS, f"{where}, tune")
    if tune.get("method", "train_validation_split") not in _TUNE_METHODS:
        raise _fail(where, f"tune.method must be one of {', '.join(_TUNE_METHODS)}")
    if not isinstance(tune.get("params"), dict) or not tune["params"]:
        raise _fail(where, "tune.params must list the values to search, e.g. { regParam = [0.01, 0.1] }")
    if "hidden" in tune["params"]:  # the search sets MLlib Params, and hidden is not one
        raise _fail(where, "tune.params cannot search hidden; make it a grid axis instead, "
                           "e.g. params = { hidden = [[64], [128]] }")
    unused = {"train_validation_split": "folds", "cross_validator": "train_ratio"}[tune.get("method",
                                                                                     "train_validation_split")]
    if unused in tune:  # else it would be recorded but not used
        raise _fail(where, f"tune.{unused} does not apply to tune.method = "
                           f"{tune.get('method', 'train_validation_split')!r}; leave it out")
    tune = {"method": "train_validation_split", "folds": 3, "train_ratio": 0.8, "parallelism": 2, **tune}
    if not _is_int(tune["folds"]) or tune["folds"] < 2:
        raise _fail(where, f"tune.folds must be an integer of at least 2, not {tune['folds']!r}")
    ratio = tune["train_ratio"]
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 < ratio < 1:
        raise _fail(where, f"tune.train_ratio must be between 0 and 1, not {ratio!r}")
    if not _is_int(tune["parallelism"]) or tune["parallelism"] < 1:
        raise _fail(where, f"tune.parallelism must be a positive integer, not {tune['parallelism']!r}")
    return tune



def parse_experiment(text: str, source: str) -> Experiment:
    """Parse and check an experiment from TOML text; ``source`` names it in errors."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _fail(source, f"not valid TOML ({exc})") from None
    _check_keys(doc, _TOP_KEYS, source)
    name = doc.get("name", Path(source).stem)
    seed, test_fraction, repeats = doc.get("seed", defaults.SEED), doc.get("test_fraction", defaults.TEST_FRACTION), doc.get("repeats", 1)
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        raise _fail(source, f"name {name!r} must be letters, digits, - or _")
    if not _is_int(seed) or not 0 <= seed <= defaults.MAX_SEED:
        raise _fail(source, f"seed must be a whole number from 0 to {defaults.MAX_SEED}, not {seed!r}")
    if not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise _fail(source, f"test_fraction must be between 0 and 1, not {test_fraction!r}")
    blocks = doc.get("scenario")
    if not isinstance(blocks, list) or not blocks:
        raise _fail(source, "no [[scenario]] blocks: an experiment needs at least one")
    scenarios: list[Scenario] = []
    for i, block in enumerate(blocks, start=1):
        if not isinstance(block, dict):
            raise _fail(f"{source}, scenario {i}", f"must be a [[scenario]] table of keys, not {block!r}")
        where = f"{source}, scenario {i} ({block.get('name', 'unnamed')})"
        _check_keys(block, _SCENARIO_KEYS, where)
        if "model" not in block:
            raise _fail(where, "says no model")
        model = block["model"]
        if not isinstance(model, str):
            raise _fail(where, f"model must be a name, e.g. model = \"random_forest\", not {model!r}")
        reps = block.get("repeats", repeats)
        if not _is_int(reps) or reps < 1:
            raise _fail(where, f"repeats must be a positive integer, not {reps!r}")
        params = block.get("params", {})
        if not isinstance(params, dict):
            raise _fail(where, "params must be a table, e.g. params = { numTrees = [10, 50] }")
        tune = block.get("tune")
        if tune is not None:
            tune = _check_tune(tune, where)
            both = sorted(set(tune["params"]) & set(params))
            if both:  # the search would override the fixed value, which the scenario's name still shows
                raise _fail(where, f"{both[0]} is both in params and in tune.params; give it in one of them")
        try:
            check_names(model, {**params, **(tune["params"] if tune else {})})
        except ValueError as exc:
            raise _fail(where, str(exc)) from None
        reads_images = CLASSIFIERS[model].reads_images
        if reads_images and tune is not None:
            # The search would train every candidate on one checkpoint folder, and its parallel fits
            # would each start torchrun on the same cores.
            raise _fail(where, f"tune cannot search model {model}; make the values grid axes instead, each "
                               f"trained and reported, e.g. params = {{ epochs = [1, 2] }}")
        if reads_images and "checkpointDir" in params:
            raise _fail(where, "params.checkpointDir is chosen by the experiment (a folder per scenario under the "
                               "work directory, where a killed run resumes after its last finished epoch); "
                               "leave it out")
        for key, values in _axes(params).items():
            _check_types(model, f"params.{key}", values, where)
        for key, values in (tune["params"] if tune else {}).items():
            _check_types(model, f"tune.params.{key}", as_list(values), where)
        for point in param_grid(params):  # ranges a model checks without Spark (the CNN's: epochs > 0, 3 widths …)
            try:
                check_params(model, point)
                check_fits_our_features(model, point)
            except (ValueError, TypeError) as exc:
                shown = " ".join(f"{k}={v!r}" for k, v in point.items())
                raise _fail(where, f"params {shown}: {exc}") from None
        if reads_images:
            given = block.get("features", IMAGE_FEATURES)
            if as_list(given) != [IMAGE_FEATURES]:
                raise _fail(where, f"model {model} learns from the RGB images themselves, not from a feature set: "
                                   f"leave features out (or write features = \"{IMAGE_FEATURES}\"), "
                                   f"not features = {given!r}")
        all_features = as_list(block.get("features", IMAGE_FEATURES if reads_images else "gray"))
        if not all_features:
            raise _fail(where, "features is an empty list, which gives nothing to run; list at least one feature set")
        for features in all_features:
            if not isinstance(features, str):
                raise _fail(where, f"features must be a feature set or a list of them (gray, rgb, patches, "
                                   f"patches:K), not {features!r}")
            try:
                parse_feature_set(features)
            except ValueError as exc:
                raise _fail(where, str(exc)) from None
            for point in param_grid(params):
                scenarios.append(Scenario(block.get("name", f"scenario-{i}"), features, model,
                                          point, reps, copy.deepcopy(tune)))
    return Experiment(name, scenarios, seed, float(test_fraction), source, text)



def load_experiment(path: str | os.PathLike | None = None) -> Experiment:
    """Read an experiment file, or the built-in default when ``path`` is None."""
    if path is None:
        text = resources.files("sparkvision").joinpath("experiments/default.toml").read_text(encoding="utf-8")
        return parse_experiment(text, "built-in default experiment")
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such experiment file.")
    try:
        text = p.read_text(encoding="utf-8")  # TOML is UTF-8 by definition, whatever the locale says
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x}), so not TOML; "
                          "save it as UTF-8.") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the experiment file ({exc.strerror}).") from None
    return parse_experiment(text, str(p))
