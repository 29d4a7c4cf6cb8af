"""High-level scanning API: run one detector or all of them and combine their verdicts.

``scan_model(model, data, method="all")`` is what ``trojanscan scan`` calls.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from trojanscan.calibration import LogisticCalibration, load_calibration, pooled_probability
from trojanscan.data.base import Dataset
from trojanscan.detectors.base import (
    FALSE_ALARM_NOTE,
    check_query_budget,
    detector_class,
    false_alarm_notes,
    get_detector,
    list_detectors,
    scale_notes,
    with_decision_notes,
)
from trojanscan.errors import InvalidInputError
from trojanscan.models.classifier import Classifier
from trojanscan.report.scan_report import ClassResult, ScanReport


@dataclass
class ScanOutcome:
    """The report plus the tensors behind it (triggers, heatmaps) per method, for the HTML report."""

    report: ScanReport
    artifacts: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)


def combine(reports: dict[str, ScanReport]) -> ScanReport:
    """Combine per-detector reports into the ``"all"`` report.

    Rule (until a calibrated combination exists): a label is a suspect when a strict majority of the
    detectors flag it, or when one detector flags it and none of the others ran; the verdict is
    trojaned when a majority of detectors say trojaned. ``anomaly_index`` is the median of the
    detectors' anomaly indices expressed in units of their own cutoff, times 2 (so 2 = at the cutoff).
    Its notes are those every detector's report carries (what loading the model had to work out, a warning about
    its outputs), so the combined summary shows them once; each detector's own notes stay in its report (the CLI
    prints them under the detector's line).
    """
    if not reports:
        raise InvalidInputError("no reports to combine")
    first = next(iter(reports.values()))
    n = len(reports)
    votes: dict[int, int] = {}
    for r in reports.values():
        for s in r.suspects:
            votes[s] = votes.get(s, 0) + 1
    need = n // 2 + 1
    suspects = sorted((s for s, v in votes.items() if v >= need), key=lambda s: (-votes[s], s))
    trojaned_votes = sum(r.trojaned for r in reports.values())
    verdict = "trojaned" if trojaned_votes >= need else "benign"
    scaled = sorted(2.0 * r.anomaly_index / r.cutoff for r in reports.values())
    mid = scaled[n // 2] if n % 2 else 0.5 * (scaled[n // 2 - 1] + scaled[n // 2])
    classes = [
        ClassResult(label=c.label, statistic=float(votes.get(c.label, 0)), anomaly_index=float(
            sorted(2.0 * rr.classes[c.label].anomaly_index / rr.cutoff for rr in reports.values())[n // 2]),
            name=c.name)
        for c in first.classes
    ]
    return ScanReport(
        method="all", verdict=verdict, anomaly_index=float(mid), cutoff=2.0, suspects=suspects, classes=classes,
        model=first.model, data=first.data, runtime_s=float(sum(r.runtime_s for r in reports.values())),
        model_queries=int(sum(r.model_queries for r in reports.values())), seed=first.seed,
        config={"rule": "majority vote", "methods": list(reports)}, notes=shared_notes(reports), reports=dict(reports),
    )


def shared_notes(reports: dict[str, ScanReport]) -> list[str]:
    """The notes every one of ``reports`` carries, in the first report's order."""
    rest = list(reports.values())[1:]
    first = next(iter(reports.values())).notes if reports else []
    return [n for n in first if all(n in r.notes for r in rest)]


def scan_model(
    model: Classifier,
    data: Dataset | None,
    *,
    method: str = "all",
    seed: int = 0,
    cutoff: float | None = None,
    alpha: float | None = None,
    familywise: bool = False,
    progress: bool = True,
    artifact_dir: str | os.PathLike[str] | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    calibration: dict[str, LogisticCalibration] | None = None,
) -> ScanOutcome:
    """Scan with one registered detector, or with every one (``method="all"``) and combine.

    ``cutoff``/``alpha``/``familywise`` override every detector's decision settings; ``params`` holds each
    detector's other hyperparameters by name (e.g. ``{"deep_inspect": {"pairs": True}}``).
    Each report gets a ``trojan_probability`` from ``calibration`` (default: the shipped curves,
    :mod:`trojanscan.calibration`) when its detector has one; the combined report pools them.
    """
    curves = load_calibration() if calibration is None else calibration
    methods = list_detectors() if method == "all" else [method]
    if method != "all" and method not in list_detectors():
        raise InvalidInputError(f"unknown method {method!r}; choose one of {', '.join(list_detectors())} or 'all'")
    skipped: list[str] = []
    if method == "all" and not model.white_box:  # a query-only model: only the methods that need scores alone
        skipped = [m for m in methods if detector_class(m).needs_white_box]
        methods = [m for m in methods if m not in skipped]
    reports: dict[str, ScanReport] = {}
    artifacts: dict[str, dict[str, torch.Tensor]] = {}
    t0 = time.perf_counter()
    dets = {}
    for name in methods:
        hp: dict[str, Any] = dict((params or {}).get(name, {}))
        if cutoff is not None:
            hp["cutoff"] = cutoff
        if alpha is not None:
            hp["alpha"] = alpha
        if familywise:
            hp["familywise"] = True
        dets[name] = get_detector(name, **hp)
    _check_joint_budget(model, data, dets)
    for name, det in dets.items():
        rep = det.scan(model, data, seed=seed, progress=progress,
                       artifact_dir=Path(artifact_dir) if artifact_dir is not None else None)
        reports[name] = recalibrate(rep, curves)
        artifacts[name] = dict(getattr(det, "artifacts_", {}))
    if method != "all":
        return ScanOutcome(reports[method], artifacts)
    combined = combine(reports)
    notes = [f"{m} was not run: {detector_class(m).why_white_box}; the model is query-only" for m in skipped]
    combined = recalibrate(replace(combined, runtime_s=time.perf_counter() - t0, notes=combined.notes + notes), curves)
    return ScanOutcome(combined, artifacts)


