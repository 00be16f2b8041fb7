"""Predicting co-location from solo profiles: how much instances will slow each other, before
anyone runs them together.

Each instance comes with its solo profile (`analysis.instance_profile`): its demand on each
shared resource at its load, its latency alone, and, once characterised, its sensitivity curves
(slowdown beside a pressure probe at a few levels). For instance i among partners J:

1. **Pressure.** On each resource r, the pressure i will have beside it is what its partners ask
   alone: P_r = sum over j in J of demand_j,r (at given rates: demand per request x rate). Solo
   demand is the right measure for open-loop partners (a work-conserving device does the same
   work per request whoever else is there); a closed-loop partner asks as much as it gets, and its
   solo demand is the most it can ask.
2. **Physics per resource**, from the demands alone:
   - prefill (`compute`) is first come, first served and pauses decoding. TTFT: an M/G/1 queue of
     every instance's prefills, each job j seconds (compute demand per request); the wait's mean
     is sum(rho_k j_k / 2) / (1 - rho) and its tail rho exp(-w / theta) (theta = mean / rho), so
     TTFT_q together = TTFT_q alone + w_q(together) - w_q(alone) (`wait_quantile`). TPOT: the
     prefills arriving while a request decodes pause it, K_k ~ Poisson(rate_k x decode time) of
     them, each for its job; the q-quantile of the pauses (own and partners', convolved), spread
     over the request's tokens, on top of its unpaused decode (its solo TPOT less its own
     pauses), with the decode time a fixed point of the pauses (`tpot_with_stalls_ms`). Without
     job sizes: processor sharing, (1 - u) / (1 - u - P). At u + P >= 1: saturated (said so, the
     factor capped at `SATURATED_FACTOR`);
   - the decode budget (`memory_bandwidth`) is shared equally by the streams decoding: a token of
     i takes token_s x k / d seconds with k streams (its own and the partners', each partner's
     streams its rate x output tokens x TPOT, itself predicted: `predict` iterates that fixed
     point) and d the time prefill leaves; alone, k its own streams. Without stream counts: no
     loss while the demands fit in d, the excess ratio past it (TPOT; TTFT untouched);
   - host CPU (cores C of the host): for an open loop the cores as an M/M/c queue (requests arrive
     at random, so a server waits whenever every core is busy: Erlang C): factor R(C, u + P) /
     R(C, u), R the mean response over service time (on one core (1 - u) / (1 - u - P), processor
     sharing), saturated past C; for a closed loop (workers always busy, nothing arrives to wait)
     max(1, (u + P) / C) / max(1, u / C);
   - `device_time` is the coarse fallback, as processor sharing: used only where neither
     `compute` nor `memory_bandwidth` is known (they split the same time).
3. **Corrected by the instance's own curves.** Where i was characterised on r, each probe level's
   measured slowdown over the physics at that level (the probe as the only partner, with its own
   job size) is a correction; the correction at P (linear between levels, 1 at 0, the last one
   held past the last level) multiplies the physics of the real partners. A decode curve is read
   by streams (the probe's against the partners'), since what an equally shared budget charges
   depends on how many streams share it. The physics carries what
   differs between a probe and a partner (their job sizes), the curve what the physics misses
   (costs no solo profile shows: two models' weights thrashing a cache, a crowded KV cache).
4. **Combination.** The factors multiply (independent delays on independent resources). An open
   loop keeps its throughput unless some resource saturates; a closed loop's throughput falls as
   its end-to-end time grows (TTFT and TPOT factors weighted by its own TTFT and decode time).
5. **The driver** is the resource whose factor is largest, said in its unit ("memory bandwidth:
   together 1.30x the peak").

The interval of each predicted figure adds, on the log scale, the instance's own repetition noise
(its coefficient of variation: the measured co-located figure has it too), the curve's own
interval at P (interpolated), and the predictor's error (`MODEL_ERROR`: with a curve, without
one), as `benchmarks/predict.py` measured it on held-out models. SLO attainment is predicted by
scaling the solo latency quantiles (p50 factor below the median, p99 factor above p90) and
reading each objective's share; "meets" is said only when the attainment at the interval's slow
end reaches the target, "misses" when even its fast end does not, else "inconclusive".

The capacity region of a pair under SLOs (`predict_region`) needs each instance's solo SLO
capacity (what `colobench capacity` measured alone). Along each ray of shares f, rate_i =
s f_i cap_i, and i keeps its SLO while rate_i <= cap_i x (1 - the device share its partners' work
takes at their rates: their prefill and decode seconds per request times their rates): the
device time-sliced, each instance's capacity shrunk by what the others take. (Judging each point
by the predicted SLO attainment from the instances' profiles at the rates their solo probes ran
at fell 53% from the measured boundary on the fake shared device, time-slicing 7%: the SLO
capacity there is set by more than the device, which the measured capacities carry.)
"""

