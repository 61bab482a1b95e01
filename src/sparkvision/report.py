"""The report of an experiment: plots, ``REPORT.md`` and a self-contained ``report.html``.

Input is plain data as loaded from JSON (an experiment ``summary`` and one dict per scenario), so
this module never needs Spark. Everything written in the report is derived from those numbers:
the "What helped" summary compares scenarios that differ in one setting only and calls a change
"little difference" only when it is within a noise threshold computed from the measured spread.

Time is shown two ways. ``fit_seconds`` is the classifier's fit on features already computed and
cached. A scenario's whole cost, ``total_seconds``, adds the time its feature set took to compute
(``features_seconds``: computed once and shared, but charged in full to every scenario using it)
and its test predictions; the accuracy-against-minutes plot and, where recorded, the sentences on
cost use it.

>>> format_accuracy(0.4521, 0.003, repeats=3)
'45.2 % ± 0.3'
>>> format_points(0.06)
'+6.0 points'
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import math
import os
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

TREE_MODELS = ("random_forest", "decision_tree", "gbt")

#: A change smaller than this (in accuracy points) is never called an improvement, whatever the spread:
#: one point of a 10 000-image test set is 100 images, and 0.5 points is within split-to-split noise.
NOISE_FLOOR_POINTS = 0.5

#: "Cost" looks for the fastest scenario at most this many points below the best.
NEAR_BEST_POINTS = 1.0

PLOT_TITLES = {
    "accuracy_vs_trees.png": "Accuracy against number of trees (random forest)",
    "accuracy_vs_depth.png": "Accuracy against tree depth",
    "accuracy_vs_centroids.png": "Accuracy against dictionary size K (learned patch features)",
    "accuracy_vs_epochs.png": "Accuracy against epochs (CNN), one line per widths",
    "accuracy_vs_fit_time.png": "Accuracy against fit time (the classifier's fit only), every scenario",
    "accuracy_vs_minutes.png": "Accuracy against total minutes (features + fit + test), every scenario",
    "confusion_matrix.png": "Confusion matrix of the best scenario",
    "per_class_accuracy.png": "Per-class accuracy",
}

TABLE_HEADERS = ["Rank", "Scenario", "Model", "Features", "Params", "Accuracy", "Macro F1",
                 "Fit s", "Predict s", "Model MB", "Features s", "Total s"]
_NUMERIC = {"Rank", "Accuracy", "Macro F1", "Fit s", "Predict s", "Model MB", "Features s",
            "Total s"}  # right-aligned columns


# ----------------------------------------------------------------------------------------------
# Formatting


def format_accuracy(mean: float, std: float = 0.0, repeats: int | None = None) -> str:
    """``'45.2 % ± 0.3'``: a 0..1 accuracy in percent, with its spread in points when measured.

    The ``±`` is left out for a single repeat, where a spread of 0 would claim a precision nobody
    measured.

    >>> format_accuracy(0.3, 0.0, repeats=1)
    '30.0 %'
    """
    text = f"{100 * mean:.1f} %"
    measured = repeats > 1 if repeats is not None else bool(std)
    return f"{text} ± {100 * (std or 0.0):.1f}" if measured else text


def format_percent(value: float) -> str:
    """A 0..1 fraction as ``'36.0 %'``."""
    return f"{100 * value:.1f} %"


def format_points(delta: float) -> str:
    """A difference of two 0..1 accuracies in signed percentage points, ``'+6.0 points'``."""
    points = 100 * delta
    if abs(points) < 0.05:  # avoid "-0.0"
        points = 0.0
    return f"{points:+.1f} points"


def points_between(old: float, new: float) -> str:
    """The change from accuracy ``old`` to ``new`` as :func:`format_points` of the percentages as shown.

    Taking the difference of the rounded percentages keeps the text's arithmetic checkable:
    34.0 % → 33.1 % reads "-0.9 points", never "-1.0" from the unrounded values.

    >>> format_percent(0.34), format_percent(0.3305), points_between(0.34, 0.3305)
    ('34.0 %', '33.1 %', '-0.9 points')
    """
    return format_points((round(100 * new, 1) - round(100 * old, 1)) / 100)


def format_seconds(seconds: float | None) -> str:
    """Seconds with a precision that suits their size: ``'0.43'``, ``'12.3'``, ``'125'``."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    if seconds < 1:
        return f"{seconds:.2f}"
    if seconds < 100:
        return f"{seconds:.1f}"
    return f"{seconds:.0f}"


def format_duration(seconds: float | None) -> str:
    """A wall-clock duration for people: ``'42 s'``, ``'12 min 05 s'``, ``'1 h 02 min'``.

    >>> format_duration(3725)
    '1 h 02 min'
    """
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    total = round(seconds)
    if total < 60:
        return f"{format_seconds(seconds)} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_megabytes(num_bytes: int | None) -> str:
    """A model size in MB (10⁶ bytes), with enough decimals that small models are not shown as 0."""
    if num_bytes is None:
        return "–"
    mb = num_bytes / 1e6
    return f"{mb:.1f}" if mb >= 10 else f"{mb:.2f}" if mb >= 0.1 else f"{mb:.3f}"


