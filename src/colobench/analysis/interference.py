"""How much co-located instances slow each other, from solo and co-located phase metrics.

- **slowdown** of an instance = co-located value / solo value, for the median and p99 of TTFT,
  TPOT and end-to-end latency (1.0 = no interference, 2.0 = twice as slow), plus its output
  throughput ratio (co-located / solo; below 1 means it lost throughput).
- **throughput scaling** = sum of the instances' co-located output throughputs / mean of their
  solo output throughputs. N instances that do not interfere give N; one that gains nothing
  from co-location gives 1.
- **fairness**: Jain's index over the instances' kept share of their solo throughput.
- **bandwidth bound**: decode-bound instances sharing one device cannot together move more
  bytes per second than its peak, so scaling <= peak / mean solo bandwidth.

Intervals: repetition k of the co-located run is paired with repetition k of each solo run
(interleaved, they ran minutes apart at most, so drift cancels); each pair gives one ratio, and
the 95% Student-t interval over the pairs (of the log ratios, so a ratio and its inverse are
treated alike) is the interval of the slowdown or the scaling. Below 3 pairs there is none.

An instance whose co-located phase never had its partners under load (`partner_absent`: a
partner died before measuring, failed to load) gives no slowdown, and the point no scaling:
there was nothing co-located to measure. The verdicts on these numbers are checks
(`colobench.analysis.checks`).
"""

from __future__ import annotations

import math

from colobench.analysis.checks import THRESHOLDS
from colobench.analysis.distribution import t_interval
from colobench.analysis.model import BandwidthBound, Interference, PhaseMetrics, Slowdown

SLOWDOWN_KEYS = {"ttft_p50": "p50_ttft_ms", "ttft_p99": "p99_ttft_ms", "tpot_p50": "p50_tpot_ms",
                 "tpot_p99": "p99_tpot_ms", "e2el_p50": "p50_e2el_ms", "e2el_p99": "p99_e2el_ms",
                 "output_throughput": "output_throughput"}


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def ratio_interval(ratios: list[float]) -> tuple[float, float] | None:
    """The 95% interval of a ratio from paired repetitions: Student t over the log ratios."""
    logs = [math.log(r) for r in ratios if r and r > 0]
    if len(logs) != len(ratios):
        return None
    n = len(logs)
    mean = sum(logs) / n if n else 0.0
    std = math.sqrt(sum((x - mean) ** 2 for x in logs) / (n - 1)) if n > 1 else 0.0
    interval = t_interval(mean, std, n)
    return (math.exp(interval[0]), math.exp(interval[1])) if interval else None


def _paired(solo: PhaseMetrics, coloc: PhaseMetrics, metric: str) -> list[float]:
    """Co-located / solo of one metric, repetition by repetition (only repetitions both have)."""
    if solo.repetition_stats is None or coloc.repetition_stats is None:
        return []
    s, c = solo.repetition_stats.by_repetition(metric), coloc.repetition_stats.by_repetition(metric)
    return [c[k] / s[k] for k in sorted(set(s) & set(c)) if s[k]]


def slowdown(solo: PhaseMetrics, coloc: PhaseMetrics) -> Slowdown:
    out: dict[str, float | None] = {}
    for metric in ("ttft", "tpot", "e2el"):
        out[f"{metric}_p50"] = _ratio(getattr(coloc, f"median_{metric}_ms"), getattr(solo, f"median_{metric}_ms"))
        out[f"{metric}_p99"] = _ratio(getattr(coloc, f"p99_{metric}_ms"), getattr(solo, f"p99_{metric}_ms"))
    out["output_throughput"] = _ratio(coloc.output_throughput, solo.output_throughput)
    intervals = {key: ratio_interval(_paired(solo, coloc, metric)) for key, metric in SLOWDOWN_KEYS.items()}
    beyond = {key: (None if iv is None else not iv[0] <= 1.0 <= iv[1]) for key, iv in intervals.items()}
    return Slowdown(**out, intervals=intervals, beyond_noise=beyond)


