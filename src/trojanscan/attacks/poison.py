"""Data poisoning (BadNets, Gu et al. 2017): stamp a share of the training set and relabel it.

Every trigger-based attack (BadNets patches, blended, watermark, multi-location) is an
:class:`Attack`: a :class:`~trojanscan.triggers.Trigger`, a :class:`LabelMode` and a poison rate.
Poisoning happens on the fly in the one training loop, through :meth:`Attack.batch_transform`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from trojanscan.attacks.labels import LabelMode
from trojanscan.data.base import Dataset
from trojanscan.errors import InvalidInputError
from trojanscan.models.classifier import Classifier
from trojanscan.training import BatchTransform
from trojanscan.triggers import Trigger


@dataclass(frozen=True, eq=False)
class Attack:
    """A trojan attack: stamp ``trigger`` on ``poison_rate`` of the eligible training images."""

    name: str
    trigger: Trigger
    labels: LabelMode
    poison_rate: float = 0.1
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.poison_rate, int | float) or not 0.0 < float(self.poison_rate) < 1.0:
            raise InvalidInputError(f"poison_rate must be in (0, 1); got {self.poison_rate!r}. The default is 0.1.")

    def poison_plan(self, data: Dataset, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Which training indices are poisoned (bool mask) and their new labels (fixed by ``seed``)."""
        if data.input_shape != self.trigger.shape:
            raise InvalidInputError(f"trigger is {self.trigger.shape} but images are {data.input_shape}")
        g = torch.Generator().manual_seed(seed + 7919)
        eligible = torch.nonzero(self.labels.sources(data.y)).squeeze(1)
        n = int(round(self.poison_rate * len(data)))
        n = min(n, len(eligible))
        chosen = eligible[torch.randperm(len(eligible), generator=g)[:n]]
        mask = torch.zeros(len(data), dtype=torch.bool)
        mask[chosen] = True
        new_y = data.y.clone()
        new_y[chosen] = self.labels.poison_labels(data.y[chosen], g)
        return mask, new_y

    def batch_transform(self, data: Dataset, seed: int, before: BatchTransform | None = None) -> BatchTransform:
        """A training-loop hook that stamps and relabels the planned poisoned images of each batch.

        ``before`` (e.g. augmentation) runs first, so the trigger is stamped on the augmented image.
        """
        mask, new_y = self.poison_plan(data, seed)

        def transform(
            x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, gen: torch.Generator
        ) -> tuple[torch.Tensor, torch.Tensor]:
            if before is not None:
                x, y = before(x, y, idx, gen)
            sel = mask[idx]
            if bool(sel.any()):
                x = x.clone()
                y = y.clone()
                x[sel] = self.trigger.stamp(x[sel])
                y[sel] = new_y[idx[sel]]
            return x, y

        return transform

    def to_dict(self) -> dict[str, Any]:
        """Ground truth for the benchmarks (never read by a detector)."""
        return {
            "attack": self.name,
            "label_mode": self.labels.to_dict(),
            "targets": self.labels.attacked_labels,
            "poison_rate": self.poison_rate,
            "params": self.params,
            "trigger": self.trigger.to_dict(),
        }


@torch.no_grad()
def trojan_activation_rate(
    model: Classifier, test: Dataset, trigger: Trigger, labels: LabelMode, batch_size: int = 1024
) -> float:
    """TAR: share of non-target test images that, stamped with ``trigger``, are classified as a target."""
    src = labels.sources(test.y)
    x, y = test.x[src], test.y[src]
    if len(y) == 0:
        return float("nan")
    was = model.training
    model.eval()
    try:
        hits = 0
        for i in range(0, len(y), batch_size):
            pred = model(trigger.stamp(x[i : i + batch_size])).argmax(1)
            hits += int(labels.activated(pred, y[i : i + batch_size]).sum())
    finally:
        model.train(was)
    return hits / len(y)
