"""The Detector contract and registry (DESIGN.md §3).

A detector computes **one statistic per class**; :mod:`trojanscan.stats` turns those into anomaly
indices and a verdict. Subclasses implement :meth:`Detector._check_params` and :meth:`Detector._run`;
:meth:`Detector.scan` does everything shared: input validation, seeding, restoring the model,
timing, query counting, the outlier test and the report.
"""

from __future__ import annotations

import inspect
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from trojanscan import stats
from trojanscan._fileio import atomic_path
from trojanscan.data.base import Dataset, validate_images
from trojanscan.errors import InvalidInputError, QueryBudgetError, WhiteBoxRequiredError
from trojanscan.models.classifier import Classifier, preserved_state
from trojanscan.report.scan_report import ClassResult, DataInfo, ModelInfo, ScanReport


@dataclass
class DetectorOutput:
    """What a detector's :meth:`Detector._run` returns.

    ``statistics``: one float per class (small = suspicious, the left tail).
    ``extra``: optional per-class side numbers (e.g. attack success of a reversed trigger).
    ``artifacts``: tensors for the report (e.g. ``"masks"`` (K,H,W), ``"patterns"`` (K,C,H,W)).
    ``indices``: per-class anomaly indices the detector computed itself, when its test does not run over the K
    statistics (DeepInspect's pair mode); None (the default) lets :meth:`Detector.scan` apply its test to them.
    """

    statistics: list[float]
    data: DataInfo
    extra: dict[str, list[float]] = field(default_factory=dict)
    artifacts: dict[str, torch.Tensor] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    indices: list[float] | None = None


