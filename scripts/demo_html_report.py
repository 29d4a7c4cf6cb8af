#!/usr/bin/env python
"""Build fake scan reports with synthetic artifacts and render them as HTML (for eyeballing the layout).

    .venv/bin/python scripts/demo_html_report.py OUT_DIR

Writes OUT_DIR/single.html (a Neural Cleanse scan of a 1x28x28 ten-class model, class 5 trojaned with a
4x4 white square at the bottom right) and OUT_DIR/all.html (``--method all`` on a 3x32x32 model: Neural
Cleanse masks/patterns, NeuronInspect heatmaps, DeepInspect additive triggers with an infinite deviation
factor). Class 3 is named ``<script>alert(1)</script>`` to check the escaping. Then screenshot them with
``scripts/screenshot_report.sh``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from trojanscan import stats
from trojanscan.report import ClassResult, DataInfo, ModelInfo, ScanReport
from trojanscan.report.html import write_html

NAMES = ["zero", "one", "two", "<script>alert(1)</script>", "four", "five", "six", "seven", "eight", "nine"]
TARGET = 5


def _report(method: str, statistics: list[float], shape: list[int], *, test: str = "mad",
            extra: dict[str, list[float]] | None = None, queries: int = 120_000) -> ScanReport:
    d = stats.decide(statistics, cutoff=2.0, test=test)
    return ScanReport(
        method=method,
        verdict=d.verdict,
        anomaly_index=d.anomaly_index,
        cutoff=d.cutoff,
        suspects=d.suspects,
        classes=[
            ClassResult(i, float(s), float(d.indices[i]), NAMES[i], {k: float(v[i]) for k, v in (extra or {}).items()})
            for i, s in enumerate(statistics)
        ],
        model=ModelInfo("models/badnets_mnist.safetensors", "3f" * 32, shape, 10),
        data=DataInfo("clean_data" if method != "deep_inspect" else "model_inversion", 200),
        runtime_s=12.43,
        model_queries=queries,
        seed=0,
        config={"steps": 1000, "lr": 0.1, "cutoff": 2.0, "alpha": None, "test": test, "note": "<b>not bold</b>"},
        artifacts={"tensors": "report_files/" + method + ".safetensors"},
        notes=["synthetic report made by scripts/demo_html_report.py", "a note with <angle brackets> & ampersands"],
    )


def _digit(h: int = 28, w: int = 28) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    r = (((yy - h / 2) / 9.0) ** 2 + ((xx - w / 2) / 6.0) ** 2).sqrt()
    return ((r > 0.7) & (r < 1.05)).float().unsqueeze(0)  # a "0"


def _masks_patterns(c: int, h: int, w: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    masks = (torch.rand(10, h, w, generator=g) ** 6) * 0.9  # diffuse, large-norm masks for clean labels
    masks[:, h // 3 : 2 * h // 3, w // 3 : 2 * w // 3] += 0.5
    masks = masks.clamp(0, 1)
    masks[TARGET] = 0.0
    masks[TARGET, h - 5 : h - 1, w - 5 : w - 1] = 1.0  # the 4x4 square at the bottom right
    patterns = torch.rand(10, c, h, w, generator=g)
    patterns[TARGET, :, h - 5 : h - 1, w - 5 : w - 1] = 1.0
    return masks, patterns


def main(out_dir: str) -> None:
    out = Path(out_dir)
    g = torch.Generator().manual_seed(0)

    # --- single: Neural Cleanse on 1x28x28
    masks, patterns = _masks_patterns(1, 28, 28, g)
    l1 = [float(v) for v in masks.flatten(1).sum(1)]
    asr = [0.99 if i == TARGET else 0.9 + 0.01 * i for i in range(10)]
    single = _report("neural_cleanse", l1, [1, 28, 28], extra={"attack_success": asr})
    images = _digit().unsqueeze(0).repeat(4, 1, 1, 1)
    write_html(out / "single.html", single, {"masks": masks, "patterns": patterns}, images)

    # --- all: three detectors on 3x32x32
    masks3, patterns3 = _masks_patterns(3, 32, 32, g)
    nc = _report("neural_cleanse", [float(v) for v in masks3.flatten(1).sum(1)], [3, 32, 32])
    heat = torch.rand(10, 3, 32, 32, generator=g) * 0.3
    heat[TARGET] = 0.02
    heat[TARGET, :, 26:31, 26:31] = 1.0
    sparsity = [float((h.abs().sum(0) > 0.5).float().mean()) for h in heat]
    ni = _report("neuron_inspect", [-s if i != TARGET else -0.9 for i, s in enumerate(sparsity)], [3, 32, 32])
    trig = torch.randn(10, 3, 32, 32, generator=g) * 0.05
    trig[TARGET] = 0.0
    trig[TARGET, 0, 27:31, 27:31] = 0.8
    di_stats = [1.0, 1.0, 1.0, 1.0, 1.0, 0.05, 1.0, 1.0, 1.2, 1.0]  # zero left spread -> +inf deviation factor
    di = _report("deep_inspect", di_stats, [3, 32, 32], test="dmad")
    combined = ScanReport(
        method="all",
        verdict="trojaned",
        anomaly_index=max(nc.anomaly_index, ni.anomaly_index, di.anomaly_index),
        cutoff=2.0,
        suspects=[TARGET],
        classes=[],
        model=nc.model,
        data=nc.data,
        runtime_s=nc.runtime_s + ni.runtime_s + di.runtime_s,
        model_queries=nc.model_queries + ni.model_queries + di.model_queries,
        seed=0,
        config={"methods": ["neural_cleanse", "neuron_inspect", "deep_inspect"], "combine": "any"},
        trojan_probability=0.93,
        reports={"neural_cleanse": nc, "neuron_inspect": ni, "deep_inspect": di},
    )
    rgb = torch.stack([torch.linspace(0, 1, 32).repeat(32, 1), torch.linspace(1, 0, 32).repeat(32, 1).T,
                       0.5 * _digit(32, 32)[0]]).unsqueeze(0)
    arts = {"neural_cleanse/masks": masks3, "neural_cleanse/patterns": patterns3, "neuron_inspect/heatmaps": heat,
            "deep_inspect/triggers": trig}
    write_html(out / "all.html", combined, arts, rgb)
    print(out / "single.html")
    print(out / "all.html")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/html_demo")
