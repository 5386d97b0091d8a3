"""Batched augmentation: resizing, centre crops, pad-crop-flip and random resized crops.

These run on a whole ``float Tensor[B, 3, H, W]`` at once (the in-memory datasets call them
once per batch); randomness comes from a ``torch.Generator`` the caller owns, never the
global RNG. Imports only torch; must not import other ``evaluators.data`` modules, nor
``evaluators`` or ``nas``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["pad_crop_flip", "random_resized_crop", "resize", "resize_center_crop"]


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def resize_center_crop(x: torch.Tensor, r: int, crop: float) -> torch.Tensor:
    big = max(r, round(r / crop))
    x = resize(x, big)
    top = (big - r) // 2
    return x[..., top : top + r, top : top + r]


def pad_crop_flip(
    x: torch.Tensor, pad: int, gen: torch.Generator, *, flip: bool = True
) -> torch.Tensor:
    """Random ``r x r`` crop of the zero-padded (black) image, then a random horizontal flip."""
    b, _, r, _ = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    off = torch.randint(0, 2 * pad + 1, (2, b), generator=gen)
    ar = torch.arange(r)
    rows = (off[0, :, None] + ar)[:, :, None]  # [B, r, 1]
    cols = off[1, :, None] + ar  # [B, r]
    flipped = torch.rand(b, generator=gen) < (0.5 if flip else 0.0)  # same draws either way
    cols = torch.where(flipped[:, None], cols.flip(1), cols)[:, None, :]  # [B, 1, r]
    # Advanced indices separated by a slice put their broadcast dims first: [B, r, r, C].
    out = padded[torch.arange(b)[:, None, None], :, rows, cols]
    return out.permute(0, 3, 1, 2).contiguous()


def random_resized_crop(
    x: torch.Tensor, r: int, gen: torch.Generator, *, flip: bool = True
) -> torch.Tensor:
    """Random resized crop (area 8-100 %, aspect 3/4-4/3) to ``r x r``, plus a random flip.

    Unlike torchvision, which retries out-of-range boxes and then falls back to a centre crop,
    a box side beyond the image is clipped to the image; the crop is bilinearly resampled.
    """
    b = x.shape[0]
    u = torch.rand(5, b, generator=gen)
    area = 0.08 + 0.92 * u[0]
    aspect = torch.exp(math.log(3 / 4) + math.log(16 / 9) * u[1])
    w = torch.sqrt(area * aspect).clamp(max=1.0)  # box size as a share of the image side
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (2 * u[2] - 1) * (1 - w)  # box centre in [-1, 1] coordinates, box inside the image
    cy = (2 * u[3] - 1) * (1 - h)
    sign = torch.where(u[4] < (0.5 if flip else 0.0), -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = w * sign, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta, [b, 3, r, r], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