class Detector(ABC):
    """Base class: ``Detector(**hyperparameters).scan(model, data, seed=0) -> ScanReport``.

    Constructors only store hyperparameters (scikit-learn's rule); they are validated when
    :meth:`scan` starts. Every subclass takes ``cutoff`` (default 2.0), ``alpha`` (None; when set,
    it overrides ``cutoff`` through :func:`trojanscan.stats.cutoff_from_alpha`) and ``familywise``
    (False; when True the cutoff is the one whose false-alarm rate per *model* of K labels is alpha(c) under
    the papers' normal model, :func:`trojanscan.stats.familywise_cutoff`).
    After a scan, ``self.artifacts_`` holds the tensors behind the report (triggers, heatmaps).
    """

    name: ClassVar[str]
    test: ClassVar[str] = "mad"  # "mad" (anomaly index) or "dmad" (deviation factor)
    #: The method needs gradients through the network itself (not only w.r.t. its input), so it cannot scan a
    #: query-only model (:class:`trojanscan.models.query.QueryClassifier`).
    needs_white_box: ClassVar[bool] = False
    why_white_box: ClassVar[str] = ""

    artifacts_: dict[str, torch.Tensor]

    def __init__(self, **hyperparameters: Any) -> None:  # subclasses list theirs explicitly
        for k, v in hyperparameters.items():
            setattr(self, k, v)

    # ----- scikit-learn-style parameter introspection
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self" and sig.parameters[p].kind is not inspect.Parameter.VAR_KEYWORD]

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters as passed to the constructor (recorded in the report's ``config``)."""
        return {k: getattr(self, k) for k in self._param_names()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ----- the contract
    def scan(
        self,
        model: Classifier,
        data: Dataset | torch.Tensor | None = None,
        *,
        seed: int = 0,
        progress: bool = True,
        artifact_dir: str | os.PathLike[str] | None = None,
    ) -> ScanReport:
        """Scan ``model`` with clean ``data`` (or none: data-free paths use model inversion)."""
        self._check_common()
        self._check_params()
        if not isinstance(model, Classifier):
            raise InvalidInputError(
                f"model must be a trojanscan Classifier; got {type(model).__name__}. "
                "Wrap it: Classifier(module, input_shape, num_classes) or use load_model(path)."
            )
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise InvalidInputError(f"seed must be a non-negative int; got {seed!r}")
        if self.needs_white_box and not model.white_box:
            raise WhiteBoxRequiredError(
                f"{self.name} cannot scan a query-only model: {self.why_white_box}. Scan it with deep_inspect or "
                "neural_cleanse (they estimate input gradients from queries), or give a TorchScript / safetensors file.")
        model.validate()
        dataset = _check_data(data, model)
        _check_budget(self, model, dataset)
        t0 = time.perf_counter()
        q0 = model.queries
        with preserved_state(model), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model.eval()
            for p in model.parameters():
                p.requires_grad_(False)
            out = self._run(model, dataset, seed=seed, progress=progress)
            # after the method, so that a network with random outputs takes no random number the method would take
            accuracy = clean_accuracy(model, dataset)
        runtime = time.perf_counter() - t0
        k = model.num_classes
        if len(out.statistics) != k:
            raise RuntimeError(f"internal error: {self.name} returned {len(out.statistics)} statistics for {k} classes")
        test = self.decision_test()
        if out.indices is None:
            decision = stats.decide(out.statistics, cutoff=self.effective_cutoff(k), test=test,
                                    scale=self.decision_scale())
        else:
            if len(out.indices) != k:
                raise RuntimeError(f"internal error: {self.name} returned {len(out.indices)} indices for {k} classes")
            idx = np.asarray(out.indices, dtype=np.float64)
            cut = self.effective_cutoff(k)
            decision = stats.Decision(idx, stats.flagged(idx, out.statistics, cut), float(np.max(idx)), cut)
        classes = [
            ClassResult(
                label=i,
                statistic=float(out.statistics[i]),
                anomaly_index=float(decision.indices[i]),
                name=model.class_names[i] if i < len(model.class_names) else None,
                extra={name: float(vals[i]) for name, vals in out.extra.items()},
            )
            for i in range(k)
        ]
        self.artifacts_ = dict(out.artifacts)
        artifacts: dict[str, str] = {}
        if artifact_dir is not None and out.artifacts:
            artifacts["tensors"] = str(save_artifacts(out.artifacts, Path(artifact_dir) / f"{self.name}.safetensors"))
        return with_decision_notes(ScanReport(
            method=self.name,
            verdict=decision.verdict,
            anomaly_index=decision.anomaly_index,
            cutoff=decision.cutoff,
            suspects=decision.suspects,
            classes=classes,
            model=ModelInfo(
                path=model.metadata.get("path"),
                sha256=model.metadata.get("sha256"),
                input_shape=list(model.input_shape),
                num_classes=k,
                outputs=model.outputs,
                access="white-box" if model.white_box else "query-only",
            ),
            data=replace(out.data, model_accuracy=None if accuracy is None else accuracy[0],
                         model_accuracy_images=None if accuracy is None else accuracy[1]),
            runtime_s=runtime,
            model_queries=model.queries - q0,
            seed=seed,
            config={**_jsonable(self.get_params()), "test": test},
            artifacts=artifacts,
            notes=(_output_notes(model) + accuracy_notes(accuracy, k) + _few_labels_notes(k, decision.indices)
                   + list(out.notes)
                   + scale_notes(self.decision_scale())
                   + false_alarm_notes(k, decision.cutoff, test, bool(getattr(self, "familywise", False)))),
        ))

    def planned_queries(self, model: Classifier, data: Dataset | None) -> int | None:
        """The model queries a scan of ``model`` with ``data`` will make, where the method knows it up front:
        the method's own (:meth:`_planned_queries`) plus the images of the accuracy check (:func:`clean_accuracy`).

        Counted as a query-only model counts them (every image sent, gradient probes included), from the
        hyperparameters alone. ``None`` when the method's count depends on the run (early stopping).
        A query-only model with a budget is refused before any query when this number exceeds what is left.
        """
        own = self._planned_queries(model, data)
        return None if own is None else own + accuracy_queries(data)

    def _planned_queries(self, model: Classifier, data: Dataset | None) -> int | None:
        """The queries :meth:`_run` makes, where the method knows them up front; ``None`` (the default) if not."""
        return None

    def effective_cutoff(self, num_classes: int | None = None) -> float:
        """The per-label cutoff: ``cutoff`` or the one ``alpha`` gives; with ``familywise``, the exact per-model
        cutoff of this detector's test for ``num_classes`` labels (:func:`trojanscan.stats.familywise_cutoff`)."""
        return stats.resolve_cutoff(getattr(self, "cutoff", 2.0), getattr(self, "alpha", None),
                                    getattr(self, "familywise", False), num_classes, self.decision_test())

    def decision_test(self) -> str:
        """The outlier test this instance decides with (recorded as ``config["test"]``): the class's ``test``,
        unless a mode of the detector tests something else (DeepInspect's pair mode: ``dmad_pairs``)."""
        return self.test

    #: Every note :meth:`decision_notes` writes starts with one of these (re-deciding a report replaces them).
    decision_note_prefixes: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def decision_notes(cls, report: ScanReport) -> list[str]:
        """Notes that depend on the report's decision (its cutoff, test and scale), derived from the report alone, so
        that :func:`trojanscan.scan.rethreshold` and :func:`~trojanscan.scan.rescale` re-derive them for the new
        decision (:func:`with_decision_notes`). None by default."""
        return []

    @classmethod
    def statistics_on_scale(cls, classes: Sequence[ClassResult], scale: str) -> list[float]:
        """The per-class statistics a scan at ``scale`` reports, rebuilt from a saved report's ``classes``
        (their statistic and ``extra``), so that :func:`trojanscan.scan.rescale` can re-decide it without a scan.
        Detectors without a ``scale`` hyperparameter have none to give (their statistic is not a norm)."""
        raise InvalidInputError(f"{cls.name} has no log scale: its statistic is not a norm")

    def decision_scale(self) -> str:
        """The scale the outlier test runs on (:func:`trojanscan.stats.on_scale`): the ``scale`` hyperparameter of
        the detectors that have one (their statistics are norms), else ``"raw"``, the papers' test."""
        return str(getattr(self, "scale", "raw"))

    def _check_common(self) -> None:
        stats.check_cutoff(getattr(self, "cutoff", 2.0))  # even when alpha overrides it
        if hasattr(self, "scale"):
            stats.check_scale(self.scale, type(self).__name__)
        self.effective_cutoff()  # validates alpha and familywise

    @abstractmethod
    def _check_params(self) -> None:
        """Raise InvalidInputError naming the first bad hyperparameter."""

    @abstractmethod
    def _run(self, model: Classifier, data: Dataset | None, *, seed: int, progress: bool) -> DetectorOutput:
        """Compute one statistic per class. The model is frozen, in eval mode, and restored afterwards."""


#: The accuracy check (:func:`clean_accuracy`) looks at most at this many labelled clean images.
MAX_ACCURACY_IMAGES = 1000


def _accuracy_sample(data: Dataset | Any) -> torch.Tensor | None:
    """Indices of the labelled images the accuracy check reads: all of them, or ``MAX_ACCURACY_IMAGES`` evenly spaced
    (no random draw); None when there are none."""
    if not isinstance(data, Dataset):
        return None
    labelled = torch.nonzero(data.y >= 0).flatten()
    if labelled.numel() == 0:
        return None
    if labelled.numel() > MAX_ACCURACY_IMAGES:
        labelled = labelled[torch.linspace(0, labelled.numel() - 1, MAX_ACCURACY_IMAGES).round().long()]
    return labelled


def accuracy_queries(data: Dataset | None) -> int:
    """The model queries :func:`clean_accuracy` makes on ``data``."""
    idx = _accuracy_sample(data)
    return 0 if idx is None else int(idx.numel())


def clean_accuracy(model: Classifier, data: Dataset | None) -> tuple[float, int] | None:
    """The share of ``data``'s labelled images (at most :data:`MAX_ACCURACY_IMAGES`) that ``model`` classifies as
    labelled, and how many were read; None without labelled images (:func:`trojanscan.training.accuracy`, its
    forward passes counted as queries). Every scan given clean data reports it (``data.model_accuracy``): a trojaned
    model is accurate on clean inputs, so a low value means the images or the way the model reads them are wrong."""
    idx = _accuracy_sample(data)
    if idx is None or data is None:
        return None
    from trojanscan.training import accuracy

    return accuracy(model, data.subset(idx)), int(idx.numel())


def accuracy_notes(accuracy: tuple[float, int] | None, num_classes: int) -> list[str]:
    """A warning when the model gets less than halfway from chance to perfect on the clean images it was given."""
    if accuracy is None:
        return []
    acc, n = accuracy
    chance = 1.0 / num_classes
    if acc >= (1.0 + chance) / 2:
        return []
    return [f"the model classifies only {100 * acc:.1f} % of the {n} labelled clean images right (chance "
            f"{100 * chance:.3g} %), so every statistic here rests on images it does not recognise: check the "
            "model's input normalisation (--mean/--std), its channel order and input range, that the labels follow "
            "its class order, and that the data is its task"]


def _check_budget(det: Detector, model: Classifier, data: Dataset | None) -> None:
    need = det.planned_queries(model, data)
    if need is not None:
        check_query_budget(model, need, f"{det.name} needs")


def check_query_budget(model: Classifier, need: int, who: str) -> None:
    """A query-only model's budget would not cover ``need`` more queries: say so before the first one (not hours in)."""
    budget = getattr(model, "max_queries", None)
    if model.white_box or budget is None or model.queries + need <= budget:
        return
    raise QueryBudgetError(
        f"{who} {need:,} model queries, but the query budget (max_queries={budget:,}) has "
        f"{max(budget - model.queries, 0):,} left; raise --max-queries, or lower --query-samples or the method's steps")


def _output_notes(model: Classifier) -> list[str]:
    """Notes on what loading had to work out: outputs that are not logits (models/classifier.py, "What the network
    returns"), an input shape taken from the data or a probe, weights cast to float32 (models/io.py)."""
    notes = []
    how = "detected by a probe" if model.metadata.get("outputs_detected") else "as given"
    if model.outputs == "probabilities":
        notes.append(f"the model outputs probabilities ({how}): their logarithm is used as the logits "
                     "(log p = logit - logsumexp, the same softmax and cross-entropy)")
    elif model.outputs == "log_probabilities":
        notes.append(f"the model outputs log-probabilities ({how}): used as the logits (softmax(log p) = p)")
    shape = "x".join(map(str, model.input_shape))
    source = model.metadata.get("input_shape_source")
    if source == "data":
        notes.append(f"the model file does not give its input shape: {shape} is the clean data's image shape")
    elif source == "probe":
        notes.append(f"the model file does not give its input shape: {shape} is the only one of the shapes tried "
                     "that the network accepts (pass --input-shape if it is wrong)")
    if model.metadata.get("random_outputs"):
        notes.append(f"the model's outputs are random: passes on the same input differ by up to "
                     f"{100 * float(model.metadata['random_outputs']):.3g} % of its largest output (dropout or noise "
                     "left on, e.g. a TorchScript file traced in training mode), so every statistic here carries that "
                     "noise; export it after model.eval() and scan it again")
    if model.metadata.get("batch_dependent_outputs"):
        notes.append(f"the model's outputs depend on the other images in the batch: by up to "
                     f"{100 * float(model.metadata['batch_dependent_outputs']):.3g} % of its largest output (batch "
                     "norm left in training mode, e.g. a TorchScript file traced in training mode), so every statistic "
                     "here depends on the method's batch sizes; export it after model.eval() and scan it again")
    if model.metadata.get("cast_from_dtype"):
        notes.append(f"the model's {model.metadata['cast_from_dtype']} weights were cast to float32 for the scan")
    if model.metadata.get("torchscript_vetted") is False:
        notes.append("the TorchScript file was run WITHOUT vetting its code (--allow-unsafe-torchscript): "
                     "trojanscan.models.vetting did not check it for file or network access")
    if not model.white_box:
        q = model.metadata.get("query") or {}
        what = "an ONNX file" if model.metadata.get("format") == "onnx" else "scores only"
        notes.append(f"query-only model ({what}): input gradients estimated from queries (NES, "
                     f"{q.get('samples')} direction pairs, sigma {q.get('sigma')}; trojanscan.models.query)")
    return notes


#: Fewer labels than this and the outlier test is weak (see :func:`_few_labels_notes`).
FEW_LABELS = 5


#: Every note :func:`false_alarm_notes` writes starts with this (``rethreshold`` replaces it).
FALSE_ALARM_NOTE = "false alarms:"


def with_decision_notes(report: ScanReport) -> ScanReport:
    """``report`` with its detector's :meth:`Detector.decision_notes` derived afresh (the old ones dropped), placed
    before the false-alarm notes; a report of a method not registered here is returned as it is."""
    _import_builtin()
    if report.method not in _REGISTRY:
        return report
    cls = _REGISTRY[report.method]
    prefixes = cls.decision_note_prefixes
    kept = [n for n in report.notes if not (prefixes and n.startswith(prefixes))]
    last = [n for n in kept if n.startswith(FALSE_ALARM_NOTE)]
    first = [n for n in kept if not n.startswith(FALSE_ALARM_NOTE)]
    return replace(report, notes=first + cls.decision_notes(report) + last)


def scale_notes(scale: str) -> list[str]:
    """The note a report on ``scale`` carries (none on the papers' raw scale)."""
    if scale == "raw":
        return []
    return ["scale log (not in the paper): the outlier test ran on log(statistic), so an index counts spreads of the "
            "labels' ratios to the median; no calibrated probability exists for it (docs/methods/statistics.md)"]


def false_alarm_notes(k: int, cutoff: float, test: str, familywise: bool) -> list[str]:
    """How often ``test`` flags a clean model of ``k`` labels at ``cutoff``, under the papers' normal null
    (:func:`trojanscan.stats.null_false_alarm_rate`); none for a family-wise cutoff or below FEW_LABELS labels."""
    if familywise or k < FEW_LABELS or test in stats.PER_MODEL_TESTS:
        return []
    p = stats.null_false_alarm_rate(cutoff, k, test)
    c_k = stats.familywise_cutoff(stats.DEFAULT_CUTOFF, k, test)
    return [f"{FALSE_ALARM_NOTE} at cutoff {cutoff:.2f} this test flags a clean {k}-label model whose per-label "
            f"statistics are all alike (independent normal draws) with probability {p:.2f}; --familywise (cutoff "
            f"{c_k:.2f}) makes that {stats.alpha_from_cutoff(stats.DEFAULT_CUTOFF):.3f} per model "
            "(docs/methods/statistics.md)"]


def _few_labels_notes(k: int, indices: Sequence[float] | np.ndarray) -> list[str]:
    """A warning when the model has too few labels for a median/MAD outlier test to mean much.

    With 2 labels both sit one MAD from their median, so the indices are +-1/1.4826 = +-0.67, below any useful
    cutoff: no label can ever be flagged. With 3-4 the MAD rests on 1-2 deviations, so a label can sit far outside
    it by chance (untrained 3- and 4-class networks gave Neural Cleanse 18.6 and 19.2:
    ``scripts/measure_extras.py few-labels``; docs/methods/statistics.md).
    """
    if k >= FEW_LABELS:
        return []
    top = max(abs(float(v)) for v in indices) if len(indices) else 0.0
    if k <= 2:
        return [f"only {k} labels: the outlier test cannot flag any label (no index can exceed {top:.2f}); this "
                "verdict says nothing about a trojan"]
    return [f"only {k} labels: the median/MAD outlier test rests on {k - 1} deviations and is unreliable here "
            f"(it can flag a label by chance or miss one); read the verdict as weak evidence"]


def _check_data(data: Dataset | torch.Tensor | None, model: Classifier) -> Dataset | None:
    if data is None:
        return None
    if isinstance(data, torch.Tensor):
        validate_images(data, "clean data")
        data = Dataset(data, torch.full((data.shape[0],), -1, dtype=torch.int64), model.class_names, "clean data")
    if not isinstance(data, Dataset):
        raise InvalidInputError(f"data must be a Dataset, an image tensor or None; got {type(data).__name__}")
    if len(data) == 0:
        raise InvalidInputError("clean data is empty: give at least one image per class, or --data none")
    if data.input_shape != model.input_shape:
        raise InvalidInputError(
            f"clean data images are {data.input_shape} (C, H, W) but the model takes {model.input_shape}; "
            "resize the data or fix --input-shape."
        )
    known = data.y[data.y >= 0]
    if known.numel() and int(known.max()) >= model.num_classes:
        raise InvalidInputError(
            f"clean data has label {int(known.max())} but the model has {model.num_classes} classes (0..{model.num_classes - 1})"
        )
    if bool((data.y < -1).any()):
        raise InvalidInputError("clean data labels must be >= 0 (or -1 for unknown)")
    return data


def save_artifacts(tensors: dict[str, torch.Tensor], path: Path) -> Path:
    """Write report tensors (triggers, heatmaps) as one safetensors file, atomically."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous().float() for k, v in tensors.items()}, str(tmp))
    return path


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, bool | int | float | str) or v is None:
            out[k] = v
        elif isinstance(v, list | tuple):
            out[k] = [x if isinstance(x, bool | int | float | str) or x is None else repr(x) for x in v]
        else:
            out[k] = repr(v)
    return out


# ----- registry (drives the CLI and the conformance suite)
_REGISTRY: dict[str, type[Detector]] = {}
D = TypeVar("D", bound=type[Detector])


def register_detector(cls: D) -> D:
    """Class decorator: register a Detector subclass under its ``name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"detector {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def list_detectors() -> list[str]:
    """Names of every registered detector (the CLI's --method choices, without 'all')."""
    _import_builtin()
    return sorted(_REGISTRY)


def get_detector(name: str, **hyperparameters: Any) -> Detector:
    """Instantiate a registered detector by name."""
    _import_builtin()
    if name not in _REGISTRY:
        raise InvalidInputError(f"unknown method {name!r}; choose one of {', '.join(sorted(_REGISTRY))} or 'all'")
    return _REGISTRY[name](**hyperparameters)


def detector_class(name: str) -> type[Detector]:
    _import_builtin()
    if name not in _REGISTRY:
        raise InvalidInputError(f"unknown method {name!r}; choose one of {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def _import_builtin() -> None:
    import importlib

    for mod in ("neural_cleanse", "neuron_inspect", "deep_inspect"):
        try:
            importlib.import_module(f"trojanscan.detectors.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"trojanscan.detectors.{mod}":
                raise


