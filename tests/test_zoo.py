"""Zoo scanning and its metrics: ROC-AUC / cross-entropy / Brier, calibration, scan-zoo end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trojanscan import stats
from trojanscan.bench.metrics import brier, cross_entropy, roc_auc
from trojanscan.bench.zooscan import find_models, load_truth, scan_zoo, summarise
from trojanscan.calibration import (
    LogisticCalibration,
    fit_logistic,
    load_calibration,
    pooled_probability,
    save_calibration,
)
from trojanscan.cli import main
from trojanscan.data.npz import save_npz
from trojanscan.errors import DataFormatError, InvalidInputError
from trojanscan.models.io import save_model
from trojanscan.recipes import BuiltModel
from trojanscan.report.scan_report import ScanReport


# ------------------------------------------------------------------------------------------ metrics
def test_roc_auc_by_hand() -> None:
    # pairs (trojaned, clean): (0.35 > 0.1) yes, (0.35 > 0.4) no, (0.8 > both) yes yes -> 3/4
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5  # a tie counts one half
    assert roc_auc([0, 0, 1], [1.0, 2.0, 3.0]) == 1.0
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3]))  # one class only
    assert roc_auc([0, 1], [-math.inf, math.inf]) == 1.0


def test_cross_entropy_and_brier_by_hand() -> None:
    assert cross_entropy([1, 0], [0.5, 0.5]) == pytest.approx(math.log(2))
    assert cross_entropy([1], [0.0]) == pytest.approx(-math.log(1e-6))  # clipped, finite
    assert brier([1, 0], [0.75, 0.5]) == pytest.approx((0.0625 + 0.25) / 2)
    with pytest.raises(InvalidInputError, match="length"):
        brier([1, 0], [0.5])
    with pytest.raises(InvalidInputError, match="0 \\(clean\\) or 1"):
        roc_auc([2, 0], [0.5, 0.5])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(-400, 400).map(lambda v: v / 8)), min_size=2, max_size=30))
def test_roc_auc_properties(pairs: list[tuple[int, float]]) -> None:
    y = [p[0] for p in pairs]
    s = np.array([p[1] for p in pairs])
    auc = roc_auc(y, s)
    if len(set(y)) < 2:
        assert math.isnan(auc)
        return
    assert 0.0 <= auc <= 1.0
    assert roc_auc(y, np.exp(s / 10)) == pytest.approx(auc)  # invariant under a monotone map
    assert roc_auc(y, -s) == pytest.approx(1.0 - auc)  # reversing the score mirrors it


# -------------------------------------------------------------------------------------- calibration
def test_logistic_fit_is_finite_and_ordered_on_separable_data() -> None:
    idx = [0.8, 1.1, 1.3, 1.6, 1.2, 3.1, 4.0, 5.5, 2.9]
    y = [0, 0, 0, 0, 0, 1, 1, 1, 1]
    cal = fit_logistic(idx, y)
    assert math.isfinite(cal.slope) and cal.slope > 0
    assert 1.6 < cal.center < 2.9  # between the groups
    assert cal.n_models == 9 and cal.n_trojaned == 4
    ps = [cal.probability(x) for x in (0.0, 1.0, 2.0, 3.0, 10.0, math.inf)]
    assert ps == sorted(ps) and ps[0] < 0.5 < ps[-2]
    assert cal.probability(math.inf) == pytest.approx(1.0, abs=1e-3)
    assert cal.probability(-math.inf) == pytest.approx(0.0, abs=1e-3)
    with pytest.raises(InvalidInputError, match="NaN"):
        cal.probability(math.nan)
    with pytest.raises(InvalidInputError):
        fit_logistic([], [])


def test_pooled_probability() -> None:
    assert pooled_probability([0.7, 0.7, 0.7]) == pytest.approx(0.7)
    assert pooled_probability([0.9, 0.1]) == pytest.approx(0.5)
    assert 0.5 < pooled_probability([0.99, 0.4, 0.6]) < 0.99
    assert pooled_probability([1.0, 1.0]) < 1.0  # clipped: finite log-odds
    with pytest.raises(InvalidInputError):
        pooled_probability([])


def test_calibration_file_round_trip(tmp_path: Path) -> None:
    curves = {"neural_cleanse": LogisticCalibration(2.5, 2.1, 12, 6)}
    save_calibration(tmp_path / "c.json", curves, {"command": "test"})
    assert load_calibration(tmp_path / "c.json") == curves
    (tmp_path / "bad.json").write_text('{"detectors": {"x": {"slope": "a"}}}')
    with pytest.raises(DataFormatError, match="bad.json"):
        load_calibration(tmp_path / "bad.json")
    with pytest.raises(InvalidInputError, match="not found"):
        load_calibration(tmp_path / "missing.json")


def test_shipped_calibration_is_valid() -> None:
    for name, cal in load_calibration().items():
        assert cal.slope > 0 and math.isfinite(cal.center), name
        assert cal.n_models >= 2 and 0 < cal.n_trojaned < cal.n_models, name


# -------------------------------------------------------------------------------------------- zoo
@pytest.fixture()
def zoo(tmp_path: Path, trojaned_model: BuiltModel, clean_model: BuiltModel, digits) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    d = tmp_path / "zoo"
    d.mkdir()
    for name, b in (("troj", trojaned_model), ("clean", clean_model)):
        save_model(d / f"{name}.safetensors", b.model)
        (d / f"{name}.truth.json").write_text(json.dumps(b.truth()))
    (d / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    (d / "broken.truth.json").write_text(json.dumps({"trojaned": False}))
    data = tmp_path / "clean.npz"
    save_npz(data, digits[1].subset(torch.arange(200), "zoo clean data"))
    return d, data


def test_scan_zoo_end_to_end(zoo: tuple[Path, Path], tmp_path: Path) -> None:
    d, data = zoo
    out = tmp_path / "out"
    doc = scan_zoo(d, out, data=[data], method="neuron_inspect", workers=1, progress=False)
    assert doc["n_models"] == 3 and doc["n_failed"] == 1
    rows = {r["model"]: r for r in doc["models"]}
    assert rows["broken.safetensors"]["status"] == "failed" and rows["broken.safetensors"]["error"]
    assert rows["troj.safetensors"]["methods"]["neuron_inspect"]["suspects"][:1] == [5]
    m = doc["metrics"]["neuron_inspect"]
    assert m["n_models"] == 2 and m["n_trojaned"] == 1
    assert m["roc_auc"] == 1.0 and m["target_accuracy"] == 1.0 and m["false_negatives"] == 0
    # FP counts the clean model's verdict at the cutoff (NeuronInspect flags class 7 of this synthetic model)
    clean_flagged = rows["clean.safetensors"]["methods"]["neuron_inspect"]["verdict"] == "trojaned"
    assert m["false_positives"] == int(clean_flagged)
    for f in ("summary.json", "summary.md", "models.csv", "reports/troj.json", "reports/clean.json"):
        assert (out / f).is_file(), f
    assert json.loads((out / "summary.json").read_text())["schema"] == "trojanscan.zoo/1"
    assert "broken.safetensors" in (out / "summary.md").read_text()
    # resumable: a second run reuses the reports of the same model bytes
    again = scan_zoo(d, out, data=[data], method="neuron_inspect", workers=1, progress=False)
    assert {r["model"] for r in again["models"] if r.get("resumed")} == {"troj.safetensors", "clean.safetensors"}
    assert again["metrics"] == doc["metrics"] | {"neuron_inspect": again["metrics"]["neuron_inspect"]}
    assert again["metrics"]["neuron_inspect"]["roc_auc"] == 1.0
    # a reused report gets its probability from today's calibration (here: a stale value written over it)
    saved_path = out / "reports" / "troj.json"
    stale = json.loads(saved_path.read_text()) | {"trojan_probability": 0.123}
    saved_path.write_text(json.dumps(stale))
    fresh = {r["model"]: r for r in scan_zoo(d, out, data=[data], method="neuron_inspect", workers=1,
                                             progress=False)["models"]}["troj.safetensors"]
    curve = load_calibration().get("neuron_inspect")
    p_now = fresh["methods"]["neuron_inspect"]["trojan_probability"]
    assert fresh.get("resumed") and p_now == (None if curve is None else curve.probability(stale["anomaly_index"]))
    # --familywise re-decides the saved reports (no rescan): same indices, per-model MAD cutoff 4.01 for 10 classes
    fw = scan_zoo(d, out, data=[data], method="neuron_inspect", workers=1, familywise=True, progress=False)
    assert {r["model"] for r in fw["models"] if r.get("resumed")} == {"troj.safetensors", "clean.safetensors"}
    saved = json.loads((out / "reports" / "clean.json").read_text())
    assert saved["cutoff"] == pytest.approx(4.013, abs=5e-4) and saved["config"]["familywise"] is True
    fw_rows = {r["model"]: r for r in fw["models"]}
    for name in ("troj.safetensors", "clean.safetensors"):
        a, b = rows[name]["methods"]["neuron_inspect"], fw_rows[name]["methods"]["neuron_inspect"]
        assert a["anomaly_index"] == b["anomaly_index"]
        assert b["verdict"] == ("trojaned" if b["anomaly_index"] > saved["cutoff"] else "benign")
    # so does --scale log (Neural Cleanse's masks, no rescan), and back; NeuronInspect has no log scale
    nc1 = scan_zoo(d, out, data=[data], method="neural_cleanse", workers=1, progress=False,
                   params={"neural_cleanse": {"epochs": 3, "steps_per_epoch": 2}})
    nc2 = scan_zoo(d, out, data=[data], method="neural_cleanse", workers=1, progress=False, scale="log",
                   params={"neural_cleanse": {"epochs": 3, "steps_per_epoch": 2}})
    assert {r["model"] for r in nc2["models"] if r.get("resumed")} == {"troj.safetensors", "clean.safetensors"}
    logged = ScanReport.load_json(out / "reports" / "troj.json")
    assert logged.config["scale"] == "log" and logged.trojan_probability is None
    masks = [c.statistic for c in logged.classes]
    assert [c.anomaly_index for c in logged.classes] == pytest.approx(
        stats.decide(masks, test="mad", scale="log").indices.tolist())
    assert nc2["metrics"]["neural_cleanse"]["auc_on"] == "anomaly_index"
    nc3 = scan_zoo(d, out, data=[data], method="neural_cleanse", workers=1, progress=False,
                   params={"neural_cleanse": {"epochs": 3, "steps_per_epoch": 2}})
    assert all(r.get("resumed") for r in nc3["models"] if r["status"] == "ok")
    assert [r["methods"] for r in nc3["models"]] == [r["methods"] for r in nc1["models"]]
    # other detector settings are not reused: the model is scanned again
    other = scan_zoo(d, out, data=[data], method="neuron_inspect", workers=1, progress=False,
                     params={"neuron_inspect": {"n_images": 10}})
    assert not any(r.get("resumed") for r in other["models"])


def test_scan_zoo_in_worker_processes(zoo: tuple[Path, Path], tmp_path: Path) -> None:
    d, data = zoo
    doc = scan_zoo(d, tmp_path / "out", data=[data], method="neuron_inspect", workers=2, progress=False)
    assert doc["workers"] == 2 and doc["n_failed"] == 1
    assert doc["metrics"]["neuron_inspect"]["roc_auc"] == 1.0


def test_truth_file_and_errors(zoo: tuple[Path, Path], tmp_path: Path) -> None:
    d, _ = zoo
    models = find_models(d)
    assert [m.name for m in models] == ["broken.safetensors", "clean.safetensors", "troj.safetensors"]
    t = tmp_path / "truth.json"
    t.write_text(json.dumps({"troj": {"trojaned": True, "targets": [5]}, "clean.safetensors": {"trojaned": False},
                             "broken": {"trojaned": False}}))
    table = load_truth(models, t)
    assert table["troj.safetensors"] == {"trojaned": True, "targets": [5]}
    # all-to-all (a truth sidecar lists every label as a target): no target label to score
    t.write_text(json.dumps({"troj": {"trojaned": True, "targets": [0, 1, 2],
                                      "label_mode": {"kind": "all_to_all"}},
                             "clean": {"trojaned": False}, "broken": {"trojaned": True, "targets": "all"}}))
    table = load_truth(models, t)
    assert table["troj.safetensors"]["targets"] == [] and table["broken.safetensors"]["targets"] == []
    t.write_text(json.dumps({"troj": {"trojaned": True}}))
    with pytest.raises(InvalidInputError, match="no ground truth for broken.safetensors"):
        load_truth(models, t)
    t.write_text(json.dumps({"troj": {"trojaned": "yes"}}))
    with pytest.raises(DataFormatError, match="boolean"):
        load_truth(models[2:], t)
    with pytest.raises(InvalidInputError, match="does not exist"):
        find_models(tmp_path / "nope")


def test_summarise_without_probabilities_uses_the_index() -> None:
    rows = [{"model": m, "status": "ok", "methods": {"x": {"verdict": v, "anomaly_index": i, "suspects": s,
                                                          "trojan_probability": None, "runtime_s": 1.0}}}
            for m, v, i, s in (("a", "trojaned", 3.0, [5]), ("b", "benign", 1.0, []), ("c", "trojaned", 2.5, [1]))]
    truth = {"a": {"trojaned": True, "targets": [5]}, "b": {"trojaned": False, "targets": []},
             "c": {"trojaned": False, "targets": []}}
    s = summarise(rows, truth)["x"]
    assert s["auc_on"] == "anomaly_index" and s["roc_auc"] == 1.0
    assert s["cross_entropy"] is None and s["false_positives"] == 1 and s["target_accuracy"] == 1.0


def test_summarise_judges_the_combined_probability_only_where_it_pools_every_detector() -> None:
    """A combined probability pooled over some detectors (the others had no curve: log scale, pair mode) is not the
    combined verdict's: the combined ROC-AUC then falls back to its anomaly index, which here ranks the other way."""
    def row(m: str, p_all: float, i_all: float, p_nc: float | None) -> dict[str, Any]:
        e = {"verdict": "benign", "suspects": [], "runtime_s": 1.0}
        return {"model": m, "status": "ok", "methods": {
            "all": e | {"anomaly_index": i_all, "trojan_probability": p_all},
            "neural_cleanse": e | {"anomaly_index": i_all, "trojan_probability": p_nc}}}
    truth = {"a": {"trojaned": True, "targets": []}, "b": {"trojaned": False, "targets": []}}
    pooled = summarise([row("a", 0.2, 3.0, None), row("b", 0.8, 1.0, None)], truth)["all"]
    assert pooled["auc_on"] == "anomaly_index" and pooled["roc_auc"] == 1.0 and pooled["cross_entropy"] is None
    full = summarise([row("a", 0.2, 3.0, 0.5), row("b", 0.8, 1.0, 0.5)], truth)["all"]
    assert full["auc_on"] == "trojan_probability" and full["roc_auc"] == 0.0