from __future__ import annotations

import math
from typing import Literal

from colobench.analysis.instance_profile import InstanceProfile, Observation, Quantiles, profile_of
from pydantic import Field

from colobench.analysis.model import Model, PredictedSlowdown, Schemed, Summary

PREDICTION_SCHEMA = "colobench.prediction/1"
NO_DEMAND = ("the solo profiles measured no shared demand (no device telemetry, no device counters in the "
             "server's /metrics, no host CPU of an in-process worker): nothing to predict from")
KEYS: tuple[str, ...] = ("ttft_p50", "ttft_p99", "tpot_p50", "tpot_p99", "output_throughput")
LATENCY_KEYS = KEYS[:4]
TIME_SLICED = ("device_time", "compute")
BUDGET = ("memory_bandwidth",)
SATURATED_FACTOR = 10.0
SELF_LOAD_TOLERANCE = 0.05  # an asked rate within 5% of the profiled one is the profiled one
TWIN_SUFFIX = " (its load past the profile's)"
# the predictor's own error (log scale, one standard deviation): the root-mean-square log error of
# each figure's p50 over the 30 instance-pairs of benchmarks/predict.py's fake shared device
# (docs/benchmarks.md, 2026-12-05), with every pressure read off the instance's curves, and from
# physics alone; a p99 takes its p50's (not measured apart)
MODEL_ERROR = {"curve": {"ttft": 0.05, "tpot": 0.18, "output": 0.06},
               "physics": {"ttft": 0.06, "tpot": 0.32, "output": 0.06}}
Z95 = 1.96
DEFAULT_TARGET = 0.99


class ResourceEffect(Model):
    resource: str
    own: float
    pressure: float
    capacity: float  # 1 (a share), or the host's cores
    factor: dict[str, float] = {}
    method: str  # curve, curve (extrapolated), physics
    saturated: bool = False


class PredictedInstance(Model):
    instance: str
    partners: list[str]
    rate: float | None = None  # req/s the prediction is for (None: the profile's load)
    effects: list[ResourceEffect] = []
    slowdown: dict[str, float] = {}
    intervals: dict[str, tuple[float, float]] = {}
    predicted: dict[str, float | None] = {}  # ttft_p50_ms, ..., output_tok_s: co-located figures
    solo: dict[str, float | None] = {}
    slo: dict[str, float] | None = None
    slo_attainment: float | None = None
    slo_attainment_interval: tuple[float, float] | None = None
    slo_verdict: Literal["meets", "misses", "inconclusive"] | None = None
    driver: str | None = None
    driver_sentence: str = ""
    saturated: bool = False
    observed_in: str | None = None  # a measured co-location corrected it (`colobench place --verify`)


class RegionPoint(Model):
    share: float
    rates: dict[str, float]
    load: float  # sum of rate_i / cap_i at the boundary (1.0 = perfect sharing)
    limited_by: str  # instance: resource


class PredictedRegion(Model):
    instances: list[str]
    solo_caps: dict[str, float]
    boundary: list[RegionPoint] = []
    sharing_efficiency: float | None = None


class Prediction(Schemed):
    schema_version: str = Field(PREDICTION_SCHEMA, alias="schema")
    target: float = DEFAULT_TARGET
    instances: dict[str, PredictedInstance] = {}
    region: PredictedRegion | None = None
    notes: list[str] = []


# ---- one resource's factor ----------------------------------------------------------------------

class Load(Model):
    """What one instance puts on a resource: its share, and for prefill (time-sliced, first come
    first served) the seconds one of its requests holds the device (None: not known)."""

    share: float = 0.0
    job_s: float | None = None
    streams: float | None = None  # memory_bandwidth: mean requests decoding at once
    token_s: float | None = None  # memory_bandwidth: seconds of the whole budget one output token takes


def wait_quantile(loads: list[Load], q: float) -> float:
    """The q-quantile of the wait in a first-come first-served queue of these loads (M/G/1:
    mean wait sum(rho_k R_k) / (1 - rho), R_k = job_k / 2 the mean residual of a fixed job; tail
    P(W > w) = rho exp(-w / theta), theta = mean / rho). Infinite at rho >= 1."""
    rho = sum(x.share for x in loads)
    if rho <= 0:
        return 0.0
    if rho >= 1:
        return math.inf
    mean = sum(x.share * (x.job_s or 0.0) / 2 for x in loads) / (1 - rho)
    theta = mean / rho
    return theta * math.log(rho / (1 - q)) if rho > 1 - q else 0.0


