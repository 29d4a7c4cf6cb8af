"""Patching by pruning: cut the hidden units a recovered trigger drives (mitigation.pruning)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from trojanscan.attacks import trojan_activation_rate
from trojanscan.errors import InvalidInputError, WhiteBoxRequiredError
from trojanscan.mitigation import mask_stamper
from trojanscan.mitigation.pruning import prune_trigger_units, pruning_layer, robust_z, unit_activations
from trojanscan.models.classifier import Classifier
from trojanscan.training import accuracy


def _true_stamper(built):  # type: ignore[no-untyped-def]
    trig = built.attack.trigger
    masks, patterns = torch.zeros(10, *trig.mask.shape[-2:]), torch.zeros(10, *trig.pattern.shape)
    masks[5], patterns[5] = trig.mask.reshape(masks.shape[1:]), trig.pattern
    return mask_stamper(masks, patterns, [5])


def test_pruning_the_units_the_trigger_drives_removes_the_backdoor(trojaned_model, digits) -> None:  # type: ignore[no-untyped-def]
    tr, te = digits
    model, atk = trojaned_model.model, trojaned_model.attack
    w0 = {k: v.clone() for k, v in model.state_dict().items()}
    # the tiny fixture's trigger units also carry clean evidence: a looser guard than the default's 0.99
    res = prune_trigger_units(model, tr.subset(torch.arange(600), "substitutes"), _true_stamper(trojaned_model), [5],
                              min_agreement=0.95)
    assert all(torch.equal(w0[k], v) for k, v in model.state_dict().items()), "input model modified"
    info = res.pruning
    assert res.lr is None and info["layer"] and 0 < info["pruned"] <= info["outliers"] < info["units"]
    assert len(info["pruned_units"]) == info["pruned"] and info["agreement"] >= 0.95
    assert info["attack_success_before"] > 0.9 > 0.2 > info["attack_success_after"]
    assert trojan_activation_rate(model, te, atk.trigger, atk.labels) > 0.95
    assert trojan_activation_rate(res.model, te, atk.trigger, atk.labels) < 0.2
    assert accuracy(res.model, te) > accuracy(model, te) - 0.05
    # exactly the chosen units' columns of the layer are zero; every other weight is the original's
    name, _ = pruning_layer(model)
    key = f"module.{name}.weight"
    after = res.model.state_dict()
    cut = torch.tensor(info["pruned_units"])
    assert torch.all(after[key][:, cut] == 0)
    keep = torch.ones(info["units"], dtype=torch.bool)
    keep[cut] = False
    assert torch.equal(after[key][:, keep], w0[key][:, keep])
    assert all(torch.equal(w0[k], v) for k, v in after.items() if k != key)


def test_the_units_cut_are_the_ones_the_trigger_drives(trojaned_model, digits) -> None:  # type: ignore[no-untyped-def]
    """The activation gap of the cut units is larger than of any unit left, and seeding reproduces the cut."""
    data = digits[0].subset(torch.arange(400), "substitutes")
    stamper = _true_stamper(trojaned_model)
    model = trojaned_model.model
    a = prune_trigger_units(model, data, stamper, [5], seed=3)
    b = prune_trigger_units(model, data, stamper, [5], seed=3)
    assert a.pruning == {**b.pruning}
    _, layer = pruning_layer(model)
    gap = (unit_activations(model, layer, stamper(data.x, torch.Generator().manual_seed(0)))
           - unit_activations(model, layer, data.x)).mean(0)
    cut = torch.tensor(a.pruning["pruned_units"])
    rest = torch.ones(gap.numel(), dtype=torch.bool)
    rest[cut] = False
    assert float(gap[cut].mean()) > 5 * float(gap[rest].abs().mean())


def test_the_guard_keeps_clean_agreement(trojaned_model, digits) -> None:  # type: ignore[no-untyped-def]
    data = digits[0].subset(torch.arange(400), "substitutes")
    stamper = _true_stamper(trojaned_model)
    strict = prune_trigger_units(trojaned_model.model, data, stamper, [5], cutoff=0.5, min_agreement=1.0)
    loose = prune_trigger_units(trojaned_model.model, data, stamper, [5], cutoff=0.5, min_agreement=0.5)
    assert strict.pruning["agreement"] == 1.0
    assert strict.pruning["pruned"] <= loose.pruning["pruned"]
    assert loose.pruning["agreement"] >= 0.5


def test_pruning_bad_parameters_and_models(trojaned_model, digits) -> None:  # type: ignore[no-untyped-def]
    model = trojaned_model.model
    data = digits[0].subset(torch.arange(50), "d")
    st_ = _true_stamper(trojaned_model)
    for kw, msg in (({"cutoff": 0.0}, "cutoff"), ({"cutoff": float("inf")}, "cutoff"), ({"min_agreement": 0.0}, "agreement"),
                    ({"min_agreement": 1.5}, "agreement"), ({"guard_targets": "yes"}, "guard_targets")):
        with pytest.raises(InvalidInputError, match=msg):
            prune_trigger_units(model, data, st_, [5], **kw)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="nothing"):
        prune_trigger_units(model, data, st_, [])
    with pytest.raises(InvalidInputError, match="at least 10"):
        prune_trigger_units(model, data.subset(torch.arange(5)), st_, [5])
    # a TorchScript network cannot be hooked: refused with the fix
    scripted = Classifier(torch.jit.script(model.module), (1, 28, 28), 10)
    with pytest.raises(WhiteBoxRequiredError, match="--strategy finetune"):
        pruning_layer(scripted)
    # a network whose only dense layer reads the image has no hidden units to cut
    flat = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), (1, 28, 28), 10)
    with pytest.raises(InvalidInputError, match="dense"):
        pruning_layer(flat)
    # an MLP: the first hidden layer's units
    mlp = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10)), (1, 28, 28), 10)
    assert pruning_layer(mlp)[0] == "3"


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-1000, 1000), min_size=3, max_size=40), st.integers(1, 100), st.integers(-100, 100))
def test_robust_z_is_location_and_scale_free(values: list[int], scale: int, shift: int) -> None:
    v = torch.tensor(values, dtype=torch.float64)
    z = robust_z(v)
    z2 = robust_z(v * scale + shift)
    finite = np.isfinite(z)
    assert np.array_equal(finite, np.isfinite(z2))
    assert np.allclose(z[finite], z2[finite], atol=1e-9)
    assert float(np.median(z)) == pytest.approx(0.0, abs=1e-9)  # the median unit scores 0
    if float(np.median(np.abs(v.numpy() - np.median(v.numpy())))) > 0:  # and the scale is the consistent MAD
        assert float(np.median(np.abs(z))) == pytest.approx(1 / 1.4826, rel=1e-9)


def test_robust_z_with_no_spread() -> None:
    # MAD 0 (three of four tie): the spread is the mean absolute deviation (1.0) times sqrt(pi / 2)
    z = robust_z(torch.tensor([1.0, 1.0, 1.0, 5.0]))
    assert z[3] == pytest.approx(4 / 1.2533) and np.all(z[:3] == 0)
    assert np.all(robust_z(torch.full((5,), 2.0)) == 0)


def test_patch_deep_inspect_by_pruning(trojaned_model) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from trojanscan.detectors import get_detector
    from trojanscan.mitigation.defenses import patch_deep_inspect

    model = trojaned_model.model
    w0 = {k: v.clone() for k, v in model.state_dict().items()}
    params = {"inversion_steps": 20, "steps": 60, "n_samples": 4, "n_attack": 10, "n_repeats": 1, "cutoff": 0.5}
    det = get_detector("deep_inspect", **params)
    rep = det.scan(model, None, seed=0, progress=False)
    out = patch_deep_inspect(model, params=params, n_per_class=6, strategy="prune", scanned=(det, rep), progress=False)
    assert out.before is rep  # the given scan, not a new one
    with pytest.raises(InvalidInputError, match="deep_inspect scan"):
        patch_deep_inspect(model, params=params, scanned=(det, dataclasses.replace(rep, method="neural_cleanse")),
                           progress=False)
    assert all(torch.equal(w0[k], v) for k, v in model.state_dict().items()), "input model modified"
    s = out.summary()
    assert s["strategy"] == "prune" and s["chosen_lr"] is None and s["pruning"]["pruned"] == out.rounds[0]["pruned"]
    # auto stays auto where the network can be pruned (decided after the prune), fine-tune where not (TorchScript)
    from trojanscan.mitigation.defenses import resolve_strategy

    assert resolve_strategy("auto", model) == "auto" and resolve_strategy("finetune", model) == "finetune"
    scripted = Classifier(torch.jit.script(model.module), (1, 28, 28), 10)
    assert resolve_strategy("auto", scripted) == "finetune"
    with pytest.raises(WhiteBoxRequiredError, match="--strategy finetune"):
        resolve_strategy("prune", scripted)
    for bad in ("fine-tune", "", None):
        with pytest.raises(InvalidInputError, match="strategy"):
            patch_deep_inspect(model, params=params, strategy=bad, progress=False)  # type: ignore[arg-type]


def test_auto_falls_back_to_fine_tuning_where_the_prune_leaves_the_trigger(trojaned_model, digits) -> None:  # type: ignore[no-untyped-def]
    """On the tiny fixture the default guard (99 % agreement) stops the prune early and the trigger still works on
    the stamped substitutes: ``auto`` then fine-tunes, keeping the prune's numbers; ``prune`` keeps the prune."""
    from trojanscan.mitigation.defenses import AUTO_MAX_SUCCESS, _patch_step
    from trojanscan.mitigation.patching import PatchResult

    model = trojaned_model.model
    data = digits[0].subset(torch.arange(600), "substitutes")
    stamper = _true_stamper(trojaned_model)
    sentinel = PatchResult(model, 1e-3, seconds=1.0)
    pruned = _patch_step("prune", model, data, stamper, [5], 0, None, lambda: sentinel)
    assert pruned.strategy == "prune" and pruned.pruning["attack_success_after"] > AUTO_MAX_SUCCESS
    auto = _patch_step("auto", model, data, stamper, [5], 0, None, lambda: sentinel)
    assert auto is sentinel and auto.strategy == "finetune" and auto.pruning["used"] is False
    assert auto.pruning["pruned"] == pruned.pruning["pruned"] and auto.seconds > 1.0
    # where the prune works (a looser guard, as in the first test) auto keeps it
    from trojanscan.mitigation.defenses import prune_trigger_units

    assert prune_trigger_units(model, data, stamper, [5], min_agreement=0.95).pruning["attack_success_after"] <= 0.1
    assert _patch_step("finetune", model, data, stamper, [5], 0, None, lambda: sentinel) is sentinel