def format_ratio(ratio: float) -> str:
    """A multiple such as ``'8.5×'``, with two significant digits below 1 (``'0.42×'``)."""
    return f"{ratio:.0f}×" if ratio >= 10 else f"{ratio:.1f}×" if ratio >= 1 else f"{ratio:.2f}×"


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}={_format_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def format_params(params: dict[str, Any] | None) -> str:
    """Parameters as ``'numTrees=10 maxDepth=5'``, in the order the experiment file gave them."""
    return " ".join(f"{k}={_format_value(v)}" for k, v in (params or {}).items())


# ----------------------------------------------------------------------------------------------
# Selecting results


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_done(result: dict[str, Any]) -> bool:
    """Whether a scenario finished with an accuracy that can be ranked."""
    return result.get("status") == "done" and _is_number(result.get("accuracy"))


def ranked(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The finished scenarios, best accuracy first; ties go to the faster fit, then the name."""
    return sorted((r for r in results if is_done(r)),
                  key=lambda r: (-r["accuracy"], _fit(r) if _fit(r) is not None else math.inf,
                                 str(r.get("name", ""))))


def failed(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The scenarios that did not finish (or finished without an accuracy), in input order."""
    return [r for r in results if not is_done(r)]


def baseline_result(summary: dict[str, Any], results: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The finished scenario whose key is ``summary['baseline_key']``, or None."""
    key = summary.get("baseline_key")
    if key is None:
        return None
    return next((r for r in results if r.get("key") == key and is_done(r)), None)


def _fit(result: dict[str, Any]) -> float | None:
    value = result.get("fit_seconds")
    return float(value) if _is_number(value) else None


def _fit_ratio(numerator: dict[str, Any], denominator: dict[str, Any]) -> float | None:
    # A zero fit time is a timer too coarse for the model, not a free model: no ratio from it.
    top, bottom = _fit(numerator), _fit(denominator)
    return top / bottom if top and bottom else None


def total_seconds(result: dict[str, Any]) -> float | None:
    """A scenario's whole cost: its feature set's computation (charged in full, though shared), its
    fit and its test predictions; None when the feature set's time was not recorded."""
    value = result.get("total_seconds")
    if _is_number(value):
        return float(value)
    parts = [result.get(k) for k in ("features_seconds", "fit_seconds", "predict_seconds")]
    return float(sum(parts)) if all(_is_number(v) for v in parts) else None


def _total_ratio(numerator: dict[str, Any], denominator: dict[str, Any]) -> float | None:
    top, bottom = total_seconds(numerator), total_seconds(denominator)
    return top / bottom if top and bottom else None


def tradeoff(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The finished scenarios no other beats on both accuracy and total time, fastest first: each is
    more accurate than every scenario that costs less (the choices a user picks from)."""
    rows = sorted((r for r in ranked(results) if total_seconds(r) is not None),
                  key=lambda r: (total_seconds(r), -r["accuracy"]))
    front: list[dict[str, Any]] = []
    for r in rows:
        if not front or r["accuracy"] > front[-1]["accuracy"]:
            front.append(r)
    return front


def _repeat_count(result: dict[str, Any]) -> int | None:
    repeats = result.get("repeats")
    return len(repeats) if isinstance(repeats, list) else None


def _std(result: dict[str, Any]) -> float:
    value = result.get("accuracy_std")
    return float(value) if _is_number(value) else 0.0


def noise_threshold_points(*results: dict[str, Any]) -> float:
    """The smallest accuracy change (points) worth calling a difference between these scenarios.

    Twice the larger standard deviation over repeats, and never less than
    :data:`NOISE_FLOOR_POINTS` (one repeat has no measured spread, but still has noise).
    """
    return max(NOISE_FLOOR_POINTS, 2 * 100 * max((_std(r) for r in results), default=0.0))


# ----------------------------------------------------------------------------------------------
# Comparisons of scenarios that differ in one setting


@dataclass(frozen=True)
class Comparison:
    """Scenarios that differ only in ``param``, from its smallest value to its largest.

    ``param`` is a classifier parameter (``'numTrees'``) or ``'features'``. ``points`` holds every
    ``(value, result)`` of the series in value order; ``low``/``high`` are its two ends.
    """

    param: str
    model: str
    features: str | None  # None when the features are what varies
    context: dict[str, Any]  # the parameters held fixed
    points: list[tuple[Any, dict[str, Any]]] = field(repr=False)

    @property
    def low(self) -> dict[str, Any]:
        return self.points[0][1]

    @property
    def high(self) -> dict[str, Any]:
        return self.points[-1][1]

    @property
    def low_value(self) -> Any:
        return self.points[0][0]

    @property
    def high_value(self) -> Any:
        return self.points[-1][0]

    @property
    def delta(self) -> float:
        """Accuracy of the high end minus the low end, as a 0..1 difference."""
        return self.high["accuracy"] - self.low["accuracy"]

    @property
    def threshold_points(self) -> float:
        return noise_threshold_points(self.low, self.high)

    @property
    def verdict(self) -> str:
        """``'improved'``, ``'reduced'`` or ``'made little difference'`` (change below the threshold)."""
        if abs(100 * self.delta) < self.threshold_points:
            return "made little difference"
        return "improved" if self.delta > 0 else "reduced"

    @property
    def fit_ratio(self) -> float | None:
        """Fit time of the high end over the low end, None when either is unknown or zero."""
        return _fit_ratio(self.high, self.low)

    @property
    def label(self) -> str:
        """What was held fixed, e.g. ``'random_forest, gray, maxDepth=5'``."""
        parts = [self.model] + ([self.features] if self.features else []) + [format_params(self.context)]
        return ", ".join(p for p in parts if p)


def _freeze(value: Any) -> Any:
    # Parameters come from JSON: lists and dicts must become hashable to group by them.
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _order_key(value: Any) -> tuple[int, Any]:
    if _is_number(value):
        return (0, value)
    name, _, size = str(value).partition(":")  # feature sets such as patches:400 sort by their size
    return (1, (name, int(size))) if size.isdigit() else (1, (str(value), -1))


def comparisons(results: Iterable[dict[str, Any]], param: str,
                models: Sequence[str] | None = None) -> list[Comparison]:
    """Every group of finished scenarios that differ only in ``param``, with ≥ 2 distinct values.

    ``param`` is a key of the scenarios' ``params`` or ``'features'``. Tuned scenarios are left
    out: their accuracy comes from a search, not from the parameters they list. When two scenarios
    have the same configuration the first one is kept.
    """
    groups: dict[tuple, dict[Any, dict[str, Any]]] = {}
    contexts: dict[tuple, tuple[str, str | None, dict[str, Any]]] = {}
    for r in results:
        if not is_done(r) or r.get("tuned") or (models is not None and r.get("model") not in models):
            continue
        params = dict(r.get("params") or {})
        if param == "features":
            value, features = r.get("features"), None
        else:
            value, features = params.pop(param, None), r.get("features")
        if not (_is_number(value) or isinstance(value, str)):
            continue
        key = (r.get("model"), features, _freeze(params))
        contexts.setdefault(key, (str(r.get("model")), features, params))
        groups.setdefault(key, {}).setdefault(value, r)
    found = []
    for key, by_value in groups.items():
        if len(by_value) < 2:
            continue
        model, features, context = contexts[key]
        points = sorted(by_value.items(), key=lambda item: _order_key(item[0]))
        found.append(Comparison(param, model, features, context, points))
    return found


# ----------------------------------------------------------------------------------------------
# The written summary


def _time_phrase(ratio: float | None, what: str = "the fit time") -> str:
    if ratio is None:
        return ""
    if 0.95 <= ratio <= 1.05:
        return f", at about {what}"
    return f", at {format_ratio(ratio)} {what}"


def describe_comparison(topic: str, c: Comparison) -> str:
    """One sentence on a comparison, e.g. ``'Trees (random_forest, gray, maxDepth=5): numTrees
    10 → 100 improved accuracy (+6.0 points, 30.0 % → 36.0 %), at 8.5× the fit time.'``"""
    low, high = c.low["accuracy"], c.high["accuracy"]
    change = f"{points_between(low, high)}, {format_percent(low)} → {format_percent(high)}"
    if c.verdict == "made little difference":
        outcome = f"made little difference ({change}; noise threshold {c.threshold_points:.1f} points)"
    else:
        outcome = f"{c.verdict} accuracy ({change})"
    peak_value, peak = max(c.points, key=lambda item: item[1]["accuracy"])
    # A peak in the middle of a series is worth saying: the ends alone would hide it.
    peak_note = ""
    if len(c.points) > 2 and peak is not c.low and peak is not c.high:
        peak_note = f"; best at {c.param}={_format_value(peak_value)} ({format_percent(peak['accuracy'])})"
    values = " → ".join(_format_value(v) for v, _ in c.points)
    return f"{topic} ({c.label}): {c.param} {values} {outcome}{peak_note}{_time_phrase(c.fit_ratio)}."


def _best_sentence(best: dict[str, Any]) -> str:
    text = (f"Best: {best.get('name')} with {format_accuracy(best['accuracy'], _std(best), _repeat_count(best))} "
            f"accuracy")
    if _is_number(best.get("f1_macro")):
        text += f" (macro F1 {format_percent(best['f1_macro'])})"
    if _fit(best) is not None:
        text += f", fitted in {format_seconds(_fit(best))} s"
    if total_seconds(best) is not None:
        text += f" ({format_duration(total_seconds(best))} in all with its features and test predictions)"
    tuned = best.get("tuned")
    if isinstance(tuned, dict):
        text += f"; tuned by {tuned.get('method', 'search')} to {format_params(tuned.get('best_params'))}"
        if _is_number(tuned.get("validation_accuracy")):
            text += f" (validation {format_percent(tuned['validation_accuracy'])})"
    return text + "."


def _baseline_sentence(best: dict[str, Any], baseline: dict[str, Any]) -> str:
    if baseline is best:
        return "The best scenario is the assignment baseline itself."
    delta, threshold = best["accuracy"] - baseline["accuracy"], noise_threshold_points(best, baseline)
    ratio, what = _total_ratio(best, baseline), "its total time"
    if ratio is None:
        ratio, what = _fit_ratio(best, baseline), "its fit time"
    noise = f" (within the {threshold:.1f}-point noise threshold)" if 100 * delta < threshold else ""
    return (f"That is {points_between(baseline['accuracy'], best['accuracy'])}{noise} over the assignment "
            f"baseline ({baseline.get('name')}, {format_percent(baseline['accuracy'])})"
            f"{_time_phrase(ratio, what)}.")


def _models_sentence(order: list[dict[str, Any]]) -> str | None:
    best_of: dict[str, dict[str, Any]] = {}
    for r in order:  # already best first, so the first of each model is its best
        best_of.setdefault(str(r.get("model")), r)
    if len(best_of) < 2:
        return None
    if all(total_seconds(r) is not None for r in best_of.values()):  # the whole cost, when every one has it
        parts = [f"{i}. {model} {format_percent(r['accuracy'])} in {format_duration(total_seconds(r))}"
                 for i, (model, r) in enumerate(best_of.items(), start=1)]
        return "Models, best scenario of each (total time: features, fit and test): " + "; ".join(parts) + "."
    parts = [f"{i}. {model} {format_percent(r['accuracy'])}"
             + (f" in {format_seconds(_fit(r))} s" if _fit(r) is not None else "")
             for i, (model, r) in enumerate(best_of.items(), start=1)]
    return "Models, best scenario of each: " + "; ".join(parts) + "."


def _cost_sentence(order: list[dict[str, Any]]) -> str | None:
    best = order[0]
    if total_seconds(best) is not None:
        return _total_cost_sentence(order)
    if _fit(best) is None:
        return None
    near = [r for r in order if 100 * (best["accuracy"] - r["accuracy"]) <= NEAR_BEST_POINTS and _fit(r) is not None]
    cheapest = min(near, key=lambda r: _fit(r))
    if cheapest is best or _fit(cheapest) >= _fit(best):
        return None
    speedup = f", {format_ratio(_fit(best) / _fit(cheapest))} faster" if _fit(cheapest) > 0 else ""
    return (f"Cost: {cheapest.get('name')} reaches {format_percent(cheapest['accuracy'])} "
            f"({points_between(best['accuracy'], cheapest['accuracy'])} from the best) and fits in "
            f"{format_seconds(_fit(cheapest))} s instead of {format_seconds(_fit(best))} s{speedup}.")


def _total_cost_sentence(order: list[dict[str, Any]]) -> str | None:
    best = order[0]
    near = [r for r in order if 100 * (best["accuracy"] - r["accuracy"]) <= NEAR_BEST_POINTS
            and total_seconds(r) is not None]
    cheapest = min(near, key=total_seconds)
    if cheapest is best or total_seconds(cheapest) >= total_seconds(best):
        return None
    speedup = (f", {format_ratio(total_seconds(best) / total_seconds(cheapest))} faster"
               if total_seconds(cheapest) > 0 else "")
    return (f"Cost: {cheapest.get('name')} reaches {format_percent(cheapest['accuracy'])} "
            f"({points_between(best['accuracy'], cheapest['accuracy'])} from the best) in "
            f"{format_duration(total_seconds(cheapest))} in all (features, fit and test) instead of "
            f"{format_duration(total_seconds(best))}{speedup}.")


def _tradeoff_sentence(results: Sequence[dict[str, Any]]) -> str | None:
    front = tradeoff(results)
    if len(front) < 2:
        return None
    parts = [f"{r.get('name')} {format_percent(r['accuracy'])} in {format_duration(total_seconds(r))}"
             for r in front]
    return ("Trade-off by total time (features, fit and test), each more accurate than every faster "
            "scenario: " + "; ".join(parts) + ".")


def summary_lines(summary: dict[str, Any], results: Sequence[dict[str, Any]]) -> list[str]:
    """The "What helped" sentences, each emitted only when the results support it.

    Best scenario (and its gain over the assignment baseline), the effect of more trees, of
    depth, of colour features, of the CNN's epochs, the best of each model, the cheapest near-best
    scenario and, where total times are recorded, the accuracy-for-time trade-off.
    """
    order = ranked(results)
    if not order:
        return ["No scenario finished, so there is nothing to compare; the failures are listed below."]
    best = order[0]
    lines = [_best_sentence(best)]
    baseline = baseline_result(summary, results)
    if baseline is not None:
        lines.append(_baseline_sentence(best, baseline))
    else:
        # A baseline that was run but failed is worth saying; one the experiment never ran is not.
        attempted = next((r for r in results if summary.get("baseline_key") is not None
                          and r.get("key") == summary["baseline_key"]), None)
        if attempted is not None:
            lines.append(f"The assignment baseline ({attempted.get('name') or attempted.get('key')}) failed, "
                         f"so nothing is compared with it.")
    for topic, param, models in (("Trees", "numTrees", ("random_forest",)), ("Depth", "maxDepth", TREE_MODELS),
                                 ("Features", "features", None), ("Epochs", "epochs", ("cnn",))):
        lines += [describe_comparison(topic, c) for c in comparisons(results, param, models)]
    lines += [s for s in (_models_sentence(order), _cost_sentence(order), _tradeoff_sentence(results)) if s]
    not_done = failed(results)
    if not_done:
        lines.append(f"{len(not_done)} of {len(results)} scenarios failed (listed below); none of these "
                     f"numbers include them.")
    return lines


# ----------------------------------------------------------------------------------------------
# Tables and header


def results_table(results: Sequence[dict[str, Any]]) -> list[list[str]]:
    """One row of text cells per finished scenario, best accuracy first (columns: :data:`TABLE_HEADERS`)."""
    rows = []
    for rank, r in enumerate(ranked(results), start=1):
        params = format_params(r.get("params"))
        tuned = r.get("tuned")
        if isinstance(tuned, dict):
            params += f" (tuned by {tuned.get('method', 'search')}: {format_params(tuned.get('best_params'))})"
        f1 = r.get("f1_macro")
        rows.append([str(rank), str(r.get("name", r.get("key", ""))), str(r.get("model", "")),
                     str(r.get("features", "")), params,
                     format_accuracy(r["accuracy"], _std(r), _repeat_count(r)),
                     format_percent(f1) if _is_number(f1) else "–",
                     format_seconds(_fit(r)), format_seconds(r.get("predict_seconds")),
                     format_megabytes(r.get("model_bytes")),
                     "none" if r.get("reads_images") else format_seconds(r.get("features_seconds")),
                     format_seconds(total_seconds(r))])
    return rows


def _table_note(results: Sequence[dict[str, Any]]) -> str:
    counts = sorted({c for c in (_repeat_count(r) for r in ranked(results)) if c})
    if not counts or counts == [1]:
        note = "One repeat per scenario, so no spread is shown. Times are means over repeats."
    else:
        span = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
        note = (f"± is the standard deviation of accuracy in points over {span} repeats (seeds); "
                f"times are means over repeats. MB = 10⁶ bytes.")
    return note + " " + _time_note(results)


def _time_note(results: Sequence[dict[str, Any]]) -> str:
    done = ranked(results)
    note = ("Fit s is the classifier's fit on features already computed and cached, and Predict s its "
            "scoring of the test images from them. Features s is the time to compute the scenario's feature "
            "set (learning a patch dictionary where there is one, and turning every training and test image "
            "into features), measured once and shared by the scenarios that use it, but charged in full to "
            "each: running that scenario alone would cost it. Total s = Features s + Fit s + Predict s, the "
            "time the accuracy-against-minutes plot uses; none of these include starting Spark or ingesting "
            "the images, which are the same for every scenario.")
    if any(r.get("reads_images") for r in done):
        note += (" A model that reads the images itself (the CNN) has no feature set (none): its fit "
                 "includes reading the images, writing its training shard and starting torchrun.")
    unknown = sum(1 for r in done if total_seconds(r) is None)
    if unknown:
        note += (f" {unknown} of {len(done)} scenarios have no recorded feature-set time (–), so no total: "
                 f"their fit time alone would understate what they cost.")
    return note


def header_items(summary: dict[str, Any], results: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """The report's header as (label, value) pairs."""
    def count(key: str) -> str:
        value = summary.get(key)
        return f"{value:,}" if isinstance(value, int) else str(value if value is not None else "unknown")

    done_count = len(ranked(results))
    items = [("Data", str(summary.get("data", "unknown"))),
             ("Training images", count("num_train")),
             ("Test images", count("num_test")),
             ("Evaluated on", str(summary.get("evaluated_on", "unknown"))),
             ("Scenarios", f"{len(results)} ({done_count} done, {len(results) - done_count} failed)"),
             ("Total time", format_duration(summary.get("seconds_total")))]
    feature_times = _feature_set_times(results)
    if feature_times:
        items.append(("Feature sets computed in", feature_times + " (each once, shared by its scenarios)"))
    baseline = baseline_result(summary, results)
    if baseline is not None:
        items.append(("Assignment baseline", str(baseline.get("name"))))
    versions = summary.get("versions") or {}
    if versions:
        items.append(("Versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    return items


def _feature_set_times(results: Sequence[dict[str, Any]]) -> str:
    """``'gray 4.1 s, patches:1600 1 min 42 s'``: each feature set's recorded computation time (a
    range when reruns measured it more than once)."""
    times: dict[str, list[float]] = {}
    for r in ranked(results):
        if not r.get("reads_images") and _is_number(r.get("features_seconds")):
            times.setdefault(str(r.get("features")), []).append(float(r["features_seconds"]))
    parts = []
    for features, values in sorted(times.items(), key=lambda item: _order_key(item[0])):
        low, high = min(values), max(values)
        shown = format_duration(low) if format_duration(low) == format_duration(high) else \
            f"{format_duration(low)} to {format_duration(high)}"
        parts.append(f"{features} {shown}")
    return ", ".join(parts)


# ----------------------------------------------------------------------------------------------
# Plots


def _class_names(summary: dict[str, Any], count: int) -> list[str]:
    names = [str(n) for n in (summary.get("class_names") or [])]
    return names if len(names) == count else [str(i) for i in range(count)]


def _scatter_by_model(ax, results: list[dict[str, Any]], x_of: Callable[[dict[str, Any]], float]) -> None:
    """One marker and colour per model: each result at (``x_of(result)``, its accuracy in %)."""
    markers = "osD^vP*Xh<>"
    models = list(dict.fromkeys(str(r.get("model")) for r in results))
    for i, model in enumerate(models):
        mine = [r for r in results if str(r.get("model")) == model]
        ax.scatter([x_of(r) for r in mine], [100 * r["accuracy"] for r in mine], label=model, s=55,
                   marker=markers[i % len(markers)], color=f"C{i % 10}", edgecolors="black", linewidths=0.5,
                   zorder=3)


def _log_seconds_axis(ax) -> None:
    """A log-scale x axis labelled in plain numbers (2, 5, 10, 20 …), which read better than powers
    of ten on a range of a few decades."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())  # on under a decade matplotlib labels minor ticks too, as 3×10⁻¹


def _percent_axis(axis) -> None:
    from matplotlib.ticker import FuncFormatter

    # ":g" shows 30 as "30 %" and 37.5 as "37.5 %": no rounding of half-point ticks, no trailing ".0".
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g} %"))


def _legend_outside(ax, title: str | None = None) -> None:
    # Lines cross the whole plot, so any legend inside the axes ends up covering some of them.
    ax.legend(title=title, fontsize=9, title_fontsize=9, loc="upper left", bbox_to_anchor=(1.02, 1.0))


def _series_plot(comps: list[Comparison], *, xlabel: str, title: str, legend_title: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5))
    ax = fig.add_subplot()
    xs: set = set()
    for c in comps:
        values = [v for v, _ in c.points]
        xs.update(values)
        ax.errorbar(values, [100 * r["accuracy"] for _, r in c.points],
                    yerr=[100 * _std(r) for _, r in c.points], marker="o", capsize=4, label=c.label)
    ax.set_xticks(sorted(xs))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Test accuracy (%)")
    _percent_axis(ax.yaxis)
    spread = any(_std(r) > 0 for c in comps for _, r in c.points)
    ax.set_title(title + ("\n(error bars: ± 1 standard deviation over repeats)" if spread else ""))
    ax.grid(True, alpha=0.3)
    _legend_outside(ax, legend_title)
    return fig


def plot_accuracy_vs_trees(summary: dict[str, Any], results: Sequence[dict[str, Any]]):
    """Random forest accuracy against ``numTrees``, a line per fixed (features, other params); or None."""
    comps = [c for c in comparisons(results, "numTrees", ("random_forest",)) if _is_number(c.low_value)]
    if not comps:
        return None
    return _series_plot(comps, xlabel="Number of trees (numTrees)", legend_title="model, features, params",
                        title="Random forest: accuracy against number of trees")


def plot_accuracy_vs_depth(summary: dict[str, Any], results: Sequence[dict[str, Any]]):
    """Tree models' accuracy against ``maxDepth``, a line per fixed (model, features, other params); or None."""
    comps = [c for c in comparisons(results, "maxDepth", TREE_MODELS) if _is_number(c.low_value)]
    if not comps:
        return None
    return _series_plot(comps, xlabel="Maximum tree depth (maxDepth)", legend_title="model, features, params",
                        title="Tree models: accuracy against maximum depth")


def plot_accuracy_vs_centroids(summary: dict[str, Any], results: Sequence[dict[str, Any]]):
    """Accuracy of learned patch features against the dictionary size K, a line per (model, params); or None."""
    from matplotlib.figure import Figure

    lines: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for r in results:
        features = str(r.get("features", ""))
        if is_done(r) and features.startswith("patches"):
            k = int(features.partition(":")[2] or 1600)
            lines.setdefault(f"{r['model']} {format_params(r.get('params'))}".strip(), []).append((k, r))
    lines = {label: sorted(points, key=lambda p: p[0]) for label, points in lines.items() if len(points) >= 2}
    if not lines:
        return None
    fig = Figure(figsize=(9, 5))
    ax = fig.add_subplot()
    for label, points in lines.items():
        ax.errorbar([k for k, _ in points], [100 * r["accuracy"] for _, r in points],
                    yerr=[100 * _std(r) for _, r in points], marker="o", capsize=4, label=label)
    ax.set_xscale("log")
    ks = sorted({k for points in lines.values() for k, _ in points})
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("Dictionary size K (centroids; 2K flip-invariant features)")
    ax.set_ylabel("Test accuracy (%)")
    _percent_axis(ax.yaxis)
    ax.set_title("Learned patch features: accuracy against dictionary size")
    ax.grid(True, alpha=0.3)
    _legend_outside(ax, "model, params")
    return fig


def _annotate_point(ax, x: float, y: float, text: str, *, above: bool, color: str) -> None:
    # Text leans toward the middle of the axes so long scenario names stay inside the figure.
    x_lo, x_hi = (math.log10(v) for v in ax.get_xlim())
    right_half = (math.log10(x) - x_lo) > 0.5 * (x_hi - x_lo)
    ax.annotate(text, (x, y), xytext=(-20 if right_half else 20, 28 if above else -34), textcoords="offset points",
                ha="right" if right_half else "left", va="center", multialignment="left", fontsize=9, color=color,
                bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": color, "alpha": 0.9},
                arrowprops={"arrowstyle": "->", "color": color})


def plot_accuracy_vs_fit_time(summary: dict[str, Any], results: Sequence[dict[str, Any]]):
    """Every finished scenario: accuracy against fit time (log scale), by model; or None."""
    from matplotlib.figure import Figure

    timed = [r for r in ranked(results) if _fit(r) is not None and _fit(r) > 0]
    if not timed:
        return None
    fig = Figure(figsize=(9, 5.5))
    ax = fig.add_subplot()
    _scatter_by_model(ax, timed, _fit)
    _log_seconds_axis(ax)
    ax.set_xlabel("Fit time (seconds, log scale)")
    ax.set_ylabel("Test accuracy (%)")
    _percent_axis(ax.yaxis)
    untimed = len(ranked(results)) - len(timed)
    ax.set_title("Accuracy against fit time, every finished scenario"
                 + (f"\n({untimed} without a measured fit time not shown)" if untimed else ""))
    ax.grid(True, which="both", alpha=0.3)
    ax.margins(x=0.15, y=0.2)  # room for the annotations
    best = ranked(results)[0]
    if best is timed[0]:  # a best without a fit time is not on this plot, and no other point is "best"
        _annotate_point(ax, _fit(best), 100 * best["accuracy"],
                        f"best: {best.get('name')}\n{format_percent(best['accuracy'])}", above=True,
                        color="darkgreen")
    baseline = baseline_result(summary, results)
    if baseline is not None and baseline is not best and baseline in timed:
        _annotate_point(ax, _fit(baseline), 100 * baseline["accuracy"],
                        f"assignment baseline\n{format_percent(baseline['accuracy'])}", above=False,
                        color="dimgray")
    _legend_outside(ax, "model")
    return fig


def _cnn_setting(result: dict[str, Any], name: str) -> Any:
    # What the CNN trained with: its params, else the settings its run recorded (the defaults it used).
    params = result.get("params") or {}
    if name in params:
        return params[name]
    return ((result.get("cnn") or {}).get("settings") or {}).get(name)


def plot_accuracy_vs_epochs(summary: dict[str, Any], results: Sequence[dict[str, Any]]):
    """The CNN's test accuracy against its epochs, a line per widths (and other params), with the
    training accuracy per epoch of each line's longest run dashed beside it; or None."""
    from matplotlib.figure import Figure

    lines: dict[str, dict[float, dict[str, Any]]] = {}
    for r in ranked(results):  # best first: of two runs of one configuration, the better is shown
        epochs = _cnn_setting(r, "epochs")
        if r.get("model") != "cnn" or r.get("tuned") or not _is_number(epochs):
            continue
        widths = _cnn_setting(r, "widths")
        others = {k: v for k, v in (r.get("params") or {}).items() if k not in ("epochs", "widths")}
        label = " ".join(p for p in (f"widths={_format_value(widths) if widths else 'default'}",
                                     format_params(others)) if p)
        lines.setdefault(label, {}).setdefault(float(epochs), r)
    if not lines:
        return None
    fig = Figure(figsize=(9, 5))
    ax = fig.add_subplot()
    ticks: set[float] = set()
    curves = False
    for i, (label, by_epochs) in enumerate(sorted(lines.items())):
        points = sorted(by_epochs.items())
        color = f"C{i % 10}"
        ax.errorbar([e for e, _ in points], [100 * r["accuracy"] for _, r in points],
                    yerr=[100 * _std(r) for _, r in points], marker="o", capsize=4, color=color,
                    label=f"{label}: test accuracy")
        ticks.update(e for e, _ in points)
        longest_epochs, longest = points[-1]
        curve = [pt for pt in ((longest.get("cnn") or {}).get("curve") or [])
                 if isinstance(pt, dict) and _is_number(pt.get("epoch")) and _is_number(pt.get("train_accuracy"))]
        if curve:
            curves = True
            ax.plot([pt["epoch"] for pt in curve], [100 * pt["train_accuracy"] for pt in curve], linestyle="--",
                    marker=".", color=color, alpha=0.6,
                    label=f"{label}: training accuracy, {_format_value(longest_epochs)}-epoch run")
            ticks.update(float(pt["epoch"]) for pt in curve)
    ax.set_xticks(sorted(ticks), [_format_value(t) for t in sorted(ticks)])
    ax.set_xlabel("Epochs (passes over the training images)")
    ax.set_ylabel("Accuracy (%)")
    _percent_axis(ax.yaxis)
    ax.set_title("CNN: accuracy against epochs, one line per widths"
                 + ("\n(dashed: training accuracy per epoch, on augmented images and the run's own schedule)"
                    if curves else ""))
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.1, y=0.15)
    _legend_outside(ax, "CNN widths, params")
    return fig


def plot_accuracy_vs_minutes(summary: dict[str, Any], results: Sequence[dict[str, Any]]):
    """Every finished scenario with a total time: accuracy against minutes of features + fit + test
    (log scale), by model, with the scenarios no other beats on both joined; or None."""
    from matplotlib.figure import Figure

    order = ranked(results)
    timed = [r for r in order if (total_seconds(r) or 0) > 0]
    if not timed:
        return None
    minutes = {id(r): total_seconds(r) / 60 for r in timed}
    fig = Figure(figsize=(9, 5.5))
    ax = fig.add_subplot()
    _scatter_by_model(ax, timed, lambda r: minutes[id(r)])
    front = tradeoff(timed)
    if len(front) >= 2:
        ax.step([minutes[id(r)] for r in front], [100 * r["accuracy"] for r in front], where="post",
                color="gray", linestyle="--", linewidth=1, zorder=2,
                label="best accuracy for the time")
    _log_seconds_axis(ax)
    ax.set_xlabel("Total minutes: feature set (charged in full, though shared) + fit + test (log scale)")
    ax.set_ylabel("Test accuracy (%)")
    _percent_axis(ax.yaxis)
    untimed = len(order) - len(timed)
    ax.set_title("Accuracy against total time, every finished scenario"
                 + (f"\n({untimed} without a recorded feature-set time not shown)" if untimed else ""))
    ax.grid(True, which="both", alpha=0.3)
    ax.margins(x=0.15, y=0.2)  # room for the annotations
    best = order[0]
    if best is timed[0]:
        _annotate_point(ax, minutes[id(best)], 100 * best["accuracy"],
                        f"best: {best.get('name')}\n{format_percent(best['accuracy'])}", above=True,
                        color="darkgreen")
    baseline = baseline_result(summary, results)
    if baseline is not None and baseline is not best and id(baseline) in minutes:
        _annotate_point(ax, minutes[id(baseline)], 100 * baseline["accuracy"],
                        f"assignment baseline\n{format_percent(baseline['accuracy'])}", above=False,
                        color="dimgray")
    _legend_outside(ax, "model")
    return fig


def _valid_matrix(cm: Any) -> bool:
    return (isinstance(cm, list) and len(cm) > 0 and all(isinstance(row, list) and len(row) == len(cm) for row in cm)
            and all(_is_number(v) for row in cm for v in row))


def plot_confusion_matrix(summary: dict[str, Any], results: Sequence[dict[str, Any]]):
    """The best scenario's confusion matrix as row percentages (per true class); or None."""
    import numpy as np
    from matplotlib.figure import Figure

    order = ranked(results)
    if not order or not _valid_matrix(order[0].get("confusion_matrix")):
        return None
    best = order[0]
    cm = np.asarray(best["confusion_matrix"], dtype=float)
    totals = cm.sum(axis=1, keepdims=True)
    share = 100 * np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    names = _class_names(summary, len(cm))
    fig = Figure(figsize=(8.5, 7.5))
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=100)
    for i in range(len(cm)):
        for j in range(len(cm)):
            # Dark cells get white text; the switch point is where Blues gets dark enough.
            ax.text(j, i, f"{share[i, j]:.0f}", ha="center", va="center", fontsize=9,
                    color="white" if share[i, j] > 55 else "black")
    ax.set_xticks(range(len(cm)), labels=names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(cm)), labels=names)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    title = "\n".join(textwrap.wrap(f"Confusion matrix: {best.get('name')}", 70))
    ax.set_title(f"{title}\n(% of each true class; accuracy {format_percent(best['accuracy'])})")
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("Share of the true class (%)")
    _percent_axis(bar.ax.yaxis)
    return fig


def plot_per_class_accuracy(summary: dict[str, Any], results: Sequence[dict[str, Any]]):
    """Horizontal bars of the best scenario's per-class accuracy, and the baseline's beside it; or None."""
    from matplotlib.figure import Figure

    order = ranked(results)
    if not order or not isinstance(order[0].get("per_class_accuracy"), dict) or not order[0]["per_class_accuracy"]:
        return None
    best = order[0]
    names = [n for n in (summary.get("class_names") or []) if n in best["per_class_accuracy"]] \
        or list(best["per_class_accuracy"])
    series = [(f"best: {best.get('name')}", best, "C0")]
    baseline = baseline_result(summary, results)
    if baseline is not None and baseline is not best and isinstance(baseline.get("per_class_accuracy"), dict):
        series.append((f"assignment baseline: {baseline.get('name')}", baseline, "C7"))
    height = 0.8 / len(series)
    fig = Figure(figsize=(8.5, 1.2 + 0.55 * len(names) * len(series) ** 0.5))
    ax = fig.add_subplot()
    for k, (label, r, color) in enumerate(series):
        values = [100 * float(r["per_class_accuracy"].get(n, 0.0)) for n in names]
        ys = [i + (k - (len(series) - 1) / 2) * height for i in range(len(names))]
        ax.barh(ys, values, height=height, color=color, label=label)
        for y, v in zip(ys, values):
            # Near the right edge the value goes inside the bar so it is not clipped.
            inside = v > 88
            ax.text(v - 1 if inside else v + 1, y, f"{v:.1f}", va="center", ha="right" if inside else "left",
                    fontsize=8, color="white" if inside else "black")
    ax.set_yticks(range(len(names)), labels=names)
    ax.invert_yaxis()  # first class on top, as in the class list
    ax.set_xlim(0, 100)
    ax.set_xlabel("Accuracy on the class (recall, %)")
    _percent_axis(ax.xaxis)
    ax.set_title("Per-class accuracy on the test set")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.07), ncol=1, frameon=False)
    return fig


PLOTTERS = {
    "accuracy_vs_trees.png": plot_accuracy_vs_trees,
    "accuracy_vs_depth.png": plot_accuracy_vs_depth,
    "accuracy_vs_centroids.png": plot_accuracy_vs_centroids,
    "accuracy_vs_epochs.png": plot_accuracy_vs_epochs,
    "accuracy_vs_fit_time.png": plot_accuracy_vs_fit_time,
    "accuracy_vs_minutes.png": plot_accuracy_vs_minutes,
    "confusion_matrix.png": plot_confusion_matrix,
    "per_class_accuracy.png": plot_per_class_accuracy,
}


def matplotlib_available() -> bool:
    """Whether plots can be drawn (matplotlib is optional: the report is still written without it)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _png_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    # Figure.savefig with format="png" renders through Agg: no pyplot, no global backend, no display.
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", facecolor="white")
    return buffer.getvalue()


def render_plots(summary: dict[str, Any], results: Sequence[dict[str, Any]]) -> dict[str, bytes]:
    """PNG bytes by file name, for the plots that have data (the others are skipped, not drawn empty)."""
    if not matplotlib_available():
        return {}
    pngs = {}
    for name, plotter in PLOTTERS.items():
        fig = plotter(summary, results)
        if fig is not None:
            pngs[name] = _png_bytes(fig)
    return pngs


# ----------------------------------------------------------------------------------------------
# Markdown and HTML


@dataclass(frozen=True)
class ReportContent:
    """Everything a report shows, once, so the Markdown and HTML versions cannot disagree."""

    title: str
    header: list[tuple[str, str]]
    summary: list[str]
    table: list[list[str]]
    table_note: str
    failures: list[tuple[str, str]]  # (scenario, error)
    plots: dict[str, bytes]  # file name under plots/ -> PNG
    plot_note: str | None = None


def _failure_reason(result: dict[str, Any]) -> str:
    if result.get("error"):
        return str(result["error"])
    return "finished without an accuracy" if result.get("status") == "done" else "no error recorded"


def build_content(summary: dict[str, Any], results: Sequence[dict[str, Any]],
                  plots: dict[str, bytes]) -> ReportContent:
    """The report's content from the measured results and the rendered plots."""
    failures = [(str(r.get("name") or r.get("key")), _failure_reason(r)) for r in failed(results)]
    note = None if matplotlib_available() else "Plots skipped: matplotlib is not installed."
    return ReportContent(title=f"Experiment report: {summary.get('name', 'unnamed')}",
                         header=header_items(summary, results), summary=summary_lines(summary, results),
                         table=results_table(results), table_note=_table_note(results), failures=failures,
                         plots=plots, plot_note=note)


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*|<>[]"})


def _md(text: str) -> str:
    # Scenario names and errors are data: escape what Markdown would otherwise read as syntax.
    return " ".join(text.split()).translate(_MD_SPECIAL)


def _md_fence(text: str) -> str:
    # The fence must be longer than any backtick run inside, or the error text would close it.
    longest = max((len(run) for run in _backtick_runs(text)), default=0)
    return "`" * max(3, longest + 1)


def _backtick_runs(line: str) -> list[str]:
    runs, current = [], ""
    for ch in line:
        if ch == "`":
            current += ch
        elif current:
            runs.append(current)
            current = ""
    return runs + ([current] if current else [])


def _error_excerpt(error: str, max_lines: int = 25, max_chars: int = 3000) -> str:
    # Spark errors carry long JVM traces; the head holds the cause, the rest is in the logs.
    lines = error.strip().splitlines()
    text = "\n".join(lines[:max_lines])
    if len(text) > max_chars:
        text = text[:max_chars]
    return text + ("\n…" if len(lines) > max_lines or len(error.strip()) > len(text) else "")


def render_markdown(content: ReportContent) -> str:
    """``REPORT.md``: header, summary, results table, failures and plot links (``plots/…``)."""
    out = [f"# {_md(content.title)}", ""]
    out += [f"- **{_md(label)}:** {_md(value)}" for label, value in content.header]
    out += ["", "## What helped", ""] + [f"- {_md(line)}" for line in content.summary]
    out += ["", "## Results", ""]
    if content.table:
        out.append("| " + " | ".join(TABLE_HEADERS) + " |")
        out.append("|" + "|".join("---:" if h in _NUMERIC else "---" for h in TABLE_HEADERS) + "|")
        out += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in content.table]
        out += ["", _md(content.table_note)]
    else:
        out.append("No scenario finished.")
    if content.failures:
        out += ["", "## Failed scenarios", ""]
        for name, error in content.failures:
            excerpt = _error_excerpt(error)
            fence = _md_fence(excerpt)
            out += [f"- **{_md(name)}**", "", f"  {fence}text"]
            out += [f"  {line}" for line in excerpt.splitlines()]
            out += [f"  {fence}", ""]
    out += ["", "## Plots", ""]
    if content.plot_note:
        out += [_md(content.plot_note), ""]
    for name in content.plots:
        caption = PLOT_TITLES.get(name, name)
        out += [f"### {_md(caption)}", "", f"![{_md(caption)}](plots/{name})", ""]
    return "\n".join(out).rstrip() + "\n"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 72rem; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; }