def throughput_scaling(solo: dict[str, PhaseMetrics], coloc: dict[str, PhaseMetrics]) -> float | None:
    """Sum of co-located throughputs over the mean solo throughput (ideal = number of instances)."""
    names = [n for n in coloc if n in solo]
    solo_t = [solo[n].output_throughput for n in names]
    coloc_t = [coloc[n].output_throughput for n in names]
    if not names or any(v is None for v in solo_t + coloc_t):
        return None
    mean_solo = sum(solo_t) / len(solo_t)
    return sum(coloc_t) / mean_solo if mean_solo else None


def scaling_interval(solo: dict[str, PhaseMetrics], coloc: dict[str, PhaseMetrics]) -> tuple[float, float] | None:
    """The scaling of each repetition (its co-located throughputs over its solo ones), Student t."""
    names = [n for n in coloc if n in solo]
    stats = [(solo[n].repetition_stats, coloc[n].repetition_stats) for n in names]
    if not names or any(s is None or c is None for s, c in stats):
        return None
    per_s = [s.by_repetition("output_throughput") for s, _ in stats]
    per_c = [c.by_repetition("output_throughput") for _, c in stats]
    reps = sorted(set.intersection(*(set(x) for x in per_s + per_c)))
    values = []
    for k in reps:
        mean_solo = sum(s[k] for s in per_s) / len(per_s)
        if mean_solo:
            values.append(sum(c[k] for c in per_c) / mean_solo)
    return ratio_interval(values)


def jain_fairness(values: list[float]) -> float | None:
    """Jain's index (sum x)^2 / (n sum x^2): 1 when every instance keeps the same share of its solo
    throughput, 1/n when one instance keeps everything."""
    if not values or not any(values):
        return None
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


def bandwidth_bound(solo: dict[str, PhaseMetrics], names: list[str], scaling: float | None) -> BandwidthBound | None:
    """What the hardware allows: at most peak / mean solo bandwidth. `near_bound`: the scaling
    is within `near_bound_fraction` below the bound (above it, the bytes model or the peak is off)."""
    rows = [solo[n] for n in names if n in solo]
    bws = [r.achieved_bandwidth_bytes_s for r in rows]
    peaks = [r.roofline.peak.memory_bandwidth_gb_s if r.roofline and r.roofline.peak else None for r in rows]
    devices = {r.roofline.device if r.roofline else None for r in rows}
    if not rows or None in bws or not all(peaks) or len(set(peaks)) != 1 or len(devices) > 1:
        return None
    mean_bw = sum(bws) / len(bws)
    bound = min(len(rows), peaks[0] * 1e9 / mean_bw) if mean_bw else None
    near = (THRESHOLDS.near_bound_fraction * bound <= scaling <= bound) if bound and scaling is not None else None
    return BandwidthBound(scaling_bound=bound, mean_solo_bandwidth_bytes_s=mean_bw,
                          peak_bandwidth_bytes_s=peaks[0] * 1e9, near_bound=near)


def interference(solo: dict[str, PhaseMetrics], coloc: dict[str, PhaseMetrics]) -> Interference:
    """The `interference` block of a point."""
    n = len(coloc)
    excluded = [name for name, mt in coloc.items() if mt.partner_absent]
    judged = {} if excluded else coloc
    scaling = throughput_scaling(solo, judged) if n > 1 and judged else None
    ratios = [judged[k].output_throughput / solo[k].output_throughput for k in judged
              if k in solo and judged[k].output_throughput and solo[k].output_throughput]
    fairness = jain_fairness(ratios) if n > 1 and len(ratios) == n else None
    shared = len({c.roofline.device if c.roofline else None for c in coloc.values()}) == 1 if coloc else False
    bound = bandwidth_bound(solo, list(coloc), scaling) if n > 1 and shared and scaling is not None else None
    return Interference(instances=n, ideal_scaling=n if n > 1 else None, throughput_scaling=scaling,
                        throughput_scaling_interval=scaling_interval(solo, judged) if scaling is not None else None,
                        fairness=fairness, bandwidth_bound=bound, excluded=excluded,
                        slowdown={name: slowdown(solo[name], coloc[name]) for name in coloc
                                  if name in solo and name not in excluded})