def poisson_quantile(mean: float, q: float) -> int:
    """The smallest k with P(K <= k) >= q for K ~ Poisson(mean) (summed term by term: the means
    here are small, and this keeps scipy out of the predictor)."""
    if mean <= 0:
        return 0
    if mean > 500:  # normal approximation far out
        return max(0, round(mean + math.sqrt(mean) * (2.33 if q > 0.9 else 0.0)))
    k, term = 0, math.exp(-mean)
    total = term
    while total < q:
        k += 1
        term *= mean / k
        total += term
    return k


MAX_POINTS = 400  # the pause distribution's support, at most (binned past it)


def stall_quantile_s(sources: list[tuple[float, float]], decode_s: float, q: float) -> float:
    """The q-quantile of the time a request's decode is paused by prefills: each source (rate a
    second, pause in seconds) lands K ~ Poisson(rate x decode_s) prefills in it; the pauses add
    (the distribution of the sum, by convolution: the counts here are small)."""
    dist = {0.0: 1.0}
    for rate, pause_s in sources:
        mean = rate * decode_s
        if mean <= 0 or pause_s <= 0:
            continue
        pmf, k, term, total = [], 0, math.exp(-mean), 0.0
        while total < 1 - 1e-6 and k < 400:
            pmf.append((k * pause_s, term))
            total += term
            k += 1
            term *= mean / k
        merged: dict[float, float] = {}
        for a, pa in dist.items():
            for b, pb in pmf:
                if pa * pb > 1e-9:
                    merged[a + b] = merged.get(a + b, 0.0) + pa * pb
        if len(merged) > MAX_POINTS:  # many sources: onto a grid of MAX_POINTS steps (keeps it linear)
            step = max(merged) / MAX_POINTS
            binned: dict[float, float] = {}
            for value, prob in merged.items():
                key = math.ceil(value / step - 1e-9) * step  # rounded up: a quantile never shrinks
                binned[key] = binned.get(key, 0.0) + prob
            merged = binned
        dist = merged
    total = 0.0
    for value in sorted(dist):
        total += dist[value]
        if total >= q - 1e-9:
            return value
    return max(dist)


def tpot_with_stalls_ms(solo_ms: float, tokens: float, alone: list[Load], together: list[Load], q: float) -> float:
    """TPOT at quantile q with the prefills of `together` instead of `alone` (own first in both):
    the solo figure less its own stalls is the unpaused decode; each prefill arriving while the
    request decodes pauses it for its job; the decode grows with the pauses, and so do the
    prefills landing in it (a few rounds of that fixed point)."""
    def sources(loads: list[Load]) -> list[tuple[float, float]]:
        return [(x.share / x.job_s, x.job_s) for x in loads if x.job_s]
    if sum(x.share for x in together) >= 1:
        return math.inf
    solo_stall = stall_quantile_s(sources(alone), tokens * solo_ms / 1e3, q) * 1e3 / tokens
    base = max(0.3 * solo_ms, solo_ms - solo_stall)
    tpot = solo_ms
    for _ in range(4):
        tpot = base + stall_quantile_s(sources(together), tokens * tpot / 1e3, q) * 1e3 / tokens
    return tpot


