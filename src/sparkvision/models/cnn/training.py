"""Training the network: the function every TorchDistributor process runs, in plain PyTorch.

:func:`train` is what ``torchrun`` starts in each process (one process is rank 0 of a world of
one). It reads its own shard of the training rows from the Parquet files the driver wrote
(``label``, ``data``: RGB bytes), trains with airbench's recipe (see ``network.py`` and
:class:`TrainSettings`) under one of two update rules, airbench94's SGD with weight averaging or
airbench94_muon's Muon (:func:`build_optimizer`), keeps a checkpoint of every finished epoch, and
returns only small results: the training curve and timings. Rank 0 writes the final weights as
safetensors. On a CPU each process computes its share of a step in chunks of
:data:`CPU_MICRO_BATCH` images and sums their gradients: a core is fastest on small batches.

More than one process trains data-parallel (``DistributedDataParallel``; gloo on CPUs, nccl on
GPUs). Every rank takes the same number of steps per epoch, so no rank waits at a collective
for one that has run out of rows.

A run killed between epochs and started again with the same settings and checkpoint folder
resumes after the last finished epoch: the augmentation and the batch order of an epoch depend
only on the seed, the epoch and the rank, so the resumed run sees what the first would have.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sparkvision.models.cnn.settings import CHECKPOINT_FORMAT
from sparkvision.runtime.faults import hold
from sparkvision.runtime.fs import atomic_output

CHECKPOINT_FILE = "last-epoch.pt"
WEIGHTS_FILE = "weights.safetensors"
LOOKAHEAD_EVERY = 5        # steps between weight-averaging updates (airbench)
# Runs shorter than this average no weights: the average spans the last twenty-odd steps whatever the
# run's length, which in a short run reaches back to weights much worse than the last. Side by side on
# the bfloat16 preset (40,000 images, 40 steps an epoch, BENCHMARKS.md § 7), the average cost 1.76
# points at 1 epoch, 1.24 at 3, 0.57 at 6 and 0.48 at 10 (400 steps), and gained 0.16 at 12 (480),
# 0.24 at 16 (640) and 0.29 at 18 (720, the bfloat16 preset).
LOOKAHEAD_MIN_STEPS = 480
WHITEN_SAMPLE = 5000       # training images whose 2×2 patches set the whitening filters
# Images per forward pass in a CPU training process: a step's batch is summed over such chunks.
# One core trains 64/256/256 in bfloat16 at 407 images/s in chunks of 128, 367 in 256 and fewer in
# bigger ones (their activations leave the caches); a GPU takes the whole batch at once.
CPU_MICRO_BATCH = 128


@dataclass
class TrainSettings:
    """Everything that decides what training computes. Defaults: airbench's, tuned for 2 CPU cores."""

    epochs: float = 10.0               # passes over the training rows (fractions allowed)
    widths: tuple[int, int, int] = (64, 256, 256)  # channels of the three conv groups
    batch_size: int = 1024             # images per step, all processes together
    lr: float = 11.5                   # sgd: per 1024 images (airbench's units); muon: the conv filters' step
    momentum: float = 0.85             # Nesterov
    weight_decay: float = 0.0153       # airbench's units: scaled by batch size / (1024 × 1/(1-momentum))
    bias_scaler: float = 64.0          # BatchNorm biases learn this many times faster
    label_smoothing: float = 0.2
    whiten_bias_epochs: float = 3.0    # the whitening conv's bias learns for this many epochs, then stops
    translate: int = 2                 # pixels of random translation (0: none)
    flip: bool = True                  # alternating horizontal flips
    tta: bool = True                   # test-time augmentation at prediction (mirror + 1-pixel shifts)
    progressive: bool = False          # the first epochs train on smaller images (progressive_sizes)
    precision: str = "float32"         # float32 or bfloat16 (autocast), resolved from "auto" by the driver
    optimizer: str = "sgd"             # sgd: airbench94's Nesterov SGD + lookahead; muon: airbench94_muon's
    micro_batch: int = 0               # images per forward pass in a process, gradients summed over a step (0: all)
    num_classes: int = 10
    seed: int = 42
    threads: int = 1                   # torch threads per process
    device: str = "cpu"                # cpu or cuda

    def to_json(self) -> dict[str, Any]:
        """The settings as plain JSON values."""
        return {**asdict(self), "widths": list(self.widths)}

    @classmethod
    def from_params(cls, values: dict[str, Any], *, precision: str, num_classes: int, seed: int, threads: int,
                    use_gpu: bool) -> "TrainSettings":
        """The settings for ``CNNClassifier``'s training Params ``values`` (presets applied) and
        what the driver decided: the precision, the classes, the threads and the device."""
        augment = bool(values["augment"])
        return cls(epochs=float(values["epochs"]), widths=tuple(values["widths"]), batch_size=int(values["batchSize"]),
                   lr=float(values["learningRate"]), weight_decay=float(values["weightDecay"]),
                   optimizer=values["optimizer"], micro_batch=0 if use_gpu else CPU_MICRO_BATCH,
                   label_smoothing=float(values["labelSmoothing"]), translate=2 if augment else 0, flip=augment,
                   tta=bool(values["tta"]), progressive=bool(values["progressive"]), precision=precision,
                   num_classes=num_classes, seed=seed,
                   threads=threads, device="cuda" if use_gpu else "cpu")

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> "TrainSettings":
        """The inverse of :meth:`to_json`."""
        return cls(**{**values, "widths": tuple(int(w) for w in values["widths"])})


