"""`colobench capacity`: the highest request rate each instance carries alone within its latency
objectives, and the loads co-located instances carry together (the search and the references are
explained in `analysis.capacity`).

Every probe is an ordinary colobench run in its own folder under `OUT/probes/` (open loop at the
probe's rates, one measured window long enough for the verdict: at least `probe_s` seconds and
enough requests that one miss in 1/(1 - target) shows), so each can be reopened with
`colobench report`. The instances' own workload (prompt and output lengths, arrival process) is
kept; the load model, rate and duration are the probe's. Without a start rate the search starts
from a pilot: a few requests one at a time give the latency, and 1 / latency is where one
request at a time would keep the server busy.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from colobench import api
from colobench.analysis.capacity import (CONFIDENCE_Z, DEFAULT_MAX_TIME_S, DEFAULT_PRECISION, DEFAULT_TARGET,
                                         FLOOR_HALVINGS, MAX_EXTENSIONS, MAX_REDOS,
                                         BoundaryPoint, CapacityRegion, CapacitySummary, Monotone, Probe,
                                         SoloCapacity, attainment_verdict, host_reference_s, host_shifted, knee,
                                         pass_tolerance, ray_rates, rectangle_load, region_metrics, search, shares,
                                         wilson_interval)
from colobench.analysis.model import Check
from colobench.devices.base import DeviceUnavailable, kind_of
from colobench.errors import ColobenchError, make_dir
from colobench.records import load_json
from colobench.rundir import RunDir, folder_lock, remove_if_empty, write_json_atomic
from colobench.secrets import register_spec
from colobench.specs import ExperimentSpec, experiment_from_dict

PILOT_REQUESTS = 6
RATE_SHORTFALL = 0.90  # achieved below this share of the requested rate: the server (or client) could not keep up


def _improving_only(checks: list[Check]) -> bool:
    """Only latencies that fell during the probe (caches warming, batches filling): INVALID for a
    benchmark, nothing against the rate, not even worth drawing apart."""
    return all(c.kind == "steady_state" and c.value is not None and c.value < 0 for c in checks)


@dataclass
class ProbeRun:
    """What one run of a probe measured, per instance: good and measured requests (pooled over a
    probe's runs), the latency figures, and what the checks said."""

    folder: str
    met: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    worst: dict[str, str | None] = field(default_factory=dict)  # the objective missed most
    fields: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        k: {} for k in ("achieved_rate", "goodput", "p99_ttft_ms", "p99_tpot_ms")})
    nothing: list[str] = field(default_factory=list)  # instances with nothing measured
    saturated: list[str] = field(default_factory=list)  # the queue grows: why, per instance
    notes: list[str] = field(default_factory=list)  # other INVALID checks: never a failure
    other_failed: bool = False  # a note beyond a latency that fell (drawn apart in capacity.html)


class CapacityProgress:
    """What the search reports as it goes; the CLI prints it, a notebook may ignore it."""

    def probe_done(self, label: str, probe: Probe) -> None: ...

    def note(self, text: str) -> None: ...


