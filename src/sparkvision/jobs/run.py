"""One run of the pipeline: data → image table → features → classifier → metrics and model.

:func:`run_job` is what ``sparkvision run`` calls. Its output folder is assembled under a
temporary name and renamed when complete, so a killed run never leaves a folder that looks
finished.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from sparkvision import defaults
from sparkvision.data.ingest import (check_both_splits_hold_images, check_out_outside_data, ingest, locate_data,
                                     names_cifar_release, split_table)
from sparkvision.data.sources.folder import FolderSource
from sparkvision.defaults import MAX_IMAGE_SIZE, PATCH_SIZE
from sparkvision.errors import BadDataError, ConfigError, task_errors
from sparkvision.evaluation import evaluate
from sparkvision.features.sets import feature_size, feature_stages
from sparkvision.features.warmup import warm_python_workers
from sparkvision.models.cnn.settings import CHECKPOINT_FORMAT, require_torch
from sparkvision.models.fitting import check_on_jvm, fit_pipeline, label_with_classes
from sparkvision.models.persistence import save_model
from sparkvision.models.registry import CLASSIFIERS, build_classifier, check_fits_our_features, check_params
from sparkvision.runtime.connect import is_connect, master, remote_url
from sparkvision.runtime.fs import default_work_dir, remove_stale_in, temp_path
from sparkvision.runtime.session import SparkSettings, build_session, versions
from sparkvision.runtime.faults import hold
from sparkvision.runtime.stopping import raise_if_stopped


@dataclass
class RunConfig:
    """Everything that decides what a run computes (and is recorded in its metrics.json)."""
    data: str = defaults.DATA
    dataset: str = defaults.DATASET  # which CIFAR release --data holds: one of defaults.DATASETS
    features: str = defaults.FEATURES
    centroids: int | None = None   # --features patches: dictionary size K (2K features per image); None: CENTROIDS
    model: str = defaults.MODEL
    params: dict[str, Any] = field(default_factory=dict)  # the model's Params, over its defaults
    num_trees: int | None = None   # shorthands for params numTrees / maxDepth (tree models)
    max_depth: int | None = None
    epochs: float | None = None    # shorthand for the CNN's param epochs
    seed: int = defaults.SEED      # PySpark's default model seed is a string hash, which changes every process
    test_fraction: float = defaults.TEST_FRACTION  # used only when the data has no test batch
    strict: bool = False           # class folders: an unreadable file is an error, not skipped
    image_size: int | None = None  # class folders: images made N × N (shorter side, centre crop); None: IMAGE_SIZE
    out: str | None = None         # default runs/<timestamp>
    work_dir: str = field(default_factory=lambda: default_work_dir())
    spark: SparkSettings = field(default_factory=SparkSettings)

    def feature_set(self) -> str:
        """The feature set's full name: ``gray``, ``rgb`` or ``patches:K``."""
        return f"patches:{self.k()}" if self.features == "patches" else self.features

    def k(self) -> int:
        """The patch features' dictionary size: ``centroids``, or the default."""
        return defaults.CENTROIDS if self.centroids is None else self.centroids

    def size(self) -> int:
        """The size class-folder images are made: ``image_size``, or the default."""
        return defaults.IMAGE_SIZE if self.image_size is None else self.image_size

    def model_params(self) -> dict[str, Any]:
        """The model's parameters: ``params`` with the tree shorthands applied."""

        spec = CLASSIFIERS.get(self.model)
        params = dict(self.params)
        if spec is not None and spec.parse is not None:
            try:
                params = {key: spec.parse(key, value) for key, value in params.items()}
            except ValueError as exc:
                raise ConfigError(f"--param: {exc}.") from None
        for flag, name, value in (("--num-trees", "numTrees", self.num_trees), ("--max-depth", "maxDepth", self.max_depth),
                                  ("--epochs", "epochs", self.epochs)):
            if value is None:
                continue
            if spec is not None and name not in spec.tunable:
                raise ConfigError(f"{flag} does not apply to --model {self.model}; it tunes {', '.join(spec.tunable)}.")
            if name in params and params[name] != value:  # which one was meant is not ours to guess
                raise ConfigError(f"{flag} {value} and --param {name}={params[name]!r} disagree; give one of them.")
            params[name] = value
        return params

    def validate(self) -> None:
        """Raise :class:`ConfigError` for values that cannot work, before any work starts."""

        if self.features not in defaults.FEATURE_SETS:
            raise ConfigError(f"--features {self.features!r}: choose one of {', '.join(defaults.FEATURE_SETS)}.")
        if self.centroids is not None and self.features != "patches":  # else recorded as if it had been used
            raise ConfigError(f"--centroids is the dictionary size of --features patches; it does not apply to "
                              f"--features {self.features}. Drop it, or add --features patches.")
        if self.k() < 2 or self.k() % 2:
            raise ConfigError(f"--centroids must be an even number ≥ 2 (half are learned, half their mirror "
                              f"images), not {self.k()}.")
        try:
            params = self.model_params()
            check_params(self.model, params)
            check_fits_our_features(self.model, params)
        except ValueError as exc:
            raise ConfigError(f"--model/--param: {exc}.") from None
        if CLASSIFIERS[self.model].reads_images:
            require_torch()
            if self.features != "gray":  # gray is the default: only an explicit other choice is refused
                raise ConfigError(f"--model {self.model} learns from the RGB images themselves; drop --features "
                                  f"{self.features}.")
        if self.num_trees is not None and self.num_trees < 1:
            raise ConfigError(f"--num-trees must be at least 1, not {self.num_trees}.")
        if self.max_depth is not None and not 1 <= self.max_depth <= 30:
            raise ConfigError(f"--max-depth must be between 1 and 30 (MLlib's limit), not {self.max_depth}.")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"the test fraction must be between 0 and 1, not {self.test_fraction}.")
        if not 1 <= self.size() <= MAX_IMAGE_SIZE:
            raise ConfigError(f"--image-size must be between 1 and {MAX_IMAGE_SIZE} pixels, not {self.size()}.")
        if self.features == "patches" and self.size() < PATCH_SIZE:
            raise ConfigError(f"--features patches takes {PATCH_SIZE}×{PATCH_SIZE}-pixel patches, so --image-size must "
                              f"be at least {PATCH_SIZE}, not {self.size()}.")


