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
- `stability`: how much the headline latency (TPOT, else end-to-end) moves from one repetition
  to the next: the coefficient of variation of the repetitions' means (not judged below 3
  repetitions, said so): below `stable_cv` stable, up to `acceptable_cv` acceptable, above it
  unstable (INVALID: the next run would not give the same answer) when even the cv's 95% lower
  bound over that few repetitions is above it, else inconclusive (a warning: near the threshold);
- `jitter`: the spread of the headline latency over requests (std/mean above `jitter_cv`, the
  check inference engineers make by hand): a property of the system, shown, never INVALID;
- `steady_state`: the last third of the requests (in time order) differs from the first third
  by more than `trend_fraction` and `trend_sigmas` standard errors: still trending (INVALID);
- `saturation` (open loop): TTFT, or the requests in flight, of the last third at least
  `saturation_growth` x the first, and by at least what a queue growing at `saturation_share` of
  the arrival rate adds over the window (TTFT: 2/3 x share x the window's seconds, 170 ms in a
  5 s window; in flight: 2/3 x share x the requests): the queue grows without bound and no latency
  figure describes the system (INVALID). The in-flight count catches a continuous-batching server
  that admits everything (TTFT flat, TPOT growing); the absolute floors keep 8 -> 25 ms of noise at
  a fast server's edge, or host jitter, from passing for an unbounded queue;
- `failures`: failed requests; above `max_failed_fraction` INVALID;
- `rate` (open loop): the achieved rate more than `rate_tolerance` off the requested one;
- `client_bound` (endpoints): the load generator, not the server, was the limit (INVALID);
- `output_length`, `token_count`: a server that ignored the exact-length fields, or sent no
  usage (token counts are then a lower bound); `prompt_length`: prompts the server counted at
  another length than asked (no tokenizer at hand to fit them);
- `bandwidth_cross_check`: NVML's measured DRAM bandwidth and the computed MBU disagree;
- `implausible`: an MBU above 100% cannot be memory traffic: the sentence says whether the bytes
  model (weights small enough to stay in on-chip caches) or the peak figure is suspect;
- `partner_absent` (co-located): no repetition had every partner under load (a partner died
  before measuring, or never loaded): nothing co-located was measured (INVALID, and no slowdown
  or scaling is computed from it); `overlap`: less than `min_overlap_fraction` of the measured
  requests' time had every partner under load;
- `server_agreement` (endpoints whose `/metrics` was scraped): the client's figures against the
  server's own over the same windows (`analysis.server`). Between them lies only the HTTP round
  trip and the server's front end (tokenising, detokenising: a few milliseconds), so TTFT
  disagrees when the client's is more than `server_ttft_ms` AND more than `server_ttft_fraction`
  off the server's (an absolute band alone would flag long prefills, a relative one alone short
  ones); ITL and TPOT when more than `server_itl_fraction` AND `server_itl_ms` off (the
  milliseconds keep timer noise on sub-millisecond steps from counting); the request count when
  the server finished fewer requests than the client completed, or more than it completed and saw
  fail together. A disagreement is a warning: something sits between the two (a proxy, a busy
  client host, a second client of the same server) and the client's figures are not the
  server's. One server counting several instances of the run is not judged (said so).

