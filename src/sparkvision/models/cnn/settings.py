"""The CNN's defaults and checks, importable without torch or Spark (the CLI checks options with them).

The defaults are airbench's recipe with the widths and epochs measured for two CPU cores
(BENCHMARKS.md, section "CNN"). ``precision="auto"`` picks bfloat16 only where the hardware
computes it natively (a GPU, or a CPU with AMX or AVX512-BF16): elsewhere PyTorch emulates it,
and on an AVX2-only CPU measured here it trained 13× slower than float32.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

from sparkvision.errors import ConfigError

TORCH_EXTRA = "pip install 'sparkvision[torch]'"

# Widths, epochs, batch size, update rule and progressive resizing when not given, by the hardware
# that runs (preset_name). All train airbench94_muon's rule (Muon on the conv filters) on 1000-image
# steps, the first 60 % of the epochs on smaller images (training.progressive_sizes), which buys
# epochs: a convolution's cost goes with its pixels.
# bfloat16 on AMX tiles (and GPUs) trains 2-3 times as fast as float32, so it affords airbench's
# full widths, and 18 epochs: 90.64 % on the 20 % hold-out in 7.0 minutes end to end on a 2-core AMX
# Xeon, where 16 gave 90.49 % in 7.1 before the faster weight gradients (weight_grad.py) and 7 epochs
# all at full size 89.50 % in 4.7 (BENCHMARKS.md, "CNN").
# bfloat16 on AVX512-BF16 without AMX (a Zen 5 EPYC) trains the same network at 0.7 of AMX's rate at
# full size: the 18 epochs took 9.7 minutes there (90.43 %), so its preset trains 13.
# float32 (AVX2-only CPUs) trains a narrower network for its 12-minute budget: a first group of 32
# trains 1.45× as fast as 64 there, and 8 epochs of 32/128/128 beat 5 of 64/128/128 in about the same
# time (87.87 against 87.06 % on a Zen 2 EPYC). With progressive resizing 18 epochs gave 88.84 % in
# 673 s end to end there, where 12 at full size gave 88.45 % in 728 s; 16 keep a margin for a busy
# host and for 50,000 images (float32 keeps oneDNN's weight gradients, so it gains no epochs).
_SCHEDULE: dict[str, Any] = {"epochs": 16.0, "batchSize": 1000, "optimizer": "muon", "progressive": True}
PRESETS: dict[str, dict[str, Any]] = {
    "bfloat16": {"widths": [64, 256, 256], **_SCHEDULE, "epochs": 18.0},
    "bfloat16-avx512": {"widths": [64, 256, 256], **_SCHEDULE, "epochs": 13.0},
    "float32": {"widths": [32, 128, 128], **_SCHEDULE},
}
# learningRate when not given, by update rule: airbench94's units for sgd (per 1024 images, before
# the momentum's gain), the conv filters' step for muon (airbench94_muon's 0.24; the biases and the
# head move at fixed ratios of it).
LEARNING_RATES: dict[str, float] = {"sgd": 11.5, "muon": 0.24}
OPTIMIZERS = tuple(LEARNING_RATES)
# The training Params of CNNClassifier (camelCase, as pyspark.ml names them) and their defaults;
# those a preset holds are the float32 preset's.
CNN_DEFAULTS: dict[str, Any] = {
    **PRESETS["float32"],
    "learningRate": LEARNING_RATES["muon"],
    "weightDecay": 0.0153,
    "labelSmoothing": 0.2,
    "augment": True,
    "tta": True,
    "precision": "auto",
    "numProcesses": 0,
    "gpu": "auto",
}
# Raised whenever a checkpoint's contents or a preset change: part of the checkpoint folder's key,
# so a run never resumes from what an older version saved. 2: the muon preset, per-rule optimizer state;
# 3: the float32 preset's Muon; 4: progressive resizing in both presets; 5: Muon keeps a lookahead
# average, the bfloat16 preset trains 18 epochs; 6: runs of fewer than 480 steps average no weights;
# 7: bfloat16 without AMX has its own preset.
CHECKPOINT_FORMAT = 7
PRECISIONS = ("auto", "float32", "bfloat16")
GPU_CHOICES = ("auto", "true", "false")


def with_preset(values: dict[str, Any], preset: str, given: set[str]) -> dict[str, Any]:
    """``values`` with the Params of the preset named ``preset`` (a key of :data:`PRESETS`, from
    :func:`preset_name`) that are not in ``given`` (those the user set) replaced by the preset's, and
    the learning rate, when not given, the update rule's.

    >>> values = {"epochs": 4.0, "batchSize": 64, "optimizer": "sgd", "learningRate": 11.5}
    >>> preset = with_preset(values, "bfloat16", {"batchSize"})
    >>> preset["widths"], preset["batchSize"], preset["optimizer"], preset["learningRate"]
    ([64, 256, 256], 64, 'muon', 0.24)
    >>> with_preset(values, "bfloat16", {"optimizer"})["learningRate"]
    11.5
    """
    merged = {**values, **{name: value for name, value in PRESETS[preset].items() if name not in given}}
    if "learningRate" not in given:
        merged["learningRate"] = LEARNING_RATES[merged["optimizer"]]
    return merged


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: blocked in sys.modules (set to None)
        return False


def require_torch() -> None:
    """Raise :class:`ConfigError` saying which extra to install when PyTorch is missing."""
    if not (_installed("torch") and _installed("safetensors")):
        raise ConfigError(f"--model cnn needs PyTorch and safetensors, which are not installed. Install the "
                          f"torch extra: {TORCH_EXTRA} (or `make setup`, which installs it).")


def gpu_choice(value: Any) -> Any:
    """``gpu`` as its text: ``--param gpu=true`` and TOML's ``gpu = true`` read as booleans, which
    mean ``"true"`` and ``"false"``; a number becomes its text; anything else passes, for
    :func:`check_cnn_params` to judge (and name the choices).

    >>> gpu_choice(True), gpu_choice(False), gpu_choice("auto"), gpu_choice(1)
    ('true', 'false', 'auto', '1')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, (int, float)) else value


