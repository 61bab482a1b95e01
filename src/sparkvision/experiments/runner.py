"""Experiments: a grid of scenarios run on one fixed split, recorded as they finish, reported.

An experiment is a TOML file (see ``experiments/default.toml``): top-level ``name``, ``seed``,
``test_fraction``, ``repeats``, and ``[[scenario]]`` blocks, each naming a model, one or more
feature sets and its parameters, where any list is a grid axis. :func:`load_experiment` checks
every key and value before any work starts.

A model that reads the images itself (``model = "cnn"``) has no feature set: its scenarios read
the image table's RGB bytes, so ``features`` is left out or ``"rgb"``; its grid axes are its
Params (``epochs = [1, 2]``, ``widths = [[16, 32, 32], [32, 64, 64]]``, where a list of numbers
is one value of ``widths``). Each of its trainings keeps per-epoch checkpoints under the work
directory (a killed run resumes after the last finished epoch), and its training curve is
recorded with its result.

:func:`run_experiment` ingests the data once, fixes one train/test split for all scenarios,
computes each feature set once (cached, not per scenario), then fits and scores every scenario.
The time a feature set took to compute is recorded with every scenario that uses it
(``features_seconds``, charged in full to each, as running that scenario alone would cost it)
and added to its fit and test times in ``total_seconds``: the whole cost of a scenario.
Each finished scenario is written at once under ``OUT/scenarios/<key>/`` (model, then
``result.json``, both renamed into place when complete), so a rerun skips it and a killed run
loses only the scenario it was in. A scenario that fails is recorded with its error; the rest
go on, and a rerun tries it again.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from sparkvision.data.ingest import (check_both_splits_hold_images, check_out_outside_data, ingest, locate_data,
                                     split_table)
from sparkvision.errors import (
    BadDataError,
    ConfigError,
    decode_task_error,
    task_errors,
)
from sparkvision.evaluation import evaluate
from sparkvision.features.sets import feature_size, feature_stages
from sparkvision.models.cnn.settings import CNN_DEFAULTS
from sparkvision.models.fitting import check_on_jvm, label_with_classes
from sparkvision.models.registry import (
    CLASSIFIERS,
    build_classifier,
)
from sparkvision.experiments.spec import Experiment, Scenario, param_grid
from sparkvision.experiments.tuning import tune
from sparkvision.report.render import write_report
from sparkvision.runtime.faults import hold
from sparkvision.runtime.fs import remove_stale_in, temp_path, write_atomic
from sparkvision.runtime.session import build_session, versions
from sparkvision.runtime.stage_io import save_pipeline_model
from sparkvision.runtime.stopping import raise_if_stopped


def _recorded_summary(out: Path) -> dict[str, Any]:
    """The ``summary`` of ``out/results.json``; empty when there is none or it cannot be read."""
    try:
        summary = json.loads((out / "results.json").read_text(encoding="utf-8")).get("summary", {})
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        return {}
    return summary if isinstance(summary, dict) else {}


def _check_out_is_this_experiments(out: Path, experiment: Experiment) -> None:
    """Refuse an ``--out`` that holds another experiment's results: its report would be replaced by
    this one's. The same experiment (by ``name``, else its file's name), edited or not, resumes there.
    An unreadable record proves nothing either way: the run goes on and rewrites it."""
    recorded = out / "experiment.toml"
    if not recorded.is_file():
        return
    try:
        name = tomllib.loads(recorded.read_text(encoding="utf-8")).get("name")
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        return
    if name is None:  # a file without a name: the report's summary says which experiment it was
        name = _recorded_summary(out).get("name")
    if isinstance(name, str) and name != experiment.name:
        raise ConfigError(f"--out {out} holds the results of another experiment, {name!r} (its {recorded.name}); "
                          f"this one is {experiment.name!r}. Choose a new folder, or remove {out} to replace them.")


def _check_out_was_measured_on(out: Path, data_root: str, fingerprint: str) -> None:
    """Refuse to resume into an ``--out`` whose results were measured on other data (another
    folder, or the same one changed since): its scenarios would drop out of the report unlisted."""
    summary = _recorded_summary(out)
    if not isinstance(summary.get("data"), str):
        return  # no record to compare with: nothing of it can be lost
    then, then_fp = summary["data"], summary.get("data_fingerprint")
    if then != data_root:
        why = f"were measured on {then}, and this run's data is {data_root}"
    elif isinstance(then_fp, str) and then_fp != fingerprint:
        why = f"were measured on {then} as it was then, and its files have changed since"
    else:
        return
    raise ConfigError(f"--out {out}: its results {why}; resuming would leave them out of the report. Choose a new "
                      f"folder for this data, or remove {out} to measure anew.")


def _recorded(path: Path) -> dict[str, Any] | None:
    """A scenario's recorded result, or None when there is none. Results are renamed into place
    complete, so a damaged one was changed by hand: it is an error to fix, not to run over."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadDataError(f"{path}: not a readable result ({exc}). Remove that scenario's folder "
                           f"({path.parent}) and run again to measure it anew.") from None
    if not isinstance(record, dict):
        raise BadDataError(f"{path}: not a scenario result. Remove {path.parent} and run again to measure it anew.")
    if record.get("status") == "done":  # what the report reads of a finished one
        needed = {"key": str, "name": str, "model": str, "features": (str, type(None)), "accuracy": (int, float),
                  "f1_macro": (int, float), "fit_seconds": (int, float), "predict_seconds": (int, float),
                  "confusion_matrix": list, "per_class_accuracy": dict}
        wrong = [k for k, kind in needed.items() if not isinstance(record.get(k), kind)
                 or isinstance(record.get(k), bool)]
        if wrong:
            raise BadDataError(f"{path}: a finished scenario's result without a usable {wrong[0]!r}; it was changed "
                               f"by hand. Remove that scenario's folder ({path.parent}) and run again to measure it "
                               "anew.")
    return record


