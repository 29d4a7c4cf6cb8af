"""Patching: fine-tuning with triggered inputs that keep their labels removes the backdoor, keeps accuracy."""

from __future__ import annotations

import pytest
import torch

from trojanscan.attacks import trojan_activation_rate
from trojanscan.errors import InvalidInputError
from trojanscan.mitigation import additive_stamper, finetune_with_triggers, mask_stamper
from trojanscan.training import accuracy


def test_finetune_with_the_trigger_removes_the_backdoor(trojaned_model, digits) -> None:  # type: ignore[no-untyped-def]
    tr, te = digits
    atk = trojaned_model.attack
    model = trojaned_model.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stamper = mask_stamper(atk.trigger.mask[None], atk.trigger.pattern[None], [0])
    data = tr.subset(torch.arange(800), "patch data")
    res = finetune_with_triggers(model, data, stamper, stamp_fraction=0.2, epochs=3, lrs=(1e-3, 3e-3), seed=0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "input model modified"
    assert set(res.candidates) == {1e-3, 3e-3} and res.lr in res.candidates
    tar_before = trojan_activation_rate(model, te, atk.trigger, atk.labels)
    tar_after = trojan_activation_rate(res.model, te, atk.trigger, atk.labels)
    assert tar_before > 0.95 and tar_after < 0.2
    assert accuracy(res.model, te) > accuracy(model, te) - 0.05


def test_stampers_and_bad_parameters(trojaned_model, digits) -> None:  # type: ignore[no-untyped-def]
    x = torch.zeros(4, 1, 28, 28)
    g = torch.Generator().manual_seed(0)
    add = additive_stamper(lambda t, gen: torch.full((t.shape[0], 1, 28, 28), 0.5), [3])
    assert torch.all(add(x, g) == 0.5)
    with pytest.raises(InvalidInputError, match="nothing"):
        additive_stamper(lambda t, gen: t, [])
    data = digits[0].subset(torch.arange(50), "d")
    st = mask_stamper(torch.ones(1, 28, 28), torch.ones(1, 1, 28, 28), [0])
    for kw, msg in (({"stamp_fraction": 0.0}, "stamp_fraction"), ({"holdout_fraction": 1.0}, "holdout"),
                    ({"lrs": (-1.0,)}, "lrs"), ({"distill": -1.0}, "distill"), ({"mixup_distill": float("nan")}, "mixup"),
                    ({"noise": float("inf")}, "noise"), ({"anchor": -0.1}, "anchor")):
        with pytest.raises(InvalidInputError, match=msg):
            finetune_with_triggers(trojaned_model.model, data, st, **kw)  # type: ignore[arg-type]


def test_tied_holdout_scores_pick_the_larger_learning_rate(clean_model, digits) -> None:  # type: ignore[no-untyped-def]
    # learning rates too small to change any prediction: both held-out scores tie, and the larger rate wins
    data = digits[0].subset(torch.arange(200), "patch data")
    stamper = additive_stamper(lambda t, g: torch.zeros(t.shape[0], 1, 28, 28), [0])
    res = finetune_with_triggers(clean_model.model, data, stamper, epochs=1, lrs=(2e-12, 1e-12), seed=0)
    s = res.candidates
    assert s[1e-12] == s[2e-12]
    assert res.lr == 2e-12


def test_without_distillation_it_is_the_papers_plain_fine_tuning(trojaned_model, digits) -> None:  # type: ignore[no-untyped-def]
    """distill = mixup_distill = noise = 0: cross-entropy on the substitutes, a share stamped, labels kept."""
    import copy

    from trojanscan.training import TrainConfig, train

    atk = trojaned_model.attack
    stamper = mask_stamper(atk.trigger.mask[None], atk.trigger.pattern[None], [0])
    data = digits[0].subset(torch.arange(300), "patch data")
    res = finetune_with_triggers(trojaned_model.model, data, stamper, epochs=2, lrs=(1e-3,), seed=4,
                                 distill=0, mixup_distill=0, noise=0)
    g = torch.Generator().manual_seed(4)
    perm = torch.randperm(len(data), generator=g)
    fit = data.subset(perm[30:], "fit")

    def transform(x, y, idx, gen):  # type: ignore[no-untyped-def]
        sel = torch.rand(x.shape[0], generator=gen) < 0.15
        x = x.clone()
        if bool(sel.any()):
            x[sel] = stamper(x[sel], gen)
        return x, y

    ref = copy.deepcopy(trojaned_model.model)
    train(ref, fit, TrainConfig(epochs=2, batch_size=32, lr=1e-3), seed=4, batch_transform=transform, progress=False,
          log=None)
    for k, v in ref.state_dict().items():
        assert torch.allclose(v, res.model.state_dict()[k], atol=1e-6), k


def test_distillation_keeps_the_patched_model_closer_to_the_original(trojaned_model, digits) -> None:  # type: ignore[no-untyped-def]
    tr, te = digits
    atk = trojaned_model.attack
    model = trojaned_model.model
    stamper = mask_stamper(atk.trigger.mask[None], atk.trigger.pattern[None], [0])
    data = tr.subset(torch.arange(100), "few substitutes")
    ref = model.predict(te.x)
    keep = te.y != 5
    agree = {}
    for d in (0.0, 1.0):
        res = finetune_with_triggers(model, data, stamper, epochs=4, lrs=(3e-3,), seed=0, distill=d, mixup_distill=d,
                                     noise=0.1 * d)
        agree[d] = float((res.model.predict(te.x)[keep] == ref[keep]).float().mean())
    assert agree[1.0] > agree[0.0], agree


def test_anchor_keeps_the_weights_nearer_the_original(trojaned_model, digits) -> None:  # type: ignore[no-untyped-def]
    """L2-SP: with ``anchor`` > 0 the fine-tuned weights move less from the original ones."""
    atk = trojaned_model.attack
    model = trojaned_model.model
    stamper = mask_stamper(atk.trigger.mask[None], atk.trigger.pattern[None], [0])
    data = digits[0].subset(torch.arange(100), "few substitutes")
    w0 = torch.cat([p.detach().flatten() for p in model.parameters()])
    moved = {}
    for a in (0.0, 1.0):
        res = finetune_with_triggers(model, data, stamper, epochs=2, lrs=(3e-3,), seed=0, anchor=a)
        moved[a] = float((torch.cat([p.detach().flatten() for p in res.model.parameters()]) - w0).norm())
    assert 0 < moved[1.0] < moved[0.0], moved


def test_teacher_is_the_reference_of_the_held_out_agreement(trojaned_model, clean_model, digits) -> None:  # type: ignore[no-untyped-def]
    """A later patching round distils towards the original model: ``teacher`` replaces the model as reference."""
    atk = trojaned_model.attack
    # every image stamped with the real trigger: the trojaned model says 5, the clean teacher the true digit
    data = digits[0].subset(torch.arange(200), "stamped")
    data = type(data)(atk.trigger.stamp(data.x), data.y, data.class_names, "stamped")
    st = additive_stamper(lambda t, g: torch.zeros(t.shape[0], 1, 28, 28), [5])
    own = finetune_with_triggers(trojaned_model.model, data, st, epochs=1, lrs=(1e-12,), seed=0)
    other = finetune_with_triggers(trojaned_model.model, data, st, epochs=1, lrs=(1e-12,), seed=0,
                                   teacher=clean_model.model)
    assert own.candidates[1e-12]["clean_agreement"] == 1.0
    assert other.candidates[1e-12]["clean_agreement"] < 0.5


def test_patching_in_rounds_stops_once_the_target_is_gone(trojaned_model) -> None:  # type: ignore[no-untyped-def]
    """rounds > 1: rescan after every fine-tune; go on only while a first-scan target is still flagged."""
    from trojanscan.mitigation.defenses import patch_deep_inspect

    model = trojaned_model.model
    w0 = {k: v.clone() for k, v in model.state_dict().items()}
    # a low cutoff so that the tiny fixture's scans flag labels (its df sits near 2, docs/methods/deep_inspect.md)
    params = {"inversion_steps": 20, "steps": 60, "n_samples": 4, "n_attack": 10, "n_repeats": 1, "cutoff": 0.5}
    out = patch_deep_inspect(model, params=params, n_per_class=6, epochs=1, rounds=3, strategy="finetune",
                             progress=False)
    assert all(torch.equal(w0[k], v) for k, v in model.state_dict().items()), "input model modified"
    targets = set(out.before.suspects)
    assert targets and 1 <= len(out.rounds) <= 3
    for r in out.rounds[:-1]:  # every round but the last left a target flagged
        assert set(r["suspects"]) & targets
    if len(out.rounds) < 3:
        assert not set(out.rounds[-1]["suspects"]) & targets
    assert out.rounds[-1]["suspects"] == out.after.suspects
    assert out.rounds[-1]["anomaly_index"] == out.after.anomaly_index
    assert out.summary()["rounds"] == out.rounds and out.patch.seconds >= sum(r["seconds"] for r in out.rounds) - 1e-9
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InvalidInputError, match="rounds"):
            patch_deep_inspect(model, params=params, rounds=bad, progress=False)  # type: ignore[arg-type]
