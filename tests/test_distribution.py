import math

import numpy as np
import pytest
from scipy import stats

from colobench.analysis.distribution import Distribution, t_interval, welch


def test_hand_computed_values():
    d = Distribution.of([1.0, 2.0, 3.0, 4.0])
    assert d.count == 4
    assert d.mean == 2.5
    assert math.isclose(d.std, math.sqrt(5 / 3))  # sample std: sum of squares 5, n-1 = 3
    assert math.isclose(d.cv, math.sqrt(5 / 3) / 2.5)
    assert d.min == 1.0 and d.max == 4.0
    assert d.p50 == 2.5
    assert math.isclose(d.p90, 3.7)  # linear: 1 + 0.9 * 3 = 3.7
    assert math.isclose(d.p99, 3.97)
    assert d.ci95_low is None and d.ci95_high is None  # per-request values give no interval


def test_empty_and_single():
    empty = Distribution.of([])
    assert empty.count == 0 and empty.mean is None and empty.p99 is None
    one = Distribution.of([7.0])
    assert one.std == 0.0 and one.p99 == 7.0


def test_repetition_interval_is_student_t_by_hand():
    values = [10.0, 12.0, 11.0, 13.0, 9.0]  # mean 11, sample std sqrt(2.5)
    d = Distribution.of_repetitions(values)
    half = 2.7764451051977934 * math.sqrt(2.5) / math.sqrt(5)  # t(0.975, 4) = 2.776
    assert d.mean == 11.0 and math.isclose(d.ci95_low, 11 - half) and math.isclose(d.ci95_high, 11 + half)
    assert Distribution.of_repetitions([10.0, 12.0]).ci95_low is None  # below 3 repetitions: no interval
    assert t_interval(1.0, 1.0, 2) is None


def test_repetition_interval_covers_the_truth_in_95_percent():
    """5 repetitions of a noisy mean, 2000 seeded trials: the interval holds the true mean about 95%
    of the time (a per-request interval over the same data would cover far less)."""
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(2000):
        d = Distribution.of_repetitions(rng.normal(100.0, 8.0, size=5))
        hits += d.ci95_low <= 100.0 <= d.ci95_high
    assert 0.93 <= hits / 2000 <= 0.97


def test_scaled_keeps_cv_and_count():
    d = Distribution.of([1e6, 3e6]).scaled(1e-6)
    assert d.mean == 2.0 and d.min == 1.0 and d.max == 3.0 and d.count == 2
    assert math.isclose(d.cv, Distribution.of([1.0, 3.0]).cv)


def test_welch_matches_scipy():
    a, b = [10.0, 11.0, 9.5, 10.5, 10.2], [12.0, 12.5, 11.0, 13.0, 12.2]
    cmp = welch(Distribution.of_repetitions(a), Distribution.of_repetitions(b))
    assert cmp.p_value == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-9)
    assert cmp.ratio == pytest.approx(np.mean(b) / np.mean(a)) and cmp.low < cmp.ratio < cmp.high
    assert welch(Distribution.of_repetitions(a[:2]), Distribution.of_repetitions(b)) is None  # too few


def test_a_ratio_interval_never_goes_below_zero():
    """Three noisy repetitions against three steady ones: the symmetric delta-method interval was
    "0.427x [-0.035, 0.924]"; on the log scale it stays above zero and around the ratio."""
    a, b = [10.0, 10.1, 9.9], [2.0, 8.0, 2.8]
    cmp = welch(Distribution.of_repetitions(a), Distribution.of_repetitions(b))
    assert 0 < cmp.low < cmp.ratio < cmp.high
    assert cmp.high / cmp.ratio == pytest.approx(cmp.ratio / cmp.low)  # symmetric in log


def test_repetition_interval_of_a_rate_never_goes_below_zero():
    d = Distribution.of_repetitions([100.0, 900.0, 150.0])  # three windows far apart
    assert d.ci95_low == 0.0 and d.ci95_high > 900