@dataclass
class TrainJob:
    """Where a training run reads and writes; passed to every process."""

    shard_files: list[str]             # Parquet files (label, data), one per process
    image_shape: tuple[int, int, int]  # height, width, channels of every row
    checkpoint_dir: str                # per-epoch checkpoints (kept between runs of the same settings)
    weights_path: str                  # where rank 0 writes the final weights (safetensors)
    settings: dict[str, Any] = field(default_factory=dict)
    progress: bool = True


# Settings a resumed run may change: they decide neither the weights' shapes nor the schedule nor
# the order of the images.
RESUMABLE_CHANGES = frozenset({"threads", "device", "micro_batch", "tta"})


def checkpoint_fingerprint(settings: TrainSettings, world: int) -> dict[str, Any]:
    """What a checkpoint must share with a run for the run to resume from it: the settings that
    decide the network, the schedule and the batches, the number of processes, and the format."""
    values = {k: v for k, v in settings.to_json().items() if k not in RESUMABLE_CHANGES}
    return {**values, "world": world, "format": CHECKPOINT_FORMAT}


def _read_checkpoint(path: str | Path, expected: dict[str, Any], map_location: Any = "cpu"):
    """(the checkpoint's contents, None) when it can resume a run whose fingerprint is ``expected``,
    else (None, why not): unreadable, from an older version, or from other settings."""
    import torch

    try:
        state = torch.load(path, map_location=map_location, weights_only=True)  # tensors and plain values only
        recorded = json.loads(state["fingerprint"]) if isinstance(state, dict) and "fingerprint" in state else None
    except Exception as exc:  # torch raises several types for damaged or foreign files
        return None, f"the checkpoint cannot be read ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]})"
    if not isinstance(recorded, dict):
        return None, "the checkpoint was written by an older sparkvision and records no settings"
    differing = sorted(k for k in expected.keys() | recorded.keys() if expected.get(k) != recorded.get(k))
    if differing:
        shown = ", ".join(f"{k} {recorded.get(k)!r} there, {expected.get(k)!r} here" for k in differing[:4])
        return None, f"the checkpoint is of a training with other settings ({shown})"
    return state, None


def checkpoint_problem(path: str | Path, expected: dict[str, Any]) -> str | None:
    """Why the checkpoint at ``path`` cannot resume a run whose fingerprint is ``expected``
    (unreadable, from an older version, or from other settings), or None when it can."""
    return _read_checkpoint(path, expected)[1]


