"""trojanscan.stats: hand-computed reference values and Hypothesis properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trojanscan import stats
from trojanscan.errors import InvalidInputError

C = 1.4826


# ------------------------------------------------------------------------------------ reference values
def test_median_odd_and_even_numpy_midpoint() -> None:
    assert stats.median([3.0, 1.0, 2.0]) == 2.0
    # even count: NumPy's midpoint (torch.median would say 2.0)
    assert stats.median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert stats.median([1.0, 2.0, 3.0, 4.0, 100.0]) == 3.0
    assert stats.median(np.array([7.0])) == 7.0


def test_mad_uses_consistency_constant() -> None:
    assert stats.CONSISTENCY == 1.4826
    # m = 3, |x - m| = [2, 1, 0, 1, 97] -> median 1
    assert stats.mad([1.0, 2.0, 3.0, 4.0, 100.0]) == pytest.approx(C * 1.0)
    # m = 3 (midpoint), |x - m| = [2, 1, 1, 7] -> median 1.5
    assert stats.mad([1.0, 2.0, 4.0, 10.0]) == pytest.approx(C * 1.5)
    assert stats.mad([5.0, 5.0, 5.0]) == 0.0
    # explicit centre
    assert stats.mad([1.0, 2.0, 3.0], center=0.0) == pytest.approx(C * 2.0)


def test_anomaly_indices_reference() -> None:
    got = stats.anomaly_indices([1.0, 2.0, 3.0, 4.0, 100.0])
    np.testing.assert_allclose(got, [2 / C, 1 / C, 0.0, -1 / C, -97 / C], rtol=1e-12)


def test_anomaly_indices_ten_classes_even_count() -> None:
    # Ten classes: median = (23 + 24) / 2 = 23.5; |x - m| sorted = .5 .5 1.5 1.5 2.5 2.5 3.5 3.5 4.5 13.5 -> 2.5.
    # (torch's lower median 23 would give MAD = 1.4826 * 2 and an index of 13 / 2.9652 = 4.38 for label 0.)
    values = [10.0, 20, 21, 22, 23, 24, 25, 26, 27, 28]
    got = stats.anomaly_indices(values)
    mad = C * 2.5
    assert got[0] == pytest.approx(13.5 / mad)
    assert got[0] == pytest.approx(3.64225, abs=1e-5)
    np.testing.assert_allclose(got, [(23.5 - v) / mad for v in values], rtol=1e-12)


def test_deviation_factors_use_left_subgroup_only() -> None:
    values = [1.0, 8, 9, 10, 11, 20, 30, 40]
    # median = 10.5; MAD over all: |x - m| sorted .5 .5 1.5 2.5 9.5 9.5 19.5 29.5 -> 6
    ai = stats.anomaly_indices(values)
    assert ai[0] == pytest.approx(9.5 / (C * 6.0))  # 1.068: below the cutoff
    # left subgroup x <= 10.5: [1, 8, 9, 10] -> |x - m| = [9.5, 2.5, 1.5, 0.5] -> median 2
    df = stats.deviation_factors(values)
    mad_left = C * 2.0
    np.testing.assert_allclose(df, [(10.5 - v) / mad_left for v in values], rtol=1e-12)
    assert df[0] == pytest.approx(3.20383, abs=1e-5)  # above the cutoff: double MAD catches it
    assert stats.decide(values, test="mad").suspects == []
    assert stats.decide(values, test="dmad").suspects == [0]


def test_sidak_cutoff_reference() -> None:
    # Sidak: per-label alpha = 1 - (1 - alpha(2))^(1/K); alpha(2) = 0.0455003
    assert stats.sidak_cutoff(2.0, 1) == 2.0
    assert stats.sidak_cutoff(2.0, 10) == pytest.approx(2.83061, abs=1e-5)  # per label 0.0046460
    assert stats.sidak_cutoff(2.0, 43) == pytest.approx(3.26819, abs=1e-5)  # per label 0.0010824
    per = 1 - (1 - stats.alpha_from_cutoff(3.0)) ** (1 / 7)
    assert stats.sidak_cutoff(3.0, 7) == pytest.approx(stats.cutoff_from_alpha(per), rel=1e-9)
    with pytest.raises(InvalidInputError, match="num_classes"):
        stats.sidak_cutoff(2.0, 0)


def test_familywise_cutoff_reference() -> None:
    # the Monte Carlo is seeded: one fixed number per (cutoff, K, test)
    assert stats.familywise_cutoff(2.0, 1) == 2.0
    assert stats.familywise_cutoff(2.0, 2, "dmad") == 2.0  # K = 2: indices are +-0.67 whatever the model
    assert stats.familywise_cutoff(2.0, 10, "mad") == pytest.approx(4.013, abs=5e-4)
    assert stats.familywise_cutoff(2.0, 10, "dmad") == pytest.approx(4.791, abs=5e-4)
    assert stats.familywise_cutoff(2.0, 43, "mad") == pytest.approx(3.517, abs=5e-4)
    assert stats.familywise_cutoff(2.0, 43, "dmad") == pytest.approx(3.968, abs=5e-4)
    # at c = 2 a clean 10-label model is flagged a third of the time; the Sidak cutoff still 14-16 %
    assert stats.null_false_alarm_rate(2.0, 10, "mad") == pytest.approx(0.338, abs=5e-3)
    assert stats.null_false_alarm_rate(stats.sidak_cutoff(2.0, 10), 10, "dmad") == pytest.approx(0.160, abs=5e-3)
    for bad, msg in (((2.0, 0), "num_classes"), ((2.0, 10, "t"), "test"), ((0.0, 10), "cutoff")):
        with pytest.raises(InvalidInputError, match=msg):
            stats.familywise_cutoff(*bad)  # type: ignore[arg-type]


def test_familywise_cutoff_holds_its_rate_on_fresh_draws() -> None:
    """Independent of the calibration draws: clean models of K normal statistics cross it at rate alpha(c)."""
    rng = np.random.default_rng(7)
    for k, test in ((10, "dmad"), (10, "mad"), (43, "dmad"), (6, "mad")):
        c = stats.familywise_cutoff(2.0, k, test)
        x = rng.standard_normal((20_000, k))
        rate = float(np.mean(np.max(stats.row_indices(x, test), axis=1) > c))
        assert rate == pytest.approx(stats.alpha_from_cutoff(2.0), abs=0.006), (k, test)
        assert stats.null_false_alarm_rate(c, k, test) <= stats.alpha_from_cutoff(2.0) + 1e-3


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=12), st.sampled_from(["mad", "dmad"]))
def test_row_indices_equal_the_scalar_tests(values: list[float], test: str) -> None:
    row = stats.row_indices(np.asarray([values, values[::-1]]), test)
    ref = stats.anomaly_indices(values) if test == "mad" else stats.deviation_factors(values)
    np.testing.assert_allclose(row[0], ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(row[1], ref[::-1], rtol=1e-9, atol=1e-9)


@settings(deadline=None, max_examples=25)
@given(st.floats(0.5, 5.0), st.integers(1, 60), st.sampled_from(["mad", "dmad"]))
def test_familywise_cutoff_is_never_below_the_cutoff_and_is_monotone_in_c(c: float, k: int, test: str) -> None:
    fk = stats.familywise_cutoff(c, k, test)
    assert fk >= c
    assert stats.familywise_cutoff(c + 0.5, k, test) >= fk


def test_cutoff_alpha_reference_and_round_trip() -> None:
    assert stats.cutoff_from_alpha(0.05) == pytest.approx(1.959964, abs=1e-6)
    assert stats.cutoff_from_alpha(0.01) == pytest.approx(2.575829, abs=1e-6)
    assert stats.alpha_from_cutoff(2.0) == pytest.approx(0.0455003, abs=1e-7)
    assert stats.alpha_from_cutoff(stats.cutoff_from_alpha(0.05)) == pytest.approx(0.05, rel=1e-12)
    assert stats.cutoff_from_alpha(stats.alpha_from_cutoff(2.0)) == pytest.approx(2.0, rel=1e-12)


def test_decide_reference() -> None:
    d = stats.decide([10.0, 20, 21, 22, 23, 24, 25, 26, 27, 28])
    assert d.suspects == [0]
    assert d.verdict == "trojaned"
    assert d.cutoff == 2.0
    assert d.anomaly_index == pytest.approx(13.5 / (C * 2.5))
    assert d.indices.shape == (10,)


def test_decide_orders_suspects_most_anomalous_first() -> None:
    # median 22.5, MAD = 1.4826 * 2.5; label 3 (value 1) -> 5.80, label 1 (value 5) -> 4.72
    d = stats.decide([20.0, 5, 21, 1, 22, 23, 24, 25, 26, 27])
    assert d.suspects == [3, 1]
    assert d.indices[3] == pytest.approx(21.5 / (C * 2.5))
    assert d.indices[1] == pytest.approx(17.5 / (C * 2.5))
    assert d.anomaly_index == d.indices[3]


def test_decide_ties_at_infinity_order_by_statistic() -> None:
    # MAD = 0: both labels below the median are +inf; the smaller statistic is the more anomalous
    d = stats.decide([10.0, 10, 10, 9, 10, 0, 10, 10])
    assert d.indices[3] == math.inf and d.indices[5] == math.inf
    assert d.suspects == [5, 3]
    assert d.anomaly_index == math.inf


def test_decide_never_flags_the_right_tail() -> None:
    values = [20.0, 21, 22, 23, 24, 25, 26, 27, 28, 1e9]
    for test in ("mad", "dmad"):
        d = stats.decide(values, test=test)
        assert d.suspects == []
        assert d.verdict == "benign"
        assert d.indices[9] < -1e6  # hugely anomalous, but on the wrong side
        assert d.anomaly_index < d.cutoff


def test_decide_respects_cutoff() -> None:
    values = [10.0, 20, 21, 22, 23, 24, 25, 26, 27, 28]  # label 0 has index 3.64
    assert stats.decide(values, cutoff=3.5).suspects == [0]
    assert stats.decide(values, cutoff=3.7).suspects == []


def test_constant_input_gives_zero_indices_and_no_suspects() -> None:
    for test in ("mad", "dmad"):
        d = stats.decide([3.0] * 7, test=test)
        np.testing.assert_array_equal(d.indices, np.zeros(7))
        assert d.suspects == [] and d.verdict == "benign" and d.anomaly_index == 0.0


def test_zero_spread_ties_give_signed_infinity() -> None:
    got = stats.anomaly_indices([1.0, 1, 1, 1, 2])
    np.testing.assert_array_equal(got, [0.0, 0.0, 0.0, 0.0, -math.inf])


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "fn", [stats.median, stats.mad, stats.anomaly_indices, stats.deviation_factors, stats.decide]
)
@pytest.mark.parametrize("values", [[], [1.0, math.nan, 2.0], [1.0, math.inf], np.array([[math.nan]])])
def test_bad_values_raise(fn: object, values: object) -> None:
    with pytest.raises(InvalidInputError):
        fn(values)  # type: ignore[operator]


@pytest.mark.parametrize("alpha", [0, 0.0, 1, 1.0, 2, -0.1, math.nan, math.inf, "0.05", None])
def test_bad_alpha_raises(alpha: object) -> None:
    with pytest.raises(InvalidInputError, match="alpha"):
        stats.cutoff_from_alpha(alpha)  # type: ignore[arg-type]


@pytest.mark.parametrize("cutoff", [0, 0.0, -1.0, math.inf, math.nan, "2"])
def test_bad_cutoff_raises(cutoff: object) -> None:
    with pytest.raises(InvalidInputError, match="cutoff"):
        stats.alpha_from_cutoff(cutoff)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="cutoff"):
        stats.decide([1.0, 2.0, 3.0], cutoff=cutoff)  # type: ignore[arg-type]


def test_unknown_test_raises() -> None:
    with pytest.raises(InvalidInputError, match="test"):
        stats.decide([1.0, 2.0, 3.0], test="zscore")


# ------------------------------------------------------------------------------------------ properties
# Integer-valued floats keep every median, difference and shift exact, so the properties hold bit for bit.
int_values = st.lists(st.integers(-1000, 1000).map(float), min_size=1, max_size=30)
index_fns = [stats.anomaly_indices, stats.deviation_factors]


@settings(max_examples=150, deadline=None)
@given(values=int_values, shift=st.integers(-10**6, 10**6))
def test_shift_invariance(values: list[float], shift: int) -> None:
    a = np.array(values)
    for fn in index_fns:
        np.testing.assert_allclose(fn(a + shift), fn(a), rtol=1e-9, atol=1e-9)


@settings(max_examples=150, deadline=None)
@given(values=int_values, scale=st.floats(1e-3, 1e3))
def test_positive_scale_invariance(values: list[float], scale: float) -> None:
    a = np.array(values)
    for fn in index_fns:
        np.testing.assert_allclose(fn(a * scale), fn(a), rtol=1e-9, atol=1e-9)


@settings(max_examples=150, deadline=None)
@given(
    cluster=st.lists(st.floats(0.0, 1.0), min_size=5, max_size=40),
    centre=st.floats(-100.0, 100.0),
    gap=st.floats(10.0, 1000.0),
    position=st.integers(0, 40),
)
def test_single_planted_low_outlier_is_flagged_first(
    cluster: list[float], centre: float, gap: float, position: int
) -> None:
    values = [centre + v for v in cluster]
    outlier = centre - gap
    pos = position % (len(values) + 1)
    values.insert(pos, outlier)
    for test in ("mad", "dmad"):
        d = stats.decide(values, test=test)
        assert d.suspects[0] == pos, (test, d.indices)
        assert d.verdict == "trojaned"


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.sampled_from([0.0, 1.0, 2.0, 3.0]), min_size=1, max_size=20))
def test_ties_never_give_nan(values: list[float]) -> None:
    for fn in index_fns:
        got = fn(values)
        assert not np.any(np.isnan(got))
    for test in ("mad", "dmad"):
        d = stats.decide(values, test=test)
        assert not math.isnan(d.anomaly_index)
        assert all(d.indices[s] > d.cutoff for s in d.suspects)


@settings(max_examples=100, deadline=None)
@given(value=st.floats(-1e6, 1e6), n=st.integers(1, 30))
def test_constant_input_never_flags(value: float, n: int) -> None:
    for test in ("mad", "dmad"):
        d = stats.decide([value] * n, test=test)
        assert d.suspects == []
        np.testing.assert_array_equal(d.indices, np.zeros(n))


@settings(max_examples=200, deadline=None)
@given(alpha=st.floats(1e-12, 1 - 1e-9, exclude_min=False))
def test_alpha_cutoff_round_trip(alpha: float) -> None:
    c = stats.cutoff_from_alpha(alpha)
    assert c > 0 and math.isfinite(c)
    assert stats.alpha_from_cutoff(c) == pytest.approx(alpha, rel=1e-6)


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=30), cutoff=st.floats(0.1, 10.0))
def test_suspects_are_exactly_the_labels_above_cutoff(values: list[float], cutoff: float) -> None:
    d = stats.decide(values, cutoff=cutoff)
    assert sorted(d.suspects) == [i for i, v in enumerate(d.indices) if v > cutoff]
    ranked = [d.indices[s] for s in d.suspects]
    assert ranked == sorted(ranked, reverse=True)


def test_per_model_scores_agree_with_the_familywise_cutoff() -> None:
    """A pooled index above the per-model cutoff for n values is a per-model score above c, and the reverse."""
    n = 90
    fw = stats.familywise_cutoff(2.0, n, "dmad")
    z = stats.per_model_scores([fw - 0.05, fw + 0.05, 0.0, -3.0, math.inf, math.nan], n, "dmad")
    assert z[0] < 2.0 < z[1] and z[2] == pytest.approx(0.0, abs=0.05) and z[3] == 0.0 and z[5] == 0.0
    assert 4.0 < z[4] < 4.3 and np.all(np.diff(stats.per_model_scores(np.linspace(0, 8, 50), n)) >= 0)
    # a per-model test: its family-wise cutoff is the cutoff, its false-alarm rate alpha(c)
    assert stats.familywise_cutoff(2.5, 10, "dmad_pairs") == 2.5
    assert stats.null_false_alarm_rate(2.0, 10, "dmad_pairs") == pytest.approx(stats.alpha_from_cutoff(2.0))
    with pytest.raises(InvalidInputError, match="test"):
        stats.per_model_scores([1.0], 10, "dmad_pairs")


# ----------------------------------------------------------------------------- log scale
@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=1000).map(float), min_size=3, max_size=43),
       st.floats(min_value=1e-2, max_value=1e2), st.floats(min_value=0.5, max_value=2.0))
def test_log_scale_indices_ignore_any_power_law_of_the_norms(values: list[float], c: float, a: float) -> None:
    """On the log scale a label's index depends only on the ratios of the norms, up to any power: c * x**a gives the
    same indices (the raw scale is invariant to c but not to a)."""
    for test in stats.TESTS:
        base = stats.decide(values, test=test, scale="log")
        moved = stats.decide([c * v**a for v in values], test=test, scale="log")
        finite = np.isfinite(base.indices)
        assert np.array_equal(finite, np.isfinite(moved.indices))
        assert np.allclose(base.indices[finite], moved.indices[finite], rtol=1e-6, atol=1e-6)


def test_log_scale_finds_a_small_norm_the_raw_scale_misses() -> None:
    """The sweep's MobileNet-like model (docs/RESULTS.md): clean labels' masks spread from 31 to 81, the target's is 3."""
    masks = [3.0, 72.7, 31.9, 31.0, 81.2, 51.1, 44.5, 74.7, 33.9, 51.1]
    raw = stats.decide(masks, test="mad")
    log = stats.decide(masks, test="mad", scale="log")
    assert raw.suspects == [] and raw.anomaly_index == pytest.approx(1.85, abs=0.01)
    assert log.suspects == [0] and log.anomaly_index == pytest.approx(4.53, abs=0.01)
    assert stats.on_scale(masks, "log") == pytest.approx(np.log(masks))


def test_log_scale_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="'raw', 'log'"):
        stats.decide([1.0, 2.0, 3.0], scale="ln")
    with pytest.raises(InvalidInputError, match="non-negative"):
        stats.on_scale([1.0, -2.0, 3.0], "log")
    zeros = stats.on_scale([0.0, 0.0, 0.0], "log")
    assert np.array_equal(zeros, np.zeros(3))
    floored = stats.on_scale([0.0, 1.0, 2.0], "log")  # a zero norm is floored, not -inf: still the clear outlier
    assert np.all(np.isfinite(floored)) and floored[0] == pytest.approx(np.log(stats.LOG_FLOOR * 2.0))
    assert stats.decide([0.0, 1.0, 1.1, 0.9, 1.05], scale="log").suspects == [0]
