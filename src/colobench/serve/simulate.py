"""The fake shared device run in virtual time: what a group of services *would* measure on one
`colobench fake-server` device, computed in a second instead of minutes of wall clock.

`SharedDevice` (`serve.shared_device`) is the model the fake server runs in real time; here the
same object is driven by a virtual clock with Poisson arrivals, so every request's TTFT and TPOT
is exact for that model, penalties included, with no host noise. It is the *truth* of the
placement benchmark (`benchmarks/place.py`): the predictor sees only solo profiles, the simulator
sees the device, and a placement is judged by the attainment the simulator measures.

TPOT of a request is (finish - first token) / (n - 1), the same definition the load generator
records; a request meets its SLO when every objective it names holds (ttft_ms, tpot_ms, e2el_ms).
Requests arriving in the first `warmup_s` are driven but not counted, and the run drains at the
end, so every counted request finishes.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass

from colobench.serve.shared_device import DeviceRequest, SharedDevice


@dataclass(frozen=True)
class SimService:
    """One served model's traffic: Poisson arrivals at `rate` req/s, fixed prompt and output."""
    model: str
    rate: float
    prompt_tokens: int
    output_tokens: int
    slo: dict[str, float] | None = None


@dataclass(frozen=True)
class SimDevice:
    """The fake-server device's parameters (its `--decode-tok-s`, `--prefill-tok-s`, ...)."""
    decode_tok_s: float
    prefill_tok_s: float
    itl_ms: float = 0.0
    model_costs: tuple[tuple[str, float, float], ...] = ()
    cross_model_penalty: float = 0.0
    crowding_penalty: float = 0.0
    crowding_streams: int = 16


@dataclass(frozen=True)
class SimOutcome:
    model: str
    requests: int
    ttft_ms: tuple[float, ...]
    tpot_ms: tuple[float, ...]
    slo_attainment: float | None  # None without an SLO


def _meets(slo: dict[str, float], r: DeviceRequest) -> bool:
    assert r.first_token_s is not None and r.finished_s is not None
    figures = {"ttft_ms": (r.first_token_s - r.arrived_s) * 1e3, "e2el_ms": (r.finished_s - r.arrived_s) * 1e3,
               "tpot_ms": ((r.finished_s - r.first_token_s) / (r.output_tokens - 1) * 1e3
                           if r.output_tokens > 1 else 0.0)}
    return all(figures[k] <= limit for k, limit in slo.items() if k in figures)


def simulate(device: SimDevice, services: list[SimService], duration_s: float = 60.0, warmup_s: float = 5.0,
             seed: int = 0, max_backlog: int = 256) -> dict[str, SimOutcome]:
    """Every service of `services` on one `device` for `duration_s` of virtual time. A device past
    saturation grows its backlog without bound (and each event costs more with every stream): once
    `max_backlog` requests are in flight the run stops, and every request still to finish or to
    arrive counts as missing its SLO (an overloaded device meets nothing in the long run)."""
    if duration_s <= warmup_s:
        raise ValueError("duration_s must exceed warmup_s")
    sim = SharedDevice(device.decode_tok_s, device.prefill_tok_s, device.itl_ms / 1e3,
                       model_costs={m: (px, dx) for m, px, dx in device.model_costs},
                       cross_model_penalty=device.cross_model_penalty, crowding_penalty=device.crowding_penalty,
                       crowding_streams=device.crowding_streams)
    rng = random.Random(seed)
    arrivals: list[tuple[float, int]] = []
    for k, s in enumerate(services):
        if s.rate <= 0:
            continue
        t = rng.expovariate(s.rate)
        while t < duration_s:
            arrivals.append((t, k))
            t += rng.expovariate(s.rate)
    heapq.heapify(arrivals)
    counted: dict[int, list[DeviceRequest]] = {k: [] for k in range(len(services))}
    dropped = {k: 0 for k in range(len(services))}
    overloaded = False
    while arrivals:
        t, k = heapq.heappop(arrivals)
        sim.advance(t - sim.now_s)
        if len(sim.prefill_queue) + len(sim.decoding) >= max_backlog:
            overloaded = True
            dropped[k] += t >= warmup_s
            for t_left, k_left in arrivals:
                dropped[k_left] += t_left >= warmup_s
            break
        s = services[k]
        request = sim.add_request(s.model, s.prompt_tokens, s.output_tokens)
        if t >= warmup_s:
            counted[k].append(request)
    while not overloaded and not sim.idle:  # drain: every counted request finishes
        step = sim.next_event_s()
        sim.advance(step if step is not None else 0.0)
    out: dict[str, SimOutcome] = {}
    for k, s in enumerate(services):
        done = [r for r in counted[k] if r.finished_s is not None and r.first_token_s is not None]
        total = len(counted[k]) + dropped[k]
        met = sum(_meets(s.slo, r) for r in done) if s.slo else 0
        out[s.model] = SimOutcome(
            model=s.model, requests=total,
            ttft_ms=tuple((r.first_token_s - r.arrived_s) * 1e3 for r in done),  # type: ignore[operator]
            tpot_ms=tuple((r.finished_s - r.first_token_s) / (r.output_tokens - 1) * 1e3  # type: ignore[operator]
                          for r in done if r.output_tokens > 1),
            slo_attainment=(met / total if total else 1.0) if s.slo else None)
    return out
