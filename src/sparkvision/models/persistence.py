"""Saving a fitted PipelineModel where ``sparkvision predict`` and :func:`sparkvision.load_model`
find it: the model in pyspark.ml's layout, and the labels file beside it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

from sparkvision.errors import ConfigError
from sparkvision.models.labels import image_sides, labels_problem, write_labels
from sparkvision.runtime.fs import temp_path
from sparkvision.runtime.stage_io import save_pipeline_model


def save_model(model, path: str | os.PathLike, class_names: Sequence[str], image_size: int = 32) -> Path:
    """Save a fitted PipelineModel with its class names and image size; return its folder.

    ``path`` must not exist. The class names and size are checked first, against the rules
    :func:`sparkvision.load_model` reads them by and against the classes the model predicts,
    so a saved model always loads. The model is written under a temporary name beside ``path``
    and renamed when complete: a failed save leaves nothing that looks like a model.
    """
    if not hasattr(model, "stages") or not hasattr(model, "write"):
        raise ConfigError(f"save_model: model={model!r} is not a fitted PipelineModel; pass what "
                          "fit_pipeline (or Pipeline.fit) returned.")
    if isinstance(class_names, (str, bytes)) or not isinstance(class_names, Sequence):
        raise ConfigError(f"save_model: class_names={class_names!r} is not a list of names; give one name per "
                          "class, in label order.")
    path = Path(path)
    names = list(class_names)
    problem = labels_problem(names, image_size)
    if problem:
        raise ConfigError(f"save_model: {problem}; a model saved so could not be loaded again.")
    last = model.stages[-1] if getattr(model, "stages", None) else None
    predicted = getattr(last, "numClasses", None)
    if last is not None and hasattr(last, "hasParam") and last.hasParam("numClasses"):  # the CNN's is a Param
        predicted = last.getOrDefault("numClasses")
    if isinstance(predicted, int) and predicted != len(names):
        raise ConfigError(f"save_model: {len(names)} class names, but the model predicts {predicted} classes; "
                          "give one name per class, in label order.")
    sides = _image_sides(model)
    if sides is not None and sides[1] != (image_size, image_size):
        (h, w) = sides[1]
        raise ConfigError(f"save_model: image_size={image_size}, but stage {sides[0]} takes {h}×{w} images; pass "
                          f"the size the model was trained on (image_size={h}).")
    taken = f"save_model: {path} already exists; choose another folder or remove it."
    if path.exists():
        raise ConfigError(taken)
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigError(f"save_model: {parent} is a file, so {path} cannot be made; choose another folder.")
    try:
        path.absolute().parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"save_model: cannot make the folder {path.absolute().parent} ({exc.strerror}); choose "
                          "another folder.") from None
    if not os.access(path.absolute().parent, os.W_OK | os.X_OK):
        raise ConfigError(f"save_model: cannot write in {path.absolute().parent} (permission denied); choose "
                          "another folder.")
    tmp = temp_path(path)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        try:
            save_pipeline_model(model, str(tmp))
            write_labels(tmp, names, image_size)
        except OSError as exc:  # a place os.access cannot judge (/sys, a read-only mount for root), a full disk
            raise ConfigError(f"save_model: cannot write {path} ({exc.strerror or exc}); choose another "
                              "folder.") from None
        if path.exists():  # made while the model was written: not ours to replace
            raise ConfigError(taken)
        try:
            os.rename(tmp, path)
        except OSError as exc:
            raise ConfigError(f"save_model: cannot rename the finished model to {path} ({exc.strerror}); "
                              "choose another folder.") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _image_sides(model) -> tuple[str, tuple[int, int]] | None:
    """(stage uid, (height, width)) of the first stage that records the image size it takes, read as
    the loader reads it from the saved Params; None when none does."""
    for stage in getattr(model, "stages", None) or []:
        sides = image_sides({p.name: v for p, v in stage.extractParamMap().items()})
        if sides is not None:
            return stage.uid, sides
    return None
