"""A faster bfloat16 backward pass for the network's 3×3 convolutions on small images.

oneDNN's bfloat16 kernel for a convolution's *weight* gradient is slow where the image is small
and the channels many, as in the last conv group: on an AMX Xeon, 256→256 channels at 4×4 pixels
took 14.6 ms for 128 images where the forward pass took 2.2 ms (``benchmarks/cnn_step_profile.py``
prints the operators' shares). The same sum, written as other products that oneDNN runs well,
costs a fraction of that (BENCHMARKS.md § 7):

* up to 4×4 pixels: a convolution of the inputs by the output gradients, the batch taking the
  place of the channels (the weight gradient *is* that correlation), 3.7 ms;
* up to 8×8 pixels with 128 or more input channels: nine matrix products, one per filter tap,
  over the zero-padded images laid out as rows (each tap is a contiguous slice of the rows, so
  nothing is copied per tap), 17.6 against 22.4 ms at 8×8 and 8.6 against 15.8 ms at 5×5.

Elsewhere, and in float32 (where oneDNN's own kernel was the fastest of the three), the
standard path runs. Forward and input gradient are oneDNN's in every case.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# The benchmarks switch it off to time oneDNN's path side by side; nothing else should.
ENABLED = True
TRANSPOSED_MAX_PIXELS = 16   # H*W up to which the batch-as-channels convolution is fastest
TAPS_MAX_PIXELS = 64         # ... and the nine per-tap products, with TAPS_MIN_CHANNELS input channels or more
TAPS_MIN_CHANNELS = 128


def weight_grad_method(channels_in: int, height: int, width: int) -> str:
    """Which weight-gradient path a bfloat16 3×3 'same' convolution takes: ``transposed``, ``taps``
    or ``onednn``."""
    pixels = height * width
    if pixels <= TRANSPOSED_MAX_PIXELS:
        return "transposed"
    if pixels <= TAPS_MAX_PIXELS and channels_in >= TAPS_MIN_CHANNELS:
        return "taps"
    return "onednn"


def _weight_grad_transposed(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    # (C_in, B, H+2, W+2) correlated with (C_out, B, H, W) gives (C_in, C_out, 3, 3).
    xt = x.transpose(0, 1).contiguous(memory_format=torch.channels_last)
    gt = grad.transpose(0, 1).contiguous(memory_format=torch.channels_last)
    return F.conv2d(xt, gt, padding=1).transpose(0, 1)


def _weight_grad_taps(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    n, c_in, h, w = x.shape
    c_out = grad.shape[1]
    hp, wp = h + 2, w + 2
    rows = n * hp * wp
    # Image b's pixel (i, j) of the padded input is row b*hp*wp + i*wp + j; the output gradient sits at
    # the same rows as its pixel (i, j) with zeros around it, so tap (ki, kj) pairs row r of the
    # gradient with row r + ki*wp + kj of the input. The tail padding keeps the last tap's slice in range.
    padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1).reshape(rows, c_in)
    padded = F.pad(padded, (0, 0, 0, 2 * wp + 2))
    g = F.pad(grad, (0, 2, 0, 2)).permute(0, 2, 3, 1).reshape(rows, c_out).t().contiguous()
    out = torch.empty(c_out, 3, 3, c_in, dtype=x.dtype)
    for ki in range(3):
        for kj in range(3):
            offset = ki * wp + kj
            out[:, ki, kj, :] = g @ padded[offset:offset + rows]
    return out.permute(0, 3, 1, 2)


class _Conv3x3(torch.autograd.Function):
    """3×3 'same' convolution, stride 1, no bias, whose weight gradient takes the path
    :func:`weight_grad_method` picks."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        return F.conv2d(x, weight, padding=1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)
        method = weight_grad_method(x.shape[1], x.shape[2], x.shape[3])
        grad_x = grad_w = None
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1] and method == "onednn", False]
        if any(mask):
            grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)
        if ctx.needs_input_grad[1] and method == "transposed":
            grad_w = _weight_grad_transposed(x, grad)
        elif ctx.needs_input_grad[1] and method == "taps":
            grad_w = _weight_grad_taps(x, grad)
        return grad_x, grad_w


def conv3x3_bfloat16(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.conv2d(x, weight, padding=1)`` in bfloat16 (both are cast, as autocast would), with the
    faster weight gradient. ``weight``'s gradient reaches it in its own dtype through the cast."""
    return _Conv3x3.apply(x.to(torch.bfloat16), weight.to(torch.bfloat16))
