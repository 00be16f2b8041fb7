"""Serving capacity under latency objectives: how much load an instance carries alone, and the set
of loads two (or more) co-located instances carry together.

A *probe* runs the instances in open loop at given request rates for long enough to judge. Its
verdict is by each instance's SLO attainment (the share of its requests that met every objective,
see `analysis.phase.slo_result`) against the target (99% by default) with a binomial interval,
not by the point value: one request more or less must not flip a rate (`attainment_verdict`):

- *fail*: the interval lies below the target, or the server is over-saturated (the queue grows:
  the over-saturation check, or fewer requests sent than the rate asks);
- *pass*: the point value meets the target and the interval's lower end is within the sampling
  tolerance of it (`PASS_TOLERANCE`: one target's miss rate, e.g. 98% for 99%);
- *inconclusive* otherwise: the probe is extended (run again, longer, and the counts pooled) until
  decided or `MAX_EXTENSIONS` runs out, and then judged by the pooled point value, said so.

Other checks (a latency trend inside the probe, too few requests, a busy client) are reported
with the probe, never a failure when the SLO was met: a rising latency that meets the SLO is not
a queue growing unless the over-saturation evidence says so. A host reference (a fixed CPU and
memory workload timed before and after each probe: `host_reference_s`) that moved by more than
`HOST_SHIFT` marks a probe taken while the host changed, and the probe is redone. Capacity is the
highest passing rate.

The search (`search`) is the same for one instance and for a ray through the co-location region:
a scalar `x` (a rate, or a scale along a ray), bracketed by doubling from a start value while
probes pass (halving while they fail), then bisected until the bracket is within `precision`
(relative). Along a ray the search starts at perfect sharing (load 1) and grows by 1 + 2 x
precision at a time, since the boundary is usually near it. A probe that finds the server over-saturated (it could not even send or serve the rate)
ends the doubling at once. Each probe's result is kept, so the person can see the curve.

The co-location region of instances A and B (solo capacities cap_A, cap_B) is searched along rays
of fixed shares: at share f, rate_A = s f cap_A and rate_B = s (1 - f) cap_B, so s is the
normalised load rate_A/cap_A + rate_B/cap_B. Two references frame the answer:

- perfect sharing: s = 1 on every ray (the line rate_A/cap_A + rate_B/cap_B = 1): the card is
  time-shared with no loss, as if each instance had its share of one card;
- no interference: the rectangle [0, cap_A] x [0, cap_B], s = 1/max(f, 1 - f): what two separate
  cards carry.

The region is monotone by construction (`Monotone`): a rate pair that dominates a failing pair
(both rates at least as high) must fail, one dominated by a passing pair must pass; an
observation that contradicts an earlier one (host noise) is probed once more and, if it still
does, resolved conservatively (a fail), and the probe says so.

`sharing_efficiency` is the mean boundary load over the rays (1.0: as good as perfect sharing;
below: interference costs capacity; above: sharing gains, e.g. decode steps that batch better).
`vs_separate_cards` is the region's area over the rectangle's: "sharing this card keeps X% of the
capacity of two separate cards" (50% for perfect sharing). With more than two instances the search
runs along the diagonal only: every instance at the same fraction of its solo capacity.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Literal

import numpy as np
from pydantic import ConfigDict, Field

from colobench.analysis.model import Model

SCHEMA = "colobench.capacity/1"
DEFAULT_TARGET = 0.99
DEFAULT_PRECISION = 0.05
MAX_DOUBLINGS = 12
FLOOR_HALVINGS = 6  # without --min-rate, a search gives up 2**6 = 64 times below where it started
DEFAULT_MAX_TIME_S = 1800.0  # a whole search's time budget without --max-time
CONFIDENCE_Z = 1.96  # the attainment interval: Wilson score, 95%
MAX_EXTENSIONS = 2  # an inconclusive probe is run again this many times at most (its counts pooled)
HOST_SHIFT = 0.25  # the host reference moved by more than this share between before and after: redo
MAX_REDOS = 2  # a probe taken while the host changed is redone this many times at most

Verdict = Literal["pass", "fail", "inconclusive"]


def wilson_interval(met: int, total: int, z: float = CONFIDENCE_Z) -> tuple[float, float]:
    """The Wilson score interval of a binomial share (met of total); (0, 1) for no trials."""
    if total <= 0:
        return 0.0, 1.0
    p = met / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def pass_tolerance(target: float) -> float:
    """How far below the target the interval's lower end may reach and still pass: the target's
    own miss rate (99% tolerates 98%), so a pass needs some hundreds of requests, not thousands."""
    return 1.0 - target


def attainment_verdict(met: int, total: int, target: float) -> Verdict:
    """pass / fail / inconclusive for `met` of `total` requests meeting the SLO against `target`."""
    if total <= 0:
        return "fail"
    lo, hi = wilson_interval(met, total)
    if hi < target:
        return "fail"
    if met / total >= target and lo >= target - pass_tolerance(target):
        return "pass"
    return "inconclusive"


def host_reference_s(repeats: int = 5) -> float:
    """Seconds of a fixed CPU and memory workload (a matrix product and a 16 MB copy), the median of
    `repeats`: the same work before and after a probe takes the same time on an unchanged host."""
    rng = np.random.default_rng(0)
    a = rng.random((160, 160))
    buf = np.ones(2 * 1024 * 1024)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        (a @ a).sum()
        buf.copy().sum()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def host_shifted(before_s: float | None, after_s: float | None) -> bool:
    """The host reference moved by more than `HOST_SHIFT` (either way) across a probe."""
    if not before_s or not after_s:
        return False
    return abs(after_s - before_s) / min(before_s, after_s) > HOST_SHIFT


class Probe(Model):
    """One operating point: the rates asked of each instance and what they achieved."""

    rates: dict[str, float]  # requested, requests/s
    scale: float  # the searched value: the rate itself (solo) or the load along a ray
    passed: bool
    reason: str  # "met" or why not ("b: SLO met 91.2% < 99%", "a: INVALID (...)", "a: over-saturated ...")
    attainment: dict[str, float | None] = {}
    achieved_rate: dict[str, float | None] = {}
    goodput: dict[str, float | None] = {}
    p99_ttft_ms: dict[str, float | None] = {}
    p99_tpot_ms: dict[str, float | None] = {}
    over_saturated: bool = False
    requests: dict[str, int] = {}
    run_dir: str = ""
    wall_s: float = 0.0
    verdict: Verdict | None = None  # None: written before verdicts (passed says it all)
    met_requests: dict[str, int] = {}  # pooled over the probe's runs
    interval: dict[str, tuple[float, float]] = {}  # attainment's 95% interval
    extensions: int = 0  # runs added to decide an inconclusive probe
    decided_by_point: bool = False  # still inconclusive when the extensions ran out: judged by the point value
    notes: list[str] = []  # checks that did not decide the verdict (a trend that met the SLO, ...)
    met_slo_other_failed: bool = False  # met the SLO; another check was INVALID (drawn apart)
    host_reference_s: tuple[float | None, float | None] = (None, None)  # before, after
    host_changed: bool = False  # the host reference moved: the probe was redone (this is the kept one)
    redos: int = 0
    inferred: str | None = None  # not run: the verdict follows from a probe it dominates or is dominated by


class SoloCapacity(Model):
    instance: str
    max_rate: float | None  # the highest passing rate; None when even the lowest probed failed
    first_failing_rate: float | None  # the lowest failing rate above it (the bracket's top)
    knee_rate: float | None = None  # where latency starts to climb (see `knee`)
    floor_rate: float | None = None  # the lowest rate the search would probe (max_rate None: none met down to it)
    probes: list[Probe] = []


class BoundaryPoint(Model):
    share: float  # f: A's share of the normalised load
    ratio: float | None  # rate_B / rate_A along this ray (two instances)
    rates: dict[str, float]  # the highest passing point
    load: float  # sum of rate_i / cap_i there (1.0 = perfect sharing)
    rectangle_load: float  # the same for the no-interference corner along this ray
    first_failing_load: float | None
    probes: list[Probe] = []


class CapacityRegion(Model):
    instances: list[str]
    solo_caps: dict[str, float]
    boundary: list[BoundaryPoint] = []
    sharing_efficiency: float | None = None
    vs_separate_cards: float | None = None  # two instances: area of the region / area of the rectangle


class CapacitySummary(Model):
    """What `colobench capacity` found (capacity.json): every probe is kept."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_version: str = Field(SCHEMA, alias="schema")
    experiment: str
    target: float
    precision: float
    probe_s: float
    objectives: dict[str, dict[str, float]]  # each instance's SLO
    device_kind: str | None = None  # cpu, cuda, npu, endpoint: what "sharing" shares, in words that fit it
    solo: dict[str, SoloCapacity] = {}
    region: CapacityRegion | None = None
    probes: int = 0
    wall_s: float = 0.0
    interrupted: bool = False  # stopped (Ctrl-C): `unfinished` holds the probes of the search under way
    max_time_s: float | None = None  # the time budget of the whole search
    stopped: str | None = None  # why the search ended before its end (its time budget), else None
    unfinished: list[Probe] = []