def _check_joint_budget(model: Classifier, data: Dataset | None, dets: dict[str, Any]) -> None:
    """Several methods on one query-only model share its budget: refuse before the first scan if the ones that know
    their cost already need more than is left (each detector checks its own share again when it starts)."""
    known = {n: q for n, d in dets.items() if (q := d.planned_queries(model, data)) is not None}
    if len(dets) > 1 and known:
        check_query_budget(model, sum(known.values()), f"{' + '.join(known)} need at least")


#: Start of the note a combined report carries when its probability pools only some of its detectors.
POOL_NOTE = "p(trojaned)"


def recalibrate(report: ScanReport, calibration: dict[str, LogisticCalibration] | None = None) -> ScanReport:
    """``report`` with its ``trojan_probability`` recomputed from ``calibration`` (default: the shipped curves).

    The probability is a function of the anomaly index and the curve only, so a saved report can be
    brought up to date after the curves are refitted, without scanning again. A detector without a
    curve gets ``None``; a combined report pools its detectors' new probabilities
    (:func:`trojanscan.calibration.pooled_probability`).
    """
    curves = load_calibration() if calibration is None else calibration
    if report.reports:
        subs = {k: recalibrate(r, curves) for k, r in report.reports.items()}
        probs = [r.trojan_probability for r in subs.values() if r.trojan_probability is not None]
        without = [k for k, r in subs.items() if r.trojan_probability is None]
        notes = [n for n in report.notes if not n.startswith(POOL_NOTE)]
        if without and probs:
            notes.append(f"{POOL_NOTE} pools {', '.join(k for k in subs if k not in without)} only: "
                         f"{', '.join(without)} {'has' if len(without) == 1 else 'have'} no calibrated curve for "
                         "this setting (pair mode, the log scale), so the probability and the vote can disagree")
        return replace(report, reports=subs, trojan_probability=pooled_probability(probs) if probs else None,
                       notes=notes)
    # a curve is fitted on one test's indices on the papers' scale: a report of another test (DeepInspect's pair
    # mode) or of the log scale gets none
    curve = curves.get(report.method)
    if curve is not None and (_report_test(report) != detector_class(report.method).test
                              or report.config.get("scale", "raw") != "raw"):
        curve = None
    return replace(report, trojan_probability=None if curve is None else curve.probability(report.anomaly_index))


def _report_test(report: ScanReport) -> str:
    """The outlier test behind a single detector's report: recorded in its config, else its detector's."""
    test = report.config.get("test")
    if isinstance(test, str):
        return test
    return detector_class(report.method).test


