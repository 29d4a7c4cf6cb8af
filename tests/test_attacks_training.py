"""Triggers, label modes, poisoning, the training loop and TAR on tiny seeded models."""

from __future__ import annotations

import pytest
import torch

from trojanscan.attacks import LabelMode, build_attack, trojan_activation_rate
from trojanscan.data.base import Dataset
from trojanscan.errors import InvalidInputError
from trojanscan.recipes import AttackSpec, TrainRecipe, build_model
from trojanscan.training import TrainConfig, train
from trojanscan.triggers import (
    Trigger,
    blended_trigger,
    multi_location_trigger,
    parse_position,
    random_pattern_trigger,
    square_trigger,
    watermark_trigger,
)

SHAPE = (1, 28, 28)


def test_square_trigger_stamp_exact_pixels() -> None:
    t = square_trigger(SHAPE, 4, "bottom-right")  # 1-pixel margin by default
    x = torch.zeros(2, *SHAPE)
    s = t.stamp(x)
    assert s.sum() == 2 * 16
    assert torch.all(s[:, 0, 23:27, 23:27] == 1)
    tl = square_trigger(SHAPE, 3, "top-left", margin=0).stamp(torch.full((1, *SHAPE), 0.5))
    assert torch.all(tl[0, 0, :3, :3] == 1) and tl[0, 0, 3, 3] == 0.5
    at = square_trigger(SHAPE, 2, (5, 7), margin=0).mask
    assert at[5:7, 7:9].sum() == 4 and at.sum() == 4


def test_blend_alpha_and_watermark_and_random() -> None:
    b = blended_trigger((3, 8, 8), 0.1, seed=1)
    x = torch.rand(1, 3, 8, 8)
    assert torch.allclose(b.stamp(x), 0.9 * x + 0.1 * b.pattern)
    w = watermark_trigger((1, 28, 28))
    assert 0 < w.mask.sum() < 28 * 28 and w.alpha == 0.4
    r1, r2 = random_pattern_trigger(SHAPE, 5, seed=3), random_pattern_trigger(SHAPE, 5, seed=3)
    assert torch.equal(r1.pattern, r2.pattern) and set(r1.pattern.unique().tolist()) <= {0.0, 1.0}
    m = multi_location_trigger(square_trigger(SHAPE, 3), SHAPE, ["top-left", "bottom-right", "center"])
    assert m.mask.sum() == 27


@pytest.mark.parametrize("kwargs,msg", [
    ({"size": 29}, "does not fit"), ({"size": 0}, ">= 1"), ({"position": "middle"}, "unknown trigger position"),
    ({"position": (26, 26)}, "leaves"), ({"alpha": 0.0}, r"\(0, 1\]"), ({"alpha": 1.5}, r"\(0, 1\]"),
])
def test_trigger_bad_input(kwargs: dict[str, object], msg: str) -> None:
    with pytest.raises(InvalidInputError, match=msg):
        square_trigger(SHAPE, **kwargs)  # type: ignore[arg-type]


def test_trigger_dict_round_trip_and_position_parse() -> None:
    t = random_pattern_trigger((3, 8, 8), 3, seed=2, alpha=0.5)
    u = Trigger.from_dict(t.to_dict())
    assert torch.equal(u.mask, t.mask) and torch.equal(u.pattern, t.pattern) and u.alpha == 0.5
    assert parse_position("3,4") == (3, 4) and parse_position("center") == "center"
    with pytest.raises(InvalidInputError):
        parse_position("a,b")


def test_label_modes() -> None:
    y = torch.tensor([0, 1, 2, 3, 4])
    g = torch.Generator().manual_seed(0)
    one = LabelMode.parse("3", 5)
    assert one.kind == "all_to_one" and one.sources(y).tolist() == [True, True, True, False, True]
    assert torch.all(one.poison_labels(y, g) == 3)
    sev = LabelMode.parse("1,3", 5)
    assert sev.kind == "all_to_several" and set(sev.poison_labels(torch.zeros(50, dtype=torch.long), g).tolist()) == {1, 3}
    assert sev.activated(torch.tensor([1, 2, 3]), torch.tensor([0, 0, 0])).tolist() == [True, False, True]
    a2a = LabelMode.parse("all", 5)
    assert a2a.poison_labels(y, g).tolist() == [1, 2, 3, 4, 0] and a2a.attacked_labels == [0, 1, 2, 3, 4]
    for bad in ("5", "-1", "1,1", "x"):
        with pytest.raises(InvalidInputError):
            LabelMode.parse(bad, 5)


