"""The public Python API: the pieces the CLI uses, for notebooks and scripts (``save_model``:
:func:`sparkvision.models.persistence.save_model`).

Everything here is importable from ``sparkvision`` itself (``import sparkvision as sv``) and is
the same code the commands run, not a second implementation.

    spark = sv.session(master="local[*]")                  # driver memory sized from the machine
    table = sv.load_cifar10(spark, "/data/cifar")          # or "auto"; an ImageTable
    train, test = sv.split_table(sv.label_with_classes(table.df, table.info.class_names),
                                 table.info.has_test, 0.2, seed=42)
    model = sv.fit_pipeline(sv.feature_stages("gray") + [sv.build_classifier("random_forest", seed=42)], train)
    metrics = sv.evaluate(model.transform(test), table.info.class_names)
"""

from __future__ import annotations

import os
from typing import Any

from sparkvision.data.sources.folder import locate_folder
from sparkvision.defaults import (
    APP_NAME,
    EXECUTOR_MEMORY,
    MASTER,
    MEMORY_OVERHEAD,
    SHUFFLE_PARTITIONS,
)
from sparkvision.errors import ConfigError, DataNotFoundError
from sparkvision.inference.predict import find_model
from sparkvision.data.ingest import check_work_dir, ingest, locate_data
from sparkvision.models.persistence import save_model
from sparkvision.runtime.fs import default_work_dir
from sparkvision.runtime.session import SparkSettings, build_session

__all__ = ["session", "load_cifar10", "load_folder", "save_model", "load_model"]


def session(master: str = MASTER, *, driver_memory: str | None = None, executor_memory: str = EXECUTOR_MEMORY,
            memory_overhead: str = MEMORY_OVERHEAD, shuffle_partitions: int = SHUFFLE_PARTITIONS, app_name: str = APP_NAME,
            show_progress: bool | None = None, conf: dict[str, str] | None = None, remote: str | None = None):
    """Start (or reuse) a SparkSession as ``sparkvision run`` does (local mode binds to 127.0.0.1);
    ``conf`` holds any other Spark settings, e.g. ``{"spark.ui.enabled": "false"}``. Without
    ``driver_memory``, it is sized from this machine (``sparkvision.runtime.memory.size_memory``).
    ``remote`` (``sc://HOST:PORT``, or ``"local"`` for ``sparkvision server``) gives a Spark Connect session instead.

    Examples
    --------
    >>> import sparkvision as sv
    >>> spark = sv.session("local[2]", conf={"spark.ui.enabled": "false"})
    >>> spark.version.split(".")[0], spark.conf.get("spark.driver.bindAddress")
    ('4', '127.0.0.1')
    """

    for name, value, kind in (("master", master, str), ("executor_memory", executor_memory, str),
                              ("memory_overhead", memory_overhead, str), ("app_name", app_name, str),
                              ("driver_memory", driver_memory, (str, type(None))), ("conf", conf, (dict, type(None))),
                              ("remote", remote, (str, type(None)))):
        if not isinstance(value, kind):
            raise ConfigError(f"session: {name}={value!r} is of type {type(value).__name__}; give "
                              f"{'a dict of Spark settings' if name == 'conf' else 'text, e.g. ' + _EXAMPLES[name]}.")
    if isinstance(shuffle_partitions, bool) or not isinstance(shuffle_partitions, int) or shuffle_partitions < 1:
        raise ConfigError(f"session: shuffle_partitions={shuffle_partitions!r}; give a whole number of at least 1.")
    sized = {} if driver_memory is None else {"driver_memory": driver_memory}
    return build_session(SparkSettings(master=master, executor_memory=executor_memory, **sized,
                                       memory_overhead=memory_overhead, shuffle_partitions=shuffle_partitions,
                                       app_name=app_name, conf=dict(conf or {}), remote=remote),
                         show_progress=show_progress)


_EXAMPLES = {"master": "'local[*]'", "executor_memory": "'2g'", "memory_overhead": "'1g'", "app_name": "'sparkvision'",
             "driver_memory": "'4g'", "remote": "'sc://127.0.0.1:15002'"}


def _check_spark(spark, where: str) -> None:
    if not hasattr(spark, "read") or not hasattr(spark, "createDataFrame"):
        raise ConfigError(f"{where}: spark={spark!r} is not a SparkSession; pass the one sv.session() returns.")


def _work_dir(work_dir: str | os.PathLike | None) -> str:

    return str(work_dir) if work_dir else default_work_dir()


def load_cifar10(spark, path_or_auto: str | os.PathLike = "auto", *, dataset: str = "cifar10",
                 work_dir: str | os.PathLike | None = None, progress: bool = True):
    """The image table of a CIFAR release (folder, archive, or ``"auto"`` to download): an
    ``ImageTable`` with ``.df`` (one row per image) and ``.info`` (class names, counts)."""

    _check_spark(spark, "load_cifar10")
    wd = _work_dir(work_dir)
    source = locate_data(str(path_or_auto), wd, dataset=dataset, progress=progress)
    if not hasattr(source, "release"):

        raise DataNotFoundError(f"{path_or_auto}: no CIFAR release here; for class folders use load_folder.")
    return ingest(spark, source, wd, progress=progress)


def load_folder(spark, path: str | os.PathLike, *, image_size: int = 32, strict: bool = False,
                work_dir: str | os.PathLike | None = None, progress: bool = True):
    """The image table of a class-folder tree (``ROOT/<class>/<file>``); unreadable files are
    listed in ``.skipped`` (or raise with ``strict``)."""

    _check_spark(spark, "load_folder")
    wd = _work_dir(work_dir)
    check_work_dir(wd)
    return ingest(spark, locate_folder(path, image_size), wd, strict=strict, progress=progress)


def load_model(path: str | os.PathLike) -> tuple[Any, list[str]]:
    """(PipelineModel, class names) from a run's ``--out`` folder or a saved model folder."""
    from pyspark.ml import PipelineModel


    model_path, class_names, _ = find_model(path)
    return PipelineModel.load(str(model_path)), class_names