# ---------------------------------------------------------------------------------------------
# The shard


def read_shard(path: str, image_shape: tuple[int, int, int]):
    """(images (N, H, W, C) uint8 tensor, labels (N,) int64 tensor) from one Parquet file."""
    import pyarrow.parquet as pq
    import torch

    table = pq.read_table(path, columns=["label", "data"])
    labels = torch.from_numpy(table.column("label").to_numpy().astype(np.int64))
    data = table.column("data").combine_chunks()
    size = int(np.prod(image_shape))
    # A binary column's values lie end to end in one buffer: take it as (N, size) without a copy per row.
    offsets = np.frombuffer(data.buffers()[1], dtype=np.int32, count=len(data) + 1, offset=data.offset * 4)
    values = np.frombuffer(data.buffers()[2], dtype=np.uint8)
    if len(data) and (np.diff(offsets) != size).any():
        raise ValueError(f"{path}: every image must be {size} bytes ({image_shape}); the table has other sizes")
    pixels = values[offsets[0]:offsets[0] + len(data) * size].reshape(len(data), *image_shape)
    return torch.from_numpy(pixels.copy()), labels


def shard_rows(path: str) -> int:
    """Rows in a Parquet file, from its footer alone."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


# ---------------------------------------------------------------------------------------------
# The recipe's pieces


def lr_factor(step: int, total: int) -> float:
    """airbench's triangle: from 0.2 up to 1 at 23 % of the steps, then down to 0.07 at the end."""
    peak = 0.23 * total
    if step < peak:
        return 0.2 + 0.8 * step / max(peak, 1)
    return 1.0 + (0.07 - 1.0) * (step - peak) / max(total - peak, 1)


# Progressive resizing: this share of the epochs trains on images scaled down, in three equal parts
# at these fractions of their height and width (16, 20 and 24 pixels for CIFAR's 32), the rest at
# full size. One thread trains 32/128/128 in float32 at about 1500/940/640 images/s on 16/20/24-pixel
# images against 336 on 32 (BENCHMARKS.md, "CNN"); the last, full-size epochs adapt the network
# to the size it predicts at.
SMALL_SHARE = 0.6
SMALL_SCALES = (1 / 2, 5 / 8, 3 / 4)
# No side smaller: the network needs 9 pixels (its three pools leave 1 of them), and at 16 its last
# group still convolves 3×3 before it pools to 1. Smaller images train at full size throughout.
SMALLEST_SIDE = 16


