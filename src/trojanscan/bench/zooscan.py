"""Scan a folder of models (a "zoo") and judge the detectors over it: ROC-AUC, cross-entropy, Brier score.

``trojanscan scan-zoo DIR --truth truth.json --out OUT`` calls :func:`scan_zoo`. Every model in ``DIR``
(``.safetensors`` with its JSON sidecar, TorchScript ``.pt``/``.pth``/``.ts``, ONNX ``.onnx``, query-only) is scanned
by every detector (``method="all"``, the combined verdict included) or by one; each gets its JSON report under
``OUT/reports/``, and ``OUT/summary.json`` / ``summary.md`` / ``models.csv`` hold the per-model rows and, per
detector, the zoo metrics of :mod:`trojanscan.bench.metrics` computed on the calibrated
``trojan_probability`` (:mod:`trojanscan.calibration`; the calibration never sees the zoo).

- A model that fails to load or crashes a detector is recorded as failed (with the error) and the rest go on. With
  more than one worker (or a ``timeout_s``) every model is scanned in a process of its own, so one that kills its
  process (a segmentation fault in a hostile file's loader, the out-of-memory killer) or runs past ``timeout_s`` is
  recorded as failed too; with ``workers=1`` and no timeout the models are scanned in this process.
- Clean data: ``data`` entries (``.npz`` files, dataset or image folders, one per input shape) are matched to each
  model by input shape: ``PATH`` serves models of its images' shape, ``C,H,W=PATH`` models of input C,H,W, its
  folder images fitted to it (:func:`trojanscan.data.registry.fit_clean_data`, as ``trojanscan scan`` does; an
  ``.npz`` must hold that shape). A model with no matching entry is scanned data-free (detectors that need images
  invert the model); the summary lists those input shapes.
- Parallel: ``workers`` local processes (default: one per CPU core, each with ``cores / workers`` torch
  threads), or a Ray cluster with ``ray_address`` (optional extra ``pip install 'trojanscan[ray]'``).
- Resumable: a report already in ``OUT/reports/`` whose model SHA-256, method and seed match is reused.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from trojanscan._fileio import sha256_file, write_text_atomic
from trojanscan.bench.metrics import brier, cross_entropy, roc_auc
from trojanscan.errors import DataFormatError, InvalidInputError

#: Model file suffixes a zoo folder is searched for (pickles are listed too, so they are reported as refused).
MODEL_SUFFIXES = (".safetensors", ".pt", ".pth", ".ts", ".onnx", ".pkl", ".bin")

SUMMARY_SCHEMA = "trojanscan.zoo/1"


def find_models(directory: str | os.PathLike[str]) -> list[Path]:
    """Model files directly in ``directory`` (sorted by name); JSON sidecars and truth files are not models."""
    d = Path(directory)
    if not d.is_dir():
        raise InvalidInputError(f"zoo folder {str(d)!r} does not exist or is not a folder.")
    models = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in MODEL_SUFFIXES)
    if not models:
        raise InvalidInputError(f"zoo folder {str(d)!r} holds no model files ({', '.join(MODEL_SUFFIXES)}).")
    return models


def _truth_entry(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict) or not isinstance(raw.get("trojaned"), bool):
        raise DataFormatError(f"{where}: each entry needs a boolean 'trojaned' (and a list 'targets' if trojaned)")
    targets = raw.get("targets", [])
    mode = raw.get("label_mode")
    if targets == "all" or (isinstance(mode, dict) and mode.get("kind") == "all_to_all"):
        targets = []  # all-to-all: every label is a target, so there is no target label to name
    if not isinstance(targets, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in targets):
        raise DataFormatError(f"{where}: 'targets' must be a list of integer labels; got {targets!r}")
    return {"trojaned": raw["trojaned"], "targets": sorted(set(targets))}


def load_truth(models: Sequence[Path], truth: str | os.PathLike[str] | None) -> dict[str, dict[str, Any]]:
    """Ground truth per model file name.

    ``truth``: a JSON object ``{"<file name or stem>": {"trojaned": bool, "targets": [int, ...]}}``. Without
    it, each model's ``<stem>.truth.json`` sidecar (what ``trojanscan train`` writes) is read. A model
    without truth is an error that names it: the zoo metrics need every answer.
    """
    table: dict[str, Any] = {}
    if truth is not None:
        tp = Path(truth)
        if not tp.is_file():
            raise InvalidInputError(f"--truth {str(tp)!r} does not exist; give a JSON file of ground truth.")
        try:
            table = json.loads(tp.read_text())
        except ValueError as e:
            raise DataFormatError(f"{tp}: not valid JSON ({e})") from e
        if not isinstance(table, dict):
            raise DataFormatError(f"{tp}: expected a JSON object keyed by model file name")
    out: dict[str, dict[str, Any]] = {}
    for m in models:
        if truth is not None:
            raw = table.get(m.name, table.get(m.stem))
            where = f"{truth} [{m.name}]"
        else:
            side = m.with_suffix(".truth.json")
            raw = json.loads(side.read_text()) if side.is_file() else None
            where = str(side)
        if raw is None:
            raise InvalidInputError(
                f"no ground truth for {m.name}: add it to --truth (key {m.name!r}) or write {m.stem}.truth.json")
        out[m.name] = _truth_entry(raw, where)
    return out


@dataclass(frozen=True)
class _Job:
    path: str
    out_dir: str
    method: str
    seed: int
    data_by_shape: tuple[tuple[tuple[int, ...], str, bool], ...]  # (C, H, W), clean-data path, fitted to the shape
    threads: int
    params: dict[str, dict[str, Any]] | None
    input_shape: tuple[int, int, int] | None
    familywise: bool = False
    device: str = "cpu"
    allow_unsafe_torchscript: bool = False
    scale: str = "raw"


_DECISION_KEYS = ("cutoff", "alpha", "familywise", "scale")  # settings rethreshold() / rescale() change, no rescan


def _same_settings(old: Any, params: dict[str, dict[str, Any]] | None) -> bool:
    """Whether a saved report was made with ``params`` (decision settings aside: those are re-applied)."""
    subs = old.reports if old.reports else {old.method: old}
    for det, hp in (params or {}).items():
        if det in subs:
            cfg = subs[det].config
            for k, v in hp.items():
                if k not in _DECISION_KEYS and json.loads(json.dumps(cfg.get(k), default=str)) != json.loads(
                        json.dumps(v, default=str)):
                    return False
    return True


def _row_from_report(name: str, rep: Any, elapsed: float, data_source: str) -> dict[str, Any]:
    reports = rep.reports if rep.method == "all" else {rep.method: rep}
    row: dict[str, Any] = {"model": name, "status": "ok", "error": None, "scan_s": elapsed, "data": data_source,
                           "input_shape": list(rep.model.input_shape), "methods": {}}
    entries = dict(reports)
    if rep.method == "all":
        entries["all"] = rep
    for meth, r in entries.items():
        row["methods"][meth] = {
            "verdict": r.verdict, "anomaly_index": r.anomaly_index, "suspects": list(r.suspects),
            "trojan_probability": r.trojan_probability, "runtime_s": r.runtime_s,
        }
    return row


def _failed(job: _Job, error: str, t0: float) -> dict[str, Any]:
    return {"model": Path(job.path).name, "status": "failed", "error": error, "scan_s": time.perf_counter() - t0,
            "methods": {}}


def _scan_one(job: _Job) -> dict[str, Any]:
    """Scan one model in this process; never raises (a failure is a row with status 'failed')."""
    name = Path(job.path).name
    t0 = time.perf_counter()
    try:
        import torch

        torch.set_num_threads(max(1, job.threads))
        from trojanscan.data.registry import fit_clean_data, load_clean_data, read_clean_data
        from trojanscan.models.io import load_model
        from trojanscan.report.scan_report import ScanReport
        from trojanscan.scan import recalibrate, rescale, rethreshold, scale_params, scale_takers, scan_model

        takers = scale_takers()

        report_path = Path(job.out_dir) / "reports" / (Path(job.path).stem + ".json")
        digest = sha256_file(job.path)
        if report_path.is_file():  # resume: same model bytes, method and seed
            try:
                old = ScanReport.from_json(report_path.read_text())
                given = _entry_for(job.data_by_shape, tuple(old.model.input_shape)) is not None
                if (old.model.sha256 == digest and old.method == job.method and old.seed == job.seed
                        and _same_settings(old, job.params) and (old.data.source == "clean_data") == given):
                    # re-decided at the requested scale and cutoff, its probability from today's calibration
                    subs = old.reports if old.reports else {old.method: old}
                    scaled = old
                    if any(r.config.get("scale", "raw") != job.scale for r in subs.values() if r.method in takers):
                        scaled = rescale(old, job.scale)
                    new = recalibrate(rethreshold(scaled, familywise=job.familywise))
                    if new != old:
                        write_text_atomic(report_path, new.to_json() + "\n")
                    return _row_from_report(name, new, new.runtime_s, new.data.source) | {"resumed": True}
            except Exception:  # noqa: BLE001 - an unreadable old report is simply redone
                pass
        model = load_model(job.path, input_shape=job.input_shape, device=job.device,
                           shape_candidates=[e[0] for e in job.data_by_shape],
                           allow_unsafe_torchscript=job.allow_unsafe_torchscript)
        model.metadata.update(path=str(job.path), sha256=digest)
        entry = _entry_for(job.data_by_shape, tuple(model.input_shape))  # only the data of this model's shape
        data, data_notes = None, list[str]()
        if entry is not None and entry[2]:  # C,H,W=PATH: fitted to the model, as `scan --data` fits it
            data, data_notes = fit_clean_data(entry[1], model.input_shape, read_clean_data(entry[1]))
        elif entry is not None:
            data = load_clean_data(entry[1])
        params = {k: dict(v) for k, v in (job.params or {}).items()}
        for det, hp in scale_params(job.scale, job.method).items():
            params.setdefault(det, {}).update(hp)
        outcome = scan_model(model, data, method=job.method, seed=job.seed, progress=False, params=params or None,
                             familywise=job.familywise)
        rep = outcome.report
        if data_notes:
            rep = replace(rep, notes=rep.notes + data_notes)
        write_text_atomic(report_path, rep.to_json() + "\n")
        return _row_from_report(name, rep, time.perf_counter() - t0, rep.data.source)
    except Exception as e:  # noqa: BLE001 - one bad model must not stop the zoo
        tb = traceback.format_exception_only(type(e), e)[-1].strip()
        return _failed(job, tb, t0)


_SHAPED = re.compile(r"^\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*=(.+)$")


def _entry_for(entries: Sequence[tuple[tuple[int, ...], str, bool]], shape: tuple[int, ...]
               ) -> tuple[tuple[int, ...], str, bool] | None:
    return next((e for e in entries if e[0] == shape), None)


def _data_shapes(entries: Sequence[str]) -> list[tuple[tuple[int, ...], str, bool]]:
    """Read every ``--data`` entry once up front (a bad file is a bad input, exit 2; two for one shape are
    ambiguous); return (input shape it serves, path, whether it is fitted to that shape) per entry.

    ``PATH`` serves its images' own shape; ``C,H,W=PATH`` serves models of input C,H,W, folder images fitted to it
    (an ``.npz`` must hold exactly that shape: its arrays are taken as they are)."""
    from trojanscan.data.registry import fit_clean_data, read_clean_data
    from trojanscan.models.io import MAX_INPUT_VALUES

    seen: dict[tuple[int, ...], str] = {}
    out: list[tuple[tuple[int, ...], str, bool]] = []
    for entry in entries:
        m = _SHAPED.match(entry)
        path = m.group(4).strip() if m else entry
        clean = read_clean_data(path)
        if m:
            shape: tuple[int, ...] = tuple(int(m.group(i)) for i in (1, 2, 3))
            if min(shape) < 1 or math.prod(shape) > MAX_INPUT_VALUES:
                raise InvalidInputError(f"--data {entry!r}: input shape {shape} must be positive and at most "
                                        f"{MAX_INPUT_VALUES} values")
            # errors now (channels, sizes), not in every worker
            fitted, _ = fit_clean_data(path, (shape[0], shape[1], shape[2]), clean)
            if fitted.input_shape != shape:
                raise InvalidInputError(f"--data {entry!r}: {path!r} holds {fitted.input_shape} images and an .npz is "
                                        f"taken as it is; write one of {shape} images, or give a folder")
        elif clean is None:
            raise InvalidInputError(f"--data {path!r} holds images of several sizes; give it as C,H,W={path} to read "
                                    "it at the models' input size")
        else:
            shape = tuple(clean.input_shape)
        if shape in seen:
            raise InvalidInputError(f"--data {seen[shape]!r} and {entry!r} both serve input shape {shape}; give one per "
                                    "input shape.")
        seen[shape] = entry
        out.append((shape, path, m is not None))
    return out


def _child(target: Callable[[_Job], dict[str, Any]], job: _Job, conn: Connection) -> None:
    """Body of one model's process: scan, send the row back, exit."""
    conn.send(target(job))
    conn.close()


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _run_local(jobs: list[_Job], workers: int, on_done: Callable[[dict[str, Any]], None], *,
               timeout_s: float | None = None,
               target: Callable[[_Job], dict[str, Any]] = _scan_one) -> list[dict[str, Any]]:
    """Scan ``jobs``: in this process when ``workers == 1`` and there is no timeout, else each model in a process
    of its own, at most ``workers`` at a time. A process that dies before it reports (a segmentation fault in a
    hostile file's loader, the out-of-memory killer) or outlives ``timeout_s`` is recorded as failed, and the rest
    go on."""
    rows: list[dict[str, Any]] = []
    if workers <= 1 and timeout_s is None:
        for j in jobs:
            rows.append(target(j))
            on_done(rows[-1])
        return rows
    ctx = get_context("spawn")
    pending = list(jobs)
    running: dict[Any, tuple[_Job, Connection, float]] = {}
    try:
        while pending or running:
            while pending and len(running) < max(1, workers):
                job = pending.pop(0)
                receive, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(target, job, send), daemon=True)
                proc.start()
                send.close()  # the child holds the only sending end: its death reads as EOF here
                running[proc] = (job, receive, time.perf_counter())
            wait([c for _, c, _ in running.values()], timeout=1.0)
            for proc, (job, conn, t0) in list(running.items()):
                row: dict[str, Any] | None = None
                if conn.poll():
                    try:
                        row = conn.recv()
                        proc.join(timeout=30)
                    except (EOFError, OSError):  # died before reporting
                        proc.join()
                        row = _failed(job, f"the scan process died ({_exit_text(proc.exitcode)}): the model "
                                           "crashed the interpreter or exhausted memory", t0)
                elif timeout_s is not None and time.perf_counter() - t0 > timeout_s:
                    proc.kill()
                    proc.join()
                    row = _failed(job, f"timed out after {timeout_s:g} s (--timeout); the scan was stopped", t0)
                if row is None:
                    continue
                conn.close()
                del running[proc]
                rows.append(row)
                on_done(row)
    finally:
        for proc in running:
            proc.kill()
            proc.join()
    return rows


