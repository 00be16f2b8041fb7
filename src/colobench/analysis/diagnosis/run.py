"""Run every detector over a run directory's points and checks; merge and rank the findings."""

from __future__ import annotations

from colobench.analysis import metrics as m
from colobench.analysis.diagnosis import detectors as d
from colobench.analysis.diagnosis.findings import rank
from colobench.analysis.model import Check, Finding, InstanceFacts, Point
from colobench.analysis.diagnosis.logscan import RULES, LogRule
from colobench.analysis.diagnosis.logscan import scan_run as scan_logs
from colobench.records import CorruptFile, RequestRecord, read_jsonl, read_records
from colobench.rundir import ClockAnchor, PlanEntry, PlannedRun, RunDir, RunFolder, read_run_state
from colobench.telemetry.replay import read_samples


def _phase_data(run_dir: RunDir, point: Point, run: PlannedRun, cores: int,
                loaded: dict[tuple[str, str], list[RequestRecord]]) -> dict[tuple[str, str], d.PhaseData]:
    folder = run_dir.run(run.run_id)
    samples = read_samples(folder.telemetry)
    records_by_name = {}
    for inst in run.instances:
        cached = loaded.get((run.run_id, inst.name))
        records_by_name[inst.name] = cached if cached is not None else \
            [r for f in folder.instance_records(inst.name) for r in read_records(f)]
    all_starts = [m.start_ns(r) for rs in records_by_name.values() for r in rs]
    origin = min(all_starts) if all_starts else 0
    out = {}
    for inst in run.instances:
        name = inst.name
        metrics = point.metrics(run.phase, name)
        if metrics is None:
            continue
        records = records_by_name[name]
        gc = [g for f in folder.instance_gc(name) for g in read_jsonl(f)]
        facts = point.instances.get(name) or InstanceFacts(model=inst.model, backend=inst.backend, device=inst.device,
                                                           dtype=inst.dtype, cpu_threads=inst.cpu_threads,
                                                           workload=inst.workload)
        worker = point.runs[run.run_id].workers.get(name) if run.run_id in point.runs else None
        out[(run.phase, name)] = d.PhaseData(
            point=point.id, run_id=run.run_id, phase=run.phase, name=name, device=inst.device,
            backend=inst.backend, records=m.measured(records), warmup=[r for r in records if r.warmup],
            metrics=metrics, facts=facts, samples=samples, gc=gc, origin_ns=origin, logical_cores=cores,
            failed=[r for r in records if not r.warmup and not r.load_only and not r.ok],
            worker_reason=worker.reason if worker else None,
            log_tail=lambda run_id=run.run_id, name=name: _log(run_dir, run_id, name))
    return out


def _log(run_dir: RunDir, run_id: str, name: str) -> str:
    """The tail of an instance's worker logs in a run (where an out-of-memory message would be)."""
    return "".join(f.read_text(errors="replace")[-20_000:] for f in run_dir.run(run_id).instance_logs(name))


def diagnose(run_dir: RunDir, plan: PlanEntry, points: list[Point], checks: list[Check], cores: int,
             loaded: dict[tuple[str, str], list[RequestRecord]] | None = None,
             log_rules: list[LogRule] | None = None) -> list[Finding]:
    """All findings of a run directory, one per cause, ranked; `log_rules` are scanned for in
    every run's logs (the built-in table and the user's)."""
    datas = []
    for point in points:
        data = d.PointData(point.id, point.axes, checks=[c for c in checks if c.subject.point == point.id])
        for run in plan.runs_of(point.id):
            data.phases.update(_phase_data(run_dir, point, run, cores, loaded or {}))
        datas.append(data)
    findings: list[Finding] = []
    for data in datas:
        for point_detector in d.POINT_DETECTORS:
            findings += point_detector(data)
        for p in data.phases.values():
            for phase_detector in d.PHASE_DETECTORS:
                findings += phase_detector(p)
    for sweep_detector in d.SWEEP_DETECTORS:
        findings += sweep_detector(datas)
    for point, data in zip(points, datas):
        for run in plan.runs_of(point.id):
            folder = run_dir.run(run.run_id)
            origin = min((p.origin_ns for (ph, _), p in data.phases.items() if ph == run.phase), default=0)
            findings += scan_logs(folder, run, point.id, _anchor(folder), origin,
                                  log_rules if log_rules is not None else RULES)
    return rank(findings)


def _anchor(folder: RunFolder) -> ClockAnchor | None:
    try:
        return read_run_state(folder.state).clock_anchor
    except (OSError, CorruptFile):
        return None
