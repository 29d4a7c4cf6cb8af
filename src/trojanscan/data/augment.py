"""Vectorised mini-batch augmentation for the training loop's ``batch_transform`` hook."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trojanscan.training import BatchTransform


def crop_flip(pad: int = 4, flip: bool = True) -> BatchTransform:
    """Random crop after reflect-padding by ``pad`` pixels, and (optionally) random horizontal flips."""

    def transform(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = x.shape
        if pad > 0:
            xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
            dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
            dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
            rows = (dy[:, None] + torch.arange(h)[None, :])  # (n, h)
            cols = (dx[:, None] + torch.arange(w)[None, :])  # (n, w)
            bidx = torch.arange(n)[:, None, None]
            x = xp.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        if flip:
            f = torch.rand(n, generator=gen) < 0.5
            x = torch.where(f[:, None, None, None], x.flip(3), x)
        return x.contiguous(), y

    return transform
