"""Patching by pruning the units a recovered trigger drives (our addition to DeepInspect §5).

DeepInspect §5 patches by fine-tuning; on inverted data that trades clean accuracy against the trigger
(docs/methods/deep_inspect.md, "Patching"). Neural Cleanse (Wang et al. 2019, §VI-B "Patching DNN via
neuron pruning") and Fine-Pruning (Liu, Dolan-Gavitt & Garg 2018) remove a backdoor instead by cutting
the hidden units it runs through. We do that with the detector's own recovered triggers and the
substitute images, so it stays data-free:

1. **Layer.** The input of the first ``nn.Linear`` layer that a forward pass reaches after another layer
   with weights (so it reads a hidden representation, not the image): for a
   convolutional network the flattened last feature map (channel x position, Fine-Pruning's "last
   convolutional layer", kept spatial so a patch trigger's units are a few positions of every channel);
   for a network whose only dense layer follows a global pooling, its channels (where a patch trigger
   is spread over all of them and no unit stands out: measured on a ResNet-8, docs/methods/deep_inspect.md);
   for an MLP, the first hidden layer. A network with no such layer, or one whose layers cannot be hooked (TorchScript), is
   refused with a clear error.
2. **Score per unit** (Neural Cleanse §VI-B's ranking): the mean activation on stamped substitutes
   minus the mean on the same substitutes un-stamped, ``gap_j = E[a_j(stamp(x))] - E[a_j(x)]``.
3. **Which units.** Those whose gap is a right-tail outlier by the robust z-score of ``stats``:
   ``(gap_j - median) / (1.4826 * MAD) > cutoff`` (default 3), largest gap first; no count is fixed in
   advance, so a small trigger cuts few units and a large one more.
4. **Clean-accuracy guard.** Of the candidate prefixes (1/16, 2/16, ..., all of the outliers) the
   largest is kept whose predictions on the substitutes of the *non-target* classes still agree with the
   original model's on at least ``min_agreement`` (0.99) of them. A flagged target's own *inverted*
   substitutes are left out of the guard: on a trojaned model they carry the trigger, so losing them is the
   point. Clean images of a target do not carry it, so with clean data (``guard_targets=True``) they stay in:
   where the trigger's units are also the target's own features (a globally pooled ResNet-8, measured), a
   prune that stops the trigger by erasing the target class is not kept. (No
   hold-out split: nothing here is fitted to the predictions, and the guard needs every image it can get
   for its resolution; the stamped substitutes of the report get fresh trigger draws.)
5. **Cut.** The chosen units' columns of that layer's weight are set to zero: the same architecture,
   saved like any other model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from trojanscan import stats
from trojanscan.data.base import Dataset
from trojanscan.errors import InvalidInputError, WhiteBoxRequiredError
from trojanscan.mitigation.patching import PatchResult, Stamper
from trojanscan.models.classifier import Classifier, clone_classifier

#: Robust z-score above which a unit counts as driven by the trigger (step 3 of the module docstring).
PRUNE_CUTOFF = 3.0
#: Share of the non-target substitutes whose prediction must not change (step 4).
MIN_AGREEMENT = 0.99
#: sqrt(pi / 2): the mean absolute deviation of a normal sample times this estimates its standard deviation.
MEAN_AD_CONSISTENCY = 1.2533
#: Number of candidate prefixes the guard tries.
GUARD_STEPS = 16


def pruning_layer(model: Classifier) -> tuple[str, nn.Linear]:
    """The layer whose input units are pruned (step 1 of the module docstring): name and module.

    The first ``nn.Linear`` that a forward pass reaches after some other layer with weights, so that its
    input is a hidden representation, not the image (one probe image finds the order)."""
    if isinstance(model.module, torch.jit.ScriptModule):
        raise WhiteBoxRequiredError(
            "pruning hooks the network's hidden layers, which a TorchScript file does not allow; "
            "patch it with --strategy finetune, or load it from .safetensors with its architecture")
    order: list[tuple[str, nn.Module]] = []
    handles = [mod.register_forward_pre_hook(lambda m, _inp, name=name: order.append((name, m)))
               for name, mod in model.module.named_modules()
               if not list(mod.children()) and any(True for _ in mod.parameters(recurse=False))]
    try:
        with torch.no_grad():
            model.raw_output(torch.zeros(1, *model.input_shape, device=model.device))
    finally:
        for h in handles:
            h.remove()
    for i, (name, mod) in enumerate(order):
        if i > 0 and isinstance(mod, nn.Linear):
            return name, mod
    raise InvalidInputError(
        "pruning needs a dense (nn.Linear) layer after another layer with weights, and this network has none; "
        "patch it with --strategy finetune")


@torch.no_grad()
def unit_activations(model: Classifier, layer: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """The input of ``layer`` for images ``x``, flattened to (N, units), on the CPU."""
    got: list[torch.Tensor] = []

    def hook(_mod: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        got.append(inp[0].detach().flatten(1).cpu())

    handle = layer.register_forward_pre_hook(hook)
    try:
        for i in range(0, x.shape[0], batch_size):
            model(x[i : i + batch_size])
    finally:
        handle.remove()
    return torch.cat(got)


def robust_z(values: torch.Tensor) -> np.ndarray:
    """``(v - median) / MAD``, MAD scaled by 1.4826 as in ``stats``.

    Where more than half the values tie (MAD = 0, e.g. every unit outside a small trigger's receptive field
    has a gap of exactly 0), the spread is the mean absolute deviation scaled by sqrt(pi / 2) = 1.2533, its
    normal-consistent form (Iglewicz & Hoaglin's modified z-score); values all equal score 0."""
    v = values.double().numpy()
    med, spread = stats.median(v), stats.mad(v)
    if spread == 0:
        spread = MEAN_AD_CONSISTENCY * float(np.mean(np.abs(v - med)))
    if spread == 0:
        return np.zeros_like(v)
    return (v - med) / spread


def _zero_columns(model: Classifier, layer_name: str, units: torch.Tensor, copy: bool = True) -> Classifier:
    """``model`` (a copy unless ``copy=False``) with the columns ``units`` of that layer's weight set to zero."""
    twin = clone_classifier(model) if copy else model
    lin = dict(twin.module.named_modules())[layer_name]
    assert isinstance(lin, nn.Linear)
    with torch.no_grad():
        lin.weight[:, units.to(lin.weight.device)] = 0
    return twin


def prune_trigger_units(
    model: Classifier,
    data: Dataset,
    stamper: Stamper,
    targets: Sequence[int],
    *,
    cutoff: float = PRUNE_CUTOFF,
    min_agreement: float = MIN_AGREEMENT,
    seed: int = 0,
    guard_targets: bool = False,
    log: Callable[[str], None] | None = None,
) -> PatchResult:
    """Zero the input units of :func:`pruning_layer` that the triggers of ``targets`` drive (module docstring).

    ``data``: substitute images with their labels (inverted or clean); ``stamper``: puts a recovered
    trigger of a flagged target on images; ``guard_targets``: ``data`` are clean images, so the targets' own
    images are guarded too (step 4). The input model is not modified. The result's ``lr`` is
    ``None``; ``pruning`` says which units were cut and what the substitutes showed.
    """
    if not isinstance(cutoff, int | float) or not cutoff > 0 or cutoff == float("inf"):
        raise InvalidInputError(f"prune cutoff must be a positive number; got {cutoff!r}")
    if not isinstance(min_agreement, int | float) or not 0 < min_agreement <= 1:
        raise InvalidInputError(f"min_agreement must be in (0, 1]; got {min_agreement!r}")
    if not isinstance(guard_targets, bool):
        raise InvalidInputError(f"guard_targets must be True or False; got {guard_targets!r}")
    if len(data) < 10:
        raise InvalidInputError(f"pruning needs at least 10 images; got {len(data)}")
    tt = torch.as_tensor(list(targets), dtype=torch.int64)
    if tt.numel() == 0:
        raise InvalidInputError("no flagged targets to patch: the scan found nothing (nothing to do)")
    t0 = time.perf_counter()
    layer_name, layer = pruning_layer(model)
    gap = (unit_activations(model, layer, stamper(data.x, torch.Generator().manual_seed(seed))).mean(0)
           - unit_activations(model, layer, data.x).mean(0))
    z = robust_z(gap)
    outliers = torch.from_numpy(np.flatnonzero(z > cutoff))
    ranked = outliers[gap[outliers].argsort(descending=True)]

    others = data.subset(torch.nonzero(~torch.isin(data.y, tt)).flatten(), "non-target")
    if len(others) == 0:
        others = data
    guard = data if guard_targets else others
    reference = model.predict(guard.x)
    others_stamped = stamper(others.x, torch.Generator().manual_seed(seed + 1))  # fresh trigger draws

    def success(m: Classifier) -> float:  # share of stamped non-target substitutes sent to a target
        return float(torch.isin(m.predict(others_stamped), tt).float().mean())

    # the prefixes are nested: cut more of one working copy at each step, then cut the chosen prefix once
    chosen, agreement, work = 0, 1.0, clone_classifier(model)
    sizes = sorted({max(1, round(len(ranked) * j / GUARD_STEPS)) for j in range(1, GUARD_STEPS + 1)}) if len(ranked) else []
    done = 0
    for n in sizes:
        work = _zero_columns(work, layer_name, ranked[done:n], copy=False)
        done = n
        agree = float((work.predict(guard.x) == reference).float().mean())
        if agree < min_agreement:
            break
        chosen, agreement = n, agree
    patched = work if chosen == done else _zero_columns(model, layer_name, ranked[:chosen])
    info: dict[str, Any] = {
        "layer": layer_name, "units": int(gap.numel()), "outliers": int(len(ranked)), "pruned": chosen,
        "pruned_units": [int(u) for u in ranked[:chosen]], "cutoff": float(cutoff), "min_agreement": float(min_agreement),
        "guard_targets": guard_targets,
        "agreement": agreement, "attack_success_before": success(model), "attack_success_after": success(patched),
    }
    if log is not None:
        log(f"prune {layer_name}: {chosen} of {len(ranked)} outlier units (of {gap.numel()}), agreement "
            f"{agreement:.3f}, stamped substitutes sent to a target {info['attack_success_before']:.3f} -> "
            f"{info['attack_success_after']:.3f}")
    return PatchResult(patched, None, pruning=info, seconds=time.perf_counter() - t0)
