"""The two patching defences end to end: scan, build the stamper from the detector's triggers, fine-tune, rescan.

- :func:`patch_deep_inspect` — DeepInspect §5, data-free: substitute data by model inversion, triggers from
  the trained conditional generator G for the flagged targets, 15% stamped, 10% held out.
- :func:`patch_neural_cleanse` — Neural Cleanse unlearning: the reversed mask/pattern of the flagged
  labels on clean data (or inverted data when none is given), 20% stamped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from trojanscan.data.base import Dataset
from trojanscan.detectors import get_detector
from trojanscan.errors import InvalidInputError, WhiteBoxRequiredError
from trojanscan.generator import TriggerGenerator
from trojanscan.inversion import invert
from trojanscan.mitigation.patching import (
    DISTILL,
    MIXUP_DISTILL,
    NOISE,
    PatchResult,
    Stamper,
    additive_stamper,
    finetune_with_triggers,
    mask_stamper,
)
from trojanscan.mitigation.pruning import prune_trigger_units, pruning_layer
from trojanscan.models.classifier import Classifier
from trojanscan.report.scan_report import ScanReport
from trojanscan.training import accuracy


@dataclass
class PatchOutcome:
    """Before/after reports and metrics of one patching run."""

    method: str
    before: ScanReport
    after: ScanReport
    patch: PatchResult
    metrics: dict[str, float] = field(default_factory=dict)
    #: one entry per fine-tuning round (DeepInspect ``rounds``): the chosen lr and that round's rescan
    rounds: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "strategy": self.patch.strategy,
            "targets": self.before.suspects,
            "chosen_lr": self.patch.lr,
            "pruning": self.patch.pruning,
            "holdout": {str(k): v for k, v in self.patch.candidates.items()},
            "before": {"verdict": self.before.verdict, "anomaly_index": self.before.anomaly_index,
                       "suspects": self.before.suspects},
            "after": {"verdict": self.after.verdict, "anomaly_index": self.after.anomaly_index,
                      "suspects": self.after.suspects},
            "metrics": self.metrics,
            "rounds": self.rounds,
            "patch_seconds": self.patch.seconds,
        }


def require_weights(model: Classifier) -> None:
    """Patching fine-tunes the weights: refuse a query-only model before any scan (not after minutes of one)."""
    if not model.white_box:
        raise WhiteBoxRequiredError(
            "patching fine-tunes the model's weights, and a query-only model (scores only) has none to change; "
            "patch the TorchScript or safetensors original")


def _eval_metrics(before: Classifier, after: Classifier, eval_data: Dataset | None) -> dict[str, float]:
    if eval_data is None or bool((eval_data.y < 0).any()):
        return {}
    return {"clean_acc_before": accuracy(before, eval_data), "clean_acc_after": accuracy(after, eval_data)}


#: How a patch removes the trigger: the papers' fine-tuning, pruning the units the trigger drives (ours), or
#: ``auto``: pruning where the network allows it (a dense layer after the first, hookable layers) and where it works
#: on the substitutes (:data:`AUTO_MAX_SUCCESS`), else fine-tuning.
STRATEGIES = ("auto", "finetune", "prune")

#: ``auto`` keeps a prune only if at most this share of the stamped non-target substitutes still go to a target
#: (the patching bar's 10 % TAR, read on the substitutes); otherwise it fine-tunes the original instead.
AUTO_MAX_SUCCESS = 0.1


def check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise InvalidInputError(f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
    return strategy


def resolve_strategy(strategy: str, model: Classifier) -> str:
    """The strategy for ``model`` before any scan: ``prune`` on a network it cannot prune raises; ``auto`` on one
    becomes ``finetune``."""
    if check_strategy(strategy) == "finetune":
        return strategy
    try:
        pruning_layer(model)
    except InvalidInputError:
        if strategy == "prune":
            raise
        return "finetune"
    return strategy


def _patch_step(strategy: str, model: Classifier, data: Dataset, stamper: Stamper, targets: Sequence[int], seed: int,
                log: Callable[[str], None] | None, finetune: Callable[[], PatchResult],
                clean: bool = False) -> PatchResult:
    """One patch by ``strategy`` (resolved); ``auto`` prunes and falls back to ``finetune()`` where the prune leaves
    the triggers working on more than :data:`AUTO_MAX_SUCCESS` of the stamped substitutes (the prune's numbers kept
    in the result's ``pruning``, its ``strategy`` then ``finetune``). ``clean``: ``data`` are clean images (the
    prune's guard then keeps the targets' own images too)."""
    if strategy == "finetune":
        return finetune()
    pruned = prune_trigger_units(model, data, stamper, targets, seed=seed, guard_targets=clean, log=log)
    left = pruned.pruning["attack_success_after"]
    if strategy == "prune" or left <= AUTO_MAX_SUCCESS:
        return pruned
    if log is not None:
        log(f"auto: pruning left the triggers working on {left:.1%} of the stamped substitutes "
            f"(> {AUTO_MAX_SUCCESS:.0%}): fine-tuning instead")
    res = finetune()
    res.pruning = {**pruned.pruning, "used": False}
    res.seconds += pruned.seconds
    return res


def _distill_terms(on: bool) -> dict[str, Any]:
    if not isinstance(on, bool):
        raise InvalidInputError(f"distill must be True or False; got {on!r}")
    w = (DISTILL, MIXUP_DISTILL, NOISE) if on else (0.0, 0.0, 0.0)
    return dict(zip(("distill", "mixup_distill", "noise"), w, strict=True))


def _first_scan(method: str, model: Classifier, data: Dataset | None, params: dict[str, Any] | None, seed: int,
                scanned: tuple[Any, ScanReport] | None, progress: bool) -> tuple[Any, ScanReport]:
    """The detector and report a patch starts from: ``scanned`` if given (checked), else a fresh scan."""
    if scanned is None:
        det = get_detector(method, **(params or {}))
        before = det.scan(model, data, seed=seed, progress=progress)
    else:
        det, before = scanned
        if before.method != method:
            raise InvalidInputError(f"scanned must hold a {method} scan; got {before.method!r}")
    if not before.suspects:
        raise InvalidInputError(f"{before.method} flags no target: nothing to patch")
    return det, before


def generator_triggers(generators: Sequence[TriggerGenerator]) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """``triggers(t, g)``: one trigger ``G_i(z, t_j)`` per label, ``G_i`` drawn at random among ``generators``
    (a scan's ``n_repeats`` generators: more diverse triggers) and fresh noise ``z``."""
    gens = list(generators)
    if not gens:
        raise InvalidInputError("no trigger generators given")

    @torch.no_grad()
    def triggers(t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        which = torch.randint(len(gens), (t.shape[0],), generator=g)
        out = torch.empty(t.shape[0], *gens[0].input_shape)
        for i, gm in enumerate(gens):
            sel = which == i
            if bool(sel.any()):
                out[sel] = gm(torch.randn(int(sel.sum()), gm.z_dim, generator=g), t[sel])
        return out

    return triggers


def patch_deep_inspect(
    model: Classifier, *, params: dict[str, Any] | None = None, seed: int = 0, n_per_class: int = 20,
    epochs: int = 10, eval_data: Dataset | None = None, distill: bool = True, rounds: int = 1,
    strategy: str = "auto", scanned: tuple[Any, ScanReport] | None = None, progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> PatchOutcome:
    """DeepInspect patching (§5) with no clean data; ``eval_data`` (optional) only measures clean accuracy.

    ``distill``: the clean-accuracy terms of :func:`finetune_with_triggers` at their defaults (False: the
    paper's plain fine-tuning). ``rounds`` (ours; 1 = the paper): after each fine-tune the patched model is
    rescanned; while the rescan still flags one of the first scan's targets, the next round fine-tunes the
    patched model again with the triggers of every scan so far (the rescan's generators find what the patch
    left working), distilled towards the *original* model. The outcome's ``after`` is the last rescan.
    ``strategy``: ``"finetune"`` (the paper), ``"prune"`` (:func:`~trojanscan.mitigation.pruning.prune_trigger_units`
    with G's triggers on the same inverted data; ``epochs`` and ``distill`` then do not apply) or ``"auto"``
    (prune where the network allows it and where the prune stops the triggers on the stamped substitutes, else
    fine-tune: :func:`resolve_strategy`, :data:`AUTO_MAX_SUCCESS`). ``scanned``: a
    DeepInspect detector that has already scanned ``model`` (with ``params`` and ``seed``) and its report, used
    instead of scanning again (to compare strategies on one scan).
    """
    require_weights(model)
    strategy = resolve_strategy(strategy, model)  # refuse a network it cannot prune before minutes of scanning
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise InvalidInputError(f"rounds must be an integer >= 1; got {rounds!r}")
    det, before = _first_scan("deep_inspect", model, None, params, seed, scanned, progress)
    gens = list(getattr(det, "generators_", []))
    if not gens:
        raise RuntimeError("internal error: DeepInspect did not keep its generators")
    inv = invert(model, n_per_class=n_per_class, seed=seed + 1, progress=progress).data

    targets = list(before.suspects)
    current, history, seconds = model, [], 0.0
    for r in range(1, rounds + 1):
        stamper = additive_stamper(generator_triggers(gens), targets)
        res = _patch_step(strategy, current, inv, stamper, targets, seed, log, lambda: finetune_with_triggers(
            current, inv, stamper, stamp_fraction=0.15, holdout_fraction=0.1, epochs=epochs, seed=seed,  # noqa: B023
            teacher=model, progress=progress, log=log, **_distill_terms(distill)))
        seconds += res.seconds
        rescan = get_detector("deep_inspect", **(params or {}))
        after = rescan.scan(res.model, None, seed=seed, progress=progress)
        how = f"lr {res.lr:g}" if res.lr is not None else f"{res.pruning['pruned']} units pruned"
        history.append({"round": r, "strategy": res.strategy, "lr": res.lr,
                        "pruned": res.pruning["pruned"] if res.strategy == "prune" else None,
                        "anomaly_index": after.anomaly_index, "suspects": after.suspects, "seconds": res.seconds})
        if log is not None:
            log(f"patch round {r}: {how}, rescan {after.verdict} {after.suspects} "
                f"index {after.anomaly_index:.2f}")
        current = res.model
        if not set(after.suspects) & set(targets):
            break
        gens += list(getattr(rescan, "generators_", []))
    res.seconds = seconds
    return PatchOutcome("deep_inspect", before, after, res, _eval_metrics(model, res.model, eval_data), history)


def patch_neural_cleanse(
    model: Classifier, data: Dataset | None, *, params: dict[str, Any] | None = None, seed: int = 0,
    n_per_class: int = 20, epochs: int = 10, eval_data: Dataset | None = None, distill: bool = True,
    strategy: str = "auto", scanned: tuple[Any, ScanReport] | None = None, progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> PatchOutcome:
    """Neural Cleanse unlearning: fine-tune with 20% of the images stamped with the reversed triggers.

    ``distill`` as in :func:`patch_deep_inspect` (False: Neural Cleanse's plain unlearning). ``strategy="prune"``:
    Neural Cleanse's other patch (§VI-B, neuron pruning), through :func:`~trojanscan.mitigation.pruning.prune_trigger_units`
    with the reversed triggers. ``scanned``: as in :func:`patch_deep_inspect`, a Neural Cleanse detector that has
    scanned ``model`` on ``data`` and its report."""
    require_weights(model)
    strategy = resolve_strategy(strategy, model)  # refuse a network it cannot prune before minutes of scanning
    det, before = _first_scan("neural_cleanse", model, data, params, seed, scanned, progress)
    masks, patterns = det.artifacts_["masks"], det.artifacts_["patterns"]
    fit = data if data is not None and not bool((data.y < 0).any()) else invert(
        model, n_per_class=n_per_class, seed=seed + 1, progress=progress).data
    stamper = mask_stamper(masks, patterns, before.suspects)
    res = _patch_step(strategy, model, fit, stamper, before.suspects, seed, log, lambda: finetune_with_triggers(
        model, fit, stamper, stamp_fraction=0.2, holdout_fraction=0.1, epochs=epochs, seed=seed, progress=progress,
        log=log, **_distill_terms(distill)), clean=fit is data)
    after = get_detector("neural_cleanse", **(params or {})).scan(res.model, data, seed=seed, progress=progress)
    return PatchOutcome("neural_cleanse", before, after, res, _eval_metrics(model, res.model, eval_data))
