"""Conformance suite: the same checks over every registered detector (scikit-learn's parametrize_with_checks idea).

Each detector runs here with small step counts (``FAST``) so the suite stays quick; the detectors'
own test files cover their defaults.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import pytest
import torch

from trojanscan import stats
from trojanscan.data.base import Dataset
from trojanscan.detectors import detector_class, get_detector, list_detectors
from trojanscan.errors import InvalidInputError, WhiteBoxRequiredError
from trojanscan.report import ScanReport

FAST: dict[str, dict[str, Any]] = {
    "neural_cleanse": {"epochs": 16, "steps_per_epoch": 6, "patience": 2, "early_stop_patience": 4},
    "neuron_inspect": {"n_images": 20},
    "deep_inspect": {"inversion_steps": 20, "steps": 60, "n_samples": 4, "n_attack": 10, "n_repeats": 1},
}

DETECTORS = list_detectors()


#: Fewer Neural Cleanse epochs for the tests that check mechanics (reproducibility, round trips, equal reports),
#: not detection; test_trojaned_scores_above_clean_twin keeps FAST.
MECHANICS: dict[str, dict[str, Any]] = {"neural_cleanse": {"epochs": 4}}


#: The re-decision tests run two DeepInspect generators, so its per-generator note's re-derivation is checked too.
REDECIDE: dict[str, dict[str, Any]] = {"deep_inspect": {"n_repeats": 2}}


def _fast(name: str, *, detects: bool = False, redecide: bool = False) -> dict[str, Any]:
    params = {**FAST.get(name, {}), **({} if detects else MECHANICS.get(name, {})),
              **(REDECIDE.get(name, {}) if redecide else {})}
    accepted = set(inspect.signature(detector_class(name).__init__).parameters)
    return {k: v for k, v in params.items() if k in accepted}


def _clean_data(digits: tuple[Dataset, Dataset], n: int = 120) -> Dataset:
    return digits[1].subset(torch.arange(n), "clean sample")


def _comparable(r: ScanReport) -> dict[str, Any]:
    d = r.to_dict()
    d.pop("runtime_s")
    return d


def test_registry_has_the_three_methods() -> None:
    assert {"neural_cleanse", "neuron_inspect", "deep_inspect"} <= set(DETECTORS)


@pytest.mark.parametrize("name", DETECTORS)
def test_default_construction_stores_only(name: str) -> None:
    det = get_detector(name)
    params = det.get_params()
    sig = inspect.signature(type(det).__init__)
    assert set(params) == {p for p in sig.parameters if p != "self"}
    for p in sig.parameters.values():
        if p.name != "self":
            assert p.default is not inspect.Parameter.empty, f"{name}.{p.name} has no default"
            assert params[p.name] == p.default
    assert {"cutoff", "alpha", "familywise"} <= set(params)
    assert type(det).__name__ in repr(det)
    with pytest.raises(TypeError):
        type(det)(no_such_parameter=1)


@pytest.mark.parametrize("name", DETECTORS)
@pytest.mark.parametrize("bad", [{"cutoff": -1.0}, {"cutoff": float("nan")}, {"alpha": 0.0}, {"alpha": 1.5},
                                 {"familywise": "yes"}])
def test_bad_common_parameters_rejected(name: str, bad: dict[str, Any], trojaned_model, digits) -> None:  # type: ignore[no-untyped-def]
    det = get_detector(name, **{**_fast(name), **bad})
    with pytest.raises(InvalidInputError, match="alpha|cutoff|familywise"):
        det.scan(trojaned_model.model, _clean_data(digits), progress=False)


@pytest.mark.parametrize("name", DETECTORS)
def test_scan_leaves_model_unchanged_and_is_reproducible(name: str, trojaned_model, digits) -> None:  # type: ignore[no-untyped-def]
    model = trojaned_model.model
    model.train()  # a non-default state the scan must restore
    first = next(model.parameters())
    first.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: m.training for n, m in model.named_modules()}
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    try:
        data = _clean_data(digits)
        x_before = data.x.clone()
        r1 = get_detector(name, **_fast(name)).scan(model, data, seed=3, progress=False)
        r2 = get_detector(name, **_fast(name)).scan(model, data, seed=3, progress=False)
        after = model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before), "weights changed"
        assert flags == {n: m.training for n, m in model.named_modules()}, "training flags changed"
        assert grads == {n: p.requires_grad for n, p in model.named_parameters()}, "requires_grad changed"
        assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules()), "hooks left behind"
        assert torch.equal(data.x, x_before), "the clean data was modified"
        assert _comparable(r1) == _comparable(r2), "same seed gave a different report"
        assert ScanReport.from_json(r1.to_json()) == r1
        assert r1.method == name and len(r1.classes) == model.num_classes and r1.model_queries > 0
    finally:
        model.eval()
        first.requires_grad_(True)


# DeepInspect's margin needs its default step counts (minutes on 2 cores): tests/test_deep_inspect.py checks it.
@pytest.mark.parametrize("name", [d for d in DETECTORS if d != "deep_inspect"])
def test_trojaned_scores_above_clean_twin(name: str, trojaned_model, clean_model, digits) -> None:  # type: ignore[no-untyped-def]
    data = _clean_data(digits)
    rt = get_detector(name, **_fast(name, detects=True)).scan(trojaned_model.model, data, seed=0, progress=False)
    rc = get_detector(name, **_fast(name, detects=True)).scan(clean_model.model, data, seed=0, progress=False)
    assert rt.classes[5].anomaly_index > rc.anomaly_index
    assert rt.classes[5].anomaly_index == max(c.anomaly_index for c in rt.classes)


@pytest.mark.parametrize("name", DETECTORS)
def test_bad_data_rejected(name: str, trojaned_model, digits) -> None:  # type: ignore[no-untyped-def]
    det = get_detector(name, **_fast(name))
    model = trojaned_model.model
    wrong_shape = Dataset(torch.rand(10, 3, 28, 28), torch.zeros(10, dtype=torch.int64), [], "x")
    with pytest.raises(InvalidInputError, match="model takes"):
        det.scan(model, wrong_shape, progress=False)
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        det.scan(model, torch.rand(10, 1, 28, 28) * 255, progress=False)
    with pytest.raises(InvalidInputError, match="label 12"):
        det.scan(model, Dataset(torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 12]), [], "x"), progress=False)
    with pytest.raises(InvalidInputError, match="empty"):
        det.scan(model, Dataset(torch.rand(0, 1, 28, 28), torch.zeros(0, dtype=torch.int64), [], "x"), progress=False)
    with pytest.raises(InvalidInputError, match="Classifier"):
        det.scan(model.module, None, progress=False)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="seed"):
        det.scan(model, None, seed=-1, progress=False)


@pytest.mark.parametrize("name", DETECTORS)
def test_familywise_scan_equals_rethresholded_report(name: str, trojaned_model, digits) -> None:  # type: ignore[no-untyped-def]
    """familywise=True only moves the cutoff (the test's per-model one for 10 classes); rethreshold() reproduces it
    from a saved report."""
    from trojanscan.scan import rethreshold
    from trojanscan.stats import familywise_cutoff

    data = _clean_data(digits)
    plain = get_detector(name, **_fast(name, redecide=True)).scan(trojaned_model.model, data, seed=3, progress=False)
    fw = get_detector(name, **_fast(name, redecide=True), familywise=True).scan(trojaned_model.model, data, seed=3,
                                                                                 progress=False)
    if name == "deep_inspect":  # the per-generator note names its cutoff, so the equalities below check it moves
        assert any(n.startswith("each generator alone") and "cutoff 2.00" in n for n in plain.notes)
    assert fw.cutoff == pytest.approx(familywise_cutoff(2.0, 10, detector_class(name).test))
    # the plain report says how often its cutoff flags a clean model of this size; the family-wise one need not
    rate = stats.null_false_alarm_rate(2.0, 10, detector_class(name).test)
    assert [n for n in plain.notes if n.startswith("false alarms:")] == [
        n for n in plain.notes if n.startswith("false alarms:") and f"with probability {rate:.2f}" in n] != []
    assert not [n for n in fw.notes if n.startswith("false alarms:")]
    assert [c.anomaly_index for c in fw.classes] == [c.anomaly_index for c in plain.classes]
    again = rethreshold(ScanReport.from_json(plain.to_json()), familywise=True)
    assert _comparable(again) == _comparable(fw)
    assert _comparable(rethreshold(again, familywise=False)) == _comparable(plain)


def _torchscript_twin(model: Any, tmp_path: Any, how: str) -> Any:
    """The same network as a third party would ship it: a TorchScript file (normalisation folded in) with no
    sidecar, loaded with only ``--input-shape``; ``how`` is "trace" (export_torchscript), "script", or "softmax"
    (scripted, and the network ends in a softmax: it returns probabilities, not logits)."""
    from torch import nn

    from trojanscan.models import export_torchscript, load_model

    path = tmp_path / f"{how}.pt"
    if how == "trace":
        export_torchscript(model, path, with_sidecar=False)
    else:  # scripted, normalisation as a 1x1 convolution: a different graph computing the same function
        c = model.input_shape[0]
        norm = nn.Conv2d(c, c, 1)
        with torch.no_grad():
            norm.weight.copy_(torch.diag(1.0 / model.std.flatten()).view(c, c, 1, 1))
            norm.bias.copy_(-(model.mean / model.std).flatten())
        net = nn.Sequential(norm, model.module.features, nn.Flatten(), model.module.classifier).eval()
        if how == "softmax":
            net.append(nn.Softmax(dim=1))
        torch.jit.save(torch.jit.script(net), str(path))
    return load_model(path, input_shape=model.input_shape)


@pytest.mark.parametrize("how", ["trace", "script", "softmax"])
@pytest.mark.parametrize("name", DETECTORS)
def test_torchscript_file_scans_like_the_module(name: str, how: str, trojaned_model, digits, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Judged models often come as TorchScript: every detector must give the module's statistics on the file."""
    data = _clean_data(digits)
    ts = _torchscript_twin(trojaned_model.model, tmp_path, how)
    assert ts.metadata["format"] == "torchscript" and ts.num_classes == 10
    assert ts.outputs == ("probabilities" if how == "softmax" else "logits")
    ref = get_detector(name, **_fast(name)).scan(trojaned_model.model, data, seed=1, progress=False)
    got = get_detector(name, **_fast(name)).scan(ts, data, seed=1, progress=False)
    want = torch.tensor([c.statistic for c in ref.classes])
    have = torch.tensor([c.statistic for c in got.classes])
    # log p of the softmax twin equals the logits minus logsumexp only up to float rounding, which a long optimisation
    # (DeepInspect's 1000 generator steps) amplifies to a few tenths of a percent, depending on the thread count
    tol = 2e-2 if how == "softmax" else 1e-3
    assert torch.allclose(have, want, rtol=tol, atol=tol), (want, have)
    assert got.suspects[:1] == ref.suspects[:1]
    assert got.model.outputs == ts.outputs and any("outputs probabilities" in n for n in got.notes) == (how == "softmax")


@pytest.mark.parametrize("k", [2, 3, 10])
def test_few_labels_are_called_weak_evidence(k: int) -> None:
    """A median/MAD test over 2 labels can never flag one, and over 3-4 it is unreliable: the report says so."""
    from trojanscan.models import Classifier, build_architecture

    torch.manual_seed(0)
    model = Classifier(build_architecture("tiny_cnn", (1, 28, 28), k), (1, 28, 28), k)
    data = Dataset(torch.rand(20, 1, 28, 28), torch.arange(20) % k, [str(i) for i in range(k)], "x")
    rep = get_detector("neuron_inspect").scan(model, data, progress=False)
    notes = [n for n in rep.notes if n.startswith(f"only {k} labels")]
    assert len(notes) == (0 if k == 10 else 1)
    if k == 2:
        assert "cannot flag any label" in notes[0] and rep.suspects == []


@pytest.mark.parametrize("name", DETECTORS)
def test_odd_non_square_rgb_input(name: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Models we did not build take other sizes: a 3x30x45 TorchScript network (odd, non-square) scans with and
    without data, one finite statistic per class, and the JSON report round-trips."""
    from torch import nn

    from trojanscan.models import load_model

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                        nn.Linear(128, 6)).eval()
    torch.jit.save(torch.jit.script(net), str(tmp_path / "odd.pt"))
    model = load_model(tmp_path / "odd.pt", input_shape=[3, 30, 45])
    x = torch.rand(24, 3, 30, 45, generator=torch.Generator().manual_seed(1))
    for data in (Dataset(x, torch.arange(24) % 6, [str(i) for i in range(6)], "noise"), None):
        if data is None and name != "deep_inspect":
            continue  # the data-free path is DeepInspect's
        rep = get_detector(name, **_fast(name)).scan(model, data, seed=0, progress=False)
        assert len(rep.classes) == 6 and all(math.isfinite(c.statistic) for c in rep.classes)
        assert rep.model.input_shape == [3, 30, 45]
        assert _comparable(ScanReport.from_json(rep.to_json())) == _comparable(rep)


@pytest.mark.parametrize("name", DETECTORS)
def test_query_only_onnx_twin(name: str, trojaned_model, digits, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A model known only by its scores (an ONNX file): the same contract, or a clear refusal for white-box methods."""
    from trojanscan.models import export_onnx, load_model

    q = load_model(export_onnx(trojaned_model.model, tmp_path / "m.onnx", with_sidecar=False), query_samples=3)
    data = _clean_data(digits, 40)
    if detector_class(name).needs_white_box:
        with pytest.raises(WhiteBoxRequiredError, match="query-only"):
            get_detector(name, **_fast(name)).scan(q, data, progress=False)
        return
    r1 = get_detector(name, **_fast(name)).scan(q, data, seed=3, progress=False)
    r2 = get_detector(name, **_fast(name)).scan(q, data, seed=3, progress=False)
    assert _comparable(r1) == _comparable(r2), "same seed gave a different report"
    assert ScanReport.from_json(r1.to_json()) == r1
    assert all(math.isfinite(c.statistic) for c in r1.classes) and r1.model_queries > 0
    assert r1.model.sha256 == q.metadata["sha256"]


@pytest.mark.parametrize("name", DETECTORS)
def test_log_scale_scan_equals_rescaled_report(name: str, trojaned_model, digits) -> None:  # type: ignore[no-untyped-def]
    """scale="log" changes only the outlier test (on log of the trigger norms): rescale() of a saved raw report gives
    the log scan's report, and back; a detector whose statistic is not a norm has no such parameter."""
    from trojanscan.scan import recalibrate, rescale, scale_takers

    if name not in scale_takers():
        assert name == "neuron_inspect"
        with pytest.raises(TypeError):
            get_detector(name, scale="log")
        plain = get_detector(name, **_fast(name)).scan(trojaned_model.model, _clean_data(digits), progress=False)
        with pytest.raises(InvalidInputError, match="not a norm"):
            rescale(plain, "log")
        return
    data = _clean_data(digits)
    plain = get_detector(name, **_fast(name, redecide=True)).scan(trojaned_model.model, data, seed=3, progress=False)
    logs = get_detector(name, **_fast(name, redecide=True), scale="log").scan(trojaned_model.model, data, seed=3, progress=False)
    assert logs.config["scale"] == "log" and any(n.startswith("scale log") for n in logs.notes)
    assert logs.trojan_probability is None  # the curves are fitted on the papers' indices only
    values = detector_class(name).statistics_on_scale(plain.classes, "log")
    expect = stats.decide(values, cutoff=2.0, test=detector_class(name).test, scale="log")
    assert [c.anomaly_index for c in logs.classes] == pytest.approx(expect.indices.tolist())
    assert logs.suspects == expect.suspects
    again = rescale(ScanReport.from_json(plain.to_json()), "log")
    assert _comparable(again) == _comparable(logs)
    assert _comparable(rescale(again, "raw")) == _comparable(recalibrate(plain))  # back on the papers' scale: a curve
    with pytest.raises(InvalidInputError, match="scale"):
        get_detector(name, **_fast(name), scale="ln").scan(trojaned_model.model, data, progress=False)
