"""``synthetic``: a procedural, seeded image-classification task generated in memory.

It needs no files and a small CNN learns it quickly, which makes it the data set of fast
tests. Imports :mod:`evaluators.data.base` and :mod:`evaluators.data.in_memory`; must not
import the split functions (:mod:`evaluators.data.splits` builds on it).
"""

from __future__ import annotations

import functools
import math

import torch

from evaluators.data.base import CIFAR10_MEAN, CIFAR10_STD, SYNTHETIC_DEFAULT_CLASSES, check_int
from evaluators.data.in_memory import InMemoryImages

__all__ = ["SyntheticImages"]


class SyntheticImages(InMemoryImages):
    """A procedural image-classification task with real, learnable structure.

    Class ``c`` is a sinusoidal grating with its own orientation and spatial frequency (classes
    are laid out on a grid of ``n_o`` orientations x ``n_f`` frequencies, ``n_f =
    round(sqrt(C / 2))``, frequencies 2 to ``min(8, resolution / 4)`` cycles per image) and a
    faint class colour tint. Every image draws its own nuisances: orientation jitter of ±0.35
    of the class spacing, frequency jitter of ±15 %, random phase, a Gaussian window at
    a random place and of random width, random contrast, background brightness and colour, a
    weaker distractor grating of random orientation and frequency, and Gaussian pixel noise of
    standard deviation ``noise``. Images are quantised to ``uint8`` like photographs.

    Labels cycle through the classes (``label = index % num_classes``), so every prefix is
    balanced. Image ``i`` depends only on ``(seed, i, num_classes, resolution, noise)``: images
    are generated in blocks (512 images at 32x32, about 2**19 pixels per block) whose random
    numbers come from a generator seeded by ``(seed, block)``, so a larger dataset extends a
    smaller one. The class layout does not depend on ``seed``: datasets with different seeds
    are independent draws of one task. Below 16x16 the frequencies merge (an 8-pixel image
    cannot show 8 cycles), so classes that differ only in frequency become hard to tell apart.

    Generation is vectorised (5,000 images at 32x32 take about 0.25 s of one CPU core) and
    the images are held in memory: ``num_samples * 3 * resolution**2`` bytes.

    Args:
        num_samples: number of images.
        num_classes: number of classes, >= 2.
        resolution: image size (square), >= 4; images are drawn at this size, not resampled.
        seed: seed of the per-image randomness.
        noise: standard deviation of the pixel noise (pixel values on the 0-1 scale).
        augment, eval_crop, aug_seed: the pipeline, as for :class:`InMemoryImages`.

    Shapes:
        item:  (Tensor[3, resolution, resolution] float32, int)
    """

    # A mirror image turns orientation theta into -theta, i.e. into another class: augmentation
    # never flips synthetic images.
    hflip = False

    def __init__(
        self,
        num_samples: int,
        num_classes: int = SYNTHETIC_DEFAULT_CLASSES,
        resolution: int = 32,
        seed: int = 0,
        noise: float = 0.08,
        *,
        augment: str | None = None,
        eval_crop: float = 1.0,
        aug_seed: int = 0,
    ) -> None:
        check_int("num_samples", num_samples, 1)
        check_int("num_classes", num_classes, 2)
        check_int("resolution", resolution, 4)
        check_int("seed", seed)
        if not isinstance(noise, (int, float)) or not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must be in [0, 1], got {noise!r}")
        noise = float(noise)
        images, labels = _synthetic_tensors(num_samples, num_classes, resolution, seed, noise)
        super().__init__(
            images,
            labels,
            classes=[f"class_{c}" for c in range(num_classes)],
            mean=CIFAR10_MEAN,
            std=CIFAR10_STD,
            resolution=resolution,
            augment=augment,
            eval_crop=eval_crop,
            seed=aug_seed,
        )
        self.num_classes = num_classes
        self.data_seed = seed
        self.noise = float(noise)