def parse_cnn_value(key: str, value: Any) -> Any:
    """A command-line value for Param ``key``: ``widths=64,128,128`` becomes a list, a boolean
    ``gpu`` its text; others pass."""
    if key == "gpu":
        return gpu_choice(value)
    if key == "widths" and isinstance(value, str):
        try:
            return [int(part) for part in value.split(",")]
        except ValueError:
            raise ValueError(f"widths must be three whole numbers separated by commas, e.g. 64,128,128; "
                             f"not {value!r}") from None
    return value


def check_cnn_params(values: dict[str, Any]) -> None:
    """Raise ValueError (the reason, naming the Param) for values that cannot train; no torch needed."""
    merged = {**CNN_DEFAULTS, **values}
    epochs = merged["epochs"]
    if not isinstance(epochs, (int, float)) or isinstance(epochs, bool) or not 0 < epochs < math.inf:
        raise ValueError(f"epochs must be a finite number above 0, not {epochs!r}")
    widths = merged["widths"]
    if not (isinstance(widths, (list, tuple)) and len(widths) == 3
            and all(type(w) is int and 1 <= w <= 4096 for w in widths)):
        raise ValueError(f"widths must be three whole numbers between 1 and 4096 (the conv groups' channels), "
                         f"e.g. 64,128,128; not {widths!r}")
    for name, low in (("batchSize", 1), ("numProcesses", 0)):
        value = merged[name]
        if type(value) is not int or value < low:
            raise ValueError(f"{name} must be a whole number ≥ {low}, not {value!r}")
    for name in ("learningRate", "weightDecay"):
        value = merged[name]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < math.inf:
            raise ValueError(f"{name} must be a finite number ≥ 0, not {value!r}")
    smoothing = merged["labelSmoothing"]
    if not isinstance(smoothing, (int, float)) or not 0 <= smoothing < 1:
        raise ValueError(f"labelSmoothing must be in [0, 1), not {smoothing!r}")
    for name in ("augment", "tta", "progressive"):
        if not isinstance(merged[name], bool):
            raise ValueError(f"{name} must be true or false, not {merged[name]!r}")
    if merged["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {merged['optimizer']!r}")
    if merged["precision"] not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {merged['precision']!r}")
    if gpu_choice(merged["gpu"]) not in GPU_CHOICES:
        raise ValueError(f"gpu must be one of {', '.join(GPU_CHOICES)}, not {merged['gpu']!r}")


def _cpu_flags(cpuinfo: str | None) -> set[str]:
    """The flags of /proc/cpuinfo (or of ``cpuinfo``, its text); empty where it cannot be read."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    return set(next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), []))


def cpu_has_native_bfloat16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bfloat16 in hardware (AMX tiles or AVX512-BF16), from /proc/cpuinfo."""
    return bool({"amx_bf16", "avx512_bf16"} & _cpu_flags(cpuinfo))


def resolve_precision(precision: str, use_gpu: bool) -> str:
    """``float32`` or ``bfloat16`` for ``precision`` (``auto`` decides from the hardware)."""
    if precision != "auto":
        return precision
    return "bfloat16" if use_gpu or cpu_has_native_bfloat16() else "float32"


def preset_name(precision: str, use_gpu: bool, cpuinfo: str | None = None) -> str:
    """The key of :data:`PRESETS` for a resolved ``precision`` on this hardware: bfloat16 trains the
    18-epoch preset on a GPU or with AMX tiles, the 13-epoch one elsewhere (AVX512-BF16 alone, which
    runs the network at about 0.7 of AMX's rate, or a bfloat16 the user asked for on a CPU that
    emulates it).

    >>> preset_name("bfloat16", False, "flags\t: avx512f avx512_bf16 amx_bf16 amx_tile"), preset_name("float32", True)
    ('bfloat16', 'float32')
    >>> preset_name("bfloat16", False, "flags\t: avx512f avx512_bf16"), preset_name("bfloat16", True, "flags\t: avx2")
    ('bfloat16-avx512', 'bfloat16')
    """
    if precision != "bfloat16":
        return precision
    return "bfloat16" if use_gpu or "amx_bf16" in _cpu_flags(cpuinfo) else "bfloat16-avx512"


def check_safetensors(blob: bytes, where: object) -> None:
    """Raise :class:`BadDataError` naming ``where`` unless ``blob`` is a well-formed safetensors file
    (its length-prefixed JSON header, every tensor's bytes inside the file). No torch needed."""
    import json
    import struct

    from sparkvision.errors import BadDataError

    fix = "It is written by `sparkvision run --model cnn`; train again, or copy the model folder again."
    if len(blob) < 8:
        raise BadDataError(f"{where}: the weights are {len(blob)} bytes, too short for a safetensors file. {fix}")
    (size,) = struct.unpack("<Q", blob[:8])
    try:
        header = json.loads(blob[8:8 + size]) if 8 + size <= len(blob) else None
    except ValueError:
        header = None
    if not isinstance(header, dict):
        raise BadDataError(f"{where}: the weights are not a safetensors file (no readable header). {fix}")
    body = len(blob) - 8 - size
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and 0 <= offsets[0] <= offsets[1] <= body):
            raise BadDataError(f"{where}: tensor {name!r} of the weights lies outside the file (truncated?). {fix}")
