"""The labels file beside every saved model: its class names and the image size it was trained on.

No pyspark here: ``sparkvision predict`` reads it to choose an engine before any JVM starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from sparkvision.defaults import MAX_IMAGE_SIZE
from sparkvision.errors import BadDataError
from sparkvision.runtime.fs import write_atomic

LABELS_FILE = "sparkvision-labels.json"  # beside a saved PipelineModel's metadata/ and stages/


def labels_problem(names: object, size: object) -> str | None:
    """What makes (class names, image size) unfit for a labels file, or None: the names must be a
    list of distinct non-empty strings, the size a whole number of pixels from 1 to MAX_IMAGE_SIZE."""
    if not (isinstance(names, list) and names and all(isinstance(n, str) and n for n in names)):
        return f"class_names must be a list of names, found {json.dumps(names, default=repr)[:80]}"
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        return f"class {', '.join(twice)} named twice"
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_IMAGE_SIZE:
        return (f"image_size must be a whole number of pixels from 1 to {MAX_IMAGE_SIZE}, "
                f"found {json.dumps(size, default=repr)[:40]}")
    return None


def write_labels(model_path: str | Path, class_names: Sequence[str], image_size: int) -> Path:
    """Write ``model_path/sparkvision-labels.json``; return its path."""
    path = Path(model_path) / LABELS_FILE
    write_atomic(path, json.dumps({"class_names": list(class_names), "image_size": image_size}).encode())
    return path


def read_labels(labels: Path) -> tuple[list[str], int]:
    """(class names, image size) from a model's labels file; BadDataError naming it when it is not one."""
    fix = "It is written by `sparkvision run` beside the model; train again, or copy the model folder again."
    try:
        meta = json.loads(labels.read_text(encoding="utf-8"))
        names, size = meta["class_names"], meta.get("image_size", 32)
    except (ValueError, KeyError, TypeError) as exc:  # not JSON, not UTF-8, or not what run_job writes
        raise BadDataError(f"{labels}: not a readable class list ({type(exc).__name__}: {exc}). {fix}") from None
    except OSError as exc:
        raise BadDataError(f"{labels}: cannot be read ({exc.strerror or exc}). {fix}") from None
    problem = labels_problem(names, size)
    if problem:
        raise BadDataError(f"{labels}: not a readable class list ({problem}). {fix}")
    return names, size


def image_sides(params: Mapping[str, Any]) -> tuple[int, int] | None:
    """(height, width) of the images a stage takes, from its Params by name (the patch features'
    ``imageHeight``/``imageWidth``, the CNN's ``imageShape``); None for a stage that records none."""
    if "imageHeight" in params:
        return int(params["imageHeight"]), int(params["imageWidth"])
    shape = params.get("imageShape")
    return (int(shape[0]), int(shape[1])) if shape else None
