"""From a run directory to `summary.json`: pure, re-computable any time without a device.

Per instance and phase (solo, colocated) the summary holds vLLM-compatible keys
(`mean_ttft_ms`, `median_ttft_ms`, `std_ttft_ms`, `p99_ttft_ms`, likewise `tpot`, `itl`, `e2el`,
`output_throughput` in tokens/s, `request_throughput` in requests/s) and the full
`Distribution` of each metric. Latency distributions pool every measured request of every
repetition; throughputs are computed per repetition window and their mean is reported, with the
spread across repetitions as their distribution. Open-loop phases add the requested and achieved
rate and the schedule lag.

An experiment without sweep axes is summarised at the top level (`phases`, `interference`,
`runs`, `instances`); a sweep has one entry per point under `points`, each carrying its axis
values next to its metrics, plus `batch_scaling` when batch size is an axis.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from colobench.analysis import metrics as m
from colobench.analysis.distribution import Distribution
from colobench.analysis.interference import interference
from colobench.analysis.quality import attach_quality
from colobench.analysis.diagnosis import diagnose
from colobench.analysis.resources import idle_power, instance_resources, shared_energy
from colobench.telemetry.replay import read_samples
from colobench.analysis.sweeps import batch_scaling
from colobench.analysis.validity import difference_is_significant, validity
from colobench.records import RequestRecord, read_records

SCHEMA = "colobench.summary/1"
NS_TO_MS = 1e-6
LATENCY_METRICS = ("ttft", "tpot", "itl", "e2el")
RATE_TOLERANCE = 0.01


def _vllm_keys(metric: str, d: Distribution) -> dict[str, float | None]:
    return {f"mean_{metric}_ms": d.mean, f"median_{metric}_ms": d.p50, f"std_{metric}_ms": d.std,
            f"p90_{metric}_ms": d.p90, f"p99_{metric}_ms": d.p99}


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _open_loop(sent_by_rep: dict[int, list[RequestRecord]], ok: list[RequestRecord],
               requested_rate: float | None) -> dict[str, Any]:
    """Requested vs achieved rate and the schedule lag of an open-loop phase."""
    achieved = _mean([m.achieved_rate_req_s(v) for v in sent_by_rep.values()])
    lag = Distribution.of([lag for r in ok if (lag := m.schedule_lag_ns(r)) is not None]).scaled(NS_TO_MS)
    error = achieved / requested_rate - 1 if achieved and requested_rate else None
    return {
        "requested_rate": requested_rate,
        "achieved_rate": achieved,
        "rate_error_pct": error * 100 if error is not None else None,
        "rate_ok": abs(error) <= RATE_TOLERANCE if error is not None else None,
        "mean_schedule_lag_ms": lag.mean, "p99_schedule_lag_ms": lag.p99,
        "schedule_lag_ms": lag.to_dict(),
    }


def instance_phase_metrics(records: list[RequestRecord], workload: dict[str, Any] | None = None) -> dict[str, Any]:
    """Metrics of one instance in one run from its records (all repetitions)."""
    ok = m.measured(records)
    sent = [r for r in records if not r.warmup]
    failed = [r for r in sent if not r.ok]
    by_rep: dict[int, list[RequestRecord]] = defaultdict(list)
    sent_by_rep: dict[int, list[RequestRecord]] = defaultdict(list)
    for r in ok:
        by_rep[r.repetition].append(r)
    for r in sent:
        sent_by_rep[r.repetition].append(r)
    reps = sorted(by_rep)
    dists = {
        "ttft": Distribution.of([m.ttft_ns(r) for r in ok]).scaled(NS_TO_MS),
        "tpot": Distribution.of([t for r in ok if (t := m.tpot_ns(r)) is not None]).scaled(NS_TO_MS),
        "itl": Distribution.of([g for r in ok for g in m.itl_ns(r)]).scaled(NS_TO_MS),
        "e2el": Distribution.of([m.e2el_ns(r) for r in ok]).scaled(NS_TO_MS),
    }
    out_d = Distribution.of([v for k in reps if (v := m.output_throughput_tok_s(by_rep[k])) is not None])
    req_d = Distribution.of([v for k in reps if (v := m.request_throughput_req_s(by_rep[k])) is not None])
    total_in = sum(r.prompt_tokens for r in ok)
    total_out = sum(r.output_tokens for r in ok)
    duration = sum(m.window_s(by_rep[k]) for k in reps)
    result: dict[str, Any] = {
        "completed": len(ok),
        "failed": len(failed),
        "error_rate": len(failed) / len(sent) if sent else None,
        "warmup_requests": sum(1 for r in records if r.warmup),
        "repetitions": len(reps),
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "duration": duration,
        "request_throughput": req_d.mean,
        "output_throughput": out_d.mean,
        "total_token_throughput": (total_in + total_out) / duration if duration > 0 else None,
        "mean_concurrency": _mean([m.mean_concurrency(by_rep[k]) for k in reps]),
        "mean_prompt_tokens": total_in / len(ok) if ok else None,
        "mean_output_tokens": total_out / len(ok) if ok else None,
    }
    static = ok and all(r.scheduled_ns is None and r.batch_id >= 0 for r in ok)
    result["mean_batch"] = (sum(r.batch_size for r in ok) / len(ok)) if static else result["mean_concurrency"]
    for name in LATENCY_METRICS:
        result.update(_vllm_keys(name, dists[name]))
    result["distributions"] = {
        **{f"{k}_ms": d.to_dict() for k, d in dists.items()},
        "output_throughput_tok_s": out_d.to_dict(),
        "request_throughput_req_s": req_d.to_dict(),
    }
    if any(r.scheduled_ns is not None for r in sent):
        result["open_loop"] = _open_loop(sent_by_rep, ok, (workload or {}).get("rate"))
    sources = Counter(r.token_count_source for r in ok if r.token_count_source)
    if sources:
        result["token_count_source"] = dict(sources)
        result["output_length_mismatch"] = sum(
            1 for r in ok if r.expected_output_tokens is not None and r.output_tokens != r.expected_output_tokens)
    result["errors"] = dict(Counter(r.error or "unknown" for r in failed))
    if ok:
        result["window_ns"] = [min(m.start_ns(r) for r in ok), max(r.done_ns for r in ok)]
    return result


def load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _parts(workers: dict[str, Any], name: str) -> dict[str, Any]:
    """The worker entries of an instance: `name`, or `name.0`, `name.1`, ... (client processes)."""
    return {k: v for k, v in workers.items() if k == name or (k.startswith(name + ".") and k[len(name) + 1:].isdigit())}


def _merge_workers(parts: dict[str, Any]) -> dict[str, Any]:
    """One status for an instance run by several processes: the worst of them."""
    if len(parts) == 1:
        return next(iter(parts.values()))
    order = ["died", "failed", "interrupted", "starting", "loaded", "running", "completed"]
    worst = min(parts.values(), key=lambda w: order.index(w.get("status")) if w.get("status") in order else 0)
    return {**worst, "pid": [w.get("pid") for w in parts.values()],
            "info": next((w["info"] for w in parts.values() if w.get("info")), None),
            "client": [c for w in parts.values() for c in w.get("client") or []]}


def _client_block(client: list[dict[str, Any]], processes: int) -> dict[str, Any] | None:
    """The load generator's own load: CPU (fraction of one core) and event-loop lag."""
    if not client:
        return None
    utils = [c["cpu_util"] for c in client if c.get("cpu_util") is not None]
    lags = [c["loop_lag_ms"]["p99"] for c in client if c.get("loop_lag_ms") and c["loop_lag_ms"].get("p99") is not None]
    return {"processes": processes, "cpu_util_mean": _mean(utils), "cpu_util_max": max(utils) if utils else None,
            "loop_lag_p99_ms": max(lags) if lags else None,
            "cpu_s": sum(c.get("cpu_s") or 0 for c in client)}


