"""Neural Cleanse: parametrisation, optimiser, cost schedule (hand-checked), margin, batched == unbatched, bad params."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trojanscan.detectors import get_detector, list_detectors
from trojanscan.detectors.neural_cleanse import EPSILON, CostSchedule, KerasAdam, NeuralCleanse, tanh_to_unit, unit_to_tanh
from trojanscan.errors import InvalidInputError
from trojanscan.models.classifier import Classifier

# small settings for the fixture models (the defaults are sized for MNIST; see docs/methods/neural_cleanse.md)
FAST = {"epochs": 30, "steps_per_epoch": 10, "patience": 3, "early_stop_patience": 6}


# ----------------------------------------------------------------------------- parametrisation
def test_tanh_parametrisation_hand_values() -> None:
    w = torch.tensor([0.0, math.atanh(0.5), -math.atanh(0.5), 30.0, -30.0], dtype=torch.float64)
    got = tanh_to_unit(w)
    half = 0.5 / (2 - EPSILON)  # tanh(atanh(0.5)) / (2 - eps)
    expect = torch.tensor([0.5, 0.5 + half, 0.5 - half, 0.5 + 1 / (2 - EPSILON), 0.5 - 1 / (2 - EPSILON)], dtype=torch.float64)
    torch.testing.assert_close(got, expect, rtol=0, atol=1e-15)
    assert abs(float(got[1]) - 0.7500000125) < 1e-12  # 0.25 * (1 + 5e-8)
    # the range is [0, 1] up to eps / 4 at the saturated ends, and the inverse round-trips
    assert float(got.min()) > -EPSILON and float(got.max()) < 1 + EPSILON
    x = torch.tensor([0.01, 0.25, 0.5, 0.9, 0.99], dtype=torch.float64)
    torch.testing.assert_close(tanh_to_unit(unit_to_tanh(x)), x)


def test_keras_adam_matches_torch_adam_without_eps_and_skips_other_rows() -> None:
    g = torch.Generator().manual_seed(0)
    p0 = torch.randn(3, 4, generator=g, dtype=torch.float64)
    grads = [torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(4)]
    ours = p0.clone()
    opt = KerasAdam([ours], lr=0.1, betas=(0.5, 0.9), eps=0.0)
    ref = p0.clone().requires_grad_(True)
    topt = torch.optim.Adam([ref], lr=0.1, betas=(0.5, 0.9), eps=0.0)
    rows = torch.tensor([0, 2])
    for gr in grads:
        opt.step(rows, [gr[rows]])
        ref.grad = gr.clone()
        topt.step()
    torch.testing.assert_close(ours[rows], ref.detach()[rows])
    torch.testing.assert_close(ours[1], p0[1])  # a row not stepped keeps its value


# ----------------------------------------------------------------------------- cost schedule
def _sched(n: int = 1, **kw: float) -> CostSchedule:
    args: dict[str, float] = {"init_cost": 1.0, "threshold": 0.99, "patience": 2, "multiplier": 2.0, "cost_max": 1e3,
                              "early_stop_threshold": 0.99, "early_stop_patience": 2}
    args.update(kw)
    return CostSchedule(n, **args)  # type: ignore[arg-type]


def test_cost_schedule_hand_checked_sequence() -> None:
    """patience 2, multiplier 2 (down 2**1.5), init_cost 1, early-stop patience 2, traced by hand from visualizer.py."""
    s = _sched()
    seq = [  # (acc, reg) -> (new best, cost after the epoch, stopped)
        ((1.0, 10.0), (True, 0.0, False)),  # success 1/2 with cost 0; first best
        ((1.0, 9.0), (True, 1.0, False)),  # success 2/2: cost set to init_cost; up counter restarts at 1
        ((1.0, 9.0), (False, 2.0, False)),  # no gain (9 >= .99*9): es counter 1; up counter 2 -> cost * 2
        ((0.5, 5.0), (False, 2.0, False)),  # failure: not a best (acc < thr); es counter 2 but no down yet
        ((0.5, 5.0), (False, 2.0 / 2**1.5, False)),  # second failure: cost / 2**1.5
        ((1.0, 8.95), (True, 2.0 / 2**1.5, True)),  # best 8.95 (< 1 % gain): es 4 >= 2, up and down seen: stop
        ((1.0, 1.0), (False, 2.0 / 2**1.5, True)),  # a stopped label is frozen
    ]
    for i, ((acc, reg), (best, cost, stopped)) in enumerate(seq):
        nb = s.step(torch.tensor([acc]), torch.tensor([reg], dtype=torch.float64))
        assert bool(nb[0]) is best, i
        assert float(s.cost[0]) == pytest.approx(cost), i
        assert bool(s.stopped[0]) is stopped, i
    assert float(s.reg_best[0]) == 8.95
    assert int(s.epochs[0]) == 6


def test_cost_schedule_no_set_without_patience_and_ceiling() -> None:
    s = _sched()
    for acc in (1.0, 0.0, 1.0, 0.0):  # never two successes in a row: the cost stays 0
        s.step(torch.tensor([acc]), torch.tensor([5.0]))
    assert float(s.cost[0]) == 0.0
    s = _sched(cost_max=3.0)
    for _ in range(20):  # keeps succeeding: 1 -> 2 -> 3 (capped) and stays there
        s.step(torch.tensor([1.0]), torch.tensor([5.0]))
    assert float(s.cost[0]) == 3.0
    assert not bool(s.stopped[0])  # never went down, so never early-stops (as the original)


def test_cost_schedule_vectorised_equals_one_label_at_a_time() -> None:
    g = torch.Generator().manual_seed(3)
    acc = (torch.rand(40, 3, generator=g) > 0.3).double()
    reg = 20 - torch.arange(40).double().unsqueeze(1) * torch.rand(40, 3, generator=g, dtype=torch.float64) * 0.3
    together = _sched(3)
    alone = [_sched(1) for _ in range(3)]
    for e in range(40):
        nb = together.step(acc[e], reg[e])
        for j in range(3):
            assert bool(alone[j].step(acc[e, j : j + 1], reg[e, j : j + 1])[0]) == bool(nb[j])
    for j in range(3):
        for f in ("cost", "reg_best", "stopped", "epochs", "up_flag", "down_flag"):
            assert torch.equal(getattr(together, f)[j : j + 1], getattr(alone[j], f)), f


# ----------------------------------------------------------------------------- scans
def test_registered() -> None:
    assert "neural_cleanse" in list_detectors()
    assert isinstance(get_detector("neural_cleanse"), NeuralCleanse)


def test_margin_trojaned_flagged_clean_not(trojaned_model, clean_model, digits) -> None:  # type: ignore[no-untyped-def]
    x = digits[1].x[:100]
    det = NeuralCleanse(**FAST)
    rt = det.scan(trojaned_model.model, x, seed=0, progress=False)
    rc = det.scan(clean_model.model, x, seed=0, progress=False)
    assert rt.suspects == [5], [c.statistic for c in rt.classes]
    assert rc.suspects == [], [c.statistic for c in rc.classes]
    assert rt.anomaly_index > rc.anomaly_index
    assert rt.data.source == "clean_data" and rt.data.n_images == 100
    c5 = rt.classes[5]
    assert c5.statistic == pytest.approx(c5.extra["mask_l1"])
    assert c5.extra["attack_success"] >= 0.9 and c5.extra["reached_threshold"] == 1.0
    masks, patterns = det.artifacts_["masks"], det.artifacts_["patterns"]
    assert masks.shape == (10, 28, 28) and patterns.shape == (10, 1, 28, 28)
    assert masks.dtype == torch.float32 and patterns.dtype == torch.float32
    # artifacts_ hold the last scan's (the clean model's) triggers; the statistic is their mask L1
    torch.testing.assert_close(masks.abs().sum((1, 2)), torch.tensor([c.statistic for c in rc.classes]).float())


def test_batched_and_unbatched_agree(trojaned_model, digits) -> None:  # type: ignore[no-untyped-def]
    x = digits[1].x[:64]
    kw = {**FAST, "epochs": 8, "steps_per_epoch": 5}
    rb = NeuralCleanse(batched=True, **kw).scan(trojaned_model.model, x, seed=1, progress=False)
    ru = NeuralCleanse(batched=False, **kw).scan(trojaned_model.model, x, seed=1, progress=False)
    sb = torch.tensor([c.statistic for c in rb.classes])
    su = torch.tensor([c.statistic for c in ru.classes])
    torch.testing.assert_close(sb, su, rtol=1e-2, atol=1e-2)  # same problem; only the float grouping differs
    assert int(sb.argmin()) == int(su.argmin()) == 5
    assert rb.suspects == ru.suspects
    assert rb.model_queries == ru.model_queries


def test_batched_groups_of_labels_match_all_at_once(trojaned_model, digits) -> None:  # type: ignore[no-untyped-def]
    x = digits[1].x[:32]
    kw = {"epochs": 2, "steps_per_epoch": 2, "batch_size": 16}
    ra = NeuralCleanse(**kw).scan(trojaned_model.model, x, progress=False)
    rg = NeuralCleanse(max_images_per_pass=48, **kw).scan(trojaned_model.model, x, progress=False)  # 3 labels a pass
    torch.testing.assert_close(torch.tensor([c.statistic for c in ra.classes]),
                               torch.tensor([c.statistic for c in rg.classes]), rtol=1e-4, atol=1e-3)


class _AlwaysZero(nn.Module):
    """Predicts class 0 for every input (zero input gradient): only label 0 can ever reach the threshold."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 3)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.bias.copy_(torch.tensor([5.0, 0.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def test_unreached_labels_fall_back_to_final_mask_and_cost_is_capped() -> None:
    model = Classifier(_AlwaysZero(), (1, 4, 4), 3)
    x = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    det = NeuralCleanse(epochs=6, steps_per_epoch=2, batch_size=4, patience=1, cost_max=2e-3)
    rep = det.scan(model, x, seed=0, progress=False)
    reached = [c.extra["reached_threshold"] for c in rep.classes]
    assert reached == [1.0, 0.0, 0.0]
    assert [c.extra["attack_success"] for c in rep.classes] == [1.0, 0.0, 0.0]
    assert any("never reached" in n and "[1, 2]" in n for n in rep.notes)
    assert rep.classes[0].extra["final_cost"] == pytest.approx(2e-3)  # 1e-3 -> 1.5e-3 -> capped at 2e-3
    assert rep.classes[1].extra["final_cost"] == 0.0
    # labels 1, 2 had no gradient and cost 0: their final mask is the random initial one, L1 about 16/2
    for c in rep.classes[1:]:
        assert 2.0 < c.statistic < 14.0
    assert rep.classes[0].statistic < min(c.statistic for c in rep.classes[1:])


