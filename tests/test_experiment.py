"""Experiments: checked files, grids, fair runs, resuming, failures recorded, kill safety."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from helpers import ROOT, child_env
from sparkvision.models.registry import CLASSIFIERS
from sparkvision.errors import BadDataError, ConfigError
from sparkvision.experiments.runner import run_experiment
from sparkvision.experiments.spec import load_experiment, parse_experiment
from sparkvision.runtime.faults import HOLD_ENV

SMALL = """
name = "small"
seed = 7

[[scenario]]
name = "trees"
model = "random_forest"
params = { numTrees = [3, 6], maxDepth = 4 }

[[scenario]]
name = "others"
model = "naive_bayes"
features = ["gray", "rgb"]

[[scenario]]
name = "broken"   # valid parameters, but a batch bigger than the training rows: refused when fitting
model = "cnn"
params = { batchSize = 100000, widths = [8, 8, 8], epochs = 1 }

[[scenario]]
name = "overlap"   # the same point as one of "trees": run once
model = "random_forest"
params = { numTrees = 3, maxDepth = 4 }
"""


def test_default_experiment_covers_the_assignment_changes_and_every_classifier():
    exp = load_experiment()
    models = {s.model for s in exp.scenarios}
    assert models == set(CLASSIFIERS)
    forests = [s for s in exp.scenarios if s.model == "random_forest"]
    assert {s.params["numTrees"] for s in forests} >= {10, 25, 50}
    assert {s.params["maxDepth"] for s in forests} >= {5, 10, 15}
    assert any(s.params == {"numTrees": 10, "maxDepth": 5} and s.features == "gray" for s in forests)
    assert {s.features for s in exp.scenarios if not s.features.startswith("patches")} == {"gray", "rgb"}
    curve = sorted(int(s.features.split(":")[1]) for s in exp.scenarios if s.features.startswith("patches:"))
    assert len(curve) >= 3 and curve == sorted(set(curve))  # an accuracy-against-K curve


def test_grid_lists_expand_but_a_hidden_layer_list_is_one_value():
    exp = parse_experiment("""
