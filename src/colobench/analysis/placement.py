"""Placement: K services onto M devices from their solo profiles, judged by the co-location
predictor (`analysis.predict`), never by running the pairs.

A *service* is a profiled instance asked to carry a request rate under an SLO, with the memory it
needs (given, or its profile's peak); a *device* has a memory and a number of cores. A placement
is a partition of the services into groups, one group per device. A group is *feasible* when its
memory fits the device and every service in it is predicted to meet its SLO at its rate beside
the others (`predict_instance` at the rates: the partners' demand per request x their rates).
A service's *goodput* is its rate x its predicted SLO attainment.

Objectives (`objective`):

- `min_devices`: the fewest devices on which every service meets its SLO (ties: the most
  headroom, the smallest worst predicted slowdown);
- `max_goodput`: the most SLO goodput on the devices given (a service that fits nowhere is left
  out, with goodput 0).

Methods, each returning its best placement:

- `exhaustive`: every partition of the services (Bell(K): 203 for six), the reference optimum;
- `greedy`: the services by their device demand, largest first, each onto the device where the
  group stays feasible with the most headroom left (a new device when none does; with
  `max_goodput` and every device taken, where it adds the most goodput): best fit by the
  predictor;
- baselines: `separate` (one service a device), `memory_first_fit` (packed by memory alone, as if
  co-location cost nothing), `muxserve_greedy` (MuxServe's enumeration-greedy order: services by
  rate x device demand, largest first, onto the least-loaded device whose memory fits, load being
  the summed device demand).

Each group's memory split gives each service its need over the device's memory (a vLLM
`gpu_memory_utilization`), what is left shared in proportion; cores are split in proportion to
each service's host-CPU demand (equally where unknown).
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from typing import Iterator, Literal

from pydantic import computed_field

from colobench.analysis.instance_profile import InstanceProfile
from colobench.analysis.model import Model
from colobench.analysis.predict import DEFAULT_TARGET, device_s_per_request, predict_instance

GB = 1e9
Objective = Literal["min_devices", "max_goodput"]
METHODS = ("exhaustive", "greedy", "separate", "memory_first_fit", "muxserve_greedy")
EXHAUSTIVE_MAX = 9  # services: Bell(9) = 21,147 partitions


class Service(Model):
    name: str
    profile: InstanceProfile
    rate: float  # req/s it must carry
    slo: dict[str, float] | None = None  # overrides the profile's
    memory_bytes: float | None = None  # overrides the profile's peak

    def need_bytes(self) -> float:
        if self.memory_bytes is not None:
            return self.memory_bytes
        return float(self.profile.footprint.peak_memory_bytes or 0)

    def device_s(self) -> float:
        """Device seconds a second at its rate (its demand per request x rate)."""
        return device_s_per_request(self.profile) * self.rate


class DeviceSpec(Model):
    name: str
    memory_bytes: float
    cores: int | None = None
    core_ids: list[int] | None = None  # the host cores it stands for (`--verify` pins to them)
    accelerator: str | None = None  # cuda:N, npu:N or cpu (`--verify` starts its servers there)


class ServiceOnDevice(Model):
    service: str
    attainment: float | None
    verdict: str | None
    goodput_req_s: float
    headroom: float | None  # attainment - target
    slowdown: dict[str, float]  # predicted, by key (ttft_p50, tpot_p99, ...)
    driver: str
    memory_fraction: float  # of the device: what `gpu_memory_utilization` would be
    cores: float | None = None
    need_fraction: float = 0.0  # of the device's memory: what it needs (the rest of its fraction is spare)
    load: float = 0.0  # device seconds a second it brings at its rate (its demand per request x rate)


class Group(Model):
    device: str
    services: list[ServiceOnDevice]
    memory_bytes: float
    fits_memory: bool
    feasible: bool

    @property
    def goodput(self) -> float:
        return sum(s.goodput_req_s for s in self.services)


class Placement(Model):
    method: str
    groups: list[Group]
    unplaced: list[str] = []
    devices_used: int
    devices_free: int
    goodput_req_s: float
    feasible: bool  # every service placed and predicted to meet its SLO (the point estimate)
    why: str = ""  # a baseline's or a runner-up's reason to lose

    @computed_field  # type: ignore[prop-decorator]
    @property
    def inconclusive(self) -> list[str]:
        """Services predicted to meet at the point estimate whose interval's slow end does not: the
        placement is feasible, but only a run (`--verify`) says it meets."""
        return [s.service for g in self.groups for s in g.services if s.verdict == "inconclusive"]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def confident(self) -> bool:
        """Feasible, and every service's verdict "meets" (its interval's slow end keeps the target)."""
        return self.feasible and not self.inconclusive and all(
            s.verdict in ("meets", None) for g in self.groups for s in g.services)


class PlacementResult(Model):
    objective: Objective
    target: float
    best: Placement
    methods: dict[str, Placement]
    runners_up: list[Placement] = []
    optimum_goodput_req_s: float | None = None


VERIFY_SCHEMA = "colobench.placement-verify/1"


class VerifiedService(Model):
    service: str
    device: str
    cores: list[int] | None = None
    memory_fraction: float
    memory_applied: str  # how the split reached the service, or why it did not
    predicted_attainment: float | None
    predicted_verdict: str | None
    measured_attainment: float | None = None
    measured_good: int = 0
    measured_requests: int = 0
    measured_verdict: Literal["meets", "misses", "inconclusive"] | None = None
    predicted_slowdown: dict[str, float | None] = {}
    measured_slowdown: dict[str, float | None] = {}
    false_meet: bool = False  # predicted to meet, measured to miss


class PlacementVerification(Model):
    schema_version: str = VERIFY_SCHEMA
    placement: Placement
    target: float
    run_dir: str
    services: list[VerifiedService]
    missed: list[str] = []  # services the measurement says miss their SLO
    notes: list[str] = []
    profiles_dir: str
    placement_file: str


def _load(s: Service, device: DeviceSpec) -> float:
    """The share of the device a service keeps busy at its rate: device seconds a second, or for a
    model served by the host CPU, its cores over the device's."""
    if (busy := s.device_s()) > 0:
        return busy
    per = s.profile.per_request("host_cpu")
    return per * s.rate / device.cores if per is not None and device.cores else 0.0