def physics_factor(resource: str, key: str, own: Load, others: list[Load], capacity: float = 1.0,
                   solo_ms: float | None = None, decode_left: float = 1.0,
                   decode_tokens: float | None = None, queued: bool = False) -> tuple[float, bool]:
    """(slowdown of `key`, saturated) on `resource` from its physics (module docstring). `solo_ms`:
    the instance's own solo figure of `key` (TTFT waits are added to it); `decode_left`: the share
    of time prefill leaves to decoding (the budget of `memory_bandwidth` is only there then)."""
    pressure = sum(x.share for x in others)
    if pressure <= 0:
        return 1.0, False
    if resource in TIME_SLICED:
        left = 1.0 - own.share - pressure
        if left <= 0:
            return SATURATED_FACTOR, True
        if key.startswith("ttft") and resource == "compute" and solo_ms and own.job_s is not None \
                and all(x.job_s is not None for x in others):
            q = 0.5 if key.endswith("p50") else 0.99
            extra_s = wait_quantile([own, *others], q) - wait_quantile([own], q)
            return min(SATURATED_FACTOR, 1.0 + max(0.0, extra_s) * 1e3 / solo_ms), False
        if key.startswith("tpot") and resource == "compute" and solo_ms and decode_tokens and decode_tokens >= 1 \
                and own.job_s and all(x.job_s for x in others):
            q = 0.5 if key.endswith("p50") else 0.99
            tpot = tpot_with_stalls_ms(solo_ms, decode_tokens, [own], [own, *others], q)
            return min(SATURATED_FACTOR, max(1.0, tpot / solo_ms)), False
        return min(SATURATED_FACTOR, (1.0 - own.share) / left), False
    if resource in BUDGET:
        together = (own.share + pressure) / max(1e-9, decode_left)
        if key.startswith("ttft"):
            return 1.0, together > 1
        if solo_ms and own.token_s and own.streams is not None and all(x.streams is not None for x in others):
            # a budget shared equally by the streams decoding: a token of i takes token_s x k / d
            # seconds with k streams, d the time prefill leaves; alone only its own streams
            k_alone = max(1.0, own.streams)
            k_together = k_alone + sum(x.streams or 0.0 for x in others)
            alone_ms = own.token_s * k_alone / max(1e-9, decode_left + pressure) * 1e3
            together_ms = own.token_s * k_together / max(1e-9, decode_left) * 1e3
            return min(SATURATED_FACTOR, max(solo_ms, together_ms) / max(solo_ms, alone_ms)), together > 1
        alone = own.share / max(1e-9, decode_left + pressure)  # what prefill left it alone, roughly
        return min(SATURATED_FACTOR, max(1.0, together) / max(1.0, alone)), together > 1
    together = own.share + pressure  # host_cpu: cores of the host
    if not queued:  # closed loop: workers always busy, no arrivals to queue: each wants its cores
        return max(1.0, together / capacity) / max(1.0, own.share / capacity), together > capacity
    if together >= capacity:
        return min(SATURATED_FACTOR, max(SATURATED_FACTOR / 2, together / capacity)), True
    # requests arrive at random, so the cores are a queue (M/M/c, c the cores): a process waits when
    # every core is busy (Erlang C), which one core shared by servers at 60% feels long before the
    # fluid `together <= capacity` says anything (on one core: (1 - own) / (1 - together))
    return min(SATURATED_FACTOR, _response_factor(capacity, together) / _response_factor(capacity, own.share)), False


def _response_factor(cores: float, load: float) -> float:
    """Mean response over service time of an M/M/c queue with `load` cores offered on `cores`."""
    c = max(1, math.floor(cores))
    a = min(load * c / cores, c * (1 - 1e-9))  # the load on the whole cores the queue has
    if a <= 0:
        return 1.0
    term, total = 1.0, 1.0  # a^k / k!, summed for k < c
    for k in range(1, c):
        term *= a / k
        total += term
    last = term * a / c * c / (c - a)
    wait = last / (total + last)  # Erlang C: the chance a request waits
    return 1.0 + wait / (c - a)


def _by_streams(profile: InstanceProfile, resource: str, others: list[Load]) -> bool:
    """A decode curve is read by streams, not share, where both sides know theirs: what a budget
    shared equally by streams charges depends on how many there are (a partner of cheap tokens has
    many streams for its share; the probe's cost one budget token each)."""
    levels = profile.sensitivity.get(resource, [])
    return (resource in BUDGET and bool(levels) and all(lv.probe_streams for lv in levels)
            and all(x.streams is not None for x in others))


def _corrections(profile: InstanceProfile, resource: str, key: str, own: Load, capacity: float,
                 solo_ms: float | None, decode_tokens: float | None = None,
                 by_streams: bool = False) -> list[tuple[float, float, float]]:
    """(level, measured / physics at that level, log half-width) of the instance's curve, through
    (0, 1, 0): how far its own probe runs sat from the physics, which corrects the physics of the
    partner (a probe's job size and a partner's differ; the hidden costs they share do not). The
    level is the probe's share, or its streams (`_by_streams`)."""
    out = [(0.0, 1.0, 0.0)]
    for lv in profile.sensitivity.get(resource, []):
        value = lv.slowdown.get(key)
        if value is None or value <= 0 or lv.level <= 0:
            continue
        if key.startswith("ttft") and resource == "compute" and lv.probe_job_s is None:
            continue  # the probe's prefill size is unknown: its waits cannot be told from the partner's
        probe = Load(share=lv.level, job_s=lv.probe_job_s, streams=lv.probe_streams)
        phys, saturated = physics_factor(resource, key, own, [probe], capacity, solo_ms, decode_tokens=decode_tokens,
                                         queued=profile.load.mode == "open")
        if saturated or phys <= 0:
            continue
        iv = lv.intervals.get(key)
        half = (math.log(iv[1]) - math.log(iv[0])) / 2 if iv and iv[0] > 0 else 0.0
        out.append((float(lv.probe_streams) if by_streams else lv.level, value / phys, half))
    return sorted(out)


