"""Turning uint8 image batches into normalised float tensors, on the model's device.

Images stay uint8 ``(B, h, w, 3)`` up to the device (a quarter of the bytes of float32 to copy
and to keep in memory); the conversion below is the first step of every model's ``forward``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..stain_maths import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ImageNormalizer", "to_unit_float"]


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """Convert uint8 ``(B, h, w, 3)`` RGB to float ``(B, 3, h, w)`` in ``[0, 1]``.

    The result is an NCHW tensor in channels_last memory layout: permuting an NHWC tensor
    gives exactly that without a copy, and convolutions run fastest on it.
    """
    if images.dtype != torch.uint8:
        raise TypeError(
            f"models take uint8 image batches (B, h, w, 3), got dtype {images.dtype}; "
            "convert float images in [0, 1] with (x * 255).round().to(torch.uint8)."
        )
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"models take image batches (B, h, w, 3), got {tuple(images.shape)}.")
    x = images.permute(0, 3, 1, 2).float()
    return x.contiguous(memory_format=torch.channels_last).div_(255.0)


class ImageNormalizer(nn.Module):
    """Standardise ``[0, 1]`` RGB ``(B, 3, h, w)`` with the ImageNet mean and std.

    Pretrained backbones expect this input; backbones trained from scratch get it too, so a
    model behaves the same whichever weights it started from.
    """

    def __init__(
        self,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        # (x - mean) / std as one fused x * scale + shift: a single output batch and no
        # temporary, a third less working memory per batch than two ops. Only these two
        # buffers are kept; not persistent: constants, so state dicts never depend on them.
        self.register_buffer("scale", 1.0 / std_t, persistent=False)
        self.register_buffer("shift", -mean_t / std_t, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, x, self.scale)