[[scenario]]
model = "random_forest"
features = ["gray", "rgb"]
params = { numTrees = [1, 2, 3], maxDepth = [2, 4] }
[[scenario]]
model = "mlp"
params = { hidden = [64, 32] }
""", "x.toml")
    assert len(exp.scenarios) == 2 * 3 * 2 + 1
    assert exp.scenarios[-1].params == {"hidden": [64, 32]}


@pytest.mark.parametrize("text, message", [
    ("nme = 'x'\n[[scenario]]\nmodel='naive_bayes'", "unknown key 'nme'"),
    ("[[scenario]]\nmodel='naive_bayes'\nfeature='gray'", "scenario 1.*unknown key 'feature'"),
    ("[[scenario]]\nmodel='svm'", "unknown model 'svm'"),
    ("[[scenario]]\nmodel='random_forest'\nparams={ numTree = 10 }", "no parameter 'numTree'"),
    ("[[scenario]]\nmodel='naive_bayes'\nfeatures='hsv'", "features 'hsv'"),
    ("test_fraction = 1.5\n[[scenario]]\nmodel='naive_bayes'", "test_fraction must be between 0 and 1"),
    ("name = 'x'", "no \\[\\[scenario\\]\\] blocks"),
    ("[[scenario]]\nmodel = ", "not valid TOML"),
    ("[[scenario]]\nmodel='naive_bayes'\nrepeats=0", "repeats must be a positive integer"),
    ("[[scenario]]\nmodel='naive_bayes'\nrepeats=true", "repeats must be a positive integer"),
    ("seed = true\n[[scenario]]\nmodel='naive_bayes'", "seed must be a whole number from 0"),
    ("seed = -1\n[[scenario]]\nmodel='naive_bayes'", "seed must be a whole number from 0"),
    ("[[scenario]]\nmodel='ridge'\nparams={ regParam=[0.1, -1.0] }", "regParam must be a finite number ≥ 0"),
    ("[[scenario]]\nmodel='naive_bayes'\nparams={ modelType='bernoulli' }", "modelType=bernoulli needs features"),
    ("[[scenario]]\nmodel='logistic_regression'\nparams={ regParam=0.5 }\ntune={ params={ regParam=[0.1] } }",
     "regParam is both in params and in tune.params"),
    ("[[scenario]]\nmodel='logistic_regression'\ntune={ folds=7, params={ regParam=[0.1] } }",
     "tune.folds does not apply to tune.method = 'train_validation_split'"),
    ("[[scenario]]\nmodel='logistic_regression'\ntune={ method='cross_validator', train_ratio=0.5, params={ regParam=[0.1] } }",
     "tune.train_ratio does not apply"),
    ("[[scenario]]\nmodel='logistic_regression'\ntune={ method='grid', params={ regParam=[0.1] } }", "tune.method"),
    # values of the wrong type: each named by its key, none escaping as a raw Python error
    ("scenario = [1, 2]", "scenario 1: must be a \\[\\[scenario\\]\\] table"),
    ("[[scenario]]\nmodel=['random_forest']", "model must be a name"),
    ("[[scenario]]\nmodel='logistic_regression'\ntune = 5", "tune must be a table"),
    ("[[scenario]]\nmodel='naive_bayes'\nfeatures = [1]", "features must be a feature set.*not 1"),
    ("[[scenario]]\nmodel='random_forest'\nparams={ numTrees = 'abc' }", "params.numTrees = 'abc'.*int"),
    ("[[scenario]]\nmodel='random_forest'\ntune={ params={ numTrees=['abc'] } }", "tune.params.numTrees = 'abc'"),
    ("[[scenario]]\nmodel='random_forest'\ntune={ method='cross_validator', folds=1, params={ numTrees=[2, 4] } }", "tune.folds must be.*not 1"),
    ("[[scenario]]\nmodel='random_forest'\ntune={ train_ratio=1.5, params={ numTrees=[2] } }", "tune.train_ratio"),
    ("[[scenario]]\nmodel='mlp'\ntune={ params={ hidden=[[64]] } }", "tune.params cannot search hidden"),
    # an empty list would silently make no scenarios at all
    ("[[scenario]]\nmodel='random_forest'\nparams={ numTrees = [] }", "params.numTrees is an empty list"),
    ("[[scenario]]\nmodel='random_forest'\ntune={ params={ numTrees=[] } }", "tune.params.numTrees is an empty list"),
    ("[[scenario]]\nmodel='naive_bayes'\nfeatures = []", "features is an empty list"),
])
def test_bad_experiment_files_fail_before_any_work(text, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_experiment(text, "my.toml")
    assert str(info.value).startswith("my.toml")


def test_experiment_file_that_is_not_utf8_is_named(tmp_path):
    file = tmp_path / "latin1.toml"
    file.write_bytes("name = 'caf\u00e9'\n[[scenario]]\nmodel = 'naive_bayes'\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8.*save it as UTF-8") as info:
        load_experiment(file)
    assert str(info.value).startswith(str(file))


@pytest.mark.parametrize("block, message", [
    ("params={ numTrees = [5, 0] }", r"v.toml, scenario t .*numTrees=0.*numTrees"),
    # a value the search would try is checked too, not only after the features are computed
    ("tune={ params={ numTrees = [5, 0] } }", r"v.toml, scenario t .*tune.params.numTrees = 0: .*numTrees"),
])
def test_bad_parameter_values_fail_before_any_data_is_read(spark, cifar_py, tmp_path, block, message):
    exp = parse_experiment(f"[[scenario]]\nname='t'\nmodel='random_forest'\n{block}", "v.toml")
    with pytest.raises(ConfigError, match=message):
        run_experiment(exp, data=str(cifar_py), out=tmp_path / "o", work_dir=str(tmp_path / "w"), spark=spark,
                       progress=False)
    assert not (tmp_path / "w" / "tables").exists()  # nothing was ingested


def test_bad_out_or_data_fails_before_anything_is_created(cifar_py, tmp_path):
    from sparkvision.errors import DataNotFoundError

    exp = parse_experiment("[[scenario]]\nmodel='naive_bayes'", "x.toml")
    a_file = tmp_path / "afile"
    a_file.write_text("mine")
    with pytest.raises(ConfigError, match="--out .*afile is a file"):
        run_experiment(exp, data=str(cifar_py), out=a_file, work_dir=str(tmp_path / "w"), progress=False)
    assert a_file.read_text() == "mine"
    with pytest.raises(DataNotFoundError, match="nope: no such file"):
        run_experiment(exp, data=str(tmp_path / "nope"), out=tmp_path / "o", work_dir=str(tmp_path / "w"),
                       progress=False)
    assert not (tmp_path / "o").exists()  # no half-made output folder to mistake for a run


@pytest.fixture(scope="module")
def small_run(spark, cifar_py, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "out"
    work = tmp_path_factory.mktemp("exp-work")
    exp = parse_experiment(SMALL, "small.toml")
    result = run_experiment(exp, data=str(cifar_py), out=out, work_dir=str(work), spark=spark, progress=False)
    return exp, out, work, result


def test_each_scenario_is_measured_and_a_failure_is_recorded(small_run):
    _, out, _, result = small_run
    by_name = {r["name"]: r for r in result["results"]}
    assert len(by_name) == len(result["results"]) == 5  # the overlapping point ran once
    forest = by_name["random_forest gray numTrees=6 maxDepth=4"]
    assert forest["status"] == "done" and forest["accuracy"] > 0.5
    for key in ("accuracy", "f1_macro", "per_class_accuracy", "confusion_matrix", "fit_seconds",
                "predict_seconds", "model_bytes"):
        assert key in forest
    assert forest["model_bytes"] > 0 and (out / "scenarios" / forest["key"] / "model").is_dir()
    (broken,) = [r for r in result["results"] if r["model"] == "cnn"]
    assert broken["status"] == "failed" and "batchSize=100000" in broken["error"] and len(broken["error"]) < 310
    # every scenario was scored on the same held-out images
    sizes = {sum(map(sum, r["confusion_matrix"])) for r in result["results"] if r["status"] == "done"}
    assert len(sizes) == 1 and result["summary"]["num_test"] == sizes.pop()


def test_report_files_are_written(small_run):
    _, out, _, _ = small_run
    assert (out / "REPORT.md").is_file() and (out / "report.html").is_file()
    assert "random_forest gray numTrees=6" in (out / "REPORT.md").read_text()


def test_rerun_skips_finished_scenarios_and_retries_failed_ones(spark, small_run, cifar_py, capsys):
    exp, out, work, first = small_run
    done = {r["key"]: (out / "scenarios" / r["key"] / "result.json").stat().st_mtime_ns
            for r in first["results"] if r["status"] == "done"}
    again = run_experiment(exp, data=str(cifar_py), out=out, work_dir=str(work), spark=spark, progress=True)
    assert "resuming: 4 of 5 scenarios already recorded" in capsys.readouterr().err
    for key, mtime in done.items():
        assert (out / "scenarios" / key / "result.json").stat().st_mtime_ns == mtime
    assert [r["accuracy"] for r in again["results"] if r["status"] == "done"] == \
           [r["accuracy"] for r in first["results"] if r["status"] == "done"]


def test_a_failure_inside_spark_is_recorded_as_one_short_line(spark):
    # A real JVM failure with a long message (Bernoulli naive Bayes prints the offending vector),
    # as a scenario's error records it: its first line, cut at 300 characters.
    from pyspark.ml.classification import NaiveBayes
    from pyspark.ml.linalg import Vectors

    from sparkvision.experiments.runner import _error_text

    rows = spark.createDataFrame([(0.0, Vectors.dense([0.5] * 2000)), (1.0, Vectors.dense([0.25] * 2000))],
                                 ["label", "features"])
    with pytest.raises(Exception) as info:
        NaiveBayes(modelType="bernoulli").fit(rows)
    assert len(str(info.value)) > 5000  # PySpark's converted error keeps the whole vector
    text = _error_text(info.value)
    assert text.startswith("SparkRuntimeException: [USER_RAISED_EXCEPTION] Vector values MUST be in {0, 1}")
    assert len(text) <= 302 and text.endswith(" …") and "\n" not in text


def test_another_experiments_folder_is_refused_and_left_as_it_was(small_run, cifar_py, tmp_path):
    _, out, work, _ = small_run
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    other = parse_experiment("name = 'other'\n[[scenario]]\nmodel = 'naive_bayes'", "other.toml")
    with pytest.raises(ConfigError, match=f"--out {out} holds the results of another experiment, 'small'.*"
                                          f"this one is 'other'. Choose a new folder"):
        run_experiment(other, data=str(cifar_py), out=out, work_dir=str(work), progress=False)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_refused_file_leaves_the_folder_as_it_was(spark, small_run, cifar_py):
    _, out, work, _ = small_run
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    edited = parse_experiment(SMALL + "\n[[scenario]]\nmodel = 'random_forest'\nparams = { numTrees = 0 }\n",
                              "small.toml")  # numTrees = 0: MLlib's own check, on the JVM
    with pytest.raises(ConfigError, match="numTrees"):
        run_experiment(edited, data=str(cifar_py), out=out, work_dir=str(work), spark=spark, progress=False)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_damaged_recorded_result_is_named_not_run_over(spark, small_run, cifar_py, tmp_path):
    import shutil

    exp, out, work, first = small_run
    copy = shutil.copytree(out, tmp_path / "copy")
    damaged = copy / "scenarios" / first["results"][0]["key"] / "result.json"
    damaged.write_text('{"status": "do')
    with pytest.raises(BadDataError, match="result.json: not a readable result.*Remove that scenario's folder"):
        run_experiment(exp, data=str(cifar_py), out=copy, work_dir=str(work), spark=spark, progress=False)


KILLABLE = """
name = "killable"
[[scenario]]
name = "forest"
model = "random_forest"
params = { numTrees = [2, 4, 6], maxDepth = 3 }
"""


def _experiment(file, data, out, work):
    return [sys.executable, "-m", "sparkvision", "experiment", str(file), "--data", str(data), "--out", str(out),
            "--work-dir", str(work), "--conf", "spark.ui.enabled=false", "--master", "local[2]"]


def test_killed_experiment_resumes_to_the_same_results(spark, cifar_py, tmp_path, capsys):
    import os

    file = tmp_path / "killable.toml"
    file.write_text(KILLABLE)
    experiment = load_experiment(file)
    work = tmp_path / "work"
    # The uninterrupted reference and the resumed run share this process's session; only the run
    # that is killed needs a process (and a JVM) of its own.
    run_experiment(experiment, data=str(cifar_py), out=tmp_path / "straight", work_dir=str(work), spark=spark,
                   progress=False)
    killed = tmp_path / "killed"
    # held after its first scenario (sparkvision.runtime.faults.hold): killed there however late the test looks
    proc = subprocess.Popen(_experiment(file, cifar_py, killed, work), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=ROOT, start_new_session=True,
                            env=child_env({HOLD_ENV: "scenario-done"}))
    deadline = time.time() + 240
    while time.time() < deadline and len(list((killed / "scenarios").glob("*/result.json"))) < 1:
        assert proc.poll() is None, "the experiment finished before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole tree: driver JVM and Python workers too
    proc.wait()
    finished_before = len(list((killed / "scenarios").glob("*/result.json")))
    assert 1 <= finished_before < 3
    capsys.readouterr()
    run_experiment(experiment, data=str(cifar_py), out=killed, work_dir=str(work), spark=spark, progress=True)
    assert f"resuming: {finished_before} of 3" in capsys.readouterr().err

    def accuracies(folder):
        data = json.loads((folder / "results.json").read_text())
        return {r["name"]: r["accuracy"] for r in data["results"]}

    assert len(accuracies(killed)) == 3
    assert accuracies(killed) == accuracies(tmp_path / "straight")
    assert not list((killed / "scenarios").glob(".*"))  # the interrupted scenario's leftovers are gone


def test_tuning_searches_on_training_data_and_records_the_choice(spark, cifar_py, tmp_path):
    exp = parse_experiment("""