def test_cli_scan_zoo_bad_input_writes_nothing(zoo: tuple[Path, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    d, data = zoo
    (d / "clean.truth.json").unlink()
    out = tmp_path / "out"
    assert main(["scan-zoo", str(d), "--out", str(out), "--data", str(data)]) == 2
    assert "no ground truth for clean.safetensors" in capsys.readouterr().err
    assert not out.exists()
    assert main(["scan-zoo", str(d), "--out", str(out), "--method", "magic"]) == 2
    assert main(["scan-zoo", str(d), "--out", str(out), "--workers", "0"]) == 2
    assert main(["scan-zoo", str(d), "--out", str(out), "--device", "tpu"]) == 2
    assert "--device 'tpu'" in capsys.readouterr().err
    assert not out.exists()


def test_scan_model_attaches_calibrated_and_pooled_probabilities(trojaned_model: BuiltModel, digits) -> None:  # type: ignore[no-untyped-def]
    from trojanscan.scan import scan_model

    data = digits[1].subset(torch.arange(100), "clean")
    cal = {"neuron_inspect": LogisticCalibration(2.0, 2.0, 10, 5), "neural_cleanse": LogisticCalibration(3.0, 1.5, 10, 5)}
    fast = {"deep_inspect": {"n_per_class": 1, "inversion_steps": 5, "steps": 10, "n_samples": 2, "n_attack": 4,
                             "n_repeats": 1},
            "neural_cleanse": {"epochs": 2, "steps_per_epoch": 2}}
    out = scan_model(trojaned_model.model, data, method="all", progress=False, params=fast, calibration=cal)
    rep = out.report
    ni, nc, di = rep.reports["neuron_inspect"], rep.reports["neural_cleanse"], rep.reports["deep_inspect"]
    assert ni.trojan_probability == cal["neuron_inspect"].probability(ni.anomaly_index)
    assert nc.trojan_probability == cal["neural_cleanse"].probability(nc.anomaly_index)
    assert di.trojan_probability is None  # no curve: no invented probability
    assert rep.trojan_probability == pytest.approx(pooled_probability([ni.trojan_probability, nc.trojan_probability]))
    single = scan_model(trojaned_model.model, data, method="neuron_inspect", progress=False, calibration={})
    assert single.report.trojan_probability is None
    # a saved report is brought up to date with other curves, exactly as a fresh scan with them would be
    from trojanscan.scan import recalibrate

    other = {"neuron_inspect": LogisticCalibration(1.0, 3.0, 4, 2)}
    again = recalibrate(ScanReport.from_json(rep.to_json()), other)
    assert again.reports["neuron_inspect"].trojan_probability == other["neuron_inspect"].probability(ni.anomaly_index)
    assert again.reports["neural_cleanse"].trojan_probability is None
    assert again.trojan_probability == pytest.approx(again.reports["neuron_inspect"].trojan_probability)
    assert again.anomaly_index == rep.anomaly_index and again.suspects == rep.suspects  # nothing else moves
    assert recalibrate(rep, {}).trojan_probability is None


def test_calibrate_script_fits_on_default_scans_whatever_their_decision_settings(
        trojaned_model: BuiltModel, clean_model: BuiltModel, digits, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """scripts/calibrate.py keeps a scan made with today's defaults even if it lacks a decision key (familywise,
    added after it was made) or used another cutoff, and leaves out one made with other detector settings."""
    import runpy
    import sys

    from trojanscan.detectors import get_detector

    scans, models = tmp_path / "scans", tmp_path / "models"
    scans.mkdir()
    models.mkdir()
    data = digits[1].subset(torch.arange(100), "clean")
    for name, built, trojaned in (("troj", trojaned_model, True), ("clean", clean_model, False)):
        rep = get_detector("neuron_inspect").scan(built.model, data, progress=False)
        doc = json.loads(rep.to_json())
        if trojaned:
            del doc["config"]["familywise"]  # as in a scan older than the option
        else:
            doc["config"]["cutoff"] = 3.0
        (scans / f"{name}__neuron_inspect__k1.json").write_text(json.dumps(doc))
        other = get_detector("neuron_inspect", n_images=10).scan(built.model, data, progress=False)
        (scans / f"{name}__neuron_inspect__k2.json").write_text(other.to_json())  # other settings: left out
        (models / f"{name}.truth.json").write_text(json.dumps({"trojaned": trojaned}))
    out = tmp_path / "cal.json"
    monkeypatch.setattr(sys, "argv", ["calibrate.py", "--scans", str(scans), "--models", str(models), "--out", str(out)])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(Path(__file__).parents[1] / "scripts" / "calibrate.py"), run_name="__main__")
    assert done.value.code == 0
    curves = load_calibration(out)
    assert set(curves) == {"neuron_inspect"} and curves["neuron_inspect"].n_models == 2
    assert curves["neuron_inspect"].n_trojaned == 1


def test_a_model_that_kills_or_hangs_its_process_is_recorded_as_failed(tmp_path: Path) -> None:
    """Each model in its own process: a segmentation fault (a hostile file's loader) or a hang past --timeout is a
    failed row, and the models after it are still scanned."""
    from _zoo_targets import crash_or_hang

    from trojanscan.bench.zooscan import _Job, _run_local

    names = ["ok1.pt", "segv.pt", "slow.pt", "ok2.pt"]
    jobs = [_Job(str(tmp_path / n), str(tmp_path), "all", 0, (), 1, None, None) for n in names]
    seen: list[str] = []
    rows = {r["model"]: r for r in _run_local(jobs, 2, lambda r: seen.append(r["model"]), timeout_s=10,
                                               target=crash_or_hang)}
    assert sorted(seen) == sorted(names)
    assert rows["ok1.pt"]["status"] == rows["ok2.pt"]["status"] == "ok"
    assert rows["segv.pt"]["status"] == "failed" and "SIGSEGV" in rows["segv.pt"]["error"]
    assert rows["slow.pt"]["status"] == "failed" and "timed out after 10 s" in rows["slow.pt"]["error"]
    assert rows["slow.pt"]["scan_s"] < 60


def test_scan_zoo_rejects_a_bad_timeout(zoo: tuple[Path, Path], tmp_path: Path) -> None:
    d, data = zoo
    for bad in (0, -1.0, float("nan"), True):
        with pytest.raises(InvalidInputError, match="--timeout"):
            scan_zoo(d, tmp_path / "o", data=[data], method="neuron_inspect", timeout_s=bad, progress=False)  # type: ignore[arg-type]
    assert not (tmp_path / "o").exists()


def test_scan_zoo_fits_a_folder_to_the_shape_it_is_given_for(tmp_path: Path, trojaned_model: BuiltModel,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """``--data PATH`` serves its own image shape only: a folder of 32x32 colour images leaves a 1x28x28 model data-free
    (the summary says which input shapes had no data). ``--data 1,28,28=PATH`` fits the folder to that shape, the
    report notes it, and the data-free report is not reused. Bad entries are refused before anything is written."""
    from data_fixtures import image_bytes, rand_images, write_tree

    d = tmp_path / "zoo"
    d.mkdir()
    save_model(d / "troj.safetensors", trojaned_model.model)
    (d / "troj.truth.json").write_text(json.dumps(trojaned_model.truth()))
    rng = np.random.default_rng(0)
    imgs = tmp_path / "imgs"
    write_tree(imgs, {f"{k % 3}/{k}.png": image_bytes(rand_images(rng, 1, 32, 32)[0], "PNG") for k in range(9)})
    out = tmp_path / "out"
    free = scan_zoo(d, out, data=[imgs], method="neuron_inspect", workers=1, progress=False)
    (row,) = free["models"]
    assert row["data"] == "model_inversion" and row["input_shape"] == [1, 28, 28]
    assert free["data_free_shapes"] == [(1, 28, 28)]
    assert "models of input 1,28,28" in (out / "summary.md").read_text()
    fitted = scan_zoo(d, out, data=[f"1,28,28={imgs}"], method="neuron_inspect", workers=1, progress=False)
    (row,) = fitted["models"]
    assert not row.get("resumed") and row["data"] == "clean_data" and fitted["data_free_shapes"] == []
    rep = ScanReport.load_json(out / "reports" / "troj.json")
    assert [n for n in rep.notes if n.startswith("--data:")] == [
        "--data: 9 images read at 28x28, made grayscale (luma), to fit the model's input 1x28x28 (images from a "
        "folder are fitted to the model; an .npz is taken as it is)"]
    again = scan_zoo(d, out, data=[f"1,28,28={imgs}"], method="neuron_inspect", workers=1, progress=False)
    assert again["models"][0].get("resumed")
    # bad entries: an .npz of another shape, a mixed-size folder without a shape, two entries for one shape
    np.savez(tmp_path / "big.npz", x=np.zeros((4, 1, 32, 32), np.float32), y=np.zeros(4, np.int64))
    write_tree(tmp_path / "mixed", {"0/a.png": image_bytes(rand_images(rng, 1, 20, 24)[0], "PNG"),
                                    "0/b.png": image_bytes(rand_images(rng, 1, 28, 28)[0], "PNG")})
    for data, msg in (([f"1,28,28={tmp_path / 'big.npz'}"], "an .npz is taken as it is"),
                      ([str(tmp_path / "mixed")], "holds images of several sizes; give it as C,H,W="),
                      ([f"1,28,28={imgs}", f"1,28,28={tmp_path / 'mixed'}"], "both serve input shape (1, 28, 28)"),
                      ([f"0,28,28={imgs}"], "must be positive")):
        fresh = tmp_path / "fresh"
        args = ["scan-zoo", str(d), "--out", str(fresh), "--method", "neuron_inspect", "--workers", "1"]
        assert main([*args, *[a for p in data for a in ("--data", p)]]) == 2
        assert msg in capsys.readouterr().err, msg
        assert not fresh.exists()
