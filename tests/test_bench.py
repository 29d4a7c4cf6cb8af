"""The benchmark runner: cached models and scans, tables, resumability, the --detectors filter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trojanscan.bench.experiments import _scan_row
from trojanscan.bench.runner import EXPERIMENTS, Context, experiment, run, write_table
from trojanscan.errors import InvalidInputError
from trojanscan.recipes import AttackSpec, TrainRecipe
from trojanscan.training import TrainConfig

ONE_EPOCH = TrainConfig(epochs=1, batch_size=64, lr=3e-3)
RECIPES = {
    "syn_clean": TrainRecipe("synthetic", config=ONE_EPOCH, seed=0),
    "syn_badnets_t5": TrainRecipe("synthetic", attack=AttackSpec("badnets", target="5"), config=ONE_EPOCH, seed=0),
}


@experiment("test_tiny")
def _tiny(ctx: Context) -> None:
    rows = [_scan_row(ctx, name, recipe, det, data_free=False)
            for name, recipe in RECIPES.items() for det in ("neuron_inspect", "neural_cleanse")]
    write_table(ctx, "test_tiny", rows, title="tiny", command="pytest")


def test_runner_caches_models_and_scans_and_filters_detectors(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    run("test_tiny", tmp_path, out, progress=False, detectors=("neuron_inspect",))
    rows = json.loads((out / "test_tiny.json").read_text())
    assert len(rows) == 4
    ran = [r for r in rows if r["detector"] == "neuron_inspect"]
    skipped = [r for r in rows if r["detector"] == "neural_cleanse"]
    assert all(r["verdict"] in ("benign", "trojaned") and r["index"] is not None for r in ran)
    assert all(r["verdict"] == "not run" and r["index"] is None for r in skipped)
    assert {r["truth"] == [5] for r in ran if r["model"] == "syn_badnets_t5"} == {True}
    for ext in ("csv", "md", "json"):
        assert (out / f"test_tiny.{ext}").is_file()
    assert "Command: `pytest`" in (out / "test_tiny.md").read_text()
    models = sorted(p.name for p in (out / "models").iterdir())
    assert "syn_badnets_t5.safetensors" in models and "syn_clean.truth.json" in models
    scans = sorted((out / "scans").iterdir())
    assert len(scans) == 2 and all("__neuron_inspect__" in p.name for p in scans)
    # a re-run trains nothing and rescans nothing: the cached files are untouched
    stamps = {p: p.stat().st_mtime_ns for p in [*scans, *(out / "models").iterdir()]}
    run("test_tiny", tmp_path, out, progress=False, detectors=("neuron_inspect",))
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert json.loads((out / "test_tiny.json").read_text()) == rows
    # familywise only moves the cutoff: it reuses the cached scan (no rescan) and re-decides it
    ctx = Context(tmp_path, out, progress=False)
    model, _ = ctx.model("syn_badnets_t5", RECIPES["syn_badnets_t5"])
    plain = ctx.scan("syn_badnets_t5", model, "neuron_inspect", ctx.clean_data("synthetic"))
    fw = ctx.scan("syn_badnets_t5", model, "neuron_inspect", ctx.clean_data("synthetic"), params={"familywise": True})
    assert sorted((out / "scans").iterdir()) == scans
    assert fw.cutoff > plain.cutoff == 2.0 and [c.anomaly_index for c in fw.classes] == [c.anomaly_index for c in plain.classes]


def test_runner_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="unknown experiment"):
        run("no_such_experiment", tmp_path, tmp_path / "o")
    with pytest.raises(InvalidInputError, match="unknown detector"):
        run("test_tiny", tmp_path, tmp_path / "o", detectors=("magic",))
    with pytest.raises(InvalidInputError, match="not a directory"):
        run("test_tiny", tmp_path / "missing", tmp_path / "o")
    assert not (tmp_path / "o").exists()
    assert "core_mnist" in EXPERIMENTS and "di_fig6" in EXPERIMENTS


def test_markdown_table_escapes_pipes_in_names_and_cells(tmp_path: Path) -> None:
    ctx = Context(data_dir=tmp_path, out=tmp_path)
    write_table(ctx, "pipes", [{"|T|": 3, "note": "a|b"}], title="t")
    lines = (tmp_path / "pipes.md").read_text().splitlines()
    header, sep, row = lines[-3:]
    assert header == "| \\|T\\| | note |" and sep == "|---|---|" and row == "| 3 | a\\|b |"
