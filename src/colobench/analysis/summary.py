"""From a run directory to its `Summary`: pure, re-computable any time without a device.

For each point of the experiment (one point with id "" when there is no sweep): each instance's
facts (the plan's settings and what its worker reported), each run's outcome, the metrics of
each instance in each phase (`colobench.analysis.phase`) with the telemetry of its window, the
roofline and energy (`resources`), the interference between co-located instances
(`interference`), then every check (`checks`) and each phase's validity, the quality of
variants against their reference (`quality`), the batch-scaling tables of a batch-size sweep,
and the diagnosis (`diagnosis`).
"""

from __future__ import annotations

from typing import Any

from colobench.analysis.advice import Guard, advise
from colobench.analysis.checks import phase_checks, point_checks, validity
from colobench.analysis.diagnosis import diagnose
from colobench.analysis.diagnosis.logscan import RULES, LogRule, rules_from
from colobench.analysis.host_reference import host_reference
from colobench.analysis.interference import interference
from colobench.analysis.model import (SCHEMA, Attempt, Check, Energy, InstanceFacts, PhaseMetrics, Point, RunEntry,
                                      Summary, WorkerOutcome)
from colobench.analysis.phase import client_load, instance_phase_metrics, overlap, ramp_steps, requested_rate
from colobench.analysis.server import server_evidence, server_metrics
from colobench.analysis.quality import quality_of_points
from colobench.analysis.resources import allocator, idle_power, instance_resources, shared_energy
from colobench.analysis.sweeps import batch_scaling
from colobench.devices import kind_of
from colobench.records import CorruptFile, RequestRecord, read_jsonl, read_records
from colobench.rundir import (WORST_FIRST, PlannedRun, RunDir, RunFolder, RunState, WorkerState, is_worker_of,
                              read_host_reference, read_manifest, read_run_state)
from colobench.telemetry.replay import read_samples

FACT_KEYS = ("parameters", "weight_bytes", "kv_cache_bytes_per_token", "torch_threads", "architecture", "load_model",
             "parallel", "requests_raised_to", "trace", "quantization", "graph", "attn_implementation", "knobs")
RECORDING = ("completed",)  # a worker that must have written records in each of its runs


def earlier_attempts(run_dir: RunDir, folder: RunFolder) -> list[Attempt]:
    """The unfinished attempts `--resume` moved aside in a run's `attempts/<k>/` folders."""
    out = []
    for _, attempt in folder.attempts():
        try:
            status = read_run_state(attempt.state).status if attempt.state.is_file() else None
        except CorruptFile:
            status = None
        records = sum(1 for f in attempt.record_files() for r in read_jsonl(f)
                      if not r.get("warmup") and not r.get("load_only"))
        out.append(Attempt(folder=str(attempt.root.relative_to(run_dir.root)), status=status, records=records))
    return out


def _parts(workers: dict[str, WorkerState], name: str) -> dict[str, WorkerState]:
    """The worker entries of an instance: `name`, or `name.0`, `name.1`, ... (client processes)."""
    return {k: v for k, v in workers.items() if is_worker_of(k, name)}


def _merge_workers(parts: dict[str, WorkerState]) -> WorkerState:
    """One status for an instance run by several processes: the worst of them."""
    if len(parts) == 1:
        return next(iter(parts.values()))
    worst = min(parts.values(), key=lambda w: WORST_FIRST.index(w.status))
    return worst.model_copy(update={"pid": [w.pid for w in parts.values()],
                                    "info": next((w.info for w in parts.values() if w.info), None),
                                    "client": [c for w in parts.values() for c in w.client]})


