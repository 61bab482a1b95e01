"""One function per command: ``cmd_<name>(args) -> exit status``. They raise the project's
errors; :mod:`sparkvision.cli.main` turns those into messages and exit codes."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from sparkvision.errors import ConfigError


def param_value(text: str) -> Any:
    """``--param`` values: JSON when they parse (10, 0.5, true, [128, 64]), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _spark_settings(args: argparse.Namespace):
    from sparkvision.runtime.session import SparkSettings

    return SparkSettings(master=args.master, driver_memory=args.driver_memory,
                         executor_memory=args.executor_memory, memory_overhead=args.memory_overhead,
                         shuffle_partitions=args.shuffle_partitions, conf=dict(args.conf), remote=args.remote)



def _launch_local_server(args: argparse.Namespace) -> None:
    """With ``--remote local``, start the resident server's process first: its JVM then starts
    while this process imports the pipeline and checks the data, and the session waits less."""
    from sparkvision.runtime.connect import remote_url

    if (args.remote or remote_url()) == "local":
        from sparkvision.runtime import server

        server.launch()  # its one line is printed even with --quiet, as when the session starts it


def cmd_run(args: argparse.Namespace) -> int:
    """``sparkvision run``: the whole pipeline, then a short summary."""
    names = [name for name, _ in args.param]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:  # the last would win without a word
        raise ConfigError(f"--param {twice[0]} is given {names.count(twice[0])} times; give each parameter once.")
    _launch_local_server(args)
    from sparkvision.jobs.run import RunConfig, run_job
    from sparkvision.runtime.fs import default_work_dir

    model = args.model or ("ridge" if args.features == "patches" else "random_forest")
    config = RunConfig(data=args.data, dataset=args.dataset, features=args.features, centroids=args.centroids,
                       model=model,
                       params={k: param_value(v) for k, v in args.param}, num_trees=args.num_trees,
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
        preset = f" (preset {cnn['preset']})" if cnn.get("preset") else ""
        trained = (f"{cnn.get('epochs_run', '?')} epochs, {last.get('images_per_s', 0):,.0f} images/s in the "
                   f"last{resumed}; the curve is in metrics.json" if not cnn.get("summary_missing") else
                   "no training curve came back (see the warning above)")
        print(f"cnn      {cnn['precision']} on {cnn['device']}{preset}, {cnn['processes']} process(es) × "
              f"{cnn['threads_per_process']} thread(s), {trained}")
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
    _launch_local_server(args)
    from sparkvision.experiments.runner import run_experiment
    from sparkvision.experiments.spec import load_experiment
    from sparkvision.runtime.fs import default_work_dir

    experiment = load_experiment(args.file)
    out = args.out or f"runs/experiment-{experiment.name}"
    done = run_experiment(experiment, data=args.data, dataset=args.dataset, out=out,
                          work_dir=args.work_dir or default_work_dir(), spark_settings=_spark_settings(args),
                          progress=not args.quiet)
    results = done["results"]
    if results and not any(r.get("status") == "done" for r in results):  # a script must not read this as success
        print(f"error: no scenario finished ({len(results)} failed); each one's error is in {out}/REPORT.md and "
              "results.json. Fix what they say and run the same command again to retry them.", file=sys.stderr)
        return 1
    return 0



def cmd_predict(args: argparse.Namespace) -> int:
    """``sparkvision predict``: labels for every input image, then where they went."""
    import time

    from sparkvision.inference.predict import (check_spark_reads_names, choose_engine, predict, predict_local,
                                               prepare_job)

    started = time.perf_counter()
    # A wrong model folder, input, --top-k, --format or --out fails here, before any JVM starts.
    job = prepare_job(args.model_dir, args.inputs, args.top_k, args.out, args.format)
    master_given = (args.master is not None or args.remote is not None or bool(os.environ.get("SPARK_REMOTE"))
                    or any(k == "spark.master" for k, _ in args.conf))
    engine, why = choose_engine(args.engine, args.model_dir, args.inputs, master_given=master_given)
    options = dict(top_k=args.top_k, out=args.out, fmt=args.format, progress=not args.quiet)
    if engine == "local":
        result = predict_local(args.model_dir, args.inputs, **options)
    else:
        from sparkvision.runtime.session import SparkSettings, build_session

        check_spark_reads_names(job.inputs, engine_was=why)  # before the JVM starts
        if args.master is None:
            args.master = SparkSettings().master
        result = predict(build_session(_spark_settings(args)), args.model_dir, args.inputs, **options)
    where = result["out"] or "stdout"
    print(f"labelled {result['predicted']:,} image(s) in {time.perf_counter() - started:.1f} s -> {where} "
          f"({result['format']}; {'local engine' if engine == 'local' else 'Spark'}: {why})", file=sys.stderr)
    for kind, what in (("skipped", "unreadable file(s)"), ("ignored", "file(s) that are not images to read")):
        listed, count = result.get(kind) or [], result.get(f"{kind}_count", len(result.get(kind) or []))
        if count:  # every one counted, and listed up to MAX_SKIPPED_LISTED
            first = f" (the first {len(listed):,} listed)" if len(listed) < count else ""
            print(f"{kind} {count:,} {what}{first}:", file=sys.stderr)
            for item in listed:
                print(f"  {item['path']}: {item['reason']}", file=sys.stderr)
    return 0



def cmd_server(args: argparse.Namespace) -> int:
    """``sparkvision server start|stop|status``: the resident Spark Connect server on 127.0.0.1."""
    from sparkvision.runtime import server
    from sparkvision.runtime.memory import format_memory

    if args.action == "start":
        address, started = server.start(args.port, memory=args.driver_memory)
        now = server.status()
        print(f"{'started' if started else 'already running:'} Spark Connect server {address} (pid {now.pid}); "
              f"use it with --remote local or --remote {address}; log: {now.log}")
        return 0
    if args.action == "stop":
        was = server.stop()
        print(f"stopped the Spark Connect server (pid {was.pid})" if was.running else "no Spark Connect server was running")
        return 0
    now = server.status()
    if not now.running:
        print("no Spark Connect server is running (start one with `sparkvision server start`)")
        return 3
    memory = format_memory(now.rss_bytes) if now.rss_bytes else "unknown"
    print(f"running: {now.address} (pid {now.pid}), {memory} resident memory (its JVM, Python driver and "
          f"workers); log: {now.log}")
    return 0


def cmd_check_java(args: argparse.Namespace) -> int:
    """``sparkvision check-java``: one line saying which Java Spark will use."""
    from sparkvision.runtime.java import java_version

    major, line = java_version()
    print(f"Java {major} OK ({line})")
    return 0