def search(probe: Callable[[float], Probe], start: float, precision: float = DEFAULT_PRECISION,
           ceiling: float | None = None, floor: float | None = None, grow: float = 2.0,
           max_probes: int = 40) -> tuple[float | None, float | None, list[Probe]]:
    """(highest passing x, lowest failing x above it, the probes) by growing (`grow` times, 2 by
    default) or halving from `start`, then bisecting until (hi - lo) / lo <= precision.
    `ceiling`: never probe above it (when it passes, there is no failing bound); `floor`: give up
    below it. A good prior (a ray of the region starts at perfect sharing) takes a small `grow`."""
    probes: list[Probe] = []

    def run(x: float) -> bool:
        p = probe(x)
        probes.append(p)
        return p.passed

    floor = floor if floor is not None else start / 2 ** MAX_DOUBLINGS
    lo: float | None = None
    hi: float | None = None
    x = min(start, ceiling) if ceiling else start
    if run(x):
        lo = x
        for _ in range(MAX_DOUBLINGS):
            if ceiling is not None and lo >= ceiling:
                return lo, None, probes
            x = min(lo * grow, ceiling) if ceiling is not None else lo * grow
            if run(x):
                lo = x
            else:
                hi = x
                break
        else:
            return lo, None, probes
    else:
        hi = x
        while x / 2 >= floor and len(probes) < max_probes:
            x /= 2
            if run(x):
                lo = x
                break
            hi = x
            if len(probes) >= 3 and _no_better(probes[-3:]):
                break  # halving twice changed nothing: the SLO is out of reach at any load (see `_no_better`)
        if lo is None:
            return None, hi, probes
    while hi is not None and (hi - lo) / lo > precision and len(probes) < max_probes:
        mid = (lo + hi) / 2
        if run(mid):
            lo = mid
        else:
            hi = mid
    return lo, hi, probes


