"""Can this result be trusted? VALID or INVALID, with reasons, in the spirit of MLPerf.

Per instance and phase, from its records and metrics:

- too few measured requests: fewer than 10 is INVALID; fewer than 100 makes the p99 shown close
  to the maximum (a warning);
- no warm-up: the first requests then include compilation, allocator growth and cache fills;
- stability of the headline latency (TPOT, else end-to-end): coefficient of variation below 5%
  is "stable", 5-10% "acceptable", above 10% "unstable" (INVALID);
- steady state: the latency of the last third of the requests (in time order) differs from the
  first third by more than 10% and by more than three standard errors: still trending;
- over-saturated open loop: TTFT keeps growing (last third at least twice the first): the queue
  grows without bound and no latency figure describes the system;
- failed requests above 5%;
- the load generator was the bottleneck (an endpoint run flagged client-bound).

`difference_is_significant` answers whether two measured means differ by more than their noise.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from colobench.analysis import metrics as m
from colobench.records import RequestRecord

MIN_REQUESTS = 10
MIN_REQUESTS_FOR_P99 = 100
STABLE_CV, ACCEPTABLE_CV = 0.05, 0.10
TREND_FRACTION, TREND_SIGMAS = 0.10, 3.0
MAX_FAILED_FRACTION = 0.05
SATURATION_GROWTH = 2.0


def stability(cv: float | None) -> str | None:
    if cv is None:
        return None
    return "stable" if cv < STABLE_CV else "acceptable" if cv <= ACCEPTABLE_CV else "unstable"


def thirds_trend(values: list[float]) -> tuple[float, float] | None:
    """(relative change, change in standard errors) from the first third to the last; None below
    30 values."""
    if len(values) < 30:
        return None
    x = np.asarray(values, dtype=np.float64)
    k = len(x) // 3
    first, last = x[:k], x[-k:]
    diff = last.mean() - first.mean()
    se = math.sqrt(first.var(ddof=1) / k + last.var(ddof=1) / k) or 1e-30
    return diff / x.mean() if x.mean() else 0.0, diff / se


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


def validity(records: list[RequestRecord], metrics: dict[str, Any], client_bound: bool = False) -> dict[str, Any]:
    """The verdict of one instance-phase."""
    invalid: list[str] = []
    warnings: list[str] = []
    ok = sorted(m.measured(records), key=m.start_ns)
    n = len(ok)
    if n < MIN_REQUESTS:
        invalid.append(f"only {n} measured requests (at least {MIN_REQUESTS})")
    elif n < MIN_REQUESTS_FOR_P99:
        warnings.append(f"p99 from {n} requests is close to the maximum (at least {MIN_REQUESTS_FOR_P99} for a p99)")
    if not metrics.get("warmup_requests"):
        invalid.append("no warm-up: the first requests include compilation and allocator growth")
    headline = "tpot" if metrics["distributions"]["tpot_ms"].get("count") else "e2el"
    cv = metrics["distributions"][f"{headline}_ms"].get("cv")
    verdict_stability = stability(cv)
    if verdict_stability == "unstable":
        invalid.append(f"unstable: {headline.upper()} cv {cv * 100:.1f}% (above {ACCEPTABLE_CV * 100:.0f}%)")
    values = [v for r in ok if (v := (m.tpot_ns(r) if headline == "tpot" else m.e2el_ns(r))) is not None]
    trend = thirds_trend(values)
    if trend and abs(trend[0]) > TREND_FRACTION and abs(trend[1]) > TREND_SIGMAS:
        invalid.append(f"not steady state: {headline.upper()} moved {trend[0] * 100:+.0f}% from the first third of "
                       f"the run to the last ({abs(trend[1]):.1f} standard errors)")
    if metrics.get("open_loop"):
        ttft = [m.ttft_ns(r) for r in ok]
        if len(ttft) >= 30:
            k = len(ttft) // 3
            first, last = float(np.mean(ttft[:k])), float(np.mean(ttft[-k:]))
            if first > 0 and last / first >= SATURATION_GROWTH:
                invalid.append(f"over-saturated: TTFT grew {last / first:.1f}x over the run (the queue grows "
                               "without bound: lower the rate or add capacity)")
    failed, completed = metrics.get("failed", 0), metrics.get("completed", 0)
    if failed and failed / max(1, failed + completed) > MAX_FAILED_FRACTION:
        invalid.append(f"{failed} failed requests ({failed / (failed + completed) * 100:.1f}%, above "
                       f"{MAX_FAILED_FRACTION * 100:.0f}%)")
    if client_bound:
        invalid.append("the load generator was the bottleneck (client-bound)")
    return {"verdict": "INVALID" if invalid else "VALID", "stability": verdict_stability,
            "headline": headline, "cv_pct": cv * 100 if cv is not None else None,
            "reasons": invalid, "warnings": warnings}
