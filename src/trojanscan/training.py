"""The one training / fine-tuning loop, used by every attack and by model patching.

Seeded (a private RNG stream: ``torch.random.fork_rng`` so a caller's global state is untouched),
with a progress bar and per-epoch metrics from a caller-supplied ``evaluate`` callback (clean
accuracy, trojan activation rate, ...). Data stays in memory as tensors; a ``batch_transform``
hook does on-the-fly work (augmentation, poisoning) on each mini-batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from trojanscan.data.base import Dataset
from trojanscan.errors import InvalidInputError
from trojanscan.models.classifier import Classifier, clone_classifier

BatchTransform = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]
"""``(x, y, indices_in_dataset, generator) -> (x, y)`` applied to each training mini-batch."""

LossFn = Callable[[Classifier, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
"""``(model, x, y, generator) -> scalar loss`` for one (transformed) mini-batch; replaces cross-entropy."""


class Distiller:
    """Data-free knowledge distillation towards a frozen copy of a model (the *teacher*).

    Fine-tuning on substitute (e.g. model-inverted) images lets a model drift wherever the substitutes do
    not reach, which is where the real images live. Holding it to the original model's outputs keeps its
    clean behaviour (Hinton et al. 2015; mixup inputs as in data-free distillation). Used by patching
    (the student must keep the teacher's labels on stamped images) and by TrojanNN's retraining (the
    student must keep them on clean images). The teacher is a deep copy taken at construction.
    """

    def __init__(self, model: Classifier) -> None:
        self.teacher = clone_classifier(model).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def kl(self, student_logits: torch.Tensor, teacher_x: torch.Tensor) -> torch.Tensor:
        """KL(teacher(teacher_x) || softmax(student_logits)), mean over the batch."""
        with torch.no_grad():
            target = torch.softmax(self.teacher(teacher_x), 1)
        return nn.functional.kl_div(torch.log_softmax(student_logits, 1), target, reduction="batchmean")

    def mixup_kl(self, student: Classifier, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """The same KL on mixtures ``lam*x_i + (1-lam)*x_j`` of the batch's images (``lam ~ U(0, 1)`` per pair)."""
        j = torch.randperm(x.shape[0], generator=gen)
        lam = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), generator=gen)
        xm = lam * x + (1 - lam) * x[j]
        return self.kl(student(xm), xm)


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of :func:`train` (recorded in a model's provenance)."""

    epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"  # "adam" | "sgd" (momentum 0.9, nesterov)
    weight_decay: float = 0.0
    schedule: str = "none"  # "none" | "onecycle" | "cosine"
    label_smoothing: float = 0.0

    def check(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise InvalidInputError(f"epochs must be an int >= 1; got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InvalidInputError(f"batch_size must be an int >= 1; got {self.batch_size!r}")
        if not (isinstance(self.lr, int | float) and self.lr > 0 and math.isfinite(self.lr)):
            raise InvalidInputError(f"lr must be a positive number; got {self.lr!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise InvalidInputError(f"optimizer must be 'adam' or 'sgd'; got {self.optimizer!r}")
        if self.schedule not in ("none", "onecycle", "cosine"):
            raise InvalidInputError(f"schedule must be 'none', 'onecycle' or 'cosine'; got {self.schedule!r}")


@dataclass
class TrainResult:
    """Loss and metrics per epoch, and the wall time."""

    losses: list[float] = field(default_factory=list)
    metrics: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final(self) -> dict[str, float]:
        return self.metrics[-1] if self.metrics else {}


def train(
    model: Classifier,
    data: Dataset,
    config: TrainConfig = TrainConfig(),
    *,
    seed: int = 0,
    batch_transform: BatchTransform | None = None,
    evaluate: Callable[[Classifier], dict[str, float]] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
    params: list[nn.Parameter] | None = None,
    loss_fn: LossFn | None = None,
    freeze_norm_stats: bool = False,
) -> TrainResult:
    """Train (or fine-tune) ``model`` in place on ``data`` with cross-entropy; see module docstring.

    ``params`` restricts what is optimised (default: every parameter of the model). ``loss_fn``
    replaces the cross-entropy (e.g. patching's distillation term); it gets the batch after
    ``batch_transform`` and the loop's generator. ``freeze_norm_stats`` keeps every batch-norm layer
    in eval mode (running statistics used, not updated): fine-tuning on substitute data (TrojanNN,
    patching) must not replace the statistics of the real data with those of the substitutes.
    The model is left in eval mode.
    """
    config.check()
    if len(data) == 0:
        raise InvalidInputError("training data is empty")
    if data.input_shape != model.input_shape:
        raise InvalidInputError(f"training images are {data.input_shape}, the model takes {model.input_shape}")
    result = TrainResult()
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        trainable = params if params is not None else [p for p in model.parameters()]
        for p in trainable:
            p.requires_grad_(True)
        opt: torch.optim.Optimizer
        if config.optimizer == "adam":
            opt = torch.optim.Adam(trainable, lr=config.lr, weight_decay=config.weight_decay)
        else:
            opt = torch.optim.SGD(trainable, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay)
        n = len(data)
        steps_per_epoch = math.ceil(n / config.batch_size)
        sched: torch.optim.lr_scheduler.LRScheduler | None = None
        if config.schedule == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps_per_epoch * config.epochs)
        elif config.schedule == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps_per_epoch * config.epochs)
        ce = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        for epoch in range(config.epochs):
            model.train()
            if freeze_norm_stats:
                for m in model.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()
            order = torch.randperm(n, generator=gen)
            total, count = 0.0, 0
            bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress, leave=False)
            for step in bar:
                idx = order[step * config.batch_size : (step + 1) * config.batch_size]
                xb, yb = data.x[idx], data.y[idx]
                if batch_transform is not None:
                    xb, yb = batch_transform(xb, yb, idx, gen)
                opt.zero_grad(set_to_none=True)
                loss = ce(model(xb), yb) if loss_fn is None else loss_fn(model, xb, yb, gen)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
                if step % 20 == 0:
                    bar.set_postfix(loss=f"{total / count:.4f}")
            model.eval()
            result.losses.append(total / count)
            metrics = evaluate(model) if evaluate is not None else {}
            result.metrics.append(metrics)
            if log is not None:
                shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                log(f"epoch {epoch + 1}/{config.epochs}  loss {total / count:.4f}  {shown}  ({time.perf_counter() - t0:.0f}s)")
    model.eval()
    result.seconds = time.perf_counter() - t0
    return result


@torch.no_grad()
def accuracy(model: Classifier, data: Dataset, batch_size: int = 1024) -> float:
    """Share of ``data`` the model classifies correctly."""
    if len(data) == 0:
        return float("nan")
    was = model.training
    model.eval()
    try:
        pred = model.predict(data.x, batch_size)
    finally:
        model.train(was)
    return float((pred == data.y).float().mean())
