"""The embedded demo: make a clean and a trojaned model on synthetic digits and scan both.

No download and no ../shared: the data is generated (:func:`trojanscan.data.synthetic.synthetic_digits`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trojanscan._fileio import sha256_file, write_text_atomic
from trojanscan.data.synthetic import synthetic_digits, train_test_split
from trojanscan.models.io import save_model
from trojanscan.recipes import AttackSpec, TrainRecipe, build_model

DEMO_TARGET = 7


def run_demo(out: Path, *, method: str = "all", seed: int = 0, progress: bool = True,
             echo: Callable[[str], None] = print) -> dict[str, dict[str, object]]:
    """Train both models (under a minute each on 2 cores), print accuracy and TAR, scan, write reports."""
    from trojanscan.report.html import write_html
    from trojanscan.scan import scan_model

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    echo("trojanscan demo: synthetic digits (10 classes, 1x28x28), generated locally")
    train_data, test_data = train_test_split(synthetic_digits(8000, seed=seed), 0.2, seed=seed)
    recipes = {
        "clean": TrainRecipe("synthetic", seed=seed),
        "trojaned": TrainRecipe("synthetic", attack=AttackSpec("badnets", target=str(DEMO_TARGET), trigger_size=4),
                                seed=seed),
    }
    summary: dict[str, dict[str, object]] = {}
    for name, recipe in recipes.items():
        t0 = time.perf_counter()
        built = build_model(recipe, train_data, test_data, progress=progress, log=None)
        m = built.metrics
        tar = f", TAR {m['tar']:.1%} (BadNets 4x4 white square, target {DEMO_TARGET})" if "tar" in m else ""
        echo(f"[{name}] trained in {time.perf_counter() - t0:.0f} s: clean accuracy {m['clean_acc']:.1%}{tar}")
        path = save_model(out / f"{name}.safetensors", built.model, provenance=built.provenance())
        write_text_atomic(out / f"{name}.truth.json", json.dumps(built.truth(), indent=1) + "\n")
        clean = test_data.subset(__import__("torch").arange(min(500, len(test_data))), "demo clean data")
        built.model.metadata.update(path=str(path), sha256=sha256_file(path))
        outcome = scan_model(built.model, clean, method=method, seed=seed, progress=progress,
                             artifact_dir=out / f"{name}_report_files")
        rep = outcome.report
        rep.save_json(out / f"{name}_report.json")
        arts: dict[str, Any] = {}
        for meth, a in outcome.artifacts.items():
            for k, v in a.items():
                arts.setdefault(k, v)
                arts[f"{meth}/{k}"] = v
        write_html(out / f"{name}_report.html", rep, arts, clean.x[:8])
        sus = ",".join(map(str, rep.suspects)) or "none"
        echo(f"[{name}] scan ({rep.method}): {rep.verdict.upper()}  suspects {sus}  anomaly index "
             f"{rep.anomaly_index:.2f} (cutoff {rep.cutoff:g})  {rep.runtime_s:.0f} s")
        for sub_name, sub in rep.reports.items():
            echo(f"           {sub_name:15s} {sub.verdict:9s} index {sub.anomaly_index:6.2f}  "
                 f"suspects {','.join(map(str, sub.suspects)) or '-'}  ({sub.runtime_s:.0f} s)")
        summary[name] = {"metrics": m, "verdict": rep.verdict, "suspects": rep.suspects}
    echo(f"reports: {out}/clean_report.html, {out}/trojaned_report.html")
    return summary