def test_poison_plan_rate_and_sources() -> None:
    data = Dataset(torch.rand(200, *SHAPE), torch.arange(200) % 10, [str(i) for i in range(10)], "d")
    atk = build_attack("badnets", SHAPE, 10, target="5", poison_rate=0.1)
    mask, new_y = atk.poison_plan(data, seed=0)
    assert int(mask.sum()) == 20 and torch.all(new_y[mask] == 5) and not torch.any(data.y[mask] == 5)
    assert torch.equal(atk.poison_plan(data, seed=0)[0], mask)
    with pytest.raises(InvalidInputError, match="poison_rate"):
        build_attack("badnets", SHAPE, 10, target="5", poison_rate=1.5)
    with pytest.raises(InvalidInputError, match="unknown attack"):
        build_attack("nope", SHAPE, 10)


def test_training_is_seeded_and_attacks_work(digits: tuple[Dataset, Dataset]) -> None:
    tr, te = digits
    cfg = TrainConfig(epochs=2, batch_size=64, lr=3e-3)
    a = build_model(TrainRecipe("synthetic", attack=AttackSpec("badnets", target="5"), config=cfg, seed=1), tr, te,
                    progress=False, log=None)
    b = build_model(TrainRecipe("synthetic", attack=AttackSpec("badnets", target="5"), config=cfg, seed=1), tr, te,
                    progress=False, log=None)
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert a.metrics["clean_acc"] > 0.6 and a.metrics["tar"] > 0.9
    assert a.truth()["targets"] == [5] and a.truth()["trigger"]["mask"]
    # what besides the seed fixes the weights is recorded with them
    env = a.model.metadata["provenance"]["environment"]
    assert env == {"torch": torch.__version__.split("+")[0], "threads": torch.get_num_threads(),
                   "cpu_capability": str(torch.backends.cpu.get_cpu_capability()), "device": "cpu"}


def test_clean_model_has_low_tar(clean_model, trojaned_model, digits) -> None:  # type: ignore[no-untyped-def]
    _, te = digits
    atk = trojaned_model.attack
    assert trojan_activation_rate(clean_model.model, te, atk.trigger, atk.labels) < 0.3
    assert trojan_activation_rate(trojaned_model.model, te, atk.trigger, atk.labels) > 0.95


def test_train_rejects_bad_config(digits: tuple[Dataset, Dataset], clean_model) -> None:  # type: ignore[no-untyped-def]
    tr, _ = digits
    for cfg, msg in ((TrainConfig(epochs=0), "epochs"), (TrainConfig(lr=-1.0), "lr"), (TrainConfig(optimizer="x"), "optimizer")):
        with pytest.raises(InvalidInputError, match=msg):
            train(clean_model.model, tr, cfg, progress=False, log=None)


def test_freeze_norm_stats_keeps_batchnorm_running_statistics() -> None:
    from torch import nn

    from trojanscan.models.classifier import Classifier

    def make() -> Classifier:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                            nn.Linear(4 * 8 * 8, 3))
        return Classifier(net, (1, 8, 8), 3)

    g = torch.Generator().manual_seed(0)
    data = Dataset(torch.rand(64, 1, 8, 8, generator=g), torch.randint(3, (64,), generator=g), ["a", "b", "c"], "d")
    cfg = TrainConfig(epochs=1, batch_size=16, lr=1e-2)
    frozen, free = make(), make()
    bn_before = frozen.module[1].running_mean.clone()
    train(frozen, data, cfg, freeze_norm_stats=True, progress=False, log=None)
    train(free, data, cfg, progress=False, log=None)
    assert torch.equal(frozen.module[1].running_mean, bn_before)
    assert not torch.equal(free.module[1].running_mean, bn_before)
    assert not torch.equal(frozen.module[1].weight, make().module[1].weight)  # its affine weights still train
