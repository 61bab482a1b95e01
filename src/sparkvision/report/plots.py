"""The experiment report's plots: matplotlib figures drawn from the results, rendered to PNG bytes (no pyplot, no display)."""

from __future__ import annotations

import io
import math
import textwrap
from typing import Any, Callable, Sequence
from sparkvision import defaults
from sparkvision.report.analysis import (TREE_MODELS, Comparison, accuracy_std, baseline_result, comparisons,
                                         fit_seconds, format_params, format_percent, format_value, is_done,
                                         is_number, ranked, total_seconds, tradeoff)

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
                    yerr=[100 * accuracy_std(r) for _, r in c.points], marker="o", capsize=4, label=c.label)
    ax.set_xticks(sorted(xs))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Test accuracy (%)")
    _percent_axis(ax.yaxis)
    spread = any(accuracy_std(r) > 0 for c in comps for _, r in c.points)
    ax.set_title(title + ("\n(error bars: ± 1 standard deviation over repeats)" if spread else ""))
    ax.grid(True, alpha=0.3)
    _legend_outside(ax, legend_title)
    return fig


def plot_accuracy_vs_trees(summary: dict[str, Any], results: Sequence[dict[str, Any]]):
    """Random forest accuracy against ``numTrees``, a line per fixed (features, other params); or None."""
    comps = [c for c in comparisons(results, "numTrees", ("random_forest",)) if is_number(c.low_value)]
    if not comps:
        return None
    return _series_plot(comps, xlabel="Number of trees (numTrees)", legend_title="model, features, params",
                        title="Random forest: accuracy against number of trees")


def plot_accuracy_vs_depth(summary: dict[str, Any], results: Sequence[dict[str, Any]]):
    """Tree models' accuracy against ``maxDepth``, a line per fixed (model, features, other params); or None."""
    comps = [c for c in comparisons(results, "maxDepth", TREE_MODELS) if is_number(c.low_value)]
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
            k = int(features.partition(":")[2] or defaults.CENTROIDS)
            lines.setdefault(f"{r['model']} {format_params(r.get('params'))}".strip(), []).append((k, r))
    lines = {label: sorted(points, key=lambda p: p[0]) for label, points in lines.items() if len(points) >= 2}
    if not lines:
        return None
    fig = Figure(figsize=(9, 5))
    ax = fig.add_subplot()
    for label, points in lines.items():
        ax.errorbar([k for k, _ in points], [100 * r["accuracy"] for _, r in points],
                    yerr=[100 * accuracy_std(r) for _, r in points], marker="o", capsize=4, label=label)
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

    timed = [r for r in ranked(results) if fit_seconds(r) is not None and fit_seconds(r) > 0]
    if not timed:
        return None
    fig = Figure(figsize=(9, 5.5))
    ax = fig.add_subplot()
    _scatter_by_model(ax, timed, fit_seconds)
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
        _annotate_point(ax, fit_seconds(best), 100 * best["accuracy"],
                        f"best: {best.get('name')}\n{format_percent(best['accuracy'])}", above=True,
                        color="darkgreen")
    baseline = baseline_result(summary, results)
    if baseline is not None and baseline is not best and baseline in timed:
        _annotate_point(ax, fit_seconds(baseline), 100 * baseline["accuracy"],
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
        if r.get("model") != "cnn" or r.get("tuned") or not is_number(epochs):
            continue
        widths = _cnn_setting(r, "widths")
        others = {k: v for k, v in (r.get("params") or {}).items() if k not in ("epochs", "widths")}
        label = " ".join(p for p in (f"widths={format_value(widths) if widths else 'default'}",
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
                    yerr=[100 * accuracy_std(r) for _, r in points], marker="o", capsize=4, color=color,
                    label=f"{label}: test accuracy")
        ticks.update(e for e, _ in points)
        longest_epochs, longest = points[-1]
        curve = [pt for pt in ((longest.get("cnn") or {}).get("curve") or [])
                 if isinstance(pt, dict) and is_number(pt.get("epoch")) and is_number(pt.get("train_accuracy"))]
        if curve:
            curves = True
            ax.plot([pt["epoch"] for pt in curve], [100 * pt["train_accuracy"] for pt in curve], linestyle="--",
                    marker=".", color=color, alpha=0.6,
                    label=f"{label}: training accuracy, {format_value(longest_epochs)}-epoch run")
            ticks.update(float(pt["epoch"]) for pt in curve)
    ax.set_xticks(sorted(ticks), [format_value(t) for t in sorted(ticks)])
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
            and all(is_number(v) for row in cm for v in row))


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


def _png_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    # Figure.savefig with format="png" renders through Agg: no pyplot, no global backend, no display.
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", facecolor="white")
    return buffer.getvalue()


def render_plots(summary: dict[str, Any], results: Sequence[dict[str, Any]]) -> dict[str, bytes]:
    """PNG bytes by file name, for the plots that have data (the others are skipped, not drawn empty)."""
    pngs = {}
    for name, plotter in PLOTTERS.items():
        fig = plotter(summary, results)
        if fig is not None:
            pngs[name] = _png_bytes(fig)
    return pngs
