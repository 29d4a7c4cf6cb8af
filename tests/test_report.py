"""ScanReport JSON (schema trojanscan.scan/1, DESIGN.md §3) and the self-contained HTML report."""

from __future__ import annotations

import base64
import io
import json
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from trojanscan import stats
from trojanscan.errors import InvalidInputError
from trojanscan.report import SCHEMA, ClassResult, DataInfo, ModelInfo, ScanReport
from trojanscan.report.html import render_html, write_html

NAMES = ["zero", "one", "two", "<script>alert(1)</script>", "four", "five", "six", "seven", "eight", "nine"]


def make_report(
    method: str = "neural_cleanse",
    statistics: list[float] | None = None,
    *,
    test: str = "mad",
    k: int = 10,
    shape: tuple[int, int, int] = (1, 28, 28),
    **kw: Any,
) -> ScanReport:
    """A fake report whose indices and verdict come from stats.decide (class 5 is the low outlier)."""
    if statistics is None:
        statistics = [100.0 + 3 * ((7 * i) % k) for i in range(k)]
        statistics[5 % k] = 10.0
    d = stats.decide(statistics, test=test)
    fields: dict[str, Any] = dict(
        method=method,
        verdict=d.verdict,
        anomaly_index=d.anomaly_index,
        cutoff=d.cutoff,
        suspects=d.suspects,
        classes=[
            ClassResult(i, float(s), float(d.indices[i]), NAMES[i] if i < len(NAMES) else None,
                        {"attack_success": 0.5 + i / (2 * k)})
            for i, s in enumerate(statistics)
        ],
        model=ModelInfo("m.safetensors", "ab" * 32, list(shape), k),
        data=DataInfo("clean_data", 200),
        runtime_s=12.4,
        model_queries=120_000,
        seed=0,
        config={"steps": 10, "lr": 0.1, "cutoff": 2.0, "alpha": None, "test": test},
        artifacts={"tensors": "report_files/x.safetensors"},
        notes=["a note"],
    )
    fields.update(kw)
    return ScanReport(**fields)


def make_all_report() -> ScanReport:
    nc = make_report("neural_cleanse")
    di = make_report("deep_inspect", [1.0, 1, 1, 1, 1, 0.05, 1, 1, 1.2, 1], test="dmad", trojan_probability=0.8)
    assert di.anomaly_index == math.inf
    return make_report(
        "all",
        classes=[],
        anomaly_index=math.inf,
        suspects=[5],
        verdict="trojaned",
        config={"methods": ["neural_cleanse", "deep_inspect"]},
        trojan_probability=0.93,
        reports={"neural_cleanse": nc, "deep_inspect": di},
    )


# ---------------------------------------------------------------------------------------------- JSON
def test_json_round_trip_single() -> None:
    r = make_report()
    assert r.trojaned and r.suspects == [5]
    back = ScanReport.from_json(r.to_json())
    assert back == r
    assert ScanReport.from_json(r.to_json(indent=None)) == r


def test_json_round_trip_infinite_indices() -> None:
    r = make_report("deep_inspect", [1.0, 1, 1, 1, 1, 0.05, 1, 1, 1.2, 1], test="dmad")
    assert r.classes[5].anomaly_index == math.inf and r.classes[8].anomaly_index == -math.inf
    text = r.to_json()
    d = json.loads(text)  # strict JSON: infinities are written as strings
    assert d["anomaly_index"] == "inf"
    assert d["classes"][8]["anomaly_index"] == "-inf"
    assert "Infinity" not in text and "NaN" not in text
    assert ScanReport.from_json(text) == r


def test_json_round_trip_method_all_with_probability() -> None:
    r = make_all_report()
    d = json.loads(r.to_json())
    assert d["method"] == "all"
    assert d["trojan_probability"] == 0.93
    assert set(d["reports"]) == {"neural_cleanse", "deep_inspect"}
    assert d["reports"]["deep_inspect"]["schema"] == SCHEMA
    assert d["reports"]["deep_inspect"]["trojan_probability"] == 0.8
    back = ScanReport.from_json(r.to_json())
    assert back == r
    assert back.reports["deep_inspect"].anomaly_index == math.inf


