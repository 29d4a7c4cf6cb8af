"""Fit the per-detector trojan-probability curves (trojanscan.calibration) on our own benchmark scans.

    .venv/bin/python scripts/calibrate.py --scans runs/bench/scans --models runs/bench/models \
        --out src/trojanscan/calibration.json

Uses every cached benchmark scan (``<model>__<detector>__<key>.json``, written by ``trojanscan bench``) whose
configuration equals the detector's current defaults, with the ground truth of the model it scanned
(``<model>.truth.json``, written at training time). The zoo that scan-zoo judges must be a different set of
models: never point this script at it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from trojanscan.calibration import fit_logistic, save_calibration
from trojanscan.detectors import get_detector, list_detectors
from trojanscan.report.scan_report import ScanReport

DECISION_KEYS = ("cutoff", "alpha", "familywise")


def _norm(v: object) -> object:
    return json.loads(json.dumps(v, default=str))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scans", default="runs/bench/scans")
    ap.add_argument("--models", default="runs/bench/models")
    ap.add_argument("--out", default="src/trojanscan/calibration.json")
    args = ap.parse_args()
    points: dict[str, dict[str, tuple[float, int]]] = {d: {} for d in list_detectors()}  # det -> "model (data)" -> point
    for f in sorted(Path(args.scans).glob("*__*__*.json")):
        model, det, _ = f.stem.split("__")
        if det not in points:
            continue
        truth_file = Path(args.models) / f"{model}.truth.json"
        if not truth_file.is_file():
            continue
        rep = ScanReport.load_json(f)
        defaults = _norm(get_detector(det).get_params())
        assert isinstance(defaults, dict)
        # a scan made with other settings than today's defaults is left out; the decision settings (cutoff, alpha,
        # familywise) do not change the anomaly index, and scans older than the familywise option lack that key
        if any(_norm(rep.config.get(k)) != v for k, v in defaults.items() if k not in DECISION_KEYS):
            continue
        trojaned = bool(json.loads(truth_file.read_text())["trojaned"])
        # one point per model and kind of data (a model scanned with clean and with inverted data counts twice)
        points[det][f"{model} ({rep.data.source})"] = (float(rep.anomaly_index), int(trojaned))
    curves = {}
    for det, pts in points.items():
        ys = [y for _, y in pts.values()]
        if len(set(ys)) < 2:
            print(f"{det}: {len(pts)} scans, not both clean and trojaned: no curve", file=sys.stderr)
            continue
        cal = fit_logistic([x for x, _ in pts.values()], ys)
        curves[det] = cal
        print(f"{det}: slope {cal.slope:.3f}, center {cal.center:.3f} from {cal.n_models} models "
              f"({cal.n_trojaned} trojaned): {', '.join(sorted(pts))}")
    save_calibration(args.out, curves, {
        "command": "python scripts/calibrate.py --scans runs/bench/scans --models runs/bench/models",
        "models": {det: {m: {"index": x, "trojaned": bool(y)} for m, (x, y) in sorted(pts.items())}
                   for det, pts in points.items() if det in curves},
    })
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
