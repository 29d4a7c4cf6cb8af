"""Zoo-level metrics (the NIST TrojAI way of judging a scanner): ROC-AUC, cross-entropy, Brier score.

All take ``y`` (1 = trojaned, 0 = clean) and ``p`` (a score; a probability for the last two) as sequences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

from trojanscan.errors import InvalidInputError

#: Probabilities are clipped to [EPS, 1 - EPS] in the cross-entropy (TrojAI clips the same way).
EPS = 1e-6


def _arrays(y: Sequence[int] | np.ndarray, p: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ya = np.asarray(y, dtype=np.int64).reshape(-1)
    pa = np.asarray(p, dtype=np.float64).reshape(-1)
    if ya.shape != pa.shape:
        raise InvalidInputError(f"labels and scores differ in length: {ya.size} vs {pa.size}")
    if ya.size and not np.isin(ya, (0, 1)).all():
        raise InvalidInputError("labels must be 0 (clean) or 1 (trojaned)")
    if not np.isfinite(pa).all():
        pa = np.nan_to_num(pa, nan=0.0, posinf=1e300, neginf=-1e300)
    return ya, pa


def roc_auc(y: Sequence[int] | np.ndarray, score: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve = P(score of a random trojaned model > that of a random clean one), ties 1/2.

    Computed exactly with average ranks (the Mann-Whitney U statistic). NaN when one class is absent.
    """
    ya, sa = _arrays(y, score)
    n1 = int(ya.sum())
    n0 = ya.size - n1
    if n1 == 0 or n0 == 0:
        return math.nan
    ranks = rankdata(sa, method="average")
    u = ranks[ya == 1].sum() - n1 * (n1 + 1) / 2.0
    return float(u / (n1 * n0))


def cross_entropy(y: Sequence[int] | np.ndarray, p: Sequence[float] | np.ndarray) -> float:
    """Mean binary cross-entropy (nats) of probabilities ``p``, clipped to [EPS, 1 - EPS]. NaN when empty."""
    ya, pa = _arrays(y, p)
    if ya.size == 0:
        return math.nan
    pc = np.clip(pa, EPS, 1.0 - EPS)
    return float(-(ya * np.log(pc) + (1 - ya) * np.log(1.0 - pc)).mean())


def brier(y: Sequence[int] | np.ndarray, p: Sequence[float] | np.ndarray) -> float:
    """Mean squared error of probabilities ``p`` against the 0/1 truth. NaN when empty."""
    ya, pa = _arrays(y, p)
    if ya.size == 0:
        return math.nan
    return float(((pa - ya) ** 2).mean())