Per point (the co-located instances together): `scaling` (aggregate throughput against the
ideal N: ok when its interval lies at or above `scaling_bottleneck_fraction` N, bottleneck when
below, inconclusive when it straddles the line, not judged when a phase behind it is INVALID),
`baseline` (scaling above `above_ideal_fraction` N: the solo baselines were off), `fairness`
(Jain's index), and `hardware_bound` (the scaling the device's bandwidth allows: near it means
within `near_bound_fraction` below it; above it, the bytes model or the peak figure is off).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from colobench.analysis import metrics as m
from colobench.analysis.distribution import MIN_REPETITIONS, spread_lower_bound
from colobench.analysis.model import Check, CheckKind, Interference, Level, Phase, PhaseMetrics, Subject, Validity
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
    saturation_share: float = 0.05  # the queue's growth, as a share of the arrival rate, that is over-saturation
    max_failed_fraction: float = 0.05
    max_failed_share_for_client: float = 0.5  # above this error rate no client_bound verdict (a failing server)
    rate_tolerance: float = 0.01
    client_cpu_bound: float = 0.90  # of one core
    client_busy: float = 0.50  # a load generator this busy can be the cause of its own lag
    client_loop_lag_ms: float = 10.0
    client_concurrency_fraction: float = 0.75
    scaling_bottleneck_fraction: float = 0.75  # of the ideal N: 1.5x for two instances
    above_ideal_fraction: float = 1.10  # scaling beyond 1.1 N: the baselines, not the co-located run, were off
    fairness: float = 0.95
    near_bound_fraction: float = 0.90
    gpm_disagreement_points: float = 10.0
    jitter_cv: float = 0.10
    min_overlap_fraction: float = 0.90
    max_mbu_pct: float = 100.0
    cache_resident_weight_bytes: int = 64 * 2**20  # weights this small can stay in on-chip caches
    # ---- the diagnosis (`analysis.diagnosis.detectors`): when a cause is named ----
    slowdown_for_contention: float = 1.2  # a co-located p50 TPOT this much slower than solo
    bandwidth_near_peak_pct: float = 80.0  # decode bandwidth (alone or summed) this close to the peak
    slow_steps_overlap_fraction: float = 0.5  # slow decode steps that overlap the partner's work ...
    slow_steps_over_chance: float = 2.0  # ... this many times more than chance: contention, not noise
    host_bound_step_growth: float = 1.15  # step time grows less than this from the smallest batch ...
    host_bound_low_mbu_pct: float = 50.0  # ... with the bandwidth this far from the peak ...
    host_bound_low_util_pct: float = 50.0  # ... or the device this idle: the host sets the pace
    worker_pegged_pct: float = 90.0  # a worker's CPU at this % of its cores: host-bound
    outside_busy_pct: float = 50.0  # processes outside the run together taking half a core or more
    host_busy_pct: float = 80.0
    warmup_outlier_ratio: float = 3.0  # the first measured requests this much slower than the median
    clock_drop_fraction: float = 0.8  # a clock below this share of its peak: throttling
    memory_full_fraction: float = 0.95
    length_r2: float = 0.5  # latency explained by prompt length at least this much
    padding_share_pct: float = 30.0  # static batches whose prompt positions are this much padding or more
    periodic_interval_cv: float = 0.25  # stalls this regular (cv of their intervals) are periodic ...
    min_stalls: int = 4  # ... given at least this many
    gc_tolerance_ns: int = 1_000_000  # a GC pause this close to a stall explains it
    fragmentation_pct: float = 15.0  # reserved memory that holds no tensor
    # ---- the server's own counters against the client's (`server_agreement`) ----
    server_ttft_ms: float = 20.0  # TTFT off by more than this ...
    server_ttft_fraction: float = 0.20  # ... and by more than this share of the server's: disagreement
    server_itl_fraction: float = 0.05  # ITL / TPOT off by more than this share ...
    server_itl_ms: float = 0.5  # ... and by more than this (timer noise on sub-millisecond steps)
    unrequested_prefix_hit_pct: float = 1.0  # prefix-cache hits above this share of prompt tokens, not asked for


THRESHOLDS = Thresholds()


def _check(kind: CheckKind, subject: Subject, verdict: str, level: Level, sentence: str, value: float | None = None,
           threshold: float | None = None) -> Check:
    return Check(kind=kind, subject=subject, verdict=verdict, level=level, value=value, threshold=threshold,
                 sentence=sentence)


def stability_band(cv: float | None, n: int | None = None, t: Thresholds = THRESHOLDS) -> str | None:
    """stable / acceptable / unstable by the repetitions' cv; above `acceptable_cv` but not surely
    (its lower confidence bound over `n` repetitions is not above it): inconclusive."""
    if cv is None:
        return None
    if cv < t.stable_cv:
        return "stable"
    if cv <= t.acceptable_cv:
        return "acceptable"
    return "unstable" if n is None or spread_lower_bound(cv, n) > t.acceptable_cv else "inconclusive"


