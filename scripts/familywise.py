"""Re-decide saved scan reports at the papers' cutoff (2), the Sidak cutoff and the per-model one, no rescanning.

    .venv/bin/python scripts/familywise.py --truth-dir runs/zoo runs/zoo_scan/reports
    .venv/bin/python scripts/familywise.py --truth-dir runs/bench/models runs/bench/scans/gtsrb_*__deep_inspect__*.json

Arguments are report files (``trojanscan.scan/1`` JSON) or folders of them. A report named
``MODEL.json`` or ``MODEL__DETECTOR__HASH.json`` is matched with ``<truth-dir>/MODEL.truth.json``.
Prints, per detector (and the combined verdict where reports are combined ones): false positives,
false negatives and target hits at each cutoff, then one line per model.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from trojanscan import stats
from trojanscan.report import ScanReport
from trojanscan.scan import rethreshold


def _reports(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        out += sorted(p.glob("*.json")) if p.is_dir() else [p]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+")
    ap.add_argument("--truth-dir", required=True)
    args = ap.parse_args()
    tally: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    lines = []
    for path in _reports(args.reports):
        model = path.stem.split("__")[0]
        truth = json.loads((Path(args.truth_dir) / f"{model}.truth.json").read_text())
        base = ScanReport.load_json(path)
        fam = rethreshold(base, familywise=True)
        sid = rethreshold(base, cutoff=stats.sidak_cutoff(2.0, len(base.classes)))
        triples = [(base, sid, fam)] + [(base.reports[k], sid.reports[k], fam.reports[k]) for k in base.reports]
        for b, s, f in triples:
            for tag, r in (("c=2", b), ("sidak", s), ("familywise", f)):
                t = tally[(b.method, tag)]
                t["models"] += 1
                if truth["trojaned"] and not r.trojaned:
                    t["fn"] += 1
                if not truth["trojaned"] and r.trojaned:
                    t["fp"] += 1
                if truth["trojaned"] and truth["targets"] and r.suspects and r.suspects[0] in truth["targets"]:
                    t["target_hit"] += 1
            lines.append(f"{model:28s} {b.method:15s} truth {truth['targets'] if truth['trojaned'] else 'clean'!s:12s} "
                         f"index {b.anomaly_index:6.2f}  c=2 {b.suspects!s:14s} sidak {s.cutoff:.2f} {s.suspects!s:10s} "
                         f"per-model {f.cutoff:.2f} {f.suspects}")
    print("| detector | cutoff | models | false positives | false negatives | first suspect a true target |")
    print("|---|---|---|---|---|---|")
    for (method, tag), t in sorted(tally.items()):
        print(f"| {method} | {tag} | {t['models']} | {t['fp']} | {t['fn']} | {t['target_hit']} |")
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
