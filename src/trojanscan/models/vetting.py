"""Static vetting of a TorchScript archive before anything in it runs.

A TorchScript file is a program, not a table of weights: PyTorch's security policy asks that an untrusted one be
treated like local executable code, and ``torch.jit.load`` has no safe mode. Loading compiles the source the archive
carries (``<root>/code/**/*.py``, TorchScript written in Python syntax) and runs any ``__setstate__`` it defines;
every scan query then runs its ``forward``. Most builtins it can reach only compute on tensors, but a few reach the
machine: ``aten::from_file`` maps a file into memory, creating it if need be, so writing to the tensor writes to
disk (any file the user can write: a shell profile, an SSH key list, a Python package); ``aten::save`` writes a file;
``prim::rpc_*`` call remote workers; the ``c10d`` / ``symm_mem`` collectives and TorchBind classes such as
``torch.classes.c10d`` open network connections; ``debugprims::load_tensor`` reads files.

So before ``torch.jit.load`` sees the file, :func:`vet_torchscript` reads every source file of the archive and parses
it with :mod:`ast`, without compiling or running it, and lists each place that

- names one of :data:`DENIED_BUILTINS` anywhere (as an attribute, a name or a string constant, so no spelling of the
  call, no alias and no ``getattr`` gets it past),
- calls an operator outside :data:`ALLOWED_OP_NAMESPACES` (``ops.<namespace>.<op>`` in the serialised code), or
  names such a namespace registered in this process anywhere (so ``o = ops`` then ``o.c10d...`` is caught), or
- uses a TorchBind class outside :data:`ALLOWED_CLASS_NAMESPACES` (``__torch__.torch.classes.<namespace>``).

The test is conservative: a variable that merely happens to be called ``save`` is refused too, and the error says
where, so that a user who trusts the file can pass ``allow_unsafe_torchscript`` (``--allow-unsafe-torchscript``).
An archive with no source to read (a mobile bytecode-only file), source that does not parse, or more source than
:data:`MAX_SOURCE_BYTES` cannot be vetted and is refused as well. What this does not cover: memory-safety bugs in
PyTorch's own kernels and unpickler (keep torch up to date), and compute a hostile network spends (a scan's query
budget and time limits bound it).
"""

from __future__ import annotations

import ast
import functools
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from trojanscan.errors import ModelLoadError, UnsafeModelFileError

#: Builtins that reach outside the tensor world, with what each does (the reason an error quotes).
DENIED_BUILTINS: dict[str, str] = {
    "from_file": "aten::from_file maps a file into memory and creates it if missing: writes to the tensor go to disk",
    "save": "aten::save writes a file",
    "load_tensor": "debugprims::load_tensor reads a file",
    "rpc_async": "prim::rpc_async calls a remote worker (torch.distributed.rpc)",
    "rpc_sync": "prim::rpc_sync calls a remote worker (torch.distributed.rpc)",
    "rpc_remote": "prim::rpc_remote calls a remote worker (torch.distributed.rpc)",
}
#: Operator namespaces whose operators compute on tensors only (``aten`` less :data:`DENIED_BUILTINS`, control flow,
#: quantised and oneDNN / MKL-DNN kernels). Any other (``c10d``, ``symm_mem``, ``profiler``, ``debugprims``, a
#: custom library's) is refused.
ALLOWED_OP_NAMESPACES: frozenset[str] = frozenset(
    {"aten", "prim", "prims", "quantized", "_quantized", "quantization", "mkl", "mkldnn", "mkldnn_prepacked", "onednn",
     "sparse", "rngprims"}
)
#: TorchBind class namespaces a classifier may hold: quantised packed weights and XNNPACK's prepacked ones.
ALLOWED_CLASS_NAMESPACES: frozenset[str] = frozenset({"quantized", "xnnpack"})
#: At most this much TorchScript source is read (a zip bomb guard; real classifiers carry kilobytes).
MAX_SOURCE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Finding:
    """One place in an archive's source that reaches outside the tensor world."""

    file: str  #: the source file inside the archive
    line: int
    what: str  #: the name or operator found there
    why: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{self.what} at {where} ({self.why})"