def resource_factor(profile: InstanceProfile, resource: str, key: str, own: Load, others: list[Load],
                    capacity: float = 1.0, solo_ms: float | None = None, decode_left: float = 1.0,
                    decode_tokens: float | None = None) -> tuple[float, float, str, bool]:
    """(factor, log half-width of the curve's interval there, method, saturated): the physics of
    the partners' load, corrected by the instance's sensitivity curve where it has one."""
    phys, saturated = physics_factor(resource, key, own, others, capacity, solo_ms, decode_left, decode_tokens,
                                     queued=profile.load.mode == "open")
    by_streams = _by_streams(profile, resource, others)
    pressure = sum((x.streams or 0.0) if by_streams else x.share for x in others)
    points = _corrections(profile, resource, key, own, capacity, solo_ms, decode_tokens, by_streams)
    if len(points) < 2 or pressure <= 0:
        return phys, 0.0, "physics", saturated
    for (x0, c0, h0), (x1, c1, h1) in zip(points, points[1:]):
        if pressure <= x1:
            w = (pressure - x0) / (x1 - x0) if x1 > x0 else 1.0
            return _clamp(phys * (c0 + w * (c1 - c0))), h0 + w * (h1 - h0), "curve", saturated
    _, c_last, h_last = points[-1]
    return _clamp(phys * c_last), h_last, "curve (extrapolated)", saturated


def _clamp(factor: float) -> float:
    """A partner never speeds an instance up here (a curve's correction below 1 is the physics
    overshooting, not a gain), nor slows it past `SATURATED_FACTOR`."""
    return min(SATURATED_FACTOR, max(1.0, factor))


# ---- one instance among partners ------------------------------------------------------------------

def _used_resources(profiles: list[InstanceProfile]) -> list[str]:
    fine = any(r in p.demand for p in profiles for r in ("compute", "memory_bandwidth"))
    used = [r for r in ("compute", "memory_bandwidth", "host_cpu") if any(r in p.demand for p in profiles)]
    return used if fine else ["device_time", *used]


def _scaled(q: Quantiles | None, f50: float, f99: float) -> Quantiles | None:
    if q is None:
        return None
    return Quantiles(mean=q.mean * f50 if q.mean is not None else None,
                     **{k: (v * (f50 if k in ("min", "p50") else f99) if v is not None else None)
                        for k, v in (("min", q.min), ("p50", q.p50), ("p90", q.p90), ("p99", q.p99), ("max", q.max))})


def slo_attainment(profile: InstanceProfile, factors: dict[str, float]) -> float | None:
    """The share of requests predicted to meet every objective (independent objectives: their
    shares multiply, which is conservative when slow TTFT and slow TPOT come together)."""
    if not profile.slo:
        return None
    lat = profile.latency
    shapes = {"ttft_ms": _scaled(lat.ttft_ms, factors["ttft_p50"], factors["ttft_p99"]),
              "tpot_ms": _scaled(lat.tpot_ms, factors["tpot_p50"], factors["tpot_p99"]),
              "e2el_ms": _scaled(lat.e2el_ms, max(factors["ttft_p50"], factors["tpot_p50"]),
                                 max(factors["ttft_p99"], factors["tpot_p99"]))}
    share = 1.0
    for objective, limit in profile.slo.items():
        q = shapes.get(objective)
        below = q.share_below(limit) if q is not None else None
        if below is None:
            return None
        share *= below
    return share


def _sentence(e: ResourceEffect) -> str:
    together = e.own + e.pressure
    if e.resource == "host_cpu":
        return f"host CPU: together {together:.2f} cores of {e.capacity:g}"
    if e.resource in BUDGET:
        return f"memory bandwidth: together {together:.2f}x the peak"
    name = "compute" if e.resource == "compute" else "device time"
    return f"{name}: partners keep the device busy {e.pressure:.0%} of the time, {together:.0%} together"


def solo_ms(profile: InstanceProfile, key: str) -> float | None:
    """The profile's solo figure of a latency key (`tpot_p99`: its TPOT p99 in ms)."""
    metric, _, q = key.partition("_")
    shape = getattr(profile.latency, f"{metric}_ms", None)
    return getattr(shape, q, None) if shape is not None else None


OBSERVED_RATE_TOLERANCE = 0.2  # an observation stands for rates within 20% of those it ran at


def observed(profile: InstanceProfile, partners: list[str], rates: dict[str, float]) -> Observation | None:
    """The latest measured co-location of `profile` beside exactly `partners` at about `rates`."""
    want = sorted(n for n in partners if not n.endswith(TWIN_SUFFIX))
    for seen in reversed(profile.observed):
        if sorted(seen.partners) != want:
            continue
        if all(abs(rates.get(n, r) / r - 1) <= OBSERVED_RATE_TOLERANCE for n, r in seen.rates.items() if r):
            return seen
    return None


