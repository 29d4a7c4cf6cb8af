"""TorchScript vetting: a TorchScript file whose code can touch files or the network never runs.

Each payload below is shown to be live (with ``allow_unsafe_torchscript=True`` it does write its file), so the
refusals are not vacuous."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from trojanscan.cli import main
from trojanscan.errors import ModelLoadError, UnsafeModelFileError
from trojanscan.models import Classifier, build_architecture, export_torchscript, load_model
from trojanscan.models.vetting import vet_onnx, vet_source, vet_torchscript


class _WritesInForward(nn.Module):
    """A two-class 'classifier' whose forward overwrites ``target`` (8 bytes of 'A') through torch.from_file."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target
        self.w = nn.Parameter(torch.randn(2, 4, generator=torch.Generator().manual_seed(0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.from_file(self.target, shared=True, size=8, dtype=torch.uint8)
        t.fill_(65)
        return x.flatten(1) @ self.w.t() + t.sum().float() * 0  # the output depends on t: not dead code


class _SavesInForward(nn.Module):
    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target
        self.w = nn.Parameter(torch.randn(2, 4, generator=torch.Generator().manual_seed(0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.save(x, self.target)
        return x.flatten(1) @ self.w.t()


class _HasState(nn.Module):
    """Scripted with __getstate__/__setstate__, so torch.jit.load runs __setstate__ while it loads."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(2, 4, generator=torch.Generator().manual_seed(0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w.t()

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, bool]:
        return (self.w, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool]) -> None:
        self.w = state[0]
        self.training = state[1]


def _rewrite_source(src: Path, dst: Path, old: str, new: str) -> None:
    """Copy a TorchScript archive, replacing ``old`` with ``new`` in its source: what an attacker who writes the
    archive by hand can do (the JIT compiles whatever source the archive carries)."""
    hits = 0
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if "/code/" in info.filename and info.filename.endswith(".py") and old.encode() in data:
                data, hits = data.replace(old.encode(), new.encode()), hits + 1
            zout.writestr(info.filename, data)
    assert hits == 1


def test_forward_that_writes_a_file_is_refused_and_the_file_never_appears(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pt"
    torch.jit.script(_WritesInForward(str(marker))).save(str(p))
    with pytest.raises(UnsafeModelFileError, match=r"from_file at \S*/code/\S*\.py:\d+.*allow-unsafe-torchscript"):
        load_model(p, input_shape=(1, 2, 2))
    assert not marker.exists()
    m = load_model(p, input_shape=(1, 2, 2), allow_unsafe_torchscript=True)  # the payload is live: the probe writes
    assert marker.read_bytes() == b"A" * 8 and m.metadata["torchscript_vetted"] is False
    from trojanscan.detectors.base import _output_notes

    assert any("WITHOUT vetting" in n for n in _output_notes(m))  # and every report of it says so


def test_torch_save_in_forward_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "saved.pt"
    p = tmp_path / "evil.pt"
    torch.jit.script(_SavesInForward(str(marker))).save(str(p))
    with pytest.raises(UnsafeModelFileError, match="aten::save writes a file"):
        load_model(p, input_shape=(1, 2, 2))
    assert not marker.exists()
    load_model(p, input_shape=(1, 2, 2), allow_unsafe_torchscript=True)
    assert marker.exists()


def test_setstate_payload_is_refused_before_the_archive_is_loaded(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    plain, evil = tmp_path / "plain.pt", tmp_path / "evil.pt"
    torch.jit.script(_HasState()).save(str(plain))
    assert vet_torchscript(plain) == []
    _rewrite_source(plain, evil, "    self.w = (state)[0]\n",
                    f"    _t = torch.from_file({str(marker)!r}, True, 8, dtype=0)\n"
                    "    self.w = torch.add((state)[0], torch.mul(torch.sum(torch.fill_(_t, 66)), 0))\n")
    with pytest.raises(UnsafeModelFileError, match="from_file"):
        load_model(evil, input_shape=(1, 2, 2))
    assert not marker.exists()
    torch.jit.load(str(evil))  # what an unvetted load does: __setstate__ writes the file while loading
    assert marker.read_bytes() == b"B" * 8


def test_cli_scan_refuses_with_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "evil.pt"
    torch.jit.script(_WritesInForward(str(tmp_path / "pwned"))).save(str(p))
    before = set(tmp_path.iterdir())
    code = main(["scan", str(p), "--input-shape", "1,2,2", "--method", "neuron_inspect",
                 "--json", str(tmp_path / "r.json"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "from_file" in err and "--allow-unsafe-torchscript" in err
    assert len([ln for ln in err.strip().splitlines() if ln.startswith("error:")]) == 1
    assert set(tmp_path.iterdir()) == before  # no report, and no file from the payload


@pytest.mark.parametrize("source,what", [
    ("def f(x: Tensor) -> Tensor:\n  return ops.c10d.allreduce_(x)\n", "ops.c10d"),
    ("def f(x: Tensor) -> Tensor:\n  return torch.ops.symm_mem.one_shot_all_reduce(x)\n", "ops.symm_mem"),
    ("def f(x: Tensor) -> Tensor:\n  return ops.debugprims.load_tensor('a', [1], [1], 6, 0)\n", "load_tensor"),
    ("def f(x: Tensor) -> Tensor:\n  return getattr(torch, 'from_file')('a')\n", "'from_file'"),
    ("def f(x: Tensor) -> Tensor:\n  g = torch.from_file\n  return g('a')\n", "from_file"),
    ("def f(x: Tensor) -> Tensor:\n  return ops.prim.rpc_async('w', x)\n", "rpc_async"),
    ("def f(x: Tensor) -> Tensor:\n  return ops.my_library.anything(x)\n", "ops.my_library"),
    ("def f(x: Tensor) -> Tensor:\n  o = ops\n  return o.c10d.allreduce_(x)\n", "c10d"),  # an aliased namespace
    ("class M(Module):\n  pg : __torch__.torch.classes.c10d.ProcessGroup\n", "torch.classes.c10d"),
])
def test_source_reaching_files_network_or_foreign_ops_is_found(source: str, what: str) -> None:
    found = vet_source(source, "code/__torch__.py")
    assert any(f.what == what for f in found), found


@pytest.mark.parametrize("source", [
    "def f(x: Tensor) -> Tensor:\n  return torch.relu(torch.conv2d(x, torch.ones([1, 1, 3, 3])))\n",
    "class C(Module):\n  p : __torch__.torch.classes.quantized.Conv2dPackedParamsBase\n"
    "  def forward(self, x: Tensor) -> Tensor:\n    ops.prim.RaiseException('bad', 'builtins.ValueError')\n"
    "    return ops.quantized.conv2d(x, self.p, 1.0, 0)\n",
    "def f(x: Tensor) -> Tensor:\n  saved = torch.mul(x, 2)\n  return saved\n",  # a name that merely contains 'save'
])
def test_tensor_only_source_passes(source: str) -> None:
    assert vet_source(source, "code/__torch__.py") == []


@pytest.mark.parametrize("arch,shape", [("tiny_cnn", (1, 28, 28)), ("mnist_cnn", (1, 28, 28)),
                                        ("gtsrb_cnn", (3, 32, 32)), ("cifar_resnet9", (3, 32, 32)),
                                        ("lenet5", (1, 28, 28)), ("mlp", (3, 32, 32)), ("resnet8", (1, 28, 28)),
                                        ("resnet18", (3, 32, 32))])
def test_every_registered_architecture_passes_traced_and_scripted(tmp_path: Path, arch: str,
                                                                  shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    m = Classifier(build_architecture(arch, shape, 10), shape, 10, mean=[0.5] * shape[0], std=[0.25] * shape[0]).eval()
    traced = export_torchscript(m, tmp_path / "t.pt")
    scripted = tmp_path / "s.pt"
    torch.jit.script(m.module).save(str(scripted))
    for p in (traced, scripted):
        assert vet_torchscript(p) == [], p
        assert load_model(p, input_shape=shape).metadata["torchscript_vetted"] is True
    frozen, optimised = tmp_path / "f.pt", tmp_path / "o.pt"  # constants folded; MKL-DNN convolutions (ops.prim)
    torch.jit.freeze(torch.jit.script(m.module)).save(str(frozen))
    torch.jit.optimize_for_inference(torch.jit.script(m.module)).save(str(optimised))
    assert vet_torchscript(frozen) == [] and vet_torchscript(optimised) == []


def test_archives_that_cannot_be_vetted_are_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain.pt"
    torch.jit.script(_HasState()).save(str(plain))
    no_code = tmp_path / "nocode.pt"
    with zipfile.ZipFile(plain) as zin, zipfile.ZipFile(no_code, "w") as zout:
        for info in zin.infolist():
            if "/code/" not in info.filename:
                zout.writestr(info.filename, zin.read(info.filename))
    with pytest.raises(ModelLoadError, match="no source"):
        vet_torchscript(no_code)
    broken = tmp_path / "broken.pt"
    _rewrite_source(plain, broken, "  def forward(", "  def forward((")
    with pytest.raises(ModelLoadError, match="does not parse"):
        load_model(broken, input_shape=(1, 2, 2))


def test_scan_zoo_records_a_hostile_torchscript_file_as_failed_and_scans_the_rest(
    tmp_path: Path, trojaned_model, digits  # type: ignore[no-untyped-def]
) -> None:
    import json

    from trojanscan.bench.zooscan import scan_zoo
    from trojanscan.data.npz import save_npz
    from trojanscan.models import save_model

    d = tmp_path / "zoo"
    d.mkdir()
    marker = tmp_path / "pwned"
    save_model(d / "troj.safetensors", trojaned_model.model)
    (d / "troj.truth.json").write_text(json.dumps(trojaned_model.truth()))
    torch.jit.script(_WritesInForward(str(marker))).save(str(d / "evil.pt"))
    (d / "evil.truth.json").write_text(json.dumps({"trojaned": False}))
    data = tmp_path / "clean.npz"
    save_npz(data, digits[1].subset(torch.arange(100), "zoo clean data"))
    doc = scan_zoo(d, tmp_path / "out", data=[data], method="neuron_inspect", workers=1, progress=False)
    rows = {r["model"]: r for r in doc["models"]}
    assert rows["evil.pt"]["status"] == "failed" and "from_file" in rows["evil.pt"]["error"]
    assert rows["troj.safetensors"]["status"] == "ok"
    assert not marker.exists()
    # a trusted folder: the override reaches the workers (the file now loads, so its payload runs)
    scan_zoo(d, tmp_path / "out2", data=[data], method="neuron_inspect", workers=1, progress=False,
             input_shape=None, allow_unsafe_torchscript=True)
    assert marker.exists()


def _onnx_with_external_weight(location: str, *, as_constant: bool = False) -> bytes:
    """A 2x2 -> 10 linear ONNX classifier whose weight W (4 x 10 floats) is stored in the external file
    ``location``; as an initializer, or as the value of a Constant node inside an If branch."""
    from onnx import TensorProto, helper

    w = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4, 10], data_location=TensorProto.EXTERNAL)
    for k, v in (("location", location), ("offset", "0"), ("length", "160")):
        e = w.external_data.add()
        e.key, e.value = k, v
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1, 2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 10])
    nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=1), helper.make_node("MatMul", ["f", "W"], ["y"])]
    inits = [w]
    if as_constant:
        branch = helper.make_graph([helper.make_node("Constant", [], ["Wc"], value=w)], "b", [],
                                   [helper.make_tensor_value_info("Wc", TensorProto.FLOAT, [4, 10])])
        cond = helper.make_tensor("c", TensorProto.BOOL, [], [True])
        nodes = [helper.make_node("Constant", [], ["cond"], value=cond),
                 helper.make_node("If", ["cond"], ["W"], then_branch=branch, else_branch=branch)] + nodes
        inits = []
    g = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m.SerializeToString()


def test_onnx_that_reads_another_file_into_its_weights_is_refused(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np
    import onnxruntime as ort

    (tmp_path / ".ssh").mkdir()  # a scan started from the home folder: every file beneath it is in reach
    (tmp_path / ".ssh" / "id_key").write_bytes(np.arange(40, dtype=np.float32).tobytes())
    monkeypatch.chdir(tmp_path)
    raw = _onnx_with_external_weight(".ssh/id_key")
    # the payload is live: onnxruntime reads the file beneath the working directory even for a session from bytes
    got = ort.InferenceSession(raw, providers=["CPUExecutionProvider"]).run(None, {"x": np.ones((1, 1, 2, 2), np.float32)})
    assert got[0][0].tolist() == [60.0 + 4 * i for i in range(10)]
    p = tmp_path / "evil.onnx"
    p.write_bytes(raw)
    with pytest.raises(UnsafeModelFileError, match=r"initializer 'W'.*external file '\.ssh/id_key'"):
        load_model(p, input_shape=(1, 2, 2))
    found = vet_onnx(_onnx_with_external_weight(".ssh/id_key", as_constant=True), "c.onnx")
    assert sorted(f.what for f in found) == ["node 'If' attribute 'else_branch': node 'Constant' attribute 'value'",
                                             "node 'If' attribute 'then_branch': node 'Constant' attribute 'value'"]


def test_exported_onnx_passes(tmp_path: Path) -> None:
    from trojanscan.models import export_onnx

    torch.manual_seed(0)
    m = Classifier(build_architecture("tiny_cnn", (1, 28, 28), 10), (1, 28, 28), 10).eval()
    p = export_onnx(m, tmp_path / "m.onnx")
    assert vet_onnx(p.read_bytes(), str(p)) == []
    assert not load_model(p).white_box
