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

from collections import defaultdict
from pathlib import Path
from typing import Any

from colobench.analysis.checks import phase_checks, point_checks, validity
from colobench.analysis.advice import Guard, advise
from colobench.analysis.diagnosis import diagnose
from colobench.analysis.diagnosis.logscan import RULES, LogRule, rules_from
from colobench.analysis.interference import interference
from colobench.analysis.model import (SCHEMA, Attempt, Check, Energy, InstanceFacts, PhaseMetrics, Point, RunEntry,
                                      Summary, WorkerOutcome)
from colobench.analysis.phase import client_load, instance_phase_metrics, overlap, server_metrics
from colobench.analysis.quality import quality_of_points
from colobench.analysis.resources import allocator, idle_power, instance_resources, shared_energy
from colobench.analysis.sweeps import batch_scaling
from colobench.devices import kind_of
from colobench.records import CorruptFile, RequestRecord, load_json, read_jsonl, read_records
from colobench.telemetry.replay import read_samples, run_samples

FACT_KEYS = ("parameters", "weight_bytes", "kv_cache_bytes_per_token", "torch_threads", "architecture", "load_model",
             "parallel", "requests_raised_to", "quantization", "graph", "attn_implementation", "knobs")
WORST_FIRST = ["died", "failed", "abandoned", "interrupted", "starting", "loaded", "running", "completed"]




ATTEMPTS = "attempts"


def earlier_attempts(run_dir: Path, rdir: Path) -> list[Attempt]:
    """The unfinished attempts `--resume` moved aside in a run's `attempts/<k>/` folders."""
    out = []
    folders = [p for p in (rdir / ATTEMPTS).glob("*") if p.is_dir() and p.name.isdigit()]
    for folder in sorted(folders, key=lambda p: int(p.name)):
        try:
            status = load_json(folder / "run.json").get("status") if (folder / "run.json").is_file() else None
        except (CorruptFile, AttributeError):
            status = None
        records = sum(1 for f in folder.glob("records/*.jsonl") for r in read_jsonl(f)
                      if not r.get("warmup") and not r.get("load_only"))
        out.append(Attempt(folder=str(folder.relative_to(run_dir)), status=status, records=records))
    return out


RECORDING = ("completed",)  # a worker that must have written records in each of its runs


def _parts(workers: dict[str, Any], name: str) -> dict[str, Any]:
    """The worker entries of an instance: `name`, or `name.0`, `name.1`, ... (client processes)."""
    return {k: v for k, v in workers.items() if k == name or (k.startswith(name + ".") and k[len(name) + 1:].isdigit())}


def _merge_workers(parts: dict[str, Any]) -> dict[str, Any]:
    """One status for an instance run by several processes: the worst of them."""
    if len(parts) == 1:
        return next(iter(parts.values()))
    worst = min(parts.values(), key=lambda w: WORST_FIRST.index(w.get("status")) if w.get("status") in WORST_FIRST else 0)
    return {**worst, "pid": [w.get("pid") for w in parts.values()],
            "info": next((w["info"] for w in parts.values() if w.get("info")), None),
            "client": [c for w in parts.values() for c in w.get("client") or []]}


