"""Query-only models (trojanscan.models.query) and ONNX files: the gradient estimator, the budget, the loader."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from trojanscan.cli import main
from trojanscan.detectors import get_detector
from trojanscan.errors import InvalidInputError, ModelLoadError, QueryBudgetError, WhiteBoxRequiredError
from trojanscan.models import Classifier, QueryClassifier, export_onnx, load_model, query_only
from trojanscan.models.io import detect_format
from trojanscan.report import ScanReport
from trojanscan.scan import rethreshold, scan_model


def _linear(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    return Classifier(net, (1, 4, 4), 3).eval()


def _counting(wb: Classifier, calls: list[int]):  # type: ignore[no-untyped-def]
    """``wb``'s network as a predict function that records each batch size it is asked for."""
    def fn(a: np.ndarray) -> np.ndarray:
        calls.append(a.shape[0])
        return wb.module(torch.from_numpy(a)).detach().numpy()
    return fn


def _ce(target: int):  # type: ignore[no-untyped-def]
    return lambda z: nn.functional.cross_entropy(z, torch.full((z.shape[0],), target), reduction="sum")


def test_estimate_is_unbiased_on_a_linear_network() -> None:
    """On a linear network every antithetic difference is exact, so the estimate is (1/q) sum u u^T g -> g."""
    wb = _linear()
    x = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    loss_wb, g_true = wb.loss_and_input_grad(x, _ce(2))
    q = query_only(wb, samples=4000, sigma=0.01)
    torch.manual_seed(0)
    loss_q, g_est = q.loss_and_input_grad(x, _ce(2))
    assert float(loss_q) == pytest.approx(float(loss_wb), rel=1e-5)
    cos = nn.functional.cosine_similarity(g_true.flatten(1), g_est.flatten(1))
    assert bool((cos > 0.97).all()), cos
    assert float(g_est.norm() / g_true.norm()) == pytest.approx(1.0, abs=0.1)


def test_estimate_costs_exactly_n_times_one_plus_2q_queries_and_is_seeded() -> None:
    calls: list[int] = []
    q = QueryClassifier(_counting(_linear(), calls), (1, 4, 4), 3, samples=7, batch_size=10)
    x = torch.rand(5, 1, 4, 4)
    torch.manual_seed(3)
    _, g1 = q.loss_and_input_grad(x, _ce(0))
    assert q.queries == sum(calls) == 5 * (1 + 2 * 7) == q.queries_per_gradient(5)
    assert max(calls) <= 10  # batch_size respected
    torch.manual_seed(3)
    _, g2 = q.loss_and_input_grad(x, _ce(0))
    assert torch.equal(g1, g2)
    out = q(x)
    assert out.grad_fn is None and not out.requires_grad  # nothing flows through a black box


def test_budget_stops_before_the_black_box_is_called() -> None:
    calls: list[int] = []
    q = QueryClassifier(_counting(_linear(), calls), (1, 4, 4), 3, samples=5, max_queries=40)
    q(torch.rand(30, 1, 4, 4))
    with pytest.raises(QueryBudgetError, match=r"max_queries=40.*30 queries made, 11 more"):
        q(torch.rand(11, 1, 4, 4))
    assert sum(calls) == 30 == q.queries


@pytest.mark.parametrize("kw, match", [({"samples": 0}, "query-samples"), ({"samples": 2.5}, "query-samples"),
                                       ({"sigma": 0.0}, "query-sigma"), ({"sigma": float("nan")}, "query-sigma"),
                                       ({"max_queries": 0}, "max-queries"), ({"batch_size": 0}, "batch_size")])
