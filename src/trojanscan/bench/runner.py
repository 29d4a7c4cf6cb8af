"""Benchmark experiments: train (cached) models, scan them with every detector, write tables and plots.

Every experiment writes, under ``--out``: ``<experiment>.csv``, ``<experiment>.json``, ``<experiment>.md``
(with the papers' numbers in adjacent columns where they exist) and, where it has a series, a PNG plot.
Scan results are cached per (model, detector, settings) in ``<out>/scans/``, so an interrupted run resumes
where it stopped and a re-run does not rescan; models are cached by recipe hash (:mod:`trojanscan.bench.zoo`).
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

import torch

from trojanscan._fileio import write_bytes_atomic, write_text_atomic
from trojanscan.bench import zoo
from trojanscan.data.base import Dataset
from trojanscan.detectors import get_detector
from trojanscan.models.classifier import Classifier
from trojanscan.recipes import AttackSpec, TrainRecipe
from trojanscan.report.scan_report import ScanReport
from trojanscan.scan import rethreshold

Row = dict[str, Any]


@dataclass
class Context:
    """Where the data and caches are, and how much to print."""

    data_dir: Path
    out: Path
    progress: bool = True
    n_clean: int = 500  # clean images given to the detectors that use clean data
    full: bool = True  # False: skip the optional extra scans (e.g. Neural Cleanse on inverted data)
    # run only these detectors / the models matching these globs; other cells are read from the cache, or say "not run"
    detectors: tuple[str, ...] | None = None
    model_globs: tuple[str, ...] | None = None
    from_scratch: bool = False  # attack variants (GTSRB figures) trained from scratch, not poison-fine-tuned
    device: str = "cpu"  # where the networks train and are scanned (results are cached the same on any device)

    def wants(self, detector: str, model_name: str | None = None) -> bool:
        """Whether this run computes ``detector`` (on ``model_name``): ``--detectors`` and ``--models``."""
        if self.detectors is not None and detector not in self.detectors:
            return False
        return model_name is None or self.model_globs is None or any(
            fnmatch.fnmatchcase(model_name, g) for g in self.model_globs)

    @property
    def models(self) -> Path:
        return self.out / "models"

    def log(self, msg: str) -> None:
        print(msg, flush=True)

    def model(self, name: str, recipe: TrainRecipe) -> tuple[Classifier, dict[str, Any]]:
        return zoo.get_or_train(name, recipe, self.data_dir / recipe.dataset, self.models, progress=self.progress,
                                log=self.log, device=self.device)

    def cached_model(self, name: str, recipe: TrainRecipe) -> tuple[Classifier, dict[str, Any]] | None:
        """The cached model ``recipe`` made under ``name``, or None (never trains)."""
        return zoo.cached(name, recipe, self.models, device=self.device)

    def onnx_twin(self, name: str, model: Classifier, **query: Any) -> Classifier:
        """``model`` exported to ``<out>/onnx/<name>.onnx`` and loaded back: query-only, as a model hub would serve it.

        The export is deterministic (the same weights give the same bytes), so scans of the twin are cached.
        ``query``: the estimator settings of :func:`trojanscan.models.load_model` (``query_samples``, ...).
        """
        from trojanscan.models import export_onnx, load_model

        path = export_onnx(model, self.out / "onnx" / f"{name}.onnx")
        return load_model(path, **query)

    def _clean_index(self, n: int) -> torch.Tensor:
        return torch.randperm(n, generator=torch.Generator().manual_seed(1234))[: self.n_clean]

    def clean_data(self, dataset: str) -> Dataset:
        """The ``n_clean`` seeded test images given to the detectors that use clean data."""
        test = zoo.dataset(dataset, self.data_dir / dataset, "test")
        return test.subset(self._clean_index(len(test)), f"{dataset} clean sample")

    def unseen_test(self, dataset: str) -> Dataset:
        """The test images outside :meth:`clean_data` (for measuring a model patched on that sample)."""
        test = zoo.dataset(dataset, self.data_dir / dataset, "test")
        unseen = torch.ones(len(test), dtype=torch.bool)
        unseen[self._clean_index(len(test))] = False
        return test.subset(torch.nonzero(unseen).flatten(), f"{dataset} test outside the clean sample")

    @overload
    def scan(self, model_name: str, model: Classifier, detector: str, data: Dataset | None, *, seed: int = 0,
             params: dict[str, Any] | None = None, compute: Literal[True] = True) -> ScanReport: ...

    @overload
    def scan(self, model_name: str, model: Classifier, detector: str, data: Dataset | None, *, seed: int = 0,
             params: dict[str, Any] | None = None, compute: bool) -> ScanReport | None: ...

    def scan(self, model_name: str, model: Classifier, detector: str, data: Dataset | None, *, seed: int = 0,
             params: dict[str, Any] | None = None, compute: bool = True) -> ScanReport | None:
        """Scan with caching: the cache key covers the model's sha, the detector, its params and the data.

        ``compute=False``: only read the cache (None when the scan was never made).
        """
        full = get_detector(detector, **(params or {})).get_params()  # defaults too: a changed default rescans
        # familywise only moves the cutoff: scans with and without it share one cached scan (and the keys
        # written before the option existed), re-decided by rethreshold()
        familywise = bool(full.pop("familywise", False))
        spec: dict[str, Any] = {"m": model.metadata.get("sha256"), "d": detector, "p": full, "s": seed,
                                "data": None if data is None else [data.name, len(data)]}
        if not model.white_box:  # a query-only twin: its gradient estimator is part of the setting
            spec["q"] = model.metadata.get("query")
        key_src = json.dumps(spec, sort_keys=True, default=str)
        key = hashlib.sha256(key_src.encode()).hexdigest()[:12]
        path = self.out / "scans" / f"{model_name}__{detector}__{key}.json"
        if path.is_file():
            return rethreshold(ScanReport.load_json(path), familywise=familywise)
        if not compute:
            return None
        self.log(f"scanning {model_name} with {detector} ...")
        hp = {**(params or {}), "familywise": False}
        rep = get_detector(detector, **hp).scan(model, data, seed=seed, progress=self.progress)
        rep.save_json(path)
        rep = rethreshold(rep, familywise=familywise)
        self.log(f"  {detector}: {rep.verdict} suspects={rep.suspects} index={rep.anomaly_index:.2f} ({rep.runtime_s:.0f} s)")
        return rep


def write_table(ctx: Context, name: str, rows: list[Row], *, title: str, notes: str = "", command: str = "") -> None:
    """Write ``rows`` as CSV, JSON and a Markdown table (with the command that made it)."""
    ctx.out.mkdir(parents=True, exist_ok=True)
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(ctx.out / f"{name}.csv", buf.getvalue())
    write_text_atomic(ctx.out / f"{name}.json", json.dumps(rows, indent=1, default=str) + "\n")

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "inf" if v == float("inf") else f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        if isinstance(v, list):
            return "{" + ",".join(map(str, v)) + "}" if v else "{}"
        return "" if v is None else str(v)

    md = [f"### {title}", ""]
    if command:
        md += [f"Command: `{command}`", ""]

    def cell(text: str) -> str:  # a "|" inside a cell (e.g. the column "|T|") would split the Markdown table
        return text.replace("|", "\\|")

    md += ["| " + " | ".join(cell(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(cell(fmt(r.get(c))) for c in cols) + " |" for r in rows]
    if notes:
        md += ["", notes]
    write_text_atomic(ctx.out / f"{name}.md", "\n".join(md) + "\n")


def plot_series(ctx: Context, name: str, x: list[Any], series: dict[str, list[float]], *, xlabel: str, ylabel: str,
                title: str, cutoff: float = 2.0) -> None:
    """A line plot of several detectors' indices over an x axis, with the cutoff line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for label, ys in series.items():
        if all(y is None for y in ys):  # a detector that was not run: no empty legend entry
            continue
        ax.plot([str(v) for v in x], [float("nan") if y is None else min(y, 50.0) for y in ys], marker="o", label=label)
    ax.axhline(cutoff, color="red", linestyle="--", label=f"cutoff {cutoff:g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_bytes_atomic(ctx.out / f"{name}.png", buf.getvalue())


EXPERIMENTS: dict[str, Callable[[Context], None]] = {}


def experiment(name: str) -> Callable[[Callable[[Context], None]], Callable[[Context], None]]:
    def deco(fn: Callable[[Context], None]) -> Callable[[Context], None]:
        EXPERIMENTS[name] = fn
        return fn

    return deco


def run(name: str, data_dir: str | Path, out: str | Path, *, progress: bool = True, full: bool = True,
        detectors: tuple[str, ...] | None = None, models: tuple[str, ...] | None = None,
        from_scratch: bool = False, device: str = "cpu") -> None:
    from trojanscan.bench import experiments  # noqa: F401  (registers the experiments)
    from trojanscan.errors import InvalidInputError

    if name not in EXPERIMENTS:
        raise InvalidInputError(f"unknown experiment {name!r}; choose one of {', '.join(sorted(EXPERIMENTS))}")
    if not Path(data_dir).is_dir():
        raise InvalidInputError(f"--data-dir {str(data_dir)!r} is not a directory")
    from trojanscan.detectors import list_detectors

    unknown = sorted(set(detectors or ()) - set(list_detectors()))
    if unknown:
        raise InvalidInputError(f"unknown detector(s) {unknown} in --detectors; choose from {', '.join(list_detectors())}")
    t0 = time.perf_counter()
    from trojanscan.models.classifier import resolve_device

    dev = str(resolve_device(device))
    if models is not None and not [g for g in models if g]:
        raise InvalidInputError("--models is empty; give model names or globs, e.g. 'gtsrb_ft_badnets14_*'")
    EXPERIMENTS[name](Context(Path(data_dir), Path(out), progress, full=full, detectors=detectors,
                              model_globs=models, from_scratch=from_scratch, device=dev))
    print(f"{name}: done in {time.perf_counter() - t0:.0f} s; outputs in {out}")


def attack(target: str, size: int = 4, position: str = "bottom-right", **kw: Any) -> AttackSpec:
    return AttackSpec("badnets", target=target, trigger_size=size, position=position, **kw)
