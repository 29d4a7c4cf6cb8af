"""Robust outlier statistics shared by every detector (one statistics module).

Conventions (documented in docs/METHODS.md):

- **Median**: NumPy's convention, the mean of the two middle values for an even count
  (``torch.median`` returns the lower one; ports of Neural Cleanse disagree on this).
- **MAD**: ``1.4826 * median(|x - median(x)|)`` (consistency constant for a normal distribution).
- **Anomaly index** (Neural Cleanse, Wang et al. 2019 §IV-C): ``(median - x) / MAD``. Signed, so that
  only labels *below* the median (the left tail: small triggers) can exceed the cutoff.
- **Deviation factor** (DeepInspect §3.3, "double MAD"): the same numerator, but the MAD is computed
  on the left subgroup only: ``mad_left = 1.4826 * median(|x_i - m|, x_i <= m)``.
- **Degenerate spread**: when the MAD is 0 (ties, constant input), a label equal to the median has
  index 0 and a label below it has index +inf (an unambiguous outlier); never NaN.
- **Cutoff vs significance level** (DeepInspect Eq. 7): ``c = Phi^-1(1 - alpha/2)``. The equation as
  printed (alpha = 1 - Q(c)) cannot be meant literally (it gives alpha = 0.977 at c = 2); the two-sided
  normal tail reproduces the paper's stated pairing alpha = 0.05 <-> c = 2 (1.96).
- **Family-wise cutoff** (optional, not in the papers): the per-label cutoff c holds the error of
  *one* clean label at alpha(c) = 2 Q(c); a model has K labels, and the median and MAD are estimated from
  those same K labels, so a clean model whose statistics are K independent normal draws is flagged far more
  often: 0.33 for K = 10 and 0.65 for K = 43 at c = 2, under either test (:func:`null_false_alarm_rate`).
  :func:`familywise_cutoff` is the exact cutoff for a per-*model* error alpha(c) under that normal null: the
  1 - alpha quantile of the largest index of K standard normal draws, by a seeded Monte Carlo of the test
  itself (``mad`` or ``dmad``). c = 2 gives 3.96 (MAD) / 4.80 (DMAD) for K = 10 and 3.53 / 3.95 for K = 43
  (docs/methods/statistics.md). The Sidak correction (2.83, 3.27), which treats median and MAD as known,
  leaves the per-model rate at 0.12–0.16 for these K.
- **Log scale** (optional, not in the papers; ``scale="log"``): the test runs on ``log(x)`` instead of ``x``, for
  statistics that are norms (Neural Cleanse's mask L1, DeepInspect's trigger L1). The papers' MAD is a spread in
  the statistic's own units, so on a model whose clean labels' masks range from 30 to 80 a trigger 16 times
  smaller than the median label is still within two MADs; on the log scale the index measures how many spreads
  of the clean labels' *ratios* a label sits below the median, which is what "abnormally small" means for a norm.
  The normal null (false-alarm rates, family-wise cutoffs) is then assumed for ``log(x)``. Values at or below 0
  are floored at ``LOG_FLOOR`` times the largest value before the logarithm (:func:`on_scale`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.stats import norm

from trojanscan.errors import InvalidInputError

CONSISTENCY = 1.4826
DEFAULT_CUTOFF = 2.0
#: The scales an outlier test can run on: the papers' ("raw") and the logarithm of the statistic ("log").
SCALES = ("raw", "log")
#: ``scale="log"``: values at or below this fraction of the largest value are floored there (no log of 0).
LOG_FLOOR = 1e-12


def _as_array(values: Sequence[float] | np.ndarray, name: str = "values") -> np.ndarray:
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise InvalidInputError(f"{name} must not be empty")
    if not np.all(np.isfinite(a)):
        raise InvalidInputError(f"{name} must be finite; got {a.tolist()}")
    return a


def median(values: Sequence[float] | np.ndarray) -> float:
    """Median with NumPy's convention (midpoint of the two middle values for an even count)."""
    return float(np.median(_as_array(values)))