[[scenario]]
name = "tuned"
model = "logistic_regression"
params = { maxIter = 20 }
tune = { method = "train_validation_split", params = { regParam = [0.001, 10.0] }, parallelism = 2 }
""", "tune.toml")
    result = run_experiment(exp, data=str(cifar_py), out=tmp_path / "o", work_dir=str(tmp_path / "w"), spark=spark,
                            progress=False)
    (r,) = result["results"]
    assert r["status"] == "done", r.get("error")
    assert r["tuned"]["method"] == "train_validation_split"
    assert r["tuned"]["best_params"] == {"regParam": 0.001}  # a huge penalty cannot win on learnable data
    assert 0 < r["tuned"]["validation_accuracy"] <= 1 and r["name"].endswith("tuned")


TOO_MANY_FOLDS = """
[[scenario]]
name = "folds"
model = "logistic_regression"
params = { maxIter = 5 }
tune = { method = "cross_validator", folds = 500, params = { regParam = [0.01, 1.0] } }
"""


def test_more_folds_than_training_images_fail_the_scenario_with_the_reason(spark, cifar_py, tmp_path):
    """Most folds would be empty and score NaN, and the search would pick its first point without a word."""
    exp = parse_experiment(TOO_MANY_FOLDS, "folds.toml")
    (r,) = run_experiment(exp, data=str(cifar_py), out=tmp_path / "o", work_dir=str(tmp_path / "w"), spark=spark,
                          progress=False)["results"]
    assert r["status"] == "failed"
    assert re.search(r"tune.folds = 500, but the scenario trains on \d+ images.*Set tune.folds to 10 or fewer",
                     r["error"]), r["error"]


def test_an_experiment_in_which_no_scenario_finished_exits_non_zero(spark, cifar_py, tmp_path, capsys):
    """It exited 0, so a script read it as a success."""
    from sparkvision.cli import main

    file = tmp_path / "folds.toml"
    file.write_text(TOO_MANY_FOLDS)
    out = tmp_path / "o"
    assert main(["experiment", str(file), "--data", str(cifar_py), "--out", str(out), "--work-dir",
                 str(tmp_path / "w"), "--quiet"]) == 1
    assert f"error: no scenario finished (1 failed); each one's error is in {out}/REPORT.md" in capsys.readouterr().err
    assert (out / "REPORT.md").is_file()  # the failure is recorded all the same


def test_an_empty_hold_out_or_a_tiny_class_folder_tree_is_said_plainly(spark, cifar_py, tmp_path):
    """A test_fraction that holds out no image is refused before any scenario (it scored 0 % and
    exited 0); an experiment on 16 images runs (its untimed warm-up sampled none, and MLlib refused)."""
    from PIL import Image

    exp = parse_experiment("test_fraction = 0.001\n[[scenario]]\nname='t'\nmodel='decision_tree'\n"
                           "params={ maxDepth = 2 }", "tiny.toml")
    with pytest.raises(BadDataError, match=r"no hold-out images: a 0.1% hold-out of 400 image\(s\) leaves none.*"
                                           r"set test_fraction or seed in the experiment file"):
        run_experiment(exp, data=str(cifar_py), out=tmp_path / "o", work_dir=str(tmp_path / "w"), spark=spark,
                       progress=False)
    assert not (tmp_path / "o").exists()  # no folder holding only the refused file
    photos = tmp_path / "photos"
    for k, name in enumerate(("cat", "dog")):
        (photos / name).mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (8, 8), (200 * k, 8 * i, 40)).save(photos / name / f"{i}.png")
    exp = parse_experiment("test_fraction = 0.5\n[[scenario]]\nname='t'\nmodel='decision_tree'\n"
                           "params={ maxDepth = 2 }", "tiny.toml")
    (r,) = run_experiment(exp, data=str(photos), out=tmp_path / "o2", work_dir=str(tmp_path / "w"), spark=spark,
                          progress=False)["results"]
    assert r["status"] == "done", r.get("error")


def test_a_resume_on_other_data_or_over_a_hand_edited_result_is_refused(spark, cifar_py, tmp_path):
    """Resumed on other data, the first results dropped out of the report unlisted; a finished result
    without its fields stopped the run with "unexpected KeyError"."""
    from sparkvision.data.sources.synthetic import write_python_release

    exp = parse_experiment("[[scenario]]\nname='t'\nmodel='decision_tree'\nparams={ maxDepth = 2 }", "t.toml")
    out = tmp_path / "o"
    (r,) = run_experiment(exp, data=str(cifar_py), out=out, work_dir=str(tmp_path / "w"), spark=spark,
                          progress=False)["results"]
    other = write_python_release(tmp_path / "other", 20).parent
    with pytest.raises(ConfigError, match=f"its results were measured on {cifar_py}.*this run's data is {other}"):
        run_experiment(exp, data=str(other), out=out, work_dir=str(tmp_path / "w"), spark=spark, progress=False)
    record = out / "scenarios" / r["key"] / "result.json"
    record.write_text(json.dumps({"key": r["key"], "status": "done", "accuracy": "high"}))
    with pytest.raises(BadDataError, match=f"{record}: a finished scenario's result without a usable 'name'.*"
                                           f"Remove that scenario's folder"):
        run_experiment(exp, data=str(cifar_py), out=out, work_dir=str(tmp_path / "w"), spark=spark, progress=False)


def test_repeats_use_new_seeds_and_report_mean_and_std(spark, cifar_py, tmp_path):
    import statistics

    exp = parse_experiment("seed = 3\nrepeats = 3\n[[scenario]]\nname='r'\nmodel='random_forest'\n"
                           "params={ numTrees = 2, maxDepth = 2 }", "rep.toml")
    (r,) = run_experiment(exp, data=str(cifar_py), out=tmp_path / "o", work_dir=str(tmp_path / "w"), spark=spark,
                          progress=False)["results"]
    assert [x["seed"] for x in r["repeats"]] == [3, 4, 5]
    accs = [x["accuracy"] for x in r["repeats"]]
    assert r["accuracy"] == pytest.approx(statistics.fmean(accs))
    assert r["accuracy_std"] == pytest.approx(statistics.pstdev(accs))


def test_only_dead_runs_temporaries_are_cleaned_and_a_failed_rename_leaves_none(spark, cifar_py, tmp_path):
    import socket

    exp = parse_experiment("[[scenario]]\nname='b'\nmodel='cnn'\nparams={ batchSize=100000, widths=[8, 8, 8], epochs=1 }",
                           "t.toml")
    out, host = tmp_path / "o", socket.gethostname()
    (out / "scenarios").mkdir(parents=True)
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # its pid names a process of this host that has ended
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        # Temporaries of three other runs writing to the same --out: a dead one of this host, a
        # live one of this host, and one of another machine (whose processes cannot be judged here).
        dead = out / "scenarios" / f".k1.tmp-{host}-{finished.pid}"
        alive = out / "scenarios" / f".k2.tmp-{host}-{live.pid}"
        elsewhere = out / "scenarios" / f".k3.tmp-other{host}-{finished.pid}"
        for folder in (dead, alive, elsewhere):
            folder.mkdir()
        (r,) = run_experiment(exp, data=str(cifar_py), out=out, work_dir=str(tmp_path / "w"), spark=spark,
                              progress=False)["results"]
        assert not dead.exists() and alive.is_dir() and elsewhere.is_dir()
        # The scenario failed (its batch is bigger than the data), so a rerun retries it; a file where its
        # folder goes makes the final rename fail.
        final = out / "scenarios" / r["key"]
        shutil.rmtree(final)
        final.write_text("in the way")
        with pytest.raises(ConfigError, match=f"{r['key']}: cannot move the finished scenario into place"):
            run_experiment(exp, data=str(cifar_py), out=out, work_dir=str(tmp_path / "w"), spark=spark,
                           progress=False)
        assert sorted(p.name for p in (out / "scenarios").iterdir()) == sorted([alive.name, elsewhere.name, r["key"]])
    finally:
        live.kill()
        live.wait()


# --- the CNN: a model that reads the images, with no feature set -----------------------------------


def test_default_experiment_has_a_short_cnn_scenario():
    cnn = [s for s in load_experiment().scenarios if s.model == "cnn"]
    assert all(s.features == "rgb" for s in cnn)  # the table's RGB images: no feature set is computed for them
    assert all("widths" not in s.params for s in cnn)  # the preset of the precision the CPU runs best
    epochs = [s.params["epochs"] for s in cnn]
    assert len(epochs) >= 2 and sum(epochs) <= 4  # a curve against epochs, in minutes on 2 cores


def test_cnn_grid_over_epochs_and_widths():
    exp = parse_experiment("""
