"""The command line: an argument parser, one function per command, and ``main`` mapping errors.

``main(argv)`` returns an exit status; a :class:`SparkVisionError` is printed as one paragraph
(``--traceback`` shows the whole trace). Exit codes: 0 done, 1 unexpected failure, 2 bad
option, 3 data not found, 4 bad data, 5 download failed, 6 no usable Java, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Sequence

from sparkvision import __version__
from sparkvision.errors import SparkVisionError


def _conf_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--conf needs KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def build_parser() -> argparse.ArgumentParser:
    """The ``sparkvision`` argument parser."""
    from sparkvision.job import RunConfig
    from sparkvision.session import SparkSettings

    d, s = RunConfig, SparkSettings()
    parser = argparse.ArgumentParser(prog="sparkvision", description="Image classification on Apache Spark.")
    parser.add_argument("--version", action="version", version=f"sparkvision {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show the full trace of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="ingest CIFAR-10, fit a Pipeline, evaluate, save model and metrics",
                         description="Ingest CIFAR-10 into the image table (reused when unchanged), fit "
                                     "Pipeline[features, classifier], evaluate on the test batch or an 80/20 "
                                     "hold-out, and write the model and metrics.json into --out.")
    run.add_argument("--data", default=d.data, help="CIFAR-10 folder or archive, or 'auto' to download (default)")
    run.add_argument("--features", default=d.features, choices=("gray", "rgb"), help="feature set (default gray)")
    run.add_argument("--model", default=d.model, help="classifier name (default random_forest)")
    run.add_argument("--num-trees", type=int, default=10, help="trees in the forest (default 10)")
    run.add_argument("--max-depth", type=int, default=5, help="maximum tree depth (default 5)")
    run.add_argument("--seed", type=int, default=42, help="seed of the hold-out split (default 42)")
    run.add_argument("--out", default=None, help="output folder (default runs/<timestamp>); must not exist")
    run.add_argument("--work-dir", default=None,
                     help="where tables and downloads are kept (default $SPARKVISION_WORK_DIR or ~/.cache/sparkvision)")
    spark = run.add_argument_group("Spark")
    spark.add_argument("--master", default=s.master, help=f"Spark master URL (default {s.master})")
    spark.add_argument("--driver-memory", default=s.driver_memory, help=f"default {s.driver_memory}")
    spark.add_argument("--executor-memory", default=s.executor_memory, help=f"default {s.executor_memory}")
    spark.add_argument("--memory-overhead", default=s.memory_overhead, help=f"default {s.memory_overhead}")
    spark.add_argument("--shuffle-partitions", type=int, default=s.shuffle_partitions,
                       help=f"default {s.shuffle_partitions}")
    spark.add_argument("--conf", type=_conf_pair, action="append", default=[], metavar="KEY=VALUE",
                       help="any other Spark setting; repeatable")
    run.add_argument("--quiet", action="store_true", help="no progress lines, only the summary")
    run.set_defaults(func=cmd_run)

    java = sub.add_parser("check-java", help="check that a Java Spark can use (17 or 21) is installed")
    java.set_defaults(func=cmd_check_java)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    """``sparkvision run``: the whole pipeline, then a short summary."""
    from sparkvision.job import RunConfig, default_work_dir
    from sparkvision.session import SparkSettings

    settings = SparkSettings(master=args.master, driver_memory=args.driver_memory,
                             executor_memory=args.executor_memory, memory_overhead=args.memory_overhead,
                             shuffle_partitions=args.shuffle_partitions, conf=dict(args.conf))
    config = RunConfig(data=args.data, features=args.features, model=args.model, num_trees=args.num_trees,
                       max_depth=args.max_depth, seed=args.seed, out=args.out,
                       work_dir=args.work_dir or default_work_dir(), spark=settings)
    from sparkvision.job import run_job

    m = run_job(config, progress=not args.quiet)
    secs = m["seconds"]
    print(f"\naccuracy {m['accuracy']:.2%}   macro F1 {m['f1_macro']:.3f}   on {m['num_evaluated']:,} images "
          f"({m['data']['evaluated_on']})")
    print("time     " + "   ".join(f"{k} {v:.1f}s" for k, v in secs.items()))
    print(f"outputs  {m['config']['out']}/model (PipelineModel), {m['config']['out']}/metrics.json")
    print(f"table    {m['data']['table']}" + (" (reused)" if m["data"]["table_reused"] else " (written)"))
    return 0


def cmd_check_java(args: argparse.Namespace) -> int:
    """``sparkvision check-java``: one line saying which Java Spark will use."""
    from sparkvision.session import java_version

    major, line = java_version()
    print(f"Java {major} OK ({line})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the command, and turn errors into a message and an exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SparkVisionError as err:
        if args.traceback:
            traceback.print_exc()
        print(f"\nerror: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted: nothing half-written was kept.", file=sys.stderr)
        return 130
    except Exception as err:  # unexpected: keep it short unless asked
        if args.traceback:
            traceback.print_exc()
        last = str(err).strip().splitlines()[-1] if str(err).strip() else ""
        print(f"\nerror: unexpected {type(err).__name__}: {last}\n(run again with --traceback for the full trace)",
              file=sys.stderr)
        return 1
