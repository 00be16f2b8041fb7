import math

import numpy as np

from colobench.analysis.distribution import Distribution


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
    assert 1.0 <= d.ci95_low < 2.5 < d.ci95_high <= 4.0


def test_empty_and_single():
    empty = Distribution.of([])
    assert empty.count == 0 and empty.mean is None and empty.p99 is None
    one = Distribution.of([7.0])
    assert one.std == 0.0 and one.ci95_low == one.ci95_high == 7.0 and one.p99 == 7.0


def test_bootstrap_is_deterministic_and_covers_the_mean():
    x = np.random.default_rng(1).normal(10.0, 2.0, size=500)
    a, b = Distribution.of(x), Distribution.of(x)
    assert (a.ci95_low, a.ci95_high) == (b.ci95_low, b.ci95_high)
    assert a.ci95_low < 10.0 < a.ci95_high
    # the interval's half-width is about 1.96 * sigma / sqrt(n) = 0.175
    assert 0.1 < (a.ci95_high - a.ci95_low) / 2 < 0.25


def test_scaled_keeps_cv_and_count():
    d = Distribution.of([1e6, 3e6]).scaled(1e-6)
    assert d.mean == 2.0 and d.min == 1.0 and d.max == 3.0 and d.count == 2
    assert math.isclose(d.cv, Distribution.of([1.0, 3.0]).cv)


def test_large_samples_use_the_normal_interval():
    x = np.random.default_rng(2).exponential(1.0, size=50_000)
    d = Distribution.of(x)
    half = 1.959964 * x.std(ddof=1) / math.sqrt(x.size)
    assert math.isclose(d.ci95_low, x.mean() - half, rel_tol=1e-6)
    assert math.isclose(d.ci95_high, x.mean() + half, rel_tol=1e-6)
