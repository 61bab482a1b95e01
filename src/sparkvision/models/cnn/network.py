"""The convolutional network, its augmentation and its test-time augmentation: plain PyTorch.

The recipe follows airbench (Keller Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU",
2024), written anew for CPUs:

* a frozen 2×2 whitening convolution whose filters are the ZCA of the training images' 2×2
  patches (both signs, so 2 × 12 channels), its bias trained for the first epochs only;
* three conv groups (conv → max-pool → BatchNorm → GELU → conv → BatchNorm → GELU), widths
  64/256/256 by default, then a max-pool, a linear layer and a fixed down-scaling of the logits;
* BatchNorm scales frozen at 1 (only their biases learn, at a higher learning rate);
* training augmentation: 2-pixel random translations (reflect padding) and horizontal flips
  that alternate from one epoch to the next;
* progressive resizing (optional): the first epochs see the images scaled down, so they cost
  less (``training.progressive_sizes`` picks the sizes);
* test-time augmentation: the mean logits of the image and its mirror image, and of both
  shifted by one pixel each way.

Nothing here knows about Spark: ``training.py`` drives it, and the inference paths (Spark's
``predict_batch_udf`` and the local engine) call :func:`predict_logits`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sparkvision.models.cnn import weight_grad

# Per-channel mean and standard deviation of CIFAR-10's training pixels (0-1 scale). They centre
# the input; any image set works with them, the whitening layer adapts to its own data.
CHANNEL_MEAN = (0.4914, 0.4822, 0.4465)
CHANNEL_STD = (0.2470, 0.2435, 0.2616)
LOGIT_SCALE = 1 / 9       # airbench: logits scaled down so the initial softmax is soft
BN_MOMENTUM = 0.4         # PyTorch's convention (weight of the new batch); airbench's 0.6 running weight
BN_EPS = 1e-12


class BatchNorm(nn.BatchNorm2d):
    """BatchNorm with the scale frozen at 1: only the bias (shift) is learned."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.weight.requires_grad = False


class Conv(nn.Conv2d):
    """3×3 'same' convolution without bias; the first ``in`` filters start as identities (Dirac),
    so each group begins by passing its input through."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=3, padding="same", bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        w = self.weight.data
        torch.nn.init.dirac_(w[:w.size(1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (weight_grad.ENABLED and x.device.type == "cpu" and torch.is_grad_enabled() and self.weight.requires_grad
                and torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16):
            return weight_grad.conv3x3_bfloat16(x, self.weight)
        return super().forward(x)


class ConvGroup(nn.Module):
    """conv → max-pool 2 → BatchNorm → GELU → conv → BatchNorm → GELU (halves the resolution)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = Conv(in_channels, out_channels)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = BatchNorm(out_channels)
        self.conv2 = Conv(out_channels, out_channels)
        self.norm2 = BatchNorm(out_channels)
        self.activ = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


class Network(nn.Module):
    """Whitening conv, three conv groups, global max-pool, linear head. Input: (B, 3, H, W) floats
    already normalised by :func:`normalise`, H and W of 9 or more (CIFAR's 32; smaller in progressive
    resizing's first epochs)."""

    def __init__(self, widths: tuple[int, int, int] = (64, 256, 256), num_classes: int = 10) -> None:
        super().__init__()
        whiten_width = 2 * 3 * 2 * 2
        self.whiten = nn.Conv2d(3, whiten_width, kernel_size=2, padding=0, bias=True)
        self.whiten.weight.requires_grad = False
        self.layers = nn.Sequential(
            nn.GELU(),
            ConvGroup(whiten_width, widths[0]),
            ConvGroup(widths[0], widths[1]),
            ConvGroup(widths[1], widths[2]),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(widths[2], num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.whiten(x))) * LOGIT_SCALE

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the whitening filters from the ZCA of ``images``' 2×2 patches (normalised floats)."""
        patches = images.unfold(2, 2, 1).unfold(3, 2, 1).transpose(1, 3).reshape(-1, 3, 2, 2).float()
        flat = patches.reshape(len(patches), -1)
        cov = (flat.T @ flat) / len(flat)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)
        filters = (eigenvectors.T.reshape(-1, 3, 2, 2) / torch.sqrt(eigenvalues + eps).view(-1, 1, 1, 1))
        self.whiten.weight.copy_(torch.cat([filters, -filters]))
        self.whiten.bias.zero_()


def normalise(images_uint8: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 RGB, as the image table stores it → (B, 3, H, W) float32, centred and scaled."""
    x = images_uint8.permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(CHANNEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CHANNEL_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def translate(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Each image shifted by up to ``pad`` pixels each way (reflect padding, then a random crop)."""
    if pad == 0:
        return images
    n, _, h, w = images.shape
    padded = F.pad(images, (pad,) * 4, mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    # Gather by index: one crop per image without a Python loop over the batch.
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h)).view(n, 1, h, 1).expand(n, images.size(1), h, w + 2 * pad)
    cropped = padded.gather(2, rows)
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w)).view(n, 1, 1, w).expand(n, images.size(1), h, w)
    return cropped.gather(3, cols)


def downscale(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``images`` (B, C, H, W) resized to ``height`` × ``width`` (bilinear, antialiased): the smaller
    images of progressive resizing's first epochs. The network takes any size of 9 pixels or more (its
    last pool is global; its three pools leave 1 pixel of 9)."""
    if tuple(images.shape[-2:]) == (height, width):
        return images
    return F.interpolate(images, size=(height, width), mode="bilinear", antialias=True, align_corners=False)


def flip_mask(num_images: int, epoch: int, generator_seed: int) -> torch.Tensor:
    """Which images are mirrored this epoch: a random half in even epochs, the other half in odd
    ones (airbench's alternating flip: every image is seen both ways every two epochs)."""
    g = torch.Generator().manual_seed(generator_seed)
    base = torch.rand(num_images, generator=g) < 0.5
    return base if epoch % 2 == 0 else ~base


@torch.no_grad()
def predict_logits(net: nn.Module, images: torch.Tensor, tta: bool = True, batch_size: int = 500,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Mean logits (float32) for normalised (B, 3, H, W) images; with ``tta``, over the image, its
    mirror image, and both shifted by one pixel up-left and down-right (6 views, airbench's level 2)."""
    net.eval()
    outputs = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            if not tta:
                outputs.append(net(x).float())
                continue
            mirrored = 0.5 * (net(x).float() + net(x.flip(-1)).float())
            padded = F.pad(x, (1,) * 4, mode="reflect")
            h, w = x.shape[-2:]
            shifted = [padded[:, :, 0:h, 0:w], padded[:, :, 2:h + 2, 2:w + 2]]
            moved = sum(0.5 * (net(s).float() + net(s.flip(-1)).float()) for s in shifted) / 2
            outputs.append(0.5 * mirrored + 0.5 * moved)
    return torch.cat(outputs) if outputs else torch.zeros(0)
