"""From a run directory to `summary.json`: pure, re-computable any time without a device.

Per instance and phase (solo, colocated) the summary holds vLLM-compatible keys
(`mean_ttft_ms`, `median_ttft_ms`, `std_ttft_ms`, `p99_ttft_ms`, likewise `tpot`, `itl`, `e2el`,
`output_throughput` in tokens/s, `request_throughput` in requests/s) and the full
`Distribution` of each metric. Latency distributions pool every measured request of every
repetition; throughputs are computed per repetition window and their mean is reported, with the
spread across repetitions as their distribution.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from colobench.analysis import metrics as m
from colobench.analysis.distribution import Distribution
from colobench.analysis.interference import interference
from colobench.records import RequestRecord, read_records

SCHEMA = "colobench.summary/1"
NS_TO_MS = 1e-6
LATENCY_METRICS = ("ttft", "tpot", "itl", "e2el")


def _vllm_keys(metric: str, d: Distribution) -> dict[str, float | None]:
    return {f"mean_{metric}_ms": d.mean, f"median_{metric}_ms": d.p50, f"std_{metric}_ms": d.std,
            f"p90_{metric}_ms": d.p90, f"p99_{metric}_ms": d.p99}


def instance_phase_metrics(records: list[RequestRecord]) -> dict[str, Any]:
    """Metrics of one instance in one run from its records (all repetitions)."""
    ok = m.measured(records)
    failed = [r for r in records if not r.warmup and not r.ok]
    by_rep: dict[int, list[RequestRecord]] = defaultdict(list)
    for r in ok:
        by_rep[r.repetition].append(r)
    reps = sorted(by_rep)
    out_tput = [m.output_throughput_tok_s(by_rep[k]) for k in reps]
    req_tput = [m.request_throughput_req_s(by_rep[k]) for k in reps]
    dists = {
        "ttft": Distribution.of([m.ttft_ns(r) for r in ok]).scaled(NS_TO_MS),
        "tpot": Distribution.of([t for r in ok if (t := m.tpot_ns(r)) is not None]).scaled(NS_TO_MS),
        "itl": Distribution.of([g for r in ok for g in m.itl_ns(r)]).scaled(NS_TO_MS),
        "e2el": Distribution.of([m.e2el_ns(r) for r in ok]).scaled(NS_TO_MS),
    }
    out_d = Distribution.of([v for v in out_tput if v is not None])
    req_d = Distribution.of([v for v in req_tput if v is not None])
    total_in = sum(r.prompt_tokens for r in ok)
    total_out = sum(len(r.token_ns) for r in ok)
    duration = sum(m.window_s(by_rep[k]) for k in reps)
    result: dict[str, Any] = {
        "completed": len(ok),
        "failed": len(failed),
        "warmup_requests": sum(1 for r in records if r.warmup),
        "repetitions": len(reps),
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "duration": duration,
        "request_throughput": req_d.mean,
        "output_throughput": out_d.mean,
        "total_token_throughput": (total_in + total_out) / duration if duration > 0 else None,
    }
    for name in LATENCY_METRICS:
        result.update(_vllm_keys(name, dists[name]))
    result["distributions"] = {
        **{f"{k}_ms": d.to_dict() for k, d in dists.items()},
        "output_throughput_tok_s": out_d.to_dict(),
        "request_throughput_req_s": req_d.to_dict(),
    }
    result["errors"] = dict(Counter(r.error or "unknown" for r in failed))
    if ok:
        result["window_ns"] = [min(r.submit_ns for r in ok), max(r.done_ns for r in ok)]
    return result


def load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def summarize_run_dir(run_dir: Path) -> dict[str, Any]:
    """Rebuild the whole summary from the files of a run directory."""
    manifest = load_json(run_dir / "manifest.json")
    plan = manifest["plan"]
    phases: dict[str, dict[str, Any]] = {"solo": {}, "colocated": {}}
    runs: dict[str, Any] = {}
    problems: list[str] = []
    instance_facts: dict[str, Any] = {}
    for run in plan["runs"]:
        rdir = run_dir / "runs" / run["run_id"]
        state = load_json(rdir / "run.json") if (rdir / "run.json").is_file() else {"status": "not started", "workers": {}}
        run_entry: dict[str, Any] = {"phase": run["phase"], "status": state.get("status"), "workers": {}}
        for inst in run["instances"]:
            name = inst["name"]
            worker = state.get("workers", {}).get(name, {})
            run_entry["workers"][name] = {k: worker.get(k) for k in ("status", "reason", "pid", "exitcode")}
            if worker.get("status") in ("died", "failed", "interrupted"):
                problems.append(f"{run['run_id']}: {name} {worker.get('status')}: {worker.get('reason')}")
            info = worker.get("info") or {}
            instance_facts.setdefault(name, {
                "model": inst["model"], "preset": inst.get("preset"), "backend": inst["backend"],
                "device": inst["device"], "dtype": inst["dtype"], "cpu_threads": inst["cpu_threads"],
                "workload": inst["workload"],
            })
            for key in ("parameters", "weight_bytes", "kv_cache_bytes_per_token", "torch_threads", "architecture"):
                if info.get(key) is not None:
                    instance_facts[name].setdefault(key, info[key])
            if info.get("device"):
                instance_facts[name].setdefault("device_info", info["device"])
            records = read_records(rdir / "records" / f"{name}.jsonl")
            if state.get("status") == "not started":
                continue
            metrics = instance_phase_metrics(records)
            metrics["peak_memory_bytes"] = worker.get("peak_memory_bytes")
            phases[run["phase"]][name] = metrics
        runs[run["run_id"]] = run_entry
    return {
        "schema": SCHEMA,
        "experiment": plan["name"],
        "colobench_version": manifest.get("colobench_version"),
        "instances": instance_facts,
        "runs": runs,
        "phases": {k: v for k, v in phases.items() if v},
        "interference": interference(phases["solo"], phases["colocated"]),
        "problems": problems,
    }