class Progress:
    """Phase-by-phase progress on stderr, and the seconds each phase took."""
    def __init__(self, phases: int, enabled: bool = True) -> None:
        self.phases, self.enabled, self.index = phases, enabled, 0
        self.seconds: dict[str, float] = {}
        self.started = time.perf_counter()

    def say(self, text: str) -> None:
        if self.enabled:
            print(text, file=sys.stderr, flush=True)

    @contextmanager
    def phase(self, name: str, what: str) -> Iterator[None]:
        raise_if_stopped()  # a stop signal whose first raise a finaliser swallowed
        self.index += 1
        self.say(f"[{self.index}/{self.phases}] {what} ...")
        t0 = time.perf_counter()
        yield
        raise_if_stopped()
        self.seconds[name] = round(time.perf_counter() - t0, 3)
        self.say(f"      {name} done in {self.seconds[name]:.1f} s")

    def total(self) -> float:
        return round(time.perf_counter() - self.started, 3)


def _prepare_out(out: str | None, data: str) -> tuple[Path, Path]:
    final = Path(out) if out else Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    if final.exists():
        raise ConfigError(f"--out {final} already exists; choose another folder or remove it.")
    check_out_outside_data(final, data)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file where a folder should be, no permission
        blocker = next((p for p in (final.parent, *final.parent.parents) if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a folder" if blocker else exc.strerror
        raise ConfigError(f"--out {final}: cannot create the folder {final.parent} ({why}); "
                          "choose another place.") from None
    if not os.access(final.parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {final}: cannot write in {final.parent} (permission denied); choose another place.")
    # What killed runs left beside it: this name's, and older runs' (runs/<timestamp> never repeats).
    remove_stale_in(final.parent)
    # Absolute: a Spark Connect server resolves a relative path against its own working folder.
    final = final.absolute()
    tmp = temp_path(final)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
    except OSError as exc:  # permission checks os.access cannot see (ACLs, a read-only mount), a full disk
        raise ConfigError(f"--out {final}: cannot write in {final.parent} ({exc.strerror}); choose another place.") from None
    return final, tmp


def cnn_checkpoint_dir(config: RunConfig, table_fingerprint: str) -> Path:
    """``WORK/cnn/<key>``: the CNN's shard and epoch checkpoints for this table, split and settings.

    The key covers everything that decides what training computes, so only the same command
    (same data, seed, hold-out and Params) resumes from it, and the checkpoints' format, so a
    version whose presets or checkpoints differ starts afresh.
    """
    import hashlib

    key = json.dumps({"table": table_fingerprint, "seed": config.seed, "test_fraction": config.test_fraction,
                      "model": config.model, "params": config.model_params(), "format": CHECKPOINT_FORMAT},
                     sort_keys=True)
    return Path(config.work_dir).absolute() / "cnn" / hashlib.sha256(key.encode()).hexdigest()[:16]


def run_job(config: RunConfig, *, progress: bool = True, spark=None) -> dict[str, Any]:
    """Run the pipeline described by ``config``; return the metrics (also in ``OUT/metrics.json``).

    Uses ``spark`` when given (tests share one session), else starts one from ``config.spark``.
    """

    config.validate()
    final, tmp = _prepare_out(config.out, config.data)
    p = Progress(5, progress)
    try:
        with task_errors():  # a project error raised in a task comes back as itself
            # Find and check the data before starting a JVM: a wrong path fails in a second; an option
            # that does not apply to it, before a download or an extraction.
            if config.image_size is not None and names_cifar_release(config.data, config.dataset):
                what = "downloads" if config.data == "auto" else "is"
                raise ConfigError(f"--image-size applies to class folders; --data {config.data} {what} a "
                                  f"{config.dataset} release, whose images are 32×32. Drop --image-size.")
            source = locate_data(config.data, config.work_dir, dataset=config.dataset, image_size=config.size(),
                                 progress=progress)
            where = config.spark.remote or remote_url() or config.spark.master
            with p.phase("session", f"starting Spark ({where})"):
                if spark is None:  # a new session: its Python workers are not started yet
                    spark = build_session(config.spark)
                    if not is_connect(spark):  # see warm_python_workers: classic sessions only
                        warm_python_workers(spark)
            shape = (source.height, source.width, source.channels)
            reads_images = CLASSIFIERS[config.model].reads_images
            features = [] if reads_images else feature_stages(config.feature_set(), shape=shape, seed=config.seed)
            stages = features + [build_classifier(
                config.model, seed=config.seed, num_features=None if reads_images else feature_size(config.feature_set(), source),
                num_classes=len(source.label_names), **config.model_params())]
            check_on_jvm(stages[-1])  # a bad parameter value fails here, before any data is read
            with p.phase("ingest", f"loading {source.root} into the image table"):
                table = ingest(spark, source, config.work_dir, strict=config.strict, progress=progress)
                labeled = label_with_classes(table.df, table.info.class_names)
                train, test = split_table(labeled, table.info.has_test, config.test_fraction, config.seed)
                check_both_splits_hold_images(train, test, table, config.test_fraction)
            checkpoints = None
            if reads_images and not stages[-1].isSet("checkpointDir"):
                # Kept between runs of the same command: a killed run resumes after its last finished epoch.
                checkpoints = cnn_checkpoint_dir(config, table.info.fingerprint)
                stages[-1].setCheckpointDir(str(checkpoints))
                stages[-1].replaceable_checkpoints = True  # our folder: a stale checkpoint there is replaced
            if reads_images:
                stages[-1].progress = progress
            with p.phase("fit", f"fitting Pipeline[{', '.join(type(s).__name__ for s in stages)}]"):
                hold("fit")  # test-only: see sparkvision.runtime.faults
                model = fit_pipeline(stages, train, timings=(fit_detail := {}))
            with p.phase("evaluate", "evaluating on the " + ("test batch" if table.info.has_test else
                                                             f"{config.test_fraction:.0%} hold-out")):
                metrics = evaluate(model.transform(test), table.info.class_names)
            with p.phase("save", f"saving the model to {final}"):
                # predict needs the class names and the image size; they travel with the model
                save_model(model, tmp / "model", table.info.class_names, table.info.height)
            metrics.update({
                "seconds": {**p.seconds, "total": p.total()},
                "fit_seconds": {**fit_detail, **{f"ridge {k}": v for k, v in getattr(model.stages[-1], "fitSeconds", {}).items()}},
                "config": {**asdict(config), "out": str(final), "model_params": config.model_params(),
                           # the values used, and null where the option does not apply
                           "centroids": config.k() if config.features == "patches" else None,
                           "image_size": config.size() if isinstance(source, FolderSource) else None},
                "data": {"table": str(table.path), "table_reused": table.reused, "source": source.root,
                         "skipped_files": table.info.skipped, "skipped": table.skipped,
                         # files the listing found that are not images to read (other formats, hidden names, …)
                         "ignored_files": len(getattr(source, "ignored", ())),
                         "ignored": [{"path": p, "reason": why} for p, why in getattr(source, "ignored", ())[:1000]],
                         "num_images": table.info.num_images, "evaluated_on": "test_batch"
                         if table.info.has_test else f"random {config.test_fraction} hold-out, seed {config.seed}"},
                "class_names": list(table.info.class_names),
                "spark_master": master(spark),  # the one used: spark-submit's may differ from --master
                "versions": versions(spark),
            })
            summary = getattr(model.stages[-1], "trainingSummary", None)
            if summary:  # the CNN: its training curve, precision, device and processes
                metrics["cnn"] = summary
            validation_errors = getattr(model.stages[-1], "validationErrors", None)
            if validation_errors:  # the ridge classifier chose its regParam on held-out sums
                metrics["regParam_chosen"] = model.stages[-1].getRegParam()
                metrics["regParam_validation_mse"] = {str(k): v for k, v in validation_errors.items()}
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
            raise_if_stopped()
            os.replace(tmp, final)
            if checkpoints is not None:  # the model is saved: the epochs' checkpoints have served
                shutil.rmtree(checkpoints, ignore_errors=True)
            return metrics
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
