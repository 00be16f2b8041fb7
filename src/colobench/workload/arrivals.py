"""When requests arrive in an open-loop workload.

Open loop means arrivals do not wait for earlier requests to finish: a real service sees users
arrive whether it keeps up or not, and a closed-loop client hides overload by slowing down.

- `poisson`: exponential gaps, the memoryless arrivals of many independent users.
- `gamma`: gamma-distributed gaps with shape k = 1 / burstiness. Burstiness 1 is Poisson; above
  1 requests come in clumps (cv of the gaps = sqrt(burstiness)); below 1 they are more regular.
- `constant`: evenly spaced.

The gaps are drawn from a seeded generator, then scaled so the schedule's mean rate is exactly
the requested rate: (n - 1) / (t[n-1] - t[0]) = rate. The shape of the gap distribution is kept;
only the sampling error of a finite draw (about 1/sqrt(n) of the rate) is removed, so the
achieved rate can be judged against the requested rate to 1%, not to the luck of the draw.

Times are offsets in seconds from the start of the window; the scheduler turns them into
absolute deadlines on the monotonic clock.
"""

from __future__ import annotations

import zlib

import numpy as np

ARRIVALS = ("poisson", "gamma", "constant")


def interarrival_gaps_s(count: int, rate: float, arrival: str = "poisson", burstiness: float = 1.0,
                        seed: int = 0) -> np.ndarray:
    """`count - 1` gaps in seconds whose mean is exactly 1 / rate."""
    if rate <= 0:
        raise ValueError(f"rate must be > 0 requests/s (got {rate})")
    if burstiness <= 0:
        raise ValueError(f"burstiness must be > 0 (got {burstiness})")
    n = max(count - 1, 0)
    if n == 0:
        return np.zeros(0)
    rng = np.random.default_rng(seed)
    if arrival == "constant":
        gaps = np.ones(n)
    elif arrival == "poisson":
        gaps = rng.exponential(1.0, size=n)
    elif arrival == "gamma":
        shape = 1.0 / burstiness
        gaps = rng.gamma(shape, 1.0 / shape, size=n)
    else:
        raise ValueError(f"arrival must be one of {', '.join(ARRIVALS)} (got {arrival!r})")
    return gaps * (1.0 / rate) / gaps.mean()


def arrival_offsets_s(count: int, rate: float, arrival: str = "poisson", burstiness: float = 1.0,
                      seed: int = 0) -> np.ndarray:
    """Offsets of `count` arrivals from the window start; the first arrives at 0."""
    gaps = interarrival_gaps_s(count, rate, arrival, burstiness, seed)
    return np.concatenate([[0.0], np.cumsum(gaps)]) if count > 0 else np.zeros(0)


def instance_seed(seed: int, instance: str) -> int:
    """The arrival seed of one instance: the run's seed and the instance's name, so two co-located
    instances at one rate never share arrival times (their bursts lining up would bias every
    open-loop slowdown pessimistic), while each instance keeps its schedule from run to run and
    from its solo phase to its co-located one."""
    return (seed * 1_000_003 + zlib.crc32(instance.encode("utf-8"))) % 2**63


def count_for_duration(rate: float, duration_s: float) -> int:
    """Arrivals in a window of `duration_s` at `rate`: the schedule then spans the window."""
    return max(1, int(round(rate * duration_s)))


def ramp_rates(rate: float, to_rate: float, steps: int) -> list[float]:
    """The requested rate of each step of a ramp: from `rate` to `to_rate` in `steps` even steps
    (a linear ramp's mean rate in each of its `steps` segments is the same list)."""
    if steps < 2:
        return [rate]
    return [rate + k * (to_rate - rate) / (steps - 1) for k in range(steps)]


def ramp_offsets_s(rate: float, to_rate: float, duration_s: float, steps: int, shape: str = "step",
                   arrival: str = "poisson", burstiness: float = 1.0, seed: int = 0) -> np.ndarray:
    """Arrivals of a rate that ramps within one window of `duration_s`. `step`: `steps` segments of
    equal length, each at its own constant rate (`ramp_rates`), each segment's arrivals drawn as a
    window of their own (scaled to its rate exactly). `linear`: the rate grows continuously from
    the first step's to the last's (the intensity lambda(t) is a line); arrivals of the chosen
    process at rate 1 are mapped through the inverse of the cumulative intensity, so the shape of
    the gaps (Poisson, gamma bursts) is kept while their density follows the ramp."""
    rates = ramp_rates(rate, to_rate, steps)
    if shape == "step":
        seg = duration_s / len(rates)
        out = []
        for k, r in enumerate(rates):
            n = count_for_duration(r, seg)
            offsets = arrival_offsets_s(n, r, arrival, burstiness, seed + 7919 * k)
            out.append(k * seg + offsets[offsets < seg])
        return np.concatenate(out) if out else np.zeros(0)
    if shape != "linear":
        raise ValueError(f"ramp shape must be step or linear (got {shape!r})")
    lo, hi = rates[0], rates[-1]
    total = (lo + hi) / 2 * duration_s  # the cumulative intensity at the end: the expected count
    n = max(1, int(round(total)))
    unit = arrival_offsets_s(n, 1.0, arrival, burstiness, seed) * (total / max(n - 1, 1)) if n > 1 else np.zeros(1)
    # Lambda(t) = lo t + (hi - lo) t^2 / (2 D): t = its inverse at each unit-rate arrival
    slope = (hi - lo) / duration_s
    if abs(slope) < 1e-12:
        t = unit / lo
    else:
        t = (-lo + np.sqrt(np.maximum(lo * lo + 2 * slope * unit, 0.0))) / slope
    return t[t < duration_s]
