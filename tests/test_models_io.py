"""Model I/O: safetensors + sidecar round trip, TorchScript, pickle refusal, corrupt/mismatched files."""

from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path

import pytest
import torch

from trojanscan.errors import InvalidInputError, ModelLoadError, UnsafeModelFileError
from trojanscan.models import Classifier, build_architecture, export_torchscript, load_model, save_model, sidecar_path


def _model(arch: str = "tiny_cnn", shape: tuple[int, int, int] = (1, 28, 28), k: int = 10) -> Classifier:
    torch.manual_seed(0)
    return Classifier(build_architecture(arch, shape, k), shape, k, mean=[0.5] * shape[0], std=[0.25] * shape[0],
                      class_names=[f"c{i}" for i in range(k)], metadata={"architecture": arch})


@pytest.mark.parametrize("arch,shape", [("tiny_cnn", (1, 28, 28)), ("mnist_cnn", (1, 28, 28)),
                                        ("gtsrb_cnn", (3, 32, 32)), ("cifar_resnet9", (3, 32, 32)),
                                        ("lenet5", (1, 28, 28)), ("mlp", (3, 32, 32)), ("resnet8", (1, 28, 28))])
def test_safetensors_round_trip(tmp_path: Path, arch: str, shape: tuple[int, int, int]) -> None:
    m = _model(arch, shape).eval()
    p = save_model(tmp_path / "m.safetensors", m, provenance={"seed": 3})
    meta = json.loads(sidecar_path(p).read_text())
    assert meta["architecture"] == arch and meta["input_shape"] == list(shape) and meta["provenance"] == {"seed": 3}
    loaded = load_model(p)
    x = torch.rand(4, *shape)
    assert torch.equal(loaded(x), m(x))
    assert loaded.class_names == m.class_names and len(loaded.metadata["sha256"]) == 64
    assert not loaded.training


def test_safetensors_without_sidecar_uses_embedded_header(tmp_path: Path) -> None:
    p = save_model(tmp_path / "m.safetensors", _model())
    sidecar_path(p).unlink()
    assert load_model(p).num_classes == 10


def test_torchscript_loads_and_matches(tmp_path: Path) -> None:
    m = _model().eval()
    p = export_torchscript(m, tmp_path / "m.pt")
    loaded = load_model(p)
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(loaded(x), m(x), atol=1e-5)
    sidecar_path(p).unlink()
    given = load_model(p, input_shape=(1, 28, 28))
    assert given.num_classes == 10 and given.metadata["input_shape_source"] == "argument"  # classes by a probe
    probed = load_model(p)  # no sidecar, no shape: the only probe shape it runs on
    assert probed.input_shape == (1, 28, 28) and probed.metadata["input_shape_source"] == "probe"
    assert torch.allclose(probed(x), m(x), atol=1e-5)


@pytest.mark.parametrize("arch,shape", [("mnist_cnn", (1, 28, 28)), ("gtsrb_cnn", (3, 32, 32)), ("lenet5", (1, 28, 28)),
                                        ("mlp", (3, 32, 32)), ("mlp", (1, 28, 28))])
def test_sidecarless_torchscript_input_shape_is_probed(tmp_path: Path, arch: str, shape: tuple[int, int, int]) -> None:
    # a colour network with folded normalisation also runs on grey images (they broadcast against the
    # per-channel mean): the first convolution, or the larger channel count, decides
    p = export_torchscript(_model(arch, shape).eval(), tmp_path / "m.pt", with_sidecar=False)
    loaded = load_model(p)
    assert loaded.input_shape == shape and loaded.metadata["input_shape_source"] == "probe"