# ── running ──────────────────────────────────────────────────────────────────────────────

def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _write_text(path: Path, text: str) -> None:
    write_atomic(path, text.encode("utf-8"))


def _write_json(path: Path, obj: Any) -> None:
    _write_text(path, json.dumps(obj, indent=2))


def _error_text(exc: BaseException) -> str:
    err = decode_task_error(exc)
    if err is not None:
        return str(err)
    # Py4J wraps the JVM's message after a line naming the call, and appends a stack trace.
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()
             and not line.startswith("An error occurred while calling") and not line.lstrip().startswith("at ")]
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= 300 else text[:300] + " …"  # some messages print whole vectors


def _fit_scenario(scenario: Scenario, train, test, class_names, num_features: int | None, seed: int,
                  feature_stages: list, work: Path, checkpoints: Path | None = None,
                  progress: bool = False) -> dict[str, Any]:
    """Fit and score one scenario (all its repeats) on cached features; save its model under ``work``.

    ``checkpoints``, for a model that reads the images (the CNN): the folder under which each
    repeat keeps its epochs' checkpoints (``seed-S``), so a rerun after a kill resumes there; its
    training curve is returned as ``cnn`` (the saved model's, the first repeat) and each repeat's
    curve with that repeat.
    """
    from pyspark.ml import PipelineModel


    repeats, first = [], None
    for r in range(scenario.repeats):
        est = build_classifier(scenario.model, seed=seed + r, num_features=num_features,
                               num_classes=len(class_names), **scenario.params)
        check_on_jvm(est)
        if checkpoints is not None:
            est.setCheckpointDir(str(checkpoints / f"seed-{seed + r}"))
            est.replaceable_checkpoints = True  # the experiment's folder: a stale checkpoint there is replaced
            est.progress = progress  # one line per epoch on stderr
        tuned = None
        t0 = time.perf_counter()
        if scenario.tune:
            model, tuned = tune(est, scenario, train, seed + r)
        else:
            model = est.fit(train)
        t1 = time.perf_counter()
        metrics = evaluate(model.transform(test), class_names)
        t2 = time.perf_counter()
        fit_s, training = t1 - t0, None
        if checkpoints is not None:  # the CNN: its curve, timings, precision, device, and what it trained with
            # (the fitted model's Params: the values used, where an unset one was chosen at fit time)
            training = {**(model.trainingSummary or {}),
                        "settings": {name: model.getOrDefault(name) for name in CNN_DEFAULTS if model.hasParam(name)}}
            # Resumed after a kill, this fit trained only the epochs left; the curve kept the earlier
            # epochs' measured seconds, so they are charged too (the killed run's start-up is not).
            before = int(training.get("resumed_after_epoch") or 0)
            fit_s += sum(float(pt.get("seconds") or 0) for pt in training.get("curve", [])[:before])
        repeats.append({"seed": seed + r, "accuracy": metrics["accuracy"], "f1_macro": metrics["f1_macro"],
                        "fit_seconds": round(fit_s, 3), "predict_seconds": round(t2 - t1, 3)})
        if training is not None:
            repeats[-1]["curve"] = training.get("curve", [])
            if training.get("resumed_after_epoch"):
                repeats[-1]["resumed_after_epoch"] = training["resumed_after_epoch"]
        if first is None:
            first = (model, metrics, tuned, training)
    model, metrics, tuned, training = first
    # The saved model is the whole Pipeline (features + classifier): it runs on raw images.
    save_pipeline_model(PipelineModel(list(feature_stages) + [model]), str(work / "model"))
    accs, f1s = [r["accuracy"] for r in repeats], [r["f1_macro"] for r in repeats]
    result = {
        "accuracy": statistics.fmean(accs), "accuracy_std": statistics.pstdev(accs),
        "f1_macro": statistics.fmean(f1s), "f1_macro_std": statistics.pstdev(f1s), "repeats": repeats,
        "per_class_accuracy": metrics["per_class_accuracy"], "confusion_matrix": metrics["confusion_matrix"],
        "fit_seconds": statistics.fmean(r["fit_seconds"] for r in repeats),
        "predict_seconds": statistics.fmean(r["predict_seconds"] for r in repeats),
        "model_bytes": _dir_bytes(work / "model"), "tuned": tuned,
    }
    if training is not None:
        result["cnn"] = training
    return result


