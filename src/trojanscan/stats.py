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
  *one* clean label at alpha(c); a model has K labels, so a clean model is flagged with probability
  about 1 - (1 - alpha)^K (0.37 for K = 10 at c = 2). :func:`familywise_cutoff` applies the Sidak
  correction, alpha_K = 1 - (1 - alpha)^(1/K), so that alpha(c) becomes the error per *model*:
  c = 2 gives 2.83 for K = 10 and 3.27 for K = 43 (docs/methods/statistics.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from trojanscan.errors import InvalidInputError

CONSISTENCY = 1.4826
DEFAULT_CUTOFF = 2.0


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


def _ratio(num: np.ndarray, spread: float, scale: float) -> np.ndarray:
    if spread > 1e-12 * max(scale, 1e-300):
        return num / spread
    out = np.zeros_like(num)
    out[num > 0] = math.inf
    out[num < 0] = -math.inf
    return out


def anomaly_indices(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Neural Cleanse anomaly index per value, signed for the left tail: ``(median - x) / MAD``."""
    a = _as_array(values)
    m = float(np.median(a))
    return _ratio(m - a, mad(a, m), float(np.max(np.abs(a))))


def deviation_factors(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """DeepInspect deviation factor (double MAD, left subgroup): ``(m - x) / mad_left``."""
    a = _as_array(values)
    m = float(np.median(a))
    left = a[a <= m]
    mad_left = CONSISTENCY * float(np.median(np.abs(left - m)))
    return _ratio(m - a, mad_left, float(np.max(np.abs(a))))


def cutoff_from_alpha(alpha: float) -> float:
    """Cutoff ``c`` for significance level ``alpha`` (two-sided normal tail, DeepInspect Eq. 7)."""
    if not isinstance(alpha, int | float) or not (0.0 < float(alpha) < 1.0):
        raise InvalidInputError(f"alpha must be a significance level in (0, 1); got {alpha!r}. Try 0.05.")
    return float(norm.isf(float(alpha) / 2.0))


def alpha_from_cutoff(cutoff: float) -> float:
    """Inverse of :func:`cutoff_from_alpha`: ``alpha = 2 * Q(c)``."""
    check_cutoff(cutoff)
    return float(2.0 * norm.sf(float(cutoff)))


def familywise_cutoff(cutoff: float, num_classes: int) -> float:
    """Sidak-corrected cutoff: the per-label cutoff whose error over ``num_classes`` labels is ``alpha(cutoff)``."""
    check_cutoff(cutoff)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise InvalidInputError(f"num_classes must be an int >= 1; got {num_classes!r}")
    if num_classes == 1:
        return float(cutoff)
    alpha = alpha_from_cutoff(cutoff)
    per_label = -math.expm1(math.log1p(-alpha) / num_classes)  # 1 - (1 - alpha)^(1/K), accurate for small alpha
    return float(norm.isf(per_label / 2.0))


def resolve_cutoff(cutoff: float = DEFAULT_CUTOFF, alpha: float | None = None, familywise: bool = False,
                   num_classes: int | None = None) -> float:
    """The per-label cutoff a decision uses: ``alpha`` (if given) or ``cutoff``, Sidak-corrected for
    ``num_classes`` when ``familywise``."""
    c = cutoff_from_alpha(alpha) if alpha is not None else check_cutoff(cutoff)
    if not isinstance(familywise, bool):
        raise InvalidInputError(f"familywise must be True or False; got {familywise!r}")
    return familywise_cutoff(c, num_classes) if familywise and num_classes is not None else c


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


def decide(values: Sequence[float] | np.ndarray, *, cutoff: float = DEFAULT_CUTOFF, test: str = "mad") -> Decision:
    """Flag every label whose left-tail index exceeds ``cutoff``.

    ``test="mad"``: Neural Cleanse / NeuronInspect anomaly index; ``test="dmad"``: DeepInspect deviation factor.
    """
    check_cutoff(cutoff)
    if test == "mad":
        idx = anomaly_indices(values)
    elif test == "dmad":
        idx = deviation_factors(values)
    else:
        raise InvalidInputError(f"test must be 'mad' or 'dmad'; got {test!r}")
    return Decision(idx, flagged(idx, values, cutoff), float(np.max(idx)), float(cutoff))


def flagged(indices: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray, cutoff: float) -> list[int]:
    """Labels whose index exceeds ``cutoff``, most anomalous first; equal indices (e.g. several +inf when
    the MAD is 0) by the smaller statistic."""
    idx = np.asarray(indices, dtype=np.float64).reshape(-1)
    order = np.lexsort((np.asarray(values, dtype=np.float64).reshape(-1), -idx))
    return [int(i) for i in order if idx[i] > cutoff]
