"""The command line: an argument parser, one function per command, and ``main`` mapping errors.

``main(argv)`` returns an exit status; a :class:`SparkVisionError` is printed as one paragraph
(``--traceback`` shows the whole trace). Exit codes: 0 done, 1 unexpected failure, 2 bad
option, 3 data not found, 4 bad data, 5 download failed, 6 no usable Java, 7 the JVM died,
128 + the signal when stopped (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP; 141 when the reader of
stdout went away).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import traceback
from typing import Any, Sequence

from sparkvision import __version__
from sparkvision.errors import SparkVisionError, failure_summary


def _key_value(flag: str):
    def parse(text: str) -> tuple[str, str]:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"{flag} needs KEY=VALUE, got {text!r}")
        return key.strip(), value.strip()
    return parse


def _param_value(text: str) -> Any:
    """``--param`` values: JSON when they parse (10, 0.5, true, [128, 64]), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _add_spark_options(parser: argparse.ArgumentParser) -> None:
    from sparkvision.spark_session import SparkSettings

    s = SparkSettings()
    group = parser.add_argument_group("Spark")
    group.add_argument("--master", default=s.master, help=f"Spark master URL (default {s.master})")
    group.add_argument("--driver-memory", default=s.driver_memory, help=f"default {s.driver_memory}")
    group.add_argument("--executor-memory", default=s.executor_memory, help=f"default {s.executor_memory}")
    group.add_argument("--memory-overhead", default=s.memory_overhead, help=f"default {s.memory_overhead}")
    group.add_argument("--shuffle-partitions", type=int, default=s.shuffle_partitions,
                       help=f"default {s.shuffle_partitions}")
    group.add_argument("--conf", type=_key_value("--conf"), action="append", default=[], metavar="KEY=VALUE",
                       help="any other Spark setting; repeatable")


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="auto", help="a CIFAR release folder or archive, a folder of class "
                        "folders, or 'auto' to download (default)")
    parser.add_argument("--dataset", default="cifar10", choices=("cifar10", "cifar100", "cifar100-coarse"),
                        help="which CIFAR release --data is (default cifar10); class folders need none")
    parser.add_argument("--work-dir", default=None, help="where tables and downloads are kept (default "
                        "$SPARKVISION_WORK_DIR or ~/.cache/sparkvision)")


def _spark_settings(args: argparse.Namespace):
    from sparkvision.spark_session import SparkSettings

    return SparkSettings(master=args.master, driver_memory=args.driver_memory,
                         executor_memory=args.executor_memory, memory_overhead=args.memory_overhead,
                         shuffle_partitions=args.shuffle_partitions, conf=dict(args.conf))


class _ModelNames:
    """``--model``'s choices, read from ``classifiers`` only when a value is checked or help is shown.

    ``classifiers`` imports pyspark.ml (half a second); ``predict`` on the local engine never needs it.
    """

    def _names(self) -> list[str]:
        from sparkvision.classifiers import CLASSIFIERS

        return list(CLASSIFIERS)

    def __contains__(self, value: object) -> bool:
        return value in self._names()

    def __iter__(self):
        return iter(self._names())