def observation(profile: InstanceProfile, partners: list[str], rates: dict[str, float],
                measured_ms: dict[str, float | None], predicted: dict[str, float], slo_attainment: float | None = None,
                run_dir: str | None = None, unmeasured_factor: float | None = None) -> Observation:
    """A co-location measured beside `partners` at `rates`, as the profile keeps it: each latency
    figure measured (ms) over the profile's solo one, beside what was predicted. A figure not
    measured counts as `unmeasured_factor` (a device too overloaded to finish its requests:
    `SATURATED_FACTOR`), or is left out."""
    measured = {}
    for k in LATENCY_KEYS:
        ms, solo = measured_ms.get(k), solo_ms(profile, k)
        measured[k] = ms / solo if ms is not None and solo else unmeasured_factor
    return Observation(partners=list(partners), rates=dict(rates), measured=measured,
                       predicted={k: predicted.get(k) for k in LATENCY_KEYS}, slo_attainment=slo_attainment,
                       run_dir=run_dir)


def predict_instance(profile: InstanceProfile, partners: list[InstanceProfile], rates: dict[str, float] | None = None,
                     host_cores: float | None = None, target: float = DEFAULT_TARGET,
                     partner_tpot: dict[str, float] | None = None) -> PredictedInstance:
    """Instance `profile` co-located with `partners`, each at its profiled load or at `rates`;
    `partner_tpot`: each partner's own predicted TPOT factor (a slower partner keeps more streams
    decoding: the fixed point `predict` iterates)."""
    rates = rates or {}
    partner_tpot = partner_tpot or {}
    own_rate, measured_rate = rates.get(profile.instance), profile.load.request_rate
    if (own_rate is not None and measured_rate and profile.load.mode == "open"
            and own_rate > measured_rate * (1 + SELF_LOAD_TOLERANCE)):
        # asked for more than its profile measured: the extra requests are a partner of its own
        # shape (they queue for the same prefill and share the same decode budget), and its solo
        # figures stand for the measured rate. Less than measured is left at the measured figures:
        # the physics has no solo baseline below them (conservative).
        twin = profile.model_copy(update={"instance": f"{profile.instance}{TWIN_SUFFIX}"})
        partners = [*partners, twin]
        rates = {**rates, profile.instance: measured_rate, twin.instance: own_rate - measured_rate}
        partner_tpot = {**partner_tpot, twin.instance: partner_tpot.get(profile.instance, 1.0)}

    def load(p: InstanceProfile, r: str) -> Load:
        rate = rates.get(p.instance)
        per = p.per_request(r)
        share = per * rate if rate is not None and per is not None else p.demand_of(r)
        if r == "compute":
            return Load(share=share, job_s=per)
        if r in BUDGET:
            tokens = max(0.0, (p.load.mean_output_tokens or 1.0) - 1.0)
            tpot_s = (p.latency.tpot_ms.p50 or 0.0) / 1e3 if p.latency.tpot_ms is not None else 0.0
            req_s = rate if rate is not None else p.load.request_rate
            streams = req_s * tokens * tpot_s if req_s is not None and p.load.mode == "open" else p.load.concurrency
            if streams is not None and p is not profile:
                streams *= partner_tpot.get(p.instance, 1.0)
            return Load(share=share, streams=streams, token_s=per / tokens if per is not None and tokens else None)
        return Load(share=share)

    cores = host_cores or max((p.host_cores or 0 for p in [profile, *partners]), default=0) or 1.0
    factors = {k: 1.0 for k in KEYS}
    log_var = {k: 0.0 for k in KEYS}
    effects, methods = [], set()
    compute_total = load(profile, "compute").share + sum(load(p, "compute").share for p in partners)
    decode_tokens = max(0.0, (profile.load.mean_output_tokens or 1.0) - 1.0)
    for r in _used_resources([profile, *partners]):
        own, others = load(profile, r), [load(p, r) for p in partners]
        pressure = sum(x.share for x in others)
        capacity = cores if r == "host_cpu" else 1.0
        eff: dict[str, float] = {}
        saturated = False
        used = set()
        for k in LATENCY_KEYS:
            f, half, how, sat = resource_factor(profile, r, k, own, others, capacity, solo_ms(profile, k),
                                                max(0.0, 1.0 - compute_total), decode_tokens)
            eff[k], saturated = f, saturated or sat
            used.add(how)
            factors[k] *= f
            log_var[k] += (half / Z95) ** 2
        method = next((m for m in ("curve", "curve (extrapolated)") if m in used), "physics")
        effects.append(ResourceEffect(resource=r, own=own.share, pressure=pressure, capacity=capacity, factor=eff,
                                      method=method, saturated=saturated))
        if pressure > 0:
            methods.add("curve" if method.startswith("curve") else "physics")
    seen = observed(profile, [p.instance for p in partners], rates)
    if seen is not None:  # this co-location was measured: the measurement corrects the physics
        for k in LATENCY_KEYS:
            m, pr = seen.measured.get(k), seen.predicted.get(k)
            if m and pr:
                factors[k] *= m / pr
        methods.add("observed")
    for k in LATENCY_KEYS:
        factors[k] = min(SATURATED_FACTOR, factors[k])
    saturated = any(e.saturated for e in effects)
    lat = profile.latency
    if profile.load.mode == "open":
        worst = max((e.own + e.pressure) / e.capacity for e in effects) if effects else 0.0
        factors["output_throughput"] = 1.0 / worst if saturated and worst > 1 else 1.0
    else:
        ttft = lat.ttft_ms.p50 if lat.ttft_ms is not None and lat.ttft_ms.p50 is not None else 0.0
        decode = (lat.tpot_ms.p50 or 0.0) * max(0.0, (profile.load.mean_output_tokens or 1) - 1) \
            if lat.tpot_ms is not None else 0.0
        total = ttft + decode
        e2e = (ttft * factors["ttft_p50"] + decode * factors["tpot_p50"]) / total if total else factors["tpot_p50"]
        factors["output_throughput"] = 1.0 / e2e
        log_var["output_throughput"] = log_var["tpot_p50"]
    errors = MODEL_ERROR["curve" if methods == {"curve"} else "physics"]
    intervals = {}
    for k in KEYS:
        noise = profile.noise.get(k, 0.0)
        model_sd = errors[k.split("_")[0]] if methods else 0.0
        half = Z95 * math.sqrt(log_var[k] + noise ** 2 + model_sd ** 2)
        intervals[k] = (factors[k] * math.exp(-half), factors[k] * math.exp(half))
    solo = {"ttft_p50_ms": lat.ttft_ms.p50 if lat.ttft_ms else None, "ttft_p99_ms": lat.ttft_ms.p99 if lat.ttft_ms else None,
            "tpot_p50_ms": lat.tpot_ms.p50 if lat.tpot_ms else None, "tpot_p99_ms": lat.tpot_ms.p99 if lat.tpot_ms else None,
            "output_tok_s": profile.load.output_tok_s}
    predicted = {name: (value * factors[key] if value is not None else None)
                 for (name, value), key in zip(solo.items(), KEYS)}
    attainment = slo_attainment(profile, factors)
    verdict, span = None, None
    if attainment is not None:
        slow = slo_attainment(profile, {k: intervals[k][1] for k in KEYS}) or 0.0
        fast = slo_attainment(profile, {k: intervals[k][0] for k in KEYS}) or 0.0
        span = (slow, fast)
        verdict = "meets" if slow >= target else "misses" if fast < target else "inconclusive"
    active = [e for e in effects if e.pressure > 0]
    driver = max(active, key=lambda e: max(e.factor.values(), default=1.0), default=None)
    return PredictedInstance(
        instance=profile.instance, partners=[p.instance for p in partners], rate=rates.get(profile.instance),
        effects=effects, slowdown=factors, intervals=intervals, predicted=predicted, solo=solo, slo=profile.slo,
        slo_attainment=attainment, slo_attainment_interval=span, slo_verdict=verdict,
        driver=driver.resource if driver is not None else None,
        driver_sentence=(_sentence(driver) if driver is not None else "no shared demand measured")
        + (f"; corrected by the co-location measured in {seen.run_dir or 'a verify run'}" if seen is not None else ""),
        saturated=saturated, observed_in=seen.run_dir if seen is not None else None)


