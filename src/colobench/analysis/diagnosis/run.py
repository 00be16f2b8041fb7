"""Run every detector over a run directory and its summary; rank the findings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from colobench.analysis import metrics as m
from colobench.analysis.diagnosis import detectors as d
from colobench.analysis.diagnosis.findings import Finding, rank
from colobench.records import instance_records, read_jsonl
from colobench.telemetry.replay import read_samples


def _phase_data(run_dir: Path, point_id: str, run: dict[str, Any], phase_metrics: dict[str, Any],
                facts: dict[str, Any], cores: int, loaded: dict[tuple[str, str], list[Any]] | None = None) -> dict[tuple[str, str], d.PhaseData]:
    rdir = run_dir / "runs" / run["run_id"]
    samples = read_samples(rdir / "telemetry.jsonl")
    out = {}
    records_by_name = {}
    for inst in run["instances"]:
        name = inst["name"]
        cached = (loaded or {}).get((run["run_id"], name))
        records_by_name[name] = cached if cached is not None else instance_records(rdir / "records", name)
    all_starts = [m.start_ns(r) for rs in records_by_name.values() for r in rs]
    origin = min(all_starts) if all_starts else 0
    for inst in run["instances"]:
        name = inst["name"]
        if name not in phase_metrics:
            continue
        records = records_by_name[name]
        gc = [g for f in sorted((rdir / "gc").glob(f"{name}*.jsonl")) for g in read_jsonl(f)] \
            if (rdir / "gc").is_dir() else []
        out[(run["phase"], name)] = d.PhaseData(
            point=point_id, run_id=run["run_id"], phase=run["phase"], name=name, device=inst["device"],
            backend=inst["backend"], records=m.measured(records), warmup=[r for r in records if r.warmup],
            metrics=phase_metrics[name], facts=facts.get(name, {}), samples=samples, gc=gc, origin_ns=origin,
            logical_cores=cores)
    return out


def diagnose(run_dir: Path, plan: dict[str, Any], points: list[dict[str, Any]], cores: int,
             loaded: dict[tuple[str, str], list[Any]] | None = None) -> list[Finding]:
    """All findings of a run directory, ranked; `points` are the summary's point entries (a run
    without a sweep is one point with id '')."""
    runs_by_point: dict[str, list[dict[str, Any]]] = {}
    for run in plan["runs"]:
        runs_by_point.setdefault(run.get("point", ""), []).append(run)
    datas = []
    for point in points:
        data = d.PointData(point["id"], point.get("axes") or {}, interference=point.get("interference") or {})
        for run in runs_by_point.get(point["id"], []):
            phase_metrics = (point.get("phases") or {}).get(run["phase"], {})
            data.phases.update(_phase_data(run_dir, point["id"], run, phase_metrics, point.get("instances") or {},
                                           cores, loaded))
        datas.append(data)
    findings: list[Finding] = []
    for data in datas:
        findings += d.bandwidth_contention(data) + d.compute_contention(data) + d.cpu_contention(data)
        findings += d.client_bound(data)
        entry = next((pt for pt in points if pt["id"] == data.id), {})
        for (_, name), p in data.phases.items():
            worker = (((entry.get("runs") or {}).get(p.run_id) or {}).get("workers") or {}).get(name) or {}
            findings += d.host_bound_single(p) + d.warmup_outliers(p) + d.throttling(p)
            findings += d.memory_pressure(p, worker.get("reason")) + d.input_length_variance(p) + d.periodic_stalls(p)
    findings += d.host_bound_sweep(datas)
    return rank(findings)
