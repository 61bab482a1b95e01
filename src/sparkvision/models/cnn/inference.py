"""A trained network ready to label images: built once from safetensors bytes, used by Spark's
``predict_batch_udf`` (one per Python worker) and by ``predict``'s local engine (no JVM).

Both paths call :meth:`Predictor.predict_bytes` on the image table's ``data`` bytes, so they give
the same probabilities as an in-process :func:`sparkvision.models.cnn.network.predict_logits`.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Predictor:
    """The network of a ``CNNClassificationModel``: (logits, probabilities) for RGB image bytes."""

    def __init__(self, weights: bytes, config: dict[str, Any], threads: int | None = None) -> None:
        import torch
        from safetensors.torch import load as load_safetensors

        from sparkvision.models.cnn.network import Network

        if threads:
            torch.set_num_threads(threads)
        self.config = config
        self.shape = tuple(int(v) for v in config["imageShape"])
        self.net = Network(tuple(config["widths"]), int(config["numClasses"]))
        try:
            state = load_safetensors(weights)  # tensors only: nothing in the file is run
        except Exception as exc:  # safetensors raises its own error types for damaged bytes
            raise ValueError(f"the weights are not a readable safetensors file ({exc})") from None
        missing = set(self.net.state_dict()) ^ set(state)
        if missing:
            raise ValueError(f"the weights do not fit the network's {len(self.net.state_dict())} tensors "
                             f"(differing: {', '.join(sorted(missing)[:3])})")
        self.net.load_state_dict(state)
        self.net = self.net.to(memory_format=torch.channels_last).eval()

    def predict_images(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits, probabilities), float32 (B, classes), for (B, H, W, C) uint8 RGB images."""
        import torch

        from sparkvision.models.cnn.network import normalise, predict_logits

        if images.shape[1:] != self.shape:
            raise ValueError(f"the network takes {self.shape[0]}×{self.shape[1]}×{self.shape[2]} images, "
                             f"not {'×'.join(map(str, images.shape[1:]))}")
        x = normalise(torch.from_numpy(np.array(images, copy=True))).contiguous(memory_format=torch.channels_last)
        dtype = torch.bfloat16 if self.config.get("precision") == "bfloat16" else torch.float32
        logits = predict_logits(self.net, x, tta=bool(self.config.get("tta", True)), dtype=dtype)
        return logits.numpy(), torch.softmax(logits, dim=1).numpy()

    def predict_bytes(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict_images` for a column of ``data`` bytes (an object array of ``bytes``)."""
        size = int(np.prod(self.shape))
        flat = np.frombuffer(b"".join(data), dtype=np.uint8)
        if flat.size != size * len(data):
            raise ValueError(f"every image must be {size} bytes ({'×'.join(map(str, self.shape))})")
        return self.predict_images(flat.reshape(len(data), *self.shape))