def _no_better(probes: list[Probe], gain: float = 0.02) -> bool:
    """Failing probes at falling rates whose attainment did not rise (by `gain`) from one to the
    next: the latency that misses the SLO is not queueing (a TTFT objective below the model's own
    prefill time), and lower rates only make each probe longer (a probe needs its requests: 190
    of them at 99%, 380 s at 0.5 req/s)."""
    shares = [min(p.attainment.values()) if p.attainment and None not in p.attainment.values() else None
              for p in probes]
    if any(s is None for s in shares):
        return False
    return all(b < a + gain for a, b in zip(shares, shares[1:]))


def knee(probes: list[Probe], instance: str, rise: float = 1.5) -> float | None:
    """Where the latency-versus-load curve bends: the last probed rate before p99 TPOT (TTFT when
    there is no TPOT) first exceeds `rise` times its value at the lowest probed rate; None with
    fewer than three points or no such rise."""
    for key in ("p99_tpot_ms", "p99_ttft_ms"):
        series = sorted((p.rates[instance], v) for p in probes
                        if instance in p.rates and (v := getattr(p, key).get(instance)) is not None)
        if len(series) < 3:
            continue
        base, last = series[0][1], None
        for rate, value in series:
            if value > base * rise:
                return last
            last = rate
        return None
    return None