def predict(profiles: list[InstanceProfile], rates: dict[str, float] | None = None, host_cores: float | None = None,
            target: float = DEFAULT_TARGET) -> Prediction:
    """Every instance of `profiles` co-located with all the others."""
    names = [p.instance for p in profiles]
    if len(set(names)) != len(names):
        raise ValueError(f"two profiles of one instance name ({', '.join(sorted(n for n in set(names) if names.count(n) > 1))}): "
                         "rename one: NAME=FILE")
    notes = []
    if not any(p.demand for p in profiles):
        notes.append(NO_DEMAND + "; the slowdowns below are the noise alone")
    for p in profiles:
        if not p.valid:
            notes.append(f"{p.instance}: its solo run was INVALID; the prediction rests on unstable figures")
        if not p.sensitivity:
            notes.append(f"{p.instance}: no sensitivity curves (run `colobench characterize`): physics only")
    out: dict[str, PredictedInstance] = {}
    factors: dict[str, float] = {}
    for _ in range(3):  # a slower partner decodes longer, so more of its streams share the budget
        out = {p.instance: predict_instance(p, [q for q in profiles if q is not p], rates, host_cores, target, factors)
               for p in profiles}
        factors = {name: inst.slowdown["tpot_p50"] for name, inst in out.items()}
    return Prediction(target=target, instances=out, notes=notes)