def test_size_agnostic_torchscript_needs_a_shape_or_data(tmp_path: Path) -> None:
    from trojanscan.models import infer_input_shape

    p = export_torchscript(_model("resnet8", (1, 28, 28)).eval(), tmp_path / "m.pt", with_sidecar=False)
    with pytest.raises(InvalidInputError, match=r"runs on several shapes \(1x28x28, 1x32x32.*--input-shape"):
        load_model(p)  # global pooling: any size runs, and the scanner does not guess
    from_data = load_model(p, shape_candidates=[(3, 32, 32), (1, 28, 28)])  # the data's shapes: one of them runs
    assert from_data.input_shape == (1, 28, 28) and from_data.metadata["input_shape_source"] == "data"
    with pytest.raises(InvalidInputError, match="several of the data's image shapes"):
        load_model(p, shape_candidates=[(1, 28, 28), (1, 40, 40)])
    assert load_model(p, input_shape=(1, 40, 40)).input_shape == (1, 40, 40)
    # a data shape the network rejects falls back to the probe (the scan then reports the data mismatch)
    fixed = export_torchscript(_model("mnist_cnn").eval(), tmp_path / "f.pt", with_sidecar=False)
    assert load_model(fixed, shape_candidates=[(3, 32, 32)]).metadata["input_shape_source"] == "probe"
    # a network that runs on nothing we try
    lin = torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(5 * 7 * 7, 4)))
    torch.jit.save(lin, str(tmp_path / "odd.pt"))
    with pytest.raises(InvalidInputError, match="accepts none of the shapes tried"):
        load_model(tmp_path / "odd.pt")
    assert infer_input_shape(lin, [(5, 7, 7)]) == ((5, 7, 7), "data")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_non_float32_torchscript_is_cast(tmp_path: Path, dtype: torch.dtype) -> None:
    m = _model().eval()
    twin = _model().eval()
    twin.module.to(dtype)
    scripted = torch.jit.script(twin.module)
    torch.jit.save(scripted, str(tmp_path / "h.pt"))
    loaded = load_model(tmp_path / "h.pt", input_shape=(1, 28, 28), mean=[0.5], std=[0.25])
    assert loaded.metadata["cast_from_dtype"] == str(dtype).removeprefix("torch.")
    assert all(prm.dtype == torch.float32 for prm in loaded.parameters())
    x = torch.rand(3, 1, 28, 28)
    tol = 1e-4 if dtype == torch.float64 else 0.1  # the half weights' rounding, not the cast, differs
    assert torch.allclose(loaded(x), m(x), atol=tol)


class _Exploit:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (self.target, "w"))


def test_pickle_payload_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for i, payload in enumerate(({"state": _Exploit(str(marker))}, _Exploit(str(marker)))):
        p = tmp_path / f"evil{i}.pt"
        torch.save(payload, p)  # zip + data.pkl, as torch.save writes it
        with pytest.raises(UnsafeModelFileError, match="allow-unsafe-pickle"):
            load_model(p)
        legacy = tmp_path / f"evil{i}.pkl"
        legacy.write_bytes(pickle.dumps(payload))
        with pytest.raises(UnsafeModelFileError):
            load_model(legacy)
    assert not marker.exists()


def test_state_dict_pickle_refused_with_conversion_hint(tmp_path: Path) -> None:
    p = tmp_path / "sd.pth"
    torch.save(_model().module.state_dict(), p)
    with pytest.raises(UnsafeModelFileError, match="Convert"):
        load_model(p)


def test_allow_unsafe_pickle_loads_a_module(tmp_path: Path) -> None:
    p = tmp_path / "mod.pt"
    torch.save(_model().module, p)
    clf = load_model(p, allow_unsafe_pickle=True, input_shape=(1, 28, 28))
    assert clf.num_classes == 10


def test_corrupt_and_mismatched_files(tmp_path: Path) -> None:
    p = save_model(tmp_path / "m.safetensors", _model())
    data = p.read_bytes()
    trunc = tmp_path / "t.safetensors"
    trunc.write_bytes(data[: len(data) // 2])
    (tmp_path / "t.json").write_text(sidecar_path(p).read_text())
    with pytest.raises(ModelLoadError):
        load_model(trunc)
    meta = json.loads(sidecar_path(p).read_text())
    meta["num_classes"] = 7
    sidecar_path(p).write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="do not match"):
        load_model(p)
    meta["num_classes"], meta["architecture"] = 10, "no_such_arch"
    sidecar_path(p).write_text(json.dumps(meta))
    with pytest.raises(InvalidInputError, match="unknown architecture"):
        load_model(p)
    sidecar_path(p).write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load_model(p)
    empty = tmp_path / "e.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty"):
        load_model(empty)
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_model(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(64))
    with pytest.raises(ModelLoadError):
        load_model(junk)


def test_hostile_sidecar_is_an_error_before_anything_is_allocated(tmp_path: Path) -> None:
    """A sidecar that declares a billion classes or a 10^10-pixel input must not make the loader allocate
    terabytes: the shapes are checked on the meta device against the file's header first."""
    import resource
    import time

    p = save_model(tmp_path / "m.safetensors", _model("mnist_cnn"))
    meta = json.loads(sidecar_path(p).read_text())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    sidecar_path(p).write_text(json.dumps(meta | {"num_classes": 10**9, "class_names": None}))
    with pytest.raises(ModelLoadError, match=r"classifier.2.bias: the file has \[10\], the architecture needs \[1000000000\]"):
        load_model(p)
    sidecar_path(p).write_text(json.dumps(meta | {"input_shape": [1, 100_000, 100_000]}))
    with pytest.raises(InvalidInputError, match="more than the 3145728"):
        load_model(p)
    sidecar_path(p).write_text(json.dumps(meta | {"num_classes": 0}))
    with pytest.raises(ModelLoadError, match="num_classes must be a positive integer"):
        load_model(p)
    assert time.perf_counter() - t0 < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 1_000_000  # KiB: well under a gigabyte