def progressive_sizes(epochs: float, height: int, width: int) -> list[tuple[int, int]]:
    """(height, width) of the images each epoch of ``epochs`` (a last one may be partial) trains on,
    under progressive resizing: the first :data:`SMALL_SHARE` of them (rounded; at least the last
    whole epoch and a partial one after it stay full size) in three equal parts at
    :data:`SMALL_SCALES` of the size, the rest at full size. A scale never takes the shorter side
    under :data:`SMALLEST_SIDE`, and keeps the aspect.

    >>> [h for h, w in progressive_sizes(16, 32, 32)]
    [16, 16, 16, 16, 20, 20, 20, 24, 24, 24, 32, 32, 32, 32, 32, 32]
    >>> [h for h, w in progressive_sizes(3, 32, 32)], [h for h, w in progressive_sizes(1, 32, 32)]
    ([16, 20, 32], [32])
    >>> [h for h, w in progressive_sizes(2.1, 32, 32)], [h for h, w in progressive_sizes(1.5, 32, 32)]
    ([16, 32, 32], [32, 32])
    >>> progressive_sizes(3, 20, 40)[:2], progressive_sizes(3, 12, 12)
    ([(16, 32), (16, 32)], [(12, 12), (12, 12), (12, 12)])
    """
    slots = math.ceil(epochs)
    full = max(1, round(epochs * (1 - SMALL_SHARE)))
    if slots > epochs and slots > 1:  # a partial last epoch is too little full-size training alone
        full = max(full, 2)
    small = slots - min(full, slots)
    sizes = []
    for epoch in range(small):
        scale = min(1.0, max(SMALL_SCALES[epoch * len(SMALL_SCALES) // small], SMALLEST_SIDE / min(height, width)))
        sizes.append((round(height * scale), round(width * scale)))
    return sizes + [(height, width)] * (slots - small)


def _seconds_left(sizes: list[tuple[int, int]], measured: dict[tuple[int, int], float],
                  size: tuple[int, int], seconds: float) -> float:
    """Estimated seconds of the epochs at ``sizes``: an epoch at a size already trained takes what the
    last one there did; one at a size not yet trained, ``seconds`` (this epoch's, at ``size``) scaled by
    its pixels to a power: 1 until two sizes are measured, then the power the smallest and largest
    measured show (below 1 where an epoch's fixed costs, the augmentation at full size and the
    gradients' exchange, weigh more on small images; the power is held to [0.3, 1]).

    >>> _seconds_left([(20, 20), (32, 32), (32, 32)], {(16, 16): 10.0}, (16, 16), 10.0)
    95.625
    >>> round(_seconds_left([(32, 32)], {(16, 16): 10.0, (20, 20): 12.5}, (20, 20), 12.5), 1)
    20.0
    """
    def pixels(hw: tuple[int, int]) -> int:
        return hw[0] * hw[1]

    power = 1.0
    if len(measured) > 1:
        small, large = min(measured, key=pixels), max(measured, key=pixels)
        power = math.log(measured[large] / measured[small]) / math.log(pixels(large) / pixels(small))
        power = min(1.0, max(0.3, power))
    return sum(measured.get(other, seconds * (pixels(other) / pixels(size)) ** power) for other in sizes)


def lookahead_decay(step: int, total: int) -> float:
    """Weight of the running average against the current weights at ``step`` (airbench's cubic ramp)."""
    return 0.95 ** 5 * (step / max(total, 1)) ** 3


def averages_weights(total_steps: int) -> bool:
    """Whether a run of ``total_steps`` keeps the lookahead average (long enough for it to pay).

    >>> averages_weights(720), averages_weights(400)
    (True, False)
    """
    return total_steps >= LOOKAHEAD_MIN_STEPS


def precision_dtype(precision: str):
    """The torch dtype of ``float32`` or ``bfloat16``."""
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[precision]


def _steps_scale(momentum: float) -> float:
    """airbench's unit of rates: 1024 images, times the momentum's gain (1 + 1/(1 - momentum))."""
    return 1024 * (1 + 1 / (1 - momentum))


class _Optimizers:
    """Several torch optimizers stepped, zeroed, saved and restored as one."""

    def __init__(self, **optimizers: Any) -> None:
        self.optimizers = optimizers

    def step(self) -> None:
        for opt in self.optimizers.values():
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state[name])


class SGDRecipe(_Optimizers):
    """airbench94: Nesterov SGD in three groups (weights, BatchNorm biases at a higher rate, the
    whitening bias in a group of its own so its rate can drop to 0 after ``whiten_bias_epochs``),
    on a triangular schedule; the weights are averaged by :class:`Lookahead` alongside, in runs
    long enough (:func:`averages_weights`)."""

    def __init__(self, net, s: "TrainSettings", per_step_images: int) -> None:
        import torch

        lr = s.lr / _steps_scale(s.momentum)
        wd = s.weight_decay * per_step_images / _steps_scale(s.momentum)
        lr_biases = lr * s.bias_scaler
        named = [(k, p) for k, p in net.named_parameters() if p.requires_grad]
        norm_biases = [p for k, p in named if "norm" in k]
        whiten_bias = [p for k, p in named if k.endswith("whiten.bias")]
        other = [p for k, p in named if "norm" not in k and not k.endswith("whiten.bias")]
        groups = [dict(params=norm_biases, lr=lr_biases, weight_decay=wd / lr_biases, base_lr=lr_biases),
                  dict(params=other, lr=lr, weight_decay=wd / lr, base_lr=lr),
                  dict(params=whiten_bias, lr=lr, weight_decay=wd / lr, base_lr=lr)]
        super().__init__(sgd=torch.optim.SGD(groups, momentum=s.momentum, nesterov=True))

    def set_rates(self, step: int, total: int, whiten_bias_steps: int) -> None:
        """The rates of ``step`` of ``total``."""
        factor = lr_factor(step, total)
        for index, group in enumerate(self.optimizers["sgd"].param_groups):
            off = index == 2 and step >= whiten_bias_steps
            group["lr"] = 0.0 if off else group["base_lr"] * factor


def orthogonalise(g, steps: int = 3, eps: float = 1e-7):
    """The 2-D matrix ``g`` made roughly orthogonal (near U·Vᵀ of its SVD) by a quintic
    Newton-Schulz iteration whose coefficients make small singular values grow fast; they end
    between about 0.5 and 1.5, which trains as well as exact (airbench94_muon).

    >>> import torch
    >>> s = torch.linalg.svdvals(orthogonalise(torch.randn(16, 40, generator=torch.Generator().manual_seed(0))))
    >>> bool(((s > 0.5) & (s < 1.5)).all())
    True
    """
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g / (g.norm() + eps)  # the top singular value at most 1
    tall = g.size(0) > g.size(1)
    if tall:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def _muon(params: list, lr: float, momentum: float, dtype):
    """Keller Jordan's Muon: Nesterov momentum whose update is orthogonalised per filter bank
    (a matrix of out × in·k·k, in ``dtype``: bfloat16 where it trains in bfloat16, as airbench94_muon
    does), on weights kept at a norm of √out."""
    import torch

    class Muon(torch.optim.Optimizer):
        @torch.no_grad()
        def step(self) -> None:
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(p.grad)
                    buf = state["momentum_buffer"].mul_(group["momentum"]).add_(p.grad)
                    update = p.grad.add(buf, alpha=group["momentum"])
                    p.mul_(len(p) ** 0.5 / p.norm())
                    step = orthogonalise(update.reshape(len(p), -1).to(dtype)).to(p.dtype)
                    p.add_(step.view(p.shape), alpha=-group["lr"])

    return Muon([dict(params=params, base_lr=lr)], dict(lr=lr, momentum=momentum))


MUON_MOMENTUM = 0.6
MUON_BIAS_RATIO = 0.053 / 0.24   # airbench94_muon: biases at 0.053 when the filters' rate is 0.24
# and its head at 0.67, for logits scaled by 1/256 with unit-std weights; ours are scaled by 1/9, so
# the same steps in our parametrisation are (9/256)² as large.
MUON_HEAD_RATIO = 0.67 * (9 / 256) ** 2 / 0.24


class MuonRecipe(_Optimizers):
    """airbench94_muon: Muon for the conv filters (``lr`` is their rate), Nesterov SGD for the
    biases and the head at fixed ratios of it; every rate decays linearly to 0, the whitening
    bias's over its own, shorter span. The weights are averaged by :class:`Lookahead` alongside,
    as in airbench94 (airbench94_muon has none), in runs long enough (:func:`averages_weights`):
    +0.07 and +0.24 points on the bfloat16 preset, end to end and as a plain loop, for about 3 s
    (BENCHMARKS.md § 7)."""

    def __init__(self, net, s: "TrainSettings", per_step_images: int) -> None:
        import torch

        wd = s.weight_decay * per_step_images / _steps_scale(s.momentum)
        named = [(k, p) for k, p in net.named_parameters() if p.requires_grad]
        filters = [p for k, p in named if p.ndim == 4]
        whiten_bias = [p for k, p in named if k.endswith("whiten.bias")]
        norm_biases = [p for k, p in named if "norm" in k]
        head = [p for k, p in named if k.startswith("head")]
        groups = [dict(params=params, lr=s.lr * ratio, weight_decay=wd / (s.lr * ratio), base_lr=s.lr * ratio)
                  for params, ratio in ((whiten_bias, MUON_BIAS_RATIO), (norm_biases, MUON_BIAS_RATIO),
                                        (head, MUON_HEAD_RATIO))]
        muon = _muon(filters, lr=s.lr, momentum=MUON_MOMENTUM, dtype=precision_dtype(s.precision))
        super().__init__(sgd=torch.optim.SGD(groups, momentum=s.momentum, nesterov=True), muon=muon)

    def set_rates(self, step: int, total: int, whiten_bias_steps: int) -> None:
        """The rates of ``step`` of ``total``."""
        sgd, muon = self.optimizers["sgd"], self.optimizers["muon"]
        whiten = sgd.param_groups[0]
        whiten["lr"] = whiten["base_lr"] * max(0.0, 1 - step / max(whiten_bias_steps, 1))
        for group in sgd.param_groups[1:] + muon.param_groups:
            group["lr"] = group["base_lr"] * (1 - step / total)


def build_optimizer(net, s: "TrainSettings", per_step_images: int) -> SGDRecipe | MuonRecipe:
    """The update rule ``s.optimizer`` names, with its schedule."""
    recipes = {"sgd": SGDRecipe, "muon": MuonRecipe}
    return recipes[s.optimizer](net, s, per_step_images)


class Lookahead:
    """A running average of the weights that the network is pulled back to every few steps."""

    def __init__(self, net) -> None:
        self.average = {k: v.detach().clone() for k, v in net.state_dict().items()}

    def update(self, net, decay: float) -> None:
        import torch

        for (name, averaged), current in zip(self.average.items(), net.state_dict().values()):
            if current.dtype in (torch.float32, torch.float16, torch.bfloat16):
                averaged.lerp_(current, 1 - decay)
                current.copy_(averaged)


def _say(text: str) -> None:
    print(text, file=sys.stdout, flush=True)


def _eta(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s"


def _atomic_torch_save(obj: Any, path: Path) -> None:
    import torch

    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


# ---------------------------------------------------------------------------------------------
# The training function


def train(job_json: str) -> dict[str, Any]:
    """Train on this process's shard; return the curve and timings (rank 0's, which every rank
    returns: TorchDistributor keeps whichever process's return value is written last).
    ``job_json``: a :class:`TrainJob` as JSON (plain values travel through torchrun)."""
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    from sparkvision.models.cnn.network import Network, downscale, flip_mask, normalise, translate

    started = time.perf_counter()
    job = TrainJob(**json.loads(job_json))
    s = TrainSettings.from_json(job.settings)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    distributed = world > 1
    use_cuda = s.device == "cuda"
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if not use_cuda:
        torch.set_num_threads(max(1, s.threads))
    if distributed:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        if len(job.shard_files) != world:
            raise ValueError(f"{len(job.shard_files)} shard files for {world} processes")
        # Every rank steps as often as the smallest shard allows, so collectives never wait on a rank that is done.
        smallest = min(shard_rows(f) for f in job.shard_files)
        per_rank_batch = max(1, s.batch_size // world)
        steps_per_epoch = smallest // per_rank_batch
        if steps_per_epoch < 1:
            raise ValueError(f"a batch of {per_rank_batch} images per process needs at least that many training "
                             f"rows per process; the smallest shard has {smallest}. Lower batchSize.")
        total_steps = math.ceil(steps_per_epoch * s.epochs)
        epochs = math.ceil(total_steps / steps_per_epoch)

        images_u8, labels = read_shard(job.shard_files[rank], tuple(job.image_shape))
        images = normalise(images_u8)
        del images_u8
        read_s = time.perf_counter() - started
        torch.manual_seed(s.seed)
        net = Network(s.widths, s.num_classes)
        net.init_whitening(images[:WHITEN_SAMPLE])
        net = net.to(device).to(memory_format=torch.channels_last)
        # Built while every parameter still learns, so the groups (and a checkpoint's optimizer state)
        # are the same whether or not the whitening bias is frozen yet.
        optimizer = build_optimizer(net, s, per_rank_batch * world)
        # Both update rules average the weights, in runs long enough for it to pay; a shorter run
        # neither keeps nor checkpoints a second copy.
        lookahead = Lookahead(net) if averages_weights(total_steps) else None
        ckpt_path = Path(job.checkpoint_dir) / CHECKPOINT_FILE
        curve: list[dict[str, Any]] = []
        epoch_seconds: dict[tuple[int, int], float] = {}  # the last epoch's time at each image size, for the ETA
        first_epoch = 0
        fingerprint = checkpoint_fingerprint(s, world)
        if ckpt_path.is_file():
            # The driver checked it before starting the processes (CNNClassifier._fit); this guards other callers.
            state, problem = _read_checkpoint(ckpt_path, fingerprint, map_location=device)
            if problem:
                raise ValueError(f"{ckpt_path}: {problem}")
            net.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if lookahead and state["lookahead"]:  # a checkpoint of a shorter run has none
                lookahead.average = state["lookahead"]
            first_epoch, curve = int(state["epoch"]), json.loads(state["curve"])
            # the ETA's measured sizes, from the epochs already trained
            epoch_seconds.update({tuple(p["image_size"]): p["seconds"] for p in curve})
            if rank == 0 and job.progress:
                _say(f"  resuming from {ckpt_path} after epoch {first_epoch}/{epochs}")
        whiten_bias_steps = math.ceil(s.whiten_bias_epochs * steps_per_epoch)
        step = first_epoch * steps_per_epoch
        height, width = job.image_shape[:2]
        sizes = (progressive_sizes(total_steps / steps_per_epoch, height, width) if s.progressive
                 else [(height, width)] * epochs)

        def wrap():
            """The module the steps call: DDP over the parameters that still learn, when distributed."""
            if not distributed:
                return net
            from torch.nn.parallel import DistributedDataParallel

            return DistributedDataParallel(net, device_ids=[local_rank] if use_cuda else None)

        model = wrap()
        dtype = precision_dtype(s.precision)
        autocast_device = "cuda" if use_cuda else "cpu"
        train_s = 0.0
        for epoch in range(first_epoch, epochs):
            t0 = time.perf_counter()
            model.train()
            g = torch.Generator().manual_seed(s.seed * 1_000_003 + epoch * 101 + rank)
            order = torch.randperm(len(images), generator=g)
            epoch_images = images
            if s.flip:
                mirror = flip_mask(len(images), epoch, s.seed * 7919 + rank)
                epoch_images = torch.where(mirror.view(-1, 1, 1, 1), images.flip(-1), images)
            loss_sum, correct, seen = 0.0, 0, 0
            for b in range(steps_per_epoch):
                if step >= total_steps:
                    break
                idx = order[b * per_rank_batch:(b + 1) * per_rank_batch]
                if step >= whiten_bias_steps and net.whiten.bias.requires_grad:
                    # Its rate is 0 from here on (a resumed run may start past that step), so its gradient
                    # would change nothing; not asking for it saves backward the first 3×3 conv's gradient
                    # with respect to its full-resolution input. DDP expects a gradient for every
                    # parameter it was built with: build it again.
                    net.whiten.bias.requires_grad_(False)
                    model = wrap()
                optimizer.set_rates(step, total_steps, whiten_bias_steps)
                optimizer.zero_grad(set_to_none=True)
                chunks = idx.split(s.micro_batch) if s.micro_batch else (idx,)
                for c, chunk in enumerate(chunks):
                    # Gradients add up over the chunks; DDP exchanges them once, after the last.
                    last = c == len(chunks) - 1
                    with (model.no_sync() if distributed and not last else contextlib.nullcontext()):
                        x = translate(epoch_images[chunk], s.translate, g).to(device, non_blocking=True)
                        x = downscale(x, *sizes[epoch]).contiguous(memory_format=torch.channels_last)
                        y = labels[chunk].to(device, non_blocking=True)
                        with torch.autocast(autocast_device, dtype=dtype, enabled=dtype != torch.float32):
                            out = model(x)
                        loss = F.cross_entropy(out.float(), y, label_smoothing=s.label_smoothing,
                                               reduction="none").sum()
                        # The recipe's rates are for the loss summed over the whole batch; DDP averages
                        # the processes' gradients, which would divide that sum (and the step) by their number.
                        (loss * world if distributed else loss).backward()
                    loss_sum += float(loss.detach())
                    correct += int((out.detach().argmax(1) == y).sum())
                    seen += len(y)
                optimizer.step()
                step += 1
                if lookahead and step % LOOKAHEAD_EVERY == 0:
                    lookahead.update(net, lookahead_decay(step, total_steps))
            if lookahead and step >= total_steps:
                if step % LOOKAHEAD_EVERY:  # the steps since the last update count too (a short run may have no other)
                    lookahead.update(net, lookahead_decay(step, total_steps))
                lookahead.update(net, 1.0)  # the last weights are the average's
            seconds = time.perf_counter() - t0
            train_s += seconds
            epoch_seconds[sizes[epoch]] = seconds
            point = {"epoch": epoch + 1, "loss": loss_sum / max(seen, 1), "train_accuracy": correct / max(seen, 1),
                     "seconds": round(seconds, 3), "images_per_s": round(seen * world / seconds, 1),
                     "image_size": list(sizes[epoch])}
            curve.append(point)
            if rank == 0:
                Path(job.checkpoint_dir).mkdir(parents=True, exist_ok=True)
                _atomic_torch_save({"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                                    "lookahead": lookahead.average if lookahead else {}, "epoch": epoch + 1,
                                    "curve": json.dumps(curve), "fingerprint": json.dumps(fingerprint)}, ckpt_path)
                if job.progress:
                    left = _seconds_left(sizes[epoch + 1:], epoch_seconds, sizes[epoch], seconds)
                    smaller = f"  at {sizes[epoch][0]}×{sizes[epoch][1]}" if sizes[epoch] != (height, width) else ""
                    _say(f"  epoch {epoch + 1}/{epochs}  loss {point['loss']:.3f}  train accuracy "
                         f"{point['train_accuracy']:.1%}  {point['images_per_s']:,.0f} images/s{smaller}  "
                         f"ETA {_eta(left)}")
                hold(f"epoch-{epoch + 1}")  # test-only: see sparkvision.runtime.faults
            if distributed:
                dist.barrier()  # no rank starts the next epoch before the checkpoint is written
        summary: dict[str, Any] | None = None
        if rank == 0:
            from safetensors.torch import save_file

            weights = Path(job.weights_path)
            weights.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(weights) as tmp:
                save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(tmp))
            summary = {"curve": curve, "read_seconds": round(read_s, 3), "train_seconds": round(train_s, 3),
                       "steps": step, "steps_per_epoch": steps_per_epoch, "epochs_run": epochs,
                       "resumed_after_epoch": first_epoch, "world_size": world, "threads": s.threads,
                       "weight_average": lookahead is not None,
                       "images_per_process": len(images)}
        if distributed:
            # Every torchrun process pickles what it returns into the same output file, and
            # TorchDistributor reads whatever the last one to finish wrote: so every rank returns
            # rank 0's summary, or a run whose rank 1 ends last loses its curve.
            shared = [summary]
            dist.broadcast_object_list(shared, src=0)
            summary = shared[0]
        return summary
    finally:
        if distributed:
            dist.destroy_process_group()
