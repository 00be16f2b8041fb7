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

The verdicts on these numbers (bottleneck, above ideal, near the bound) are checks
(`colobench.analysis.checks`).
"""

from __future__ import annotations

from colobench.analysis.checks import THRESHOLDS
from colobench.analysis.model import BandwidthBound, Interference, PhaseMetrics, Slowdown


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def slowdown(solo: PhaseMetrics, coloc: PhaseMetrics, beyond_noise: dict[str, bool | None]) -> Slowdown:
    out = {}
    for metric in ("ttft", "tpot", "e2el"):
        out[f"{metric}_p50"] = _ratio(getattr(coloc, f"median_{metric}_ms"), getattr(solo, f"median_{metric}_ms"))
        out[f"{metric}_p99"] = _ratio(getattr(coloc, f"p99_{metric}_ms"), getattr(solo, f"p99_{metric}_ms"))
    return Slowdown(**out, output_throughput=_ratio(coloc.output_throughput, solo.output_throughput),
                    beyond_noise=beyond_noise)


def throughput_scaling(solo: dict[str, PhaseMetrics], coloc: dict[str, PhaseMetrics]) -> float | None:
    """Sum of co-located throughputs over the mean solo throughput (ideal = number of instances)."""
    names = [n for n in coloc if n in solo]
    solo_t = [solo[n].output_throughput for n in names]
    coloc_t = [coloc[n].output_throughput for n in names]
    if not names or any(v is None for v in solo_t + coloc_t):
        return None
    mean_solo = sum(solo_t) / len(solo_t)
    return sum(coloc_t) / mean_solo if mean_solo else None


def jain_fairness(values: list[float]) -> float | None:
    """Jain's index (sum x)^2 / (n sum x^2): 1 when every instance keeps the same share of its solo
    throughput, 1/n when one instance keeps everything."""
    if not values or not any(values):
        return None
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


def bandwidth_bound(solo: dict[str, PhaseMetrics], names: list[str], scaling: float | None) -> BandwidthBound | None:
    """What the hardware allows: at most peak / mean solo bandwidth."""
    rows = [solo[n] for n in names if n in solo]
    bws = [r.achieved_bandwidth_bytes_s for r in rows]
    peaks = [r.roofline.peak.memory_bandwidth_gb_s if r.roofline and r.roofline.peak else None for r in rows]
    devices = {r.roofline.device if r.roofline else None for r in rows}
    if not rows or None in bws or not all(peaks) or len(set(peaks)) != 1 or len(devices) > 1:
        return None
    mean_bw = sum(bws) / len(bws)
    bound = min(len(rows), peaks[0] * 1e9 / mean_bw) if mean_bw else None
    near = scaling >= THRESHOLDS.near_bound_fraction * bound if bound and scaling is not None else None
    return BandwidthBound(scaling_bound=bound, mean_solo_bandwidth_bytes_s=mean_bw,
                          peak_bandwidth_bytes_s=peaks[0] * 1e9, near_bound=near)


def interference(solo: dict[str, PhaseMetrics], coloc: dict[str, PhaseMetrics],
                 beyond_noise: dict[str, dict[str, bool | None]]) -> Interference:
    """The `interference` block of a point."""
    n = len(coloc)
    scaling = throughput_scaling(solo, coloc) if n > 1 else None
    ratios = [coloc[k].output_throughput / solo[k].output_throughput for k in coloc
              if k in solo and coloc[k].output_throughput and solo[k].output_throughput]
    fairness = jain_fairness(ratios) if n > 1 and len(ratios) == n else None
    shared = len({c.roofline.device if c.roofline else None for c in coloc.values()}) == 1 if coloc else False
    bound = bandwidth_bound(solo, list(coloc), scaling) if n > 1 and shared else None
    return Interference(instances=n, ideal_scaling=n if n > 1 else None, throughput_scaling=scaling,
                        fairness=fairness, bandwidth_bound=bound,
                        slowdown={name: slowdown(solo[name], coloc[name], beyond_noise.get(name, {}))
                                  for name in coloc if name in solo})