def test_bad_estimator_settings_rejected(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        QueryClassifier(lambda a: a.reshape(len(a), -1)[:, :3], (1, 4, 4), 3, **kw)


def test_scores_of_the_wrong_shape_are_a_clear_error() -> None:
    q = QueryClassifier(lambda a: np.zeros((len(a) + 1, 3)), (1, 4, 4), 3)
    with pytest.raises(InvalidInputError, match="must return"):
        q(torch.rand(2, 1, 4, 4))


# ----------------------------------------------------------------------------------------------------- ONNX


def test_onnx_file_loads_query_only_and_matches_the_module(trojaned_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    m = trojaned_model.model
    path = export_onnx(m, tmp_path / "m.onnx", with_sidecar=False)
    assert detect_format(path) == "onnx"
    q = load_model(path)
    assert isinstance(q, QueryClassifier) and not q.white_box
    assert q.input_shape == m.input_shape and q.num_classes == m.num_classes and q.outputs == "logits"
    assert q.metadata["format"] == "onnx" and q.metadata["input_shape_source"] == "graph"
    assert q.metadata["onnx_input"] == "input" and q.metadata["onnx_batch"] is None  # a dynamic batch dimension
    x = torch.rand(37, *m.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(q(x), m(x), atol=1e-4)
    fixed = load_model(export_onnx(m, tmp_path / "b1.onnx", with_sidecar=False, batch_size=4))  # a fixed batch size
    assert fixed.metadata["onnx_batch"] == 4
    with torch.no_grad():
        assert torch.allclose(fixed(x), m(x), atol=1e-4)  # 37 images: nine whole batches and a padded one


def test_onnx_loader_errors(trojaned_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    m = trojaned_model.model
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07" + b"not a protobuf graph" * 5)
    with pytest.raises(ModelLoadError, match="is not a valid ONNX protobuf"):
        load_model(bad)
    good = export_onnx(m, tmp_path / "m.onnx", with_sidecar=False)
    with pytest.raises(InvalidInputError, match="disagrees with the ONNX graph"):
        load_model(good, input_shape=(3, 28, 28))
    if torch.cuda.is_available():
        with pytest.raises(InvalidInputError, match="runs through onnxruntime on the CPU"):
            load_model(good, device="cuda")
    # an input whose size the graph leaves open needs --input-shape
    open_hw = tmp_path / "open.onnx"
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)).eval()
    torch.onnx.export(net, (torch.rand(1, 1, 28, 28),), str(open_hw), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}})
    with pytest.raises(InvalidInputError, match="pass --input-shape"):
        load_model(open_hw)
    assert load_model(open_hw, input_shape=(1, 20, 24)).input_shape == (1, 20, 24)


class _ChannelsLast(nn.Module):
    """A Keras-style graph: NHWC input, and a label output before the scores."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.net(x.permute(0, 3, 1, 2))
        return z.argmax(1), z


def test_channels_last_onnx_with_a_label_output(trojaned_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    m = trojaned_model.model
    path = tmp_path / "nhwc.onnx"
    torch.onnx.export(_ChannelsLast(m.module).eval(), (torch.rand(1, 28, 28, 1),), str(path), dynamo=False,
                      input_names=["x"], output_names=["label", "scores"],
                      dynamic_axes={"x": {0: "b"}, "label": {0: "b"}, "scores": {0: "b"}})
    q = load_model(path)
    assert q.input_shape == (1, 28, 28) and q.num_classes == 10
    assert q.metadata["onnx_layout"] == "NHWC" and q.metadata["onnx_scores"] == "scores"
    x = torch.rand(6, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(q(x), m.module(x), atol=1e-4)


def test_softmax_onnx_is_read_as_probabilities(trojaned_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    m = trojaned_model.model
    net = nn.Sequential(m.module, nn.Softmax(dim=1)).eval()
    path = tmp_path / "sm.onnx"
    torch.onnx.export(net, (torch.rand(1, 1, 28, 28),), str(path), dynamo=False, dynamic_axes={"input": {0: "b"}},
                      input_names=["input"])
    q = load_model(path)
    assert q.outputs == "probabilities"
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(torch.softmax(q(x), 1), torch.softmax(m.module(x), 1), atol=1e-5)  # no normalisation here


# --------------------------------------------------------------------------------------------- detectors, CLI

FAST_DI = {"inversion_steps": 10, "steps": 20, "n_samples": 2, "n_attack": 5, "n_repeats": 1}
FAST_NC = {"epochs": 2, "steps_per_epoch": 2, "patience": 1, "early_stop_patience": 1, "batch_size": 8}


def test_white_box_methods_refuse_and_all_skips_them(trojaned_model, digits) -> None:  # type: ignore[no-untyped-def]
    q = query_only(trojaned_model.model, samples=2)
    with pytest.raises(WhiteBoxRequiredError, match="neuron_inspect cannot scan a query-only model"):
        get_detector("neuron_inspect").scan(q, digits[1].subset(torch.arange(20), "c"), progress=False)
    out = scan_model(q, digits[1].subset(torch.arange(40), "c"), method="all", progress=False,
                     params={"deep_inspect": FAST_DI, "neural_cleanse": FAST_NC})
    assert set(out.report.reports) == {"deep_inspect", "neural_cleanse"}
    assert any("neuron_inspect was not run" in n for n in out.report.notes)
    assert out.report.model_queries == sum(r.model_queries for r in out.report.reports.values()) > 0
    # the note both detectors carry (how the model was reached) is the combined report's too, so its summary shows it;
    # re-deciding the saved report keeps it and the combined report's own note
    (shared,) = [n for n in out.report.notes if n.startswith("query-only model")]
    assert all(shared in r.notes for r in out.report.reports.values())
    again = rethreshold(ScanReport.from_json(out.report.to_json()), familywise=True)
    assert again.notes == out.report.notes and again.cutoff == 2.0


def test_query_only_scan_counts_every_query(trojaned_model) -> None:  # type: ignore[no-untyped-def]
    """Data-free DeepInspect on a query-only model: the report's queries are exactly the images the black box saw."""
    q = query_only(trojaned_model.model, samples=3)
    seen0 = q.queries
    rep = get_detector("deep_inspect", **FAST_DI).scan(q, None, seed=0, progress=False)
    assert rep.model_queries == q.queries - seen0 - 2  # scan() validates with a 2-image probe before counting
    # model inversion: 10 steps x 50 images, each a gradient estimate (1 + 2 x 3 queries per image)
    assert rep.model_queries >= 10 * 50 * 7 + 20 * 64 * 7
    assert rep.data.source == "model_inversion"
    assert any("query-only model (scores only)" in n and "3 direction pairs" in n for n in rep.notes)