def _check_values(experiment: Experiment, source) -> None:
    """Hand every scenario's parameters, and each point its tuning searches, to MLlib's own
    validators (needs a session)."""

    for s in experiment.scenarios:
        for searched in (param_grid(s.tune["params"]) if s.tune else [{}]):
            try:
                size = None if CLASSIFIERS[s.model].reads_images else feature_size(s.features, source)
                est = build_classifier(s.model, num_features=size,
                                       num_classes=len(source.label_names), **{**s.params, **searched})
                check_on_jvm(est)
            except (ConfigError, ValueError, TypeError) as exc:
                tried = "".join(f", tune.params.{k} = {v!r}" for k, v in searched.items())
                raise ConfigError(f"{experiment.source}, scenario {s.group} ({s.name}){tried}: {exc}") from None


def _warm_up(train, seed: int) -> None:
    """One small untimed fit, so the first scenario's fit time does not include the JVM
    compiling MLlib's code paths (measured here without it: the first scenario fitted 10 trees in
    8.3 s, the next fitted 25 trees of the same depth in 6.0 s)."""

    sample = train.sample(0.05, seed=seed)
    if not sample.isEmpty():  # a few dozen images sample none: nothing to warm up, and MLlib refuses an empty fit
        build_classifier("random_forest", numTrees=2, maxDepth=3, seed=seed).fit(sample)