def _evaluate(services: tuple[Service, ...], device: DeviceSpec, target: float) -> Group:
    rates = {s.name: s.rate for s in services}
    profiles = {s.name: s.profile.model_copy(update={"instance": s.name, "slo": s.slo or s.profile.slo})
                for s in services}
    need = sum(s.need_bytes() for s in services)
    spare = max(0.0, device.memory_bytes - need)
    cpu = {s.name: s.profile.demand_of("host_cpu") for s in services}
    cpu_total = sum(cpu.values())
    rows = []
    for s in services:
        partners = [profiles[o.name] for o in services if o is not s]
        pred = predict_instance(profiles[s.name], partners, rates, host_cores=device.cores, target=target)
        attainment = pred.slo_attainment
        share = s.need_bytes() + (spare * s.need_bytes() / need if need else spare / len(services))
        cores = None
        if device.cores:
            cores = device.cores * (cpu[s.name] / cpu_total if cpu_total else 1 / len(services))
        rows.append(ServiceOnDevice(
            service=s.name, attainment=attainment, verdict=pred.slo_verdict,
            goodput_req_s=s.rate * (attainment if attainment is not None else 1.0),
            headroom=attainment - target if attainment is not None else None,
            slowdown=pred.slowdown, driver=pred.driver_sentence,
            memory_fraction=share / device.memory_bytes if device.memory_bytes else 0.0, cores=cores,
            need_fraction=s.need_bytes() / device.memory_bytes if device.memory_bytes else 0.0, load=_load(s, device)))
    fits = need <= device.memory_bytes
    feasible = fits and all(r.attainment is None or r.attainment >= target for r in rows)
    return Group(device=device.name, services=rows, memory_bytes=need, fits_memory=fits, feasible=feasible)


