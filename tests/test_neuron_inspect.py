"""NeuronInspect: features by hand, hyperparameter checks, margin on the fixture models, TorchScript, data-free."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from trojanscan.data.base import Dataset
from trojanscan.detectors import get_detector
from trojanscan.detectors.neuron_inspect import (
    NeuronInspect,
    _balanced_indices,
    combine,
    even_selection,
    laplacian,
    own_class_excluded,
    persistence,
    smoothness,
    sparseness,
)
from trojanscan.errors import InvalidInputError
from trojanscan.models import export_torchscript, load_model
from trojanscan.recipes import BuiltModel
from trojanscan.report.scan_report import ScanReport

# ----------------------------------------------------------------------------- features by hand


def test_sparseness_and_smoothness_by_hand() -> None:
    m = torch.zeros(1, 2, 5, 5)
    m[0, 0, 2, 2] = 1.0  # a single spike: L1 1, Laplacian -4 at the centre, +1 at 4 neighbours -> L1 8
    m[0, 1] = 0.5  # constant map: L1 12.5, Laplacian 0 everywhere (replicate padding: no border edge)
    assert torch.allclose(sparseness(m), torch.tensor([(1.0 + 12.5) / 2]))
    assert torch.allclose(smoothness(m), torch.tensor([(8.0 + 0.0) / 2]))
    assert float(laplacian(m)[0, 0, 2, 2]) == -4.0


def test_persistence_is_the_chained_xor() -> None:
    maps = torch.rand(3, 6, 4, 4)
    t = 0.5
    b = maps > t
    chained = b[:, 0]
    for i in range(1, 6):
        chained = chained ^ b[:, i]
    assert torch.equal(persistence(maps, t), chained.flatten(1).sum(1).float())
    # a map that is identical in every image (even count) is perfectly persistent: 0
    same = torch.rand(1, 1, 4, 4).expand(1, 4, 4, 4)
    assert float(persistence(same, 0.5)) == 0.0


def test_own_class_exclusion_and_even_selection() -> None:
    labels = torch.tensor([0, 1, 1, 2, 0])
    use = own_class_excluded(labels, 3)
    assert use.tolist() == [[False, True, True, True, False], [True, False, False, True, True], [True, True, True, False, True]]
    even = even_selection(use)
    assert even.sum(1).tolist() == [2, 2, 4] and even[0].tolist() == [False, True, True, False, False]
    # a class with fewer than two other images falls back to all images
    assert own_class_excluded(torch.tensor([0, 0, 1]), 2)[0].tolist() == [True, True, True]
    # masked features average only the selected maps
    maps = torch.stack([torch.full((2, 2), float(v)) for v in (1, 2, 3)])[None].expand(2, 3, 2, 2)
    sel = torch.tensor([[True, False, True], [False, True, False]])
    assert sparseness(maps, sel).tolist() == [8.0, 8.0]


def test_combine_median_normalisation() -> None:
    sp, sm, pe = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 20.0, 30.0]), torch.tensor([0.0, 0.0, 0.0])
    f = combine(sp, sm, pe, (1.0, 1.0, 1.0), True)
    assert torch.allclose(f, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))  # 0.5+0.5, 1+1, 1.5+1.5; pe median 0
    g = combine(sp, sm, pe, (0.1, 1.0, 1.0), False)
    assert torch.allclose(g, torch.tensor([10.1, 20.2, 30.3], dtype=torch.float64))


def test_balanced_indices() -> None:
    y = torch.tensor([0] * 50 + [1] * 5 + [2] * 45)
    idx = _balanced_indices(y, 12, torch.Generator().manual_seed(0))
    counts = torch.bincount(y[idx], minlength=3)
    assert counts.tolist() == [4, 4, 4] and idx.unique().numel() == 12
    idx = _balanced_indices(y, 30, torch.Generator().manual_seed(0))
    assert torch.bincount(y[idx], minlength=3).tolist()[1] == 5  # class 1 exhausted, the rest fill up


# ----------------------------------------------------------------------------- hyperparameters


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_images": 1}, "n_images"),
        ({"n_images": 10.0}, "n_images"),
        ({"n_images": True}, "n_images"),
        ({"batch_size": 0}, "batch_size"),
        ({"inversion_steps": 0}, "inversion_steps"),
        ({"lambdas": (1.0, 1.0)}, "lambdas"),
        ({"lambdas": (-1.0, 1.0, 1.0)}, "lambdas"),
        ({"lambdas": (0.0, 0.0, 0.0)}, "lambdas"),
        ({"lambdas": (1.0, float("nan"), 1.0)}, "lambdas"),
        ({"threshold": -0.1}, "threshold"),
        ({"threshold": float("inf")}, "threshold"),
        ({"variant": "literal"}, "variant"),
        ({"rule": "deconvnet"}, "rule"),
        ({"rectify": "yes"}, "rectify"),
        ({"normalize_features": 1}, "normalize_features"),
        ({"exclude_own_class": None}, "exclude_own_class"),
        ({"cutoff": 0.0}, "cutoff"),
        ({"alpha": 1.5}, "alpha"),
    ],
)
def test_bad_hyperparameters_are_rejected(kwargs: dict[str, Any], name: str, clean_model: BuiltModel,
                                          digits: tuple[Dataset, Dataset]) -> None:
    det = get_detector("neuron_inspect", **kwargs)
    with pytest.raises(InvalidInputError, match=name):
        det.scan(clean_model.model, digits[1], progress=False)


def test_constructor_only_stores() -> None:
    det = NeuronInspect(n_images=-5, lambdas="junk")  # type: ignore[arg-type]
    assert det.get_params()["n_images"] == -5 and det.cutoff == 2.0 and det.alpha is None


def test_too_few_images(clean_model: BuiltModel, digits: tuple[Dataset, Dataset]) -> None:
    with pytest.raises(InvalidInputError, match="at least 2"):
        get_detector("neuron_inspect").scan(clean_model.model, digits[1].x[:1], progress=False)


# ----------------------------------------------------------------------------- the detector


def test_margin_trojaned_vs_clean(trojaned_model: BuiltModel, clean_model: BuiltModel, digits: tuple[Dataset, Dataset]) -> None:
    det = get_detector("neuron_inspect")
    bad = det.scan(trojaned_model.model, digits[1], seed=0, progress=False)
    good = det.scan(clean_model.model, digits[1], seed=0, progress=False)
    assert bad.verdict == "trojaned" and bad.suspects[0] == 5
    assert bad.anomaly_index > good.anomaly_index
    # report contents
    assert bad.method == "neuron_inspect" and bad.data.source == "clean_data" and bad.data.n_images == 50
    assert set(bad.classes[0].extra) == {"sparseness", "smoothness", "persistence"}
    assert any("rectified saliency" in n for n in bad.notes)
    heat = det.artifacts_["heatmaps"]
    assert heat.shape == (10, 28, 28) and bool(torch.isfinite(heat).all())
    # the sign convention: the target's statistic is the smallest (least sparse -> -f smallest)
    stats = [c.statistic for c in bad.classes]
    assert min(range(10), key=stats.__getitem__) == 5


def test_results_do_not_depend_on_batch_size(trojaned_model: BuiltModel, digits: tuple[Dataset, Dataset]) -> None:
    a = get_detector("neuron_inspect", n_images=10).scan(trojaned_model.model, digits[1], progress=False)
    b = get_detector("neuron_inspect", n_images=10, batch_size=7).scan(trojaned_model.model, digits[1], progress=False)
    for ca, cb in zip(a.classes, b.classes, strict=True):
        assert ca.statistic == pytest.approx(cb.statistic, rel=1e-5, abs=1e-6)
    # 10 x 10 saliency images, then the accuracy check on the 600 labelled clean images
    assert a.model_queries == b.model_queries == 10 * 10 + len(digits[1]) == 700
    assert a.data.model_accuracy == b.data.model_accuracy and a.data.model_accuracy is not None


def test_torchscript_model_gives_the_same_statistics(trojaned_model: BuiltModel, digits: tuple[Dataset, Dataset],
                                                     tmp_path: Path) -> None:
    export_torchscript(trojaned_model.model, tmp_path / "t.pt")
    ts = load_model(tmp_path / "t.pt")
    a = get_detector("neuron_inspect", n_images=10).scan(trojaned_model.model, digits[1], progress=False)
    b = get_detector("neuron_inspect", n_images=10).scan(ts, digits[1], progress=False)
    assert any("Relu x3" in n for n in b.notes)
    for ca, cb in zip(a.classes, b.classes, strict=True):
        assert ca.statistic == pytest.approx(cb.statistic, rel=1e-4, abs=1e-6)


def test_unlabelled_tensor_data_and_paper_variant(clean_model: BuiltModel, digits: tuple[Dataset, Dataset]) -> None:
    r = get_detector("neuron_inspect", n_images=11, variant="paper", rectify=False).scan(
        clean_model.model, digits[1].x[:40], progress=False
    )
    assert r.data.n_images == 10  # rounded down to even
    assert any("plain saliency" in n for n in r.notes) and any("own peak" in n for n in r.notes)


def test_data_free_uses_model_inversion(clean_model: BuiltModel) -> None:
    det = get_detector("neuron_inspect", n_images=20, inversion_per_class=2, inversion_steps=5)
    r = det.scan(clean_model.model, None, seed=0, progress=False)
    assert r.data.source == "model_inversion" and r.data.n_images == 20
    assert len(r.classes) == 10 and any("model-inversion" in n for n in r.notes)


def test_every_scan_with_labelled_data_reports_the_models_accuracy_and_warns_when_it_is_low(
        trojaned_model: BuiltModel, digits: tuple[Dataset, Dataset]) -> None:
    """The accuracy check of Detector.scan: on the right images the model is accurate and nothing is said; with its
    labels shuffled (as with a wrong class order) it is near chance and the report says what to check; unlabelled
    images give no accuracy."""
    from trojanscan.detectors.base import clean_accuracy

    clean = digits[1]
    good = get_detector("neuron_inspect", n_images=5).scan(trojaned_model.model, clean, progress=False)
    acc = clean_accuracy(trojaned_model.model, clean)
    assert acc is not None and good.data.model_accuracy == acc[0] > 0.85 and acc[1] == len(clean)
    assert good.data.model_accuracy_images == len(clean) > 10 * good.data.n_images  # the check reads them all
    assert not any("labelled clean images right" in n for n in good.notes)
    wrong = Dataset(clean.x, (clean.y + 3) % 10, clean.class_names, "relabelled")
    bad = get_detector("neuron_inspect", n_images=5).scan(trojaned_model.model, wrong, progress=False)
    assert bad.data.model_accuracy is not None and bad.data.model_accuracy < 0.2
    (note,) = [n for n in bad.notes if "labelled clean images right" in n]
    assert note.startswith(f"the model classifies only {100 * bad.data.model_accuracy:.1f} % of the 600 labelled")
    assert "--mean/--std" in note and "class order" in note
    unlabelled = get_detector("neuron_inspect", n_images=5).scan(trojaned_model.model, clean.x[:50], progress=False)
    assert unlabelled.data.model_accuracy is None and "model_accuracy" not in unlabelled.to_dict()["data"]
    assert unlabelled.data.model_accuracy_images is None and "model_accuracy_images" not in unlabelled.to_dict()["data"]
    assert ScanReport.from_json(bad.to_json()).data == bad.data
    older = bad.to_dict()  # a report saved before the image count was recorded still loads
    del older["data"]["model_accuracy_images"]
    assert ScanReport.from_dict(older).data.model_accuracy_images is None
    from trojanscan.report.html import render_html

    assert (f"<th>model accuracy on the clean data</th><td>{100 * bad.data.model_accuracy:.1f} % on 600 labelled "
            "images</td>") in render_html(
        bad, {})