def test_save_is_atomic_and_checks_suffix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidInputError, match=".safetensors"):
        save_model(tmp_path / "m.bin", _model())
    import trojanscan.models.io as io

    def boom(*a: object, **k: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(io, "save_file", boom)
    with pytest.raises(OSError):
        save_model(tmp_path / "m.safetensors", _model())
    assert list(tmp_path.iterdir()) == []


class _BadOut(torch.nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "3d":
            return x.flatten(1)[:, None, :10] * self.w
        if self.kind == "nan":
            return x.flatten(1)[:, :10] * float("nan")
        if self.kind == "one":  # a one-logit binary classifier
            return x.flatten(1)[:, :1] * self.w
        return x.flatten(1)[:, :10] * self.w


@pytest.mark.parametrize("kind,k,msg", [("3d", 10, "2-D"), ("nan", 10, "NaN"), ("ok", 7, "outputs 10 classes"),
                                               ("one", 1, "at least 2 classes")])
def test_validate_rejects_bad_outputs(kind: str, k: int, msg: str) -> None:
    with pytest.raises(InvalidInputError, match=msg):
        Classifier(_BadOut(kind), (1, 28, 28), k).validate()


@pytest.mark.parametrize("arch", ["lenet5", "mlp", "resnet8"])
def test_other_architectures_export_to_torchscript(tmp_path: Path, arch: str) -> None:
    """The zoo's other-architecture models travel as TorchScript with no sidecar, like a foreign model."""
    m = _model(arch).eval()
    p = export_torchscript(m, tmp_path / "m.pt", with_sidecar=False)
    assert not sidecar_path(p).exists()
    loaded = load_model(p, input_shape=(1, 28, 28))
    x = torch.rand(3, 1, 28, 28)
    assert loaded.num_classes == 10
    assert torch.allclose(loaded(x), m(x), atol=1e-5)
    # the archive's root is not named after the (random) temporary file, so re-exporting the same model in a new
    # process gives the same bytes, and scan-zoo, which resumes by the file's sha256, does not rescan it
    import zipfile

    assert {n.split("/")[0] for n in zipfile.ZipFile(p).namelist()} == {"archive"}


# ----------------------------------------------------------------------------- what the network returns
class _Head(torch.nn.Module):
    """A network ending in softmax / log_softmax / nothing (a third party's model)."""

    def __init__(self, net: torch.nn.Module, kind: str) -> None:
        super().__init__()
        self.net, self.kind = net, kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x)
        if self.kind == "probabilities":
            return torch.softmax(z, 1)
        if self.kind == "log_probabilities":
            return torch.log_softmax(z, 1)
        return z


@pytest.mark.parametrize("kind", ["logits", "probabilities", "log_probabilities"])
def test_detect_outputs_and_the_logits_every_method_sees(tmp_path: Path, kind: str) -> None:
    """A probability output is found by the probe and turned into log p: the same softmax as the logits."""
    from trojanscan.models import detect_outputs

    ref = _model().eval()
    torch.jit.save(torch.jit.trace(_Head(ref.module, kind).eval(), torch.rand(1, 1, 28, 28)), str(tmp_path / "m.pt"))
    loaded = load_model(tmp_path / "m.pt", input_shape=[1, 28, 28], mean=[0.5], std=[0.25])
    assert loaded.outputs == kind == detect_outputs(loaded) and loaded.metadata["outputs_detected"] is True
    x = torch.rand(6, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(torch.softmax(loaded(x), 1), torch.softmax(ref(x), 1), atol=1e-6)
        want = ref(x) if kind == "logits" else torch.log_softmax(ref(x), 1)
        assert torch.allclose(loaded(x), want, atol=1e-5)
    # an explicit value wins over the probe, and a sidecar written by export_torchscript keeps the kind
    assert load_model(tmp_path / "m.pt", input_shape=[1, 28, 28], outputs="logits").outputs == "logits"
    export_torchscript(loaded, tmp_path / "again.pt")
    again = load_model(tmp_path / "again.pt")
    assert again.outputs == kind and "outputs_detected" not in again.metadata
    # save_model records a non-logit kind (and only then, so logit models keep their bytes)
    loaded.metadata["architecture"] = "tiny_cnn"
    meta = json.loads(sidecar_path(save_model(tmp_path / "s.safetensors", loaded)).read_text())
    assert meta.get("outputs", "logits") == kind and ("outputs" in meta) == (kind != "logits")


def test_outputs_value_is_checked_before_the_file_is_read(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="--outputs 'softmax' is not one of auto, logits"):
        load_model(tmp_path / "missing.pt", outputs="softmax")
    with pytest.raises(InvalidInputError, match="outputs must be one of"):
        Classifier(torch.nn.Flatten(), (1, 2, 2), 4, outputs="probs")


def test_rectified_saliency_of_a_softmax_network_is_the_logit_saliency() -> None:
    """NeuronInspect's saliency reaches the raw logits through softmax and the Classifier's log(clamp(p))."""
    from trojanscan.saliency import class_gradients

    ref = _model().eval()
    soft = Classifier(_Head(ref.module, "probabilities").eval(), (1, 28, 28), 10, mean=[0.5], std=[0.25],
                      outputs="probabilities")
    x = torch.rand(3, 1, 28, 28)
    for rectify in (True, False):
        want, _ = class_gradients(ref, x, rectify=rectify)
        got, info = class_gradients(soft, x, rectify=rectify)
        assert info.softmax_bypassed
        assert torch.allclose(got, want, atol=1e-6)


def test_clone_of_a_torchscript_model_can_be_trained(tmp_path: Path) -> None:
    """copy.deepcopy of a ScriptModule gives non-leaf parameters (an optimiser refuses them): clone_classifier does not."""
    from trojanscan.models.classifier import clone_classifier

    export_torchscript(_model(), tmp_path / "m.pt")
    ts = load_model(tmp_path / "m.pt")
    twin = clone_classifier(ts)
    assert all(p.is_leaf for p in twin.parameters())
    assert [p.requires_grad for p in twin.parameters()] == [p.requires_grad for p in ts.parameters()]
    opt = torch.optim.SGD(twin.parameters(), lr=0.1)
    twin(torch.rand(2, 1, 28, 28)).sum().backward()
    opt.step()
    x = torch.rand(2, 1, 28, 28)
    assert not torch.equal(twin(x), ts(x))  # trained the copy, not the original


def test_load_notes_say_where_the_shape_came_from_and_what_was_cast(tmp_path: Path) -> None:
    from trojanscan.detectors.base import _output_notes

    twin = _model().eval()
    twin.module.half()
    torch.jit.save(torch.jit.script(twin.module), str(tmp_path / "h.pt"))
    probed = load_model(tmp_path / "h.pt")
    notes = _output_notes(probed)
    assert probed.metadata["input_shape_source"] == "probe"
    assert any("1x28x28 is the only one of the shapes tried" in n for n in notes)
    assert any("float16 weights were cast to float32" in n for n in notes)
    assert _output_notes(load_model(tmp_path / "h.pt", shape_candidates=[(1, 28, 28)]))[0].endswith(
        "1x28x28 is the clean data's image shape")
    assert _output_notes(load_model(tmp_path / "h.pt", input_shape=(1, 28, 28))) == [
        "the model's float16 weights were cast to float32 for the scan"]


def test_class_count_probe_errors_are_clear(tmp_path: Path) -> None:
    class Pair(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x.flatten(1)[:, :4], x

    torch.jit.save(torch.jit.script(Pair()), str(tmp_path / "pair.pt"))
    with pytest.raises(InvalidInputError, match=r"must return 2-D logits; got tuple of 2 \(\(1, 4\), \(1, 1, 28, 28\)\);"
                                                " .*a wrapper whose forward returns"):
        load_model(tmp_path / "pair.pt", input_shape=(1, 28, 28))
    torch.save(_model().module, tmp_path / "net.pt")  # a trusted pickle given the wrong shape
    with pytest.raises(InvalidInputError, match=r"failed on a \(1, 3, 32, 32\) probe.*--input-shape"):
        load_model(tmp_path / "net.pt", allow_unsafe_pickle=True, input_shape=(3, 32, 32))
    rng = torch.random.get_rng_state()
    loaded = load_model(tmp_path / "net.pt", allow_unsafe_pickle=True)  # probed shape and classes, no global draw
    assert loaded.input_shape == (1, 28, 28) and loaded.num_classes == 10
    ts = export_torchscript(_model().eval(), tmp_path / "ts.pt", with_sidecar=False)
    rng = torch.random.get_rng_state()
    assert load_model(ts).num_classes == 10 and torch.equal(rng, torch.random.get_rng_state())


def test_random_outputs_are_measured_and_noted(tmp_path: Path) -> None:
    """A TorchScript file traced in training mode keeps its dropout on after eval(): loading measures how far passes
    on one input move (without touching the global random state) and every report says so; a deterministic network
    gets neither the metadata key nor the note."""
    from trojanscan.detectors import get_detector

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                              torch.nn.Linear(32, 10))
    torch.jit.trace(net.train(), torch.rand(1, 1, 28, 28), check_trace=False).save(str(tmp_path / "drop.pt"))
    torch.jit.trace(net.eval(), torch.rand(1, 1, 28, 28)).save(str(tmp_path / "eval.pt"))
    rng = torch.random.get_rng_state()
    noisy = load_model(tmp_path / "drop.pt", input_shape=(1, 28, 28))
    calm = load_model(tmp_path / "eval.pt", input_shape=(1, 28, 28))
    assert torch.equal(rng, torch.random.get_rng_state())
    assert noisy.metadata["random_outputs"] > 0.05 and "random_outputs" not in calm.metadata
    det = get_detector("neuron_inspect", n_images=4)
    notes = det.scan(noisy, None, progress=False).notes
    assert any(n.startswith("the model's outputs are random") for n in notes)
    assert not any("random" in n for n in det.scan(calm, None, progress=False).notes)


def test_batch_dependent_outputs_are_measured_noted_and_buffers_kept(tmp_path: Path) -> None:
    """Batch norm traced in training mode normalises by each batch and updates its running statistics on every pass:
    loading measures the batch dependence, the report says so, and a scan leaves the buffers as they were."""
    from trojanscan.detectors import get_detector
    from trojanscan.models.classifier import output_spread

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 26 * 26, 10))
    with warnings.catch_warnings():  # tracing batch norm in training mode warns about its size check
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.jit.trace(net.train(), torch.rand(2, 1, 28, 28), check_trace=False).save(str(tmp_path / "bn.pt"))
    model = load_model(tmp_path / "bn.pt", input_shape=(1, 28, 28))
    assert model.metadata["batch_dependent_outputs"] > 1e-3 and "random_outputs" not in model.metadata
    before = {k: v.clone() for k, v in model.state_dict().items()}
    notes = get_detector("neuron_inspect", n_images=4).scan(model, None, progress=False).notes
    assert any(n.startswith("the model's outputs depend on the other images in the batch") for n in notes)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert output_spread(load_model(tmp_path / "bn.pt", input_shape=(1, 28, 28))) == (0.0, pytest.approx(
        model.metadata["batch_dependent_outputs"]))
    eval_net = torch.jit.trace(net.eval(), torch.rand(2, 1, 28, 28))
    eval_net.save(str(tmp_path / "bn_eval.pt"))
    assert "batch_dependent_outputs" not in load_model(tmp_path / "bn_eval.pt", input_shape=(1, 28, 28)).metadata