def mad(values: Sequence[float] | np.ndarray, center: float | None = None) -> float:
    """Median absolute deviation, scaled by 1.4826 (a consistent estimator of the std)."""
    a = _as_array(values)
    m = float(np.median(a)) if center is None else center
    return CONSISTENCY * float(np.median(np.abs(a - m)))


def anomaly_indices(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Neural Cleanse anomaly index per value, signed for the left tail: ``(median - x) / MAD``."""
    return row_indices(_as_array(values)[None, :], "mad")[0]


def deviation_factors(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """DeepInspect deviation factor (double MAD, left subgroup): ``(m - x) / mad_left``."""
    return row_indices(_as_array(values)[None, :], "dmad")[0]


def cutoff_from_alpha(alpha: float) -> float:
    """Cutoff ``c`` for significance level ``alpha`` (two-sided normal tail, DeepInspect Eq. 7)."""
    if not isinstance(alpha, int | float) or not (0.0 < float(alpha) < 1.0):
        raise InvalidInputError(f"alpha must be a significance level in (0, 1); got {alpha!r}. Try 0.05.")
    return float(norm.isf(float(alpha) / 2.0))


def alpha_from_cutoff(cutoff: float) -> float:
    """Inverse of :func:`cutoff_from_alpha`: ``alpha = 2 * Q(c)``."""
    check_cutoff(cutoff)
    return float(2.0 * norm.sf(float(cutoff)))


#: Monte Carlo draws (clean models of K standard normal statistics) behind :func:`familywise_cutoff`.
NULL_DRAWS = 40_000
#: Seed of those draws: the family-wise cutoff is one fixed number per (cutoff, K, test) on every machine.
NULL_SEED = 20_190_810
TESTS = ("mad", "dmad")
#: DeepInspect's source-target pair mode: its indices are per-model normal scores (:func:`per_model_scores`).
PAIRS_TEST = "dmad_pairs"
#: Tests whose indices are already per-model normal scores. Their family-wise cutoff is the cutoff itself and
#: their false-alarm rate per model is alpha(c).
PER_MODEL_TESTS = (PAIRS_TEST,)


def _check_test(test: str, per_model: bool = False) -> str:
    if test not in TESTS and not (per_model and test in PER_MODEL_TESTS):
        allowed = TESTS + (PER_MODEL_TESTS if per_model else ())
        raise InvalidInputError(f"test must be one of {', '.join(map(repr, allowed))}; got {test!r}")
    return test


def _check_classes(num_classes: object) -> int:
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise InvalidInputError(f"num_classes must be an int >= 1; got {num_classes!r}")
    return num_classes


def row_indices(x: np.ndarray, test: str = "mad") -> np.ndarray:
    """:func:`anomaly_indices` (``mad``) or :func:`deviation_factors` (``dmad``) of every row of ``x`` (N, K), at once.

    Rows with no spread get +-inf below/above the median as in the scalar functions; no NaN for finite rows.
    """
    _check_test(test)
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] == 0:
        raise InvalidInputError(f"x must be a non-empty (N, K) array; got shape {a.shape}")
    m = np.median(a, axis=1, keepdims=True)
    dev = np.abs(a - m)
    if test == "mad":
        spread = CONSISTENCY * np.median(dev, axis=1, keepdims=True)
    else:
        spread = CONSISTENCY * np.nanmedian(np.where(a <= m, dev, np.nan), axis=1, keepdims=True)
    num = m - a
    scale = np.maximum(np.max(np.abs(a), axis=1, keepdims=True), 1e-300)
    ok = spread > 1e-12 * scale
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(ok, num / np.where(ok, spread, 1.0), np.sign(num) * math.inf)
    return np.where(num == 0, 0.0, out)


@lru_cache(maxsize=128)
def _null_maxima(num_classes: int, test: str) -> np.ndarray:
    """Sorted largest index of :data:`NULL_DRAWS` clean models whose K statistics are iid N(0, 1) (read-only)."""
    rng = np.random.default_rng([NULL_SEED, num_classes, TESTS.index(test)])
    rows = max(1, 2**22 // num_classes)  # bounded memory for many labels
    out = []
    for start in range(0, NULL_DRAWS, rows):
        x = rng.standard_normal((min(rows, NULL_DRAWS - start), num_classes))
        out.append(np.max(row_indices(x, test), axis=1))
    maxima = np.sort(np.concatenate(out))
    maxima.setflags(write=False)
    return maxima


def null_false_alarm_rate(cutoff: float, num_classes: int, test: str = "mad") -> float:
    """Probability that a clean model is flagged at per-label ``cutoff``: some label's index above it, when the
    K per-label statistics are iid normal (the model both papers' cutoff rests on, DeepInspect Eq. 7).
    Monte Carlo over :data:`NULL_DRAWS` seeded draws."""
    check_cutoff(cutoff)
    k = _check_classes(num_classes)
    if _check_test(test, per_model=True) in PER_MODEL_TESTS:
        return alpha_from_cutoff(cutoff)
    maxima = _null_maxima(k, test)
    return float(1.0 - np.searchsorted(maxima, float(cutoff), side="right") / maxima.size)


def per_model_scores(indices: Sequence[float] | np.ndarray, num_values: int, test: str = "dmad") -> np.ndarray:
    """Each index as a per-model normal score: ``z = Phi^-1(1 - p/2)`` with ``p`` the probability that the largest
    ``test`` index of ``num_values`` iid normal statistics exceeds it (:func:`null_false_alarm_rate`).

    So a cutoff c on the scores keeps its meaning alpha(c) = 2 Q(c), now per *model*, whatever the number of values
    tested. ``p`` is floored at 1 / (NULL_DRAWS + 1): scores stop at about 4.2 (NaN maps to 0, +inf to the cap).
    """
    k = _check_classes(num_values)
    maxima = _null_maxima(k, _check_test(test))
    v = np.nan_to_num(np.asarray(indices, dtype=np.float64), nan=-math.inf)
    p = 1.0 - np.searchsorted(maxima, v, side="right") / maxima.size
    p = np.clip(p, 1.0 / (maxima.size + 1), 1.0)
    return np.asarray(norm.isf(p / 2.0), dtype=np.float64)


def familywise_cutoff(cutoff: float, num_classes: int, test: str = "mad") -> float:
    """The cutoff whose false-alarm rate per *model* of ``num_classes`` labels is ``alpha(cutoff)`` = 2 Q(c).

    Exact under the normal null of :func:`null_false_alarm_rate`: the 1 - alpha quantile of the largest
    ``test`` index of K iid normal statistics (median and spread estimated from the same K values, as in a
    scan). Never below ``cutoff`` itself: with K <= 2 no label can reach c, and the cutoff stays c.
    """
    check_cutoff(cutoff)
    k = _check_classes(num_classes)
    if k == 1 or _check_test(test, per_model=True) in PER_MODEL_TESTS:
        return float(cutoff)
    alpha = alpha_from_cutoff(cutoff)
    q = float(np.quantile(_null_maxima(k, test), 1.0 - alpha))
    return max(float(cutoff), q)


def sidak_cutoff(cutoff: float, num_classes: int) -> float:
    """The Sidak-corrected cutoff (per-label level 1 - (1 - alpha)^(1/K)); it treats median and MAD as known,
    so its per-model rate is above alpha for small K (kept for comparison, docs/methods/statistics.md)."""
    check_cutoff(cutoff)
    k = _check_classes(num_classes)
    if k == 1:
        return float(cutoff)
    alpha = alpha_from_cutoff(cutoff)
    per_label = -math.expm1(math.log1p(-alpha) / k)  # 1 - (1 - alpha)^(1/K), accurate for small alpha
    return float(norm.isf(per_label / 2.0))


def resolve_cutoff(cutoff: float = DEFAULT_CUTOFF, alpha: float | None = None, familywise: bool = False,
                   num_classes: int | None = None, test: str = "mad") -> float:
    """The per-label cutoff a decision uses: ``alpha`` (if given) or ``cutoff``; with ``familywise``, the
    :func:`familywise_cutoff` of ``test`` for ``num_classes`` labels."""
    c = cutoff_from_alpha(alpha) if alpha is not None else check_cutoff(cutoff)
    if not isinstance(familywise, bool):
        raise InvalidInputError(f"familywise must be True or False; got {familywise!r}")
    _check_test(test, per_model=True)
    return familywise_cutoff(c, num_classes, test) if familywise and num_classes is not None else c


def check_cutoff(cutoff: float) -> float:
    if not isinstance(cutoff, int | float) or not math.isfinite(cutoff) or cutoff <= 0:
        raise InvalidInputError(f"cutoff must be a positive finite number; got {cutoff!r}. The default is 2.")
    return float(cutoff)


@dataclass(frozen=True)
class Decision:
    """Outcome of an outlier test over per-class statistics."""

    indices: np.ndarray  # per class, signed left-tail index
    suspects: list[int]  # flagged labels, most anomalous first
    anomaly_index: float  # the largest index
    cutoff: float

    @property
    def verdict(self) -> str:
        return "trojaned" if self.suspects else "benign"


def check_scale(scale: object, who: str = "the outlier test") -> str:
    """``scale`` if it is one of :data:`SCALES`, else a clear error naming ``who`` takes it."""
    if not isinstance(scale, str) or scale not in SCALES:
        raise InvalidInputError(f"scale of {who} must be one of {', '.join(map(repr, SCALES))}; got {scale!r}. "
                                "'raw' is the papers' test; 'log' tests log(statistic) (docs/methods/statistics.md).")
    return scale


def on_scale(values: Sequence[float] | np.ndarray, scale: str = "raw") -> np.ndarray:
    """The values an outlier test runs on: ``values`` (``"raw"``) or ``log(max(values, LOG_FLOOR * max(values)))``
    (``"log"``; for non-negative statistics such as norms: a negative value is an error)."""
    a = _as_array(values)
    if check_scale(scale) == "raw":
        return a
    if np.any(a < 0):
        raise InvalidInputError(f"scale 'log' needs non-negative statistics (norms); got {a.tolist()}")
    top = float(np.max(a))
    if top <= 0:
        return np.zeros_like(a)  # all zero: no spread on either scale
    return np.log(np.maximum(a, LOG_FLOOR * top))


def decide(values: Sequence[float] | np.ndarray, *, cutoff: float = DEFAULT_CUTOFF, test: str = "mad",
           scale: str = "raw") -> Decision:
    """Flag every label whose left-tail index exceeds ``cutoff``.

    ``test="mad"``: Neural Cleanse / NeuronInspect anomaly index; ``test="dmad"``: DeepInspect deviation factor.
    ``scale="log"`` runs the test on the logarithm of ``values`` (:func:`on_scale`; not in the papers).
    Suspects are ordered by index, ties by the smaller statistic (the log is monotone: the same order).
    """
    check_cutoff(cutoff)
    v = on_scale(values, scale)
    idx = anomaly_indices(v) if _check_test(test) == "mad" else deviation_factors(v)
    return Decision(idx, flagged(idx, values, cutoff), float(np.max(idx)), float(cutoff))


def flagged(indices: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray, cutoff: float) -> list[int]:
    """Labels whose index exceeds ``cutoff``, most anomalous first; equal indices (e.g. several +inf when
    the MAD is 0) by the smaller statistic."""
    idx = np.asarray(indices, dtype=np.float64).reshape(-1)
    order = np.lexsort((np.asarray(values, dtype=np.float64).reshape(-1), -idx))
    return [int(i) for i in order if idx[i] > cutoff]
