"""From a detector's anomaly index to a trojan probability, and the combined probability of ``--method all``.

A detector's evidence is its top-level anomaly index ``x`` (largest left-tail anomaly index or deviation
factor). The probability that the model is trojaned is a logistic curve in ``x`` (Platt scaling):

    p(x) = 1 / (1 + exp(-slope * (x - center)))

with ``slope`` and ``center`` fitted per detector by maximum a-posteriori logistic regression on scans of
models **we trained** (clean and trojaned, known truth) — never on the zoo being judged. The priors keep
the fit finite when the calibration models are perfectly separable (a maximum-likelihood slope would then
be infinite): ``center ~ N(2, 1)`` (the papers' cutoff) and ``log slope ~ N(log 2, 1)``.

The fitted constants ship in ``calibration.json`` beside this module, written by ``scripts/calibrate.py``
together with the list of models and the command behind them. A detector without a fitted curve gets no
probability (``None``), never an invented one.

The combined probability pools the calibrated detectors' log-odds by their mean (a geometric pool):
``logit p_all = mean_i logit p_i``. With independent detectors of equal weight this is the log-linear
opinion pool; it needs no extra fitted weights, which a few calibration models could not support.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize

from trojanscan.errors import DataFormatError, InvalidInputError

#: The calibration shipped with the package (fitted by scripts/calibrate.py).
CALIBRATION_FILE = Path(__file__).with_name("calibration.json")

#: Probabilities are kept inside [P_MIN, 1 - P_MIN] so that a log-odds pool stays finite.
P_MIN = 1e-4

PRIOR_CENTER = (2.0, 1.0)  # mean, sd of the index at p = 0.5
PRIOR_LOG_SLOPE = (math.log(2.0), 1.0)  # mean, sd of log(slope)


@dataclass(frozen=True)
class LogisticCalibration:
    """``p(x) = sigmoid(slope * (x - center))``, fitted on ``n_models`` models (``n_trojaned`` of them trojaned)."""

    slope: float
    center: float
    n_models: int = 0
    n_trojaned: int = 0

    def probability(self, index: float) -> float:
        """Trojan probability for anomaly index ``index`` (±inf allowed: a zero-spread outlier)."""
        x = float(index)
        if math.isnan(x):
            raise InvalidInputError("the anomaly index is NaN: no probability can be given")
        z = self.slope * (x - self.center) if math.isfinite(x) else math.copysign(math.inf, x)
        p = 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0
        return float(min(max(p, P_MIN), 1.0 - P_MIN))


def _neg_log_posterior(theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    log_a, b = float(theta[0]), float(theta[1])
    z = math.exp(log_a) * (x - b)
    # log(1 + exp(-z)) for y=1, log(1 + exp(z)) for y=0, stably
    nll = float(np.sum(np.logaddexp(0.0, np.where(y == 1, -z, z))))
    prior = ((b - PRIOR_CENTER[0]) / PRIOR_CENTER[1]) ** 2 / 2 + ((log_a - PRIOR_LOG_SLOPE[0]) / PRIOR_LOG_SLOPE[1]) ** 2 / 2
    return nll + prior


def fit_logistic(index: Sequence[float] | np.ndarray, trojaned: Sequence[int] | np.ndarray) -> LogisticCalibration:
    """MAP fit of :class:`LogisticCalibration` to anomaly indices and 0/1 truth (see the module docstring).

    Infinite indices are clipped to 1e3 (they still count as very large evidence).
    """
    x = np.clip(np.asarray(index, dtype=np.float64).reshape(-1), -1e3, 1e3)
    y = np.asarray(trojaned, dtype=np.int64).reshape(-1)
    if x.size != y.size or x.size == 0:
        raise InvalidInputError(f"need as many indices as labels, at least one; got {x.size} and {y.size}")
    if np.isnan(x).any():
        raise InvalidInputError("an anomaly index is NaN")
    res = minimize(_neg_log_posterior, np.array([PRIOR_LOG_SLOPE[0], PRIOR_CENTER[0]]), args=(x, y), method="BFGS")
    log_a, b = float(res.x[0]), float(res.x[1])
    return LogisticCalibration(slope=math.exp(log_a), center=b, n_models=int(x.size), n_trojaned=int(y.sum()))


def load_calibration(path: str | Path | None = None) -> dict[str, LogisticCalibration]:
    """The per-detector curves in ``path`` (default: the shipped :data:`CALIBRATION_FILE`); {} if none ships."""
    p = Path(path) if path is not None else CALIBRATION_FILE
    if not p.exists():
        if path is not None:
            raise InvalidInputError(f"calibration file not found: {p}")
        return {}
    try:
        raw = json.loads(p.read_text())
        return {name: LogisticCalibration(**{k: v for k, v in c.items() if k in ("slope", "center", "n_models",
                                                                                    "n_trojaned")})
                for name, c in raw["detectors"].items()}
    except (ValueError, KeyError, TypeError) as e:
        raise DataFormatError(f"{p}: not a trojanscan calibration file ({e})") from e


def save_calibration(path: str | Path, curves: Mapping[str, LogisticCalibration], provenance: dict[str, Any]) -> None:
    """Write ``curves`` with their provenance (models, command) atomically."""
    from trojanscan._fileio import write_text_atomic

    doc = {"schema": "trojanscan.calibration/1", "provenance": provenance,
           "detectors": {k: asdict(v) for k, v in sorted(curves.items())}}
    write_text_atomic(Path(path), json.dumps(doc, indent=1) + "\n")


def pooled_probability(probabilities: Sequence[float]) -> float:
    """The combined probability: the mean of the log-odds (see the module docstring)."""
    ps = [min(max(float(p), P_MIN), 1.0 - P_MIN) for p in probabilities]
    if not ps:
        raise InvalidInputError("no probabilities to pool")
    z = sum(math.log(p / (1.0 - p)) for p in ps) / len(ps)
    return float(1.0 / (1.0 + math.exp(-z)))