def thirds_trend(values: list[float], min_values: int = THRESHOLDS.trend_min_values) -> tuple[float, float] | None:
    """(relative change, change in standard errors) from the first third to the last; None below
    `min_values` values."""
    if len(values) < min_values:
        return None
    k = len(values) // 3
    return _change(values[:k], values[-k:])


def _change(first: list[float], last: list[float]) -> tuple[float, float]:
    """(relative change from `first` to `last`, relative to where it started; in standard errors)."""
    a, b = np.asarray(first, dtype=np.float64), np.asarray(last, dtype=np.float64)
    diff = b.mean() - a.mean()
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)) or 1e-30
    return diff / a.mean() if a.mean() else 0.0, diff / se


def window_trend(by_window: list[list[float]], min_values: int = THRESHOLDS.trend_min_values
                 ) -> tuple[float, float] | None:
    """`thirds_trend` inside the measured windows: the first thirds of every window against their
    last thirds (each window weighs the same on both sides), so drift from one window to the next
    cancels and what remains is a transient inside a window (warm-up not finished, a cache or
    allocator still growing, clocks ramping). None when the windows are too short for thirds."""
    firsts, lasts = [], []
    for values in by_window:
        k = len(values) // 3
        if k:
            firsts += values[:k]
            lasts += values[-k:]
    if len(firsts) < max(2, min_values // 3):
        return None
    return _change(firsts, lasts)


def _trend_checks(s: Subject, head: str, ok: list[RequestRecord], t: Thresholds) -> list[Check]:
    """`steady_state` (INVALID): the headline still moving inside the measured windows. A move
    across the whole run that is not inside the windows is the host drifting from one window to
    the next: `drift`, a warning (the repetitions are interleaved, so the ratios stay paired)."""
    def value(r: RequestRecord) -> float | None:
        return m.tpot_ns(r) if head == "tpot" else m.e2el_ns(r)

    by_window: dict[int, list[float]] = defaultdict(list)
    for r in ok:
        if (v := value(r)) is not None:
            by_window[r.repetition].append(v)
    values = [v for r in ok if (v := value(r)) is not None]
    inside = window_trend(list(by_window.values()), t.trend_min_values) if len(by_window) > 1 else \
        thirds_trend(values, t.trend_min_values)
    if inside and abs(inside[0]) > t.trend_fraction and abs(inside[1]) > t.trend_sigmas:
        where = "inside its windows (first thirds against last thirds)" if len(by_window) > 1 else "over the run"
        return [_check("steady_state", s, "trending", "invalid",
                       f"not steady state: {head.upper()} moved {inside[0] * 100:+.0f}% {where}, relative to where it "
                       f"started ({abs(inside[1]):.1f} standard errors)", inside[0], t.trend_fraction)]
    across = thirds_trend(values, t.trend_min_values) if len(by_window) > 1 else None
    if across and abs(across[0]) > t.trend_fraction and abs(across[1]) > t.trend_sigmas:
        return [_check("drift", s, "drifting", "warning",
                       f"{head.upper()} drifted {across[0] * 100:+.0f}% from the first third of the run to the last "
                       f"({abs(across[1]):.1f} standard errors) while steady inside each window: the host, not the "
                       "instance; interleaved repetitions keep the ratios paired, absolute figures carry the drift",
                       across[0], t.trend_fraction)]
    return []


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
    cv, reps = stability_cv(mt)
    band = stability_band(cv, reps, t)
    if band == "inconclusive":
        out.append(_check("stability", s, band, "warning",
                          f"{head.upper()} moves {cv * 100:.1f}% between its {reps} repetitions, above the "
                          f"{t.acceptable_cv * 100:.0f}% acceptable, but {reps} repetitions cannot tell it from "
                          f"{spread_lower_bound(cv, reps) * 100:.1f}% (95% bound): inconclusive, more repetitions "
                          "would decide", cv, t.acceptable_cv))
    elif band is not None:
        out.append(_check("stability", s, band, "invalid" if band == "unstable" else "ok",
                          f"{head.upper()} moves {cv * 100:.1f}% between its {reps} repetitions (stable below "
                          f"{t.stable_cv * 100:.0f}%, acceptable to {t.acceptable_cv * 100:.0f}%)", cv, t.acceptable_cv))
    elif mt.completed:
        out.append(_check("stability", s, "not_judged", "warning",
                          f"stability not judged: {reps} repetition(s), at least {MIN_REPETITIONS} are needed to see "
                          "how much the result moves from one window to the next", reps, MIN_REPETITIONS))
    spread = getattr(mt.distributions, f"{head}_ms").cv
    if spread is not None and spread > t.jitter_cv:
        out.append(_check("jitter", s, "jittery", "warning",
                          f"{head.upper()} std/mean {spread * 100:.1f}% over requests (above {t.jitter_cv * 100:.0f}%): "
                          "latency varies from request to request", spread, t.jitter_cv))
    out += _trend_checks(s, head, ok, t)
    if mt.open_loop is not None:
        out += _saturation(s, ok, t)
    out += _failure_checks(s, mt, t) + _client_checks(s, mt, t)
    if mt.output_length_mismatch:
        out.append(_check("output_length", s, "inexact_lengths", "warning",
                          f"{mt.output_length_mismatch} request(s) got a different output length than asked: the "
                          "server may ignore ignore_eos/min_tokens (see exact_output_fields, extra_body)",
                          mt.output_length_mismatch, 0))
    if mt.prompt_length_mismatch:
        out.append(_check("prompt_length", s, "prompt_length_mismatch", "warning",
                          f"{mt.prompt_length_mismatch} of {mt.completed} prompts were not the length asked for: the "
                          f"server counted {mt.mean_prompt_tokens:.1f} tokens on average, {mt.mean_expected_prompt_tokens:.1f} "
                          "were asked for (give the instance a `tokenizer`, or use a server with /tokenize, for "
                          "token-exact prompts)", mt.prompt_length_mismatch, 0))
    if "chunks" in (mt.token_count_source or {}):
        out.append(_check("token_count", s, "chunk_counts", "warning",
                          "the server sent no usage: output tokens are counted as content chunks (a lower bound); set "
                          "`tokenizer` to count them", mt.token_count_source["chunks"], 0))
    out += _colocation_checks(s, mt, t) + _roofline_checks(s, mt, t) + server_checks(s, mt, t)
    roof = mt.roofline
    if roof is not None and roof.gpm_agrees is False:
        out.append(_check("bandwidth_cross_check", s, "mbu_disagrees", "warning",
                          f"NVML GPM measured {roof.gpm_dram_bw_util_pct:.0f}% DRAM bandwidth, the roofline computes "
                          f"{mt.mbu_pct:.0f}% MBU: more than {t.gpm_disagreement_points:.0f} points apart (weights or KV "
                          "bytes mis-counted, or traffic the model does not explain)", roof.gpm_dram_bw_util_pct,
                          t.gpm_disagreement_points))
    return out


def stability_cv(mt: PhaseMetrics) -> tuple[float | None, int]:
    """The cv of the repetitions' means of the headline latency (None below `MIN_REPETITIONS`:
    a per-request spread is jitter, not stability), and the number of repetitions."""
    head = headline(mt)
    reps = mt.repetition_stats.summary(f"mean_{head}_ms") if mt.repetition_stats is not None else None
    if reps is None:
        return None, mt.repetitions
    return (reps.cv if reps.count >= MIN_REPETITIONS else None), reps.count


def server_checks(s: Subject, mt: PhaseMetrics, t: Thresholds = THRESHOLDS) -> list[Check]:
    """`server_agreement`: the client's TTFT, ITL, TPOT and request count against the server's own
    counters over the same windows; one warning per disagreement, else one `ok`."""
    ev = mt.server
    if ev is None or not ev.windows:
        return []
    if ev.shared_with:
        return [_check("server_agreement", s, "shared", "info",
                       f"the server's counters also count {', '.join(ev.shared_with)} (one server and model): not set "
                       "against this instance's alone")]
    out = []
    ttft = ev.ttft_ms
    if ttft.difference is not None and abs(ttft.difference) > t.server_ttft_ms \
            and (not ttft.server or abs(ttft.difference) > t.server_ttft_fraction * ttft.server):
        out.append(_check("server_agreement", s, "ttft_disagrees", "warning",
                          f"TTFT {ttft.client:.1f} ms at the client, {ttft.server:.1f} ms by the server's own count: "
                          f"{ttft.difference:+.1f} ms, more than the HTTP overhead ({t.server_ttft_ms:.0f} ms and "
                          f"{t.server_ttft_fraction * 100:.0f}%): something between them (a proxy, a busy client host, "
                          "another client of the server) is in the client's figure", ttft.difference, t.server_ttft_ms))
    for label, pair in (("ITL", ev.itl_ms), ("TPOT", ev.tpot_ms)):
        rel = pair.relative
        if rel is not None and abs(rel) > t.server_itl_fraction and abs(pair.difference) > t.server_itl_ms:
            out.append(_check("server_agreement", s, f"{label.lower()}_disagrees", "warning",
                              f"{label} {pair.client:.2f} ms at the client, {pair.server:.2f} ms by the server's own "
                              f"count ({rel * 100:+.1f}%, more than {t.server_itl_fraction * 100:.0f}%): the client "
                              "does not see the server's pace (a busy client host, a proxy buffering chunks)",
                              rel, t.server_itl_fraction))
    done, finished = ev.requests.client, ev.requests.server
    if done is not None and finished is not None and not done <= finished <= done + ev.client_failed:
        out.append(_check("server_agreement", s, "count_disagrees", "warning",
                          f"the server finished {finished:.0f} requests in these windows, the client completed "
                          f"{done:.0f} (and saw {ev.client_failed} fail): another client used the server, or requests "
                          "never reached it", finished - done, 0))
    if out:
        return out
    said = [f"{label} {pair.difference:+.2f} ms" for label, pair in (("TTFT", ev.ttft_ms), ("ITL", ev.itl_ms))
            if pair.difference is not None]
    counted = f"{finished:.0f} requests" if finished is not None else "no request counter"
    return [_check("server_agreement", s, "agrees", "ok",
                   f"the server's own counters agree with the client over {ev.windows} window(s): {counted}"
                   + (f", {', '.join(said)} (client - server)" if said else ""), ttft.difference, t.server_ttft_ms)]


def _colocation_checks(s: Subject, mt: PhaseMetrics, t: Thresholds) -> list[Check]:
    if s.phase != "colocated":
        return []
    if mt.partner_absent:
        return [_check("partner_absent", s, "partner_absent", "invalid",
                       "no partner was under load while it was measured (a partner died or never loaded): nothing "
                       "co-located was measured; no slowdown or scaling is computed from it", 0.0, 1.0)]
    if mt.overlap_fraction is not None and mt.overlap_fraction < t.min_overlap_fraction:
        return [_check("overlap", s, "partial_overlap", "warning",
                       f"every partner was under load for only {mt.overlap_fraction * 100:.0f}% of its measured "
                       f"requests' time; {mt.outside_overlap} request(s) outside the overlap were left out",
                       mt.overlap_fraction, t.min_overlap_fraction)]
    return []


def _roofline_checks(s: Subject, mt: PhaseMetrics, t: Thresholds) -> list[Check]:
    """An MBU above 100% is not a fact: say which side of the division is suspect."""
    if mt.mbu_pct is None or mt.mbu_pct <= t.max_mbu_pct:
        return []
    roof = mt.roofline
    peak = roof.peak if roof is not None else None
    weights = (roof.bytes_per_step or 0) if roof is not None else 0
    if weights and weights <= t.cache_resident_weight_bytes:
        why = (f"the bytes model is suspect: {weights / 2**20:.1f} MiB per step can stay in on-chip caches, so "
               "not every byte counted crosses the memory bus")
    else:
        source = f" ({peak.source})" if peak is not None and peak.source else ""
        why = (f"the peak figure{source} is suspect: {peak.memory_bandwidth_gb_s:,.0f} GB/s is below what was moved"
               if peak is not None else "no peak figure")
    return [_check("implausible", s, "mbu_above_peak", "warning",
                   f"MBU {mt.mbu_pct:.0f}% of the peak is impossible as memory traffic; {why}", mt.mbu_pct,
                   t.max_mbu_pct)]


def _saturation(s: Subject, ok: list[RequestRecord], t: Thresholds) -> list[Check]:
    """Over-saturation of an open loop, from two signals of one growing queue: TTFT (requests wait
    to be admitted) and the requests in flight (a continuous-batching server admits them all, so
    TTFT stays flat while the batch, the in-flight count and TPOT grow). Either must grow by what a
    queue gaining `saturation_share` of the arrivals adds between the first and the last third of
    the window, so a few slow requests (host jitter) never pass for an unbounded queue."""
    if len(ok) < t.trend_min_values:
        return []
    ok = sorted(ok, key=lambda r: r.submit_ns)
    k = len(ok) // 3
    span_ns = ok[-1].submit_ns - ok[0].submit_ns
    ttft = [m.ttft_ns(r) for r in ok]
    first, last = float(np.mean(ttft[:k])), float(np.mean(ttft[-k:]))
    if first > 0 and last / first >= t.saturation_growth and last - first >= t.saturation_share * span_ns * 2 / 3:
        return [_check("saturation", s, "over_saturated", "invalid",
                       f"over-saturated: TTFT grew {last / first:.1f}x (+{(last - first) / 1e6:.0f} ms) over the run "
                       "(the queue grows without bound: lower the rate or add capacity)", last / first,
                       t.saturation_growth)]
    # in flight at each arrival: arrived so far, less those already done
    done = np.sort(np.array([r.done_ns for r in ok], dtype=np.int64))
    submits = np.array([r.submit_ns for r in ok], dtype=np.int64)
    in_flight = np.arange(1, len(ok) + 1) - np.searchsorted(done, submits, side="right")
    a, b = float(in_flight[:k].mean()), float(in_flight[-k:].mean())
    if b >= max(a, 1.0) * t.saturation_growth and b - a >= t.saturation_share * len(ok) * 2 / 3:
        tpot = [x for x in (m.tpot_ns(r) for r in ok) if x]
        grew = ""
        if len(tpot) >= 3:
            j = len(tpot) // 3
            grew = f"; TPOT {float(np.mean(tpot[-j:])) / max(float(np.mean(tpot[:j])), 1.0):.1f}x"
        return [_check("saturation", s, "over_saturated", "invalid",
                       f"over-saturated: requests in flight grew from {a:.1f} to {b:.1f} over the run{grew} (the "
                       "server admits every request but finishes fewer than arrive: lower the rate or add capacity)",
                       b / max(a, 1.0), t.saturation_growth)]
    return []


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
    client = mt.client
    cpu = (client.cpu_util_max or 0.0) if client is not None else 0.0
    lag = (client.loop_lag_p99_ms or 0.0) if client is not None else 0.0
    symptoms = []
    if lag > t.client_loop_lag_ms:
        symptoms.append(f"event-loop lag p99 {lag:.1f} ms")
    if mt.load_model == "closed" and mt.parallel and mt.mean_concurrency is not None \
            and mt.mean_concurrency < t.client_concurrency_fraction * mt.parallel:
        symptoms.append(f"mean concurrency {mt.mean_concurrency:.1f} of {mt.parallel} asked")
    if ol is not None and ol.rate_ok is False:
        symptoms.append("achieved rate off target")
    # the load generator is the bottleneck only when it is itself saturated: a core's worth of
    # CPU, or the symptoms while it is busy; lag while it idles is the host's doing; and a client
    # busy sending requests that fail at once is the server's story (see `failures`), not its own
    failing = (mt.error_rate or 0) > t.max_failed_share_for_client
    if not failing and (cpu >= t.client_cpu_bound or (symptoms and cpu >= t.client_busy)):
        reasons = ([f"load generator at {cpu * 100:.0f}% of a core"] if cpu >= t.client_busy else []) + symptoms
        out.append(_check("client_bound", s, "client_bound", "invalid",
                          "the load generator was the bottleneck: " + "; ".join(reasons)
                          + " (add client_processes, or run the client on another host)", cpu, t.client_cpu_bound))
    elif lag > t.client_loop_lag_ms:
        out.append(_check("host_contention", s, "host_busy", "warning",
                          f"event-loop lag p99 {lag:.1f} ms while the load generator used {cpu * 100:.1f}% of a core: "
                          "other processes took the CPU (see the diagnosis for which)", lag, t.client_loop_lag_ms))
    return out


def point_checks(point: str, inter: Interference, phases: dict[str, dict[str, PhaseMetrics]] | None = None,
                 t: Thresholds = THRESHOLDS) -> list[Check]:
    """The checks of a point's co-located instances together. `phases` (with their validity)
    decides whether the scaling can be judged at all."""
    s = Subject(point=point)
    out = []
    n, scaling = inter.instances, inter.throughput_scaling
    if scaling is not None and scaling > t.above_ideal_fraction * n:
        out.append(_check("baseline", s, "above_ideal", "warning",
                          f"{scaling:.2f}x is above the ideal {n}x: the solo baselines ran slower than the co-located "
                          "run, so something else loaded the host or device during them; repeat before trusting the "
                          "slowdowns", scaling, n))
    if scaling is not None:
        out.append(_scaling_check(s, inter, phases or {}, t))
    bound = inter.bandwidth_bound
    if bound is not None and bound.scaling_bound and scaling is not None:
        iv = inter.throughput_scaling_interval
        # above only when the whole interval is: a point estimate just over the bound is noise
        above = scaling > bound.scaling_bound and (iv is None or iv[0] > bound.scaling_bound)
        where = ("above" if above else "near" if bound.near_bound or scaling > bound.scaling_bound else "far below")
        out.append(_check("hardware_bound", s, {"near": "near_bound", "above": "above_bound"}.get(where, "below_bound"),
                          "warning" if where == "above" else "info",
                          f"the device's bandwidth allows at most {bound.scaling_bound:.2f}x for these instances; "
                          f"{scaling:.2f}x is {where} that bound"
                          + (": the bytes model or the peak figure is off" if where == "above" else ""),
                          scaling, bound.scaling_bound))
    if inter.fairness is not None:
        fair = inter.fairness >= t.fairness
        out.append(_check("fairness", s, "fair" if fair else "unfair", "info",
                          f"Jain's fairness {inter.fairness:.3f} over the instances' kept share of solo throughput",
                          inter.fairness, t.fairness))
    return out


def _scaling_check(s: Subject, inter: Interference, phases: dict[str, dict[str, PhaseMetrics]],
                   t: Thresholds) -> Check:
    """ok / bottleneck / inconclusive by the scaling's interval against the line, or not judged."""
    n, scaling, interval = inter.instances, inter.throughput_scaling, inter.throughput_scaling_interval
    line = t.scaling_bottleneck_fraction * n
    invalid = [f"{name} ({phase})" for phase, by in phases.items() for name, mt in by.items()
               if mt.validity is not None and mt.validity.verdict == "INVALID"]
    shown = f"{scaling:.2f}x" + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else " (no interval: fewer "
                                                                                             "than 3 repetitions)")
    if invalid:
        return _check("scaling", s, "not_judged", "warning",
                      f"{shown} aggregate throughput for {n} instances is not judged: {', '.join(invalid)} "
                      "INVALID", scaling, line)
    low, high = interval if interval else (scaling, scaling)
    if low >= line:
        verdict, level, said = "ok", "ok", f"at least {line:.2f}x"
    elif high < line:
        verdict, level, said = "bottleneck", "warning", f"below {line:.2f}x: a shared bottleneck"
    else:
        verdict, level, said = "inconclusive", "warning", f"its interval straddles {line:.2f}x: repeat with more " \
                                                          "repetitions to decide"
    return _check("scaling", s, verdict, level, f"{shown} aggregate throughput for {n} instances (ideal {n}x; {said})",
                  scaling, line)


def validity(mt: PhaseMetrics, checks: list[Check]) -> Validity:
    """A phase's verdict from its checks: INVALID when any of them is."""
    head = headline(mt)
    cv, reps = stability_cv(mt)
    return Validity(verdict="INVALID" if any(c.level == "invalid" for c in checks) else "VALID",
                    stability=stability_band(cv, reps), headline=head, cv_pct=cv * 100 if cv is not None else None,
                    reasons=[c.sentence for c in checks if c.level == "invalid"],
                    warnings=[c.sentence for c in checks if c.level == "warning"])