@pytest.mark.parametrize("white_box", [False, True])
@pytest.mark.parametrize("with_data", [False, True])
def test_deep_inspect_plans_its_queries_exactly(with_data: bool, white_box: bool, trojaned_model, digits) -> None:  # type: ignore[no-untyped-def]
    q = trojaned_model.model if white_box else query_only(trojaned_model.model, samples=2)
    data = digits[1].subset(torch.arange(30), "c") if with_data else None
    det = get_detector("deep_inspect", **{**FAST_DI, "n_repeats": 2})
    planned = det.planned_queries(q, data)
    rep = det.scan(q, data, seed=0, progress=False)
    assert planned == rep.model_queries


def test_budget_too_small_is_refused_before_any_query(trojaned_model, digits) -> None:  # type: ignore[no-untyped-def]
    q = query_only(trojaned_model.model, samples=2, max_queries=5_000)
    det = get_detector("deep_inspect", **FAST_DI)
    need = det.planned_queries(q, None)
    assert need is not None and need > 5_000
    with pytest.raises(QueryBudgetError, match=f"needs {need:,} model queries"):
        det.scan(q, None, progress=False)
    assert q.queries == 2  # only validate()'s two-image probe reached the model


def _write_onnx(model: Classifier, tmp_path: Path) -> Path:
    return export_onnx(model, tmp_path / "m.onnx")


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out + out.err