class _PointBuilder:
    """Collects one point's runs; `build` gives the point, its records and its checks."""

    def __init__(self, run_dir: RunDir, point_id: str, axes: dict[str, Any], peaks: dict[str, Any],
                 states: dict[str, RunState]):
        self.run_dir, self.id, self.axes, self.peaks, self.states = run_dir, point_id, axes, peaks, states
        self.phases: dict[str, dict[str, PhaseMetrics]] = {"solo": {}, "colocated": {}}
        self.records: dict[tuple[str, str], list[RequestRecord]] = {}  # (run id, instance)
        self.facts: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, RunEntry] = {}
        self.energy = Energy()
        self.problems: list[str] = []

    def _state(self, run: PlannedRun, folder: RunFolder) -> RunState:
        if run.run_id in self.states:
            return self.states[run.run_id]
        if not folder.state.is_file():
            return RunState(run_id=run.run_id, status="not started")
        try:
            return read_run_state(folder.state)
        except CorruptFile as exc:  # the outcomes are lost; the records are not
            self.problems.append(f"{exc}: the run's worker outcomes are unknown")
            return RunState(run_id=run.run_id, status="unknown")

    def add_run(self, run: PlannedRun) -> None:
        folder = self.run_dir.run(run.run_id)
        state = self._state(run, folder)
        workers: dict[str, WorkerOutcome] = {}
        self.problems += [f"{run.run_id}: {w}" for w in state.warnings]
        samples = read_samples(folder.telemetry)
        # the device each instance really used in this run: a Ray launcher's run.json names the
        # card Ray assigned (and its node), which telemetry samples are labelled with
        used = {i.name: i.device for i in state.instances}
        # an endpoint as the run used it: a managed server's URL and pid are bound when it starts
        endpoints = {i.name: i.endpoint for i in state.instances if i.endpoint}
        devices = {i.name: used.get(i.name, i.device) for i in run.instances}
        parts_of = {i.name: _parts(state.workers, i.name) for i in run.instances}
        merged = {name: _merge_workers(parts) if parts else WorkerState() for name, parts in parts_of.items()}
        records_of = {}
        for inst in run.instances:
            name, parts, worker = inst.name, parts_of[inst.name], merged[inst.name]
            workers[name] = WorkerOutcome(status=worker.status if parts else None, reason=worker.reason,
                                          pid=worker.pid, exitcode=worker.exitcode)
            if worker.status in ("died", "failed", "interrupted"):
                self.problems.append(f"{run.run_id}: {name} {worker.status}: {worker.reason}")
            f = self.facts.setdefault(name, {
                "model": inst.model, "preset": inst.preset, "backend": inst.backend, "device": inst.device,
                "dtype": inst.dtype, "cpu_threads": inst.cpu_threads, "workload": inst.workload,
                "endpoint": endpoints.get(name, inst.endpoint)})
            info = worker.info
            if info is not None:
                for key in FACT_KEYS:
                    if getattr(info, key) is not None:
                        f.setdefault(key, getattr(info, key))
                if info.device:
                    f.setdefault("device_info", info.device)
            if state.status != "not started":
                records_of[name] = []
                for key, part in (parts or {name: None}).items():
                    path = folder.records(key)
                    if not path.is_file() and part is not None and part.status in RECORDING:
                        self.problems.append(f"{path}: missing ({key} {part.status}; its records are gone)")
                    records_of[name] += read_records(path, self.problems)
        co = run.phase == "colocated" and len(records_of) > 1
        kept, overlaps = overlap(records_of) if co else (records_of, {})
        # instances of this run one server counted together: the same /metrics and served model
        scraped = {i.name: ((endpoints.get(i.name) or {}).get("metrics_url"), i.model) for i in run.instances}
        for inst in run.instances:
            name, parts, worker = inst.name, parts_of[inst.name], merged[inst.name]
            if name not in kept:
                continue
            records = kept[name]
            self.records[(run.run_id, name)] = records
            keys = list(parts) or [name]
            metrics = instance_phase_metrics(
                records, requested_rate(inst.workload), inst.objectives or None, peak_memory_bytes=worker.peak_memory_bytes,
                allocator=allocator(worker.memory.model_dump() if worker.memory else None),
                load_model=worker.info.load_model if worker.info else None, backend=inst.backend,
                parallel=sum((w.info.parallel if w.info else None) or 0 for w in parts.values()) or None,
                warmup_s=worker.warmup_s,  # includes compilation in graph mode
                client=client_load(folder, keys, worker.client),
                server_metrics=server_metrics(folder, name),
                server=server_evidence(folder, name, inst.model, records_of.get(name, []),
                                       [n for n, k in scraped.items() if n != name and k == scraped[name] and k[0]],
                                       samples),
                **overlaps.get(name, {}))
            steps = ramp_steps(records, inst.workload)
            if steps:
                metrics = metrics.model_copy(update={"by_step": steps})
            if not metrics.warmup_requests and worker.warmup_requests:  # warmed up in its group's first run
                metrics = metrics.model_copy(update={"warmup_requests": worker.warmup_requests})
            pids = [w.pid for w in parts.values() if isinstance(w.pid, int)]
            device = devices[name]
            shared = list(devices.values()).count(device) > 1 and kind_of(device).visible
            resources = instance_resources(samples, InstanceFacts(**self.facts[name]), device, metrics, keys, pids,
                                           self.peaks, shared, name)
            self.phases[run.phase][name] = metrics.model_copy(update=resources)
        if state.status in ("abandoned", "disk_full"):
            self.problems.append(f"{run.run_id}: {state.status}: {state.stop_reason}")
        attempts = earlier_attempts(self.run_dir, folder)  # listed with the run, never counted, not a problem
        self.runs[run.run_id] = RunEntry(phase=run.phase, status=state.status, stop_reason=state.stop_reason,
                                         workers=workers, telemetry=state.telemetry, attempts=attempts)
        if run.phase == "colocated" and samples:
            self.energy = Energy(colocated=shared_energy(samples, self.phases["colocated"], devices))

    def build(self, runs: list[PlannedRun]) -> tuple[Point, list[Check]]:
        """The point (metrics with their validity) and every check of it."""
        run_of = {(r.phase, i.name): r.run_id for r in runs for i in r.instances}
        inter = interference(self.phases["solo"], self.phases["colocated"])
        checks: list[Check] = []
        phases: dict[str, dict[str, PhaseMetrics]] = {}
        for phase, by_name in self.phases.items():
            for name, mt in by_name.items():
                own = phase_checks(self.id, phase, name, mt, self.records.get((run_of[(phase, name)], name), []))
                checks += own
                phases.setdefault(phase, {})[name] = mt.model_copy(update={"validity": validity(mt, own)})
        checks += point_checks(self.id, inter, phases)
        point = Point(id=self.id, axes=self.axes, instances={n: InstanceFacts(**f) for n, f in self.facts.items()},
                      runs=self.runs, phases=phases, interference=inter, energy=self.energy)
        return point, checks


