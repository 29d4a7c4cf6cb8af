"""Patching a trojaned model by fine-tuning on triggered inputs that keep their correct labels.

Both defences go through this one function and the one training loop:

- **DeepInspect** (§5): the data are the *model-inverted* images; 15% of them are stamped with
  triggers drawn from the conditional generator G for the flagged targets (``x + G(z, t)``,
  clipped to [0, 1]), labels kept; 10% of the data is held out to choose the fine-tuning settings
  (the learning rate, from a small grid); 10 epochs by default.
- **Neural Cleanse** (unlearning, Wang et al. §VI-C): the same, with Neural Cleanse's reversed
  mask/pattern of the flagged labels (``(1 - m) x + m p``) and 20% stamped.

The selection score on the held-out split is the mean of (a) agreement with the original model on
clean held-out images and (b) accuracy of the patched model on the held-out images stamped with the
triggers (their true label): the first keeps clean accuracy, the second removes the backdoor.

Keeping clean accuracy without clean data (our addition; both papers fine-tune with cross-entropy only).
Substitute images cover little of the real input distribution, and cross-entropy on them lets the
model drift where real images live: on MNIST the target class lost 22 points of recall. Three
standard data-free distillation terms, all against the *original* model as the teacher, hold the
patched model to the original's behaviour everywhere except on the triggers:

- ``distill``: KL(teacher(x) || student(x')) on every training image, where x' is x with its
  trigger (if stamped) and the teacher sees the un-stamped x: the soft form of "labels kept";
- ``mixup_distill``: the same KL on mixtures ``lam*x_i + (1-lam)*x_j`` of two substitutes (covers
  the space between them);
- ``noise``: Gaussian noise (std ``noise``) on every substitute before stamping.

``distill = mixup_distill = noise = 0`` is the papers' plain fine-tuning.

``anchor`` (off by default) adds ``anchor * ||theta - theta_0||^2``, the L2-SP penalty of Li et al. (2018) towards
the original weights: it moves the accuracy/TAR trade-off (docs/methods/deep_inspect.md, "Patching") but no
setting we measured keeps the trigger removed on every model, so it is an option, not a default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from trojanscan.data.base import Dataset
from trojanscan.errors import InvalidInputError
from trojanscan.models.classifier import Classifier, clone_classifier
from trojanscan.training import Distiller, TrainConfig, train

#: ``stamper(x, gen) -> x'``: put a trigger of a flagged target on every image of ``x``.
Stamper = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def additive_stamper(triggers: Callable[[torch.Tensor, torch.Generator], torch.Tensor], targets: Sequence[int]) -> Stamper:
    """DeepInspect: ``clamp(x + G(z, t), 0, 1)`` with ``t`` drawn uniformly from the flagged ``targets``.

    ``triggers(t, gen)`` returns one perturbation per entry of ``t`` (e.g. ``G(z, t)`` with fresh ``z``).
    """
    tt = torch.as_tensor(list(targets), dtype=torch.int64)
    if tt.numel() == 0:
        raise InvalidInputError("no flagged targets to patch: the scan found nothing (nothing to do)")

    def stamp(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        t = tt[torch.randint(len(tt), (x.shape[0],), generator=gen)]
        with torch.no_grad():
            return (x + triggers(t, gen)).clamp(0, 1)

    return stamp


def mask_stamper(masks: torch.Tensor, patterns: torch.Tensor, targets: Sequence[int]) -> Stamper:
    """Neural Cleanse: ``(1 - m_t) x + m_t p_t`` with ``t`` drawn from the flagged ``targets``."""
    tt = torch.as_tensor(list(targets), dtype=torch.int64)
    if tt.numel() == 0:
        raise InvalidInputError("no flagged targets to patch: the scan found nothing (nothing to do)")

    def stamp(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        t = tt[torch.randint(len(tt), (x.shape[0],), generator=gen)]
        m = masks[t].unsqueeze(1)
        return (1 - m) * x + m * patterns[t]

    return stamp


@dataclass
class PatchResult:
    """The patched copy, the chosen learning rate and the held-out scores of every candidate.

    ``lr`` is ``None`` for a patch by pruning (``mitigation.pruning``), whose ``pruning`` says what was cut; a
    fine-tune that ``auto`` chose after a prune that failed keeps that prune's numbers there (``"used": False``).
    """

    model: Classifier
    lr: float | None
    candidates: dict[float, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0
    pruning: dict[str, Any] = field(default_factory=dict)

    @property
    def strategy(self) -> str:
        """How this patch was made: ``prune`` or ``finetune``."""
        return "finetune" if self.lr is not None else "prune"


#: Default weights of the clean-accuracy terms (module docstring): distillation, mixup distillation, noise std.
DISTILL, MIXUP_DISTILL, NOISE = 1.0, 1.0, 0.1

#: Held-out scores closer than this count as a tie (then the larger learning rate wins).
TIE = 1e-3


@torch.no_grad()
def _holdout_scores(model: Classifier, reference: torch.Tensor, hold: Dataset, stamped: torch.Tensor) -> dict[str, float]:
    clean_pred = model.predict(hold.x)
    trig_pred = model.predict(stamped)
    agree = float((clean_pred == reference).float().mean())
    robust = float((trig_pred == hold.y).float().mean())
    return {"clean_agreement": agree, "stamped_accuracy": robust, "score": 0.5 * (agree + robust)}


def finetune_with_triggers(
    model: Classifier,
    data: Dataset,
    stamper: Stamper,
    *,
    stamp_fraction: float = 0.15,
    holdout_fraction: float = 0.1,
    epochs: int = 10,
    lrs: Sequence[float] = (1e-4, 3e-4, 1e-3),
    batch_size: int = 32,
    distill: float = DISTILL,
    mixup_distill: float = MIXUP_DISTILL,
    noise: float = NOISE,
    anchor: float = 0.0,
    teacher: Classifier | None = None,
    seed: int = 0,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> PatchResult:
    """Fine-tune a copy of ``model`` on ``data`` with ``stamp_fraction`` of each batch stamped (labels kept).

    The learning rate is chosen among ``lrs`` on a held-out ``holdout_fraction`` of ``data``; see the
    module docstring. ``data.y`` must hold the correct labels (for inverted data: the class each
    image was inverted for). ``distill``, ``mixup_distill``, ``noise``: the clean-accuracy terms of the
    module docstring (0 turns each off); ``anchor``: the optional L2-SP weight (module docstring).
    ``teacher``: the reference model of the distillation terms, the held-out agreement and the anchor
    (default ``model``; a later patching round passes the *original* model, so the rounds do not drift
    from it step by step). The input model is not modified.
    """
    import time

    if not 0 < stamp_fraction < 1:
        raise InvalidInputError(f"stamp_fraction must be in (0, 1); got {stamp_fraction!r}")
    if not 0 < holdout_fraction < 1:
        raise InvalidInputError(f"holdout_fraction must be in (0, 1); got {holdout_fraction!r}")
    if not lrs or any(lr <= 0 for lr in lrs):
        raise InvalidInputError(f"lrs must be positive learning rates; got {list(lrs)!r}")
    for name, v in (("distill", distill), ("mixup_distill", mixup_distill), ("noise", noise), ("anchor", anchor)):
        if not isinstance(v, int | float) or not v >= 0 or v == float("inf"):
            raise InvalidInputError(f"{name} must be a non-negative number; got {v!r}")
    if len(data) < 10:
        raise InvalidInputError(f"patching needs at least 10 images; got {len(data)}")
    if bool((data.y < 0).any()):
        raise InvalidInputError("patching data needs labels (>= 0) for every image")
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(data), generator=g)
    n_hold = max(1, int(round(holdout_fraction * len(data))))
    hold, fit = data.subset(perm[:n_hold], "holdout"), data.subset(perm[n_hold:], "patch-train")
    hold_stamped = stamper(hold.x, torch.Generator().manual_seed(seed + 1))
    ref_model = model if teacher is None else teacher
    reference = ref_model.predict(hold.x)

    distiller = Distiller(ref_model)
    start = [p.detach().clone() for p in ref_model.parameters()] if anchor > 0 else []

    def loss_fn(student: Classifier, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if noise > 0:
            x = (x + noise * torch.randn(x.shape, generator=gen)).clamp(0, 1)
        sel = torch.rand(x.shape[0], generator=gen) < stamp_fraction
        xt = x.clone()
        if bool(sel.any()):
            xt[sel] = stamper(x[sel], gen)
        out = student(xt)
        loss = F.cross_entropy(out, y)
        if distill > 0:
            loss = loss + distill * distiller.kl(out, x)
        if mixup_distill > 0:
            loss = loss + mixup_distill * distiller.mixup_kl(student, x, gen)
        if anchor > 0:  # L2-SP (Li et al. 2018): stay near the original weights
            drift = sum(((p - p0) ** 2).sum() for p, p0 in zip(student.parameters(), start, strict=True))
            loss = loss + anchor * torch.as_tensor(drift).to(loss.device)  # the weights may sit on a GPU
        return loss

    models: dict[float, Classifier] = {}
    candidates: dict[float, dict[str, float]] = {}
    for lr in lrs:
        cand = clone_classifier(model)
        cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=float(lr))
        train(cand, fit, cfg, seed=seed, loss_fn=loss_fn, freeze_norm_stats=True, progress=progress, log=None)
        scores = _holdout_scores(cand, reference, hold, hold_stamped)
        candidates[float(lr)], models[float(lr)] = scores, cand
        if log is not None:
            log(f"patch lr {lr:g}: held-out clean agreement {scores['clean_agreement']:.3f}, "
                f"stamped accuracy {scores['stamped_accuracy']:.3f}")
    # ties (within TIE of the best score) go to the larger learning rate: on inverted data both held-out scores
    # saturate at 1.0, and the larger step unlearns more of the trigger (docs/methods/deep_inspect.md, "Patching")
    top = max(c["score"] for c in candidates.values())
    chosen = max(lr for lr, c in candidates.items() if c["score"] >= top - TIE)
    best = PatchResult(models[chosen], chosen)
    best.candidates = candidates
    best.seconds = time.perf_counter() - t0
    return best