def rethreshold(report: ScanReport, *, cutoff: float | None = None, alpha: float | None = None,
                familywise: bool = False) -> ScanReport:
    """The decision ``report`` would have had at another cutoff, without scanning again.

    The per-class anomaly indices (and statistics, runtime, probability) do not depend on the cutoff,
    so only ``cutoff``, ``suspects``, ``verdict`` change; ``cutoff``/``alpha`` default to the report's
    own cutoff, ``familywise`` replaces it by the exact per-model cutoff of the report's test for its
    number of classes (:func:`trojanscan.stats.familywise_cutoff`). A combined report (``method="all"``) is re-decided
    detector by detector and combined again, its trojan probability kept.
    """
    from trojanscan import stats

    if cutoff is not None and alpha is not None:
        raise InvalidInputError("give cutoff or alpha, not both")
    stats.resolve_cutoff(familywise=familywise)  # reject a non-bool before recursing
    if report.reports:
        subs = {k: rethreshold(r, cutoff=cutoff, alpha=alpha, familywise=familywise) for k, r in report.reports.items()}
        again = combine(subs)  # its shared notes first, then the combined report's own (a skipped method, the pool)
        own = [n for n in report.notes if n not in shared_notes(report.reports)]
        return replace(again, runtime_s=report.runtime_s, trojan_probability=report.trojan_probability,
                       notes=again.notes + own)
    if cutoff is None and alpha is None:  # the report's own setting, before any family-wise correction
        if report.config.get("alpha") is not None:
            alpha = float(report.config["alpha"])
        else:
            cutoff = float(report.config.get("cutoff", report.cutoff))
    c = stats.resolve_cutoff(cutoff if cutoff is not None else stats.DEFAULT_CUTOFF, alpha, familywise,
                             len(report.classes), _report_test(report))
    config = {**report.config, "cutoff": cutoff if cutoff is not None else report.config.get("cutoff", 2.0),
              "alpha": alpha, "familywise": familywise}
    suspects = stats.flagged([cr.anomaly_index for cr in report.classes], [cr.statistic for cr in report.classes], c)
    notes = [n for n in report.notes if not n.startswith(FALSE_ALARM_NOTE)]
    notes += false_alarm_notes(len(report.classes), c, _report_test(report), familywise)
    return with_decision_notes(replace(report, cutoff=c, suspects=suspects, verdict="trojaned" if suspects else "benign",
                                       config=config, notes=notes))


def scale_takers() -> list[str]:
    """The registered detectors with a ``scale`` hyperparameter (their statistics are trigger norms)."""
    return [m for m in list_detectors() if "scale" in detector_class(m)._param_names()]


def scale_params(scale: str, method: str = "all", pairs: bool = False) -> dict[str, dict[str, Any]]:
    """Per-detector parameters that put ``method``'s outlier test on ``scale`` (``--scale``); ``{}`` for raw.

    A method without a log scale asked for one alone, or the log scale with DeepInspect's pair mode, is an error."""
    from trojanscan import stats

    stats.check_scale(scale, "--scale")
    if scale == "raw":
        return {}
    takers = scale_takers()
    if method != "all" and method not in takers:
        raise InvalidInputError(f"--scale log applies to {' and '.join(takers)} (their statistics are trigger norms); "
                                f"{method}'s statistic is not a norm: drop --scale or pick another --method")
    if pairs:
        raise InvalidInputError("--scale log does not combine with --pairs: pair mode already tests the log L1 of "
                                "every pair")
    return {m: {"scale": scale} for m in takers if method in ("all", m)}


def rescale(report: ScanReport, scale: str) -> ScanReport:
    """The decision ``report`` would have had with its outlier test on another scale (``"raw"`` or ``"log"``,
    :func:`trojanscan.stats.on_scale`), without scanning again.

    A scan's per-class numbers do not depend on the scale, so the statistics are rebuilt from the saved
    ones (:meth:`Detector.statistics_on_scale`), the indices recomputed at the report's own cutoff, and the
    probability recalibrated (none on the log scale: the curves are fitted on the papers' indices). A combined
    report is re-decided detector by detector; detectors without a log scale (NeuronInspect) keep their report.
    """
    from trojanscan import stats

    stats.check_scale(scale, "rescale")
    if report.reports:
        # NeuronInspect (no log scale) and a pair-mode DeepInspect (its own test, already on log L1) keep their report
        subs = {k: (rescale(r, scale) if r.method in scale_takers() and _report_test(r) in stats.TESTS else r)
                for k, r in report.reports.items()}
        return recalibrate(replace(combine(subs), runtime_s=report.runtime_s, notes=report.notes))
    cls = detector_class(report.method)
    if report.method not in scale_takers():
        raise InvalidInputError(f"{report.method} has no log scale: its statistic is not a norm")
    if _report_test(report) not in stats.TESTS:
        raise InvalidInputError(f"a {_report_test(report)!r} report (DeepInspect's pair mode) has no other scale")
    values = cls.statistics_on_scale(report.classes, scale)
    test = _report_test(report)
    decision = stats.decide(values, cutoff=report.cutoff, test=test, scale=scale)
    classes = [replace(c, statistic=float(v), anomaly_index=float(i))
               for c, v, i in zip(report.classes, values, decision.indices, strict=True)]
    kept = [n for n in report.notes if n not in scale_notes("log")]  # in a scan's order: the scale's note before
    first = [n for n in kept if not n.startswith(FALSE_ALARM_NOTE)]  # the false-alarm ones
    notes = first + scale_notes(scale) + [n for n in kept if n.startswith(FALSE_ALARM_NOTE)]
    return recalibrate(with_decision_notes(replace(
        report, classes=classes, anomaly_index=decision.anomaly_index, suspects=decision.suspects,
        verdict=decision.verdict, config={**report.config, "scale": scale}, notes=notes)))
