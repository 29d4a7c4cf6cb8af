"""Label modes of a trojan attack: all-to-one, all-to-several, all-to-all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from trojanscan.errors import InvalidInputError


@dataclass(frozen=True)
class LabelMode:
    """How a poisoned input's label is chosen and what counts as a successful trojan activation.

    - ``all_to_one``: every stamped input goes to ``targets[0]``;
    - ``all_to_several``: each poisoned input gets a target drawn uniformly from ``targets``
      (DeepInspect's multi-target attack); activation = the prediction falls in ``targets``;
    - ``all_to_all``: ``y -> (y + 1) mod K``.
    """

    kind: str
    targets: tuple[int, ...]
    num_classes: int

    def __post_init__(self) -> None:
        if self.kind not in ("all_to_one", "all_to_several", "all_to_all"):
            raise InvalidInputError(f"label mode must be all_to_one, all_to_several or all_to_all; got {self.kind!r}")
        if self.num_classes < 2:
            raise InvalidInputError(f"num_classes must be >= 2; got {self.num_classes}")
        for t in self.targets:
            if not 0 <= t < self.num_classes:
                raise InvalidInputError(
                    f"target label {t} is out of range for {self.num_classes} classes; use 0..{self.num_classes - 1}"
                )
        if self.kind == "all_to_one" and len(self.targets) != 1:
            raise InvalidInputError(f"all_to_one takes exactly one target; got {list(self.targets)}")
        if self.kind == "all_to_several" and len(set(self.targets)) < 1:
            raise InvalidInputError("all_to_several needs at least one target")
        if len(set(self.targets)) != len(self.targets):
            raise InvalidInputError(f"targets repeat: {list(self.targets)}")

    @classmethod
    def parse(cls, spec: str | int | Sequence[int], num_classes: int) -> LabelMode:
        """``5`` → all-to-one; ``"1,4,7"`` → all-to-several; ``"all"`` → all-to-all."""
        if isinstance(spec, str) and spec.strip().lower() in ("all", "all-to-all", "all_to_all"):
            return cls("all_to_all", (), num_classes)
        if isinstance(spec, int):
            return cls("all_to_one", (spec,), num_classes)
        try:
            vals = [int(v) for v in (spec.split(",") if isinstance(spec, str) else spec)]
        except ValueError as exc:
            raise InvalidInputError(f"target must be a label, a comma-separated list of labels or 'all'; got {spec!r}") from exc
        return cls("all_to_one" if len(vals) == 1 else "all_to_several", tuple(vals), num_classes)

    @property
    def attacked_labels(self) -> list[int]:
        """Labels an attack target (every label for all-to-all)."""
        return list(range(self.num_classes)) if self.kind == "all_to_all" else list(self.targets)

    def sources(self, y: torch.Tensor) -> torch.Tensor:
        """Boolean mask of inputs eligible to be poisoned / counted in the TAR (not already a target)."""
        if self.kind == "all_to_all":
            return torch.ones_like(y, dtype=torch.bool)
        return ~torch.isin(y, torch.tensor(self.targets, dtype=y.dtype))

    def poison_labels(self, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.kind == "all_to_all":
            return (y + 1) % self.num_classes
        t = torch.tensor(self.targets, dtype=torch.int64)
        return t[torch.randint(len(t), y.shape, generator=gen)]

    def activated(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Whether each stamped input's prediction counts as a trojan activation."""
        if self.kind == "all_to_all":
            return pred == (y + 1) % self.num_classes
        return torch.isin(pred, torch.tensor(self.targets, dtype=pred.dtype))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "targets": list(self.targets), "num_classes": self.num_classes}
