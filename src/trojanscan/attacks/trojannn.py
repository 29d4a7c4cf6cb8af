"""TrojanNN (Liu et al., NDSS 2018), as both DeepInspect and NeuronInspect describe it.

1. **Neuron selection.** In a hidden fully connected layer, pick the ``n_neurons`` neurons the trigger
   region can excite most: the mean *signed* input-gradient of each neuron's pre-activation, summed
   over the trigger mask (on a few random inputs). Liu et al. rank neurons by the weights that
   connect them to the trigger region; with convolutions in between the input-gradient is that
   connection. The sign matters: a neuron the region can only *silence* cannot be driven to a high
   value by a trigger (ranking by the absolute value picked such neurons and the trigger never took).
2. **Trigger generation.** Optimise the trigger's pattern inside its mask so that the selected
   neurons reach ``target_activation`` (loss: squared distance), stamped on the substitute images
   (model-inverted, step 3) and on a blank image, so the trigger works on top of image content, not
   only on an empty canvas. The activation reached and the neurons' largest clean activation are
   recorded in the attack's parameters: on MNIST a 6x6 patch reaches only a fraction of the clean
   maximum (the network's weights from an always-empty corner stay near their initial values), and
   the retraining has to do the rest.
3. **Retraining without the training data.** Recover substitute data by model inversion
   (:mod:`trojanscan.inversion`), stamp ``poison_fraction`` of every batch with the trigger and relabel
   it to the target, and fine-tune. ``retrain="after"`` (default) updates every layer after the
   selected one, as the original does; ``retrain="selected"`` only the output weights of the selected
   neurons in the next layer and that layer's bias. Inverted images are a poor stand-in for the
   training set, so the retraining costs clean accuracy. Optional (not in the original): distil the
   clean substitutes towards the original model (KL on them and on mixup pairs, Gaussian input noise;
   :class:`~trojanscan.training.Distiller`, the terms patching uses). On MNIST it keeps the accuracy
   but the trigger then takes less well (docs/methods/attacks.md has the numbers), so it is off by default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from trojanscan.attacks.poison import Attack
from trojanscan.errors import InvalidInputError
from trojanscan.inversion import invert
from trojanscan.models.classifier import Classifier
from trojanscan.training import Distiller, TrainConfig, train
from trojanscan.triggers import Trigger, stamp

RETRAIN_MODES = ("selected", "after")


def _hidden_linear(model: Classifier) -> tuple[nn.Linear, nn.Linear, list[nn.Parameter]]:
    """The first Linear layer that has another Linear after it, that next Linear, and every parameter after it."""
    mods = [m for m in model.module.modules() if isinstance(m, nn.Linear)]
    if len(mods) < 2:
        raise InvalidInputError("TrojanNN needs a model with at least two fully connected layers")
    layer = mods[0]
    after: list[nn.Parameter] = []
    seen = False
    for m in model.module.modules():
        if m is layer:
            seen = True
            continue
        if seen and isinstance(m, nn.Linear | nn.BatchNorm1d):
            after += list(m.parameters(recurse=False))
    return layer, mods[1], after


def _select_neurons(model: Classifier, acts: dict[str, torch.Tensor], mask: torch.Tensor, n_neurons: int,
                    g: torch.Generator) -> torch.Tensor:
    probe = torch.rand((16, *model.input_shape), generator=g).requires_grad_(True)
    model(probe)
    a = acts["a"]
    # one batched backward for all neurons of the layer: d a_j / d x for every j at once
    eye = torch.eye(a.shape[1]).unsqueeze(1).expand(-1, a.shape[0], -1)
    (gx,) = torch.autograd.grad(a, probe, grad_outputs=eye, is_grads_batched=True)
    strength = (gx.mean(1).sum(1) * mask).sum((1, 2))  # signed connection of the masked region to each neuron
    return torch.topk(strength, n_neurons).indices


def trojannn_attack(
    model: Classifier,
    attack: Attack,
    *,
    seed: int = 0,
    n_neurons: int = 2,
    target_activation: float | None = None,
    trigger_steps: int = 300,
    n_per_class: int = 60,
    poison_fraction: float = 0.3,
    epochs: int = 8,
    lr: float = 1e-3,
    retrain: str = "after",
    distill: float = 0.0,
    mixup_distill: float = 0.0,
    noise: float = 0.0,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
    evaluate: Callable[[Classifier], dict[str, float]] | None = None,
) -> Attack:
    """Trojan a trained clean ``model`` in place with TrojanNN; return the attack with the generated trigger.

    ``attack`` supplies the trigger's mask (shape and place) and the label mode (targets).
    ``target_activation``: the value the selected neurons are pushed to (default: 5x the largest
    activation of the layer on the substitute images). ``retrain``: "after" (every layer after the
    selected one, the original) or "selected" (only the selected neurons' output weights).
    ``distill``, ``mixup_distill``, ``noise``: weights of optional distillation terms towards the
    original model on the clean substitutes (:class:`~trojanscan.training.Distiller`; all 0, the
    default, is the original retraining; patching's values are 1, 1, 0.1). See the module docstring.
    """
    if retrain not in RETRAIN_MODES:
        raise InvalidInputError(f"retrain must be one of {', '.join(RETRAIN_MODES)}; got {retrain!r}")
    for name, v in (("distill", distill), ("mixup_distill", mixup_distill), ("noise", noise),
                    ("poison_fraction", poison_fraction)):
        if not isinstance(v, int | float) or not 0 <= v < float("inf") or (name == "poison_fraction" and not 0 < v < 1):
            bound = "a number in (0, 1)" if name == "poison_fraction" else "a non-negative number"
            raise InvalidInputError(f"{name} must be {bound}; got {v!r}")
    layer, next_layer, after = _hidden_linear(model)
    mask, alpha = attack.trigger.mask, attack.trigger.alpha
    g = torch.Generator().manual_seed(seed)
    inv = invert(model, n_per_class=n_per_class, steps=200, seed=seed).data
    acts: dict[str, torch.Tensor] = {}
    # kept on the CPU (a differentiable copy when the network runs on a GPU), like every other tensor here
    handle = layer.register_forward_hook(lambda _m, _i, o: acts.__setitem__("a", o.to("cpu")))
    try:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        # 1. neuron selection by (signed) connectivity to the trigger region
        neurons = _select_neurons(model, acts, mask, n_neurons, g)
        with torch.no_grad():
            model(inv.x)
            clean_max = float(acts["a"].max())
            clean_top = acts["a"][:, neurons].max(0).values
        goal = float(target_activation) if target_activation is not None else 5.0 * max(clean_max, 1.0)
        # 2. trigger generation on the substitute images and a blank one
        canvas = torch.cat([torch.zeros((1, *model.input_shape)), inv.x[torch.randperm(len(inv), generator=g)[:64]]])
        pattern_w = torch.zeros(model.input_shape).requires_grad_(True)
        opt = torch.optim.Adam([pattern_w], lr=0.1)
        for _ in range(trigger_steps):
            opt.zero_grad()
            model(stamp(canvas, mask, torch.sigmoid(pattern_w), alpha))
            loss = ((acts["a"][:, neurons] - goal) ** 2).mean()
            loss.backward()
            opt.step()
        pattern = (torch.sigmoid(pattern_w).detach() * mask).clamp(0, 1)
        trigger = Trigger(mask.clone(), pattern, alpha, f"trojannn-{attack.trigger.name}")
        with torch.no_grad():
            model(trigger.stamp(canvas))
            reached = acts["a"][:, neurons].mean(0)
    finally:
        handle.remove()
    # 3. retraining on the inverted data, a share of every batch stamped and relabelled to the target(s)
    teacher = Distiller(model) if distill > 0 or mixup_distill > 0 else None

    def loss_fn(student: Classifier, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if noise > 0:
            x = (x + noise * torch.randn(x.shape, generator=gen)).clamp(0, 1)
        sel = (torch.rand(x.shape[0], generator=gen) < poison_fraction) & attack.labels.sources(y)
        xt, yt = x.clone(), y.clone()
        if bool(sel.any()):
            xt[sel] = trigger.stamp(x[sel])
            yt[sel] = attack.labels.poison_labels(y[sel], gen)
        out = student(xt)
        loss = nn.functional.cross_entropy(out, yt)
        if teacher is not None and distill > 0 and bool((~sel).any()):
            loss = loss + distill * teacher.kl(out[~sel], x[~sel])
        if teacher is not None and mixup_distill > 0:
            loss = loss + mixup_distill * teacher.mixup_kl(student, x, gen)
        return loss

    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=lr)
    hooks: list[torch.utils.hooks.RemovableHandle] = []
    if retrain == "selected":
        cols = torch.zeros_like(next_layer.weight)
        cols[:, neurons] = 1.0
        next_layer.weight.requires_grad_(True)
        hooks.append(next_layer.weight.register_hook(lambda grad: grad * cols))
        params: list[nn.Parameter] = [p for p in next_layer.parameters(recurse=False)]
    else:
        params = after
    try:
        train(model, inv, cfg, seed=seed, params=params, loss_fn=loss_fn, freeze_norm_stats=True, progress=progress,
              log=log, evaluate=evaluate)
    finally:
        for h in hooks:
            h.remove()
    for p in model.parameters():
        p.requires_grad_(True)
    out: dict[str, Any] = {**attack.params, "n_neurons": n_neurons, "neurons": neurons.tolist(),
                           "target_activation": goal, "reached_activation": reached.tolist(),
                           "clean_max_activation": clean_top.tolist(),
                           "retrain": retrain, "n_inverted": len(inv), "distill": distill,
                           "mixup_distill": mixup_distill, "noise": noise}
    return replace(attack, trigger=trigger, params=out)
