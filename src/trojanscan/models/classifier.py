"""The one model wrapper every method goes through (DESIGN.md §3, "Classifier").

Input: float32 NCHW in [0, 1] pixel space. Output: logits ``(N, num_classes)``.
Normalisation ``(x - mean) / std`` lives here, never in the detectors.

**What the network returns.** Third-party models do not all end in logits: some end in a softmax
(probabilities) or a log-softmax (log-probabilities). Every method here reads the wrapper's output as logits
(softmax / cross-entropy / NLL on top of it), so a probability output would be squashed a second time
(``softmax(p)`` of a confident ``p`` is near uniform: DeepInspect's model inversion then never gets past a
target confidence of about 0.23 on ten classes). ``outputs="probabilities"`` makes :meth:`Classifier.forward`
return ``log p`` instead: ``log p = z - logsumexp(z)`` differs from the logits ``z`` by one constant per row, so
softmax, cross-entropy and NLL are exactly those of the logits. Log-probabilities need nothing
(``softmax(log p) = p``). :func:`detect_outputs` tells the three apart with one probe batch;
``load_model`` uses it for TorchScript and pickled files.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from trojanscan.errors import InvalidInputError
from trojanscan.types import ImageBatch, Shape3

#: What a wrapped network may return (module docstring).
OUTPUT_KINDS: tuple[str, ...] = ("logits", "probabilities", "log_probabilities")
#: Probabilities are floored here before the logarithm (float32 softmax underflows to exactly 0).
PROB_FLOOR = 1e-30


def scores_of(out: Any) -> Any:
    """A network's output as the (N, K) tensor of its scores, where that is unambiguous: a mapping's ``"logits"``
    entry (as many exported models return), and trailing singleton dimensions dropped (a fully convolutional head's
    (N, K, 1, 1)). Anything else is returned as it is, for :meth:`Classifier.validate` to name."""
    if isinstance(out, Mapping) and isinstance(out.get("logits"), torch.Tensor):
        out = out["logits"]
    if isinstance(out, torch.Tensor) and out.dim() > 2 and out.shape[2:].numel() == 1:
        out = out.flatten(1)
    return out


class Classifier(nn.Module):
    """Wrap a white-box ``nn.Module`` (or TorchScript module) as a [0, 1]-input classifier.

    Parameters
    ----------
    module:
        Maps normalised NCHW input to logits.
    input_shape:
        ``(C, H, W)`` the model expects.
    num_classes:
        Number of output logits.
    mean, std:
        Per-channel normalisation applied inside the wrapper; ``None`` means identity.
    class_names:
        Optional human-readable names, one per class.
    metadata:
        Free-form provenance (architecture, training recipe, file path, sha256).
    outputs:
        What ``module`` returns: ``"logits"`` (default), ``"probabilities"`` (a terminal softmax; the wrapper
        returns their logarithm) or ``"log_probabilities"`` (returned as they are). See the module docstring.

    ``queries`` counts the images forwarded through the model (the report's ``model_queries``).

    **Devices.** ``classifier.to(device)`` moves the network (weights and normalisation) to a GPU; inputs and
    outputs stay on the caller's device, and autograd carries gradients across the copy. So every method
    (detectors, patching, the training loop) keeps its own tensors and random draws on the CPU, unchanged,
    while the network's forward and backward passes, the bulk of the work, run on the device
    (``--device``; :func:`resolve_device`).
    """

    mean: torch.Tensor
    std: torch.Tensor
    #: Autograd reaches through the network (gradients, weights). A query-only model
    #: (:class:`trojanscan.models.query.QueryClassifier`) answers scores only.
    white_box: bool = True

    def __init__(
        self,
        module: nn.Module,
        input_shape: Shape3,
        num_classes: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        class_names: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
        outputs: str = "logits",
    ) -> None:
        super().__init__()
        if outputs not in OUTPUT_KINDS:
            raise InvalidInputError(f"outputs must be one of {', '.join(OUTPUT_KINDS)}; got {outputs!r}")
        self.outputs = outputs
        self.module = module
        self.input_shape: Shape3 = (int(input_shape[0]), int(input_shape[1]), int(input_shape[2]))
        self.num_classes = int(num_classes)
        c = self.input_shape[0]
        m = torch.zeros(c) if mean is None else torch.as_tensor(list(mean), dtype=torch.float32)
        s = torch.ones(c) if std is None else torch.as_tensor(list(std), dtype=torch.float32)
        if m.numel() == 1:
            m = m.repeat(c)
        if s.numel() == 1:
            s = s.repeat(c)
        if m.numel() != c or s.numel() != c:
            raise InvalidInputError(
                f"mean/std must have 1 or {c} values (one per channel); got {m.numel()} and {s.numel()}"
            )
        if bool((s <= 0).any()):
            raise InvalidInputError(f"std must be positive; got {s.tolist()}")
        self.register_buffer("mean", m.view(1, c, 1, 1), persistent=False)
        self.register_buffer("std", s.view(1, c, 1, 1), persistent=False)
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.queries = 0

    @property
    def device(self) -> torch.device:
        """Where the network runs (its normalisation buffers, moved with it by ``.to(device)``)."""
        return self.mean.device

    def forward(self, x: ImageBatch) -> torch.Tensor:
        """Logits of images ``x`` in [0, 1]; counts ``x.shape[0]`` queries.

        The logits are returned on ``x``'s device: a network on a GPU takes and gives CPU tensors. A network
        that returns probabilities gives their logarithm (module docstring).
        """
        self.queries += int(x.shape[0])
        return self._as_logits(self.raw_output(x))

    def _as_logits(self, out: torch.Tensor) -> torch.Tensor:
        """The network's output as logits: ``log p`` of probabilities, anything else as it is (module docstring)."""
        if self.outputs == "probabilities":
            out = torch.log(out.clamp_min(PROB_FLOOR))
        return out

    def raw_output(self, x: ImageBatch) -> torch.Tensor:
        """What the network itself returns for ``x`` in [0, 1] (normalised here), on ``x``'s device; no query count."""
        dev = self.device
        if x.device == dev:
            return scores_of(self.module((x - self.mean) / self.std))
        return scores_of(self.module((x.to(dev) - self.mean) / self.std)).to(x.device)

    @torch.no_grad()
    def predict_logits(self, x: ImageBatch, batch_size: int = 512) -> torch.Tensor:
        """Logits for a large batch, evaluated in chunks without gradients."""
        outs = [self(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
        return torch.cat(outs) if outs else torch.zeros(0, self.num_classes)

    def predict(self, x: ImageBatch, batch_size: int = 512) -> torch.Tensor:
        """Predicted labels (int64)."""
        return self.predict_logits(x, batch_size).argmax(1)

    def loss_and_input_grad(
        self, x: ImageBatch, loss_fn: Callable[[torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The white-box seam: ``loss_fn(logits)`` (a scalar) and its gradient w.r.t. the input ``x``.

        Data-free paths (model inversion, generator training) reach the model only through this
        method, so a query-only estimator (finite differences / NES) can stand behind it later.
        """
        xi = x.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = loss_fn(self(xi))
            (grad,) = torch.autograd.grad(loss, xi)
        return loss.detach(), grad

    def queries_per_gradient(self, n_images: int) -> int:
        """Queries one :meth:`loss_and_input_grad` call on ``n_images`` images counts: one forward pass each here."""
        return int(n_images)

    def validate(self) -> None:
        """One probe forward pass: output 2-D, ``num_classes`` (at least 2) wide and finite, else InvalidInputError."""
        probe = torch.rand(2, *self.input_shape, generator=torch.Generator().manual_seed(0))
        try:
            with torch.no_grad(), preserved_state(self):
                self.eval()
                out = self(probe)
        except Exception as exc:  # a broken model must give a clear message, whatever it raises
            raise InvalidInputError(
                f"the model failed on a probe input of shape (2, {', '.join(map(str, self.input_shape))}): "
                f"{type(exc).__name__}: {exc}. Check --input-shape and the model file."
            ) from exc
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise InvalidInputError(
                f"the model's output must be 2-D logits (N, num_classes); got {shape}. "
                "Wrap the model so that it returns one logits tensor."
            )
        if out.shape[1] < 2:
            raise InvalidInputError(
                f"the model has {out.shape[1]} output(s): a trojan sends inputs to another label, so trojanscan scans "
                "classifiers of at least 2 classes. For a one-logit binary classifier (a sigmoid on z), wrap it to "
                "return torch.cat([-z, z], 1) / 2 (the same probabilities, as two logits)."
            )
        if out.shape[1] != self.num_classes:
            raise InvalidInputError(
                f"the model outputs {out.shape[1]} classes but num_classes is {self.num_classes}; "
                "fix the metadata or pass --num-classes."
            )
        if not bool(torch.isfinite(out).all()):
            raise InvalidInputError("the model's output contains NaN or inf on a probe input; the model is broken.")


def clone_classifier(model: Classifier) -> Classifier:
    """An independent copy of ``model`` whose parameters are leaves with the original's ``requires_grad``.

    ``copy.deepcopy`` of a TorchScript module clones its parameters *through autograd* (non-leaf tensors with a
    ``CloneBackward`` node), which an optimiser refuses; copying under ``no_grad`` gives leaves, and the flags are
    then restored. Every copy that is trained or frozen (patching, distillation, fine-tuning a base) goes through here.
    """
    with torch.no_grad():
        twin = copy.deepcopy(model)
    for src, dst in zip(model.parameters(), twin.parameters(), strict=True):
        dst.requires_grad_(src.requires_grad)
    return twin


#: Two passes on one input may differ by this much, relative to the largest output, before a model counts as random
#: (a GPU's reduction order moves float32 outputs by far less).
RANDOM_OUTPUT_TOL = 1e-4


@torch.no_grad()
def output_spread(model: Classifier, *, repeats: int = 3) -> tuple[float, float]:
    """How far ``model``'s outputs move on the same input, relative to its largest absolute output:
    ``(random, batch)``. ``random``: the largest difference over ``repeats`` passes of one seeded probe batch (dropout
    left on). ``batch``: between two images' outputs in that batch of four and in a batch of their own (batch norm
    left in training mode normalises by the batch's statistics); 0 when ``random`` is not, since the noise would
    hide it. Both are 0 for a deterministic network in eval mode. A TorchScript file traced in training mode keeps
    both (``eval()`` cannot reach a traced graph's constants), and every statistic computed from it moves with
    them. The model's buffers and the global random state are left as they were (a query-only model would count
    the probes: :func:`~trojanscan.models.io.load_model` measures white-box networks only, on the CPU).
    """
    c, h, w = model.input_shape
    probe = torch.rand(4, c, h, w, generator=torch.Generator().manual_seed(1))
    with preserved_state(model), torch.random.fork_rng(devices=[]):
        model.eval()
        outs = [model.raw_output(probe).double() for _ in range(max(2, int(repeats)))]
        alone = model.raw_output(probe[:2]).double()
    scale = max(float(torch.stack(outs).abs().max()), 1e-12)
    random = max(float((o - outs[0]).abs().max()) for o in outs[1:]) / scale
    batch = 0.0 if random > RANDOM_OUTPUT_TOL else float((alone - outs[0][:2]).abs().max()) / scale
    return random, batch


@torch.no_grad()
def detect_outputs(model: Classifier, *, tol: float = 1e-3) -> str:
    """Whether ``model``'s network returns logits, probabilities or log-probabilities (one of :data:`OUTPUT_KINDS`).

    One probe batch (black, white, mid-grey and six seeded uniform-noise images, in [0, 1]) through the raw
    network: **probabilities** if every output lies in [0, 1] and every row sums to 1 within ``tol``;
    **log-probabilities** if every output is <= 0 and every row's logsumexp is 0 within ``tol``; logits
    otherwise. Logits pass either test on all nine images only by coincidence. A one-class output is logits.
    """
    if model.num_classes < 2:
        return "logits"
    c, h, w = model.input_shape
    fixed = torch.stack([torch.full((c, h, w), v) for v in (0.0, 1.0, 0.5)])
    noise = torch.rand(6, c, h, w, generator=torch.Generator().manual_seed(0))
    with preserved_state(model):
        model.eval()
        out = model.raw_output(torch.cat([fixed, noise]))
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or not bool(torch.isfinite(out).all()):
        return "logits"  # validate() reports what is wrong with such an output
    out = out.double()
    if bool((out >= -tol).all() and (out <= 1 + tol).all() and ((out.sum(1) - 1).abs() <= tol).all()):
        return "probabilities"
    if bool((out <= tol).all() and (torch.logsumexp(out, 1).abs() <= tol).all()):
        return "log_probabilities"
    return "logits"


def resolve_device(spec: str | torch.device | None) -> torch.device:
    """The device ``--device`` names: ``cpu`` (default), ``cuda``, ``cuda:N``, ``mps`` or ``auto``.

    ``auto`` is CUDA when torch sees a GPU, else the CPU. A device this machine does not have is an
    :class:`InvalidInputError` that says so (never a silent fall-back to the CPU).
    """
    if spec is None:
        return torch.device("cpu")
    text = str(spec).strip().lower()
    if text == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError) as exc:
        raise InvalidInputError(f"--device {spec!r} is not a device; use cpu, cuda, cuda:N, mps or auto") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInputError(
                f"--device {spec!r}: torch sees no CUDA GPU on this machine (torch.cuda.is_available() is False); "
                "use --device cpu, or install a CUDA build of torch where there is a GPU")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InvalidInputError(
                f"--device {spec!r}: there are only {torch.cuda.device_count()} CUDA device(s) (0-based)")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise InvalidInputError(f"--device {spec!r}: the MPS backend is not available here; use --device cpu")
    elif dev.type != "cpu":
        raise InvalidInputError(f"--device {spec!r} is not supported; use cpu, cuda, cuda:N, mps or auto")
    return dev


@dataclass
class _Snapshot:
    training: dict[str, bool] = field(default_factory=dict)
    requires_grad: dict[str, bool] = field(default_factory=dict)
    hooks: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)


def _hook_counts(m: nn.Module) -> tuple[int, int, int, int]:
    return (
        len(getattr(m, "_forward_hooks", {}) or {}),
        len(getattr(m, "_forward_pre_hooks", {}) or {}),
        len(getattr(m, "_backward_hooks", {}) or {}),
        len(getattr(m, "_backward_pre_hooks", {}) or {}),
    )


@contextlib.contextmanager
def preserved_state(model: nn.Module) -> Iterator[None]:
    """Restore every submodule's ``training`` flag, every parameter's ``requires_grad`` and every buffer's values
    on exit (a network whose batch norm was traced in training mode updates its running statistics on every
    forward pass, whatever ``eval()`` says).

    Detectors run inside this context (DESIGN.md §3: a scan leaves the model as it found it).
    Hooks a detector registers must be removed by the detector itself (in a ``finally``); this
    context checks that none were left behind and raises if so.
    """
    snap = _Snapshot()
    for name, m in model.named_modules():
        snap.training[name] = m.training
        snap.hooks[name] = _hook_counts(m)
    for name, p in model.named_parameters():
        snap.requires_grad[name] = p.requires_grad
    for name, b in model.named_buffers():
        snap.buffers[name] = b.detach().clone()
    try:
        yield
    finally:
        for name, m in model.named_modules():
            if name in snap.training:
                m.training = snap.training[name]
        for name, p in model.named_parameters():
            if name in snap.requires_grad:
                p.requires_grad_(snap.requires_grad[name])
        with torch.no_grad():
            for name, b in model.named_buffers():
                saved = snap.buffers.get(name)
                if saved is not None and saved.shape == b.shape and not torch.equal(saved, b):
                    b.copy_(saved)
    leaked = [n for n, m in model.named_modules() if n in snap.hooks and _hook_counts(m) != snap.hooks[n]]
    if leaked:
        raise RuntimeError(f"internal error: hooks left on modules {leaked[:5]} after a scan")
