"""Saving a fitted PipelineModel where ``sparkvision predict`` and :func:`sparkvision.load_model`
find it: the model in pyspark.ml's layout, and the labels file beside it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from sparkvision.models.labels import write_labels
from sparkvision.runtime.stage_io import save_pipeline_model


def save_model(model, path: str | os.PathLike, class_names: Sequence[str], image_size: int = 32) -> Path:
    """Save a fitted PipelineModel with its class names and image size; return its folder."""
    path = Path(path)
    save_pipeline_model(model, str(path))
    write_labels(path, class_names, image_size)
    return path
