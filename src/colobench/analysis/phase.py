"""One instance in one phase, from its records: counts, vLLM-compatible latency and throughput
keys, the full distributions, the repetition-level values behind every interval, open-loop rate
and lag, and the load generator's own load.

Latency distributions pool every measured request of every repetition (their shape and
percentiles); the headline throughputs are totals over the measured time (vLLM's definition:
output tokens of every repetition / the sum of the repetitions' windows); one value per
repetition (its mean TTFT, its output rate, ...) gives each headline's 95% interval.

Co-located means overlapping (`overlap`): in each repetition, only the requests that started and
finished while every instance of the run was under load count; the rest are counted as outside
the overlap, and `overlap_fraction` says how much of the measured requests' time every partner
was under load.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from colobench.analysis import metrics as m
from colobench.analysis.checks import THRESHOLDS
from colobench.analysis.distribution import Distribution
from colobench.analysis.registry import METRICS, STATS
from colobench.analysis.model import (CategoryMetrics, ClientLoad, Distributions, OpenLoop,
                                      PhaseMetrics, RepetitionStats, SLOResult, StepMetrics)
from colobench.records import FILLER_GRACE_NS, RequestRecord, read_jsonl
from colobench.rundir import ClientWindow, RunFolder
from colobench.workload.arrivals import ramp_rates

NS_TO_MS = 1e-6
# instances start a window within a millisecond of each other (a loaded host: a few), and a worker
# that finished its quota waits FILLER_GRACE_NS before filling: that much may fall outside
OVERLAP_SLACK_NS = FILLER_GRACE_NS + 1_000_000
OVERLAP_MIN_SHARE = 0.90  # or: every partner was under load for this much of the request

PROMPT_TOLERANCE_TOKENS = 1  # server-counted prompt lengths this close to the asked one count as exact


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


def _repetition_stats(by_rep: dict[int, list[RequestRecord]]) -> RepetitionStats:
    """One value per repetition for each headline (each registered metric's statistics over the
    repetition's requests, throughputs over its window)."""
    reps = sorted(by_rep)
    fields: dict[str, Any] = {"repetitions": reps}
    for metric in METRICS:
        for stat in metric.repetition:
            def value(records: list[RequestRecord], metric: Any = metric, stat: str = stat) -> float | None:
                d = Distribution.of(metric.values(records))
                return getattr(d, stat) * metric.scale if d.count else None
            fields[metric.repetition_key(stat)] = [value(by_rep[k]) for k in reps]
    fields["output_throughput"] = [m.output_throughput_tok_s(by_rep[k]) for k in reps]
    fields["request_throughput"] = [m.request_throughput_req_s(by_rep[k]) for k in reps]
    return RepetitionStats(**fields)


def instance_phase_metrics(records: list[RequestRecord], requested_rate: float | None = None,
                           objectives: dict[str, float] | None = None, **extra: Any) -> PhaseMetrics:
    """Metrics of one instance in one run from its records (all repetitions); `objectives` are the
    instance's SLO (`ttft_ms`, ...); `extra` are fields the caller knows from elsewhere (the
    worker's load facts, peak memory, client load, overlap)."""
    ok = m.measured(records)
    sent = [r for r in records if not r.warmup and not r.load_only]
    failed = [r for r in sent if not r.ok]
    n_failed = sum(1 + r.also_failed for r in failed)  # a burst of identical failures is one record
    errors: Counter[str] = Counter()
    for r in failed:
        errors[r.error or "unknown"] += 1 + r.also_failed
    by_rep: dict[int, list[RequestRecord]] = defaultdict(list)
    sent_by_rep: dict[int, list[RequestRecord]] = defaultdict(list)
    for r in ok:
        by_rep[r.repetition].append(r)
    for r in sent:
        sent_by_rep[r.repetition].append(r)
    reps = sorted(by_rep)
    dists = {metric: Distribution.of(metric.values(ok)).scaled(metric.scale) for metric in METRICS
             if metric.applies(ok)}
    rep_stats = _repetition_stats(by_rep)
    out_d, req_d = rep_stats.summary("output_throughput"), rep_stats.summary("request_throughput")
    total_in = sum(r.prompt_tokens for r in ok)
    total_out = sum(r.output_tokens for r in ok)
    windows = [(min(m.start_ns(r) for r in by_rep[k]), max(r.done_ns for r in by_rep[k])) for k in reps]
    duration = sum(b - a for a, b in windows) / 1e9
    mean_concurrency = _mean([m.mean_concurrency(by_rep[k]) for k in reps])
    static = ok and all(r.scheduled_ns is None and r.batch_id >= 0 for r in ok)
    fields: dict[str, Any] = {
        "completed": len(ok), "failed": n_failed,
        "error_rate": n_failed / (len(ok) + n_failed) if ok or n_failed else None,
        "warmup_requests": sum(1 for r in records if r.warmup), "repetitions": len(reps),
        "total_input_tokens": total_in, "total_output_tokens": total_out, "duration": duration,
        # tokens over time: every measured token over every measured window (vLLM's definition)
        "request_throughput": len(ok) / duration if duration > 0 else None,
        "output_throughput": total_out / duration if duration > 0 else None,
        "total_token_throughput": (total_in + total_out) / duration if duration > 0 else None,
        "mean_concurrency": mean_concurrency,
        "mean_prompt_tokens": total_in / len(ok) if ok else None,
        "min_prompt_tokens": min((r.prompt_tokens for r in ok), default=None),
        "max_prompt_tokens": max((r.prompt_tokens for r in ok), default=None),
        "mean_output_tokens": total_out / len(ok) if ok else None,
        "mean_batch": (sum(r.batch_size for r in ok) / len(ok)) if static else mean_concurrency,
        "distributions": Distributions(**{k.distribution_key: d for k, d in dists.items()},
                                       output_throughput_tok_s=out_d, request_throughput_req_s=req_d),
        "repetition_stats": rep_stats,
        "repetition_windows_ns": windows,
        "errors": dict(errors),
    }
    for metric, d in dists.items():
        fields.update({metric.key(stat): getattr(d, attr) for stat, attr in STATS.items()})
    if any(r.scheduled_ns is not None for r in sent):
        fields["open_loop"] = _open_loop(sent_by_rep, ok, requested_rate)
    sources = Counter(r.token_count_source for r in ok if r.token_count_source)
    if sources:
        fields["token_count_source"] = dict(sources)
        fields["output_length_mismatch"] = sum(
            1 for r in ok if r.expected_output_tokens is not None and r.output_tokens != r.expected_output_tokens)
    asked = [r for r in ok if r.expected_prompt_tokens is not None]
    if asked:
        # a token either way is a BOS or template detail, not a prompt of the wrong length
        off = [r for r in asked if abs((r.prompt_tokens or 0) - r.expected_prompt_tokens) > PROMPT_TOLERANCE_TOKENS]
        fields["prompt_length_mismatch"] = len(off)
        fields["mean_expected_prompt_tokens"] = sum(r.expected_prompt_tokens for r in asked) / len(asked)
    if any(r.category for r in ok):
        fields["by_category"] = {cat: category_metrics([r for r in ok if (r.category or "uncategorised") == cat])
                                 for cat in sorted({r.category or "uncategorised" for r in ok})}
    if any(r.turn for r in ok):  # multi-turn sessions: later turns find the earlier ones in the prefix cache
        fields["by_turn"] = {str(turn): category_metrics([r for r in ok if (r.turn or 0) == turn])
                             for turn in sorted({r.turn or 0 for r in ok})}
    if any(r.reasoning_chunks for r in ok):
        fields["reasoning_chunks"] = sum(r.reasoning_chunks for r in ok)
    if ok:
        fields["window_ns"] = (min(m.start_ns(r) for r in ok), max(r.done_ns for r in ok))
    if objectives:
        misses = {id(r): _misses(r, objectives) for r in ok}  # judged once, used for the phase and per window
        slo = slo_result(ok, n_failed, duration, objectives, misses)
        fields.update(slo=slo, goodput=slo.goodput_req_s, slo_attainment=slo.attainment)
        # one value per repetition, as for every headline: the unit of `compare`'s intervals
        failed_by_rep = Counter(r.repetition for r in failed for _ in range(1 + r.also_failed))
        good_by_rep = {k: sum(1 for r in by_rep[k] if not misses[id(r)]) for k in reps}
        rate = rep_stats.request_throughput
        fields["repetition_stats"] = rep_stats.model_copy(update={
            "goodput": [rate[i] * good_by_rep[k] / len(by_rep[k]) if rate[i] is not None else None
                        for i, k in enumerate(reps)],
            "slo_attainment": [good_by_rep[k] / (len(by_rep[k]) + failed_by_rep[k]) for k in reps]})
    return PhaseMetrics(**{**fields, **extra})


def _misses(r: RequestRecord, objectives: dict[str, float]) -> list[str]:
    """The objectives one completed request missed. TPOT is the request's mean time per token
    after the first (a one-token request has none and meets it); ITL means every gap."""
    values = {"ttft_ms": m.ttft_ns(r) * NS_TO_MS, "e2el_ms": m.e2el_ns(r) * NS_TO_MS}
    tpot = m.tpot_ns(r)
    values["tpot_ms"] = tpot * NS_TO_MS if tpot is not None else None
    gaps = m.itl_ns(r)
    values["itl_ms"] = max(gaps) * NS_TO_MS if gaps else None
    return [k for k, limit in objectives.items() if values.get(k) is not None and values[k] > limit]


def slo_result(ok: list[RequestRecord], failed: int, duration_s: float, objectives: dict[str, float],
               misses: dict[int, list[str]] | None = None) -> SLOResult:
    """Goodput and attainment of one phase against its objectives (see `SLOResult`); `misses`:
    each record's missed objectives by `id`, when the caller has judged them already."""
    missed: Counter[str] = Counter()
    good = 0
    for r in ok:
        own = misses[id(r)] if misses is not None else _misses(r, objectives)
        missed.update(own)
        good += not own
    total = len(ok) + failed
    worst = max(missed, key=lambda k: missed[k]) if missed else ("failed" if failed else None)
    return SLOResult(objectives=dict(objectives), requests=total, good=good, failed=failed,
                     attainment=good / total if total else None,
                     goodput_req_s=good / duration_s if duration_s > 0 else None,
                     missed={k: missed.get(k, 0) for k in objectives}, worst=worst)


def category_metrics(ok: list[RequestRecord]) -> CategoryMetrics:
    """The figures of one category's successful requests."""
    ttft = Distribution.of([m.ttft_ns(r) for r in ok]).scaled(NS_TO_MS)
    tpot = Distribution.of([t for r in ok if (t := m.tpot_ns(r)) is not None]).scaled(NS_TO_MS)
    e2el = Distribution.of([m.e2el_ns(r) for r in ok]).scaled(NS_TO_MS)
    busy_s = sum(m.e2el_ns(r) for r in ok) / 1e9
    return CategoryMetrics(
        completed=len(ok), mean_prompt_tokens=sum(r.prompt_tokens for r in ok) / len(ok) if ok else None,
        min_prompt_tokens=min((r.prompt_tokens for r in ok), default=None),
        max_prompt_tokens=max((r.prompt_tokens for r in ok), default=None),
        mean_output_tokens=sum(r.output_tokens for r in ok) / len(ok) if ok else None,
        mean_ttft_ms=ttft.mean, median_ttft_ms=ttft.p50, p99_ttft_ms=ttft.p99, mean_tpot_ms=tpot.mean,
        median_tpot_ms=tpot.p50, p99_tpot_ms=tpot.p99, mean_e2el_ms=e2el.mean, p99_e2el_ms=e2el.p99,
        output_tok_s_per_request=sum(r.output_tokens for r in ok) / busy_s if busy_s > 0 else None)


def _load_span(records: list[RequestRecord]) -> tuple[int, int] | None:
    """When an instance was under load in a repetition: its first request's start to its last's end."""
    spans = [(m.start_ns(r), r.done_ns if r.done_ns is not None else m.start_ns(r)) for r in records if not r.warmup]
    return (min(a for a, _ in spans), max(b for _, b in spans)) if spans else None


def overlap(records_of: dict[str, list[RequestRecord]]) -> tuple[dict[str, list[RequestRecord]], dict[str, dict]]:
    """Co-located records kept to the overlap: per repetition, the window during which every
    instance was under load ([latest first start, earliest last end], filler included); only
    measured requests inside it count: started and finished inside it give or take
    `OVERLAP_SLACK_NS` (the start skew of a barrier), or at least `OVERLAP_MIN_SHARE` of their time
    inside it (a partner that finished its quota a few milliseconds earlier and is about to stop
    does not cost the last request). Returns the kept records (warm-up
    and filler records stay, for what else reads them) and per instance `overlap_fraction` (the
    share of its measured requests' time inside the windows), `outside_overlap` (measured requests
    left out) and `partner_absent` (no repetition had every partner under load: then its records
    are all kept, to be shown as what they are, INVALID, and never compared)."""
    reps = sorted({r.repetition for rs in records_of.values() for r in rs if not r.warmup})
    windows: dict[int, tuple[int, int] | None] = {}
    for k in reps:
        spans = [_load_span([r for r in rs if r.repetition == k]) for rs in records_of.values()]
        if any(s is None for s in spans):
            windows[k] = None  # a partner sent nothing in this repetition: no overlap at all
            continue
        start, end = max(a for a, _ in spans), min(b for _, b in spans)
        windows[k] = (start, end) if end > start else None
    kept: dict[str, list[RequestRecord]] = {}
    facts: dict[str, dict] = {}
    for name, records in records_of.items():
        measured = m.measured(records)
        inside, covered, total = [], 0, 0
        for r in measured:
            w, a, b = windows.get(r.repetition), m.start_ns(r), r.done_ns
            total += b - a
            if w is not None:
                share = max(0, min(b, w[1]) - max(a, w[0]))
                covered += share
                if (w[0] - OVERLAP_SLACK_NS <= a and b <= w[1] + OVERLAP_SLACK_NS) or share >= OVERLAP_MIN_SHARE * (b - a):
                    inside.append(r)
        absent = bool(measured) and all(windows.get(k) is None for k in reps)
        if absent:  # nothing co-located at all: keep what it measured (INVALID, no slowdown), lose nothing
            inside = measured
        keep, counted = {id(r) for r in inside}, {id(r) for r in measured}
        kept[name] = [r for r in records if id(r) in keep or id(r) not in counted]
        facts[name] = {"overlap_fraction": covered / total if total else None,
                       "outside_overlap": len(measured) - len(inside), "partner_absent": absent}
    return kept, facts


def client_load(folder: RunFolder, worker_keys: list[str], reported: list[ClientWindow]) -> ClientLoad | None:
    """The load generator's CPU (fraction of one core) and event-loop lag, from its `client/`
    rows (raw lags per repetition), or from what run.json kept (summary/1 run directories)."""
    rows = [r for key in worker_keys for r in read_jsonl(folder.client(key))]
    if rows:
        utils = [r["cpu_s"] / r["wall_s"] for r in rows if r.get("wall_s")]
        lags = [d.p99 * NS_TO_MS for r in rows if (d := Distribution.of(r.get("loop_lag_ns") or [])).count]
        cpu_s = sum(r.get("cpu_s") or 0 for r in rows)
    elif reported:
        utils = [c.cpu_util for c in reported if c.cpu_util is not None]
        lags = [c.loop_lag_ms["p99"] for c in reported if c.loop_lag_ms and c.loop_lag_ms.get("p99") is not None]
        cpu_s = sum(c.cpu_s or 0 for c in reported)
    else:
        return None
    return ClientLoad(processes=len(worker_keys), cpu_util_mean=_mean(utils), cpu_util_max=max(utils) if utils else None,
                      loop_lag_p99_ms=max(lags) if lags else None, cpu_s=cpu_s)


def requested_rate(workload: dict[str, Any]) -> float | None:
    """The open-loop rate a phase was asked for: `rate`, or a ramp's mean over its steps (a
    trace's is its own: None)."""
    rate, ramp = workload.get("rate"), workload.get("ramp")
    if rate and isinstance(ramp, dict) and ramp.get("to_rate"):
        rates = ramp_rates(float(rate), float(ramp["to_rate"]), int(ramp.get("steps") or 4))
        return sum(rates) / len(rates)
    return rate


def ramp_steps(records: list[RequestRecord], workload: dict[str, Any]) -> list[StepMetrics]:
    """Each step of a ramp (`workload.ramp`, over `duration_s` from `rate`): the requests whose
    due time fell in it, counted from each repetition's first due time, over every repetition."""
    ramp, duration, rate = workload.get("ramp"), workload.get("duration_s"), workload.get("rate")
    if not isinstance(ramp, dict) or not duration or not rate:
        return []
    rates = ramp_rates(float(rate), float(ramp["to_rate"]), int(ramp.get("steps") or 4))
    seg_ns = duration * 1e9 / len(rates)
    sent = [r for r in records if not r.warmup and not r.load_only]
    starts = {rep: min(m.start_ns(r) for r in rs) for rep, rs in _by_repetition(sent).items()}
    steps: list[list[RequestRecord]] = [[] for _ in rates]
    for r in sent:
        k = int((m.start_ns(r) - starts[r.repetition]) // seg_ns)
        steps[min(max(k, 0), len(rates) - 1)].append(r)
    out = []
    for k, (requested, rs) in enumerate(zip(rates, steps)):
        ok = [r for r in rs if r.ok]
        figures = category_metrics(ok) if ok else None
        span_s = seg_ns / 1e9 * max(1, len(starts))
        out.append(StepMetrics(step=k + 1, start_s=k * seg_ns / 1e9, end_s=(k + 1) * seg_ns / 1e9,
                               requested_rate=requested, achieved_rate=len(rs) / span_s if rs else 0.0,
                               completed=len(ok), failed=len(rs) - len(ok),
                               median_ttft_ms=figures.median_ttft_ms if figures else None,
                               p99_ttft_ms=figures.p99_ttft_ms if figures else None,
                               median_tpot_ms=figures.median_tpot_ms if figures else None,
                               p99_tpot_ms=figures.p99_tpot_ms if figures else None,
                               mean_e2el_ms=figures.mean_e2el_ms if figures else None))
    return out


def _by_repetition(records: list[RequestRecord]) -> dict[int, list[RequestRecord]]:
    out: dict[int, list[RequestRecord]] = defaultdict(list)
    for r in records:
        out[r.repetition].append(r)
    return out
