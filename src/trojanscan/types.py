"""Type aliases shared across the package (one place, as captum's ``_utils/typing.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

import torch

#: A batch of images: float32, shape (N, C, H, W), values in [0, 1] (pixel space, unnormalised).
ImageBatch: TypeAlias = torch.Tensor
#: Integer class labels: int64, shape (N,).
Labels: TypeAlias = torch.Tensor
#: Any callable mapping an :data:`ImageBatch` to logits of shape (N, num_classes).
ModelFn: TypeAlias = Callable[[torch.Tensor], torch.Tensor]
#: Input shape (C, H, W).
Shape3: TypeAlias = tuple[int, int, int]