def partitions(items: list[str], most: int) -> Iterator[list[list[str]]]:
    """Every partition of `items` into at most `most` non-empty groups."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in partitions(rest, most):
        for k in range(len(part)):
            yield part[:k] + [[first, *part[k]]] + part[k + 1:]
        if len(part) < most:
            yield [[first], *part]


class Placer:
    """The search over placements of `services` on `devices`. Group k of a placement goes onto
    device k; devices are ordered largest first (memory, then cores), so a search that opens
    devices one by one takes the roomiest first, and for devices that differ the exhaustive search
    tries every assignment of a partition's groups to them."""

    def __init__(self, services: list[Service], devices: list[DeviceSpec], objective: Objective = "min_devices",
                 target: float = DEFAULT_TARGET):
        if not services or not devices:
            raise ValueError("a placement needs at least one service and one device")
        self.services = {s.name: s for s in services}
        self.devices = sorted(devices, key=lambda d: (-d.memory_bytes, -(d.cores or 0)))
        self.objective, self.target = objective, target
        self.identical = len({(d.memory_bytes, d.cores) for d in devices}) == 1
        self._evaluated = lru_cache(maxsize=None)(self._group_uncached)

    def _group(self, names: frozenset[str], k: int) -> Group:
        d = self.devices[k]
        return self._evaluated(names, d.memory_bytes, d.cores).model_copy(update={"device": d.name})

    def _group_uncached(self, names: frozenset[str], memory_bytes: float, cores: int | None) -> Group:
        members = tuple(self.services[n] for n in sorted(names))
        return _evaluate(members, DeviceSpec(name="", memory_bytes=memory_bytes, cores=cores), self.target)

    def place(self, groups: list[list[str]], method: str, why: str = "") -> Placement:
        """A placement whose `groups[k]` goes onto device k (an empty group leaves its device free;
        groups past the last device are left out)."""
        if self.identical:
            groups = [g for g in groups if g]
        slots = list(enumerate(groups[:len(self.devices)]))
        evaluated = [(k, self._group(frozenset(g), k)) for k, g in slots if g]
        unplaced = [n for g in groups[len(self.devices):] for n in g]
        if self.objective == "max_goodput":  # a group that misses drops its worst service until it fits
            evaluated = [(k, self._shed(g, k, unplaced)) for k, g in evaluated]
        used = [g for _, g in evaluated if g.services]
        return Placement(method=method, groups=used, unplaced=unplaced, devices_used=len(used),
                         devices_free=len(self.devices) - len(used),
                         goodput_req_s=sum(g.goodput for g in used if g.fits_memory),
                         feasible=all(g.feasible for g in used) and not unplaced, why=why)

    def _shed(self, group: Group, k: int, unplaced: list[str]) -> Group:
        names = [s.service for s in group.services]
        while names and not (g := self._group(frozenset(names), k)).feasible:
            worst = min(g.services, key=lambda s: s.headroom if s.headroom is not None else 0.0)
            names.remove(worst.service)
            unplaced.append(worst.service)
        return self._group(frozenset(names), k) if names else group.model_copy(update={"services": []})

    def score(self, p: Placement) -> tuple:
        """Larger is better."""
        worst = min((s.headroom or 0.0 for g in p.groups for s in g.services), default=0.0)
        if self.objective == "min_devices":  # no placement meets every SLO: the most goodput, then the fewest
            return (p.feasible, -p.devices_used if p.feasible else p.goodput_req_s, worst,
                    p.goodput_req_s if p.feasible else -p.devices_used)
        return (p.goodput_req_s, -p.devices_used, worst)

    # ---- methods --------------------------------------------------------------------------------

    def _assignments(self, part: list[list[str]]) -> Iterator[list[list[str]]]:
        """The partition's groups in every order onto distinct devices (one order when the devices
        are identical)."""
        if self.identical or len(part) <= 1 and len(self.devices) <= 1:
            yield part
            return
        for chosen in itertools.permutations(range(len(self.devices)), len(part)):
            ordered: list[list[str]] = [[] for _ in self.devices]
            for group, k in zip(part, chosen):
                ordered[k] = group
            yield ordered

    def exhaustive(self) -> tuple[Placement, list[Placement]]:
        if len(self.services) > EXHAUSTIVE_MAX:
            raise ValueError(f"{len(self.services)} services: the exhaustive search stops at {EXHAUSTIVE_MAX}")
        ranked = sorted((self.place(order, "exhaustive")
                         for part in partitions(sorted(self.services), len(self.devices))
                         for order in self._assignments(part)), key=self.score, reverse=True)
        return ranked[0], ranked[1:]

    def greedy(self) -> Placement:
        """Best fit by predicted headroom, then improved by local search."""
        slots: list[list[str]] = [[] for _ in self.devices]
        extra: list[list[str]] = []
        for s in sorted(self.services.values(), key=lambda s: -s.device_s()):
            best, best_headroom = None, None
            for k, g in enumerate(slots):
                if not g:
                    continue
                trial = self._group(frozenset([*g, s.name]), k)
                if not trial.feasible:
                    continue
                headroom = min((x.headroom or 0.0 for x in trial.services), default=0.0)
                if best_headroom is None or headroom > best_headroom:
                    best, best_headroom = k, headroom
            if best is None:
                best = next((k for k, g in enumerate(slots) if not g), None)
            if best is None and self.objective == "max_goodput":
                # every device is taken: where it adds the most goodput once the group sheds what misses
                best = max(range(len(slots)), key=lambda k: self._shed(
                    self._group(frozenset([*slots[k], s.name]), k), k, []).goodput)
            if best is None:
                extra.append([s.name])
            else:
                slots[best].append(s.name)
        return self.local_search(slots + extra, "greedy")

    def local_search(self, slots: list[list[str]], method: str, rounds: int = 50) -> Placement:
        """Moves of one service to another device (or off every device), and swaps of two, while
        one improves the score: first improvement, until none does (a local optimum)."""
        slots = [list(g) for g in slots]
        while len(slots) < len(self.devices):
            slots.append([])
        current = self.place(slots, method)
        for _ in range(rounds):
            improved = False
            for trial in self._neighbours(slots):
                candidate = self.place(trial, method)
                if self.score(candidate) > self.score(current):
                    slots, current, improved = trial, candidate, True
                    break
            if not improved:
                break
        return current

    def _neighbours(self, slots: list[list[str]]) -> Iterator[list[list[str]]]:
        n = len(self.devices)
        where = [(k, name) for k, g in enumerate(slots) for name in g]
        for k, name in where:  # move one
            for j in range(n):
                if j != k:
                    trial = [list(g) for g in slots]
                    trial[k].remove(name)
                    while len(trial) <= j:
                        trial.append([])
                    trial[j].append(name)
                    yield [g for g in trial[:n]] + [g for g in trial[n:] if g]
        for (k, a), (j, b) in itertools.combinations(where, 2):  # swap two
            if k != j:
                trial = [list(g) for g in slots]
                trial[k][trial[k].index(a)] = b
                trial[j][trial[j].index(b)] = a
                yield trial
        if not self.identical:  # two devices trade their groups
            for k, j in itertools.combinations(range(n), 2):
                trial = [list(g) for g in slots]
                trial[k], trial[j] = trial[j], trial[k]
                yield trial

    def separate(self) -> Placement:
        return self.place([[n] for n in sorted(self.services)], "separate", "one service a device")

    def memory_first_fit(self) -> Placement:
        groups: list[list[str]] = []
        used: list[float] = []
        for s in sorted(self.services.values(), key=lambda s: -s.need_bytes()):
            k = next((k for k, u in enumerate(used) if u + s.need_bytes() <= self.devices[min(k, len(self.devices) - 1)]
                      .memory_bytes), None)
            if k is None:
                groups.append([s.name])
                used.append(s.need_bytes())
            else:
                groups[k].append(s.name)
                used[k] += s.need_bytes()
        return self.place(groups, "memory_first_fit", "packed by memory alone")

    def muxserve_greedy(self) -> Placement:
        n = len(self.devices)
        groups: list[list[str]] = [[] for _ in range(n)]
        load, mem = [0.0] * n, [0.0] * n
        overflow: list[list[str]] = []
        for s in sorted(self.services.values(), key=lambda s: -s.device_s()):
            fits = [k for k in range(n) if mem[k] + s.need_bytes() <= self.devices[k].memory_bytes]
            if not fits:
                overflow.append([s.name])
                continue
            k = min(fits, key=lambda k: load[k])
            groups[k].append(s.name)
            load[k] += s.device_s()
            mem[k] += s.need_bytes()
        return self.place(groups + overflow, "muxserve_greedy", "the least-loaded device by summed demand")

    def run(self) -> PlacementResult:
        methods: dict[str, Placement] = {}
        runners: list[Placement] = []
        optimum = None
        if len(self.services) <= EXHAUSTIVE_MAX:
            methods["exhaustive"], runners = self.exhaustive()
            optimum = methods["exhaustive"].goodput_req_s
        methods["greedy"] = self.greedy()
        methods["separate"] = self.separate()
        methods["memory_first_fit"] = self.memory_first_fit()
        methods["muxserve_greedy"] = self.muxserve_greedy()
        best = max(methods.values(), key=self.score)
        runners = [r.model_copy(update={"why": _why_lost(r, best, self.objective)}) for r in runners[:3]]
        return PlacementResult(objective=self.objective, target=self.target, best=best, methods=methods,
                               runners_up=runners, optimum_goodput_req_s=optimum)


def _why_lost(p: Placement, best: Placement, objective: Objective) -> str:
    if not p.feasible and best.feasible:
        missed = [s.service for g in p.groups for s in g.services if s.headroom is not None and s.headroom < 0]
        return "misses an SLO: " + ", ".join(missed) if missed else "leaves a service out or overfills memory"
    if objective == "min_devices" and p.devices_used > best.devices_used:
        return f"{p.devices_used} devices against {best.devices_used}"
    if p.goodput_req_s < best.goodput_req_s:
        return f"goodput {p.goodput_req_s:.2f} req/s against {best.goodput_req_s:.2f}"
    return "less headroom on its tightest service"