def _server_metrics(metrics_dir: Path, name: str) -> dict[str, float] | None:
    """Counter deltas between the Prometheus scrapes taken before and after the run."""
    before, after = metrics_dir / f"{name}.before.prom", metrics_dir / f"{name}.after.prom"
    if not (before.is_file() and after.is_file()):
        return None
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        return None

    def counters(text: str) -> dict[str, float]:
        out = {}
        for family in text_string_to_metric_families(text):
            if family.type not in ("counter", "histogram", "summary"):
                continue
            for sample in family.samples:
                if family.type != "counter" and not sample.name.endswith(("_count", "_sum")):
                    continue
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return out

    try:
        a, b = counters(before.read_text()), counters(after.read_text())
    except ValueError:
        return None
    return {k: b[k] - a.get(k, 0.0) for k in sorted(b)}


def summarize_point(run_dir: Path, runs: list[dict[str, Any]], peaks: dict[str, Any] | None = None,
                    loaded: dict[tuple[str, str], list[RequestRecord]] | None = None) -> dict[str, Any]:
    """`loaded` collects each (run id, instance)'s records, so the diagnosis does not read them again."""
    """Runs, phases, interference, resources and instance facts of one point's runs."""
    phases: dict[str, dict[str, Any]] = {"solo": {}, "colocated": {}}
    energy: dict[str, Any] = {}
    records_of: dict[tuple[str, str], list[RequestRecord]] = {}
    run_entries: dict[str, Any] = {}
    problems: list[str] = []
    facts: dict[str, Any] = {}
    for run in runs:
        rdir = run_dir / "runs" / run["run_id"]
        state = load_json(rdir / "run.json") if (rdir / "run.json").is_file() else {"status": "not started"}
        entry: dict[str, Any] = {"phase": run["phase"], "status": state.get("status"), "workers": {},
                                 "telemetry": state.get("telemetry")}
        problems += [f"{run['run_id']}: {w}" for w in state.get("warnings") or []]
        samples = read_samples(rdir / "telemetry.jsonl")
        # the device each instance really used in this run: a Ray launcher's run.json names the
        # card Ray assigned (and its node), which telemetry samples are labelled with
        used = {i["name"]: i["device"] for i in state.get("instances", [])}
        devices = {i["name"]: used.get(i["name"], i["device"]) for i in run["instances"]}
        for inst in run["instances"]:
            name = inst["name"]
            parts = _parts(state.get("workers", {}), name)
            worker = _merge_workers(parts) if parts else {}
            entry["workers"][name] = {k: worker.get(k) for k in ("status", "reason", "pid", "exitcode")}
            if worker.get("status") in ("died", "failed", "interrupted"):
                problems.append(f"{run['run_id']}: {name} {worker.get('status')}: {worker.get('reason')}")
            info = worker.get("info") or {}
            f = facts.setdefault(name, {
                "model": inst["model"], "preset": inst.get("preset"), "backend": inst["backend"],
                "device": inst["device"], "dtype": inst["dtype"], "cpu_threads": inst["cpu_threads"],
                "workload": inst["workload"], "endpoint": inst.get("endpoint"),
            })
            for key in ("parameters", "weight_bytes", "kv_cache_bytes_per_token", "torch_threads", "architecture",
                        "load_model", "parallel", "requests_raised_to", "quantization", "graph", "knobs"):
                if info.get(key) is not None:
                    f.setdefault(key, info[key])
            if info.get("device"):
                f.setdefault("device_info", info["device"])
            if state.get("status") == "not started":
                continue
            records = [r for key in (parts or {name: None}) for r in read_records(rdir / "records" / f"{key}.jsonl")]
            records_of[(run["phase"], name)] = records
            if loaded is not None:
                loaded[(run["run_id"], name)] = records
            metrics = instance_phase_metrics(records, inst["workload"])
            metrics["peak_memory_bytes"] = worker.get("peak_memory_bytes")
            metrics["load_model"] = info.get("load_model")
            metrics["parallel"] = sum((w.get("info") or {}).get("parallel") or 0 for w in parts.values()) or None
            metrics["backend"] = inst["backend"]
            if worker.get("warmup_s") is not None:
                metrics["warmup_s"] = worker["warmup_s"]  # includes compilation in graph mode
            client = _client_block(worker.get("client") or [], len(parts))
            if client:
                metrics["client"] = client
            server = _server_metrics(rdir / "metrics", name)
            if server is not None:
                metrics["server_metrics"] = server
            pids = [p for w in parts.values() for p in ([w.get("pid")] if isinstance(w.get("pid"), int) else [])]
            device = devices[name]
            shared = list(devices.values()).count(device) > 1 and device != "endpoint"
            run_facts = facts[name] if device == facts[name]["device"] else {**facts[name], "device": device}
            resources = instance_resources(samples, run_facts, metrics, list(parts) or [name], pids, peaks or {},
                                           shared)
            metrics.update(resources)
            phases[run["phase"]][name] = metrics
        run_entries[run["run_id"]] = entry
        if run["phase"] == "colocated" and samples:
            energy["colocated"] = shared_energy(samples, phases["colocated"], devices)
    inter = interference(phases["solo"], phases["colocated"])
    for name, slow in inter["slowdown"].items():  # is each slowdown larger than the noise?
        solo_r, coloc_r = m.measured(records_of.get(("solo", name), [])), m.measured(records_of.get(("colocated", name), []))
        slow["beyond_noise"] = {
            "ttft": difference_is_significant([m.ttft_ns(r) for r in solo_r], [m.ttft_ns(r) for r in coloc_r]),
            "tpot": difference_is_significant([t for r in solo_r if (t := m.tpot_ns(r))],
                                              [t for r in coloc_r if (t := m.tpot_ns(r))]),
            "e2el": difference_is_significant([m.e2el_ns(r) for r in solo_r], [m.e2el_ns(r) for r in coloc_r]),
        }
    bound = {v["subject"] for v in inter["verdicts"] if v["verdict"] == "client_bound"}
    for (phase, name), records in records_of.items():
        if name in phases[phase]:
            phases[phase][name]["validity"] = validity(records, phases[phase][name], f"{name}/{phase}" in bound)
    return {
        "instances": facts,
        "runs": run_entries,
        "phases": {k: v for k, v in phases.items() if v},
        "interference": inter,
        "energy": energy,
        "problems": problems,
    }


