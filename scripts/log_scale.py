"""Saved scan reports re-decided on the log scale (`trojanscan.scan.rescale`), next to the papers' raw scale.

    .venv/bin/python scripts/log_scale.py REPORT_DIR TRUTH_DIR

REPORT_DIR holds `<model>.json` reports (a `trojanscan scan --json` or `scan-zoo` report; single detector or
`--method all`), TRUTH_DIR the models' `<model>.truth.json`. Nothing is scanned: the per-label statistics in the
reports are put through the outlier test again. Prints, per model and detector, the anomaly index and suspects on
both scales, then per detector and scale the ROC-AUC of the anomaly index, false positives / negatives at the
report's cutoff and how many trojaned models have a true target as their first suspect; last, for each trojaned model
and each detector with a log scale, the target's statistic next to the median and range of the other labels'. The
combined verdict
("all": majority vote) is re-formed from the rescaled detectors; NeuronInspect (no log scale) keeps its report.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from trojanscan.bench.metrics import roc_auc
from trojanscan.report.scan_report import ScanReport
from trojanscan.scan import rescale


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__.splitlines()[2].strip())
    reports, truth_dir = Path(sys.argv[1]), Path(sys.argv[2])
    rows: list[tuple[str, dict[str, object], dict[str, dict[str, ScanReport]]]] = []
    for f in sorted(reports.glob("*.json")):
        truth_file = truth_dir / f"{f.stem}.truth.json"
        if not truth_file.is_file():
            continue
        truth = json.loads(truth_file.read_text())
        rep = ScanReport.load_json(f)
        by_scale = {}
        for scale in ("raw", "log"):
            r = rescale(rep, scale)
            subs = dict(r.reports) if r.reports else {r.method: r}
            if r.reports:
                subs["all"] = r
            by_scale[scale] = subs
        rows.append((f.stem, truth, by_scale))
    methods = sorted({m for _, _, b in rows for m in b["raw"]})
    print("| model | truth | " + " | ".join(f"{m} raw | {m} log" for m in methods) + " |")
    print("|---|---|" + "---|---|" * len(methods))
    for name, truth, b in rows:
        t = f"{truth['targets']}" if truth["trojaned"] else "clean"
        cells = []
        for m in methods:
            for scale in ("raw", "log"):
                r = b[scale].get(m)
                cells.append("-" if r is None else f"{r.anomaly_index:.2f} {{{', '.join(map(str, r.suspects))}}}")
        print(f"| {name} | {t} | " + " | ".join(cells) + " |")
    print()
    print("| detector | scale | ROC-AUC (index) | FP | FN | first suspect a target |")
    print("|---|---|---|---|---|---|")
    for m in methods:
        for scale in ("raw", "log"):
            have = [(truth, b[scale][m]) for _, truth, b in rows if m in b[scale]]
            y = [int(bool(t["trojaned"])) for t, _ in have]
            auc = roc_auc(y, [r.anomaly_index for _, r in have])
            fp = sum(1 for t, r in have if r.trojaned and not t["trojaned"])
            fn = sum(1 for t, r in have if not r.trojaned and t["trojaned"])
            troj = [(t, r) for t, r in have if t["trojaned"] and t["targets"]]
            hit = sum(1 for t, r in troj if r.suspects and r.suspects[0] in t["targets"])
            print(f"| {m} | {scale} | {auc:.3f} | {fp} of {len(y) - sum(y)} | {fn} of {sum(y)} | {hit} of {len(troj)} |")


    print()
    print("| model | detector | scale (statistic) | target's | median | other labels' |")
    print("|---|---|---|---|---|---|")
    for name, truth, b in rows:
        for m in methods:
            if not truth["trojaned"] or len(truth["targets"]) != 1 or b["log"].get(m) is None:
                continue
            if b["log"][m].config.get("scale") != "log":
                continue  # no log scale (NeuronInspect, the combined vote)
            t = int(truth["targets"][0])
            for scale in ("raw", "log"):
                r = b[scale][m]
                what = "hinge" if m == "deep_inspect" and scale == "raw" else "L1 norm"  # what the test saw
                values = [c.statistic for c in r.classes]
                others = [v for i, v in enumerate(values) if i != t]
                print(f"| {name} | {m} | {scale} ({what}) | {values[t]:.2f} | {statistics.median(values):.1f} | "
                      f"{min(others):.1f}-{max(others):.1f} |")


if __name__ == "__main__":
    main()