def test_data_free_uses_model_inversion(clean_model) -> None:  # type: ignore[no-untyped-def]
    det = NeuralCleanse(epochs=1, steps_per_epoch=1, inversion_per_class=1)
    rep = det.scan(clean_model.model, None, seed=0, progress=False)
    assert rep.data.source == "model_inversion" and rep.data.n_images == 10
    assert any("model-inversion" in n for n in rep.notes)


def test_same_seed_same_statistics(trojaned_model, digits) -> None:  # type: ignore[no-untyped-def]
    x = digits[1].x[:32]
    kw = {"epochs": 2, "steps_per_epoch": 2}
    a = NeuralCleanse(**kw).scan(trojaned_model.model, x, seed=3, progress=False)
    b = NeuralCleanse(**kw).scan(trojaned_model.model, x, seed=3, progress=False)
    assert [c.statistic for c in a.classes] == [c.statistic for c in b.classes]


# ----------------------------------------------------------------------------- bad hyperparameters
@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("lr", -0.1), ("lr", 0.0), ("init_cost", 0.0), ("init_cost", float("nan")),
        ("attack_succ_threshold", 0.0), ("attack_succ_threshold", 1.5), ("attack_succ_threshold", -0.2),
        ("epochs", 0), ("epochs", 2.5), ("steps_per_epoch", 0), ("batch_size", 0), ("batch_size", True),
        ("patience", 0), ("early_stop_patience", -1), ("cost_multiplier", 1.0), ("cost_max", 1e-9),
        ("cost_max", float("inf")), ("betas", (0.5,)), ("betas", (1.0, 0.9)), ("early_stop_threshold", 0.0),
        ("early_stop", "yes"), ("batched", 1), ("max_images_per_pass", 0), ("inversion_per_class", 0),
    ],
)
def test_bad_hyperparameters_raise_naming_the_parameter(param: str, value: object) -> None:
    model = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), (1, 4, 4), 3)
    with pytest.raises(InvalidInputError, match=f"'{param}'"):
        NeuralCleanse(**{param: value}).scan(model, torch.rand(4, 1, 4, 4), progress=False)  # type: ignore[arg-type]


def test_constructor_stores_only() -> None:
    det = NeuralCleanse(lr=-5.0)  # no validation in __init__
    assert det.get_params()["lr"] == -5.0
    assert "cutoff" in det.get_params() and det.get_params()["alpha"] is None