def ray_rates(share: float, scale: float, caps: dict[str, float]) -> dict[str, float]:
    """Rates at normalised load `scale` with A's share `share` (two instances), or every
    instance at `scale / n` of its capacity (the diagonal, n instances) when share is None."""
    names = list(caps)
    if len(names) == 2:
        a, b = names
        return {a: scale * share * caps[a], b: scale * (1 - share) * caps[b]}
    return {n: scale / len(names) * caps[n] for n in names}


def rectangle_load(share: float, n: int = 2) -> float:
    """The normalised load of the no-interference corner along a ray (each at most its own cap)."""
    return 1 / max(share, 1 - share) if n == 2 else float(n)


def shares(rays: int) -> list[float]:
    """`rays` shares of A's load, evenly spread strictly between 0 and 1."""
    return [k / (rays + 1) for k in range(1, rays + 1)]


def region_metrics(region: CapacityRegion) -> CapacityRegion:
    """Sharing efficiency (mean boundary load) and, for two instances, the region's area against
    the rectangle's (the polygon through the origin, (cap_A, 0), the boundary, (0, cap_B))."""
    loads = [b.load for b in region.boundary]
    efficiency = sum(loads) / len(loads) if loads else None
    vs = None
    if len(region.instances) == 2 and region.boundary:
        a, b = region.instances
        ca, cb = region.solo_caps[a], region.solo_caps[b]
        # in normalised coordinates (x = rate_A / cap_A, y = rate_B / cap_B) the rectangle is the unit square
        pts = [(1.0, 0.0)] + sorted(((p.rates[a] / ca, p.rates[b] / cb) for p in region.boundary),
                                    key=lambda xy: -xy[0]) + [(0.0, 1.0)]
        poly = [(0.0, 0.0), *pts]
        area = 0.5 * abs(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1])))
        vs = area
    return region.model_copy(update={"sharing_efficiency": efficiency, "vs_separate_cards": vs})


def dominates(a: dict[str, float], b: dict[str, float]) -> bool:
    """Rates `a` ask at least as much of every instance as `b`."""
    return all(a.get(k, 0.0) >= v for k, v in b.items())


class Monotone:
    """A probe function made monotone over rate pairs (see the module's text): inferred verdicts
    for dominated and dominating points, a contradiction re-probed once, then resolved as a fail."""

    def __init__(self, probe: Callable[[dict[str, float], float, str], Probe]):
        self.run, self.seen = probe, []

    def _contradicts(self, p: Probe) -> Probe | None:
        for q in self.seen:
            if p.passed and not q.passed and dominates(p.rates, q.rates):
                return q
            if not p.passed and q.passed and dominates(q.rates, p.rates):
                return q
        return None

    def __call__(self, rates: dict[str, float], scale: float, label: str) -> Probe:
        p = self.run(rates, scale, label)
        if (q := self._contradicts(p)) is not None:
            again = self.run(rates, scale, label + "-again")
            if self._contradicts(again) is None:
                return self._keep(again.model_copy(update={"notes": [*again.notes, f"re-probed: the first run "
                                                          f"contradicted {_rates(q.rates)}"]}))
            p = again.model_copy(update={"passed": False, "verdict": "fail", "reason": f"{again.reason}; resolved as a "
                                         f"fail: still contradicts {_rates(q.rates)} after a re-probe"})
        return self._keep(p)

    def _keep(self, p: Probe) -> Probe:
        self.seen.append(p)
        return p


def _rates(rates: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3g}" for k, v in rates.items()) + " req/s"
