"""Serving capacity under latency objectives: how much load an instance carries alone, and the set
of loads two (or more) co-located instances carry together.

A *probe* runs the instances in open loop at given request rates for long enough to judge; it
passes when every instance's SLO attainment (the share of its requests that met every objective,
see `analysis.phase.slo_result`) is at least the target (99% by default) and no check makes its
measurement invalid (too few requests, a queue growing, a client that could not keep up, ...);
a latency that *fell* during the probe is the one invalidity that does not count against a rate.
Capacity is the highest passing rate.

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

`sharing_efficiency` is the mean boundary load over the rays (1.0: as good as perfect sharing;
below: interference costs capacity; above: sharing gains, e.g. decode steps that batch better).
`vs_separate_cards` is the region's area over the rectangle's: "sharing this card keeps X% of the
capacity of two separate cards" (50% for perfect sharing). With more than two instances the search
runs along the diagonal only: every instance at the same fraction of its solo capacity.
"""

from __future__ import annotations

from typing import Callable

from pydantic import ConfigDict, Field

from colobench.analysis.model import Model

SCHEMA = "colobench.capacity/1"
DEFAULT_TARGET = 0.99
DEFAULT_PRECISION = 0.05
MAX_DOUBLINGS = 12


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


class SoloCapacity(Model):
    instance: str
    max_rate: float | None  # the highest passing rate; None when even the lowest probed failed
    first_failing_rate: float | None  # the lowest failing rate above it (the bracket's top)
    knee_rate: float | None = None  # where latency starts to climb (see `knee`)
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
    solo: dict[str, SoloCapacity] = {}
    region: CapacityRegion | None = None
    probes: int = 0
    wall_s: float = 0.0
    interrupted: bool = False  # stopped (Ctrl-C): `unfinished` holds the probes of the search under way
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
        if lo is None:
            return None, hi, probes
    while hi is not None and (hi - lo) / lo > precision and len(probes) < max_probes:
        mid = (lo + hi) / 2
        if run(mid):
            lo = mid
        else:
            hi = mid
    return lo, hi, probes


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