# ---- the capacity region --------------------------------------------------------------------------

def device_s_per_request(p: InstanceProfile) -> float:
    """Device seconds one request of `p` takes: prefill and decode work, or its device time."""
    fine = [x for r in ("compute", "memory_bandwidth") if (x := p.per_request(r)) is not None]
    if fine:
        return sum(fine)
    return p.per_request("device_time") or 0.0


def _holds(profiles: list[InstanceProfile], caps: dict[str, float], rates: dict[str, float]) -> str | None:
    """None when every instance keeps its SLO at `rates`, else "instance: why": time-slicing, each
    instance's capacity shrinks by the share of the device its partners' work takes."""
    for p in profiles:
        taken = sum(device_s_per_request(q) * rates[q.instance] for q in profiles if q is not p)
        if rates[p.instance] > caps[p.instance] * max(0.0, 1.0 - taken) * (1 + 1e-9):
            return f"{p.instance}: partners take {taken:.0%} of the device"
    return None


def predict_region(profiles: list[InstanceProfile], caps: dict[str, float], shares: list[float]) -> PredictedRegion:
    """The predicted boundary of two instances' region along rays of `shares` (A's share f), by
    time-slicing (`_holds`)."""
    if len(profiles) != 2:
        raise ValueError("the region is predicted for two instances")
    a, b = (p.instance for p in profiles)
    boundary = []
    for f in shares:
        def rates_at(scale: float) -> dict[str, float]:
            return {a: scale * f * caps[a], b: scale * (1 - f) * caps[b]}

        def bad(scale: float) -> str | None:
            return _holds(profiles, caps, rates_at(scale))
        lo, hi = 0.0, 4.0
        if bad(hi) is None:
            lo = hi
        else:
            for _ in range(30):
                mid = (lo + hi) / 2
                if bad(mid) is None:
                    lo = mid
                else:
                    hi = mid
        why = bad(lo * 1.001 + 1e-9) or "beyond the searched range"
        boundary.append(RegionPoint(share=f, rates=rates_at(lo), load=lo, limited_by=why))
    eff = sum(p.load for p in boundary) / len(boundary) if boundary else None
    return PredictedRegion(instances=[a, b], solo_caps=caps, boundary=boundary, sharing_efficiency=eff)


# ---- beside a measured co-located run -------------------------------------------------------------

def with_predictions(summary: Summary, curves: dict[str, InstanceProfile] | None = None,
                     host_cores: int | None = None) -> Summary:
    """`summary` with every co-located point's `interference.predicted`: the slowdown its solo
    phases predicted (with the sensitivity curves of `curves`, matched by instance name, where
    given), and how far the measurement fell from it."""
    curves = curves or {}
    points = []
    for point in summary.points:
        coloc = point.phases.get("colocated") or {}
        profiles = [p for name in coloc if (p := profile_of(summary, point.id, name, host_cores=host_cores)) is not None]
        if len(coloc) < 2 or len(profiles) != len(coloc):
            points.append(point)
            continue
        profiles = [p.model_copy(update={"sensitivity": curves[p.instance].sensitivity})
                    if p.instance in curves and curves[p.instance].sensitivity else p for p in profiles]
        prediction = predict(profiles)
        out = {}
        if not any(p.demand for p in profiles):  # nothing to predict from: say so, never a confident 1.00x
            out = {name: PredictedSlowdown(method="unmeasured", driver_sentence=NO_DEMAND) for name in coloc}
            points.append(point.model_copy(update={"interference": point.interference.model_copy(
                update={"predicted": out})}))
            continue
        for name, inst in prediction.instances.items():
            measured = point.interference.slowdown.get(name)
            error, within = {}, {}
            for key in KEYS:
                value = getattr(measured, key, None) if measured is not None else None
                error[key] = (inst.slowdown[key] / value - 1) * 100 if value else None
                lo, hi = inst.intervals[key]
                within[key] = lo <= value <= hi if value is not None else None
            methods = {e.method for e in inst.effects if e.pressure > 0}
            out[name] = PredictedSlowdown(slowdown=inst.slowdown, intervals=inst.intervals, driver=inst.driver,
                                          driver_sentence=inst.driver_sentence,
                                          method="curve" if methods and all(m.startswith("curve") for m in methods)
                                          else "physics", error_pct=error, within_interval=within)
        points.append(point.model_copy(update={"interference": point.interference.model_copy(
            update={"predicted": out})}))
    return summary.model_copy(update={"points": points})
