"""The experiment report from synthetic results: files, self-contained HTML, and a summary whose
sentences follow the numbers. No Spark."""

from __future__ import annotations

import re

import pytest

from sparkvision.report import analysis, plots
from sparkvision.report.analysis import comparisons, summary_lines
from sparkvision.report.render import write_report

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALL_PLOTS = {"accuracy_vs_trees.png", "accuracy_vs_depth.png", "accuracy_vs_fit_time.png",
             "confusion_matrix.png", "per_class_accuracy.png"}


def scenario(model: str, features: str, params: dict, accuracy: float, fit: float, *, std: float = 0.004,
             group: str = "trees", **extra) -> dict:
    """A finished result dict as the experiment runner writes it, with consistent derived metrics."""
    name = f"{model} {features} " + " ".join(f"{k}={v}" for k, v in params.items())
    per_class = {c: min(1.0, max(0.0, accuracy + (i - 4.5) * 0.03)) for i, c in enumerate(CLASSES)}
    confusion = []
    for i, c in enumerate(CLASSES):
        hits = round(1000 * per_class[c])
        row = [(1000 - hits) // 9] * 10
        row[i] = hits
        row[(i + 1) % 10] += 1000 - sum(row)  # rows sum to the 1000 test images of each class
        confusion.append(row)
    repeats = [{"seed": s, "accuracy": accuracy + d, "f1_macro": accuracy - 0.01 + d, "fit_seconds": fit,
                "predict_seconds": fit / 20} for s, d in zip((1, 2, 3), (-std, 0.0, std))]
    result = {"key": name.replace(" ", "_"), "name": name, "group": group, "features": features, "model": model,
              "params": params, "status": "done", "error": None, "accuracy": accuracy, "accuracy_std": std,
              "f1_macro": accuracy - 0.01, "f1_macro_std": std, "repeats": repeats,
              "per_class_accuracy": per_class, "confusion_matrix": confusion, "fit_seconds": fit,
              "predict_seconds": fit / 20, "model_bytes": int(fit * 20_000), "tuned": None}
    result.update(extra)
    return result


def rf(trees: int, depth: int, accuracy: float, fit: float, features: str = "gray", **extra) -> dict:
    return scenario("random_forest", features, {"numTrees": trees, "maxDepth": depth}, accuracy, fit, **extra)


OOM = "java.lang.OutOfMemoryError: Java heap space <driver> & executor\n\tat org.apache.spark.ml.Foo.fit(Foo.scala:1)"


def experiment() -> tuple[dict, list[dict]]:
    """Random forests with 10/50/100 trees at depth 5 (clear gain) and depth 10 (flat), a decision tree
    at two depths, logistic regression in gray and rgb, an rgb forest, and one failed MLP."""
    results = [
        rf(10, 5, 0.300, 10.0), rf(50, 5, 0.340, 45.0), rf(100, 5, 0.360, 85.0),
        rf(10, 10, 0.330, 20.0), rf(50, 10, 0.3305, 90.0), rf(100, 10, 0.332, 170.0),
        rf(100, 10, 0.400, 300.0, features="rgb", group="features"),
        scenario("decision_tree", "gray", {"maxDepth": 5}, 0.250, 3.0, group="depth"),
        scenario("decision_tree", "gray", {"maxDepth": 10}, 0.270, 6.0, group="depth"),
        scenario("logistic_regression", "gray", {"regParam": 0.01}, 0.380, 30.0, group="linear"),
        scenario("logistic_regression", "rgb", {"regParam": 0.01}, 0.395, 40.0, group="linear"),
        {"key": "mlp_gray", "name": "mlp gray layers=[1024,256,10]", "group": "neural", "features": "gray",
         "model": "mlp", "params": {"layers": [1024, 256, 10]}, "status": "failed", "error": OOM},
    ]
    summary = {"name": "cifar-sweep", "data": "../shared/data/cifar-10-batches-py", "num_train": 40_000,
               "num_test": 10_000, "evaluated_on": "random 0.2 hold-out, seed 42", "class_names": CLASSES,
               "seconds_total": 3725.0, "baseline_key": "random_forest_gray_numTrees=10_maxDepth=5",
               "versions": {"python": "3.11.2", "spark": "4.3.0", "sparkvision": "0.1.0"}}
    return summary, results


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One full report (plots need matplotlib), its directory and the paths it returned."""
    pytest.importorskip("matplotlib")
    summary, results = experiment()
    out = tmp_path_factory.mktemp("report") / "nested" / "out"  # a folder that does not exist yet
    return out, write_report(summary, results, out)


def table_rows(markdown: str) -> list[list[str]]:
    """The results table's body rows, split into cells."""
    lines = markdown.split("## Results", 1)[1].splitlines()
    rows = [line for line in lines if line.startswith("| ")][1:]  # drop the header row
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]


