"""The in-memory dataset type every reader returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from trojanscan.errors import InvalidInputError
from trojanscan.types import ImageBatch, Labels, Shape3


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images ``x`` float32 (N, C, H, W) in [0, 1] and labels ``y`` int64 (N,)."""

    x: ImageBatch
    y: Labels
    class_names: list[str] = field(default_factory=list)
    name: str = "dataset"

    def __post_init__(self) -> None:
        validate_images(self.x, what=f"{self.name} images")
        if self.y.dtype != torch.int64 or self.y.dim() != 1 or self.y.shape[0] != self.x.shape[0]:
            raise InvalidInputError(
                f"{self.name} labels must be int64 of shape ({self.x.shape[0]},); "
                f"got {self.y.dtype} {tuple(self.y.shape)}"
            )

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def input_shape(self) -> Shape3:
        _, c, h, w = self.x.shape
        return (int(c), int(h), int(w))

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else int(self.y.max()) + 1 if len(self) else 0

    def subset(self, idx: torch.Tensor, name: str | None = None) -> Dataset:
        return Dataset(self.x[idx], self.y[idx], self.class_names, name or self.name)


def validate_images(x: torch.Tensor, what: str = "images") -> None:
    """Check float32 NCHW with values in [0, 1]; raise InvalidInputError naming the problem."""
    if not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or x.dim() != 4:
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise InvalidInputError(f"{what} must be float32 of shape (N, C, H, W); got {got}")
    if not x.numel():
        return
    lo_t, hi_t = torch.aminmax(x)  # one pass; NaN propagates into min/max
    lo, hi = float(lo_t), float(hi_t)
    if lo != lo or hi != hi or abs(lo) == float("inf") or abs(hi) == float("inf"):
        raise InvalidInputError(f"{what} contain NaN or inf")
    if lo < 0.0 or hi > 1.0:
        raise InvalidInputError(
            f"{what} must lie in [0, 1]; got values in [{lo:.4g}, {hi:.4g}]. Divide 0-255 images by 255."
        )
