"""Every verdict in one place, from one table of thresholds.

A `Check` judges one subject (an instance in a phase, or a point's instances together) with a
kind, a verdict, the value against its threshold, a sentence, and a level: `invalid` makes the
phase INVALID (MLPerf LoadGen's rule: a result that fails a check is not a result), `warning`
is shown next to it, `info` and `ok` are context. A phase's `Validity` is the verdict of its
checks. The diagnosis reads these objects; nothing parses their sentences back.

Per instance-phase (from its records and metrics):

- `sample_size`: fewer than `min_requests` measured requests is INVALID; fewer than
  `min_requests_for_p99` makes the p99 shown close to the maximum (a warning);
- `warmup`: no warm-up request; the first requests then include compilation and allocator growth;
- `stability`: the coefficient of variation of the headline latency (TPOT, else end-to-end):
  below `stable_cv` stable, up to `acceptable_cv` acceptable, above unstable (INVALID);
- `steady_state`: the last third of the requests (in time order) differs from the first third
  by more than `trend_fraction` and `trend_sigmas` standard errors: still trending (INVALID);
- `saturation` (open loop): TTFT of the last third at least `saturation_growth` x the first:
  the queue grows without bound and no latency figure describes the system (INVALID);
- `failures`: failed requests; above `max_failed_fraction` INVALID;
- `rate` (open loop): the achieved rate more than `rate_tolerance` off the requested one;
- `client_bound` (endpoints): the load generator, not the server, was the limit (INVALID);
- `output_length`, `token_count`: a server that ignored the exact-length fields, or sent no
  usage (token counts are then a lower bound);
- `bandwidth_cross_check`: NVML's measured DRAM bandwidth and the computed MBU disagree.

Per point (the co-located instances together): `scaling` (aggregate throughput against the
ideal N; below `scaling_bottleneck_fraction` N a shared bottleneck), `baseline` (scaling above
`above_ideal_fraction` N: the solo baselines were off), `fairness` (Jain's index), and
`hardware_bound` (the scaling the device's bandwidth allows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from colobench.analysis import metrics as m
from colobench.analysis.model import Check, Interference, Level, Phase, PhaseMetrics, Subject, Validity
from colobench.records import RequestRecord


@dataclass(frozen=True)
class Thresholds:
    min_requests: int = 10
    min_requests_for_p99: int = 100
    stable_cv: float = 0.05
    acceptable_cv: float = 0.10
    trend_fraction: float = 0.10
    trend_sigmas: float = 3.0
    trend_min_values: int = 30
    saturation_growth: float = 2.0
    max_failed_fraction: float = 0.05
    rate_tolerance: float = 0.01
    client_cpu_bound: float = 0.90  # of one core
    client_loop_lag_ms: float = 10.0
    client_concurrency_fraction: float = 0.75
    scaling_bottleneck_fraction: float = 0.75  # of the ideal N: 1.5x for two instances
    above_ideal_fraction: float = 1.10  # scaling beyond 1.1 N: the baselines, not the co-located run, were off
    fairness: float = 0.95
    near_bound_fraction: float = 0.90
    gpm_disagreement_points: float = 10.0


THRESHOLDS = Thresholds()


def _check(kind: str, subject: Subject, verdict: str, level: Level, sentence: str, value: float | None = None,
           threshold: float | None = None) -> Check:
    return Check(kind=kind, subject=subject, verdict=verdict, level=level, value=value, threshold=threshold,
                 sentence=sentence)


def stability_band(cv: float | None, t: Thresholds = THRESHOLDS) -> str | None:
    if cv is None:
        return None
    return "stable" if cv < t.stable_cv else "acceptable" if cv <= t.acceptable_cv else "unstable"


def thirds_trend(values: list[float], min_values: int = THRESHOLDS.trend_min_values) -> tuple[float, float] | None:
    """(relative change, change in standard errors) from the first third to the last; None below
    `min_values` values."""
    if len(values) < min_values:
        return None
    x = np.asarray(values, dtype=np.float64)
    k = len(x) // 3
    first, last = x[:k], x[-k:]
    diff = last.mean() - first.mean()
    se = math.sqrt(first.var(ddof=1) / k + last.var(ddof=1) / k) or 1e-30
    return diff / x.mean() if x.mean() else 0.0, diff / se


def headline(mt: PhaseMetrics) -> str:
    """The latency a phase is judged by: TPOT, else end-to-end latency (single-token outputs)."""
    return "tpot" if mt.distributions.tpot_ms.count else "e2el"


def phase_checks(point: str, phase: Phase, name: str, mt: PhaseMetrics, records: list[RequestRecord],
                 t: Thresholds = THRESHOLDS) -> list[Check]:
    """Every check of one instance-phase."""
    s = Subject(point=point, instance=name, phase=phase)
    out: list[Check] = []
    ok = sorted(m.measured(records), key=m.start_ns)
    n = mt.completed
    if n < t.min_requests:
        out.append(_check("sample_size", s, "too_few", "invalid",
                          f"only {n} measured requests (at least {t.min_requests})", n, t.min_requests))
    elif n < t.min_requests_for_p99:
        out.append(_check("sample_size", s, "few_requests", "warning",
                          f"p99 from {n} requests is close to the maximum (at least {t.min_requests_for_p99} for a p99)",
                          n, t.min_requests_for_p99))
    else:
        out.append(_check("sample_size", s, "enough", "ok", f"{n} measured requests", n, t.min_requests_for_p99))
    if not mt.warmup_requests:
        out.append(_check("warmup", s, "no_warmup", "invalid",
                          "no warm-up: the first requests include compilation and allocator growth", 0, 1))
    head = headline(mt)
    cv = getattr(mt.distributions, f"{head}_ms").cv
    band = stability_band(cv, t)
    if band is not None:
        out.append(_check("stability", s, band, "invalid" if band == "unstable" else "ok",
                          f"{head.upper()} cv {cv * 100:.1f}% (stable below {t.stable_cv * 100:.0f}%, acceptable "
                          f"to {t.acceptable_cv * 100:.0f}%)", cv, t.acceptable_cv))
    values = [v for r in ok if (v := (m.tpot_ns(r) if head == "tpot" else m.e2el_ns(r))) is not None]
    trend = thirds_trend(values, t.trend_min_values)
    if trend and abs(trend[0]) > t.trend_fraction and abs(trend[1]) > t.trend_sigmas:
        out.append(_check("steady_state", s, "trending", "invalid",
                          f"not steady state: {head.upper()} moved {trend[0] * 100:+.0f}% from the first third of the "
                          f"run to the last ({abs(trend[1]):.1f} standard errors)", trend[0], t.trend_fraction))
    if mt.open_loop is not None:
        ttft = [m.ttft_ns(r) for r in ok]
        if len(ttft) >= t.trend_min_values:
            k = len(ttft) // 3
            first, last = float(np.mean(ttft[:k])), float(np.mean(ttft[-k:]))
            if first > 0 and last / first >= t.saturation_growth:
                out.append(_check("saturation", s, "over_saturated", "invalid",
                                  f"over-saturated: TTFT grew {last / first:.1f}x over the run (the queue grows without "
                                  "bound: lower the rate or add capacity)", last / first, t.saturation_growth))
    out += _failure_checks(s, mt, t) + _client_checks(s, mt, t)
    if mt.output_length_mismatch:
        out.append(_check("output_length", s, "inexact_lengths", "warning",
                          f"{mt.output_length_mismatch} request(s) got a different output length than asked: the "
                          "server may ignore ignore_eos/min_tokens (see exact_output_fields, extra_body)",
                          mt.output_length_mismatch, 0))
    if "chunks" in (mt.token_count_source or {}):
        out.append(_check("token_count", s, "chunk_counts", "warning",
                          "the server sent no usage: output tokens are counted as content chunks (a lower bound); set "
                          "`tokenizer` to count them", mt.token_count_source["chunks"], 0))
    roof = mt.roofline
    if roof is not None and roof.gpm_agrees is False:
        out.append(_check("bandwidth_cross_check", s, "mbu_disagrees", "warning",
                          f"NVML GPM measured {roof.gpm_dram_bw_util_pct:.0f}% DRAM bandwidth, the roofline computes "
                          f"{mt.mbu_pct:.0f}% MBU: more than {t.gpm_disagreement_points:.0f} points apart (weights or KV "
                          "bytes mis-counted, or traffic the model does not explain)", roof.gpm_dram_bw_util_pct,
                          t.gpm_disagreement_points))
    return out


def _failure_checks(s: Subject, mt: PhaseMetrics, t: Thresholds) -> list[Check]:
    if not mt.failed:
        return []
    fraction = mt.failed / max(1, mt.failed + mt.completed)
    invalid = fraction > t.max_failed_fraction
    return [_check("failures", s, "failed_requests", "invalid" if invalid else "warning",
                   f"{mt.failed} failed request(s), error rate {fraction * 100:.1f}%"
                   + (f" (above {t.max_failed_fraction * 100:.0f}%)" if invalid else "") + f": {', '.join(mt.errors)}",
                   fraction, t.max_failed_fraction)]


def _client_checks(s: Subject, mt: PhaseMetrics, t: Thresholds) -> list[Check]:
    out = []
    ol = mt.open_loop
    if ol is not None and ol.rate_ok is False:
        out.append(_check("rate", s, "rate_off", "warning",
                          f"sent {ol.achieved_rate:.2f} req/s for {ol.requested_rate:.2f} requested "
                          f"({ol.rate_error_pct:+.1f}%, more than {t.rate_tolerance * 100:.0f}% off)",
                          ol.achieved_rate, ol.requested_rate))
    if mt.backend != "openai":
        return out
    client = mt.client or None
    reasons = []
    if client is not None and (client.cpu_util_max or 0) >= t.client_cpu_bound:
        reasons.append(f"load generator at {client.cpu_util_max * 100:.0f}% of a core")
    if client is not None and (client.loop_lag_p99_ms or 0) > t.client_loop_lag_ms:
        reasons.append(f"event-loop lag p99 {client.loop_lag_p99_ms:.1f} ms")
    if mt.load_model == "closed" and mt.parallel and mt.mean_concurrency is not None \
            and mt.mean_concurrency < t.client_concurrency_fraction * mt.parallel:
        reasons.append(f"mean concurrency {mt.mean_concurrency:.1f} of {mt.parallel} asked")
    if ol is not None and ol.rate_ok is False:
        reasons.append("achieved rate off target")
    if reasons:
        out.append(_check("client_bound", s, "client_bound", "invalid",
                          "the client may be the bottleneck: " + "; ".join(reasons)
                          + " (add client_processes, or run the client on another host)",
                          client.cpu_util_max if client else None, t.client_cpu_bound))
    return out


def point_checks(point: str, inter: Interference, t: Thresholds = THRESHOLDS) -> list[Check]:
    """The checks of a point's co-located instances together."""
    s = Subject(point=point)
    out = []
    n, scaling = inter.instances, inter.throughput_scaling
    if scaling is not None and scaling > t.above_ideal_fraction * n:
        out.append(_check("baseline", s, "above_ideal", "warning",
                          f"{scaling:.2f}x is above the ideal {n}x: the solo baselines ran slower than the co-located "
                          "run, so something else loaded the host or device during them; repeat before trusting the "
                          "slowdowns", scaling, n))
    if scaling is not None:
        threshold = t.scaling_bottleneck_fraction * n
        good = scaling >= threshold
        out.append(_check("scaling", s, "ok" if good else "bottleneck", "ok" if good else "warning",
                          f"{scaling:.2f}x aggregate throughput for {n} instances (ideal {n}x; "
                          f"{'at least' if good else 'below'} {threshold:.2f}x{'' if good else ': a shared bottleneck'})",
                          scaling, threshold))
    bound = inter.bandwidth_bound
    if bound is not None and bound.scaling_bound and scaling is not None:
        out.append(_check("hardware_bound", s, "near_bound" if bound.near_bound else "below_bound", "info",
                          f"the device's bandwidth allows at most {bound.scaling_bound:.2f}x for these instances; "
                          f"{scaling:.2f}x is {'near' if bound.near_bound else 'far below'} that bound",
                          scaling, bound.scaling_bound))
    if inter.fairness is not None:
        fair = inter.fairness >= t.fairness
        out.append(_check("fairness", s, "fair" if fair else "unfair", "info",
                          f"Jain's fairness {inter.fairness:.3f} over the instances' kept share of solo throughput",
                          inter.fairness, t.fairness))
    return out


def validity(mt: PhaseMetrics, checks: list[Check]) -> Validity:
    """A phase's verdict from its checks: INVALID when any of them is."""
    head = headline(mt)
    cv = getattr(mt.distributions, f"{head}_ms").cv
    return Validity(verdict="INVALID" if any(c.level == "invalid" for c in checks) else "VALID",
                    stability=stability_band(cv), headline=head, cv_pct=cv * 100 if cv is not None else None,
                    reasons=[c.sentence for c in checks if c.level == "invalid"],
                    warnings=[c.sentence for c in checks if c.level == "warning"])