def _warm_up_torch(spark) -> None:
    """Import torch once in the Python workers, untimed: workers are reused by later tasks, so
    otherwise the first CNN scenario's test predictions alone would pay for it. Measured here on
    81 test images, on a busy machine: without it the first CNN scenario predicted in 12.8 s and the
    next in 2.1 s; with it, 7.5 s and 1.5 s (the rest, left in, is the first forward passes). Skipped
    without torch: the CNN's fit then fails, recorded, saying what to install."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return

    def import_torch(batches):
        import torch  # noqa: F401  (importing it is the point)

        yield from batches

    spark.range(0, 8, numPartitions=8).mapInArrow(import_torch, "id long").count()


class _Progress:
    def __init__(self, enabled: bool) -> None:
        self.enabled, self.started, self.durations = enabled, time.perf_counter(), []

    def say(self, text: str) -> None:
        if self.enabled:
            print(text, file=sys.stderr, flush=True)

    def eta(self, remaining: int) -> str:
        if not self.durations:
            return "estimating"
        left = statistics.fmean(self.durations) * remaining
        return f"about {left / 60:.0f} min left" if left >= 90 else f"about {left:.0f} s left"

    def elapsed(self) -> str:
        e = time.perf_counter() - self.started
        return f"{e / 60:.1f} min" if e >= 90 else f"{e:.0f} s"


def run_experiment(experiment: Experiment, *, data: str, out: str | os.PathLike, work_dir: str,
                   dataset: str = "cifar10",
                   spark_settings=None, spark=None, progress: bool = True) -> dict[str, Any]:
    """Run every scenario not already recorded in ``out``; write results and the report.

    Returns ``{"summary": ..., "results": [...]}`` (also in ``OUT/results.json``).
    """
    from pyspark import StorageLevel
    from pyspark.ml import Pipeline


    started = time.perf_counter()
    out = Path(out).absolute()  # a Spark Connect server resolves relative paths against its own folder
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; an experiment writes a folder. Choose a new folder, "
                          "or the one an earlier run of this experiment wrote, to resume it.")
    check_out_outside_data(out, data)
    _check_out_is_this_experiments(out, experiment)
    p = _Progress(progress)
    # The data is found and checked before anything is created: a wrong --data leaves no folder behind.
    source = locate_data(data, work_dir, dataset=dataset, progress=progress)
    if spark is None:
        p.say(f"starting Spark ({(spark_settings.master if spark_settings else 'local[*]')}) ...")
        spark = build_session(spark_settings)
    _check_values(experiment, source)  # a bad value (numTrees = 0) fails now, before any data is read
    with task_errors():
        table = ingest(spark, source, work_dir, progress=progress)
    info = table.info
    train, test = split_table(label_with_classes(table.df, info.class_names), info.has_test,
                              experiment.test_fraction, experiment.seed)
    check_both_splits_hold_images(train, test, table, experiment.test_fraction,
                                  retry="or set test_fraction or seed in the experiment file to draw another hold-out")
    _check_out_was_measured_on(out, source.root, info.fingerprint)
    # Only a file whose every value passed, on data that can run it, is recorded: a refused one
    # leaves the folder as it was.
    try:
        (out / "scenarios").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create {out / 'scenarios'} ({exc.strerror}); "
                          "choose a folder you can write to.") from None
    # Left by a run killed mid-scenario. Another run may be writing to the same --out, so only the
    # temporaries of this host's dead processes go, never live ones.
    remove_stale_in(out / "scenarios")
    _write_text(out / "experiment.toml", experiment.text)
    context = f"{info.fingerprint}|{experiment.seed}|{experiment.test_fraction}"
    # Blocks may overlap (a "trees" and a "depth" axis can share a point): run each point once.
    first_of = {}
    for s in experiment.scenarios:
        first_of.setdefault(s.key(context), s)
    keys, scenarios = list(first_of), list(first_of.values())
    done = {k for k in keys if (_recorded(out / "scenarios" / k / "result.json") or {}).get("status") == "done"}
    if done:
        p.say(f"resuming: {len(done)} of {len(keys)} scenarios already recorded in {out}")
    todo = [(s, k) for s, k in zip(scenarios, keys) if k not in done]
    index = {k: i for i, k in enumerate(keys, start=1)}

    def input_of(s: Scenario) -> str | None:  # None: the model reads the images, no feature set
        return None if CLASSIFIERS[s.model].reads_images else s.features

    warmed = False
    for features in dict.fromkeys(input_of(s) for s, _ in todo):  # one feature set cached at a time
        mine = [(s, k) for s, k in todo if input_of(s) == features]
        cached = []
        if features is None:
            # The CNN reads the table's rows itself, once (it writes them to its training shard), so
            # there is nothing to compute or cache first: its fit time includes reading the images.
            p.say(f"{len(mine)} scenarios read the images directly (no feature set) ...")
            stages, f_train, f_test, size, features_s = [], train, test, None, 0.0
            _warm_up_torch(spark)
        else:
            # Fitted on the training part only (learned patch features learn their dictionary here).
            p.say(f"computing {features} features once for {len(mine)} scenarios ...")
            t_features = time.perf_counter()
            featurize = Pipeline(stages=feature_stages(features, shape=(info.height, info.width, info.channels),
                                                       seed=experiment.seed)).fit(train)
            stages = featurize.stages
            f_train = featurize.transform(train).select("label", "features").persist(StorageLevel.MEMORY_AND_DISK)
            f_test = featurize.transform(test).select("label", "features").persist(StorageLevel.MEMORY_AND_DISK)
            cached = [f_train, f_test]
            f_train.count(), f_test.count()  # fill the caches here, outside any scenario's fit timing
            # Charged in full to every scenario on this feature set (features_seconds): running one of
            # them alone would cost it, whatever the others share.
            features_s = time.perf_counter() - t_features
            size = feature_size(features, info)
            p.say(f"      {features} features computed in {features_s:.1f} s")
            if not warmed:
                _warm_up(f_train, experiment.seed)
                warmed = True
        try:
            for scenario, key in mine:
                t0 = time.perf_counter()
                remaining = len(todo) - len(p.durations)
                p.say(f"[{index[key]}/{len(keys)}] {scenario.name} ({scenario.group}) ... "
                      f"elapsed {p.elapsed()}, {p.eta(remaining)}")
                record = {"key": key, "name": scenario.name, "group": scenario.group, "features": scenario.features,
                          "model": scenario.model, "params": scenario.params, "repeats_asked": scenario.repeats,
                          "reads_images": features is None, "features_seconds": round(features_s, 3),
                          "features_computed_for": len(mine) if features is not None else None}
                final = out / "scenarios" / key
                work = temp_path(final)
                # The CNN's per-epoch checkpoints: kept until its result is in place, so a killed or
                # failed run resumes after the last finished epoch.
                checkpoints = Path(work_dir) / "cnn" / f"experiment-{key}" if features is None else None
                shutil.rmtree(work, ignore_errors=True)
                shutil.rmtree(final, ignore_errors=True)  # an earlier failed attempt
                work.mkdir()
                try:
                    try:
                        record.update(_fit_scenario(scenario, f_train, f_test, info.class_names, size,
                                                    experiment.seed, stages, work, checkpoints, progress))
                        record.update(status="done", error=None, total_seconds=round(
                            features_s + record["fit_seconds"] + record["predict_seconds"], 3))
                    except Exception as exc:  # recorded, and the experiment goes on
                        record.update(status="failed", error=_error_text(exc))
                    _write_json(work / "result.json", record)
                    raise_if_stopped()
                    try:
                        os.replace(work, final)
                    except OSError as exc:
                        raise ConfigError(f"{final}: cannot move the finished scenario into place ({exc.strerror}). "
                                          f"Check that nothing else writes to --out {out}, then run again to "
                                          "resume.") from None
                finally:
                    shutil.rmtree(work, ignore_errors=True)  # gone once renamed; else never left half-written
                if checkpoints is not None and record["status"] == "done":
                    shutil.rmtree(checkpoints, ignore_errors=True)  # the model is saved: they have served
                p.durations.append(time.perf_counter() - t0)
                p.say(f"      {'accuracy ' + format(record['accuracy'], '.2%') if record['status'] == 'done' else 'FAILED: ' + record['error']}"
                      f" in {p.durations[-1]:.1f} s")
                hold("scenario-done")  # test-only: see sparkvision.runtime.faults
        finally:
            for frame in cached:
                frame.unpersist()
    results = [r for k in keys if (r := _recorded(out / "scenarios" / k / "result.json")) is not None]
    baseline = next((r["key"] for r in results if r["model"] == "random_forest" and r["features"] == "gray"
                     and r["params"] == {"numTrees": 10, "maxDepth": 5}), None)
    summary = {"name": experiment.name, "data": source.root, "data_fingerprint": info.fingerprint,
               "num_train": train.count(), "num_test": test.count(),
               "evaluated_on": "test_batch" if info.has_test else
               f"random {experiment.test_fraction} hold-out, seed {experiment.seed}",
               "class_names": list(info.class_names), "seconds_total": round(time.perf_counter() - started, 1),
               "baseline_key": baseline, "versions": versions(spark), "experiment": experiment.source}
    _write_json(out / "results.json", {"summary": summary, "results": results})
    written = write_report(summary, results, out)
    _print_table(results, out, written)
    return {"summary": summary, "results": results}


def _print_table(results: list[dict], out: Path, written: list[Path]) -> None:
    rows = sorted(results, key=lambda r: (r.get("status") != "done", -r.get("accuracy", 0)))
    print(f"\n{'#':>2}  {'scenario':<55} {'accuracy':>14} {'fit s':>8} {'total s':>8}")
    for i, r in enumerate(rows, start=1):
        if r.get("status") == "done":
            acc = f"{r['accuracy']:.2%}" + (f" ±{r['accuracy_std'] * 100:.1f}" if r["accuracy_std"] else "")
            total = f"{r['total_seconds']:>8.1f}" if isinstance(r.get("total_seconds"), (int, float)) else f"{'–':>8}"
            print(f"{i:>2}  {r['name'][:55]:<55} {acc:>14} {r['fit_seconds']:>8.1f} {total}")
        else:
            print(f"{i:>2}  {r['name'][:55]:<55} {'failed':>14}   {r['error'][:60]}")
    print("\ntotal s: the scenario's feature set computed (charged in full to each scenario using it), fit and test")
    print(f"report   {out / 'REPORT.md'}, {out / 'report.html'}")
    print(f"results  {out / 'results.json'}; models under {out / 'scenarios'}/<key>/model")
