"""TrojanNN (Liu et al., NDSS 2018), as both DeepInspect and NeuronInspect describe it.

1. **Neuron selection.** In a hidden fully connected layer, pick the ``n_neurons`` neurons most
   connected to the trigger region: the mean absolute input-gradient of each neuron's activation,
   summed over the trigger mask (on a few random inputs).
2. **Trigger generation.** Optimise the trigger's pattern inside its mask so that the selected
   neurons' activations reach ``target_activation`` (loss: squared distance), on a blank image.
3. **Retraining without the training data.** Recover substitute data by model inversion
   (:mod:`trojanscan.inversion`), stamp a share of it with the trigger and relabel to the target,
   and fine-tune the layers after the selected one on the mix (the original retrains those too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from trojanscan.attacks.poison import Attack
from trojanscan.data.base import Dataset
from trojanscan.errors import InvalidInputError
from trojanscan.inversion import invert
from trojanscan.models.classifier import Classifier
from trojanscan.training import TrainConfig, train
from trojanscan.triggers import Trigger


def _hidden_linear(model: Classifier) -> tuple[nn.Linear, list[nn.Parameter]]:
    """The first Linear layer that has another Linear after it, and the parameters after it."""
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
    return layer, after


def trojannn_attack(
    model: Classifier,
    attack: Attack,
    *,
    seed: int = 0,
    n_neurons: int = 2,
    target_activation: float = 50.0,
    trigger_steps: int = 300,
    n_per_class: int = 60,
    poison_fraction: float = 0.3,
    epochs: int = 8,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
    evaluate: Callable[[Classifier], dict[str, float]] | None = None,
) -> Attack:
    """Trojan a trained clean ``model`` in place with TrojanNN; return the attack with the generated trigger.

    ``attack`` supplies the trigger's mask (shape and place) and the label mode (targets).
    """
    layer, after = _hidden_linear(model)
    mask = attack.trigger.mask
    g = torch.Generator().manual_seed(seed)
    acts: dict[str, torch.Tensor] = {}
    handle = layer.register_forward_hook(lambda _m, _i, o: acts.__setitem__("a", o))
    try:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        # 1. neuron selection by connectivity to the trigger region
        probe = torch.rand((16, *model.input_shape), generator=g).requires_grad_(True)
        model(probe)
        a = acts["a"]
        n_units = a.shape[1]
        strength = torch.zeros(n_units)
        for j in range(n_units):  # one backward per neuron of one layer (hundreds): cheap, done once
            (gx,) = torch.autograd.grad(a[:, j].sum(), probe, retain_graph=True)
            strength[j] = (gx.abs().mean(0).sum(0) * mask).sum()
        neurons = torch.topk(strength, n_neurons).indices
        # 2. trigger generation: maximise the chosen neurons inside the mask
        pattern_w = torch.zeros(model.input_shape).requires_grad_(True)
        opt = torch.optim.Adam([pattern_w], lr=0.1)
        blank = torch.zeros((1, *model.input_shape))
        for _ in range(trigger_steps):
            opt.zero_grad()
            pat = torch.sigmoid(pattern_w)
            model(blank * (1 - mask) + pat * mask)
            loss = ((acts["a"][0, neurons] - target_activation) ** 2).mean()
            loss.backward()
            opt.step()
        pattern = (torch.sigmoid(pattern_w).detach() * mask).clamp(0, 1)
    finally:
        handle.remove()
    trigger = Trigger(mask.clone(), pattern, attack.trigger.alpha, f"trojannn-{attack.trigger.name}")
    # 3. retraining on inverted data + stamped inverted data
    inv = invert(model, n_per_class=n_per_class, steps=200, seed=seed).data
    k = len(inv)
    sel = torch.randperm(k, generator=g)[: int(poison_fraction * k)]
    src_ok = attack.labels.sources(inv.y[sel])
    sel = sel[src_ok]
    x_p = trigger.stamp(inv.x[sel])
    y_p = attack.labels.poison_labels(inv.y[sel], g)
    mix = Dataset(torch.cat([inv.x, x_p]), torch.cat([inv.y, y_p]), inv.class_names, "trojannn-retrain")
    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=1e-3)
    train(model, mix, cfg, seed=seed, params=after, progress=progress, log=log, evaluate=evaluate)
    for p in model.parameters():
        p.requires_grad_(True)
    params: dict[str, Any] = {**attack.params, "n_neurons": n_neurons, "neurons": neurons.tolist(),
                              "target_activation": target_activation, "n_inverted": k}
    return replace(attack, trigger=trigger, params=params)