def test_cli_onnx_bad_uses_exit_2_and_write_nothing(trojaned_model, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_onnx(trojaned_model.model, tmp_path)
    code, out = _cli(["scan", str(path), "--method", "neuron_inspect", "--json", str(tmp_path / "r.json"),
                      "--no-progress"], capsys)
    assert code == 2 and "query-only" in out
    code, out = _cli(["scan", str(path), "--method", "deep_inspect", "--max-queries", "5000", "--json",
                      str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html"), "--no-progress"], capsys)
    assert code == 2 and "query budget" in out and len(out.strip().splitlines()) == 1
    code, out = _cli(["scan", str(path), "--query-samples", "0", "--json", str(tmp_path / "r.json")], capsys)
    assert code == 2 and "query-samples" in out
    code, out = _cli(["patch", str(path), "--out", str(tmp_path / "p.pt")], capsys)
    assert code == 2 and "query-only" in out and "weights" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.onnx"]  # no report, no report_files, no patch


def test_cli_scans_an_onnx_file(trojaned_model, tmp_path: Path, capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end: `trojanscan scan m.onnx --method all` writes the JSON and HTML reports of the methods that can run
    (the detectors' step counts cut down here: their defaults take minutes)."""
    import trojanscan.scan as scan_mod

    real = scan_mod.get_detector
    fast = {"deep_inspect": FAST_DI, "neural_cleanse": FAST_NC}
    monkeypatch.setattr(scan_mod, "get_detector", lambda name, **hp: real(name, **{**fast.get(name, {}), **hp}))
    path = _write_onnx(trojaned_model.model, tmp_path)
    out = tmp_path / "r.json"
    code, text = _cli(["scan", str(path), "--query-samples", "2", "--json", str(out), "--html",
                       str(tmp_path / "r.html"), "--no-progress"], capsys)
    assert code in (0, 1), text
    assert "neuron_inspect was not run" in text
    rep = json.loads(out.read_text())
    assert rep["method"] == "all" and set(rep["reports"]) == {"deep_inspect", "neural_cleanse"}
    assert rep["reports"]["deep_inspect"]["data"]["source"] == "model_inversion"
    assert rep["model"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert rep["model"]["access"] == rep["reports"]["deep_inspect"]["model"]["access"] == "query-only"
    assert (tmp_path / "r.html").is_file()


def test_load_model_query_only_wraps_any_file(trojaned_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from trojanscan.models import export_torchscript

    ts = load_model(export_torchscript(trojaned_model.model, tmp_path / "m.pt"), query_only=True, query_samples=4,
                    max_queries=100)
    assert isinstance(ts, QueryClassifier) and ts.samples == 4 and ts.max_queries == 100
    assert ts.metadata["white_box_format"] == "torchscript" and ts.metadata["access"] == "query-only"
    with pytest.raises(InvalidInputError, match="already query-only"):
        query_only(ts)


def test_all_methods_share_one_budget(trojaned_model, digits) -> None:  # type: ignore[no-untyped-def]
    q = query_only(trojaned_model.model, samples=2, max_queries=3_000)
    with pytest.raises(QueryBudgetError, match="deep_inspect need at least .* model queries"):
        scan_model(q, None, method="all", progress=False, params={"deep_inspect": FAST_DI, "neural_cleanse": FAST_NC})
    assert q.queries == 0


def test_patching_refuses_a_query_only_model_before_scanning(trojaned_model) -> None:  # type: ignore[no-untyped-def]
    from trojanscan.mitigation.defenses import patch_deep_inspect, patch_neural_cleanse

    q = query_only(trojaned_model.model)
    with pytest.raises(WhiteBoxRequiredError, match="weights"):
        patch_deep_inspect(q, progress=False)
    with pytest.raises(WhiteBoxRequiredError, match="weights"):
        patch_neural_cleanse(q, None, progress=False)
    assert q.queries == 0


def test_cli_budget_spent_mid_scan_leaves_no_partial_files(trojaned_model, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                           capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """DeepInspect fits the budget and writes its artifacts; Neural Cleanse (no plan: early stopping) runs out part-way.
    The scan stops with exit 2, and neither the reports nor the artifacts folder DeepInspect filled are left behind."""
    import trojanscan.scan as scan_mod

    real = scan_mod.get_detector
    fast = {"deep_inspect": FAST_DI, "neural_cleanse": FAST_NC}
    monkeypatch.setattr(scan_mod, "get_detector", lambda name, **hp: real(name, **{**fast.get(name, {}), **hp}))
    path = _write_onnx(trojaned_model.model, tmp_path)
    q = load_model(path, query_samples=2)
    budget = q.queries + 2 + real("deep_inspect", **FAST_DI).planned_queries(q, None) + 100
    code, out = _cli(["scan", str(path), "--query-samples", "2", "--max-queries", str(budget), "--json",
                      str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html"), "--no-progress"], capsys)
    assert code == 2 and "query budget" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.onnx"]
