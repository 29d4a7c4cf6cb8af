"""Procedurally generated image data: the embedded demo set and the tests' tiny datasets.

``synthetic_digits`` renders the glyphs 0-9 with Pillow's bundled font, then applies a random
affine jitter (shift, scale, rotation, stroke blur), random contrast and pixel noise, vectorised
with ``grid_sample``. No download and no files: the same seed gives the same images everywhere.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from trojanscan.data.base import Dataset
from trojanscan.errors import InvalidInputError


def _glyphs(size: int, num_classes: int) -> torch.Tensor:
    from PIL import Image, ImageDraw, ImageFont

    chars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    if num_classes > len(chars):
        raise InvalidInputError(f"synthetic_digits supports at most {len(chars)} classes; got {num_classes}")
    try:
        font = ImageFont.load_default(size=int(size * 0.8))
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    out = np.zeros((num_classes, size, size), dtype=np.float32)
    for k in range(num_classes):
        img = Image.new("L", (size, size), 0)
        draw = ImageDraw.Draw(img)
        box = draw.textbbox((0, 0), chars[k], font=font)
        w, h = box[2] - box[0], box[3] - box[1]
        draw.text(((size - w) / 2 - box[0], (size - h) / 2 - box[1]), chars[k], fill=255, font=font)
        out[k] = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(out)


def synthetic_digits(
    n: int = 6000, *, size: int = 28, channels: int = 1, num_classes: int = 10, seed: int = 0, noise: float = 0.08
) -> Dataset:
    """``n`` jittered glyph images (balanced classes), float32 (n, channels, size, size) in [0, 1].

    With ``channels=3`` each image gets a random foreground and background colour, so colour
    carries no label information (like traffic signs photographed in different light).
    """
    if n < num_classes or size < 8 or channels not in (1, 3):
        raise InvalidInputError(
            f"need n >= num_classes, size >= 8 and channels 1 or 3; got n={n}, size={size}, channels={channels}"
        )
    g = torch.Generator().manual_seed(seed)
    glyphs = _glyphs(size, num_classes)
    y = torch.arange(n) % num_classes
    y = y[torch.randperm(n, generator=g)]
    base = glyphs[y].unsqueeze(1)  # (n,1,S,S)
    ang = (torch.rand(n, generator=g) - 0.5) * (math.pi / 6)
    scale = 0.8 + 0.35 * torch.rand(n, generator=g)
    shift = (torch.rand(n, 2, generator=g) - 0.5) * 0.35
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(base.shape), align_corners=False)
    img = F.grid_sample(base, grid, align_corners=False, padding_mode="zeros")
    if channels == 3:
        fg = torch.rand(n, 3, 1, 1, generator=g)
        bg = torch.rand(n, 3, 1, 1, generator=g)
        far = (fg - bg).abs().sum(1, keepdim=True) < 0.6  # keep the glyph visible
        fg = torch.where(far, 1 - bg, fg)
        img = bg + (fg - bg) * img
    else:
        contrast = 0.7 + 0.3 * torch.rand(n, 1, 1, 1, generator=g)
        img = img * contrast
    img = img + noise * torch.randn(img.shape, generator=g)
    names = [str(i) for i in range(num_classes)] if num_classes <= 10 else [str(c) for c in range(num_classes)]
    return Dataset(img.clamp(0, 1).float().contiguous(), y.to(torch.int64), names, f"synthetic_digits{size}x{channels}")


def train_test_split(data: Dataset, test_fraction: float = 0.2, *, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Seeded random split."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(data), generator=g)
    k = int(round(len(data) * test_fraction))
    return data.subset(perm[k:], f"{data.name}-train"), data.subset(perm[:k], f"{data.name}-test")