class _PointBuilder:
    """Collects one point's runs; `build` gives the point, its records and its checks."""

    def __init__(self, run_dir: Path, point_id: str, axes: dict[str, Any], peaks: dict[str, Any],
                 states: dict[str, dict[str, Any]]):
        self.run_dir, self.id, self.axes, self.peaks, self.states = run_dir, point_id, axes, peaks, states
        self.phases: dict[str, dict[str, PhaseMetrics]] = {"solo": {}, "colocated": {}}
        self.records: dict[tuple[str, str], list[RequestRecord]] = {}  # (run id, instance)
        self.facts: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, RunEntry] = {}
        self.energy = Energy()
        self.problems: list[str] = []

    def add_run(self, run: dict[str, Any]) -> None:
        rdir = self.run_dir / "runs" / run["run_id"]
        try:
            state = self.states.get(run["run_id"]) or (
                load_json(rdir / "run.json") if (rdir / "run.json").is_file() else {"status": "not started"})
        except CorruptFile as exc:  # the outcomes are lost; the records are not
            self.problems.append(f"{exc}: the run's worker outcomes are unknown")
            state = {"status": "unknown"}
        if not isinstance(state, dict):
            self.problems.append(f"{rdir / 'run.json'}: not a run record; the run's worker outcomes are unknown")
            state = {"status": "unknown"}
        workers: dict[str, WorkerOutcome] = {}
        self.problems += [f"{run['run_id']}: {w}" for w in state.get("warnings") or []]
        samples = run_samples(rdir)
        # the device each instance really used in this run: a Ray launcher's run.json names the
        # card Ray assigned (and its node), which telemetry samples are labelled with
        used = {i["name"]: i["device"] for i in state.get("instances", [])}
        # an endpoint as the run used it: a managed server's URL and pid are bound when it starts
        endpoints = {i["name"]: i["endpoint"] for i in state.get("instances", []) if i.get("endpoint")}
        devices = {i["name"]: used.get(i["name"], i["device"]) for i in run["instances"]}
        parts_of = {i["name"]: _parts(state.get("workers", {}), i["name"]) for i in run["instances"]}
        records_of = {}
        for inst in run["instances"]:
            name, parts = inst["name"], parts_of[inst["name"]]
            worker = _merge_workers(parts) if parts else {}
            workers[name] = WorkerOutcome(**{k: worker.get(k) for k in ("status", "reason", "pid", "exitcode")})
            if worker.get("status") in ("died", "failed", "interrupted"):
                self.problems.append(f"{run['run_id']}: {name} {worker.get('status')}: {worker.get('reason')}")
            info = worker.get("info") or {}
            f = self.facts.setdefault(name, {
                "model": inst["model"], "preset": inst.get("preset"), "backend": inst["backend"],
                "device": inst["device"], "dtype": inst["dtype"], "cpu_threads": inst["cpu_threads"],
                "workload": inst["workload"], "endpoint": endpoints.get(name, inst.get("endpoint"))})
            for key in FACT_KEYS:
                if info.get(key) is not None:
                    f.setdefault(key, info[key])
            if info.get("device"):
                f.setdefault("device_info", info["device"])
            if state.get("status") != "not started":
                records_of[name] = []
                for key, part in (parts or {name: {}}).items():
                    path = rdir / "records" / f"{key}.jsonl"
                    if not path.is_file() and (part or {}).get("status") in RECORDING:
                        self.problems.append(f"{path}: missing ({key} {part.get('status')}; its records are gone)")
                    records_of[name] += read_records(path, self.problems)
        co = run["phase"] == "colocated" and len(records_of) > 1
        kept, overlaps = overlap(records_of) if co else (records_of, {})
        for inst in run["instances"]:
            name, parts = inst["name"], parts_of[inst["name"]]
            if name not in kept:
                continue
            worker = _merge_workers(parts) if parts else {}
            info = worker.get("info") or {}
            records = kept[name]
            self.records[(run["run_id"], name)] = records
            keys = list(parts) or [name]
            slo = {k: v for k, v in (inst.get("slo") or {}).items() if v is not None}
            metrics = instance_phase_metrics(
                records, inst["workload"].get("rate"), slo or None, peak_memory_bytes=worker.get("peak_memory_bytes"),
                allocator=allocator(worker.get("memory")),
                load_model=info.get("load_model"), backend=inst["backend"],
                parallel=sum((w.get("info") or {}).get("parallel") or 0 for w in parts.values()) or None,
                warmup_s=worker.get("warmup_s"),  # includes compilation in graph mode
                client=client_load(rdir, keys, worker.get("client") or []),
                server_metrics=server_metrics(rdir / "metrics", name), **overlaps.get(name, {}))
            if not metrics.warmup_requests and worker.get("warmup_requests"):  # warmed up in its group's first run
                metrics = metrics.model_copy(update={"warmup_requests": worker["warmup_requests"]})
            pids = [p for w in parts.values() for p in ([w.get("pid")] if isinstance(w.get("pid"), int) else [])]
            device = devices[name]
            shared = list(devices.values()).count(device) > 1 and kind_of(device).visible
            resources = instance_resources(samples, InstanceFacts(**self.facts[name]), device, metrics, keys, pids,
                                           self.peaks, shared, name)
            self.phases[run["phase"]][name] = metrics.model_copy(update=resources)
        if state.get("status") in ("abandoned", "disk_full"):
            self.problems.append(f"{run['run_id']}: {state['status']}: {state.get('stop_reason')}")
        attempts = earlier_attempts(self.run_dir, rdir)  # listed with the run, never counted, not a problem
        self.runs[run["run_id"]] = RunEntry(phase=run["phase"], status=state.get("status"),
                                            stop_reason=state.get("stop_reason"), workers=workers,
                                            telemetry=state.get("telemetry"), attempts=attempts)
        if run["phase"] == "colocated" and samples:
            self.energy = Energy(colocated=shared_energy(samples, self.phases["colocated"], devices))

    def build(self, runs: list[dict[str, Any]]) -> tuple[Point, list[Check]]:
        """The point (metrics with their validity) and every check of it."""
        run_of = {(r["phase"], i["name"]): r["run_id"] for r in runs for i in r["instances"]}
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


