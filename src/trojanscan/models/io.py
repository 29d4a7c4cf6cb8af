"""Safe model loading and saving.

Formats (detected from the file's bytes, not its name):

- ``.safetensors`` weights + a JSON metadata sidecar ``<stem>.json`` (architecture, input shape,
  classes, normalisation, provenance). The same metadata is also embedded in the safetensors
  header, so a lone ``.safetensors`` file still loads.
- TorchScript archives (``torch.jit.save``): run by the TorchScript interpreter, no Python pickle. A TorchScript
  file is a program, so its source is vetted first (:mod:`trojanscan.models.vetting`): one that can touch files or
  the network (``torch.from_file``, ``torch.save``, RPC, collectives, foreign operator namespaces) is **refused**
  before anything in it runs, unless ``allow_unsafe_torchscript=True``.
- ONNX files (``.onnx``), run by onnxruntime on the CPU: **query-only** models
  (:class:`~trojanscan.models.query.QueryClassifier`), known by their scores alone. ONNX is a protobuf of
  operators and tensors with no code in it, and no custom-operator library is registered. A tensor may keep its
  data in an external file, which onnxruntime would read (any file beneath the working directory) even for a
  session built from bytes, so such a file is **refused** (:func:`~trojanscan.models.vetting.vet_onnx`).
- Python pickles (``torch.save`` of a module or state dict, legacy or zip form) are **refused**
  unless ``allow_unsafe_pickle=True``: unpickling runs arbitrary code, and a scanner loads
  untrusted files by definition.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from trojanscan._fileio import atomic_path, sha256_file, write_bytes_atomic, write_text_atomic
from trojanscan.errors import InvalidInputError, ModelLoadError, UnsafeModelFileError
from trojanscan.models.architectures import build_architecture
from trojanscan.models.classifier import (
    OUTPUT_KINDS,
    RANDOM_OUTPUT_TOL,
    Classifier,
    detect_outputs,
    output_spread,
    resolve_device,
    scores_of,
)
from trojanscan.models.query import DEFAULT_SAMPLES, DEFAULT_SIGMA, BlackBox, QueryClassifier, check_query_settings
from trojanscan.models.query import query_only as make_query_only
from trojanscan.models.vetting import check_torchscript, vet_onnx
from trojanscan.types import Shape3

METADATA_FORMAT = "trojanscan.model/1"
_HEADER_KEY = "trojanscan"


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The JSON metadata sidecar of a model file: same folder and stem, ``.json``."""
    return Path(path).with_suffix(".json")


P = ParamSpec("P")
R = TypeVar("R")