def _run_ray(jobs: list[_Job], address: str, on_done: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    try:
        import ray  # type: ignore[import-not-found]
    except ImportError as e:
        raise InvalidInputError(
            "--ray-address needs the optional Ray package: pip install 'trojanscan[ray]' (or run without it: "
            "local processes are the default)") from e
    ray.init(address=address, ignore_reinit_error=True)
    remote = ray.remote(_scan_one)
    pending = [remote.remote(j) for j in jobs]
    rows: list[dict[str, Any]] = []
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        rows.append(ray.get(done[0]))
        on_done(rows[-1])
    return rows


def summarise(rows: Sequence[dict[str, Any]], truth: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per method: ROC-AUC, cross-entropy and Brier score of the trojan probability, FP/FN at the cutoff,
    target accuracy (trojaned models whose first suspect is a true target), time per model.

    ROC-AUC uses the probability when every scanned model has one, else the anomaly index (a monotone
    calibration gives the same AUC); cross-entropy and Brier need probabilities (None otherwise). The combined
    method's probability counts only where each of its detectors had one: pooled over some of them it would judge
    a subset, not the combined verdict.
    """
    methods = sorted({m for r in rows for m in r["methods"]})
    ok = [r for r in rows if r["status"] == "ok"]
    out: dict[str, dict[str, Any]] = {}
    for meth in methods:
        rs = [r for r in ok if meth in r["methods"]]
        y = [int(truth[r["model"]]["trojaned"]) for r in rs]
        res = [r["methods"][meth] for r in rs]
        probs = [e["trojan_probability"] for e in res]
        have_p = bool(rs) and all(p is not None for p in probs)
        if meth == "all":  # the pool must cover every detector that ran
            have_p = have_p and all(e["trojan_probability"] is not None for r in rs for e in r["methods"].values())
        score = probs if have_p else [e["anomaly_index"] for e in res]
        pred = [e["verdict"] == "trojaned" for e in res]
        troj = [(e, truth[r["model"]]) for e, r in zip(res, rs, strict=True) if truth[r["model"]]["trojaned"]]
        with_targets = [(e, t) for e, t in troj if t["targets"]]
        hits = sum(1 for e, t in with_targets if e["suspects"] and e["suspects"][0] in t["targets"])
        out[meth] = {
            "n_models": len(rs), "n_trojaned": sum(y), "n_clean": len(y) - sum(y),
            "roc_auc": _finite(roc_auc(y, score)),
            "auc_on": "trojan_probability" if have_p else "anomaly_index",
            "cross_entropy": _finite(cross_entropy(y, probs)) if have_p else None,
            "brier": _finite(brier(y, probs)) if have_p else None,
            "false_positives": sum(1 for p_, t in zip(pred, y, strict=True) if p_ and not t),
            "false_negatives": sum(1 for p_, t in zip(pred, y, strict=True) if not p_ and t),
            "target_accuracy": hits / len(with_targets) if with_targets else None,
            "mean_runtime_s": sum(e["runtime_s"] for e in res) / len(res) if res else None,
        }
    return out


def _finite(v: float) -> float | None:
    """NaN (e.g. ROC-AUC over one class only) becomes None: JSON has no NaN."""
    return None if math.isnan(v) else v


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def _markdown(summary: dict[str, dict[str, Any]], rows: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [f"# Zoo scan: {meta['zoo']}", "", f"{meta['n_models']} models, {meta['n_failed']} failed; method "
             f"{meta['method']}, seed {meta['seed']}, {meta['wall_s']:.0f} s wall.", "",
             "| method | models | ROC-AUC | on | cross-entropy | Brier | FP | FN | target acc. | s / model |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for m, s in summary.items():
        lines.append(f"| {m} | {s['n_models']} ({s['n_trojaned']} trojaned) | {_fmt(s['roc_auc'])} | {s['auc_on']} | "
                     f"{_fmt(s['cross_entropy'])} | {_fmt(s['brier'])} | {s['false_positives']} | "
                     f"{s['false_negatives']} | {_fmt(s['target_accuracy'])} | {_fmt(s['mean_runtime_s'])} |")
    if "all" in summary:
        singles = [s["roc_auc"] for m, s in summary.items() if m != "all" and s["roc_auc"] is not None]
        comb = summary["all"]["roc_auc"]
        if singles and comb is not None:
            best = max(singles)
            verdict = "beats" if comb > best else ("ties" if comb == best else "does not beat")
            lines += ["", f"Combined ROC-AUC {_fmt(comb)} {verdict} the best single detector ({_fmt(best)})."]
    if meta.get("data_free_shapes"):
        shapes = ", ".join(",".join(map(str, sh)) for sh in meta["data_free_shapes"])
        lines += ["", f"Scanned with no clean data (no --data of their input shape): models of input {shapes}; "
                  "`--data C,H,W=PATH` fits a folder's images to such a shape."]
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        lines += ["", "Failed models:", ""] + [f"- `{r['model']}`: {r['error']}" for r in failed]
    return "\n".join(lines) + "\n"


def _csv(rows: Sequence[dict[str, Any]], truth: dict[str, dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["model", "trojaned", "targets", "status", "method", "verdict", "anomaly_index", "suspects",
                "trojan_probability", "runtime_s", "error"])
    for r in sorted(rows, key=lambda r: r["model"]):
        t = truth[r["model"]]
        if r["status"] != "ok":
            w.writerow([r["model"], t["trojaned"], t["targets"], r["status"], "", "", "", "", "", "", r["error"]])
        for m, e in sorted(r["methods"].items()):
            w.writerow([r["model"], t["trojaned"], t["targets"], r["status"], m, e["verdict"], e["anomaly_index"],
                        e["suspects"], e["trojan_probability"], e["runtime_s"], ""])
    return buf.getvalue()


def scan_zoo(
    directory: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    truth: str | os.PathLike[str] | None = None,
    data: Sequence[str | os.PathLike[str]] = (),
    method: str = "all",
    seed: int = 0,
    workers: int | None = None,
    ray_address: str | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    input_shape: Sequence[int] | None = None,
    familywise: bool = False,
    device: str | None = None,
    allow_unsafe_torchscript: bool = False,
    timeout_s: float | None = None,
    scale: str = "raw",
    progress: bool = True,
) -> dict[str, Any]:
    """Scan every model in ``directory``; write reports and the zoo summary under ``out``; return the summary.

    ``device``: where every worker runs the networks (``--device``; default CPU). Workers share one GPU.
    A TorchScript file whose code can reach files or the network is recorded as failed, not run
    (:mod:`trojanscan.models.vetting`), unless ``allow_unsafe_torchscript``. ``timeout_s``: the most seconds one
    model may take (its process is then stopped and the model recorded as failed); default none.

    ``familywise``: every detector's per-model cutoff for the model's number of classes. ``scale``: the outlier
    test's scale for the detectors that have one (:func:`trojanscan.scan.scale_params`). A saved report of the same
    model, method, seed and detector settings is reused (resume), re-decided at the requested scale and cutoff.
    """
    from trojanscan.detectors.base import list_detectors

    if method != "all" and method not in list_detectors():
        raise InvalidInputError(f"unknown method {method!r}; choose one of {', '.join(list_detectors())} or 'all'")
    from trojanscan.scan import scale_params

    # a bad scale, one the method lacks, or the log scale with pair mode: before any model is read
    scale_params(scale, method, bool((params or {}).get("deep_inspect", {}).get("pairs", False)))
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise InvalidInputError(f"--workers must be an int >= 1; got {workers!r}")
    from trojanscan.models.classifier import resolve_device

    dev = str(resolve_device(device))
    models = find_models(directory)
    table = load_truth(models, truth)
    data_by_shape = tuple(_data_shapes([str(p) for p in data]))
    shape = None if input_shape is None else tuple(int(v) for v in input_shape)
    if shape is not None and len(shape) != 3:
        raise InvalidInputError(f"--input-shape must be C,H,W; got {input_shape!r}")
    cores = os.cpu_count() or 1
    n_workers = min(len(models), workers if workers is not None else cores)
    threads = max(1, cores // max(1, n_workers))
    outp = Path(out)
    if not isinstance(familywise, bool):
        raise InvalidInputError(f"familywise must be True or False; got {familywise!r}")
    if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float)
                                  or not math.isfinite(timeout_s) or timeout_s <= 0):
        raise InvalidInputError(f"--timeout must be a positive number of seconds; got {timeout_s!r}")
    if not isinstance(allow_unsafe_torchscript, bool):
        raise InvalidInputError(f"allow_unsafe_torchscript must be True or False; got {allow_unsafe_torchscript!r}")
    jobs = [_Job(str(m), str(outp), method, seed, data_by_shape, threads, params, shape, familywise,  # type: ignore[arg-type]
                 dev, allow_unsafe_torchscript, scale) for m in models]
    t0 = time.perf_counter()
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc="scan-zoo", unit="model", disable=not progress)

    def done(row: dict[str, Any]) -> None:
        bar.update(1)
        bar.set_postfix_str(f"{row['model']}: {row['status']}")

    try:
        rows = (_run_ray(jobs, ray_address, done) if ray_address
                else _run_local(jobs, n_workers, done, timeout_s=timeout_s))
    finally:
        bar.close()
    rows.sort(key=lambda r: r["model"])
    summary = summarise(rows, table)
    meta = {"zoo": str(directory), "n_models": len(rows), "n_failed": sum(r["status"] != "ok" for r in rows),
            "method": method, "seed": seed, "workers": 0 if ray_address else n_workers, "timeout_s": timeout_s,
            "wall_s": time.perf_counter() - t0,
            "data_free_shapes": sorted({tuple(r["input_shape"]) for r in rows if r["status"] == "ok"
                                        and r.get("input_shape") and r.get("data") != "clean_data"}) if data else []}
    doc = {"schema": SUMMARY_SCHEMA, **meta, "metrics": summary,
           "models": [{**r, "truth": table[r["model"]]} for r in rows]}
    write_text_atomic(outp / "summary.json", json.dumps(doc, indent=1, default=str) + "\n")
    write_text_atomic(outp / "summary.md", _markdown(summary, rows, meta))
    write_text_atomic(outp / "models.csv", _csv(rows, table))
    return doc