def trees_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("Trees")]


# --- files -------------------------------------------------------------------------------------


def test_writes_every_file_and_returns_their_paths(written):
    out, paths = written
    expected = {out / "plots" / name for name in ALL_PLOTS} | {out / "REPORT.md", out / "report.html"}
    assert set(paths) == expected
    assert all(p.is_file() for p in expected)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # atomic writes leave no temp files


def test_plots_are_real_pngs_of_readable_size(written):
    out, _ = written
    for name in ALL_PLOTS:
        data = (out / "plots" / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
        assert len(data) > 10_000, name
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert 500 <= width <= 2000 and 300 <= height <= 2000, (name, width, height)


def test_html_is_self_contained_and_escaped(written):
    out, _ = written
    page = (out / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert "<link" not in page and "<script" not in page
    assert page.count('src="data:image/png;base64,') == len(ALL_PLOTS)
    assert "&lt;driver&gt; &amp; executor" in page and "<driver>" not in page


def test_markdown_links_the_plots_relatively(written):
    out, _ = written
    text = (out / "REPORT.md").read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(links) == sorted(f"plots/{name}" for name in ALL_PLOTS)


def test_markdown_header_shows_the_run(written):
    out, _ = written
    text = (out / "REPORT.md").read_text(encoding="utf-8")
    assert text.startswith("# Experiment report: cifar-sweep\n")
    for fragment in ("40,000", "10,000", "random 0.2 hold-out, seed 42", "1 h 02 min", "spark 4.3.0",
                     "12 (11 done, 1 failed)"):
        assert fragment in text


def test_results_table_is_sorted_by_accuracy(written):
    out, _ = written
    rows = table_rows((out / "REPORT.md").read_text(encoding="utf-8"))
    assert len(rows) == 11 and all(len(row) == len(analysis.TABLE_HEADERS) for row in rows)
    accuracies = [float(row[5].split("%")[0]) for row in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    assert [row[0] for row in rows] == [str(i) for i in range(1, 12)]
    assert rows[0][1] == "random_forest rgb numTrees=100 maxDepth=10" and rows[0][5] == "40.0 % ± 0.4"
    assert rows[0][9] == "6.00"  # 6 000 000 bytes in MB


def test_failed_scenarios_are_listed_with_their_error(written):
    out, _ = written
    text = (out / "REPORT.md").read_text(encoding="utf-8")
    failures = text.split("## Failed scenarios", 1)[1].split("## Plots", 1)[0]
    assert "mlp gray layers=" in failures and "java.lang.OutOfMemoryError: Java heap space" in failures
    assert "mlp gray" not in text.split("## Results", 1)[1].split("## Failed", 1)[0]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "java.lang.OutOfMemoryError" in page


def test_a_plot_without_data_is_skipped_and_a_stale_one_removed(tmp_path):
    pytest.importorskip("matplotlib")
    summary, results = experiment()
    write_report(summary, results, tmp_path)
    no_forests = [r for r in results if r["model"] != "random_forest"]
    paths = write_report({**summary, "baseline_key": None}, no_forests, tmp_path)
    names = {p.name for p in paths}
    assert "accuracy_vs_trees.png" not in names and not (tmp_path / "plots" / "accuracy_vs_trees.png").exists()
    assert "accuracy_vs_depth.png" in names  # the decision tree still has two depths
    text = (tmp_path / "REPORT.md").read_text(encoding="utf-8")
    assert "accuracy_vs_trees" not in text
    assert (tmp_path / "report.html").read_text(encoding="utf-8").count("data:image/png;base64") == len(names) - 2


def test_nothing_finished_still_writes_a_report(tmp_path):
    summary, results = experiment()
    paths = write_report(summary, [results[-1]], tmp_path)
    assert {p.name for p in paths} == {"REPORT.md", "report.html"}
    text = (tmp_path / "REPORT.md").read_text(encoding="utf-8")
    assert "No scenario finished" in text and "OutOfMemoryError" in text


# --- the written summary -------------------------------------------------------------------------


def test_summary_names_the_best_and_its_gain_over_the_baseline():
    summary, results = experiment()
    lines = summary_lines(summary, results)
    assert lines[0].startswith("Best: random_forest rgb numTrees=100 maxDepth=10 with 40.0 % ± 0.4 accuracy")
    assert "fitted in 300 s" in lines[0]
    # 40.0 % against the baseline's 30.0 %, fitted in 300 s against 10 s
    assert lines[1] == ("That is +10.0 points over the assignment baseline (random_forest gray numTrees=10 "
                        "maxDepth=5, 30.0 %), at 30× its fit time.")


def test_summary_reports_the_tree_count_effect_with_its_numbers():
    summary, results = experiment()
    trees = trees_lines(summary_lines(summary, results))
    assert len(trees) == 2
    deep5 = next(line for line in trees if "maxDepth=5" in line)
    assert "numTrees 10 → 50 → 100 improved accuracy (+6.0 points, 30.0 % → 36.0 %)" in deep5
    assert "8.5× the fit time" in deep5


def test_summary_says_little_difference_when_the_change_is_within_noise():
    summary, results = experiment()
    deep10 = next(line for line in trees_lines(summary_lines(summary, results)) if "maxDepth=10" in line)
    # +0.2 points with a 0.4-point spread: under the 0.8-point threshold
    assert "made little difference (+0.2 points" in deep10 and "noise threshold 0.8 points" in deep10
    assert "improved" not in deep10


def test_a_tiny_change_is_not_an_improvement_even_without_spread():
    a, b = rf(10, 5, 0.300, 10.0, std=0.0), rf(100, 5, 0.303, 80.0, std=0.0)
    (c,) = comparisons([a, b], "numTrees")
    assert c.threshold_points == analysis.NOISE_FLOOR_POINTS and c.verdict == "made little difference"
    (c,) = comparisons([a, rf(100, 5, 0.290, 80.0, std=0.0)], "numTrees")
    assert c.verdict == "reduced" and analysis.format_points(c.delta) == "-1.0 points"


def test_no_trees_sentence_with_a_single_tree_count():
    summary, results = experiment()
    one_count = [r for r in results if r["model"] != "random_forest" or r["params"]["numTrees"] == 10]
    lines = summary_lines(summary, one_count)
    assert trees_lines(lines) == []
    assert any(line.startswith("Depth (random_forest, gray, numTrees=10)") for line in lines)


def test_summary_reports_depth_and_features():
    summary, results = experiment()
    lines = summary_lines(summary, results)
    depth = [line for line in lines if line.startswith("Depth")]
    assert any("decision_tree, gray" in line and "+2.0 points, 25.0 % → 27.0 %" in line for line in depth)
    features = [line for line in lines if line.startswith("Features")]
    assert len(features) == 2  # the rgb forest and the rgb logistic regression have gray twins
    forest = next(line for line in features if "random_forest" in line)
    assert "features gray → rgb improved accuracy (+6.8 points, 33.2 % → 40.0 %)" in forest
    assert "1.8× the fit time" in forest


def test_summary_ranks_models_and_finds_a_cheaper_near_best():
    summary, results = experiment()
    lines = summary_lines(summary, results)
    models = next(line for line in lines if line.startswith("Models"))
    assert models == ("Models, best scenario of each: 1. random_forest 40.0 % in 300 s; "
                      "2. logistic_regression 39.5 % in 40.0 s; 3. decision_tree 27.0 % in 6.0 s.")
    cost = next(line for line in lines if line.startswith("Cost"))
    assert "logistic_regression rgb regParam=0.01 reaches 39.5 % (-0.5 points from the best)" in cost
    assert "7.5× faster" in cost
    assert lines[-1].startswith("1 of 12 scenarios failed")


def test_sentences_need_their_data():
    summary, results = experiment()
    lone = [results[0]]
    lines = summary_lines({**summary, "baseline_key": None}, lone)
    assert len(lines) == 1 and lines[0].startswith("Best: ")
    assert summary_lines(summary, lone)[1] == "The best scenario is the assignment baseline itself."


def test_tuned_scenarios_are_reported_but_not_compared():
    tuned = rf(100, 5, 0.36, 85.0, tuned={"method": "cross-validation", "best_params": {"maxDepth": 10},
                                          "validation_accuracy": 0.35})
    assert comparisons([rf(10, 5, 0.30, 10.0), tuned], "numTrees") == []
    row = analysis.results_table([tuned])[0]
    assert "tuned by cross-validation: maxDepth=10" in row[4]


def test_single_repeat_has_no_spread_in_the_table():
    one = rf(10, 5, 0.3, 10.0, std=0.0)
    one["repeats"] = one["repeats"][:1]
    assert analysis.results_table([one])[0][5] == "30.0 %"


def test_markdown_escapes_pipes_in_names(tmp_path):
    odd = rf(10, 5, 0.3, 10.0)
    odd["name"] = "forest | with a pipe"
    write_report({"name": "x", "class_names": CLASSES}, [odd], tmp_path)
    (row,) = table_rows((tmp_path / "REPORT.md").read_text(encoding="utf-8"))
    assert len(row) == len(analysis.TABLE_HEADERS) and row[1] == r"forest \| with a pipe"


def test_differences_match_the_rounded_percentages_shown():
    (c,) = comparisons([rf(50, 5, 0.34, 45.0), rf(50, 10, 0.3305, 90.0)], "maxDepth")
    assert "-0.9 points, 34.0 % → 33.1 %" in analysis.describe_comparison("Depth", c)


def test_a_zero_fit_time_gives_no_time_ratio():
    (c,) = comparisons([rf(10, 5, 0.30, 10.0), rf(100, 5, 0.36, 0.0)], "numTrees")
    assert c.fit_ratio is None and "fit time" not in analysis.describe_comparison("Trees", c)


def test_a_failed_baseline_is_said_and_a_missing_one_is_not():
    summary, results = experiment()
    without_baseline = [r for r in results if r["key"] != summary["baseline_key"]]
    failed_baseline = without_baseline + [{"key": summary["baseline_key"], "name": "the baseline", "status": "failed",
                                           "error": "boom"}]
    assert "The assignment baseline (the baseline) failed, so nothing is compared with it." in \
        summary_lines(summary, failed_baseline)
    assert not any("baseline" in line for line in summary_lines(summary, without_baseline))


def test_feature_set_sizes_compare_in_numeric_order():
    from sparkvision.report.analysis import comparisons

    results = [{"key": f, "name": "patches", "status": "done", "model": "ridge", "features": f, "params": {},
                "accuracy": a, "fit_seconds": 1.0} for f, a in (("patches:1600", 0.73), ("patches:100", 0.62),
                                                               ("patches:400", 0.68))]
    (c,) = comparisons(results, "features")
    assert [v for v, _ in c.points] == ["patches:100", "patches:400", "patches:1600"]


# --- whole costs and the CNN ---------------------------------------------------------------------


def costed(results: list[dict], features_seconds: dict[str, float]) -> list[dict]:
    """Results as the runner records them now: each charged its feature set's computation."""
    out = []
    for r in results:
        if r.get("status") == "done":
            f = features_seconds[r["features"]]
            r = {**r, "reads_images": False, "features_seconds": f,
                 "total_seconds": f + r["fit_seconds"] + r["predict_seconds"]}
        out.append(r)
    return out


def ridge(features: str, reg: float, accuracy: float, fit: float) -> dict:
    return scenario("ridge", features, {"regParam": reg}, accuracy, fit, group="patches")


def cnn(epochs: int, widths: list[int], accuracy: float, fit: float) -> dict:
    curve = [{"epoch": e, "loss": 2.0 - 0.2 * e, "train_accuracy": accuracy * e / epochs - 0.05,
              "seconds": fit / epochs} for e in range(1, epochs + 1)]
    return scenario("cnn", "rgb", {"epochs": epochs, "widths": widths}, accuracy, fit, group="cnn",
                    reads_images=True, features_seconds=0.0, total_seconds=fit + fit / 20,
                    cnn={"curve": curve, "settings": {"epochs": float(epochs), "widths": widths}})


FEATURE_TIMES = {"gray": 4.0, "patches:400": 40.0, "patches:1600": 100.0}


def cost_experiment() -> tuple[dict, list[dict]]:
    """Patch features whose fits are fast but whose features are not, a forest, and two CNN widths."""
    summary, _ = experiment()
    results = costed([ridge("patches:1600", 0.1, 0.737, 30.0),   # the best: 100 + 30 + 1.5 = 131.5 s
                      ridge("patches:1600", 1.0, 0.731, 5.0),    # the fastest fit near the best, yet 105.25 s
                      ridge("patches:400", 0.1, 0.730, 10.0),    # the cheapest near the best: 40 + 10 + 0.5 = 50.5 s
                      rf(10, 5, 0.300, 10.0)], FEATURE_TIMES)    # 4 + 10 + 0.5 = 14.5 s
    results += [cnn(1, [16, 32, 32], 0.50, 60.0), cnn(2, [16, 32, 32], 0.60, 120.0),
                cnn(1, [32, 64, 64], 0.55, 100.0), cnn(2, [32, 64, 64], 0.66, 200.0)]
    return summary, results


def test_table_charges_each_scenario_its_feature_set_and_totals_it():
    _, results = cost_experiment()
    rows = {row[1]: row for row in analysis.results_table(results)}
    f, t = analysis.TABLE_HEADERS.index("Features s"), analysis.TABLE_HEADERS.index("Total s")
    best = rows["ridge patches:1600 regParam=0.1"]
    assert (best[7], best[f], best[t]) == ("30.0", "100", "132")  # 100 s of features + 30 s fit + 1.5 s test
    assert rows["ridge patches:1600 regParam=1.0"][f] == "100"  # computed once, charged in full to both
    assert rows["random_forest gray numTrees=10 maxDepth=5"][t] == "14.5"
    assert rows["cnn rgb epochs=2 widths=[32, 64, 64]"][f] == "none"  # it reads the images itself
    note = analysis.table_note(results)
    assert "charged in full" in note and "Total s = Features s + Fit s + Predict s" in note
    assert "the CNN" in note and "no recorded feature-set time" not in note


def test_results_without_feature_times_have_no_total_and_say_so():
    _, results = experiment()
    rows = analysis.results_table(results)
    assert {row[-2] for row in rows} == {row[-1] for row in rows} == {"–"}
    assert "11 of 11 scenarios have no recorded feature-set time" in analysis.table_note(results)
    assert plots.plot_accuracy_vs_minutes({}, results) is None  # a fit time alone would understate the cost


def test_summary_judges_cost_by_the_whole_time_when_recorded():
    summary, results = cost_experiment()
    lines = summary_lines({**summary, "baseline_key": None}, results)
    assert lines[0].startswith("Best: ridge patches:1600 regParam=0.1 with 73.7 % ± 0.4 accuracy")
    assert "fitted in 30.0 s (2 min 12 s in all with its features and test predictions)" in lines[0]
    cost = next(line for line in lines if line.startswith("Cost"))
    # by fit time alone regParam=1.0 (5 s) would look cheapest; with its 100 s of features it is not
    assert cost == ("Cost: ridge patches:400 regParam=0.1 reaches 73.0 % (-0.7 points from the best) in 50.5 s in "
                    "all (features, fit and test) instead of 2 min 12 s, 2.6× faster.")
    models = next(line for line in lines if line.startswith("Models"))
    assert models.startswith("Models, best scenario of each (total time: features, fit and test): "
                             "1. ridge 73.7 % in 2 min 12 s; 2. cnn 66.0 % in 3 min 30 s; ")
    trade = next(line for line in lines if line.startswith("Trade-off"))
    assert [r["name"] for r in analysis.tradeoff(results)] == [
        "random_forest gray numTrees=10 maxDepth=5", "ridge patches:400 regParam=0.1",
        "ridge patches:1600 regParam=1.0", "ridge patches:1600 regParam=0.1"]
    assert "random_forest gray numTrees=10 maxDepth=5 30.0 % in 14.5 s; ridge patches:400" in trade
    assert ("Feature sets computed in", "gray 4.0 s, patches:400 40.0 s, patches:1600 1 min 40 s "
            "(each once, shared by its scenarios)") in analysis.header_items(summary, results)


def test_epochs_are_compared_for_each_width():
    summary, results = cost_experiment()
    epochs = [line for line in summary_lines(summary, results) if line.startswith("Epochs")]
    assert len(epochs) == 2
    assert any(line.startswith("Epochs (cnn, rgb, widths=[16,32,32]): epochs 1 → 2 improved accuracy "
                               "(+10.0 points, 50.0 % → 60.0 %), at 2.0× the fit time") for line in epochs)


def test_accuracy_against_epochs_has_a_line_per_widths_and_the_training_curve():
    pytest.importorskip("matplotlib")
    summary, results = cost_experiment()
    assert plots.plot_accuracy_vs_epochs(*experiment()) is None  # no CNN, no plot
    fig = plots.plot_accuracy_vs_epochs(summary, results)
    legend = {t.get_text() for t in fig.axes[0].get_legend().get_texts()}
    assert legend == {"widths=[16,32,32]: test accuracy", "widths=[16,32,32]: training accuracy, 2-epoch run",
                      "widths=[32,64,64]: test accuracy", "widths=[32,64,64]: training accuracy, 2-epoch run"}


def test_accuracy_against_minutes_plots_every_scenario_at_its_whole_cost(tmp_path):
    pytest.importorskip("matplotlib")
    summary, results = cost_experiment()
    fig = plots.plot_accuracy_vs_minutes({**summary, "baseline_key": None}, results)
    ax = fig.axes[0]
    xs = sorted(round(float(x), 4) for c in ax.collections for x, _ in c.get_offsets())
    assert xs == sorted(round(r["total_seconds"] / 60, 4) for r in results)  # minutes of features + fit + test
    assert "best accuracy for the time" in {t.get_text() for t in ax.get_legend().get_texts()}
    paths = write_report(summary, results, tmp_path)
    names = {p.name for p in paths}
    assert {"accuracy_vs_epochs.png", "accuracy_vs_minutes.png"} <= names
    for name in ("accuracy_vs_epochs.png", "accuracy_vs_minutes.png"):
        assert (tmp_path / "plots" / name).read_bytes().startswith(PNG_MAGIC)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == len(names) - 2
