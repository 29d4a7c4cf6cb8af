"""Where one label stands in saved scan reports: its statistic, anomaly index and rank, next to the median.

    .venv/bin/python scripts/label_rank.py --label 18 runs/s21/*.json

RESULTS.md quotes a target's rank ("18 at rank 15 of 43") from reports written by ``trojanscan scan --json``; this
prints those numbers from the reports alone (a combined ``--method all`` report: one line per detector). Rank 1 is the
most anomalous label (largest anomaly index, so the smallest statistic for the left-tail tests). For the detectors
whose statistic is a trigger norm, the line ends with the same statistics re-decided on the log scale
(`trojanscan.scan.rescale`, docs/methods/statistics.md), whichever scale the report was made on.
"""

from __future__ import annotations

import argparse
import statistics as st
from pathlib import Path

from trojanscan.errors import InvalidInputError
from trojanscan.report import ScanReport
from trojanscan.scan import rescale, scale_takers
from trojanscan.stats import PER_MODEL_TESTS


def describe(rep: ScanReport, label: int) -> str:
    """One line: the report's verdict and suspects, then ``label``'s statistic, index and rank of K."""
    k = len(rep.classes)
    if not 0 <= label < k:
        raise SystemExit(f"label {label} is not one of the report's {k} labels (0..{k - 1})")
    order = sorted(rep.classes, key=lambda c: -c.anomaly_index)
    rank = next(i for i, c in enumerate(order, 1) if c.label == label)
    mine = rep.classes[label]
    top = ", ".join(f"{c.label} {c.anomaly_index:.2f}" for c in order[:3])
    median = st.median(c.statistic for c in rep.classes)
    suspects = "{" + ", ".join(map(str, rep.suspects)) + "}"
    line = (f"{rep.method}: {rep.verdict} {rep.anomaly_index:.2f} {suspects}; label {label}: index "
            f"{mine.anomaly_index:.2f}, rank {rank} of {k}, statistic {mine.statistic:.4g} (median {median:.4g}); "
            f"top three: {top}; {rep.runtime_s:.1f} s")
    if rep.method in scale_takers() and rep.config.get("test") not in PER_MODEL_TESTS:
        try:
            log = rescale(rep, "log")
        except InvalidInputError as exc:  # a report without the per-label norms the log scale needs
            return f"{line}; log scale: not available ({exc})"
        line += (f"; log scale: {log.anomaly_index:.2f} {{{', '.join(map(str, log.suspects))}}}, label {label} at "
                 f"{log.classes[label].anomaly_index:.2f}")
    return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", type=Path, help="JSON reports (trojanscan scan --json)")
    ap.add_argument("--label", type=int, required=True, help="the label to place (e.g. the attack's target)")
    args = ap.parse_args()
    for path in args.reports:
        rep = ScanReport.from_json(path.read_text())
        for sub in (rep.reports.values() if rep.reports else [rep]):
            print(f"{path}: {describe(sub, args.label)}")


if __name__ == "__main__":
    main()
