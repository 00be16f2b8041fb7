"""One instance in one phase, from its records: counts, vLLM-compatible latency and throughput
keys, the full distributions, open-loop rate and lag, and the load generator's own load.

Latency distributions pool every measured request of every repetition; throughputs are
computed per repetition window and their mean is reported, with the spread across repetitions
as their distribution. Open-loop phases add the requested and achieved rate and the schedule lag.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from colobench.analysis import metrics as m
from colobench.analysis.checks import THRESHOLDS
from colobench.analysis.distribution import Distribution
from colobench.analysis.model import LATENCY_METRICS, ClientLoad, Distributions, OpenLoop, PhaseMetrics
from colobench.records import RequestRecord, read_jsonl

NS_TO_MS = 1e-6


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _open_loop(sent_by_rep: dict[int, list[RequestRecord]], ok: list[RequestRecord],
               requested_rate: float | None) -> OpenLoop:
    """Requested vs achieved rate and the schedule lag of an open-loop phase."""
    achieved = _mean([m.achieved_rate_req_s(v) for v in sent_by_rep.values()])
    lag = Distribution.of([lag for r in ok if (lag := m.schedule_lag_ns(r)) is not None]).scaled(NS_TO_MS)
    error = achieved / requested_rate - 1 if achieved and requested_rate else None
    return OpenLoop(requested_rate=requested_rate, achieved_rate=achieved,
                    rate_error_pct=error * 100 if error is not None else None,
                    rate_ok=abs(error) <= THRESHOLDS.rate_tolerance if error is not None else None,
                    mean_schedule_lag_ms=lag.mean, p99_schedule_lag_ms=lag.p99, schedule_lag_ms=lag)


def instance_phase_metrics(records: list[RequestRecord], requested_rate: float | None = None,
                           **extra: Any) -> PhaseMetrics:
    """Metrics of one instance in one run from its records (all repetitions); `extra` are fields
    the caller knows from elsewhere (the worker's load facts, peak memory, client load)."""
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
    mean_concurrency = _mean([m.mean_concurrency(by_rep[k]) for k in reps])
    static = ok and all(r.scheduled_ns is None and r.batch_id >= 0 for r in ok)
    fields: dict[str, Any] = {
        "completed": len(ok), "failed": len(failed), "error_rate": len(failed) / len(sent) if sent else None,
        "warmup_requests": sum(1 for r in records if r.warmup), "repetitions": len(reps),
        "total_input_tokens": total_in, "total_output_tokens": total_out, "duration": duration,
        "request_throughput": req_d.mean, "output_throughput": out_d.mean,
        "total_token_throughput": (total_in + total_out) / duration if duration > 0 else None,
        "mean_concurrency": mean_concurrency,
        "mean_prompt_tokens": total_in / len(ok) if ok else None,
        "mean_output_tokens": total_out / len(ok) if ok else None,
        "mean_batch": (sum(r.batch_size for r in ok) / len(ok)) if static else mean_concurrency,
        "distributions": Distributions(**{f"{k}_ms": d for k, d in dists.items()}, output_throughput_tok_s=out_d,
                                       request_throughput_req_s=req_d),
        "errors": dict(Counter(r.error or "unknown" for r in failed)),
    }
    for name in LATENCY_METRICS:
        d = dists[name]
        fields.update({f"mean_{name}_ms": d.mean, f"median_{name}_ms": d.p50, f"std_{name}_ms": d.std,
                       f"p90_{name}_ms": d.p90, f"p99_{name}_ms": d.p99})
    if any(r.scheduled_ns is not None for r in sent):
        fields["open_loop"] = _open_loop(sent_by_rep, ok, requested_rate)
    sources = Counter(r.token_count_source for r in ok if r.token_count_source)
    if sources:
        fields["token_count_source"] = dict(sources)
        fields["output_length_mismatch"] = sum(
            1 for r in ok if r.expected_output_tokens is not None and r.output_tokens != r.expected_output_tokens)
    if ok:
        fields["window_ns"] = (min(m.start_ns(r) for r in ok), max(r.done_ns for r in ok))
    return PhaseMetrics(**fields, **extra)


def client_load(run_dir: Path, worker_keys: list[str], reported: list[dict[str, Any]]) -> ClientLoad | None:
    """The load generator's CPU (fraction of one core) and event-loop lag, from its `client/`
    rows (raw lags per repetition), or from what run.json kept (summary/1 run directories)."""
    rows = [r for key in worker_keys for r in read_jsonl(run_dir / "client" / f"{key}.jsonl")]
    if rows:
        utils = [r["cpu_s"] / r["wall_s"] for r in rows if r.get("wall_s")]
        lags = [d.p99 * NS_TO_MS for r in rows if (d := Distribution.of(r.get("loop_lag_ns") or [])).count]
        cpu_s = sum(r.get("cpu_s") or 0 for r in rows)
    elif reported:
        utils = [c["cpu_util"] for c in reported if c.get("cpu_util") is not None]
        lags = [c["loop_lag_ms"]["p99"] for c in reported
                if c.get("loop_lag_ms") and c["loop_lag_ms"].get("p99") is not None]
        cpu_s = sum(c.get("cpu_s") or 0 for c in reported)
    else:
        return None
    return ClientLoad(processes=len(worker_keys), cpu_util_mean=_mean(utils), cpu_util_max=max(utils) if utils else None,
                      loop_lag_p99_ms=max(lags) if lags else None, cpu_s=cpu_s)


def server_metrics(metrics_dir: Path, name: str) -> dict[str, float] | None:
    """Counter deltas between the Prometheus scrapes taken before and after the run."""
    before, after = metrics_dir / f"{name}.before.prom", metrics_dir / f"{name}.after.prom"
    if not (before.is_file() and after.is_file()):
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
