"""Pictures for the HTML report, rendered in memory to PNG bytes (no files, no display).

Matplotlib is used through its object API with the Agg canvas (``Figure`` + ``FigureCanvasAgg``), never
through ``pyplot``: no global state, no GUI backend, safe to call from any thread. Image helpers take
NumPy arrays (or anything with ``.detach()``, e.g. torch tensors) in [0, 1] and upscale small images
with nearest-neighbour so that a 28 x 28 digit stays visible and crisp.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

SUSPECT_COLOUR = "#d62728"
OTHER_COLOUR = "#4c78a8"
CUTOFF_COLOUR = "#b22222"
MIN_DISPLAY_PX = 112  # small images are upscaled (integer factor, nearest-neighbour) to at least this size


def to_numpy(t: Any) -> np.ndarray:
    """A float64 NumPy copy of a tensor (any device, with or without grad) or array-like."""
    if hasattr(t, "detach"):
        t = t.detach().cpu().float().numpy()
    return np.array(t, dtype=np.float64)


def upscale_factor(height: int, width: int, min_px: int = MIN_DISPLAY_PX) -> int:
    """Smallest integer factor that makes the longer side at least ``min_px`` (1 for large images)."""
    side = max(int(height), int(width), 1)
    return max(1, math.ceil(min_px / side))


def image_png(image: Any, *, scale: int | None = None, cmap: str | None = None) -> bytes:
    """PNG bytes of one image in [0, 1]: (H, W) grayscale, (1, H, W) / (3, H, W) CHW, or (H, W, 3).

    Values are clipped to [0, 1]; NaN/inf become 0. ``cmap`` (a matplotlib colormap name) colours a
    2-D image (e.g. ``"inferno"`` for heatmaps). ``scale`` defaults to :func:`upscale_factor`.
    """
    from PIL import Image

    a = to_numpy(image)
    if a.ndim == 3 and a.shape[0] in (1, 3):  # CHW, the layout of every tensor in trojanscan
        a = np.transpose(a, (1, 2, 0))
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3):
        raise ValueError(f"cannot display an image of shape {a.shape}; expected (H, W), (C, H, W) or (H, W, 3)")
    a = np.clip(np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0), 0.0, 1.0)
    if cmap is not None and a.ndim == 2:
        from matplotlib import colormaps

        a = colormaps[cmap](a)[..., :3]
    k = upscale_factor(a.shape[0], a.shape[1]) if scale is None else max(1, int(scale))
    if k > 1:
        a = np.repeat(np.repeat(a, k, axis=0), k, axis=1)
    u8 = np.round(a * 255.0).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for inlining PNG bytes in HTML."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def anomaly_chart_png(
    labels: Sequence[int],
    indices: Sequence[float],
    *,
    cutoff: float,
    suspects: Sequence[int] = (),
    names: Sequence[str | None] | None = None,
    ylabel: str = "anomaly index",
    title: str | None = None,
) -> bytes:
    """Bar chart of per-class left-tail indices with the cutoff line, as PNG bytes.

    Suspects are drawn in red, the others in blue. Infinite indices are clipped to the edge of the plot,
    hatched and labelled ``+inf`` / ``-inf`` so that the scale stays readable. ``names`` (optional) label
    the x ticks as ``"label: name"`` when there are few classes.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    vals = np.asarray(list(indices), dtype=np.float64)
    labs = [int(v) for v in labels]
    k = len(labs)
    finite = vals[np.isfinite(vals)]
    top = max(float(cutoff), float(finite.max()) if finite.size else 0.0, 1.0)
    bottom = min(0.0, float(finite.min()) if finite.size else 0.0)
    clip_hi = top * 1.15 + 0.1 * (top - bottom)
    clip_lo = bottom * 1.15 - (0.1 * (top - bottom) if bottom < 0 or np.any(vals == -math.inf) else 0.0)
    shown = np.where(vals == math.inf, clip_hi, np.where(vals == -math.inf, clip_lo, vals))
    shown = np.nan_to_num(shown, nan=0.0)
    suspect_set = {int(s) for s in suspects}
    colours = [SUSPECT_COLOUR if lab in suspect_set else OTHER_COLOUR for lab in labs]

    width = min(16.0, max(10.0, 0.3 * k + 2.0))
    fig = Figure(figsize=(width, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    x = np.arange(k)
    bars = ax.bar(x, shown, color=colours, edgecolor="#333333", linewidth=0.4, width=0.8)
    for i, v in enumerate(vals):
        if math.isinf(v):
            bars[i].set_hatch("///")
            ax.annotate(
                "+inf" if v > 0 else "-inf",
                (x[i], shown[i]),
                xytext=(0, 3 if v > 0 else -11),
                textcoords="offset points",
                ha="center",
                fontsize=8,
                fontweight="bold",
            )
    ax.axhline(float(cutoff), color=CUTOFF_COLOUR, linestyle="--", linewidth=1.2, label=f"cutoff c = {cutoff:g}")
    ax.axhline(0.0, color="#555555", linewidth=0.6)
    lo = min(0.0, float(shown.min()) if k else 0.0)
    hi = max(float(cutoff), float(shown.max()) if k else 0.0)
    pad = 0.12 * (hi - lo if hi > lo else 1.0)
    ax.set_ylim(lo - (pad if lo < 0 else 0.0), hi + pad)
    ax.set_xlim(-0.6, k - 0.4)
    step = max(1, math.ceil(k / 40))
    ticks = list(range(0, k, step))
    use_names = names is not None and k <= 20 and any(names)
    tick_labels = []
    for i in ticks:
        n = names[i] if use_names and names is not None and i < len(names) else None
        tick_labels.append(f"{labs[i]}: {_short(n)}" if n else str(labs[i]))
    ax.set_xticks(ticks)
    ax.set_xticklabels(tick_labels, rotation=45 if use_names or k > 20 else 0, ha="right" if use_names or k > 20 else "center",
                       fontsize=8)
    ax.set_xlabel("class label")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    from matplotlib.patches import Patch

    handles = [
        Patch(facecolor=SUSPECT_COLOUR, edgecolor="#333333", label="suspect (above cutoff)"),
        Patch(facecolor=OTHER_COLOUR, edgecolor="#333333", label="other class"),
        ax.get_lines()[0],
    ]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _short(name: str | None, limit: int = 14) -> str:
    s = "" if name is None else str(name)
    return s if len(s) <= limit else s[: limit - 1] + "\u2026"