def build_parser() -> argparse.ArgumentParser:
    """The ``sparkvision`` argument parser."""
    parser = argparse.ArgumentParser(prog="sparkvision", description="Image classification on Apache Spark.")
    parser.add_argument("--version", action="version", version=f"sparkvision {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show the full trace of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="ingest CIFAR-10, fit a Pipeline, evaluate, save model and metrics",
                         description="Ingest CIFAR-10 into the image table (reused when unchanged), fit "
                                     "Pipeline[features, classifier], evaluate on the test batch or an 80/20 "
                                     "hold-out, and write the model and metrics.json into --out.")
    _add_data_options(run)
    run.add_argument("--features", default="gray", choices=("gray", "rgb", "patches"),
                     help="feature set: gray or rgb pixels, or learned patch features (default gray)")
    run.add_argument("--centroids", type=int, default=1600, metavar="K",
                     help="--features patches: dictionary size; 2K features per image (default 1600)")
    run.add_argument("--model", default=None, choices=_ModelNames(), metavar="NAME",
                     help="classifier: %(choices)s (default random_forest, the assignment's; ridge with "
                          "--features patches)")
    run.add_argument("--num-trees", type=int, default=None, help="trees in the forest (default 10)")
    run.add_argument("--max-depth", type=int, default=None, help="maximum tree depth (default 5)")
    run.add_argument("--epochs", type=float, default=None,
                     help="--model cnn: passes over the training images (default: the preset of the precision "
                          "that runs, see README)")
    run.add_argument("--param", type=_key_value("--param"), action="append", default=[], metavar="NAME=VALUE",
                     help="any tunable parameter of the model, e.g. regParam=0.1 or hidden=[256]; repeatable")
    run.add_argument("--seed", type=int, default=42, help="seed of the hold-out split and the model (default 42)")
    run.add_argument("--strict", action="store_true",
                     help="class folders: stop at an unreadable image instead of skipping and listing it")
    run.add_argument("--image-size", type=int, default=32,
                     help="class folders: make images N×N (shorter side to N, centre crop; default 32)")
    run.add_argument("--out", default=None, help="output folder (default runs/<timestamp>); must not exist")
    _add_spark_options(run)
    run.add_argument("--quiet", action="store_true", help="no progress lines, only the summary")
    run.set_defaults(func=cmd_run)

    exp = sub.add_parser("experiment", help="run a grid of scenarios and write a report",
                         description="Run every scenario of an experiment file (default: the built-in one) "
                                     "on one fixed split, record each as it finishes (a rerun skips finished "
                                     "ones), and write REPORT.md and report.html into --out.")
    exp.add_argument("file", nargs="?", default=None, help="experiment TOML file (default: the built-in default)")
    _add_data_options(exp)
    exp.add_argument("--out", default=None, help="output folder (default runs/experiment-<name>); reused to resume")
    _add_spark_options(exp)
    exp.add_argument("--quiet", action="store_true", help="no progress lines, only the final table")
    exp.set_defaults(func=cmd_experiment)

    from sparkvision.predict import LOCAL_MAX_IMAGES  # no heavy imports there

    pred = sub.add_parser("predict", help="label image files, folders or globs with a saved model",
                          description="Label images with a model saved by `sparkvision run` (its --out folder or "
                                      "model/ folder). Writes CSV (default) or JSON lines with each image's path "
                                      "and its top-k labels and probabilities.")
    pred.add_argument("model_dir", help="the run's --out folder, or its model/ folder")
    pred.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    pred.add_argument("--top-k", type=int, default=3, help="labels per image (default 3)")
    pred.add_argument("--out", default=None, help="output file (.csv or .jsonl); default: CSV on stdout")
    pred.add_argument("--format", choices=("csv", "jsonl"), default=None, help="default: from --out's suffix")
    pred.add_argument("--engine", choices=("auto", "local", "spark"), default="auto",
                      help="local: no JVM, the model evaluated in numpy (a second or less for a few images; "
                           "not every model); spark: decoded and labelled in Spark tasks (any model, any number of images, "
                           f"a cluster); auto (default): local for a supported model, no --master and at most "
                           f"{LOCAL_MAX_IMAGES:,} images")
    _add_spark_options(pred)
    pred.set_defaults(master=None)  # None: not given, so --engine auto may stay local
    pred.add_argument("--quiet", action="store_true", help="no progress lines")
    pred.set_defaults(func=cmd_predict)

    java = sub.add_parser("check-java", help="check that a Java Spark can use (17 or 21) is installed")
    java.set_defaults(func=cmd_check_java)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    """``sparkvision run``: the whole pipeline, then a short summary."""
    from sparkvision.job import RunConfig, default_work_dir, run_job

    model = args.model or ("ridge" if args.features == "patches" else "random_forest")
    config = RunConfig(data=args.data, dataset=args.dataset, features=args.features, centroids=args.centroids,
                       model=model,
                       params={k: _param_value(v) for k, v in args.param}, num_trees=args.num_trees,
                       max_depth=args.max_depth, epochs=args.epochs, seed=args.seed, out=args.out, strict=args.strict,
                       image_size=args.image_size,
                       work_dir=args.work_dir or default_work_dir(), spark=_spark_settings(args))
    m = run_job(config, progress=not args.quiet)
    secs = m["seconds"]
    print(f"\naccuracy {m['accuracy']:.2%}   macro F1 {m['f1_macro']:.3f}   on {m['num_evaluated']:,} images "
          f"({m['data']['evaluated_on']})")
    print("time     " + "   ".join(f"{k} {v:.1f}s" for k, v in secs.items()))
    print(f"outputs  {m['config']['out']}/model (PipelineModel), {m['config']['out']}/metrics.json")
    print(f"table    {m['data']['table']}" + (" (reused)" if m["data"]["table_reused"] else " (written)"))
    if "cnn" in m:
        cnn = m["cnn"]
        last = cnn["curve"][-1] if cnn.get("curve") else {}
        resumed = f", resumed after epoch {cnn['resumed_after_epoch']}" if cnn.get("resumed_after_epoch") else ""
        print(f"cnn      {cnn['precision']} on {cnn['device']}, {cnn['processes']} process(es) × "
              f"{cnn['threads_per_process']} thread(s), {cnn.get('epochs_run', '?')} epochs, "
              f"{last.get('images_per_s', 0):,.0f} images/s in the last{resumed}; the curve is in metrics.json")
    if m["data"]["skipped_files"]:
        print(f"skipped  {m['data']['skipped_files']} unreadable file(s), listed in metrics.json; the first:")
        for item in m["data"]["skipped"][:5]:
            print(f"         {item['path']}: {item['reason']}")
    if m["data"].get("ignored_files"):
        print(f"ignored  {m['data']['ignored_files']} file(s) or folder(s) that are not images to read, listed in "
              "metrics.json; the first:")
        for item in m["data"]["ignored"][:5]:
            print(f"         {item['path']}: {item['reason']}")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    """``sparkvision experiment``: every scenario, then the report and a final table."""
    from sparkvision.experiment import load_experiment, run_experiment
    from sparkvision.job import default_work_dir

    experiment = load_experiment(args.file)
    out = args.out or f"runs/experiment-{experiment.name}"
    run_experiment(experiment, data=args.data, dataset=args.dataset, out=out, work_dir=args.work_dir or default_work_dir(),
                   spark_settings=_spark_settings(args), progress=not args.quiet)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """``sparkvision predict``: labels for every input image, then where they went."""
    import time

    from sparkvision.predict import choose_engine, predict, predict_local, prepare_job

    started = time.perf_counter()
    # A wrong model folder, input, --top-k, --format or --out fails here, before any JVM starts.
    prepare_job(args.model_dir, args.inputs, args.top_k, args.out, args.format)
    master_given = args.master is not None or any(k == "spark.master" for k, _ in args.conf)
    engine, why = choose_engine(args.engine, args.model_dir, args.inputs, master_given=master_given)
    options = dict(top_k=args.top_k, out=args.out, fmt=args.format, progress=not args.quiet)
    if engine == "local":
        result = predict_local(args.model_dir, args.inputs, **options)
    else:
        from sparkvision.spark_session import SparkSettings, build_session

        if args.master is None:
            args.master = SparkSettings().master
        result = predict(build_session(_spark_settings(args)), args.model_dir, args.inputs, **options)
    where = result["out"] or "stdout"
    print(f"labelled {result['predicted']:,} image(s) in {time.perf_counter() - started:.1f} s -> {where} "
          f"({result['format']}; {'local engine' if engine == 'local' else 'Spark'}: {why})", file=sys.stderr)
    if result["skipped"]:
        print(f"skipped {len(result['skipped'])} unreadable file(s):", file=sys.stderr)
        for item in result["skipped"][:10]:
            print(f"  {item['path']}: {item['reason']}", file=sys.stderr)
    if result.get("ignored"):
        print(f"ignored {len(result['ignored'])} file(s) that are not images to read:", file=sys.stderr)
        for item in result["ignored"][:10]:
            print(f"  {item['path']}: {item['reason']}", file=sys.stderr)
    return 0