def _keeps_global_rng(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` run inside ``torch.random.fork_rng``: probing a network with dropout left on draws random numbers, and
    loading a model must not move the caller's global random state."""
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with torch.random.fork_rng(devices=[]):
            return fn(*args, **kwargs)
    return wrapper


def detect_format(path: str | os.PathLike[str]) -> str:
    """Return ``"safetensors"``, ``"torchscript"``, ``"onnx"``, ``"pickle"`` or raise ModelLoadError."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"model file {str(p)!r} does not exist; check the path.")
    with open(p, "rb") as f:
        head = f.read(16)
    if len(head) < 9:
        raise ModelLoadError(f"model file {str(p)!r} is empty or truncated ({len(head)} bytes).")
    if head[:2] == b"PK":
        try:
            with zipfile.ZipFile(p) as z:
                names = z.namelist()
        except zipfile.BadZipFile as exc:
            raise ModelLoadError(f"model file {str(p)!r} is a corrupt zip archive: {exc}") from exc
        if any("/code/" in n or n.endswith("constants.pkl") for n in names):
            return "torchscript"
        if any(n.endswith("data.pkl") for n in names):
            return "pickle"
        raise ModelLoadError(f"model file {str(p)!r} is a zip archive but neither TorchScript nor torch.save.")
    n = int.from_bytes(head[:8], "little")
    if head[8:9] == b"{" and 0 < n < 100_000_000:
        return "safetensors"
    if head[0] == 0x80 or head[:1] in (b"(", b"]", b"}", b"c"):
        return "pickle"
    if head[0] == 0x08 or p.suffix.lower() == ".onnx":  # an ONNX ModelProto opens with field 1, ir_version (tag 0x08)
        return "onnx"
    raise ModelLoadError(
        f"model file {str(p)!r} is not a format trojanscan reads (safetensors + JSON metadata, TorchScript, ONNX)."
    )


def save_model(path: str | os.PathLike[str], model: Classifier, *, provenance: dict[str, Any] | None = None) -> Path:
    """Save ``model`` as ``path`` (.safetensors) plus its sidecar ``<stem>.json``; both atomically.

    ``model.metadata["architecture"]`` must name a registered architecture.
    """
    p = Path(path)
    if p.suffix != ".safetensors":
        raise InvalidInputError(f"model output path must end in .safetensors; got {str(p)!r}")
    arch = model.metadata.get("architecture")
    if not arch:
        raise InvalidInputError("model.metadata['architecture'] is required to save a model as safetensors")
    meta = {
        "format": METADATA_FORMAT,
        "architecture": arch,
        "input_shape": list(model.input_shape),
        "num_classes": model.num_classes,
        "class_names": list(model.class_names),
        "mean": model.mean.flatten().tolist(),
        "std": model.std.flatten().tolist(),
        "provenance": provenance if provenance is not None else model.metadata.get("provenance", {}),
    }
    if model.outputs != "logits":  # only then: the files of logit models keep the bytes they always had
        meta["outputs"] = model.outputs
    state = {k: v.detach().cpu().contiguous() for k, v in model.module.state_dict().items()}
    text = json.dumps(meta, indent=2, sort_keys=True)
    with atomic_path(p) as tmp:
        save_file(state, str(tmp), metadata={_HEADER_KEY: text})
        write_text_atomic(sidecar_path(p), text + "\n")
    return p


def _read_metadata(path: Path) -> dict[str, Any]:
    side = sidecar_path(path)
    if side.is_file():
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"metadata sidecar {str(side)!r} is not valid JSON: {exc}") from exc
    else:
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                header = f.metadata() or {}
        except (SafetensorError, OSError) as exc:
            raise ModelLoadError(f"model file {str(path)!r} is not a valid safetensors file: {exc}") from exc
        if _HEADER_KEY not in header:
            raise ModelLoadError(
                f"no metadata for {str(path)!r}: expected the sidecar {str(side)!r} "
                "(architecture, input_shape, num_classes, mean, std)."
            )
        meta = json.loads(header[_HEADER_KEY])
    if not isinstance(meta, dict):
        raise ModelLoadError(f"metadata of {str(path)!r} must be a JSON object")
    for key in ("architecture", "input_shape", "num_classes"):
        if key not in meta:
            raise ModelLoadError(f"metadata of {str(path)!r} lacks {key!r}; add it to {str(side)!r}.")
    return meta


#: The largest image (C * H * W values) a model may declare: beyond it one probe batch alone would take gigabytes, so a
#: hostile sidecar could exhaust the machine's memory before any weight is checked.
MAX_INPUT_VALUES = 3 * 1024 * 1024


def _shape(value: Any, source: str) -> Shape3:
    try:
        t = tuple(int(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{source}: input shape must be C,H,W integers; got {value!r}") from exc
    if len(t) != 3 or min(t) < 1:
        raise InvalidInputError(f"{source}: input shape must be three positive integers C,H,W; got {value!r}")
    if t[0] * t[1] * t[2] > MAX_INPUT_VALUES:
        raise InvalidInputError(f"{source}: input shape {list(t)} has {t[0] * t[1] * t[2]} values per image, more than "
                                f"the {MAX_INPUT_VALUES} (3x1024x1024) trojanscan scans; resize the model's input.")
    return (t[0], t[1], t[2])


def _check_weight_shapes(p: Path, arch: str, shape: Shape3, k: int) -> None:
    """Compare the shapes the metadata's architecture needs with those in the file's header, before anything is
    allocated: the architecture is built on the meta device (no memory) and the tensors are not read. So a sidecar
    that declares, say, a billion classes is an error, not an attempt to allocate a terabyte."""
    try:
        with safe_open(str(p), framework="pt") as f:
            have = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}  # noqa: SIM118 (safe_open API)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"model file {str(p)!r} is corrupt or truncated: {exc}") from exc
    with torch.device("meta"):
        want = {key: tuple(v.shape) for key, v in build_architecture(arch, shape, k).state_dict().items()}
    bad = sorted(key for key in want.keys() | have.keys() if want.get(key) != have.get(key))
    if bad:
        key = bad[0]
        raise ModelLoadError(
            f"weights of {str(p)!r} do not match architecture {arch!r} with input_shape={list(shape)} and "
            f"num_classes={k} ({key}: the file has {list(have[key]) if key in have else 'nothing'}, the architecture "
            f"needs {list(want[key]) if key in want else 'nothing'}); the metadata sidecar does not describe this file."
        )


#: Square input sizes tried, smallest first, when a foreign model file says nothing about its input shape.
PROBE_SIZES = (28, 32, 48, 64, 96, 128, 224)


def _first_conv_channels(module: nn.Module) -> int | None:
    """In-channels of the first 4-D floating parameter (a conv weight ``(out, in, kh, kw)``), if any."""
    for prm in module.parameters():
        if prm.dim() == 4 and prm.is_floating_point():
            return int(prm.shape[1])
    return None


def probe_shapes(module: nn.Module) -> list[Shape3]:
    """The shapes :func:`infer_input_shape` tries with no other clue: the first conv's channels (else 1 and 3),
    then 1 and 3 channels, each at the square sizes of :data:`PROBE_SIZES`."""
    channels: list[int] = []
    for c in (_first_conv_channels(module), 1, 3):
        if c is not None and c not in channels:
            channels.append(c)
    return [(c, s, s) for c in channels for s in PROBE_SIZES]


def _accepts(module: nn.Module, shape: Shape3) -> bool:
    """Whether one grey image of ``shape`` goes through ``module`` to finite 2-D scores of at least 2 classes."""
    try:
        with torch.no_grad():
            out = scores_of(module(torch.full((1, *shape), 0.5)))
    except Exception:  # noqa: BLE001 - a shape the network rejects raises whatever its layers raise
        return False
    return isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[1] >= 2 and bool(torch.isfinite(out).all())


def _one_size(module: nn.Module, ok: Sequence[Shape3]) -> Shape3 | None:
    """The accepted shape if all of ``ok`` share one size (channels resolved as :func:`infer_input_shape` says)."""
    if len({sh[1:] for sh in ok}) != 1:
        return None
    channels = [sh[0] for sh in ok]
    first = _first_conv_channels(module)
    c = channels[0] if len(channels) == 1 else first if first in channels else max(channels)
    return (c, ok[0][1], ok[0][2])


def _count_classes(module: nn.Module, shape: Shape3, what: str) -> int:
    """The width of ``module``'s output on one grey image of ``shape`` (no random draw); a clear error otherwise."""
    try:
        with torch.no_grad():
            out = scores_of(module(torch.full((1, *shape), 0.5)))
    except Exception as exc:  # noqa: BLE001 - whatever a foreign module raises, say which input failed
        raise InvalidInputError(f"{what} failed on a (1, {', '.join(map(str, shape))}) probe: "
                                f"{type(exc).__name__}: {exc}. Check --input-shape.") from exc
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        fix = ""
        if isinstance(out, tuple | list):
            parts = ", ".join(str(tuple(o.shape)) if isinstance(o, torch.Tensor) else type(o).__name__ for o in out)
            got = f"{got} of {len(out)} ({parts})"
            fix = ("; trojanscan needs the (N, K) class scores alone: export a wrapper whose forward returns the "
                   "scores' element (e.g. out[0])")
        raise InvalidInputError(f"{what} must return 2-D logits; got {got}{fix}")
    return int(out.shape[1])


def _fmt_shape(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def infer_input_shape(
    module: nn.Module, candidates: Sequence[Sequence[int]] | None = None, *, source: str = "the model",
) -> tuple[Shape3, str]:
    """The input shape of a network whose file does not say it, and where it came from (``data`` or ``probe``).

    ``candidates`` (the clean data's image shapes) are tried first: if the network accepts exactly one, that is
    the shape (``"data"``). Otherwise :func:`probe_shapes` are tried, one grey image each: exactly one accepted
    shape is the answer (``"probe"``; typical of networks that flatten into a fixed linear layer). If one size runs
    with several channel counts, the first convolution's in-channels decide, else the largest count: a grey image
    broadcasts against a colour network's folded per-channel normalisation ``(x - mean) / std``, while a colour
    image does not fit a grey network's first layer. No size accepted, or several (a network with global pooling
    runs at any size), is an :class:`InvalidInputError` that asks for ``--input-shape`` and lists what ran: the
    scanner does not guess between sizes.
    """
    if candidates:
        shapes = [_shape(c, source) for c in candidates]
        ok = [sh for sh in dict.fromkeys(shapes) if _accepts(module, sh)]
        if ok:
            one = _one_size(module, ok)
            if one is None:
                raise InvalidInputError(
                    f"{source} has no input shape in its file and runs on several of the data's image shapes "
                    f"({', '.join(map(_fmt_shape, ok))}); pass --input-shape C,H,W")
            return one, "data"
    tried = probe_shapes(module)
    ok = [sh for sh in tried if _accepts(module, sh)]
    one = _one_size(module, ok) if ok else None
    if one is not None:
        return one, "probe"
    sizes = ", ".join(map(str, PROBE_SIZES))
    if not ok:
        raise InvalidInputError(
            f"{source} has no input shape in its file (no metadata sidecar) and accepts none of the shapes tried "
            f"(channels {sorted({sh[0] for sh in tried})}, square sizes {sizes}); pass --input-shape C,H,W "
            "(and --mean/--std if it expects normalised input).")
    raise InvalidInputError(
        f"{source} has no input shape in its file (no metadata sidecar) and runs on several shapes "
        f"({', '.join(map(_fmt_shape, ok))}), so its size cannot be told by probing; pass --input-shape C,H,W "
        "or --data with clean images of the right size.")


def _to_float32(module: nn.Module) -> dict[str, str]:
    """Cast a module with half / bfloat16 / float64 weights to float32 (our pipeline's dtype); what was cast."""
    dtypes = {t.dtype for t in list(module.parameters()) + list(module.buffers()) if t.is_floating_point()}
    if not dtypes or dtypes == {torch.float32}:
        return {}
    module.float()
    return {"cast_from_dtype": ",".join(sorted(str(d).removeprefix("torch.") for d in dtypes - {torch.float32}))}


@_keeps_global_rng
def load_model(
    path: str | os.PathLike[str],
    *,
    allow_unsafe_pickle: bool = False,
    allow_unsafe_torchscript: bool = False,
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    device: str | torch.device | None = None,
    outputs: str = "auto",
    shape_candidates: Sequence[Sequence[int]] | None = None,
    query_only: bool = False,
    query_samples: int = DEFAULT_SAMPLES,
    query_sigma: float = DEFAULT_SIGMA,
    max_queries: int | None = None,
) -> Classifier:
    """Load a model file safely and wrap it as a validated :class:`Classifier` in eval mode.

    Explicit ``input_shape`` / ``num_classes`` / ``mean`` / ``std`` override the metadata. ``num_classes`` is
    inferred by one probe forward pass when nothing gives it. A TorchScript file or pickle with neither
    ``input_shape`` nor a sidecar gets its input shape from :func:`infer_input_shape`: ``shape_candidates`` first
    (the clean data's image shapes), then :func:`probe_shapes`; ``metadata["input_shape_source"]`` says which
    (``argument``, ``sidecar``, ``data`` or ``probe``). Weights stored in half precision (or another float
    dtype) are cast to float32, recorded as ``metadata["cast_from_dtype"]``.
    ``device`` (default CPU; :func:`~trojanscan.models.classifier.resolve_device`) is where the network runs; it is
    checked before the file is read. A TorchScript file is vetted before it is loaded
    (:func:`~trojanscan.models.vetting.check_torchscript`; UnsafeModelFileError if its code can reach files or the
    network) unless ``allow_unsafe_torchscript``; ``metadata["torchscript_vetted"]`` says whether it was.
    ``outputs``: what the network returns (``logits``, ``probabilities``, ``log_probabilities``; see
    :mod:`trojanscan.models.classifier`). ``"auto"`` (default) takes the metadata's ``outputs`` if it has one, else
    logits for our registered architectures and :func:`detect_outputs`'s probe for TorchScript and pickles.
    An ONNX file is always query-only (a :class:`~trojanscan.models.query.QueryClassifier`); ``query_only=True``
    makes any other file query-only too (:func:`~trojanscan.models.query.query_only`). ``query_samples``,
    ``query_sigma`` and ``max_queries`` set the gradient estimator and the budget of a query-only model.
    """
    dev = resolve_device(device)
    if outputs != "auto" and outputs not in OUTPUT_KINDS:
        raise InvalidInputError(f"--outputs {outputs!r} is not one of auto, {', '.join(OUTPUT_KINDS)}")
    check_query_settings(query_samples, query_sigma, max_queries)
    p = Path(path)
    fmt = detect_format(p)
    if fmt == "onnx" and dev.type != "cpu":
        raise InvalidInputError(f"--device {str(device)!r}: an ONNX model runs through onnxruntime on the CPU; "
                                "drop --device (or give a TorchScript file to run the network on a GPU)")
    if fmt == "onnx":
        clf: Classifier = _load_onnx(p, input_shape=input_shape, num_classes=num_classes, mean=mean, std=std,
                                     samples=query_samples, sigma=query_sigma, max_queries=max_queries)
    elif fmt == "safetensors":
        meta = _read_metadata(p)
        shape = _shape(input_shape if input_shape is not None else meta["input_shape"], str(p))
        k = int(num_classes if num_classes is not None else meta["num_classes"])
        if num_classes is not None and int(meta["num_classes"]) != num_classes:
            raise ModelLoadError(
                f"--num-classes {num_classes} disagrees with the metadata of {str(p)!r} "
                f"(num_classes={meta['num_classes']}); drop the flag or fix the metadata."
            )
        if k < 1:
            raise ModelLoadError(f"metadata of {str(p)!r}: num_classes must be a positive integer; got {k}")
        _check_weight_shapes(p, str(meta["architecture"]), shape, k)
        module = build_architecture(str(meta["architecture"]), shape, k)
        try:
            state = load_file(str(p))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelLoadError(f"model file {str(p)!r} is corrupt or truncated: {exc}") from exc
        module.load_state_dict(state, strict=True)  # keys and shapes were checked above (_check_weight_shapes)
        clf = Classifier(
            module, shape, k,
            mean=mean if mean is not None else meta.get("mean"),
            std=std if std is not None else meta.get("std"),
            class_names=meta.get("class_names"),
            metadata={**meta, "path": str(p), "sha256": sha256_file(p), "format": "safetensors"},
        )
        if len(clf.class_names) != k:
            raise ModelLoadError(f"metadata of {str(p)!r} lists {len(clf.class_names)} class names for {k} classes")
    elif fmt == "torchscript":
        side = sidecar_path(p)
        meta = json.loads(side.read_text(encoding="utf-8")) if side.is_file() else {}
        if not allow_unsafe_torchscript:
            check_torchscript(p)  # before torch.jit.load: loading already runs the archive's __setstate__
        try:
            module = torch.jit.load(str(p), map_location="cpu")
        except Exception as exc:  # the JIT raises several types for corrupt archives
            raise ModelLoadError(f"TorchScript file {str(p)!r} cannot be loaded: {exc}") from exc
        module.eval()
        cast = _to_float32(module)
        if input_shape is not None:
            shape, shape_source = _shape(input_shape, str(p)), "argument"
        elif meta.get("input_shape") is not None:
            shape, shape_source = _shape(meta["input_shape"], str(p)), "sidecar"
        else:
            shape, shape_source = infer_input_shape(module, shape_candidates, source=str(p))
        k_src = num_classes if num_classes is not None else meta.get("num_classes")
        if k_src is None:
            k_src = _count_classes(module, shape, f"TorchScript model {str(p)!r}")
        clf = Classifier(
            module, shape, int(k_src),
            mean=mean if mean is not None else meta.get("mean"),
            std=std if std is not None else meta.get("std"),
            class_names=meta.get("class_names"),
            metadata={**meta, "path": str(p), "sha256": sha256_file(p), "format": "torchscript",
                      "input_shape_source": shape_source, "torchscript_vetted": not allow_unsafe_torchscript, **cast},
        )
    else:
        if not allow_unsafe_pickle:
            raise UnsafeModelFileError(
                f"{str(p)!r} is a Python pickle (torch.save); loading it would run arbitrary code. "
                "Convert it where you trust it (load it, then trojanscan.models.save_model or "
                "torch.jit.save) or pass --allow-unsafe-pickle if you trust this file."
            )
        try:  # a state dict (tensors only) never needs code execution: try the restricted unpickler first
            obj = torch.load(str(p), map_location="cpu", weights_only=True)
        except Exception:
            try:
                obj = torch.load(str(p), map_location="cpu", weights_only=False)  # noqa: S614 (explicit opt-in)
            except Exception as exc:
                raise ModelLoadError(f"pickle {str(p)!r} cannot be loaded: {exc}") from exc
        if not isinstance(obj, nn.Module):
            raise ModelLoadError(
                f"pickle {str(p)!r} holds a {type(obj).__name__}, not a module; a state dict needs its "
                "architecture: save it with trojanscan.models.save_model and a metadata sidecar."
            )
        obj.eval()
        cast = _to_float32(obj)
        if input_shape is not None:
            shape, shape_source = _shape(input_shape, str(p)), "argument"
        else:
            shape, shape_source = infer_input_shape(obj, shape_candidates, source=str(p))
        k = num_classes if num_classes is not None else _count_classes(obj, shape, f"pickled model {str(p)!r}")
        clf = Classifier(obj, shape, k, mean=mean, std=std,
                         metadata={"path": str(p), "sha256": sha256_file(p), "format": "pickle",
                                   "input_shape_source": shape_source, **cast})
    clf.eval()
    random, batch = 0.0, 0.0
    if clf.white_box:  # a query-only model's budget is not spent on it
        try:  # on the CPU, before the move: a GPU's TF32 convolutions would differ between batch sizes by themselves
            random, batch = output_spread(clf)
        except Exception:  # noqa: BLE001 - a network that cannot give scores: validate() below says why
            pass
    if random > RANDOM_OUTPUT_TOL:
        clf.metadata["random_outputs"] = random
    if batch > RANDOM_OUTPUT_TOL:
        clf.metadata["batch_dependent_outputs"] = batch
    clf.to(dev)
    kind = outputs if outputs != "auto" else clf.metadata.get("outputs")
    if kind is None:
        kind = "logits" if fmt == "safetensors" else detect_outputs(clf)
        clf.metadata["outputs_detected"] = fmt != "safetensors"
    if kind not in OUTPUT_KINDS:
        raise ModelLoadError(f"metadata of {str(p)!r}: outputs {kind!r} is not one of {', '.join(OUTPUT_KINDS)}")
    clf.outputs = str(kind)
    clf.metadata["outputs"] = clf.outputs
    clf.validate()
    if query_only and clf.white_box:
        clf = make_query_only(clf, samples=query_samples, sigma=query_sigma, max_queries=max_queries)
    return clf


_ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def _load_onnx(p: Path, *, input_shape: Sequence[int] | None, num_classes: int | None, mean: Sequence[float] | None,
               std: Sequence[float] | None, samples: int, sigma: float, max_queries: int | None) -> QueryClassifier:
    """An ONNX image classifier as a query-only model (module docstring): one 4-D image input, (N, K) scores out."""
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - a core dependency; only a broken install lacks it
        raise ModelLoadError(f"{str(p)!r} is an ONNX file, which needs onnxruntime: pip install onnxruntime") from exc
    side = sidecar_path(p)
    meta = json.loads(side.read_text(encoding="utf-8")) if side.is_file() else {}
    raw = p.read_bytes()
    external = vet_onnx(raw, str(p))
    if external:
        shown = "; ".join(str(f) for f in external[:3]) + (f"; and {len(external) - 3} more" if len(external) > 3 else "")
        raise UnsafeModelFileError(
            f"ONNX file {str(p)!r} is not run: it reads weights from other files on this machine ({shown}). Ship the "
            "weights inside the file (onnx.save_model(model, path, save_as_external_data=False), where you trust it)."
        )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())  # OMP_NUM_THREADS=1 holds for onnxruntime too
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(raw, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types for corrupt or unsupported graphs
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"ONNX file {str(p)!r} cannot be loaded by onnxruntime: {first[:300]}") from exc
    inputs, outputs = sess.get_inputs(), sess.get_outputs()
    if len(inputs) != 1:
        raise ModelLoadError(f"ONNX file {str(p)!r} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                             "trojanscan scans image classifiers with one (N, C, H, W) input")
    inp = inputs[0]
    dims = list(inp.shape)
    if len(dims) != 4:
        raise ModelLoadError(f"ONNX file {str(p)!r}: its input {inp.name!r} has shape {dims}; an image classifier "
                             "takes (N, C, H, W)")
    dtype = _ONNX_DTYPES.get(inp.type)
    if dtype is None:
        raise ModelLoadError(f"ONNX file {str(p)!r}: its input {inp.name!r} is {inp.type}; trojanscan feeds float images")
    known = [d if isinstance(d, int) and d > 0 else None for d in dims[1:]]
    # channels last (a TensorFlow / Keras export: N, H, W, C): 1 or 3 channels at the end and not at the front
    nhwc = known[2] in (1, 3) and known[0] not in (1, 3)
    graph_chw = [known[2], known[0], known[1]] if nhwc else known
    if input_shape is not None:
        shape, source = _shape(input_shape, str(p)), "argument"
        clash = [(g, a) for g, a in zip(graph_chw, shape, strict=True) if g is not None and g != a]
        if clash:
            raise InvalidInputError(f"--input-shape {_fmt_shape(shape)} disagrees with the ONNX graph of {str(p)!r}, "
                                    f"whose input is {dims}; drop the flag or fix it")
    elif meta.get("input_shape") is not None:
        shape, source = _shape(meta["input_shape"], str(p)), "sidecar"
    elif all(d is not None for d in graph_chw):
        shape, source = _shape(graph_chw, str(p)), "graph"
    else:
        raise InvalidInputError(f"ONNX file {str(p)!r} leaves its input size open ({dims}); pass --input-shape C,H,W")
    batch = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else None
    # the scores: the first floating-point output of rank 2 (a converted scikit-learn or Keras graph may put a label
    # output or a probability map first)
    scores = [o for o in outputs if o.type in _ONNX_DTYPES and len(o.shape) == 2]
    if not scores:
        raise ModelLoadError(f"ONNX file {str(p)!r} has no 2-D floating-point output (N, num_classes) among "
                             f"{[(o.name, o.type, o.shape) for o in outputs]}")
    in_name, out_name = inp.name, scores[0].name

    def predict(a: np.ndarray) -> np.ndarray:
        n = a.shape[0]
        a = a.astype(dtype, copy=False)
        if nhwc:
            a = np.ascontiguousarray(a.transpose(0, 2, 3, 1))
        if batch is None:
            return np.asarray(sess.run([out_name], {in_name: a})[0])
        pad = (-n) % batch  # a graph with a fixed batch size: whole batches, the last one padded with zeros
        if pad:
            a = np.concatenate([a, np.zeros((pad, *a.shape[1:]), dtype=a.dtype)])
        outs = [np.asarray(sess.run([out_name], {in_name: a[i : i + batch]})[0]) for i in range(0, a.shape[0], batch)]
        return np.concatenate(outs)[:n]

    out_dims = list(scores[0].shape)
    k_src = num_classes if num_classes is not None else meta.get("num_classes")
    if k_src is None and len(out_dims) == 2 and isinstance(out_dims[1], int) and out_dims[1] > 0:
        k_src = out_dims[1]
    if k_src is None:  # the graph leaves the class count open: the probe TorchScript files and pickles get
        k_src = _count_classes(BlackBox(predict), shape, f"ONNX model {str(p)!r}")
    notes: dict[str, Any] = {"onnx_outputs": [o.name for o in outputs], "onnx_scores": out_name} if len(outputs) > 1 else {}
    if nhwc:
        notes["onnx_layout"] = "NHWC"
    return QueryClassifier(
        predict, shape, int(k_src),
        mean=mean if mean is not None else meta.get("mean"),
        std=std if std is not None else meta.get("std"),
        class_names=meta.get("class_names"),
        metadata={**meta, "path": str(p), "sha256": hashlib.sha256(raw).hexdigest(), "format": "onnx",
                  "input_shape_source": source, "onnx_input": in_name, "onnx_batch": batch, **notes},
        samples=samples, sigma=sigma, max_queries=max_queries, batch_size=2048 if batch is None else max(batch, 1),
    )


class _Normalized(nn.Module):
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, module: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.module = module
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return scores_of(self.module((x - self.mean) / self.std))  # type: ignore[no-any-return]


def _write_export_sidecar(model: Classifier, path: Path) -> None:
    """The sidecar of an exported file (TorchScript, ONNX): shape, classes, names, output kind."""
    meta = {"format": METADATA_FORMAT, "input_shape": list(model.input_shape),
            "num_classes": model.num_classes, "class_names": model.class_names, "outputs": model.outputs}
    write_text_atomic(sidecar_path(path), json.dumps(meta, indent=2) + "\n")


def export_onnx(model: Classifier, path: str | os.PathLike[str], *, with_sidecar: bool = True,
                batch_size: int | None = None) -> Path:
    """Write ``model`` as an ONNX file taking [0, 1] input (normalisation folded in; TorchScript-based exporter).

    The batch dimension is dynamic unless ``batch_size`` fixes it (as some exporters do). The sidecar, like
    :func:`export_torchscript`'s, records shape, classes and output kind; an ONNX file loads without it.
    """
    if not model.white_box:
        raise InvalidInputError("a query-only model has no network to export")
    p = Path(path)
    wrapped = _Normalized(model.module, model.mean, model.std).eval()
    example = torch.full((batch_size or 1, *model.input_shape), 0.5, device=model.device)
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript-based exporter needs no onnxscript
        torch.onnx.export(wrapped, (example,), buf,  # type: ignore[arg-type]  # a file-like object is accepted
                          dynamo=False, input_names=["input"], output_names=["scores"],
                          dynamic_axes=None if batch_size else {"input": {0: "batch"}, "scores": {0: "batch"}},
                          opset_version=17)
    write_bytes_atomic(p, buf.getvalue())
    if with_sidecar:
        _write_export_sidecar(model, p)
    return p


def export_torchscript(model: Classifier, path: str | os.PathLike[str], *, with_sidecar: bool = True) -> Path:
    """Write ``model`` as a TorchScript archive taking [0, 1] input (normalisation folded in)."""
    p = Path(path)
    wrapped = _Normalized(model.module, model.mean, model.std).eval()
    example = torch.full((1, *model.input_shape), 0.5, device=model.device)  # no draw from the global RNG
    with torch.no_grad():
        scripted = torch.jit.trace(wrapped, example)
    # saved through a buffer: a file name would become the archive's root folder, and atomic_path's temporary name
    # is random, so the same model would give different bytes (and a new sha256) on every export
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    write_bytes_atomic(p, buf.getvalue())
    if with_sidecar:
        _write_export_sidecar(model, p)
    return p