def summarize_run_dir(run_dir: RunDir, states: dict[str, RunState] | None = None,
                      log_rules: list[LogRule] | None = None) -> Summary:
    """Rebuild the whole summary from the files of a run directory; `states` (by run id) stand in
    for run.json files the caller knows better (settled as abandoned, and not rewritable)."""
    manifest = read_manifest(run_dir.manifest)
    plan = manifest.plan
    points: list[Point] = []
    checks: list[Check] = []
    problems: list[str] = []
    records: dict[tuple[str, str], list[RequestRecord]] = {}
    paired = plan.paired_points()
    for pp in plan.point_entries():
        # peaks: the experiment's own figures win; a device without a datasheet peak (the CPU) gets
        # the copy bandwidth `colobench devices --probe` measured on this host, if it was measured
        builder = _PointBuilder(run_dir, pp.id, pp.axes, manifest.peaks, states or {})
        runs = plan.runs_of(pp.id)
        for run in runs:
            builder.add_run(run)
        point, point_checks_ = builder.build(runs)
        if paired.get(pp.id):
            point = point.model_copy(update={"paired_with": paired[pp.id]})
        points.append(point)
        checks += point_checks_
        problems += builder.problems
        records.update(builder.records)
    problems += [f"server {s.name}: {s.problem}" for s in manifest.servers if s.problem]  # died, or never came up
    points = quality_of_points(run_dir, plan, points)
    cores = manifest.environment.logical_cores or 1
    rules = RULES + rules_from(manifest.log_rules, str(run_dir.manifest)) + (log_rules or [])
    findings = diagnose(run_dir, plan, points, checks, cores, records, rules)
    guard = manifest.advice_guard
    advice = advise(points, plan.axes, Guard(**{k: guard[k] for k in ("min_token_agreement", "max_kl") if k in guard}))
    return Summary(schema=SCHEMA, experiment=plan.name, colobench_version=manifest.colobench_version,
                   advice=advice, telemetry=manifest.telemetry,
                   idle_power_w=idle_power(read_samples(run_dir.idle_telemetry)),
                   sweep_axes=plan.axes, points=points,
                   batch_scaling=batch_scaling(points), checks=checks, findings=findings, problems=problems,
                   host_reference=host_reference(read_host_reference(run_dir.host_reference, problems)))