def load_capacity(folder: Path) -> CapacitySummary:
    """A capacity folder's capacity.json, or a one-line error naming it."""
    path = RunDir(folder).capacity
    try:
        return CapacitySummary.model_validate(load_json(path)["capacity"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ColobenchError(f"{path}: not a capacity summary ({str(exc).splitlines()[0]})") from None


def check_spec(spec: ExperimentSpec, source: str) -> None:
    """A capacity search needs objectives on every instance and no sweep of its own."""
    if spec.sweep:
        raise ColobenchError(f"{source}: capacity searches rates itself; remove the sweep ({', '.join(spec.sweep)})")
    names = spec.instance_names()
    for k, inst in enumerate(spec.instances):
        if inst.slo is None:
            raise ColobenchError(f"{source}: instances[{k}] ({names[k]}) has no slo: capacity is the load that still "
                                 "meets it (give --slo ttft_ms=...,tpot_ms=... or slo: in the file)")


class OutOfTime(Exception):
    """The search's time budget (`--max-time`) would be passed by the next probe."""


class CapacitySearch:
    def __init__(self, spec: ExperimentSpec, out: Path, target: float = DEFAULT_TARGET,
                 precision: float = DEFAULT_PRECISION, probe_s: float = 10.0, start_rate: float | None = None,
                 progress: CapacityProgress | None = None, source: str = "experiment",
                 host_reference: Callable[[], float | None] | None = None, min_rate: float | None = None,
                 max_time_s: float = DEFAULT_MAX_TIME_S):
        self.spec, self.out, self.target, self.precision, self.probe_s = spec, RunDir(out), target, precision, probe_s
        self.start_rate, self.source, self.min_rate, self.max_time_s = start_rate, source, min_rate, max_time_s
        self.deadline = time.monotonic() + max_time_s
        self.progress = progress or CapacityProgress()
        self.names = spec.instance_names()
        self.count = 0
        self.history: list[Probe] = []  # every probe, in order
        # the host reference (module-level, so a test can plant one): see analysis.capacity
        self.host_reference: Callable[[], float | None] = host_reference or (lambda: host_reference_s())
        # enough requests that a probe with no miss passes at once (the interval's lower end within
        # the tolerance): 189 at 99%; fewer leave every clean probe inconclusive
        floor = target - pass_tolerance(target)
        self.min_requests = max(10, math.ceil(CONFIDENCE_Z ** 2 * floor / (1 - floor)) + 1) if floor < 1 else 400

    # ---- one probe -----------------------------------------------------------------------------

    def _experiment(self, workloads: dict[str, dict[str, Any]], label: str) -> ExperimentSpec:
        """The base experiment reduced to `workloads`' instances, each with those workload fields."""
        data = self.spec.model_dump(mode="json", exclude_none=True)
        instances = []
        for name, inst in zip(self.names, data["instances"]):
            if name in workloads:
                inst["name"] = name
                inst["workload"] = {**(inst.get("workload") or {}), **workloads[name]}
                instances.append(inst)
        data.update(instances=instances, name=f"{self.spec.name}-{label}", repetitions=1, solo_baselines=False,
                    sweep={})
        data.pop("scenario", None)
        data.setdefault("telemetry", {})["idle_s"] = 0.0
        return experiment_from_dict(data, self.source)

    def _folder(self, label: str) -> Path:
        self.count += 1
        return self.out.probe(self.count, label).root

    def probe(self, rates: dict[str, float], scale: float, label: str) -> Probe:
        """Run the instances at `rates` together (one alone: its solo phase) and judge, extending
        an inconclusive probe and redoing one taken while the host changed (see
        `analysis.capacity`)."""
        self._check_time(rates, label)
        redos = 0
        while True:
            before = self.host_reference()
            started = time.monotonic()
            p = self._judged(rates, scale, label if not redos else f"{label}-redo{redos}")
            after = self.host_reference()
            changed = host_shifted(before, after)
            p = p.model_copy(update={"host_reference_s": (before, after), "host_changed": changed, "redos": redos,
                                     "wall_s": time.monotonic() - started})
            if not changed or redos >= MAX_REDOS:
                break
            redos += 1
            self.progress.note(f"{label}: the host changed during the probe (reference {before * 1e3:.1f} -> "
                               f"{after * 1e3:.1f} ms): redone")
        self.history.append(p)
        self.progress.probe_done(label, p)
        return p

    def _duration(self, rates: dict[str, float]) -> float:
        """A probe's measured window: at least `probe_s`, and long enough for `min_requests`."""
        return max(self.probe_s, max(self.min_requests / r for r in rates.values()))

    def _check_time(self, rates: dict[str, float], label: str) -> None:
        left = self.deadline - time.monotonic()
        need = self._duration(rates)
        if need > left:
            raise OutOfTime(f"time budget of {self.max_time_s:.0f} s spent (--max-time): the next probe ({label} at "
                            f"{', '.join(f'{k} {v:.3g}' for k, v in rates.items())} req/s) needs {need:.0f} s at least, {max(left, 0):.0f} s left")

    def _judged(self, rates: dict[str, float], scale: float, label: str) -> Probe:
        """One probe's runs: the first, then more (the counts pooled) while it is inconclusive."""
        duration = self._duration(rates)
        met: dict[str, int] = {n: 0 for n in rates}
        total: dict[str, int] = {n: 0 for n in rates}
        extensions = 0
        while True:
            run = self._run_once(rates, duration, label if not extensions else f"{label}-more{extensions}")
            for name in rates:
                met[name] += run.met.get(name, 0)
                total[name] += run.total.get(name, 0)
            verdicts = {n: attainment_verdict(met[n], total[n], self.target) for n in rates}
            if run.nothing or run.saturated or "fail" in verdicts.values() \
                    or "inconclusive" not in verdicts.values() or extensions >= MAX_EXTENSIONS:
                break
            extensions += 1
        reasons = list(run.nothing)
        by_point = False
        for name in rates:
            share = met[name] / total[name] if total[name] else None
            if verdicts[name] == "inconclusive":
                by_point = True  # the extensions ran out: the pooled point value decides, and says so
                verdicts[name] = "pass" if share is not None and share >= self.target else "fail"
            if verdicts[name] == "fail" and share is not None:
                lo, hi = wilson_interval(met[name], total[name])
                worst = run.worst.get(name)
                reasons.append(f"{name}: SLO met {share * 100:.1f}% [{lo * 100:.1f}, {hi * 100:.1f}] of "
                               f"{total[name]} < {self.target * 100:g}%" + (f", missed most: {worst}" if worst else ""))
        reasons += run.saturated
        passed = not reasons
        verdict = "pass" if passed else "fail"
        return Probe(rates=rates, scale=scale, passed=passed, verdict=verdict,
                     reason="; ".join(reasons) or ("met" + (" (decided by the point value)" if by_point else "")),
                     over_saturated=bool(run.saturated), run_dir=run.folder, extensions=extensions,
                     decided_by_point=by_point, met_requests=met,
                     interval={n: wilson_interval(met[n], total[n]) for n in rates if total[n]},
                     notes=run.notes, met_slo_other_failed=passed and run.other_failed,
                     attainment={n: (met[n] / total[n] if total[n] else None) for n in rates},
                     requests=total, **run.fields)

    def _run_once(self, rates: dict[str, float], duration: float, label: str) -> ProbeRun:
        """One run at `rates` for `duration`: each instance's good and measured requests, latency,
        and the checks that did not decide (a latency trend that met the SLO is a note, never a
        failure; over-saturation, the queue growing, is)."""
        workloads = {n: {"load": "open", "rate": r, "duration_s": duration} for n, r in rates.items()}
        folder = self._folder(label)
        result = api.run_experiment(self._experiment(workloads, label), out=folder, source=self.source)
        if result.interrupted:
            raise KeyboardInterrupt
        point = result.summary.point()
        phase = "solo" if len(rates) == 1 else "colocated"
        out = ProbeRun(folder=str(folder))
        for name, rate in rates.items():
            mt = point.metrics(phase, name)
            if mt is None or mt.slo is None:
                out.nothing.append(f"{name}: nothing measured")
                continue
            achieved = mt.open_loop.achieved_rate if mt.open_loop else None
            out.fields["achieved_rate"][name] = achieved
            out.fields["goodput"][name] = mt.goodput
            out.fields["p99_ttft_ms"][name] = mt.p99_ttft_ms
            out.fields["p99_tpot_ms"][name] = mt.p99_tpot_ms
            out.met[name], out.total[name], out.worst[name] = mt.slo.good, mt.slo.requests, mt.slo.worst
            invalid = [c for c in result.summary.checks if c.level == "invalid" and c.subject.instance == name
                       and c.subject.phase == phase]
            over = [c.sentence for c in invalid if c.verdict == "over_saturated"]
            short = achieved is not None and achieved < RATE_SHORTFALL * rate
            if over or short:
                out.saturated.append(f"{name}: over-saturated (the queue grows: "
                                     + (f"sent {achieved:.3g} of {rate:.3g} req/s asked" if short else over[0][:120])
                                     + ")")
            others = [c for c in invalid if c.verdict != "over_saturated"]
            if others:
                out.notes.append(f"{name}: {'; '.join(c.sentence for c in others)[:160]}")
                out.other_failed = out.other_failed or not _improving_only(others)
        return out

    def pilot_rate(self, name: str) -> float:
        """1 / mean end-to-end latency of a few requests sent one at a time."""
        workloads = {name: {"load": "closed", "concurrency": 1, "requests": PILOT_REQUESTS}}
        result = api.run_experiment(self._experiment(workloads, f"pilot-{name}"), out=self._folder(f"pilot-{name}"),
                                    source=self.source)
        if result.interrupted:
            raise KeyboardInterrupt
        mt = result.summary.point().metrics("solo", name)
        if mt is None or not mt.mean_e2el_ms:
            raise ColobenchError(f"capacity: the pilot of {name} measured nothing (see {result.run_dir})")
        rate = 1000.0 / mt.mean_e2el_ms
        self.progress.note(f"{name}: pilot latency {mt.mean_e2el_ms:.1f} ms, starting at {rate:.3g} req/s")
        return rate

    # ---- the searches ----------------------------------------------------------------------------

    def solo(self, name: str) -> SoloCapacity:
        start = self.start_rate or self._own_rate(name) or self.pilot_rate(name)
        floor = min(self.min_rate, start) if self.min_rate else start / 2 ** FLOOR_HALVINGS
        lo, hi, probes = search(lambda r: self.probe({name: r}, r, f"solo-{name}"), start, self.precision,
                                floor=floor)
        if lo is None:
            lowest = min(p.rates[name] for p in probes)
            why = (f"the floor: {floor:.3g}; --min-rate sets it" if lowest / 2 < floor else
                   "lower rates did not raise the share that met it: the SLO is out of reach at any load")
            self.progress.note(f"{name}: no rate met the SLO down to {lowest:.3g} req/s ({why})")
        return SoloCapacity(instance=name, max_rate=lo, first_failing_rate=hi, knee_rate=knee(probes, name),
                            floor_rate=floor, probes=probes)

    def _own_rate(self, name: str) -> float | None:
        inst = self.spec.instances[self.names.index(name)]
        wl = inst.workload.model_dump(exclude_none=True) if inst.workload is not None else {}
        return wl.get("rate") or self.spec.workload.rate

    def region(self, caps: dict[str, float], rays: int) -> CapacityRegion:
        """The boundary along `rays` shares (two instances) or the diagonal (more)."""
        n = len(caps)
        boundary = []
        judge = Monotone(self.probe)  # one for the whole region: every ray's probes constrain the others
        for share in (shares(rays) if n == 2 else [1.0 / n]):
            ceiling = rectangle_load(share, n)

            def run(scale: float, share: float = share) -> Probe:
                return judge(ray_rates(share, scale, caps), scale, f"ray{share:.2f}")

            lo, hi, probes = search(run, 1.0, self.precision, ceiling=ceiling, grow=1 + 2 * self.precision,
                                    floor=1.0 / 2 ** FLOOR_HALVINGS)
            rates = ray_rates(share, lo, caps) if lo is not None else {k: 0.0 for k in caps}
            names = list(caps)
            ratio = (1 - share) * caps[names[1]] / (share * caps[names[0]]) if n == 2 else None
            boundary.append(BoundaryPoint(share=share, ratio=ratio, rates=rates, load=lo or 0.0,
                                          rectangle_load=ceiling, first_failing_load=hi, probes=probes))
        return region_metrics(CapacityRegion(instances=list(caps), solo_caps=caps, boundary=boundary))


def _device_kind(spec: ExperimentSpec) -> str | None:
    """The one kind of device the instances run on (words for the report), None when mixed or
    not known before the run (`auto`)."""
    kinds = set()
    for inst in spec.instances:
        try:
            kinds.add(kind_of(inst.device or "endpoint").name)
        except DeviceUnavailable:
            return None
    return kinds.pop() if len(kinds) == 1 else None


def run_capacity(spec: ExperimentSpec, out: Path, target: float = DEFAULT_TARGET, precision: float = DEFAULT_PRECISION,
                 probe_s: float = 10.0, rays: int = 5, start_rate: float | None = None,
                 progress: CapacityProgress | None = None, source: str = "experiment",
                 on_update: Callable[[CapacitySummary], None] | None = None, min_rate: float | None = None,
                 max_time_s: float = DEFAULT_MAX_TIME_S) -> CapacitySummary:
    """Solo capacity of every instance, then (two or more) the co-location region; capacity.json
    in `out` is rewritten after each step, so an interrupted search keeps what it found. The search
    never probes below `min_rate` (default: 64 times below its start) and stops before a probe
    that would pass `max_time_s` (the summary's `stopped` says so)."""
    register_spec(spec)
    check_spec(spec, source)
    if rays < 5 and len(spec.instances) == 2:
        raise ColobenchError(f"--rays {rays}: the region needs at least 5 rays to have a shape")
    if out.exists() and any(out.iterdir()):
        raise ColobenchError(f"--out {out}: folder exists and is not empty; choose another")
    created = not out.exists()
    make_dir(out, "--out")
    note = (progress or CapacityProgress()).note
    try:
        with folder_lock(out), api.managed_servers(spec, RunDir(out), source, note) as running:
            return _search(running, out, target, precision, probe_s, rays, start_rate, progress, source, on_update,
                           min_rate, max_time_s)
    except BaseException:
        if created:
            remove_if_empty(RunDir(out))  # refused before anything ran (a server's port in use): nothing left
        raise


def _search(spec: ExperimentSpec, out: Path, target: float, precision: float, probe_s: float, rays: int,
            start_rate: float | None, progress: CapacityProgress | None, source: str,
            on_update: Callable[[CapacitySummary], None] | None, min_rate: float | None,
            max_time_s: float) -> CapacitySummary:
    started = time.monotonic()
    searcher = CapacitySearch(spec, out, target, precision, probe_s, start_rate, progress, source,
                              min_rate=min_rate, max_time_s=max_time_s)
    objectives = {n: i.slo.objectives() for n, i in zip(searcher.names, spec.instances) if i.slo is not None}
    summary = CapacitySummary(experiment=spec.name, target=target, precision=precision, probe_s=probe_s,
                              objectives=objectives, device_kind=_device_kind(spec), max_time_s=max_time_s)

    def save(s: CapacitySummary) -> CapacitySummary:
        s = s.model_copy(update={"probes": searcher.count, "wall_s": time.monotonic() - started})
        write_json_atomic(RunDir(out).capacity, {"capacity": s.model_dump(mode="json", by_alias=True)})
        if on_update is not None:
            on_update(s)
        return s

    solo: dict[str, SoloCapacity] = {}
    kept = 0  # probes already part of a finished search in the summary
    try:
        for name in searcher.names:
            solo[name] = searcher.solo(name)
            kept = len(searcher.history)
            summary = save(summary.model_copy(update={"solo": dict(solo)}))
        caps = {n: s.max_rate for n, s in solo.items()}
        if len(caps) >= 2:
            missing = [n for n, c in caps.items() if not c]
            if missing:
                (progress or CapacityProgress()).note(f"no co-location region: {', '.join(missing)} met the SLO at "
                                                      "no probed rate")
            else:
                region = searcher.region({n: float(c) for n, c in caps.items() if c}, rays)
                kept = len(searcher.history)
                summary = save(summary.model_copy(update={"region": region}))
    except KeyboardInterrupt:  # what was found is kept, with the unfinished search's probes
        save(summary.model_copy(update={"interrupted": True, "unfinished": searcher.history[kept:]}))
        raise
    except OutOfTime as exc:  # the same, and the search ends here, saying why
        (progress or CapacityProgress()).note(f"stopped: {exc}")
        return save(summary.model_copy(update={"stopped": str(exc), "unfinished": searcher.history[kept:]}))
    return save(summary)