def test_schema_key_names_match_design() -> None:
    d = json.loads(make_report().to_json())
    documented = {
        "schema", "tool_version", "model", "method", "verdict", "anomaly_index", "cutoff", "suspects",
        "classes", "data", "runtime_s", "model_queries", "seed", "config", "artifacts",
    }
    assert documented <= set(d)
    assert set(d) - documented == {"notes"}  # the only addition to §3; optional keys absent when unset
    assert d["schema"] == "trojanscan.scan/1"
    assert set(d["model"]) == {"path", "sha256", "input_shape", "num_classes"}  # "outputs" only when not logits
    assert set(d["data"]) == {"source", "n_images"}
    for c in d["classes"]:
        assert {"label", "statistic", "anomaly_index"} <= set(c) <= {"label", "statistic", "anomaly_index", "name", "extra"}
    assert d["verdict"] in ("benign", "trojaned")
    assert isinstance(d["suspects"], list) and d["suspects"] == [5]
    assert d["model"]["input_shape"] == [1, 28, 28]
    d_all = json.loads(make_all_report().to_json())
    assert set(d_all) - documented == {"notes", "trojan_probability", "reports"}


def test_nan_in_report_is_refused() -> None:
    r = make_report(runtime_s=math.nan)
    with pytest.raises(ValueError, match="NaN"):
        r.to_json()


def test_bad_verdict_raises() -> None:
    with pytest.raises(InvalidInputError, match="verdict"):
        make_report(verdict="maybe")


def test_save_and_load(tmp_path: Path) -> None:
    r = make_all_report()
    p = tmp_path / "sub" / "report.json"
    r.save_json(p)
    assert ScanReport.load_json(p) == r
    assert [f.name for f in p.parent.iterdir()] == ["report.json"]


def _failing_write(monkeypatch: pytest.MonkeyPatch) -> None:
    def write_half_then_fail(self: Path, data: bytes) -> int:
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", write_half_then_fail)


def test_save_json_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _failing_write(monkeypatch)
    with pytest.raises(OSError, match="No space"):
        make_report().save_json(tmp_path / "report.json")
    assert list(tmp_path.iterdir()) == []  # neither the report nor a leftover temporary file


def test_failed_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "report.json"
    old = make_report()
    old.save_json(p)
    before = p.read_bytes()
    _failing_write(monkeypatch)
    with pytest.raises(OSError):
        make_all_report().save_json(p)
    assert p.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["report.json"]


@pytest.mark.parametrize(
    "content",
    [
        '{"foo": 1}',
        "[1, 2, 3]",
        '"trojanscan.scan/1"',
        "null",
        "not json at all",
        "",
        '{"schema": "trojanscan.scan/2", "method": "x"}',
        '{"schema": "trojanscan.scan/1", "method": "x"}',  # right schema, missing keys
        '{"schema": "trojanscan.scan/1", "method": "x", "verdict": "benign", "anomaly_index": "high"}',
    ],
)
def test_load_non_report_raises(tmp_path: Path, content: str) -> None:
    p = tmp_path / "x.json"
    p.write_text(content)
    with pytest.raises(InvalidInputError):
        ScanReport.load_json(p)


def test_load_broken_report_fields_raise(tmp_path: Path) -> None:
    d = json.loads(make_report().to_json())
    d["classes"][0] = {"label": "zero"}
    with pytest.raises(InvalidInputError, match="malformed"):
        ScanReport.from_dict(d)
    d = json.loads(make_report().to_json())
    d["model"] = {"path": "m", "colour": "red"}
    with pytest.raises(InvalidInputError):
        ScanReport.from_dict(d)


def test_load_missing_or_binary_file_raises(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="cannot read"):
        ScanReport.load_json(tmp_path / "nope.json")
    p = tmp_path / "model.safetensors"
    p.write_bytes(b"\x80\x81\xfe\xff" * 16)
    with pytest.raises(InvalidInputError):
        ScanReport.load_json(p)


# ---------------------------------------------------------------------------------------------- HTML
def fake_artifacts(k: int = 10, c: int = 1, h: int = 28, w: int = 28) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(k, h, w, generator=g) * 0.5
    masks[5] = 0.0
    masks[5, h - 4 :, w - 4 :] = 1.0  # 4x4 square at the bottom right
    patterns = torch.rand(k, c, h, w, generator=g)
    patterns[5] = 1.0
    heat = torch.rand(k, c, h, w, generator=g)
    trig = torch.randn(k, c, h, w, generator=g) * 0.1
    return {"masks": masks, "patterns": patterns, "heatmaps": heat, "triggers": trig}


def _images(html: str) -> list[tuple[str, bytes]]:
    """(alt, PNG bytes) of every inline image."""
    out = []
    for alt, b64 in re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html):
        out.append((alt, base64.b64decode(b64)))
    return out


