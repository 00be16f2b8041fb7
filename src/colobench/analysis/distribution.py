"""One `Distribution` type for every metric, and the intervals that hold between runs.

Percentiles use numpy's linear interpolation (the same as vLLM's benchmark). `std` is the sample
standard deviation (ddof=1); `cv` is std / mean.

The repetition is the unit of an interval. Requests of one run are not independent samples of
the system: consecutive inter-token gaps share a batch, requests share a warm cache, a whole
window shares whatever else the host was doing. An interval built from thousands of per-request
values is razor-thin and says nothing about the next run. So `Distribution.of(values)` (per
request, or per token gap) gives the shape (mean, spread, percentiles) and no interval, and
`Distribution.of_repetitions(values)` (one value per measured window) gives the 95% interval of
the mean with Student's t and R-1 degrees of freedom; below `MIN_REPETITIONS` windows there is no
interval at all, rather than a pretend one.

`welch` compares two such samples (repetition values of two runs, or of a solo and a co-located
phase): the ratio of their means, the 95% interval of that ratio (Welch's t on the difference,
the standard errors carried into the ratio by the delta method), and the two-sided p-value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np
from pydantic import BaseModel, ConfigDict

MIN_REPETITIONS = 3
LEVEL = 0.95


class Distribution(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int
    mean: float | None = None
    std: float | None = None
    cv: float | None = None
    min: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    max: float | None = None
    ci95_low: float | None = None  # only over repetitions (Student t); None below MIN_REPETITIONS
    ci95_high: float | None = None

    @classmethod
    def of(cls, values: Iterable[float]) -> "Distribution":
        """The shape of `values` (no interval); an empty input gives count 0 and every statistic None."""
        x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64)
        if x.size == 0:
            return cls(count=0)
        mean = float(x.mean())
        std = float(x.std(ddof=1)) if x.size > 1 else 0.0
        p50, p90, p99 = (float(v) for v in np.percentile(x, [50, 90, 99]))
        return cls(count=int(x.size), mean=mean, std=std, cv=std / mean if mean else None, min=float(x.min()),
                   p50=p50, p90=p90, p99=p99, max=float(x.max()))

    @classmethod
    def of_repetitions(cls, values: Iterable[float]) -> "Distribution":
        """One value per repetition: the shape, and the 95% Student-t interval of their mean. The
        values are latencies and rates, never negative: a bound below zero (a few repetitions far
        apart) is cut at zero, the least the quantity can be, rather than printed."""
        d = cls.of(values)
        interval = t_interval(d.mean, d.std, d.count)
        if interval is None:
            return d
        low = max(0.0, interval[0]) if d.min is not None and d.min >= 0 else interval[0]
        return d.model_copy(update={"ci95_low": low, "ci95_high": interval[1]})

    def scaled(self, factor: float) -> "Distribution":
        """The same distribution in another unit (ns -> ms is `scaled(1e-6)`); cv and count unchanged."""
        def s(v: float | None) -> float | None:
            return None if v is None else v * factor

        return Distribution(count=self.count, mean=s(self.mean), std=s(self.std), cv=self.cv, min=s(self.min),
                            p50=s(self.p50), p90=s(self.p90), p99=s(self.p99), max=s(self.max),
                            ci95_low=s(self.ci95_low), ci95_high=s(self.ci95_high))


def _stats():
    """scipy.stats, imported on first use: it costs most of a second, and a command that computes
    no interval (a bad flag, `colobench --help`, a worker) should not pay for it."""
    from scipy import stats

    return stats


def t_interval(mean: float | None, std: float | None, n: int, level: float = LEVEL) -> tuple[float, float] | None:
    """mean ± t(level, n-1) std / sqrt(n); None below `MIN_REPETITIONS` values."""
    if mean is None or std is None or n < MIN_REPETITIONS:
        return None
    half = float(_stats().t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return mean - half, mean + half


@dataclass(frozen=True)
class Comparison:
    """b against a: ratio of means, its 95% interval and Welch's two-sided p-value."""

    ratio: float
    low: float
    high: float
    p_value: float
    n_a: int
    n_b: int


def spread_lower_bound(cv: float, n: int, level: float = LEVEL) -> float:
    """The one-sided lower confidence bound of a coefficient of variation measured over `n`
    values (the chi-square bound on a standard deviation): how small the true spread could still
    be. Five repetitions showing 12% are consistent with a true 8%."""
    if n < 2:
        return 0.0
    return cv * math.sqrt((n - 1) / _stats().chi2.ppf(level, n - 1))


def welch(a: Distribution, b: Distribution, level: float = LEVEL) -> Comparison | None:
    """Compare two repetition-level samples by their summaries; None when either has fewer than
    `MIN_REPETITIONS` values or a mean of zero."""
    if a.count < MIN_REPETITIONS or b.count < MIN_REPETITIONS or not a.mean or b.mean is None:
        return None
    va, vb = (a.std or 0.0) ** 2 / a.count, (b.std or 0.0) ** 2 / b.count
    ratio = b.mean / a.mean
    if va + vb == 0:
        same = b.mean == a.mean
        return Comparison(ratio, ratio, ratio, 1.0 if same else 0.0, a.count, b.count)
    df = (va + vb) ** 2 / ((va ** 2 / (a.count - 1) if va else 0.0) + (vb ** 2 / (b.count - 1) if vb else 0.0))
    t_stat = (b.mean - a.mean) / math.sqrt(va + vb)
    p_value = float(2 * _stats().t.sf(abs(t_stat), df))
    if ratio <= 0:  # a sign change: no ratio interval means anything
        return Comparison(ratio, ratio, ratio, p_value, a.count, b.count)
    # on the log scale (the delta method: se(log b/a) = sqrt(va/a^2 + vb/b^2)), so the interval is
    # never below zero and a halving and a doubling are equally far from 1
    se_log = math.sqrt(va / a.mean ** 2 + (vb / b.mean ** 2 if b.mean else 0.0))
    half = float(_stats().t.ppf(0.5 + level / 2, df)) * se_log
    return Comparison(ratio, ratio * math.exp(-half), ratio * math.exp(half), p_value, a.count, b.count)


def difference_is_significant(a: list[float], b: list[float], sigmas: float = 2.0) -> bool | None:
    """Whether two samples' means differ by more than `sigmas` standard errors of the difference
    (Welch, normal approximation); for many values of one window, such as a diagnosis's slow
    steps. Between runs and phases, compare repetition values with `welch`."""
    if len(a) < 2 or len(b) < 2:
        return None
    xa, xb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    se = math.sqrt(xa.var(ddof=1) / len(xa) + xb.var(ddof=1) / len(xb))
    if se == 0:
        return bool(xa.mean() != xb.mean())
    return bool(abs(xa.mean() - xb.mean()) / se > sigmas)
