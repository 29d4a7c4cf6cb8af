"""One self-contained HTML page per scan: verdict, statistics, chart, recovered triggers, heatmaps.

Everything is inline: CSS in a ``<style>`` element, pictures as base64 PNG ``data:`` URIs; no scripts,
no external stylesheets, fonts or images, so the file can be mailed, archived or opened offline.
Every piece of text that comes from the report (class names, paths, config values, notes) is escaped.

Artifacts are the tensors a detector leaves in ``detector.artifacts_`` (row ``i`` belongs to label ``i``):

- ``"masks"`` (K, H, W) and ``"patterns"`` (K, C, H, W) in [0, 1] (Neural Cleanse): shown as the mask
  (grayscale), the pattern, ``pattern * mask`` and, given ``example_images``, a clean image stamped with
  the trigger ``x' = (1 - m) x + m p``;
- ``"triggers"`` (K, C, H, W) additive perturbations (DeepInspect): shown normalised (grey = 0) and
  stamped as ``clamp(x + trigger, 0, 1)``;
- ``"heatmaps"`` (K, H, W) or (K, C, H, W) (NeuronInspect): shown next to the heatmap of a clean class
  (the one whose index is closest to 0).

For ``method == "all"`` each sub-report gets its own section; its artifacts are looked up under the
keys ``"<method>/<name>"`` (e.g. ``"neural_cleanse/masks"``), unprefixed keys belong to the top level.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from html import escape
from typing import Any

import numpy as np

from trojanscan import stats
from trojanscan._fileio import write_text_atomic
from trojanscan.errors import InvalidInputError
from trojanscan.report.plots import anomaly_chart_png, data_uri, image_png, to_numpy
from trojanscan.report.scan_report import ScanReport

__all__ = ["render_html", "write_html"]

MAX_SUSPECTS_SHOWN = 12
N_OTHERS_SHOWN = 3


def render_html(
    report: ScanReport,
    artifacts: Mapping[str, Any] | None = None,
    example_images: Any | None = None,
) -> str:
    """Render ``report`` as one self-contained HTML document (a string).

    ``artifacts``: the detector's tensors (``detector.artifacts_``: ``"masks"``, ``"patterns"``,
    ``"triggers"``, ``"heatmaps"``; see the module docstring), optional. ``example_images``: clean images
    (N, C, H, W) or one image (C, H, W) in [0, 1]; the first is stamped with each shown trigger.
    Artifacts whose shape does not fit the report are skipped with a warning on the page, never an error.
    """
    if not isinstance(report, ScanReport):
        raise InvalidInputError(f"report must be a ScanReport; got {type(report).__name__}")
    if artifacts is not None and not isinstance(artifacts, Mapping):
        raise InvalidInputError(
            f"artifacts must be a mapping of name -> tensor (detector.artifacts_); got {type(artifacts).__name__}"
        )
    arts = {str(k): v for k, v in (artifacts or {}).items()}
    warnings: list[str] = []
    example = _first_example(example_images, report, warnings)

    parts: list[str] = [_verdict_banner(report)]
    if report.method == "all":
        top = {k: v for k, v in arts.items() if "/" not in k}
        parts.append(_methods_table(report))
        parts.append(_report_body(report, top, example, warnings, anchor="combined"))
        for name, sub in report.reports.items():
            sub_arts = {k.split("/", 1)[1]: v for k, v in arts.items() if k.startswith(f"{name}/")}
            parts.append(
                f'<section class="sub" id="{_id(name)}"><h2>{escape(name)} '
                f"{_badge(sub.verdict)}</h2>{_report_body(sub, sub_arts, example, warnings, anchor=name)}</section>"
            )
    else:
        parts.append(_report_body(report, arts, example, warnings, anchor=report.method))
    if warnings:
        items = "".join(f"<li>{escape(w)}</li>" for w in warnings)
        parts.insert(1, f'<div class="warn"><strong>Rendering notes</strong><ul>{items}</ul></div>')
    title = f"trojanscan: {report.verdict} ({report.method}) {report.model.path or ''}".strip()
    footer = (
        f'<footer>{escape(report.schema)} &middot; trojanscan {escape(report.tool_version)} &middot; '
        f"seed {report.seed}</footer>"
    )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        '<header class="top"><span class="brand">trojanscan</span> scan report</header>\n'
        + "\n".join(parts)
        + f"\n{footer}\n</main>\n</body>\n</html>\n"
    )


def write_html(
    path: str | os.PathLike[str],
    report: ScanReport,
    artifacts: Mapping[str, Any] | None = None,
    example_images: Any | None = None,
) -> None:
    """Render the report (see :func:`render_html`) and write it to ``path`` atomically (UTF-8)."""
    write_text_atomic(path, render_html(report, artifacts, example_images))


# ----------------------------------------------------------------------------------------------- sections
def _verdict_banner(r: ScanReport) -> str:
    cls = "trojaned" if r.trojaned else "benign"
    names = _names(r)
    if r.trojaned:
        sus = ", ".join(_label_text(s, names) for s in r.suspects)
        sub = f"suspected target label{'s' if len(r.suspects) > 1 else ''}: <strong>{escape(sus)}</strong>"
    else:
        sub = "no label is an outlier at this cutoff"
    prob = ""
    if r.trojan_probability is not None:
        prob = f'<div class="prob">trojan probability <strong>{r.trojan_probability:.0%}</strong></div>'
    idx = (
        f"{escape(_index_name(r))} <strong>{escape(_fmt_index(r.anomaly_index))}</strong> "
        f"{'&gt;' if r.anomaly_index > r.cutoff else '&le;'} cutoff {escape(_fmt_index(r.cutoff))}"
    )
    return (
        f'<div class="verdict {cls}"><div class="word">{escape(r.verdict.upper())}</div>'
        f'<div class="why">{sub}</div><div class="why">{idx} &middot; method {escape(r.method)}</div>{prob}</div>'
    )


def _report_body(r: ScanReport, arts: dict[str, Any], example: np.ndarray | None, warnings: list[str], anchor: str) -> str:
    out = [_summary(r)]
    if r.classes:
        out.append(_chart(r))
        out.append(_visuals(r, arts, example, warnings, anchor))
        out.append(_class_table(r))
    elif arts:
        warnings.append(f"{anchor}: the report lists no classes, so its artifacts ({', '.join(sorted(arts))}) are not shown")
    out.append(_details(r))
    return "\n".join(x for x in out if x)


def _summary(r: ScanReport) -> str:
    m = r.model
    names = _names(r)
    rows: list[tuple[str, str]] = [
        ("model", f"<code>{escape(m.path or '(in memory)')}</code>"),
        ("sha256", f'<code class="hash">{escape(m.sha256 or "-")}</code>'),
        ("input shape", escape(" x ".join(str(v) for v in m.input_shape)) + " (C x H x W)"),
        ("classes", str(int(m.num_classes))),
        ("method", escape(r.method)),
        ("verdict", _badge(r.verdict)),
        (
            _index_name(r),
            f"<strong>{escape(_fmt_index(r.anomaly_index))}</strong> vs cutoff {escape(_fmt_index(r.cutoff))}"
            + escape(_alpha_text(r)),
        ),
        ("suspects", escape(", ".join(_label_text(s, names) for s in r.suspects)) if r.suspects else "none"),
    ]
    if r.trojan_probability is not None:
        rows.append(("trojan probability", f"{r.trojan_probability:.3f}"))
    rows += [
        ("data", escape(f"{r.data.source} ({r.data.n_images} images)")),
    ]
    if r.data.model_accuracy is not None:
        n = r.data.model_accuracy_images
        rows.append(("model accuracy on the clean data",
                     f"{100 * r.data.model_accuracy:.1f} %" + ("" if n is None else f" on {n:,} labelled images")))
    rows += [
        ("runtime", escape(f"{r.runtime_s:.1f} s")),
        ("model queries", f"{int(r.model_queries):,}"),
    ]
    body = "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv summary">{body}</table>'


def _methods_table(r: ScanReport) -> str:
    """For ``method == "all"``: one row per sub-report, linking to its section."""
    if not r.reports:
        return ""
    rows = []
    for name, sub in r.reports.items():
        names = _names(sub)
        sus = ", ".join(_label_text(s, names) for s in sub.suspects) or "none"
        prob = "-" if sub.trojan_probability is None else f"{sub.trojan_probability:.2f}"
        rows.append(
            f'<tr><td><a href="#{_id(name)}">{escape(name)}</a></td><td>{_badge(sub.verdict)}</td>'
            f"<td>{escape(_index_name(sub))} {escape(_fmt_index(sub.anomaly_index))}</td>"
            f"<td>{escape(_fmt_index(sub.cutoff))}</td><td>{escape(sus)}</td><td>{prob}</td>"
            f"<td>{sub.runtime_s:.1f} s</td></tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in ("method", "verdict", "largest index", "cutoff", "suspects", "p(trojan)", "runtime"))
    return (
        f'<h3>Per-method results</h3><table class="grid methods"><thead><tr>{head}</tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table>'
    )


def _chart(r: ScanReport) -> str:
    try:
        png = anomaly_chart_png(
            [c.label for c in r.classes],
            [c.anomaly_index for c in r.classes],
            cutoff=r.cutoff,
            suspects=r.suspects,
            names=[c.name for c in r.classes],
            ylabel=_index_name(r),
        )
    except Exception as exc:  # a picture must never cost the user the report
        return f'<p class="muted">(chart unavailable: {escape(type(exc).__name__)}: {escape(str(exc))})</p>'
    return (
        f"<h3>Per-class {escape(_index_name(r))}</h3>"
        f'<figure class="chart"><img alt="bar chart of per-class {escape(_index_name(r))}" src="{data_uri(png)}">'
        f"<figcaption>{escape(_index_caption(r))}; labels above the dashed cutoff are flagged. "
        "Hatched bars are infinite (zero spread) and clipped.</figcaption></figure>"
    )


def _visuals(r: ScanReport, arts: dict[str, Any], example: np.ndarray | None, warnings: list[str], anchor: str) -> str:
    k = int(r.model.num_classes)
    masks = _artifact(arts, "masks", k, (2,), warnings, anchor)
    patterns = _artifact(arts, "patterns", k, (3,), warnings, anchor)
    triggers = _artifact(arts, "triggers", k, (3,), warnings, anchor)
    heatmaps = _artifact(arts, "heatmaps", k, (2, 3), warnings, anchor)
    if heatmaps is not None and heatmaps.ndim == 4:
        heatmaps = np.abs(heatmaps).sum(axis=1)
    if masks is None and patterns is None and triggers is None and heatmaps is None:
        return ""
    shown = _shown_labels(r)
    ref = _reference_label(r, shown)
    names = _names(r)
    by_label = {c.label: c for c in r.classes}
    ex = _fit_example(example, masks, patterns, triggers, warnings, anchor)
    cards = []
    for lab in shown:
        if not 0 <= lab < k:
            continue
        c = by_label.get(lab)
        figs: list[str] = []
        if masks is not None:
            m = masks[lab]
            figs.append(_fig(m, f"mask (L1 {m.sum():.1f})"))
        if patterns is not None:
            figs.append(_fig(patterns[lab], "pattern"))
            if masks is not None:
                figs.append(_fig(patterns[lab] * masks[lab][None], "pattern x mask"))
        if masks is not None and patterns is not None and ex is not None:
            m = masks[lab][None]
            figs.append(_fig(ex, "clean example"))
            figs.append(_fig((1.0 - m) * ex + m * patterns[lab], "stamped (1-m)x + mp"))
        if triggers is not None:
            t = triggers[lab]
            amax = float(np.max(np.abs(t))) if t.size else 0.0
            figs.append(_fig(0.5 + t / (2.0 * amax) if amax > 0 else np.full_like(t, 0.5),
                             f"trigger (max |t| {amax:.3g}, grey = 0)"))
            if ex is not None:
                if masks is None or patterns is None:
                    figs.append(_fig(ex, "clean example"))
                figs.append(_fig(np.clip(ex + t, 0.0, 1.0), "stamped clamp(x + t)"))
        if heatmaps is not None:
            figs.append(_fig(_norm01(heatmaps[lab]), "heatmap", cmap="inferno"))
            if ref is not None and 0 <= ref < k:
                figs.append(_fig(_norm01(heatmaps[ref]), f"clean class {_label_text(ref, names)}", cmap="inferno"))
        idx = c.anomaly_index if c is not None else math.nan
        tag = _badge("trojaned", "SUSPECT") if lab in r.suspects else ""
        cards.append(
            f'<div class="card{" suspect" if lab in r.suspects else ""}"><div class="card-h">'
            f"class <strong>{escape(_label_text(lab, names))}</strong> &middot; {escape(_index_name(r))} "
            f"{escape(_fmt_index(idx))} {tag}</div>"
            f'<div class="figs">{"".join(figs)}</div></div>'
        )
    what = "Recovered triggers" if masks is not None or triggers is not None or patterns is not None else "Heatmaps"
    if heatmaps is not None and what != "Heatmaps":
        what += " and heatmaps"
    note = "the suspects and the most suspicious other classes (top 3 by index)"
    if len(r.suspects) > MAX_SUSPECTS_SHOWN:
        note += f"; only the first {MAX_SUSPECTS_SHOWN} of {len(r.suspects)} suspects"
    return f'<h3>{what}</h3><p class="muted">Shown for {note}.</p>' + "".join(cards)


#: Per-class extras of one of several repeated runs (DeepInspect's ``l1_run2``): in the JSON report, not in the table.
_PER_RUN = re.compile(r"_run\d+$")


def _class_table(r: ScanReport) -> str:
    extra_keys = sorted({k for c in r.classes for k in c.extra if not _PER_RUN.search(k)})
    has_names = any(c.name for c in r.classes)
    head = ["label"] + (["name"] if has_names else []) + ["statistic", _index_name(r)] + extra_keys
    rows = []
    suspects = set(r.suspects)
    for c in sorted(r.classes, key=lambda c: c.label):
        cells = [str(c.label)] + ([escape(c.name or "")] if has_names else [])
        cells += [escape(_fmt(c.statistic)), escape(_fmt_index(c.anomaly_index))]
        cells += [escape(_fmt(c.extra[k])) if k in c.extra else "" for k in extra_keys]
        cls = ' class="suspect"' if c.label in suspects else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    runs = any(_PER_RUN.search(k) for c in r.classes for k in c.extra)
    caption = '<p class="muted">Each repeated run\'s own numbers are in the JSON report.</p>' if runs else ""
    return (f'<h3>Per-class results</h3><table class="grid"><thead><tr>{th}</tr></thead><tbody>{"".join(rows)}</tbody>'
            f"</table>{caption}")


def _details(r: ScanReport) -> str:
    out = []
    if r.config:
        rows = "".join(
            f"<tr><th>{escape(str(k))}</th><td><code>{escape(_json(v))}</code></td></tr>" for k, v in r.config.items()
        )
        out.append(f'<h3>Configuration</h3><table class="kv">{rows}</table>')
    run = [
        ("data source", f"{r.data.source}"),
        ("images", f"{r.data.n_images}"),
        ("runtime", f"{r.runtime_s:.3f} s"),
        ("model queries", f"{int(r.model_queries):,}"),
        ("seed", f"{r.seed}"),
    ]
    run += [(f"artifact: {k}", v) for k, v in r.artifacts.items()]
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in run)
    out.append(f'<h3>Run</h3><table class="kv">{rows}</table>')
    if r.notes:
        out.append("<h3>Notes</h3><ul>" + "".join(f"<li>{escape(str(n))}</li>" for n in r.notes) + "</ul>")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------- helpers
def _artifact(
    arts: dict[str, Any], key: str, k: int, item_ndims: tuple[int, ...], warnings: list[str], anchor: str
) -> np.ndarray | None:
    """``arts[key]`` as float64 (K, ...) with per-class items of one of ``item_ndims``, or None (warned)."""
    if key not in arts or arts[key] is None:
        return None
    try:
        a = to_numpy(arts[key])
    except Exception as exc:
        warnings.append(f"{anchor}: artifact {key!r} is not a tensor or array ({type(exc).__name__}); not shown")
        return None
    if key == "masks" and a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if key in ("patterns", "triggers") and a.ndim == 3:
        a = a[:, None]
    if a.ndim - 1 not in item_ndims or a.shape[0] != k:
        want = " or ".join("(K, " + ", ".join(["C", "H", "W"][3 - n :]) + ")" for n in item_ndims)
        warnings.append(f"{anchor}: artifact {key!r} has shape {tuple(a.shape)}, expected {want} with K = {k}; not shown")
        return None
    return np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)


def _first_example(images: Any | None, r: ScanReport, warnings: list[str]) -> np.ndarray | None:
    if images is None:
        return None
    try:
        a = to_numpy(images)
    except Exception as exc:
        warnings.append(f"example_images is not a tensor or array ({type(exc).__name__}); not used")
        return None
    if a.ndim == 4:
        if a.shape[0] == 0:
            return None
        a = a[0]
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        warnings.append(f"example_images has shape {tuple(a.shape)}, expected (N, C, H, W); not used")
        return None
    return np.clip(np.nan_to_num(a), 0.0, 1.0)


def _fit_example(
    ex: np.ndarray | None,
    masks: np.ndarray | None,
    patterns: np.ndarray | None,
    triggers: np.ndarray | None,
    warnings: list[str],
    anchor: str,
) -> np.ndarray | None:
    """The example image if it can be stamped with these artifacts (same H, W; broadcastable channels)."""
    if ex is None:
        return None
    for name, a in (("masks", masks), ("patterns", patterns), ("triggers", triggers)):
        if a is None:
            continue
        hw = a.shape[-2:]
        c = a.shape[1] if a.ndim == 4 else 1
        if tuple(hw) != tuple(ex.shape[-2:]) or (c != 1 and ex.shape[0] not in (1, c)):
            warnings.append(
                f"{anchor}: example image {tuple(ex.shape)} does not match {name} {tuple(a.shape)}; not stamped"
            )
            return None
    return ex


def _fig(img: np.ndarray, caption: str, cmap: str | None = None) -> str:
    try:
        uri = data_uri(image_png(img, cmap=cmap))
    except ValueError as exc:
        body = f'<div class="muted">{escape(str(exc))}</div>'
        return f'<figure class="img">{body}<figcaption>{escape(caption)}</figcaption></figure>'
    return f'<figure class="img"><img alt="{escape(caption)}" src="{uri}"><figcaption>{escape(caption)}</figcaption></figure>'


def _norm01(a: np.ndarray) -> np.ndarray:
    a = np.abs(a)
    mx = float(a.max()) if a.size else 0.0
    return a / mx if mx > 0 else np.zeros_like(a)


def _shown_labels(r: ScanReport) -> list[int]:
    """Suspects (most anomalous first, capped) then the top other classes by index."""
    shown = [int(s) for s in r.suspects[:MAX_SUSPECTS_SHOWN]]
    others = [c for c in r.classes if c.label not in set(r.suspects)]
    others.sort(key=lambda c: (-_sortable(c.anomaly_index), c.label))
    return shown + [c.label for c in others[:N_OTHERS_SHOWN]]


def _reference_label(r: ScanReport, shown: list[int]) -> int | None:
    """A clean class to compare heatmaps with: the non-suspect whose index is closest to 0."""
    pool = [c for c in r.classes if c.label not in shown] or [c for c in r.classes if c.label not in r.suspects]
    if not pool:
        return None
    return min(pool, key=lambda c: (abs(_sortable(c.anomaly_index)), c.label)).label


def _sortable(v: float) -> float:
    return -math.inf if math.isnan(v) else v


def _names(r: ScanReport) -> dict[int, str]:
    return {c.label: c.name for c in r.classes if c.name}


def _label_text(label: int, names: dict[int, str]) -> str:
    n = names.get(int(label))
    return f"{label} ({n})" if n else str(label)


def _is_dmad(r: ScanReport) -> bool:
    return r.config.get("test") == "dmad"


def _is_pairs(r: ScanReport) -> bool:
    from trojanscan.stats import PER_MODEL_TESTS

    return r.config.get("test") in PER_MODEL_TESTS


def _index_name(r: ScanReport) -> str:
    if _is_pairs(r):
        return "pair score"
    return "deviation factor" if _is_dmad(r) else "anomaly index"


def _index_caption(r: ScanReport) -> str:
    if _is_pairs(r):
        return ("Per label, the per-model normal score of its most anomalous source-target pair (DeepInspect pair "
                "mode: double MAD over all pairs' row-normalised log L1)")
    return (f"Left-tail {_index_name(r)} per label (median - statistic) / MAD"
            f"{' on the left subgroup' if _is_dmad(r) else ''}")


def _alpha_text(r: ScanReport) -> str:
    if r.reports:  # the combined report's cutoff is in units of each detector's own
        return " (in units of each detector's cutoff; family-wise)" if r.familywise else ""
    try:
        a = stats.alpha_from_cutoff(r.cutoff)
    except InvalidInputError:
        return ""
    if r.familywise:
        k = r.model.num_classes
        return f" (family-wise: alpha = {1 - (1 - a) ** k:.3g} per model, {a:.3g} per label over {k} classes)"
    return f" (alpha = {a:.3g} per label, two-sided normal tail)"


def _fmt_index(v: float) -> str:
    if math.isinf(v):
        return "+inf" if v > 0 else "-inf"
    if math.isnan(v):
        return "-"
    return f"{v:.2f}"


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    v = float(v)
    if math.isinf(v):
        return "+inf" if v > 0 else "-inf"
    if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
        return f"{v:.3e}"
    return f"{v:.4g}"


def _json(v: Any) -> str:
    try:
        return json.dumps(v, ensure_ascii=False, allow_nan=True, default=repr)
    except (TypeError, ValueError):
        return repr(v)


def _badge(verdict: str, text: str | None = None) -> str:
    cls = "trojaned" if verdict == "trojaned" else "benign"
    return f'<span class="badge {cls}">{escape(text or verdict)}</span>'


def _id(name: str) -> str:
    return "m-" + "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)


_CSS = """
:root{--red:#c62828;--green:#2e7d32;--ink:#1f2328;--muted:#667085;--line:#e4e7ec;--bg:#f6f7f9}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);
font:14px/1.45 -apple-system,"Segoe UI",Roboto,"Helvetica Neue","DejaVu Sans",Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:20px 24px 40px}
header.top{font-size:13px;color:var(--muted);letter-spacing:.04em;text-transform:uppercase;margin-bottom:10px}
.brand{font-weight:700;color:var(--ink)}
h2{font-size:20px;margin:34px 0 10px;padding-top:14px;border-top:2px solid var(--line)}
h3{font-size:15px;margin:22px 0 8px}
.verdict{border-radius:10px;color:#fff;padding:18px 24px;margin:6px 0 18px;box-shadow:0 1px 3px rgba(0,0,0,.15)}
.verdict.trojaned{background:var(--red)}
.verdict.benign{background:var(--green)}
.verdict .word{font-size:40px;font-weight:800;letter-spacing:.06em;line-height:1.1}
.verdict .why{font-size:15px;opacity:.95;margin-top:4px}
.verdict .prob{font-size:15px;margin-top:6px}
.badge{display:inline-block;border-radius:999px;padding:1px 9px;font-size:12px;font-weight:700;color:#fff;
vertical-align:middle;text-transform:uppercase;letter-spacing:.03em}
.badge.trojaned{background:var(--red)}
.badge.benign{background:var(--green)}
table{border-collapse:collapse;background:#fff;border:1px solid var(--line);border-radius:6px}
table.kv.summary{width:100%}
table.methods{margin-bottom:14px}
table.grid.methods th,table.grid.methods td{text-align:left}
a{color:#1d4ed8}
table.kv th{text-align:left;font-weight:600;color:var(--muted);padding:5px 14px 5px 10px;white-space:nowrap;
vertical-align:top}
table.kv td{padding:5px 10px;word-break:break-all}
table.kv tr+tr th,table.kv tr+tr td{border-top:1px solid var(--line)}
table.grid{width:100%;font-variant-numeric:tabular-nums}
table.grid th{background:#eef1f5;text-align:right;padding:5px 10px;font-weight:600}
table.grid td{text-align:right;padding:4px 10px;border-top:1px solid var(--line)}
table.grid th:nth-child(2),table.grid td:nth-child(2){text-align:left}
table.grid tr.suspect td{background:#fdecea;font-weight:700;color:#8e1b1b}
code{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12.5px}
code.hash{font-size:11.5px}
figure{margin:0}
figure.chart{background:#fff;border:1px solid var(--line);border-radius:6px;padding:8px;text-align:center}
figure.chart img{max-width:100%;height:auto}
figcaption{font-size:12px;color:var(--muted);margin-top:4px}
.card{background:#fff;border:1px solid var(--line);border-left:5px solid #9aa4b2;border-radius:6px;
padding:10px 14px;margin:10px 0}
.card.suspect{border-left-color:var(--red)}
.card-h{margin-bottom:8px}
.figs{display:flex;flex-wrap:wrap;gap:14px}
figure.img{text-align:center;max-width:180px}
figure.img img{image-rendering:pixelated;image-rendering:crisp-edges;border:1px solid #cfd4dc;display:block;
margin:0 auto;max-width:180px;height:auto}
.muted{color:var(--muted)}
.warn{background:#fff8e1;border:1px solid #f2c94c;border-radius:6px;padding:8px 14px;margin:10px 0}
.warn ul{margin:4px 0 0 18px;padding:0}
section.sub{margin-top:10px}
footer{margin-top:36px;color:var(--muted);font-size:12px;border-top:1px solid var(--line);padding-top:10px}
"""
