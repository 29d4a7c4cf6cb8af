"""The in-memory dataset type every reader returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

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


#: ITU-R BT.601 luma weights (PIL's "L" conversion): how colour images are made grayscale for a 1-channel model.
LUMA = (0.299, 0.587, 0.114)


def fit_images(data: Dataset, shape: Shape3, *, batch: int = 1024) -> tuple[Dataset, list[str]]:
    """``data`` with its images brought to ``shape`` (C, H, W), and what was done, in words (empty: nothing).

    Channels first: 3 to 1 by :data:`LUMA`, 1 to 3 by repetition (any other mismatch is an InvalidInputError); then a
    bilinear resize with antialiasing (``F.interpolate``), clamped to [0, 1]. Labels and class names are kept.
    ``trojanscan scan --data`` applies it to images read from a folder (never to an ``.npz``, whose arrays are
    taken as they are).
    """
    c, h, w = (int(v) for v in shape)
    x = data.x
    done: list[str] = []
    if x.shape[1] != c:
        if x.shape[1] == 3 and c == 1:
            x = (x * torch.tensor(LUMA, dtype=x.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True)
            done.append("made grayscale (luma)")
        elif x.shape[1] == 1 and c == 3:
            x = x.expand(-1, 3, -1, -1)
            done.append("grayscale repeated over 3 channels")
        else:
            raise InvalidInputError(
                f"{data.name}: the images have {x.shape[1]} channel(s) and the model takes {c}; only 1 <-> 3 channels "
                f"are converted: give {c}-channel images")
    if (int(x.shape[2]), int(x.shape[3])) != (h, w):
        done.append(f"resized from {x.shape[3]}x{x.shape[2]} to {w}x{h} (bilinear)")
        x = torch.cat([F.interpolate(x[i:i + batch], size=(h, w), mode="bilinear", align_corners=False,
                                     antialias=True).clamp_(0.0, 1.0) for i in range(0, x.shape[0], batch)])
    if not done:
        return data, []
    return Dataset(x.contiguous(), data.y, data.class_names, data.name), done
