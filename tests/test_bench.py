"""The benchmark runner: cached models and scans, tables, resumability, the --detectors and --models filters."""

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


#: Neural Cleanse cut short: these tests exercise the runner's caching and filters, not the detector (at its
#: defaults this was the suite's slowest test, for nothing the tests read)
FAST_NC = {"epochs": 2, "steps_per_epoch": 2, "patience": 1, "early_stop_patience": 1}


@experiment("test_tiny")
def _tiny(ctx: Context) -> None:
    rows = [_scan_row(ctx, name, recipe, det, data_free=False, params=FAST_NC if det == "neural_cleanse" else None)
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
    # target_index is the true target's own index (read from the cached scan), not the model-level maximum
    for r in ran:
        scan = next((out / "scans").glob(f"{r['model']}__neuron_inspect__*.json"))
        by_label = {c["label"]: c["anomaly_index"] for c in json.loads(scan.read_text())["classes"]}
        assert r["target_index"] == (by_label[5] if r["model"] == "syn_badnets_t5" else None)
    assert all(r["target_index"] is None for r in skipped)
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
    # the clean sample and the test images outside it split the test set
    small = Context(tmp_path, out, progress=False, n_clean=20)
    clean, unseen = small.clean_data("synthetic"), small.unseen_test("synthetic")
    rows_of = lambda d: {tuple(v) for v in d.x.flatten(1).tolist()}  # noqa: E731
    assert len(clean) == 20 and len(unseen) > 20 and not rows_of(clean) & rows_of(unseen)
    assert len(rows_of(clean) | rows_of(unseen)) == len(clean) + len(unseen)


def test_models_filter_computes_only_matching_rows_and_reads_the_rest_from_the_cache(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    run("test_tiny", tmp_path, out, progress=False, models=("syn_cl*",))
    rows = {(r["model"], r["detector"]): r for r in json.loads((out / "test_tiny.json").read_text())}
    assert all(rows[("syn_clean", d)]["index"] is not None for d in ("neuron_inspect", "neural_cleanse"))
    assert all(rows[("syn_badnets_t5", d)]["verdict"] == "not run" for d in ("neuron_inspect", "neural_cleanse"))
    assert rows[("syn_badnets_t5", "neuron_inspect")]["clean_acc"] is None
    assert not (out / "models" / "syn_badnets_t5.safetensors").exists()  # an unselected model is not trained
    # a later run of one detector on every model: the other detector's cached scan fills its row, nothing is rescanned
    nc_scan = next((out / "scans").glob("syn_clean__neural_cleanse__*.json"))
    stamp = nc_scan.stat().st_mtime_ns
    run("test_tiny", tmp_path, out, progress=False, detectors=("neuron_inspect",))
    rows2 = {(r["model"], r["detector"]): r for r in json.loads((out / "test_tiny.json").read_text())}
    assert rows2[("syn_clean", "neural_cleanse")] == rows[("syn_clean", "neural_cleanse")]
    assert rows2[("syn_badnets_t5", "neural_cleanse")]["verdict"] == "not run"
    assert rows2[("syn_badnets_t5", "neuron_inspect")]["index"] is not None
    assert nc_scan.stat().st_mtime_ns == stamp


def test_runner_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="unknown experiment"):
        run("no_such_experiment", tmp_path, tmp_path / "o")
    with pytest.raises(InvalidInputError, match="unknown detector"):
        run("test_tiny", tmp_path, tmp_path / "o", detectors=("magic",))
    with pytest.raises(InvalidInputError, match="not a directory"):
        run("test_tiny", tmp_path / "missing", tmp_path / "o")
    with pytest.raises(InvalidInputError, match="--models is empty"):
        run("test_tiny", tmp_path, tmp_path / "o", models=())
    assert not (tmp_path / "o").exists()
    assert "core_mnist" in EXPERIMENTS and "di_fig6" in EXPERIMENTS


def test_markdown_table_escapes_pipes_in_names_and_cells(tmp_path: Path) -> None:
    ctx = Context(data_dir=tmp_path, out=tmp_path)
    write_table(ctx, "pipes", [{"|T|": 3, "note": "a|b"}], title="t")
    lines = (tmp_path / "pipes.md").read_text().splitlines()
    header, sep, row = lines[-3:]
    assert header == "| \\|T\\| | note |" and sep == "|---|---|" and row == "| 3 | a\\|b |"


def test_poison_finetune_starts_from_the_cached_base_and_keeps_old_keys(tmp_path: Path) -> None:
    from trojanscan.bench import zoo
    from trojanscan.recipes import poison_finetune

    base = RECIPES["syn_clean"]
    assert "base" not in base.to_dict()  # recipes without a base keep the keys they always had
    ft = poison_finetune(base, AttackSpec("badnets", target="3", trigger_size=5), epochs=1, seed=1)
    assert ft.to_dict()["base"] == base.to_dict() and ft.key() != base.key()
    assert ft.config is not None and base.config is not None and ft.config.lr == base.config.lr / 4
    with pytest.raises(InvalidInputError, match="epochs"):
        poison_finetune(base, None, epochs=0)
    cache = tmp_path / "models"
    clean, _ = zoo.get_or_train("my_clean", base, tmp_path, cache, progress=False, log=None)
    model, truth = zoo.get_or_train("syn_ft_t3", ft, tmp_path, cache, progress=False, log=None)
    # the base was found under its own name by recipe key, not trained again as base_<key>
    assert sorted(p.name for p in cache.glob("*.safetensors")) == ["my_clean.safetensors", "syn_ft_t3.safetensors"]
    assert truth["targets"] == [3] and truth["recipe_key"] == ft.key()
    assert model.metadata["provenance"]["recipe"]["base"]["seed"] == 0
    # it started from the base: after one short epoch its weights are still close to the base's
    pairs = zip(model.state_dict().values(), clean.state_dict().values(), strict=True)
    moved = [float((a - b).norm() / b.norm()) for a, b in pairs if a.is_floating_point() and b.norm() > 0]
    assert max(moved) < 0.5
    # with no cached base, the base is trained once as base_<key> and reused
    other = tmp_path / "other"
    zoo.get_or_train("syn_ft_t3", ft, tmp_path, other, progress=False, log=None)
    assert (other / f"base_{base.key()}.safetensors").is_file()


def test_poison_finetune_rejects_a_base_of_another_dataset_or_architecture() -> None:
    bad = TrainRecipe("synthetic", attack=AttackSpec("badnets", target="1"), base=TrainRecipe("mnist"))
    with pytest.raises(InvalidInputError, match="keep the base model's dataset"):
        bad.key()
    bad_arch = TrainRecipe("synthetic", arch="tiny_cnn", base=TrainRecipe("synthetic", arch="mnist_cnn"))
    with pytest.raises(InvalidInputError, match="architecture"):
        bad_arch.key()


def test_gtsrb_variants_are_poison_finetunes_unless_from_scratch(tmp_path: Path) -> None:
    from trojanscan.bench.experiments import _variant

    spec = AttackSpec("badnets", target="20", trigger_size=6)
    name, recipe = _variant(Context(tmp_path, tmp_path), "gtsrb_badnets6_t20", spec)
    assert name == "gtsrb_ft_badnets6_t20" and recipe.base == TrainRecipe("gtsrb", seed=0).resolved()
    assert recipe.attack == spec and recipe.config is not None and recipe.config.epochs == 2
    name, recipe = _variant(Context(tmp_path, tmp_path, from_scratch=True), "gtsrb_badnets6_t20", spec)
    assert name == "gtsrb_badnets6_t20" and recipe == TrainRecipe("gtsrb", attack=spec)


def test_port_settings_are_valid_detector_settings() -> None:
    from trojanscan.bench.experiments import PORT_SETTINGS
    from trojanscan.detectors import get_detector

    assert "vs_ports" in EXPERIMENTS
    for det, params in PORT_SETTINGS.items():
        d = get_detector(det, **params)
        d._check_params()  # the scan would reject them first
        assert all(d.get_params()[k] == v for k, v in params.items())


def test_query_only_rows_scan_a_cached_onnx_twin(tmp_path: Path) -> None:
    """``_scan_row(query=...)``: the model's ONNX export, scanned query-only, cached apart from the white-box scan and
    reused on a re-run (the export gives the same bytes)."""
    out = tmp_path / "bench"
    ctx = Context(tmp_path, out, progress=False)
    fast = FAST_NC
    name, recipe = "syn_badnets_t5", RECIPES["syn_badnets_t5"]
    wb = _scan_row(ctx, name, recipe, "neural_cleanse", data_free=False, params=fast)
    qo = _scan_row(ctx, name, recipe, "neural_cleanse", data_free=False, params=fast, query={"query_samples": 2})
    assert (out / "onnx" / f"{name}.onnx").is_file()
    scans = sorted((out / "scans").iterdir())
    assert len(scans) == 2
    assert qo["queries"] > 2 * wb["queries"]  # every gradient step costs 1 + 2q queries per image instead of 1
    stamps = {p: p.stat().st_mtime_ns for p in scans}
    again = _scan_row(ctx, name, recipe, "neural_cleanse", data_free=False, params=fast, query={"query_samples": 2})
    assert again == qo and {p: p.stat().st_mtime_ns for p in scans} == stamps