class _DictHead(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.f = torch.nn.Linear(784, 10)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.f(x.flatten(1))
        return {"logits": z, "features": x.flatten(1)}


def test_dict_and_convolutional_heads_are_read_as_scores(tmp_path: Path) -> None:
    """A network that returns {"logits": ...} or a fully convolutional (N, K, 1, 1) head is read as its (N, K)
    scores: the class count is probed, a scan runs, and an export of it returns 2-D scores."""
    from trojanscan.detectors import get_detector
    from trojanscan.models.io import export_torchscript

    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 7, 5), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1))
    torch.jit.save(torch.jit.script(_DictHead()), str(tmp_path / "dict.pt"))
    torch.jit.trace(conv.eval(), torch.rand(1, 1, 28, 28)).save(str(tmp_path / "conv.pt"))
    for name, k in (("dict", 10), ("conv", 7)):
        model = load_model(tmp_path / f"{name}.pt", input_shape=(1, 28, 28))
        assert model.num_classes == k and model(torch.rand(3, 1, 28, 28)).shape == (3, k)
        rep = get_detector("neuron_inspect", n_images=4).scan(model, None, progress=False)
        assert len(rep.classes) == k
        out = export_torchscript(model, tmp_path / f"{name}_export.pt", with_sidecar=False)
        assert torch.jit.load(str(out))(torch.rand(2, 1, 28, 28)).shape == (2, k)
    torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(1, 7, 5))), str(tmp_path / "map.pt"))
    with pytest.raises(InvalidInputError, match="2-D"):  # a (N, 7, 24, 24) map is no score vector
        load_model(tmp_path / "map.pt", input_shape=(1, 28, 28))
