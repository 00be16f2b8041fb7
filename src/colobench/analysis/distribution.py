"""One `Distribution` type for every metric, built by one constructor.

Percentiles use numpy's linear interpolation (the same as vLLM's benchmark). `std` is the sample
standard deviation (ddof=1); `cv` is std / mean. The 95% confidence interval of the mean is a
percentile bootstrap with a fixed seed, so the same values always give the same interval; from
`NORMAL_CI_MIN_COUNT` values on, where the central limit theorem makes the normal interval
mean ± 1.96 std / sqrt(n) as good and resampling millions of inter-token gaps would take seconds,
it is that normal interval.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Iterable

import numpy as np
from pydantic import BaseModel, ConfigDict

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
NORMAL_CI_MIN_COUNT = 20_000
_BOOTSTRAP_CHUNK_ELEMENTS = 2_000_000  # bounds memory: resamples x values per chunk


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
    ci95_low: float | None = None
    ci95_high: float | None = None

    @classmethod
    def of(cls, values: Iterable[float]) -> "Distribution":
        """Summarise `values`; an empty input gives count 0 and every statistic None."""
        x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64)
        if x.size == 0:
            return cls(count=0)
        mean = float(x.mean())
        std = float(x.std(ddof=1)) if x.size > 1 else 0.0
        p50, p90, p99 = (float(v) for v in np.percentile(x, [50, 90, 99]))
        low, high = bootstrap_mean_ci(x)
        return cls(
            count=int(x.size), mean=mean, std=std, cv=std / mean if mean else None,
            min=float(x.min()), p50=p50, p90=p90, p99=p99, max=float(x.max()), ci95_low=low, ci95_high=high,
        )

    def scaled(self, factor: float) -> "Distribution":
        """The same distribution in another unit (ns -> ms is `scaled(1e-6)`); cv and count unchanged."""
        def s(v: float | None) -> float | None:
            return None if v is None else v * factor

        return Distribution(count=self.count, mean=s(self.mean), std=s(self.std), cv=self.cv, min=s(self.min),
                            p50=s(self.p50), p90=s(self.p90), p99=s(self.p99), max=s(self.max),
                            ci95_low=s(self.ci95_low), ci95_high=s(self.ci95_high))


def bootstrap_mean_ci(x: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of `x`."""
    if x.size == 1:
        return float(x[0]), float(x[0])
    if x.size >= NORMAL_CI_MIN_COUNT:
        z = NormalDist().inv_cdf(0.5 + level / 2)
        half = z * float(x.std(ddof=1)) / np.sqrt(x.size)
        return float(x.mean()) - half, float(x.mean()) + half
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    per_chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // x.size)
    means = []
    remaining = BOOTSTRAP_RESAMPLES
    while remaining:
        n = min(per_chunk, remaining)
        idx = rng.integers(0, x.size, size=(n, x.size))
        means.append(x[idx].mean(axis=1))
        remaining -= n
    all_means = np.concatenate(means)
    alpha = (1 - level) / 2
    low, high = np.quantile(all_means, [alpha, 1 - alpha])
    return float(low), float(high)


def difference_is_significant(a: list[float], b: list[float], sigmas: float = 2.0) -> bool | None:
    """Whether two samples' means differ by more than `sigmas` standard errors of the difference
    (Welch, normal approximation: these samples have tens to thousands of values)."""
    if len(a) < 2 or len(b) < 2:
        return None
    xa, xb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    se = math.sqrt(xa.var(ddof=1) / len(xa) + xb.var(ddof=1) / len(xb))
    if se == 0:
        return bool(xa.mean() != xb.mean())
    return bool(abs(xa.mean() - xb.mean()) / se > sigmas)