def cmd_check_java(args: argparse.Namespace) -> int:
    """``sparkvision check-java``: one line saying which Java Spark will use."""
    from sparkvision.spark_session import java_version

    major, line = java_version()
    print(f"Java {major} OK ({line})")
    return 0


def _jvm_died(err: BaseException) -> bool:
    """Whether ``err`` means the JVM behind the session is gone (py4j can no longer reach it)."""
    from py4j.protocol import Py4JNetworkError

    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, (ConnectionRefusedError, ConnectionResetError, Py4JNetworkError)):
            return True
        err = err.__cause__ or err.__context__
    return False


def _refused_setting(args: argparse.Namespace, err: BaseException) -> str | None:
    """The message for a failure that names a ``--conf`` key the user gave (Spark refused its value)."""
    text = str(err)
    for key, value in getattr(args, "conf", None) or ():
        if key in text:  # Spark's own words about it, else the failure's summary
            said = next((line.strip().removeprefix("Caused by: ") for line in text.splitlines() if key in line),
                        failure_summary(err))
            return f"Spark refused the setting --conf {key}={value}: {said[:300]}. Fix its value, or drop it."
    return None


class _Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so every cleanup on the way out runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop_on(signum: int, frame) -> None:
    raise _Stopped(signum)


def _handle_stop_signals() -> None:
    """``kill PID``, a closed terminal or a scheduler's time limit stop the run as Ctrl-C does:
    temporaries removed, nothing half-written kept. (By default Python would just die.)"""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _stop_on)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the command, and turn errors into a message and an exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None:  # the command line (tests calling main() in-process keep their own handlers)
        _handle_stop_signals()
    try:
        return args.func(args)
    except BrokenPipeError:
        # The reader of our stdout went away (`sparkvision predict … | head`): not an error of
        # ours. Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except SparkVisionError as err:
        if args.traceback:
            traceback.print_exc()
        print(f"\nerror: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:
        what = signal.Signals(err.signum).name if isinstance(err, _Stopped) else "interrupted"
        print(f"\n{what}: stopped; nothing half-written was kept.", file=sys.stderr)
        return 128 + (err.signum if isinstance(err, _Stopped) else signal.SIGINT)
    except Exception as err:  # unexpected: keep it short unless asked
        if args.traceback:
            traceback.print_exc()
        if _jvm_died(err):
            print("\nerror: Spark's JVM stopped in the middle of the work, most often because it ran out of "
                  "memory. Nothing half-written was kept. Run again with a larger --driver-memory (local mode) "
                  "or --executor-memory (a cluster), or less work per run (e.g. fewer --centroids).",
                  file=sys.stderr)
            return 7
        refused = _refused_setting(args, err)
        if refused:
            print(f"\nerror: {refused}", file=sys.stderr)
            return 2
        print(f"\nerror: unexpected {type(err).__name__}: {failure_summary(err)}\n"
              "(run again with --traceback for the full trace)", file=sys.stderr)
        return 1