@functools.cache
def _foreign_namespaces() -> frozenset[str]:
    """Operator namespaces registered in this process (torch's own and any loaded library's) that are not allowed:
    a source that merely names one (``o = ops`` then ``o.c10d.allreduce_``) is refused too."""
    import torch

    names = {schema.name.split("::")[0] for schema in torch._C._jit_get_all_schemas()}
    return frozenset(names - ALLOWED_OP_NAMESPACES)


def _chain(node: ast.AST) -> list[str]:
    """``a.b.c`` as ``["a", "b", "c"]`` (an empty list where the chain does not start at a name)."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return []
    parts.append(node.id)
    return parts[::-1]


def _namespace_findings(parts: list[str], file: str, line: int) -> list[Finding]:
    out = []
    for i, part in enumerate(parts[:-1]):
        ns = parts[i + 1]
        if part == "ops" and ns not in ALLOWED_OP_NAMESPACES:
            out.append(Finding(file, line, f"ops.{ns}", f"operator namespace {ns!r} is not one of those that only "
                                                       "compute on tensors (aten, prim, quantized, oneDNN, ...)"))
        if part == "classes" and i > 0 and parts[i - 1] == "torch" and ns not in ALLOWED_CLASS_NAMESPACES:
            out.append(Finding(file, line, f"torch.classes.{ns}",
                               f"TorchBind class namespace {ns!r} can hold native objects such as sockets or "
                               "process groups (allowed: quantized, xnnpack)"))
    return out


def vet_source(source: str, file: str) -> list[Finding]:
    """Findings in one TorchScript source file (see the module docstring); raises ModelLoadError if it does not
    parse."""
    try:
        tree = ast.parse(source, filename=file)
    except (SyntaxError, ValueError) as exc:
        raise ModelLoadError(f"TorchScript source {file} does not parse ({exc}), so it cannot be vetted") from exc
    found: list[Finding] = []
    seen_chains: set[int] = set()
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Attribute):
            if node.attr in DENIED_BUILTINS:
                found.append(Finding(file, line, node.attr, DENIED_BUILTINS[node.attr]))
            if id(node) not in seen_chains:  # the outermost attribute of a chain comes first in the walk
                parts = _chain(node)
                inner: ast.AST = node
                while isinstance(inner, ast.Attribute):
                    seen_chains.add(id(inner))
                    inner = inner.value
                found.extend(_namespace_findings(parts, file, line))
        elif isinstance(node, ast.Name) and node.id in DENIED_BUILTINS:
            found.append(Finding(file, line, node.id, DENIED_BUILTINS[node.id]))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in DENIED_BUILTINS:
            found.append(Finding(file, line, repr(node.value), DENIED_BUILTINS[node.value]))
        name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
        if name in _foreign_namespaces() and not any(f.line == line and f.what == f"ops.{name}" for f in found):
            found.append(Finding(file, line, name, f"names the operator namespace {name!r}, which is not one of "
                                                   "those that only compute on tensors"))
    return found


def vet_torchscript(path: str | os.PathLike[str]) -> list[Finding]:
    """Every finding in the TorchScript archive at ``path``, read without compiling or running anything.

    Raises ModelLoadError when the archive cannot be vetted: not a zip, no ``code/`` source, source that does not
    parse or is not UTF-8, or more than :data:`MAX_SOURCE_BYTES` of it.
    """
    p = Path(path)
    try:
        with zipfile.ZipFile(p) as z:
            infos = [i for i in z.infolist() if not i.is_dir() and "code" in PurePosixPath(i.filename).parts[:-1]
                     and i.filename.endswith(".py")]
            if not infos:
                raise ModelLoadError(f"TorchScript file {str(p)!r} carries no source (code/*.py) to vet, so it is not "
                                     "loaded (bytecode-only mobile archives are not read)")
            total = sum(i.file_size for i in infos)
            if total > MAX_SOURCE_BYTES:
                raise ModelLoadError(f"TorchScript file {str(p)!r} declares {total} bytes of source, more than the "
                                     f"{MAX_SOURCE_BYTES} that are vetted; it is not loaded")
            found: list[Finding] = []
            for info in infos:
                parts = PurePosixPath(info.filename).parts
                if parts[-3:-1] == ("torch", "classes"):  # code/__torch__/torch/classes/<namespace>.py: TorchBind
                    ns = PurePosixPath(info.filename).stem
                    found.extend(_namespace_findings(["torch", "classes", ns], info.filename, 0))
                with z.open(info) as f:
                    raw = f.read(MAX_SOURCE_BYTES + 1)
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise ModelLoadError(f"TorchScript source {info.filename} in {str(p)!r} is not UTF-8 text, so "
                                         "it cannot be vetted") from exc
                found.extend(vet_source(text, info.filename))
    except zipfile.BadZipFile as exc:
        raise ModelLoadError(f"TorchScript file {str(p)!r} is a corrupt zip archive: {exc}") from exc
    return found


def check_torchscript(path: str | os.PathLike[str]) -> None:
    """Raise UnsafeModelFileError if :func:`vet_torchscript` finds anything in the archive at ``path``."""
    found = vet_torchscript(path)
    if found:
        shown = "; ".join(str(f) for f in found[:3]) + (f"; and {len(found) - 3} more" if len(found) > 3 else "")
        raise UnsafeModelFileError(
            f"TorchScript file {str(path)!r} is not run: its code reaches outside the tensor world ({shown}). "
            "A model file that can touch files or the network could take over this machine. Pass "
            "--allow-unsafe-torchscript only if you trust this file."
        )


def vet_onnx(raw: bytes, source: str) -> list[Finding]:
    """Every tensor of an ONNX model (``raw``: the file's bytes) whose data lives in an external file.

    ONNX carries no code, but a tensor may keep its data in another file (``data_location = EXTERNAL``), and
    onnxruntime reads that file even for a session built from bytes, relative to the working directory (anything
    beneath it): a scan started in a home folder would pull ``.ssh/`` keys or credentials into the model's weights.
    Initializers, sparse initializers, node attributes (``Constant`` values), subgraphs (``If`` / ``Loop`` /
    ``Scan``) and model-local functions are all searched. Raises ModelLoadError if the bytes are
    not an ONNX model.
    """
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.ModelProto.FromString(raw)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"ONNX file {source!r} is not a valid ONNX protobuf: {exc}") from exc
    found: list[Finding] = []

    def check(t: onnx.TensorProto, what: str) -> None:
        if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data):
            loc = next((e.value for e in t.external_data if e.key == "location"), "?")
            found.append(Finding(source, 0, what, f"its data lives in the external file {loc!r}"))

    def sparse(st: onnx.SparseTensorProto, what: str) -> None:
        check(st.values, what + " (values)")
        check(st.indices, what + " (indices)")

    def node(n: onnx.NodeProto, where: str) -> None:
        for a in n.attribute:
            what = f"{where}node {n.name or n.op_type!r} attribute {a.name!r}"
            if a.HasField("t"):
                check(a.t, what)
            for t in a.tensors:
                check(t, what)
            if a.HasField("sparse_tensor"):
                sparse(a.sparse_tensor, what)
            for st in a.sparse_tensors:
                sparse(st, what)
            if a.HasField("g"):
                graph(a.g, what + ": ")
            for g in a.graphs:
                graph(g, what + ": ")

    def graph(g: onnx.GraphProto, where: str) -> None:
        for t in g.initializer:
            check(t, f"{where}initializer {t.name!r}")
        for st in g.sparse_initializer:
            sparse(st, f"{where}sparse initializer {st.values.name!r}")
        for n in g.node:
            node(n, where)

    graph(model.graph, "")
    for f in model.functions:
        for n in f.node:
            node(n, f"function {f.name!r}: ")
    return found