def test_render_html_is_self_contained() -> None:
    html = render_html(make_report(), fake_artifacts(), torch.zeros(3, 1, 28, 28))
    assert html.startswith("<!DOCTYPE html>")
    assert html.count("<html") == 1 and html.rstrip().endswith("</html>")
    low = html.lower()
    for ref in ("http://", "https://", 'src="http', "<link", "@import", "url(", "<script", "//cdn"):
        assert ref not in low, ref
    srcs = re.findall(r'src="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    imgs = _images(html)
    assert len(imgs) == len(srcs)
    for _, png in imgs:
        assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_render_html_content_and_escaping() -> None:
    r = make_report()
    html = render_html(r, fake_artifacts())
    assert "TROJANED" in html
    assert "5 (five)" in html  # the suspect, with its name
    assert "m.safetensors" in html and "ab" * 32 in html
    assert "neural_cleanse" in html
    assert "attack_success" in html  # the extra per-class field
    assert "in the JSON report" not in html
    runs = replace(r, classes=[replace(c, extra={**c.extra, "l1_run1": 1.0, "l1_run2": 2.0}) for c in r.classes])
    wide = render_html(runs, fake_artifacts())
    assert "attack_success" in wide and "l1_run" not in wide and "in the JSON report" in wide  # repeats: JSON only
    assert "a note" in html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert f"{r.anomaly_index:.2f}" in html


def test_render_html_benign() -> None:
    r = make_report(statistics=[100.0 + i for i in range(10)])
    assert r.verdict == "benign"
    html = render_html(r)
    assert "BENIGN" in html and "TROJANED" not in html
    assert "data:image/png;base64," in html  # the chart


def test_render_html_stamps_the_example_image() -> None:
    html = render_html(make_report(), fake_artifacts(), torch.zeros(2, 1, 28, 28))
    imgs = _images(html)
    stamped = [png for alt, png in imgs if alt.startswith("stamped (1-m)x")]
    assert stamped, [alt for alt, _ in imgs]
    a = np.asarray(Image.open(io.BytesIO(stamped[0])).convert("L"))  # first card = the suspect, class 5
    assert a.shape == (112, 112)  # 28 px upscaled 4x, nearest-neighbour
    small = a[::4, ::4]
    assert (small[24:, 24:] == 255).all()
    assert (small[:24, :] == 0).all() and (small[:, :24] == 0).all()
    triggered = [png for alt, png in imgs if alt.startswith("stamped clamp(x + t)")]
    assert triggered


def test_render_html_heatmaps_next_to_a_clean_class() -> None:
    arts = {"heatmaps": fake_artifacts()["heatmaps"]}
    html = render_html(make_report("neuron_inspect"), arts)
    alts = [alt for alt, _ in _images(html)]
    assert alts.count("heatmap") == 4  # suspect 5 + top 3 others
    assert sum(a.startswith("clean class") for a in alts) == 4


def test_render_html_method_all_sections_and_prefixed_artifacts() -> None:
    r = make_all_report()
    arts = fake_artifacts()
    html = render_html(
        r,
        {"neural_cleanse/masks": arts["masks"], "neural_cleanse/patterns": arts["patterns"],
         "deep_inspect/triggers": arts["triggers"]},
        torch.zeros(1, 28, 28),
    )
    assert 'id="m-neural_cleanse"' in html and 'id="m-deep_inspect"' in html
    assert "deviation factor" in html  # deep_inspect uses the double-MAD test
    assert "+inf" in html
    assert "93%" in html
    alts = [alt for alt, _ in _images(html)]
    assert any(a.startswith("mask") for a in alts)
    assert any(a.startswith("trigger") for a in alts)


def test_render_html_bad_artifacts_warn_not_crash() -> None:
    html = render_html(make_report(), {"masks": torch.zeros(3, 28, 28), "patterns": "nonsense"}, torch.zeros(1, 3, 5, 5))
    assert "Rendering notes" in html
    assert "masks" in html and "K = 10" in html


def test_render_html_many_classes_and_rgb() -> None:
    k = 43
    stats_ = [50.0 + (i % 7) for i in range(k)]
    stats_[12] = 1.0
    r = make_report(statistics=stats_, k=k, shape=(3, 32, 32))
    arts = fake_artifacts(k, 3, 32, 32)
    html = render_html(r, arts, torch.rand(4, 3, 32, 32))
    assert "12" in html and "TROJANED" in html
    imgs = _images(html)
    rgb = Image.open(io.BytesIO([png for alt, png in imgs if alt == "pattern"][0]))
    assert rgb.mode == "RGB" and rgb.size == (128, 128)


def test_render_html_rejects_non_report() -> None:
    with pytest.raises(InvalidInputError):
        render_html({"verdict": "benign"})  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        render_html(make_report(), [torch.zeros(1)])  # type: ignore[arg-type]


def test_write_html_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = make_report()
    p = tmp_path / "r.html"
    write_html(p, r, fake_artifacts())
    assert p.read_text(encoding="utf-8") == render_html(r, fake_artifacts())
    _failing_write(monkeypatch)
    q = tmp_path / "q.html"
    with pytest.raises(OSError):
        write_html(q, r)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["r.html"]


def test_cli_summary_prints_each_detectors_own_notes_under_it(capsys: pytest.CaptureFixture[str]) -> None:
    """``--method all`` prints a note every detector carries once (the combined report's), and each detector's own
    notes under its line, so nothing a detector had to say is left to the JSON."""
    from trojanscan.cli import _print_summary
    from trojanscan.scan import combine

    nc = make_report("neural_cleanse", notes=["shared note", "nc only"])
    di = make_report("deep_inspect", [1.0, 1, 1, 1, 1, 0.05, 1, 1, 1.2, 1], test="dmad", notes=["di only", "shared note"])
    rep = combine({"neural_cleanse": nc, "deep_inspect": di})
    assert rep.notes == ["shared note"]
    _print_summary(rep)
    lines = capsys.readouterr().out.splitlines()
    at = {name: next(i for i, ln in enumerate(lines) if ln.startswith(f"    {name}")) for name in rep.reports}
    assert lines[at["neural_cleanse"] + 1] == "      note: nc only"
    assert lines[at["deep_inspect"] + 1] == "      note: di only"
    assert [ln for ln in lines if "shared note" in ln] == ["  note: shared note"]


def test_cli_summary_says_how_many_labelled_images_the_accuracy_is_on(capsys: pytest.CaptureFixture[str]) -> None:
    """The accuracy check may read more images than the detector did (NeuronInspect: 50 of 500), so the summary's
    data line says both; a report saved before the count was recorded keeps the older wording."""
    from trojanscan.cli import _print_summary

    rep = make_report()
    for info, want in ((DataInfo("clean_data", 50, 0.994, 500), "  data:           clean_data (50 images; model accuracy "
                        "99.4 % on 500 labelled clean images)"),
                       (DataInfo("clean_data", 50, 0.994), "  data:           clean_data (50 images; model accuracy "
                        "99.4 % on the labelled clean data)"),
                       (DataInfo("model_inversion", 50), "  data:           model_inversion (50 images)")):
        _print_summary(replace(rep, data=info))
        assert want in capsys.readouterr().out.splitlines()


def test_label_rank_script_places_a_label_in_saved_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """scripts/label_rank.py prints the rank RESULTS.md quotes: the outlier 5 is first, a combined report gives a line
    per detector, and a label the report does not have is an error, not a line."""
    import runpy
    import sys

    from trojanscan.scan import combine

    single = tmp_path / "nc.json"
    single.write_text(make_report().to_json())
    both = tmp_path / "all.json"
    di = make_report("deep_inspect", [1.0, 1, 1, 1, 1, 0.05, 1, 1, 1.2, 1], test="dmad")
    both.write_text(combine({"neural_cleanse": make_report(), "deep_inspect": di}).to_json())
    script = str(Path(__file__).parents[1] / "scripts" / "label_rank.py")
    monkeypatch.setattr(sys, "argv", ["label_rank.py", "--label", "5", str(single), str(both)])
    runpy.run_path(script, run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all("label 5: index" in ln and "rank 1 of 10" in ln for ln in lines)
    assert lines[0].startswith(f"{single}: neural_cleanse: trojaned") and "statistic 10 (median" in lines[0]
    assert [ln.split(": ")[1] for ln in lines[1:]] == ["neural_cleanse", "deep_inspect"]
    assert all("; log scale: " in ln for ln in lines[:2])  # both statistics are norms: re-decided on the log scale
    assert "log scale: not available (the report has no per-class 'hinge'" in lines[2]  # a fake DI report lacks them
    monkeypatch.setattr(sys, "argv", ["label_rank.py", "--label", "10", str(single)])
    with pytest.raises(SystemExit, match="label 10 is not one of the report's 10 labels"):
        runpy.run_path(script, run_name="__main__")
