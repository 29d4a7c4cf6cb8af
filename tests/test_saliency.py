"""Rectified saliency (NeuronInspect §"Saliency Map Generation"): hand-checked values, TorchScript, fallbacks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from trojanscan.errors import InvalidInputError
from trojanscan.models import Classifier, export_torchscript, load_model
from trojanscan.models.architectures import build_architecture
from trojanscan.saliency import (
    class_gradients,
    jit_optimization_disabled,
    rectified_saliency,
    saliency_maps,
    unfused_classifier,
)

W1 = torch.tensor([[1.0, -1.0], [2.0, 1.0], [-1.0, 3.0]])
W2 = torch.tensor([[1.0, -2.0, 1.0], [-1.0, 1.0, 2.0]])


def toy(head: nn.Module | None = None) -> nn.Module:
    """x (1x1x2 image) -> W1 -> ReLU -> W2 -> 2 logits, no biases."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 3, bias=False), nn.ReLU(), nn.Linear(3, 2, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(W1)
        net[3].weight.copy_(W2)
    return nn.Sequential(net, head) if head is not None else net


def img(a: float, b: float) -> torch.Tensor:
    return torch.tensor([a, b]).view(1, 1, 1, 2)


# By hand: grad_c = W1^T (mask * g_c), with g_c = W2[c] (plain) or max(W2[c], 0) (rectified) and
# mask = (W1 x > 0) for plain and guided; the positive rule drops the mask (grad_c = W1^T max(W2[c], 0)).
# x = (1, 0.5): W1 x = (0.5, 2.5, 0.5), all units on.
#   plain:     c0: (1,-2,1) W1 = (-4, 0)      c1: (-1,1,2) W1 = (-1, 8)
#   guided:    c0: (1, 0,1) W1 = ( 0, 2)      c1: ( 0,1,2) W1 = ( 0, 7)
# x = (0, 1): W1 x = (-1, 1, 3), unit 0 off.
#   plain:     c0: (0,-2,1) W1 = (-5, 1)      c1: (0,1,2) W1 = (0, 7)
#   guided:    c0: (0, 0,1) W1 = (-1, 3)      c1: (0,1,2) W1 = (0, 7)
# positive (any x: the unit that is off still passes its clipped gradient):
#              c0: (1, 0,1) W1 = ( 0, 2)      c1: ( 0,1,2) W1 = ( 0, 7)
POSITIVE = [[0.0, 2.0], [0.0, 7.0]]
HAND = [
    ((1.0, 0.5), [[0.0, 2.0], [0.0, 7.0]], [[-4.0, 0.0], [-1.0, 8.0]]),
    ((0.0, 1.0), [[-1.0, 3.0], [0.0, 7.0]], [[-5.0, 1.0], [0.0, 7.0]]),
]


@pytest.mark.parametrize("method", ["replicated", "batched"])
@pytest.mark.parametrize(("x", "guided", "plain"), HAND)
def test_toy_rectified_gradient_by_hand(
    x: tuple[float, float], guided: list[list[float]], plain: list[list[float]], method: str
) -> None:
    g, info = class_gradients(toy(), img(*x), method=method)  # default rule: positive
    assert g.shape == (2, 1, 1, 1, 2)
    assert torch.equal(g.view(2, 2), torch.tensor(POSITIVE))
    assert info.hooked == {"Relu": 1} and info.calls == 1 and info.complete and info.method == method
    assert info.rule == "positive" and "positive rule" in info.describe()
    gg, infog = class_gradients(toy(), img(*x), method=method, rule="guided")
    assert torch.equal(gg.view(2, 2), torch.tensor(guided))
    assert infog.calls == 1 and infog.rule == "guided" and "guided" in infog.describe()
    g0, info0 = class_gradients(toy(), img(*x), rectify=False, method=method)
    assert torch.equal(g0.view(2, 2), torch.tensor(plain))
    assert not info0.active and info0.n_hooked == 0


def test_positive_rule_reaches_units_that_did_not_fire() -> None:
    # at x=(0,1) unit 0 is off: guided and plain saliency cannot see W1[0]; the positive rule does
    off = class_gradients(toy(), img(0.0, 1.0), classes=[0])[0].view(2)
    on = class_gradients(toy(), img(1.0, 0.5), classes=[0])[0].view(2)
    assert torch.equal(off, on)
    guided = class_gradients(toy(), img(0.0, 1.0), classes=[0], rule="guided")[0].view(2)
    assert not torch.equal(off, guided)


def test_rectification_is_in_the_backward_pass_not_a_clamp_of_the_map() -> None:
    # the guided gradient of class 0 at x=(0,1) has a negative entry (-1): clipping happens at the ReLU
    g, _ = class_gradients(toy(), img(0.0, 1.0), classes=[0], rule="guided")
    assert float(g.min()) == -1.0
    maps, info = rectified_saliency(toy(), img(0.0, 1.0), rule="guided")
    assert torch.equal(maps.view(2, 2), torch.tensor([[1.0, 3.0], [0.0, 7.0]]))  # |grad|, max over the one channel
    assert info.active
    # the positive rule: class 1's clipped hidden gradient (0, 1, 2) through W1, whatever the input
    gp, _ = class_gradients(toy(), img(0.0, 1.0), classes=[1])
    assert torch.equal(gp.view(2), torch.tensor([0.0, 7.0]))