[[scenario]]
name = "cnn"
model = "cnn"
params = { epochs = [1, 2], widths = [[16, 32, 32], [32, 64, 64]], batchSize = 64 }
[[scenario]]
name = "one-width"
model = "cnn"
features = "rgb"
params = { widths = [8, 16, 16] }
""", "cnn.toml")
    grid, (one,) = exp.scenarios[:4], exp.scenarios[4:]
    assert [(s.params["epochs"], s.params["widths"]) for s in grid] == \
        [(1, [16, 32, 32]), (1, [32, 64, 64]), (2, [16, 32, 32]), (2, [32, 64, 64])]
    assert one.params == {"widths": [8, 16, 16]}  # a list of numbers is one value of widths, not an axis
    assert {s.features for s in exp.scenarios} == {"rgb"}
    assert grid[0].name == "cnn rgb epochs=1 widths=[16,32,32] batchSize=64"


def test_ridge_reg_grid_is_one_list_valued_param():
    exp = parse_experiment("[[scenario]]\nname='r'\nmodel='ridge'\nfeatures='patches:100'\n"
                           "params={ regGrid = [0.01, 0.1, 1.0] }", "r.toml")
    (one,) = exp.scenarios  # one scenario choosing among the three, not three scenarios of a number each
    assert one.params == {"regGrid": [0.01, 0.1, 1.0]}
    two = parse_experiment("[[scenario]]\nname='r'\nmodel='ridge'\nfeatures='patches:100'\n"
                           "params={ regGrid = [[0.01, 0.1], [1.0, 10.0]] }", "r.toml").scenarios
    assert [s.params["regGrid"] for s in two] == [[0.01, 0.1], [1.0, 10.0]]


@pytest.mark.parametrize("block, message", [
    ("features = 'gray'", "model cnn learns from the RGB images themselves.*not features = 'gray'"),
    ("features = ['rgb', 'patches:100']", "model cnn learns from the RGB images themselves"),
    ("params = { epochs = [1, 0] }", "params epochs=0: epochs must be a finite number above 0"),
    ("params = { widths = [[8, 16, 16], [8, 16]] }", r"params widths=\[8, 16\]: widths must be three whole numbers"),
    ("params = { batchSize = 0 }", "batchSize must be a whole number"),
    ("params = { precision = 'fp8' }", "precision must be one of auto, float32, bfloat16"),
    ("params = { epochs = 'two' }", "params.epochs = 'two'"),
    ("params = { checkpointDir = '/tmp/x' }", "params.checkpointDir is chosen by the experiment"),
    ("tune = { params = { epochs = [1, 2] } }", "tune cannot search model cnn"),
    ("params = { numTrees = 10 }", "model cnn has no parameter 'numTrees'"),
])
def test_bad_cnn_scenarios_fail_as_the_file_is_loaded(tmp_path, block, message):
    file = tmp_path / "cnn.toml"
    file.write_text(f"[[scenario]]\nname = 'c'\nmodel = 'cnn'\n{block}\n")
    with pytest.raises(ConfigError, match=message) as info:
        load_experiment(file)  # no Spark session is needed, or started
    assert str(info.value).startswith(f"{file}, scenario 1 (c)")


CNN_SMALL = """
name = "cnn-small"
[[scenario]]
name = "cnn"   # tiny: two epochs of narrow conv groups in one training process, seconds of training
model = "cnn"
params = { epochs = 2, widths = [8, 16, 16], batchSize = 32, numProcesses = 1 }
"""


def test_cnn_scenario_reads_the_images_and_records_its_curve(spark, cifar_py, tmp_path):
    out, work = tmp_path / "o", tmp_path / "w"
    result = run_experiment(parse_experiment(CNN_SMALL, "cnn.toml"), data=str(cifar_py), out=out,
                            work_dir=str(work), spark=spark, progress=False)
    (cnn,) = result["results"]
    assert cnn["status"] == "done", cnn.get("error")
    assert cnn["features"] == "rgb" and cnn["reads_images"] and cnn["features_seconds"] == 0
    assert 0 <= cnn["accuracy"] <= 1 and sum(map(sum, cnn["confusion_matrix"])) == result["summary"]["num_test"]
    curve = cnn["cnn"]["curve"]  # the training curve, from the fitted stage's trainingSummary
    assert [pt["epoch"] for pt in curve] == [1, 2] and all(0 <= pt["train_accuracy"] <= 1 for pt in curve)
    assert cnn["cnn"]["settings"]["widths"] == [8, 16, 16] and cnn["cnn"]["settings"]["epochs"] == 2
    assert cnn["repeats"][0]["curve"] == curve
    # Its whole cost is its fit (reading the images, the shard, torchrun, training) and its test predictions.
    assert cnn["total_seconds"] == pytest.approx(cnn["fit_seconds"] + cnn["predict_seconds"], abs=2e-3)
    stages = [p.name for p in (out / "scenarios" / cnn["key"] / "model" / "stages").iterdir()]
    assert len(stages) == 1 and "CNNClassificationModel" in stages[0]  # no feature stages before it
    assert not list((work / "cnn").glob("*"))  # its epochs' checkpoints went once its result was in place
    assert {"accuracy_vs_epochs.png", "accuracy_vs_minutes.png"} <= {p.name for p in (out / "plots").iterdir()}
    text = (out / "REPORT.md").read_text()
    assert "| Features s | Total s |" in text and "| none |" in text


def test_each_scenario_is_charged_its_feature_sets_computation(small_run):
    _, out, _, result = small_run
    done = [r for r in result["results"] if r["status"] == "done"]
    by_features: dict[str, set] = {}
    for r in done:
        assert not r["reads_images"] and r["features_seconds"] > 0
        assert r["total_seconds"] == pytest.approx(r["features_seconds"] + r["fit_seconds"] + r["predict_seconds"],
                                                   abs=2e-3)
        by_features.setdefault(r["features"], set()).add(r["features_seconds"])
    # computed once per feature set, and the same time charged in full to every scenario using it
    assert set(by_features) == {"gray", "rgb"} and all(len(times) == 1 for times in by_features.values())
    gray = [r for r in result["results"] if r["features"] == "gray"]
    assert {r["features_computed_for"] for r in gray} == {len(gray)}
    assert "Feature sets computed in" in (out / "REPORT.md").read_text()
