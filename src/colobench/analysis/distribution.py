"""One `Distribution` type for every metric, built by one constructor.

Percentiles use numpy's linear interpolation (the same as vLLM's benchmark). `std` is the sample
standard deviation (ddof=1); `cv` is std / mean. The 95% confidence interval of the mean is a
percentile bootstrap with a fixed seed, so the same values always give the same interval; from
`NORMAL_CI_MIN_COUNT` values on, where the central limit theorem makes the normal interval
mean ± 1.96 std / sqrt(n) as good and resampling millions of inter-token gaps would take seconds,
it is that normal interval.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
NORMAL_CI_MIN_COUNT = 20_000
_BOOTSTRAP_CHUNK_ELEMENTS = 2_000_000  # bounds memory: resamples x values per chunk


@dataclass(frozen=True)
class Distribution:
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

        return Distribution(self.count, s(self.mean), s(self.std), self.cv, s(self.min), s(self.p50), s(self.p90),
                            s(self.p99), s(self.max), s(self.ci95_low), s(self.ci95_high))

    def to_dict(self) -> dict:
        return asdict(self)


def bootstrap_mean_ci(x: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of `x`."""
    if x.size == 1:
        return float(x[0]), float(x[0])
    if x.size >= NORMAL_CI_MIN_COUNT:
        from statistics import NormalDist

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
