"""Triggers and stamping: the one primitive that attacks, detectors, patching and benchmarks share.

A trigger is a mask ``m`` (H, W) in [0, 1], a pattern ``p`` (C, H, W) in [0, 1] and an opacity
``alpha`` in (0, 1]. Stamping is Neural Cleanse's Eq. 1 with the opacity folded into the mask:

    x' = (1 - alpha * m) * x + alpha * m * p
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trojanscan.errors import InvalidInputError
from trojanscan.types import ImageBatch, Shape3

Position = str | tuple[int, int]
POSITIONS = ("bottom-right", "bottom-left", "top-left", "top-right", "center")


@dataclass(frozen=True, eq=False)
class Trigger:
    """A trigger: ``mask`` (H, W), ``pattern`` (C, H, W), both float32 in [0, 1]; ``alpha`` in (0, 1]."""

    mask: torch.Tensor
    pattern: torch.Tensor
    alpha: float = 1.0
    name: str = "trigger"

    def __post_init__(self) -> None:
        if self.mask.dim() != 2:
            raise InvalidInputError(f"trigger mask must be 2-D (H, W); got shape {tuple(self.mask.shape)}")
        if self.pattern.dim() != 3 or self.pattern.shape[1:] != self.mask.shape:
            raise InvalidInputError(
                f"trigger pattern must be (C, H, W) with H, W = mask's {tuple(self.mask.shape)}; "
                f"got {tuple(self.pattern.shape)}"
            )
        check_alpha(self.alpha)

    @property
    def shape(self) -> Shape3:
        c, h, w = self.pattern.shape
        return (int(c), int(h), int(w))

    def stamp(self, x: ImageBatch) -> ImageBatch:
        """Apply the trigger to a batch (N, C, H, W) in [0, 1]; see module docstring."""
        return stamp(x, self.mask, self.pattern, self.alpha)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (nested lists), lossless for float32."""
        return {"name": self.name, "alpha": self.alpha, "mask": self.mask.tolist(), "pattern": self.pattern.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trigger:
        return cls(
            mask=torch.tensor(d["mask"], dtype=torch.float32),
            pattern=torch.tensor(d["pattern"], dtype=torch.float32),
            alpha=float(d["alpha"]),
            name=str(d.get("name", "trigger")),
        )


def check_alpha(alpha: float) -> float:
    """Validate an opacity: a float in (0, 1]."""
    if not isinstance(alpha, int | float) or not (0.0 < float(alpha) <= 1.0):
        raise InvalidInputError(f"alpha must be a number in (0, 1]; got {alpha!r}. Use e.g. 0.1 for a blend.")
    return float(alpha)


def stamp(x: ImageBatch, mask: torch.Tensor, pattern: torch.Tensor, alpha: float | torch.Tensor = 1.0) -> ImageBatch:
    """``(1 - alpha*m) * x + alpha*m * p``; ``mask`` broadcasts over channels (and a leading batch dim)."""
    m = mask if mask.dim() >= 3 else mask.unsqueeze(0)
    m = alpha * m
    return (1 - m) * x + m * pattern


def _place(input_shape: Shape3, h: int, w: int, position: Position, margin: int) -> tuple[int, int]:
    _, H, W = input_shape
    if h < 1 or w < 1:
        raise InvalidInputError(f"trigger size must be >= 1 pixel; got {h}x{w}")
    if h > H or w > W:
        raise InvalidInputError(
            f"trigger of {h}x{w} pixels does not fit an image of {H}x{W}; use a smaller --trigger-size."
        )
    if isinstance(position, tuple | list):
        r, c = int(position[0]), int(position[1])
    else:
        m_h = min(margin, H - h)
        m_w = min(margin, W - w)
        table = {
            "bottom-right": (H - h - m_h, W - w - m_w),
            "bottom-left": (H - h - m_h, m_w),
            "top-left": (m_h, m_w),
            "top-right": (m_h, W - w - m_w),
            "center": ((H - h) // 2, (W - w) // 2),
        }
        if position not in table:
            raise InvalidInputError(
                f"unknown trigger position {position!r}; use one of {', '.join(POSITIONS)} or 'ROW,COL'."
            )
        r, c = table[position]
    if r < 0 or c < 0 or r + h > H or c + w > W:
        raise InvalidInputError(f"a {h}x{w} trigger at row {r}, col {c} leaves the {H}x{W} image; move it.")
    return r, c


def parse_position(text: str) -> Position:
    """``"bottom-right"`` etc., or ``"ROW,COL"`` (top-left corner of the patch)."""
    if "," in text:
        try:
            r, c = (int(v) for v in text.split(","))
        except ValueError as exc:
            raise InvalidInputError(f"position must be a name or ROW,COL integers; got {text!r}") from exc
        return (r, c)
    return text


def patch_trigger(
    input_shape: Shape3,
    patch: torch.Tensor,
    position: Position = "bottom-right",
    *,
    margin: int = 1,
    alpha: float = 1.0,
    name: str = "patch",
) -> Trigger:
    """Paste ``patch`` (C, h, w) or (h, w) at ``position``: the general BadNets trigger."""
    c = input_shape[0]
    if patch.dim() == 2:
        patch = patch.unsqueeze(0)
    if patch.shape[0] not in (1, c):
        raise InvalidInputError(f"patch has {patch.shape[0]} channels; the image has {c}")
    h, w = int(patch.shape[1]), int(patch.shape[2])
    r, col = _place(input_shape, h, w, position, margin)
    mask = torch.zeros(input_shape[1:])
    mask[r : r + h, col : col + w] = 1.0
    pattern = torch.zeros(input_shape)
    pattern[:, r : r + h, col : col + w] = patch.expand(c, h, w).float().clamp(0, 1)
    return Trigger(mask, pattern, alpha, name)


def square_trigger(
    input_shape: Shape3, size: int = 4, position: Position = "bottom-right", *, value: float = 1.0,
    margin: int = 1, alpha: float = 1.0,
) -> Trigger:
    """BadNets / Neural Cleanse square: a ``size`` x ``size`` patch of constant ``value`` (white by default)."""
    return patch_trigger(input_shape, torch.full((input_shape[0], size, size), float(value)), position,
                         margin=margin, alpha=alpha, name=f"square{size}")


def random_pattern_trigger(
    input_shape: Shape3, size: int = 4, position: Position = "bottom-right", *, seed: int = 0,
    binary: bool = True, margin: int = 1, alpha: float = 1.0,
) -> Trigger:
    """A seeded random (binary by default) pattern in a ``size`` x ``size`` patch."""
    g = torch.Generator().manual_seed(seed)
    patch = torch.rand((input_shape[0], size, size), generator=g)
    if binary:
        patch = (patch > 0.5).float()
    return patch_trigger(input_shape, patch, position, margin=margin, alpha=alpha, name=f"random{size}")


def multi_location_trigger(base: Trigger, input_shape: Shape3, positions: Sequence[Position], *, margin: int = 1) -> Trigger:
    """The same patch stamped at several places: union of masks, same pattern values."""
    ys, xs = torch.nonzero(base.mask > 0, as_tuple=True)
    if ys.numel() == 0:
        raise InvalidInputError("the base trigger's mask is empty")
    r0, r1, c0, c1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    patch = base.pattern[:, r0:r1, c0:c1]
    mask = torch.zeros(input_shape[1:])
    pattern = torch.zeros(input_shape)
    for pos in positions:
        t = patch_trigger(input_shape, patch, pos, margin=margin)
        mask = torch.maximum(mask, t.mask)
        pattern = torch.where(t.mask.bool().unsqueeze(0), t.pattern, pattern)
    return Trigger(mask, pattern, base.alpha, f"{base.name}x{len(positions)}")


def blended_trigger(input_shape: Shape3, alpha: float = 0.1, *, seed: int = 0, pattern: torch.Tensor | None = None) -> Trigger:
    """Translucent whole-image trigger (Chen et al. 2017): a seeded uniform-noise image blended at ``alpha``."""
    check_alpha(alpha)
    if pattern is None:
        pattern = torch.rand(input_shape, generator=torch.Generator().manual_seed(seed))
    return Trigger(torch.ones(input_shape[1:]), pattern.float().clamp(0, 1), alpha, f"blend{alpha:g}")


def watermark_trigger(input_shape: Shape3, alpha: float = 0.4, *, text: str = "TS", value: float = 1.0) -> Trigger:
    """A text watermark rendered with PIL's built-in bitmap font, tiled across the image, blended at ``alpha``."""
    from PIL import Image, ImageDraw

    check_alpha(alpha)
    c, h, w = input_shape
    img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(img)
    step_y = max(h // 3, 8)
    step_x = max(w // 2, 12)
    for y in range(0, h, step_y):
        for x in range((y // step_y) % 2 * step_x // 2 - step_x, w, step_x):
            draw.text((x, y), text, fill=255)
    mask = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)
    if float(mask.sum()) == 0:
        raise InvalidInputError(f"watermark text {text!r} renders to nothing at {h}x{w}")
    return Trigger(mask, torch.full(input_shape, float(value)), alpha, f"watermark-{text}")