def test_terminal_softmax_is_made_linear() -> None:
    g_logit, _ = class_gradients(toy(), img(1.0, 0.5))
    g_soft, info = class_gradients(toy(nn.Softmax(dim=1)), img(1.0, 0.5))
    assert info.softmax_bypassed
    assert torch.equal(g_soft, g_logit)
    g_log, info2 = class_gradients(toy(nn.LogSoftmax(dim=1)), img(1.0, 0.5), method="batched")
    assert info2.softmax_bypassed and torch.equal(g_log, g_logit)


def test_no_relu_falls_back_to_plain_saliency_and_says_so() -> None:
    lin = nn.Sequential(nn.Flatten(), nn.Linear(2, 3))
    g, info = class_gradients(lin, img(0.3, 0.7))
    assert not info.active and info.n_hooked == 0
    assert "NOT applied" in info.describe()
    assert torch.allclose(g.view(3, 2), lin[1].weight)


def test_relu_like_variants_are_hooked() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4)
            self.c = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu_(self.a(x.flatten(1)))
            h = nn.functional.relu6(self.b(h)) + nn.functional.leaky_relu(h)
            return self.c(nn.ReLU(inplace=True)(h))

    _, info = class_gradients(Net(), torch.rand(3, 1, 2, 2))
    assert info.hooked == {"Relu": 2, "Hardtanh": 1, "LeakyRelu": 1}
    assert info.calls == 4


def test_batched_and_replicated_agree_on_a_cnn() -> None:
    torch.manual_seed(0)
    clf = Classifier(build_architecture("tiny_cnn", (1, 12, 12), 4).eval(), (1, 12, 12), 4, mean=[0.5], std=[0.5])
    x = torch.rand(5, 1, 12, 12)
    a, ia = class_gradients(clf, x, method="batched")
    b, ib = class_gradients(clf, x, method="replicated")
    assert ia.n_hooked == ib.n_hooked == 3 and ia.complete and ib.complete
    assert torch.allclose(a, b, atol=1e-6)
    # a subset of classes gives the same rows
    c, _ = class_gradients(clf, x, classes=[3, 1])
    assert torch.allclose(c, b[[3, 1]], atol=1e-6)
    assert saliency_maps(b).shape == (4, 5, 12, 12)


def test_torchscript_export_gives_the_same_rectified_saliency(tmp_path: Path) -> None:
    torch.manual_seed(0)
    clf = Classifier(build_architecture("tiny_cnn", (1, 12, 12), 4).eval(), (1, 12, 12), 4, mean=[0.5], std=[0.5])
    export_torchscript(clf, tmp_path / "m.pt")
    ts = load_model(tmp_path / "m.pt")
    x = torch.rand(3, 1, 12, 12)
    before = torch._C._get_graph_executor_optimize()
    ref, _ = class_gradients(clf, x)
    got, info = class_gradients(ts, x)
    assert torch._C._get_graph_executor_optimize() == before  # restored
    assert info.hooked == {"Relu": 3} and info.calls == 3 and info.complete
    assert torch.allclose(got, ref, atol=1e-6)


class _Swishy(nn.Module):
    """Elementwise chains the JIT fuses into one opaque DifferentiableGraph node when optimising."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.fc = nn.Linear(3 * 6 * 6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        h = h * torch.sigmoid(h) + h
        return self.fc(torch.relu(h).flatten(1))


def test_fused_torchscript_plan_is_detected_and_an_unfused_copy_rectifies() -> None:
    torch.manual_seed(0)
    eager = _Swishy().eval()
    scripted = torch.jit.script(_Swishy().eval())
    scripted.load_state_dict(eager.state_dict())
    clf = Classifier(scripted, (1, 8, 8), 4)
    for p in clf.parameters():
        p.requires_grad_(False)
    x = torch.rand(2, 1, 8, 8)
    prev = torch._C._get_graph_executor_optimize()
    torch._C._set_graph_executor_optimize(True)
    try:
        for _ in range(3):  # let the profiling executor settle on a fused plan
            clf(x.clone().requires_grad_(True)).sum().backward()
        g, info = class_gradients(clf, x)
        if info.opaque == 0:
            pytest.skip("this torch build did not fuse the graph")
        assert not info.complete and "opaque" in info.describe()
        copy = unfused_classifier(clf)
        assert copy is not None
        g2, info2 = class_gradients(copy, x)
        assert info2.complete and info2.hooked == {"Relu": 2}
        ref, _ = class_gradients(Classifier(eager, (1, 8, 8), 4), x)
        assert torch.allclose(g2, ref, atol=1e-5)
    finally:
        torch._C._set_graph_executor_optimize(prev)
    assert unfused_classifier(Classifier(eager, (1, 8, 8), 4)) is None


def test_jit_switch_is_restored_on_error() -> None:
    prev = torch._C._get_graph_executor_optimize()
    with pytest.raises(RuntimeError), jit_optimization_disabled():
        assert torch._C._get_graph_executor_optimize() is False
        raise RuntimeError("boom")
    assert torch._C._get_graph_executor_optimize() == prev


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(InvalidInputError, match="method"):
        class_gradients(toy(), img(1.0, 1.0), method="vmap")
    with pytest.raises(InvalidInputError, match="rule"):
        class_gradients(toy(), img(1.0, 1.0), rule="deconvnet")
    with pytest.raises(InvalidInputError, match="classes"):
        class_gradients(toy(), img(1.0, 1.0), classes=[2])
    with pytest.raises(InvalidInputError, match="image batch"):
        class_gradients(toy(), torch.rand(2, 2))
    with pytest.raises(InvalidInputError, match="floating"):
        class_gradients(toy(), torch.ones(1, 1, 1, 2, dtype=torch.int64))
