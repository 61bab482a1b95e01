"""The command line end to end on synthetic data, and its errors."""

from __future__ import annotations

import json

import pytest
from pyspark.ml import PipelineModel

from helpers import run_cli
from sparkvision.cli import main
from sparkvision.data.sources.synthetic import write_python_release

METRIC_KEYS = {"accuracy", "f1_macro", "per_class_accuracy", "confusion_matrix", "seconds", "config", "versions"}


@pytest.fixture(scope="module")
def finished_run(spark, cifar_py, tmp_path_factory):
    """One `sparkvision run` (in this process, sharing the session) and what it printed."""
    base = tmp_path_factory.mktemp("run")
    out = base / "out"
    argv = ["run", "--data", str(cifar_py), "--work-dir", str(base / "work"), "--out", str(out),
            "--num-trees", "10", "--max-depth", "5"]
    return base, out, argv


def test_run_writes_model_and_metrics_and_a_summary(finished_run, capsys):
    base, out, argv = finished_run
    assert main(argv) == 0
    printed = capsys.readouterr()
    metrics = json.loads((out / "metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics)
    assert metrics["accuracy"] > 0.6  # ten learnable classes: chance is 0.1
    assert set(metrics["seconds"]) >= {"session", "ingest", "fit", "evaluate", "save", "total"}
    assert len(metrics["confusion_matrix"]) == 10 and len(metrics["per_class_accuracy"]) == 10
    assert metrics["config"]["num_trees"] == 10 and metrics["versions"]["spark"].startswith("4.")
    # options that do not apply to gray features on CIFAR data are not recorded as used
    assert metrics["config"]["centroids"] is None and metrics["config"]["image_size"] is None
    assert f"accuracy {metrics['accuracy']:.2%}" in printed.out and str(out) in printed.out
    assert "[3/5]" in printed.err  # progress lines
    assert [p.name for p in base.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def test_saved_model_gives_the_recorded_results_again(spark, finished_run):
    from sparkvision.data.table import read_table
    from sparkvision.evaluation import evaluate
    from sparkvision.data.ingest import split_table

    base, out, _ = finished_run
    metrics = json.loads((out / "metrics.json").read_text())
    table = read_table(spark, metrics["data"]["table"])
    _, test = split_table(table.df, False, 0.2, 42)
    again = evaluate(PipelineModel.load(str(out / "model")).transform(test), table.info.class_names)
    assert again["confusion_matrix"] == metrics["confusion_matrix"]


def test_model_predictions_identical_after_save_and_load(spark, cifar_py, tmp_path):
    from sparkvision.models.registry import build_classifier
    from sparkvision.data.ingest import locate_cifar as locate
    from sparkvision.data.ingest import ingest_cifar
    from sparkvision.features.sets import feature_stages
    from sparkvision.models.fitting import fit_pipeline

    df = ingest_cifar(spark, locate(cifar_py, tmp_path), tmp_path, progress=False).df
    model = fit_pipeline(feature_stages("rgb") + [build_classifier("random_forest", numTrees=5)], df)
    model.write().save(str(tmp_path / "m"))
    cols = ["id", "prediction", "probability"]
    before = model.transform(df).select(cols).orderBy("id").collect()
    after = PipelineModel.load(str(tmp_path / "m")).transform(df).select(cols).orderBy("id").collect()
    assert before == after and len(before) == 400


def test_second_run_reuses_the_table(finished_run, capsys):
    base, out, argv = finished_run
    argv = [a if a != str(out) else str(base / "out2") for a in argv]
    assert main(argv + ["--features", "rgb", "--quiet"]) == 0
    metrics = json.loads((base / "out2" / "metrics.json").read_text())
    assert metrics["data"]["table_reused"] and metrics["config"]["features"] == "rgb"
    assert "(reused)" in capsys.readouterr().out


def test_existing_out_folder_is_refused(finished_run, capsys):
    base, out, argv = finished_run
    out.mkdir(exist_ok=True)
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err


def test_unsafe_batch_stops_the_run_with_exit_4(spark, tmp_path, capsys):
    folder = write_python_release(tmp_path / "d", 10)
    (folder / "data_batch_5").write_bytes(b"cos\nsystem\n(S'touch /tmp/sv-pwned'\ntR.")
    code = main(["run", "--data", str(tmp_path / "d"), "--work-dir", str(tmp_path / "w"),
                 "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 4 and "data_batch_5: refused to unpickle it" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, code, message", [
    (["--data", "/nonexistent/cifar"], 3, "no such file or folder"),
    (["--driver-memory", "lots"], 2, "is not a memory size"),
    (["--max-depth", "0"], 2, "--max-depth must be between 1 and 30"),
    (["--model", "magic"], 2, "invalid choice"),
    (["--model", "logistic_regression", "--num-trees", "5"], 2, "--num-trees does not apply"),
    (["--param", "numTrees=0"], 2, "numTrees"),
    # wrong types and sizes fail before the JVM starts
    (["--param", "numTrees=abc"], 2, "numTrees='abc': Could not convert abc to int"),
    (["--model", "mlp", "--param", "hidden=128"], 2, "give the hidden layer sizes as a list"),
    (["--model", "cnn", "--param", "gpu=1"], 2, "gpu must be one of auto, true, false, not '1'"),
    # a master Spark refuses: said before the JVM starts (it printed a Java stack trace), naming the setting used
    (["--master", "bogus"], 2, "master 'bogus' (--master): not a master URL Spark takes. Give local"),
    (["--conf", "spark.master=local[two]"], 2, "--conf spark.master=local[two]: not a master URL Spark takes"),
    (["--image-size", "0"], 2, "--image-size must be between 1 and 1024"),
    (["--param", "maxDepth=2", "--param", "maxDepth=3"], 2, "--param maxDepth is given 2 times"),
    (["--num-trees", "3", "--param", "numTrees=7"], 2, "--num-trees 3 and --param numTrees=7 disagree"),
    (["--seed", "-1"], 2, "--seed needs a whole number from 0"),
    (["--seed", "4294967296"], 2, "--seed needs a whole number from 0 to 4294967295"),
    (["--features", "patches", "--image-size", "4"], 2, "--image-size must be at least 6, not 4"),
    (["--out", "{tmp}/a-file/run"], 2, "/a-file is a file, not a folder); choose another place"),
    # options that do not apply are refused, not recorded in metrics.json as if used
    (["--centroids", "16"], 2, "--centroids is the dictionary size of --features patches; it does not apply to "
                                "--features gray"),
    (["--image-size", "64"], 2, "is a cifar10 release, whose images are 32×32. Drop --image-size."),
    # ... and before a download: --data auto names CIFAR-10 without fetching it
    (["--data", "auto", "--image-size", "64"], 2, "--data auto downloads a cifar10 release, whose images are 32×32"),
])
def test_bad_options_fail_fast_in_a_real_process(cifar_py, tmp_path, args, code, message):
    argv = ["run", "--data", str(cifar_py), "--work-dir", str(tmp_path), "--out", str(tmp_path / "o")]
    (tmp_path / "a-file").write_text("")
    result = run_cli(*argv, *[a.format(tmp=tmp_path) for a in args])
    assert result.returncode == code, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr and "Exception in thread" not in result.stderr
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.tmp*"))


@pytest.mark.parametrize("port", ["99999", "0", "-1", "http"])
def test_a_server_port_out_of_range_is_an_option_error(port):
    result = run_cli("server", "start", "--port", port)
    assert result.returncode == 2 and f"--port needs a whole number from 1 to 65535, not '{port}'" in result.stderr


def test_a_number_for_a_param_that_takes_text_is_its_text(spark):
    """`--param featureSubsetStrategy=0.5` (and `= 0.5` in an experiment file) reads as a number:
    MLlib's "0.5" is meant, where its converter alone said "Could not convert <class 'float'>"."""
    from sparkvision.experiments.spec import parse_experiment
    from sparkvision.models.registry import build_classifier

    assert build_classifier("random_forest", featureSubsetStrategy=0.5).getFeatureSubsetStrategy() == "0.5"
    assert build_classifier("random_forest", featureSubsetStrategy=5).getFeatureSubsetStrategy() == "5"
    exp = parse_experiment("[[scenario]]\nmodel='random_forest'\nparams={ featureSubsetStrategy = [0.5, 'sqrt'] }",
                           "f.toml")
    assert [s.params["featureSubsetStrategy"] for s in exp.scenarios] == [0.5, "sqrt"]  # both pass the checks


def test_missing_java_gets_one_clear_message(tmp_path):
    result = run_cli("check-java", env={"JAVA_HOME": str(tmp_path / "no-java")})
    assert result.returncode == 6
    assert "Java not found" in result.stderr and "OpenJDK 17 or 21" in result.stderr


def test_check_java_passes_here():
    result = run_cli("check-java")
    assert result.returncode == 0 and "Java" in result.stdout


def test_java_options_in_the_environment_do_not_change_the_version_line(monkeypatch):
    from sparkvision.runtime.java import java_version

    plain = java_version()
    # The java launcher prints "NOTE: Picked up JDK_JAVA_OPTIONS: ..." before the version.
    monkeypatch.setenv("JDK_JAVA_OPTIONS", "-Xss2m")
    assert java_version() == plain and "Picked up" not in plain[1]


def test_cifar100_runs_through_the_same_path(spark, tmp_path):
    from sparkvision.data.sources.cifar import CIFAR100

    write_python_release(tmp_path / "c100", 300, with_test=True, release=CIFAR100)
    out = tmp_path / "out"
    assert main(["run", "--data", str(tmp_path / "c100"), "--dataset", "cifar100", "--work-dir",
                 str(tmp_path / "w"), "--out", str(out), "--num-trees", "3", "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["class_names"]) == 100 and metrics["data"]["evaluated_on"] == "test_batch"
    assert metrics["num_evaluated"] == 300


def test_a_dead_jvm_is_recognised_through_chained_errors():
    from py4j.protocol import Py4JNetworkError

    from sparkvision.cli.main import _jvm_died

    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as inner:
            raise RuntimeError("An error occurred while calling o42.collect") from inner
    except RuntimeError as outer:
        assert _jvm_died(outer)
    assert _jvm_died(Py4JNetworkError("Answer from Java side is empty"))
    assert not _jvm_died(ValueError("bad value"))


@pytest.mark.parametrize("text, summary", [
    # a limit hit inside Spark: the reason, not the last stack frame
    ("An error occurred while calling o384.getResult.\n: org.apache.spark.SparkException: Exception thrown in "
     "awaitResult: \n\tat org.apache.spark.util.SparkThreadUtils$.awaitResult(SparkThreadUtils.scala:56)\n"
     "Caused by: org.apache.spark.SparkException: Job aborted due to stage failure: Total size of serialized "
     "results of 1 tasks (1523.5 MiB) is bigger than spark.driver.maxResultSize (1024.0 MiB)\n"
     "\tat org.apache.spark.util.EventLoop$$anon$1.run(EventLoop.scala:50)",
     "Total size of serialized results of 1 tasks (1523.5 MiB) is bigger than spark.driver.maxResultSize (1024.0 MiB)"),
    # a Python error inside a task: the exception line of its traceback
    ("An error occurred while calling o1.count.\n: org.apache.spark.SparkException: Job aborted due to stage "
     "failure: Task 0 in stage 1.0 failed 1 times, most recent failure: Lost task 0.0 (TID 1) (127.0.0.1 executor "
     "driver): org.apache.spark.api.python.PythonException: Traceback (most recent call last):\n  File \"x.py\", "
     "line 3, in f\n    return 1/0\n           ~^~\nZeroDivisionError: division by zero\n\n\tat org.apache.spark."
     "api.python.BasePythonRunner.read(PythonRunner.scala:1)", "ZeroDivisionError: division by zero"),
    ("An error occurred while calling o5.fit.\n: java.lang.OutOfMemoryError: Java heap space\n\tat java.base/x.y(Z.java:1)",
     "java.lang.OutOfMemoryError: Java heap space"),
    ("plain message", "plain message"),
])
def test_an_unexpected_spark_failure_is_summed_up_by_its_reason(text, summary):
    from sparkvision.errors import failure_summary

    assert failure_summary(RuntimeError(text)) == summary
