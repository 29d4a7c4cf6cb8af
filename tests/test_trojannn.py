"""TrojanNN: neuron selection by signed connectivity, trigger generation, restricted and full retraining."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trojanscan.attacks.trojannn import _hidden_linear, _select_neurons, trojannn_attack
from trojanscan.errors import InvalidInputError
from trojanscan.models.classifier import Classifier
from trojanscan.recipes import AttackSpec, BuiltModel, make_attack


def _attack(shape: tuple[int, int, int] = (1, 28, 28)):  # type: ignore[no-untyped-def]
    return make_attack(AttackSpec("trojannn", target="5", trigger_size=6), shape, 10, 0)


def test_neuron_selection_uses_the_sign_of_the_connection() -> None:
    """A neuron the trigger region can only silence must not be chosen, however strong the connection."""
    shape = (1, 8, 8)
    lin = nn.Linear(64, 3, bias=False)
    mask = torch.zeros(8, 8)
    mask[6:, 6:] = 1
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[0] = 0.1 * mask.flatten()  # weakly excited by the region
        lin.weight[1] = -5.0 * mask.flatten()  # strongly silenced by it
        lin.weight[2, :8] = 1.0  # connected elsewhere only
    model = Classifier(nn.Sequential(nn.Flatten(), lin, nn.ReLU(), nn.Linear(3, 2)), shape, 2)
    acts: dict[str, torch.Tensor] = {}
    h = lin.register_forward_hook(lambda _m, _i, o: acts.__setitem__("a", o))
    try:
        chosen = _select_neurons(model, acts, mask, 1, torch.Generator().manual_seed(0))
    finally:
        h.remove()
    assert chosen.tolist() == [0]


def test_needs_two_dense_layers() -> None:
    model = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), (1, 28, 28), 10)
    with pytest.raises(InvalidInputError, match="two fully connected"):
        trojannn_attack(model, _attack(), progress=False, log=None)


def test_bad_retrain_mode(clean_model: BuiltModel) -> None:
    with pytest.raises(InvalidInputError, match="retrain must be one of"):
        trojannn_attack(clean_model.model, _attack(), retrain="all", progress=False, log=None)


def _copy(built: BuiltModel) -> Classifier:
    import copy

    return copy.deepcopy(built.model)


def test_selected_retrain_changes_only_the_chosen_columns(clean_model: BuiltModel) -> None:
    model = _copy(clean_model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _, nxt, _ = _hidden_linear(model)
    out = trojannn_attack(model, _attack(), retrain="selected", n_per_class=4, trigger_steps=20, epochs=1,
                          lr=1e-2, progress=False, log=None)
    neurons = out.params["neurons"]
    after = model.state_dict()
    name_w = next(k for k, v in model.named_parameters() if v is nxt.weight)
    for k, v in after.items():
        if k == name_w:
            others = [j for j in range(v.shape[1]) if j not in neurons]
            assert torch.equal(v[:, others], before[k][:, others])
            assert not torch.equal(v[:, neurons], before[k][:, neurons])
        elif k != name_w.replace("weight", "bias"):
            assert torch.equal(v, before[k]), k
    assert out.params["retrain"] == "selected" and len(out.params["reached_activation"]) == 2
    # the trigger lives inside its mask and the model's parameters are trainable again
    assert torch.all(out.trigger.pattern[:, out.trigger.mask == 0] == 0)
    assert all(p.requires_grad for p in model.parameters())


def test_after_retrain_leaves_the_features_alone(clean_model: BuiltModel) -> None:
    model = _copy(clean_model)
    layer, _, after = _hidden_linear(model)
    frozen = {n: p.clone() for n, p in model.named_parameters()
              if not any(p is q for q in after)}
    out = trojannn_attack(model, _attack(), n_per_class=4, trigger_steps=20, epochs=1, distill=1.0, mixup_distill=1.0,
                          noise=0.1, progress=False, log=None)
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    assert out.params["retrain"] == "after" and out.trigger.name.startswith("trojannn")


@pytest.mark.parametrize("kw", [{"distill": -1.0}, {"mixup_distill": float("nan")}, {"noise": float("inf")},
                                {"poison_fraction": 0.0}, {"poison_fraction": 1.0}, {"distill": "1"}])
def test_bad_retraining_weights_are_refused_before_any_work(clean_model: BuiltModel, kw: dict) -> None:
    model = _copy(clean_model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InvalidInputError, match=next(iter(kw))):
        trojannn_attack(model, _attack(), progress=False, log=None, **kw)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_distiller_is_zero_on_the_teacher_and_positive_after_drift(clean_model: BuiltModel) -> None:
    from trojanscan.training import Distiller

    model = _copy(clean_model)
    d = Distiller(model)
    x = torch.rand((8, *model.input_shape), generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        assert float(d.kl(model(x), x)) == pytest.approx(0.0, abs=1e-6)
        assert float(d.mixup_kl(model, x, g)) == pytest.approx(0.0, abs=1e-6)
        next(p for p in model.parameters() if p.dim() > 1).add_(0.5)
        assert float(d.kl(model(x), x)) > 1e-4
    # the teacher is a frozen copy: changing the student did not change it
    assert all(not p.requires_grad for p in d.teacher.parameters())