table { border-collapse: collapse; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } tr:nth-child(even) td { background: #fafafa; }
td.num, th.num { text-align: right; white-space: nowrap; }
pre { background: #f6f6f6; padding: .6rem; overflow-x: auto; font-size: .8rem; }
figure { margin: 1.5rem 0; } img { max-width: 100%; height: auto; }
figcaption { font-weight: 600; margin-bottom: .4rem; } .note { color: #555; font-size: .9rem; }
"""

def _cell_class(header: str) -> str:
    return ' class="num"' if header in _NUMERIC else ""


def render_html(content: ReportContent) -> str:
    """``report.html``: the same content, self-contained (inline CSS, plots as base64 data URIs)."""
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{e(content.title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
           f"<h1>{e(content.title)}</h1>", '<dl class="meta">']
    out += [f"<dt>{e(label)}</dt><dd>{e(value)}</dd>" for label, value in content.header]
    out += ["</dl>", "<h2>What helped</h2>", "<ul>"] + [f"<li>{e(line)}</li>" for line in content.summary]
    out += ["</ul>", "<h2>Results</h2>"]
    if content.table:
        out.append("<table>")
        out.append("<tr>" + "".join(f"<th{_cell_class(h)}>{e(h)}</th>" for h in TABLE_HEADERS) + "</tr>")
        for row in content.table:
            out.append("<tr>" + "".join(f"<td{_cell_class(h)}>{e(cell)}</td>"
                                        for h, cell in zip(TABLE_HEADERS, row)) + "</tr>")
        out += ["</table>", f'<p class="note">{e(content.table_note)}</p>']
    else:
        out.append("<p>No scenario finished.</p>")
    if content.failures:
        out += ["<h2>Failed scenarios</h2>", "<ul>"]
        out += [f"<li><strong>{e(name)}</strong><pre>{e(_error_excerpt(error))}</pre></li>"
                for name, error in content.failures]
        out.append("</ul>")
    out.append("<h2>Plots</h2>")
    if content.plot_note:
        out.append(f'<p class="note">{e(content.plot_note)}</p>')
    for name, png in content.plots.items():
        caption = PLOT_TITLES.get(name, name)
        data = base64.b64encode(png).decode("ascii")
        out.append(f'<figure><figcaption>{e(caption)}</figcaption>'
                   f'<img src="data:image/png;base64,{data}" alt="{e(caption)}"></figure>')
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------
# Writing


def _write_atomic(path: Path, data: bytes) -> None:
    # A killed run must leave the old file or the new one, never half of one: write beside, then rename.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_report(summary: dict[str, Any], results: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Write ``plots/*.png``, ``REPORT.md`` and ``report.html`` into ``out_dir``; returns the paths written.

    Plots without data are skipped, and a plot of that name left by an earlier report is removed
    so the folder never shows a stale picture beside the new numbers.
    """
    out_dir = Path(out_dir)
    plots_dir = out_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    plots = render_plots(summary, results)
    written = []
    for name, png in plots.items():
        _write_atomic(plots_dir / name, png)
        written.append(plots_dir / name)
    for name in PLOTTERS.keys() - plots.keys():
        with contextlib.suppress(FileNotFoundError):
            (plots_dir / name).unlink()
    content = build_content(summary, results, plots)
    for name, text in (("REPORT.md", render_markdown(content)), ("report.html", render_html(content))):
        _write_atomic(out_dir / name, text.encode("utf-8"))
        written.append(out_dir / name)
    return written