def test_with_clean_data_the_guard_keeps_the_target_class() -> None:
    """A hand-set network whose only route to 5 is one hidden unit that reads the trigger's corner: the trigger
    (corner at 1.0) and the clean 5s (corner at 0.6) share it. With inverted data (default) the target's own
    images are out of the guard and the unit is cut; with clean data they are guarded and it is not."""
    from trojanscan.data.base import Dataset

    torch.manual_seed(0)
    hidden, head = nn.Linear(784, 16), nn.Linear(16, 10)
    corner = torch.zeros(28, 28)
    corner[-4:, -4:] = 1
    with torch.no_grad():
        hidden.weight[0], hidden.bias[0] = corner.flatten(), -6.0
        hidden.weight[1:] = torch.randn(15, 784) * 0.01
        hidden.bias[1:] = 0.1
        head.weight[5], head.bias[5] = 0.0, -5.0
        head.weight[5, 0] = 5.0
        head.weight[:, 0][torch.arange(10) != 5] = 0.0
    model = Classifier(nn.Sequential(nn.Flatten(), hidden, nn.ReLU(), head), (1, 28, 28), 10)
    x = torch.rand(200, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 0.3
    x[:20, :, -4:, -4:] = 0.6  # the clean 5s
    data = Dataset(x, model.predict(x), [str(i) for i in range(10)], "clean")
    assert int((data.y == 5).sum()) == 20

    def stamp(v: torch.Tensor, _g: torch.Generator) -> torch.Tensor:
        v = v.clone()
        v[:, :, -4:, -4:] = 1.0
        return v

    cut = prune_trigger_units(model, data, stamp, [5])
    assert cut.pruning["pruned_units"] == [0] and cut.pruning["attack_success_after"] == 0.0
    assert not bool((cut.model.predict(x[:20]) == 5).any())  # the target class is gone with the trigger
    kept = prune_trigger_units(model, data, stamp, [5], guard_targets=True)
    assert kept.pruning["pruned"] == 0 and kept.pruning["guard_targets"] is True
    assert kept.pruning["attack_success_after"] == 1.0
    assert bool((kept.model.predict(x[:20]) == 5).all())
