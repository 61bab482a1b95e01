"""The ``sparkvision`` argument parser: one subcommand per command, every default from :mod:`sparkvision.defaults`."""

from __future__ import annotations

import argparse

from sparkvision import __version__, defaults
from sparkvision.cli.commands import cmd_check_java, cmd_experiment, cmd_predict, cmd_run, cmd_server


def _key_value(flag: str):
    def parse(text: str) -> tuple[str, str]:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"{flag} needs KEY=VALUE, got {text!r}")
        return key.strip(), value.strip()
    return parse


def _whole_number(flag: str, low: int, high: int):
    """An argparse type: a whole number from ``low`` to ``high``, else an error naming ``flag``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{flag} needs a whole number from {low} to {high}, not {text!r}")
        return value
    return parse


def _add_spark_options(parser: argparse.ArgumentParser, master_given_only: bool = False) -> None:
    """Spark's options; with ``master_given_only`` ``--master`` defaults to None (predict: not given,
    so ``--engine auto`` may stay local; Spark, when it runs, still takes the default master)."""
    from sparkvision.runtime.session import SparkSettings

    s = SparkSettings()
    group = parser.add_argument_group("Spark")
    master_help = (f"Spark master URL; giving one sends --engine auto to Spark (default: not given; "
                   f"{s.master} when Spark runs)" if master_given_only else f"Spark master URL (default {s.master})")
    group.add_argument("--master", default=None if master_given_only else s.master, help=master_help)
    group.add_argument("--driver-memory", default=s.driver_memory, help=f"default {s.driver_memory}")
    group.add_argument("--executor-memory", default=s.executor_memory, help=f"default {s.executor_memory}")
    group.add_argument("--memory-overhead", default=s.memory_overhead, help=f"default {s.memory_overhead}")
    group.add_argument("--shuffle-partitions", type=int, default=s.shuffle_partitions,
                       help=f"default {s.shuffle_partitions}")
    group.add_argument("--conf", type=_key_value("--conf"), action="append", default=[], metavar="KEY=VALUE",
                       help="any other Spark setting; repeatable")
    group.add_argument("--remote", default=None, metavar="sc://HOST:PORT",
                       help="run on a Spark Connect server instead of starting Spark here; 'local' is sparkvision's "
                            "own server on this machine (`sparkvision server`), started when needed "
                            "(default $SPARK_REMOTE, else none)")


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    from sparkvision.data.sources.cifar import RELEASES  # numpy only

    parser.add_argument("--data", default=defaults.DATA, help="a CIFAR release folder or archive, a folder of class "
                        "folders, or 'auto' to download (default)")
    parser.add_argument("--dataset", default=defaults.DATASET, choices=tuple(RELEASES),
                        help=f"which CIFAR release --data is (default {defaults.DATASET}); class folders need none")
    parser.add_argument("--work-dir", default=None, help="where tables and downloads are kept (default "
                        "$SPARKVISION_WORK_DIR or ~/.cache/sparkvision)")


class _ModelNames:
    """``--model``'s choices, read from ``models.registry`` only when a value is checked or help is shown.

    ``models.registry`` imports pyspark.ml (half a second); ``predict`` on the local engine never needs it.
    """

    def _names(self) -> list[str]:
        from sparkvision.models.registry import CLASSIFIERS

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
    run.add_argument("--features", default=defaults.FEATURES, choices=defaults.FEATURE_SETS,
                     help=f"feature set: gray or rgb pixels, or learned patch features (default {defaults.FEATURES})")
    run.add_argument("--centroids", type=int, default=None, metavar="K",
                     help=f"--features patches: dictionary size; 2K features per image (default {defaults.CENTROIDS})")
    run.add_argument("--model", default=None, choices=_ModelNames(), metavar="NAME",
                     help=f"classifier: %(choices)s (default {defaults.MODEL}, the assignment's; ridge with "
                          "--features patches)")
    run.add_argument("--num-trees", type=int, default=None,
                     help=f"trees in the forest (default {defaults.FOREST['numTrees']})")
    run.add_argument("--max-depth", type=int, default=None, help=f"maximum tree depth (default {defaults.FOREST['maxDepth']})")
    run.add_argument("--epochs", type=float, default=None,
                     help="--model cnn: passes over the training images (default: the preset of the precision "
                          "and hardware that run, see README)")
    run.add_argument("--param", type=_key_value("--param"), action="append", default=[], metavar="NAME=VALUE",
                     help="any tunable parameter of the model, e.g. regParam=0.1 or hidden=[256]; repeatable")
    run.add_argument("--seed", type=_whole_number("--seed", 0, defaults.MAX_SEED), default=defaults.SEED,
                     help=f"seed of the hold-out split and the model (default {defaults.SEED})")
    run.add_argument("--strict", action="store_true",
                     help="class folders: stop at an unreadable image instead of skipping and listing it")
    run.add_argument("--image-size", type=int, default=None,
                     help=f"class folders: make images N×N (shorter side to N, centre crop; default {defaults.IMAGE_SIZE})")
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

    from sparkvision.inference.predict import LOCAL_MAX_IMAGES  # no heavy imports there

    pred = sub.add_parser("predict", help="label image files, folders or globs with a saved model",
                          description="Label images with a model saved by `sparkvision run` (its --out folder or "
                                      "model/ folder). Writes CSV (default) or JSON lines with each image's path "
                                      "and its top-k labels and probabilities.")
    pred.add_argument("model_dir", help="the run's --out folder, or its model/ folder")
    pred.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    pred.add_argument("--top-k", type=int, default=None,
                      help=f"labels per image (default {defaults.TOP_K}, or every class of a model with fewer)")
    pred.add_argument("--out", default=None, help="output file (.csv or .jsonl); default: CSV on stdout")
    pred.add_argument("--format", choices=("csv", "jsonl"), default=None, help="default: from --out's suffix")
    pred.add_argument("--engine", choices=defaults.ENGINES, default=defaults.ENGINES[0],
                      help="local: no JVM, the model evaluated in numpy (a second or less for a few images; "
                           "not every model); spark: decoded and labelled in Spark tasks (any model, any number of images, "
                           f"a cluster); auto (default): local for a supported model, no --master, --remote or "
                           f"spark.master and at most "
                           f"{LOCAL_MAX_IMAGES:,} images")
    _add_spark_options(pred, master_given_only=True)
    pred.add_argument("--quiet", action="store_true", help="no progress lines")
    pred.set_defaults(func=cmd_predict)

    srv = sub.add_parser("server", help="a resident Spark Connect server on 127.0.0.1 that later runs reuse",
                         description="Start, stop or look at sparkvision's own Spark Connect server on 127.0.0.1. "
                                     "Runs given --remote local use it (and start it when it is not running): the JVM "
                                     "starts once, not every run.")
    srv.add_argument("action", choices=("start", "stop", "status"))
    srv.add_argument("--port", type=_whole_number("--port", 1, 65535), default=None,
                     help=f"start: the port to listen on, on 127.0.0.1 (default $SPARKVISION_CONNECT_PORT, else "
                          f"{defaults.CONNECT_PORT})")
    srv.add_argument("--driver-memory", default=None, help="start: the server's heap (default: sized from this machine)")
    srv.set_defaults(func=cmd_server)

    java = sub.add_parser("check-java", help="check that a Java Spark can use (17 or 21) is installed")
    java.set_defaults(func=cmd_check_java)
    return parser