def summarize_run_dir(run_dir: Path) -> dict[str, Any]:
    """Rebuild the whole summary from the files of a run directory."""
    manifest = load_json(run_dir / "manifest.json")
    plan = manifest["plan"]
    head = {"schema": SCHEMA, "experiment": plan["name"], "colobench_version": manifest.get("colobench_version"),
            "telemetry": manifest.get("telemetry") or {},
            "idle_power_w": idle_power(read_samples(run_dir / "idle_telemetry.jsonl"))}
    peaks = ((manifest.get("experiment") or {}).get("telemetry") or {}).get("peaks") or {}
    points = plan.get("points") or [{"id": "", "axes": {}}]
    by_point: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in plan["runs"]:
        by_point[run.get("point", "")].append(run)
    cores = (manifest.get("environment") or {}).get("logical_cores") or 1
    if len(points) == 1 and not points[0]["id"]:
        loaded: dict[tuple[str, str], list[RequestRecord]] = {}
        body = summarize_point(run_dir, by_point[""], peaks, loaded)
        attach_quality(run_dir, plan, [{"id": "", "axes": {}, **body}], {})
        findings = diagnose(run_dir, plan, [{"id": "", "axes": {}, **body}], cores, loaded)
        return {**head, **body, "findings": [f.to_dict() for f in findings]}
    out_points = []
    problems: list[str] = []
    loaded: dict[tuple[str, str], list[RequestRecord]] = {}
    for point in points:
        body = summarize_point(run_dir, by_point[point["id"]], peaks, loaded)
        problems += body.pop("problems")
        out_points.append({"id": point["id"], **point["axes"], "axes": point["axes"], **body})
    attach_quality(run_dir, plan, out_points, (manifest.get("experiment") or {}).get("sweep") or {})
    findings = diagnose(run_dir, plan, out_points, cores, loaded)
    return {**head, "sweep": {"axes": list(points[0]["axes"])}, "points": out_points,
            "batch_scaling": batch_scaling(out_points), "problems": problems,
            "findings": [f.to_dict() for f in findings]}
