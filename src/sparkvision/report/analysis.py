"""The analysis behind an experiment's report: rankings, comparisons and the written summary
(the plots are :mod:`~sparkvision.report.plots`, the files :mod:`~sparkvision.report.render`).

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

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence


TREE_MODELS = ("random_forest", "decision_tree", "gbt")

#: A change smaller than this (in accuracy points) is never called an improvement, whatever the spread:
#: one point of a 10 000-image test set is 100 images, and 0.5 points is within split-to-split noise.
NOISE_FLOOR_POINTS = 0.5

#: "Cost" looks for the fastest scenario at most this many points below the best.
NEAR_BEST_POINTS = 1.0


TABLE_HEADERS = ["Rank", "Scenario", "Model", "Features", "Params", "Accuracy", "Macro F1",
                 "Fit s", "Predict s", "Model MB", "Features s", "Total s"]
NUMERIC_COLUMNS = {"Rank", "Accuracy", "Macro F1", "Fit s", "Predict s", "Model MB", "Features s",
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


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}={format_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def format_params(params: dict[str, Any] | None) -> str:
    """Parameters as ``'numTrees=10 maxDepth=5'``, in the order the experiment file gave them."""
    return " ".join(f"{k}={format_value(v)}" for k, v in (params or {}).items())


# ----------------------------------------------------------------------------------------------
# Selecting results


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_done(result: dict[str, Any]) -> bool:
    """Whether a scenario finished with an accuracy that can be ranked."""
    return result.get("status") == "done" and is_number(result.get("accuracy"))


def ranked(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The finished scenarios, best accuracy first; ties go to the faster fit, then the name."""
    return sorted((r for r in results if is_done(r)),
                  key=lambda r: (-r["accuracy"], fit_seconds(r) if fit_seconds(r) is not None else math.inf,
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


def fit_seconds(result: dict[str, Any]) -> float | None:
    value = result.get("fit_seconds")
    return float(value) if is_number(value) else None


def _fit_ratio(numerator: dict[str, Any], denominator: dict[str, Any]) -> float | None:
    # A zero fit time is a timer too coarse for the model, not a free model: no ratio from it.
    top, bottom = fit_seconds(numerator), fit_seconds(denominator)
    return top / bottom if top and bottom else None


def total_seconds(result: dict[str, Any]) -> float | None:
    """A scenario's whole cost: its feature set's computation (charged in full, though shared), its
    fit and its test predictions; None when the feature set's time was not recorded."""
    value = result.get("total_seconds")
    if is_number(value):
        return float(value)
    parts = [result.get(k) for k in ("features_seconds", "fit_seconds", "predict_seconds")]
    return float(sum(parts)) if all(is_number(v) for v in parts) else None


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


def accuracy_std(result: dict[str, Any]) -> float:
    value = result.get("accuracy_std")
    return float(value) if is_number(value) else 0.0


def noise_threshold_points(*results: dict[str, Any]) -> float:
    """The smallest accuracy change (points) worth calling a difference between these scenarios.

    Twice the larger standard deviation over repeats, and never less than
    :data:`NOISE_FLOOR_POINTS` (one repeat has no measured spread, but still has noise).
    """
    return max(NOISE_FLOOR_POINTS, 2 * 100 * max((accuracy_std(r) for r in results), default=0.0))


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
    if is_number(value):
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
        if not (is_number(value) or isinstance(value, str)):
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
        peak_note = f"; best at {c.param}={format_value(peak_value)} ({format_percent(peak['accuracy'])})"
    values = " → ".join(format_value(v) for v, _ in c.points)
    return f"{topic} ({c.label}): {c.param} {values} {outcome}{peak_note}{_time_phrase(c.fit_ratio)}."


def _best_sentence(best: dict[str, Any]) -> str:
    text = (f"Best: {best.get('name')} with {format_accuracy(best['accuracy'], accuracy_std(best), _repeat_count(best))} "
            f"accuracy")
    if is_number(best.get("f1_macro")):
        text += f" (macro F1 {format_percent(best['f1_macro'])})"
    if fit_seconds(best) is not None:
        text += f", fitted in {format_seconds(fit_seconds(best))} s"
    if total_seconds(best) is not None:
        text += f" ({format_duration(total_seconds(best))} in all with its features and test predictions)"
    tuned = best.get("tuned")
    if isinstance(tuned, dict):
        text += f"; tuned by {tuned.get('method', 'search')} to {format_params(tuned.get('best_params'))}"
        if is_number(tuned.get("validation_accuracy")):
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
             + (f" in {format_seconds(fit_seconds(r))} s" if fit_seconds(r) is not None else "")
             for i, (model, r) in enumerate(best_of.items(), start=1)]
    return "Models, best scenario of each: " + "; ".join(parts) + "."


def _cost_sentence(order: list[dict[str, Any]]) -> str | None:
    best = order[0]
    if total_seconds(best) is not None:
        return _total_cost_sentence(order)
    if fit_seconds(best) is None:
        return None
    near = [r for r in order if 100 * (best["accuracy"] - r["accuracy"]) <= NEAR_BEST_POINTS and fit_seconds(r) is not None]
    cheapest = min(near, key=lambda r: fit_seconds(r))
    if cheapest is best or fit_seconds(cheapest) >= fit_seconds(best):
        return None
    speedup = f", {format_ratio(fit_seconds(best) / fit_seconds(cheapest))} faster" if fit_seconds(cheapest) > 0 else ""
    return (f"Cost: {cheapest.get('name')} reaches {format_percent(cheapest['accuracy'])} "
            f"({points_between(best['accuracy'], cheapest['accuracy'])} from the best) and fits in "
            f"{format_seconds(fit_seconds(cheapest))} s instead of {format_seconds(fit_seconds(best))} s{speedup}.")


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
                     format_accuracy(r["accuracy"], accuracy_std(r), _repeat_count(r)),
                     format_percent(f1) if is_number(f1) else "–",
                     format_seconds(fit_seconds(r)), format_seconds(r.get("predict_seconds")),
                     format_megabytes(r.get("model_bytes")),
                     "none" if r.get("reads_images") else format_seconds(r.get("features_seconds")),
                     format_seconds(total_seconds(r))])
    return rows


def table_note(results: Sequence[dict[str, Any]]) -> str:
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
        if not r.get("reads_images") and is_number(r.get("features_seconds")):
            times.setdefault(str(r.get("features")), []).append(float(r["features_seconds"]))
    parts = []
    for features, values in sorted(times.items(), key=lambda item: _order_key(item[0])):
        low, high = min(values), max(values)
        shown = format_duration(low) if format_duration(low) == format_duration(high) else \
            f"{format_duration(low)} to {format_duration(high)}"
        parts.append(f"{features} {shown}")
    return ", ".join(parts)