def _class_layout(num_classes: int, resolution: int) -> tuple[torch.Tensor, ...]:
    """Orientation (radians), frequency (cycles/image) and RGB tint of every class."""
    n_f = max(1, round(math.sqrt(num_classes / 2)))
    n_o = math.ceil(num_classes / n_f)
    c = torch.arange(num_classes)
    o, f = c % n_o, c // n_o
    theta = math.pi * o.double() / n_o
    f_lo, f_hi = 2.0, max(2.0, min(8.0, resolution / 4))
    freq = f_lo * (f_hi / f_lo) ** (f.double() / max(1, n_f - 1))
    # Tints go round the colour wheel in an order unrelated to the orientation grid.
    hue = 2 * math.pi * ((c.double() * 0.6180339887) % 1.0)
    tint = torch.stack([torch.cos(hue), torch.cos(hue - 2.094), torch.cos(hue + 2.094)], 1)
    return theta.float(), freq.float(), tint.float(), torch.tensor(math.pi / n_o)


def _synthetic_block(res: int) -> int:
    # About 2**19 pixels per block: few, large tensor ops (fast even on a busy machine) while
    # the block's temporaries stay near 50 MB at any resolution.
    return max(8, min(1024, 2**19 // (res * res)))


@functools.lru_cache(maxsize=4)
def _synthetic_tensors(
    n: int, num_classes: int, res: int, seed: int, noise: float
) -> tuple[torch.Tensor, torch.Tensor]:
    theta_c, freq_c, tint_c, spacing = _class_layout(num_classes, res)
    labels = torch.arange(n) % num_classes
    images = torch.empty(n, 3, res, res, dtype=torch.uint8)
    coord = (torch.arange(res, dtype=torch.float32) + 0.5) / res - 0.5  # image units, centred
    ys, xs = coord.view(1, res, 1), coord.view(1, 1, res)
    block = _synthetic_block(res)
    for b0 in range(0, n, block):
        # The block's generator depends only on (seed, block index): see the class docstring.
        g = torch.Generator().manual_seed((seed * 0x9E3779B97F4A7C15 + b0 // block) % 2**63)
        lab = torch.arange(b0, b0 + block) % num_classes
        u = torch.rand(block, 12, generator=g)
        z = torch.randn(block, 7, generator=g)
        theta = theta_c[lab] + (u[:, 0] - 0.5) * 0.7 * spacing
        freq = freq_c[lab] * torch.exp((u[:, 1] - 0.5) * 0.3)
        phase = 2 * math.pi * u[:, 2]
        cx, cy = (u[:, 3] - 0.5) * 0.5, (u[:, 4] - 0.5) * 0.5
        sigma = 0.12 + 0.23 * u[:, 5]
        contrast = 0.1 + 0.25 * u[:, 6]

        def grating(th: torch.Tensor, fr: torch.Tensor, ph: torch.Tensor) -> torch.Tensor:
            t, f, p = (v.view(-1, 1, 1) for v in (th, fr, ph))
            return torch.cos(2 * math.pi * f * (xs * torch.cos(t) + ys * torch.sin(t)) + p)

        window = torch.exp(
            -((xs - cx.view(-1, 1, 1)) ** 2 + (ys - cy.view(-1, 1, 1)) ** 2)
            / (2 * sigma.view(-1, 1, 1) ** 2)
        )
        signal = contrast.view(-1, 1, 1) * window * grating(theta, freq, phase)
        distractor = (0.6 * contrast * u[:, 7]).view(-1, 1, 1) * grating(
            math.pi * u[:, 8], 1.5 + 6.0 * u[:, 9], 2 * math.pi * u[:, 10]
        )
        luminance = (signal + distractor).unsqueeze(1)  # [B, 1, H, W]
        background = 0.35 + 0.3 * u[:, 11].view(-1, 1) + 0.05 * z[:, :3] + 0.03 * tint_c[lab]
        colour = 1.0 + 0.08 * tint_c[lab] + 0.1 * z[:, 3:6]  # the grating is tinted too
        x = background.view(-1, 3, 1, 1) + luminance * colour.view(-1, 3, 1, 1)
        x = x + noise * torch.randn(block, 3, res, res, generator=g)
        stop = min(n, b0 + block)
        images[b0:stop] = (x[: stop - b0].clamp_(0, 1) * 255).round_().to(torch.uint8)
    return images, labels