def summarize_run_dir(run_dir: Path, states: dict[str, dict[str, Any]] | None = None,
                      log_rules: list[LogRule] | None = None) -> Summary:
    """Rebuild the whole summary from the files of a run directory; `states` (by run id) stand in
    for run.json files the caller knows better (settled as abandoned, and not rewritable)."""
    manifest = load_json(run_dir / "manifest.json")
    plan = manifest["plan"]
    experiment = manifest.get("experiment") or {}
    # peaks: the experiment's own figures win; a device without a datasheet peak (the CPU) gets the
    # copy bandwidth `colobench devices --probe` measured on this host, if it was measured
    peaks = {**(manifest.get("measured_peaks") or {}), **((experiment.get("telemetry") or {}).get("peaks") or {})}
    plan_points = plan.get("points") or [{"id": "", "axes": {}}]
    by_point: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in plan["runs"]:
        by_point[run.get("point", "")].append(run)
    points: list[Point] = []
    checks: list[Check] = []
    problems: list[str] = []
    records: dict[tuple[str, str], list[RequestRecord]] = {}
    for pp in plan_points:
        builder = _PointBuilder(run_dir, pp["id"], pp.get("axes") or {}, peaks, states or {})
        for run in by_point[pp["id"]]:
            builder.add_run(run)
        point, point_checks_ = builder.build(by_point[pp["id"]])
        points.append(point)
        checks += point_checks_
        problems += builder.problems
        records.update(builder.records)
    problems += [f"server {s.get('name')}: {s['problem']}" for s in manifest.get("servers") or []
                 if isinstance(s, dict) and s.get("problem")]  # managed servers that died or never came up
    points = quality_of_points(run_dir, plan, points, experiment.get("sweep") or {})
    cores = (manifest.get("environment") or {}).get("logical_cores") or 1
    rules = RULES + rules_from(experiment.get("log_rules") or [], str(run_dir / "manifest.json")) + (log_rules or [])
    findings = diagnose(run_dir, plan, points, checks, cores, records, rules)
    guard = experiment.get("advice") or {}
    advice = advise(points, list(plan_points[0].get("axes") or {}),
                    Guard(**{k: guard[k] for k in ("min_token_agreement", "max_kl") if k in guard}))
    return Summary(schema=SCHEMA, experiment=plan["name"], colobench_version=manifest.get("colobench_version"),
                   advice=advice,
                   telemetry=manifest.get("telemetry") or {},
                   idle_power_w=idle_power(read_samples(run_dir / "idle_telemetry.jsonl")),
                   sweep_axes=list(plan_points[0].get("axes") or {}), points=points,
                   batch_scaling=batch_scaling(points), checks=checks, findings=findings, problems=problems)
