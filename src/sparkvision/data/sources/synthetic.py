"""Small synthetic CIFAR-format datasets, for tests, examples and the notebook.

Each class has its own pattern (a colour and a stripe orientation) under noise, so a model can
learn them and a broken pipeline cannot fake it. The files are written in the release's own
layouts by the same rules as the real ones: pickled dicts of R,G,B planes, or binary records.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from sparkvision.data.sources.cifar import CIFAR10, PIXELS, CifarRelease


def synthetic_images(n: int, num_classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(labels int64[n], data uint8[n, 3072] as R,G,B planes) with a learnable pattern per class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=n)
    yy, xx = np.mgrid[0:32, 0:32]
    images = np.empty((n, 3, 32, 32), dtype=np.float64)
    for k in range(num_classes):
        colour = np.array([(k * 97) % 256, (k * 57 + 80) % 256, (k * 31 + 160) % 256], dtype=float)
        stripes = np.sin((xx * np.cos(k) + yy * np.sin(k)) * (0.4 + 0.1 * k)) * 60
        images[labels == k] = colour[:, None, None] * 0.6 + stripes[None] + 40
    images += rng.normal(0, 25, size=images.shape)
    return labels, np.clip(images, 0, 255).astype(np.uint8).reshape(n, PIXELS)


def _batches(release: CifarRelease, images_per_batch: int, with_test: bool, seed: int):
    """(file name, labels, data) for every batch of the release, each with its own seed."""
    names = release.train_list + (release.test_list if with_test else ())
    for i, name in enumerate(names):
        yield (name, *synthetic_images(images_per_batch, release.num_classes, seed=seed + i))


def write_python_release(root: str | os.PathLike, images_per_batch: int = 60, *, with_test: bool = False,
                         release: CifarRelease = CIFAR10, seed: int = 0) -> Path:
    """Write ``root/cifar-10-batches-py`` with every training batch (and ``test_batch``); return it."""
    folder = Path(root) / release.base_folder
    folder.mkdir(parents=True, exist_ok=True)
    for name, labels, data in _batches(release, images_per_batch, with_test, seed):
        batch = {b"batch_label": name.encode(), release.label_key.encode(): [int(v) for v in labels],
                 b"data": data, b"filenames": [f"{name}_{j}.png".encode() for j in range(len(labels))]}
        if release.name.startswith("cifar100"):  # the real files carry both label sets
            batch.setdefault(b"coarse_labels", [int(v) % 20 for v in labels])
            batch.setdefault(b"fine_labels", [int(v) for v in labels])
        (folder / name).write_bytes(pickle.dumps(batch, protocol=3))
    meta = {b"num_cases_per_batch": images_per_batch, b"num_vis": PIXELS,
            release.label_names_key.encode(): [n.encode() for n in release.label_names]}
    (folder / release.meta).write_bytes(pickle.dumps(meta, protocol=3))
    return folder


def write_binary_release(root: str | os.PathLike, images_per_batch: int = 60, *, with_test: bool = False,
                         release: CifarRelease = CIFAR10, seed: int = 0) -> Path:
    """Write ``root/cifar-10-batches-bin`` (label byte + 3072 pixel bytes per record); return it."""
    folder = Path(root) / release.bin_folder
    folder.mkdir(parents=True, exist_ok=True)
    for name, labels, data in _batches(release, images_per_batch, with_test, seed):
        head = np.zeros((len(labels), release.bin_label_bytes), np.uint8)
        head[:, release.bin_label_index] = labels
        records = np.concatenate([head, data], axis=1)
        (folder / f"{name}.bin").write_bytes(records.tobytes())
    (folder / release.bin_meta).write_text("\n".join(release.label_names) + "\n")
    return folder
