"""The server's own evidence per phase: vLLM's and SGLang's `/metrics` text read, window differences
summed per instance-phase beside the client's figures over the same requests, the agreement check
(planted), the unrequested-prefix-cache finding, `metrics_url` defaults, the fake server's
vLLM-shaped counters, and (slow) an interleaved solo + co-located run against two fake servers
whose solo and co-located counters differ and each match the client's count for its phase."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from colobench.analysis import checks as ck
from colobench.analysis.diagnosis import detectors as d
from colobench.analysis.diagnosis.serving import asks_for_sharing, unrequested_prefix_cache
from colobench.analysis.model import ClientServer, InstanceFacts, ServerEvidence
from colobench.analysis.phase import instance_phase_metrics
from colobench.analysis.server import server_evidence, server_metrics
from colobench.launch import scrapes as scrapes_mod
from colobench.launch.scrapes import WindowScrapes
from colobench.records import RecordWriter, RequestRecord, read_jsonl
from colobench.rundir import MetricsScrape, RunDir, read_scrapes
from colobench.specs import experiment_from_dict
from colobench.telemetry.prometheus import engine_of, gauges, parse

from conftest import run_cli, written

MS = 1_000_000

# vLLM 0.x (v1 engine) as it serves /metrics: model and engine labels, _created series, buckets
VLLM_TEXT = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.2-1B"} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.2-1B"} 1.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="meta-llama/Llama-3.2-1B"} 0.125
# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="meta-llama/Llama-3.2-1B"} 16512.0
# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="meta-llama/Llama-3.2-1B"} 8448.0
# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0",model_name="meta-llama/Llama-3.2-1B"} 2.0
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="meta-llama/Llama-3.2-1B"} 16512.0
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="meta-llama/Llama-3.2-1B"} 8192.0
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{engine="0",finished_reason="stop",model_name="meta-llama/Llama-3.2-1B"} 0.0
vllm:request_success_total{engine="0",finished_reason="length",model_name="meta-llama/Llama-3.2-1B"} 128.0
vllm:request_success_total{engine="0",finished_reason="abort",model_name="meta-llama/Llama-3.2-1B"} 0.0
# HELP vllm:request_success_created Count of successfully processed requests.
# TYPE vllm:request_success_created gauge
vllm:request_success_created{engine="0",finished_reason="length",model_name="meta-llama/Llama-3.2-1B"} 1.7e+09
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.02",model_name="meta-llama/Llama-3.2-1B"} 100.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="meta-llama/Llama-3.2-1B"} 128.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="meta-llama/Llama-3.2-1B"} 128.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="meta-llama/Llama-3.2-1B"} 2.56
# HELP vllm:inter_token_latency_seconds Histogram of inter-token latency in seconds.
# TYPE vllm:inter_token_latency_seconds histogram
vllm:inter_token_latency_seconds_bucket{engine="0",le="+Inf",model_name="meta-llama/Llama-3.2-1B"} 8064.0
vllm:inter_token_latency_seconds_count{engine="0",model_name="meta-llama/Llama-3.2-1B"} 8064.0
vllm:inter_token_latency_seconds_sum{engine="0",model_name="meta-llama/Llama-3.2-1B"} 40.32
# HELP vllm:time_per_output_token_seconds Histogram of time per output token in seconds.DEPRECATED: Use vllm:inter_token_latency_seconds instead.
# TYPE vllm:time_per_output_token_seconds histogram
vllm:time_per_output_token_seconds_count{engine="0",model_name="meta-llama/Llama-3.2-1B"} 8064.0
vllm:time_per_output_token_seconds_sum{engine="0",model_name="meta-llama/Llama-3.2-1B"} 40.32
# HELP vllm:request_time_per_output_token_seconds Histogram of time_per_output_token_seconds per request.
# TYPE vllm:request_time_per_output_token_seconds histogram
vllm:request_time_per_output_token_seconds_count{engine="0",model_name="meta-llama/Llama-3.2-1B"} 128.0
vllm:request_time_per_output_token_seconds_sum{engine="0",model_name="meta-llama/Llama-3.2-1B"} 0.64
# HELP vllm:e2e_request_latency_seconds Histogram of e2e request latency in seconds.
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_count{engine="0",model_name="meta-llama/Llama-3.2-1B"} 128.0
vllm:e2e_request_latency_seconds_sum{engine="0",model_name="meta-llama/Llama-3.2-1B"} 43.52
# HELP vllm:request_queue_time_seconds Histogram of time spent in WAITING phase for request.
# TYPE vllm:request_queue_time_seconds histogram
vllm:request_queue_time_seconds_count{engine="0",model_name="meta-llama/Llama-3.2-1B"} 128.0
vllm:request_queue_time_seconds_sum{engine="0",model_name="meta-llama/Llama-3.2-1B"} 0.128
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 1.2e+09
"""

# SGLang as its production-metrics page shows it (and the counters newer versions add)
SGLANG_TEXT = """\
# HELP sglang:prompt_tokens_total Number of prefill tokens processed.
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 8.128902e+06
# HELP sglang:generation_tokens_total Number of generation tokens processed.
# TYPE sglang:generation_tokens_total counter
sglang:generation_tokens_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 7.557572e+06
# HELP sglang:cached_tokens_total Number of cached prompt tokens.
# TYPE sglang:cached_tokens_total counter
sglang:cached_tokens_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 4.064451e+06
# HELP sglang:num_requests_total Number of requests processed.
# TYPE sglang:num_requests_total counter
sglang:num_requests_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 11008.0
# HELP sglang:num_retracted_requests_total Total number of retracted requests.
# TYPE sglang:num_retracted_requests_total counter
sglang:num_retracted_requests_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
# HELP sglang:token_usage The token usage
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.28
# HELP sglang:cache_hit_rate The cache hit rate
# TYPE sglang:cache_hit_rate gauge
sglang:cache_hit_rate{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.007507552643049313
# HELP sglang:num_running_reqs The number of running requests
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="meta-llama/Llama-3.1-8B-Instruct"} 162.0
# HELP sglang:num_queue_reqs The number of requests in the waiting queue
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="meta-llama/Llama-3.1-8B-Instruct"} 2826.0
# HELP sglang:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE sglang:time_to_first_token_seconds histogram
sglang:time_to_first_token_seconds_sum{model_name="meta-llama/Llama-3.1-8B-Instruct"} 2.3518979474117756e+06
sglang:time_to_first_token_seconds_bucket{le="0.001",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
sglang:time_to_first_token_seconds_bucket{le="+Inf",model_name="meta-llama/Llama-3.1-8B-Instruct"} 11008.0
sglang:time_to_first_token_seconds_count{model_name="meta-llama/Llama-3.1-8B-Instruct"} 11008.0
# HELP sglang:inter_token_latency_seconds Histogram of inter-token latency in seconds.
# TYPE sglang:inter_token_latency_seconds histogram
sglang:inter_token_latency_seconds_sum{model_name="meta-llama/Llama-3.1-8B-Instruct"} 866964.5791549598
sglang:inter_token_latency_seconds_count{model_name="meta-llama/Llama-3.1-8B-Instruct"} 7.400757e+06
# HELP sglang:e2e_request_latency_seconds Histogram of End-to-end request latency in seconds
# TYPE sglang:e2e_request_latency_seconds histogram
sglang:e2e_request_latency_seconds_sum{model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.116093850019932e+06
sglang:e2e_request_latency_seconds_count{model_name="meta-llama/Llama-3.1-8B-Instruct"} 11228.0
# HELP sglang:func_latency_seconds Function latency in seconds
# TYPE sglang:func_latency_seconds histogram
sglang:func_latency_seconds_sum{name="generate_request"} 4.514771912145079
sglang:func_latency_seconds_count{name="generate_request"} 14007.0
"""


# ---- the parser ---------------------------------------------------------------------------------

def test_vllm_text_is_read_by_series():
    v = parse(VLLM_TEXT, "meta-llama/Llama-3.2-1B")
    assert engine_of(v) == "vllm"
    assert v["vllm:request_success_total"] == 128  # summed over finished_reason
    assert v["vllm:time_to_first_token_seconds_sum"] == pytest.approx(2.56)
    assert v["vllm:time_to_first_token_seconds_count"] == 128
    assert v["vllm:prefix_cache_hits_total"] == 8448 and v["vllm:prefix_cache_queries_total"] == 16512
    assert not any(k.endswith(("_bucket", "_created")) for k in v)
    assert gauges(VLLM_TEXT) == {"kv_cache_usage": 0.125, "running": 3.0, "waiting": 1.0}


def test_sglang_text_is_read_by_series():
    v = parse(SGLANG_TEXT)
    assert engine_of(v) == "sglang"
    assert v["sglang:num_requests_total"] == 11008 and v["sglang:cached_tokens_total"] == 4.064451e+06
    assert v["sglang:func_latency_seconds_count"] == 14007  # no model label: kept
    assert gauges(SGLANG_TEXT) == {"kv_cache_usage": 0.28, "running": 162.0, "waiting": 2826.0,
                                   "prefix_hit_rate": 0.007507552643049313}


def test_one_server_of_two_models_is_read_per_model():
    text = ("# TYPE vllm:request_success_total counter\n"
            'vllm:request_success_total{finished_reason="length",model_name="a"} 3\n'
            'vllm:request_success_total{finished_reason="length",model_name="b"} 5\n')
    assert parse(text, "a")["vllm:request_success_total"] == 3
    assert parse(text, "b")["vllm:request_success_total"] == 5
    assert parse(text, "served-under-another-name")["vllm:request_success_total"] == 8  # no match: all of it
    with pytest.raises(ValueError):
        parse("vllm:request_success_total{model_name=\"a\" 3\n")


# ---- per-window evidence from a run folder ------------------------------------------------------

def _scale(text: str, factor: float, prefix: str = "vllm:") -> str:
    """The same scrape with every counter and histogram of `prefix` multiplied (a later scrape)."""
    out = []
    for line in text.splitlines():
        if line.startswith(prefix) and not any(g in line for g in ("running", "waiting", "usage_perc", "_created")):
            name, value = line.rsplit(" ", 1)
            line = f"{name} {float(value) * factor}"
        out.append(line)
    return "\n".join(out) + "\n"


def _record(rep: int, k: int, ttft_ms: float, warmup: bool = False, load_only: bool = False, ok: bool = True,
            tokens: int = 64) -> RequestRecord:
    t0 = rep * 10_000 * MS + k * 100 * MS
    first = t0 + int(ttft_ms * MS)
    token_ns = [first + i * 5 * MS for i in range(tokens)] if ok else []
    return RequestRecord(instance="a", run_id="solo-a", repetition=0 if warmup else rep, request_id=k, batch_id=-1,
                         batch_size=1, prompt_tokens=129, output_tokens=tokens if ok else 0, submit_ns=t0,
                         token_ns=token_ns, done_ns=token_ns[-1] if ok else t0 + MS, warmup=warmup,
                         load_only=load_only, ok=ok, error=None if ok else "cut")


def _write_window(folder, rep: int, before: str | None, after: str | None, errors: tuple = (None, None)) -> None:
    writer = RecordWriter(folder.metrics_scrapes)
    for when, text, error in (("before", before, errors[0]), ("after", after, errors[1])):
        if text is not None:
            path = folder.window_metrics("a", rep, when)
            path.write_text(text)
        writer.write_row(MetricsScrape(instance="a", repetition=rep, when=when, t_ns=rep, url="http://h:1/metrics",
                                       file=None if text is None else f"a.r{rep}.{when}.prom", error=error).model_dump())
    writer.close()


@pytest.fixture
def folder(tmp_path: Path):
    f = RunDir(tmp_path).run("solo-a")
    f.metrics_scrapes.parent.mkdir(parents=True)
    return f


def test_windows_are_summed_and_set_beside_the_same_requests(folder):
    """Two usable windows (each 128 requests, 2.56 s of TTFT, half the prompt tokens cached, 2
    preemptions by the server's count), a third whose after-scrape failed (left out, its requests
    too), and the warm-up, which no window counts."""
    model = "meta-llama/Llama-3.2-1B"
    _write_window(folder, 1, VLLM_TEXT, _scale(VLLM_TEXT, 2))
    _write_window(folder, 2, _scale(VLLM_TEXT, 2), _scale(VLLM_TEXT, 3))
    _write_window(folder, 3, _scale(VLLM_TEXT, 3), None, (None, "cannot reach http://h:1/metrics (refused)"))
    records = [_record(0, k, 5.0, warmup=True) for k in range(4)]
    for rep in (1, 2, 3):
        records += [_record(rep, k, 25.0) for k in range(127)] + [_record(rep, 127, 25.0, load_only=True)]
    ev = server_evidence(folder, "a", model, records, [], [])
    assert ev.engine == "vllm" and ev.windows == 2 and len(ev.repetitions) == 3
    assert ev.requests == ClientServer(client=256, server=256)
    assert ev.ttft_ms.server == pytest.approx(20.0) and ev.ttft_ms.client == pytest.approx(25.0)
    assert ev.itl_ms.server == pytest.approx(5.0) and ev.itl_ms.client == pytest.approx(5.0)
    assert ev.tpot_ms.server == pytest.approx(5.0) and ev.tpot_ms.client == pytest.approx(5.0)
    assert ev.e2el_ms.server == pytest.approx(340.0) and ev.queue_ms == pytest.approx(1.0)
    assert ev.preemptions == 4 and ev.prefix_cache_hit_pct == pytest.approx(8448 / 16512 * 100)
    assert ev.prefix_cache_hits_tokens == 2 * 8448 and ev.series["itl"] == "vllm:inter_token_latency_seconds"
    assert ev.repetitions[2].error and "r3 after: cannot reach" in ev.problems[0]
    assert ev.kv_cache_usage_pct == pytest.approx(12.5) and "boundaries" in ev.kv_cache_usage_source
    assert server_metrics(folder, "a")['vllm:request_success_total{engine="0",finished_reason="length",' \
                                       'model_name="meta-llama/Llama-3.2-1B"}'] == 256


def test_a_restart_inside_a_window_leaves_it_out(folder):
    _write_window(folder, 1, _scale(VLLM_TEXT, 5), VLLM_TEXT)  # the counters went back: it restarted
    ev = server_evidence(folder, "a", None, [_record(1, k, 25.0) for k in range(3)])
    assert ev.windows == 0 and "restarted" in ev.problems[0] and ev.requests == ClientServer()


def test_sglang_windows_give_the_cached_share_and_retractions(folder):
    _write_window(folder, 1, SGLANG_TEXT, _scale(SGLANG_TEXT, 2, "sglang:"))
    ev = server_evidence(folder, "a", "meta-llama/Llama-3.1-8B-Instruct", [_record(1, 0, 25.0)])
    assert ev.engine == "sglang" and ev.requests.server == 11008 and ev.preemptions == 3
    assert ev.prefix_cache_hit_pct == pytest.approx(4.064451e6 / 8.128902e6 * 100)
    assert ev.itl_ms.server == pytest.approx(866964.5791549598 / 7.400757e6 * 1e3)
    assert ev.series["prefix_cache_hits"] == "sglang:cached_tokens_total"


def test_a_run_without_per_window_scrapes_has_no_evidence(folder):
    assert server_evidence(folder, "a", None, []) is None and server_metrics(folder, "a") is None


# ---- the agreement check, planted ----------------------------------------------------------------

def _checks(**ev):
    mt = instance_phase_metrics([_record(1, k, 25.0) for k in range(12)], backend="openai")
    mt = mt.model_copy(update={"server": ServerEvidence(windows=1, **ev)})
    return [c for c in ck.phase_checks("", "solo", "a", mt, []) if c.kind == "server_agreement"]


@pytest.mark.parametrize("client,server,verdict", [
    (60.0, 5.0, "ttft_disagrees"),  # 55 ms and 1100%: a front end the server does not see
    (330.0, 300.0, "agrees"),  # 30 ms but 10%: a long prefill, not a disagreement
    (20.0, 5.0, "agrees"),  # 300% but 15 ms: HTTP and the front end on a short prefill
    (4.0, 30.0, "ttft_disagrees"),  # the client below the server's own figure by 26 ms
])
def test_ttft_disagrees_beyond_both_bands(client, server, verdict):
    (check,) = _checks(ttft_ms=ClientServer(client=client, server=server))
    assert check.verdict == verdict and check.level == ("ok" if verdict == "agrees" else "warning")


def test_itl_tpot_and_counts_disagree():
    found = {c.verdict for c in _checks(itl_ms=ClientServer(client=11.0, server=10.0),
                                        tpot_ms=ClientServer(client=10.2, server=10.0),
                                        requests=ClientServer(client=100, server=130), client_failed=10)}
    assert found == {"itl_disagrees", "count_disagrees"}  # TPOT 2% off is within 5%
    assert not _checks(requests=ClientServer(client=100, server=104), client_failed=5)[0].verdict.endswith("disagrees")
    assert _checks(itl_ms=ClientServer(client=0.4, server=0.3))[0].verdict == "agrees"  # 33% of 0.1 ms: timer noise
    assert _checks(ttft_ms=ClientServer(client=90, server=5), shared_with=["b"])[0].verdict == "shared"


# ---- the finding ---------------------------------------------------------------------------------

def _phase_with_hits(hit_pct: float | None, workload: dict):
    mt = instance_phase_metrics([_record(1, k, 25.0) for k in range(12)], backend="openai")
    ev = ServerEvidence(windows=1, prefix_cache_hit_pct=hit_pct, prefix_cache_hits_tokens=hit_pct,
                        prefix_cache_queries_tokens=100.0, ttft_ms=ClientServer(client=25.0, server=20.0))
    facts = InstanceFacts(model="m", backend="openai", device="endpoint", dtype="auto", cpu_threads=1,
                          workload=workload)
    return d.PhaseData(point="", run_id="solo-a", phase="solo", name="a", device="endpoint", backend="openai",
                       records=[], warmup=[], metrics=mt.model_copy(update={"server": ev}), facts=facts, samples=[],
                       gc=[], origin_ns=0)


def test_prefix_cache_hits_nobody_asked_for_are_a_finding():
    (f,) = unrequested_prefix_cache(_phase_with_hits(51.0, {"requests": 12}))
    assert f.kind == "unrequested_prefix_cache" and f.severity == "high" and "51.0%" in f.title
    assert "--no-enable-prefix-caching" in f.recommendation and f.evidence["threshold_pct"] == 1.0
    assert unrequested_prefix_cache(_phase_with_hits(3.0, {}))[0].severity == "medium"
    assert not unrequested_prefix_cache(_phase_with_hits(0.5, {}))  # under 1%: noise
    assert not unrequested_prefix_cache(_phase_with_hits(None, {}))  # the server reports no prefix cache
    assert not unrequested_prefix_cache(_phase_with_hits(51.0, {"shared_prefix": {"tokens": 256, "share": 0.5}}))
    assert not unrequested_prefix_cache(_phase_with_hits(51.0, {"sessions": {"turns": 4, "think_time_s": 1}}))


def test_sharing_knobs_are_read_from_dumps_and_objects():
    assert asks_for_sharing(SimpleNamespace(shared_prefix=SimpleNamespace(tokens=64, share=1.0), sessions=None))
    assert not asks_for_sharing(SimpleNamespace())  # a workload spec from before the knobs existed
    assert not asks_for_sharing({"shared_prefix": {"tokens": 0, "share": 0.5}})
    assert not asks_for_sharing({"sessions": {"turns": 1}})


# ---- metrics_url ---------------------------------------------------------------------------------

FAKE = ["colobench", "fake-server", "--port", "{port}"]


@pytest.mark.parametrize("given,managed,expected", [
    (None, True, "http://127.0.0.1:{port}/metrics"), ("off", True, None), (False, True, None),
    (None, False, None), ("auto", False, "http://10.0.0.5:8000/metrics"),
    ("http://10.0.0.5:9100/metrics", False, "http://10.0.0.5:9100/metrics")])
def test_metrics_url_is_on_for_managed_servers_unless_turned_off(given, managed, expected):
    inst = {"name": "a", "backend": "openai", "model": "m",
            **({"server": "fake"} if managed else {"base_url": "http://10.0.0.5:8000/v1/"}),
            **({"metrics_url": given} if given is not None else {})}
    spec = experiment_from_dict({"name": "x", "servers": [{"name": "fake", "command": FAKE}], "instances": [inst]},
                                "e.yaml")
    assert spec.instances[0].endpoint_config().metrics_url == expected


# ---- the scrapes at window boundaries --------------------------------------------------------------

def test_window_scrapes_record_text_and_failures(tmp_path: Path, monkeypatch):
    answers = iter([("# TYPE x counter\nx_total 1\n", None), (None, "cannot reach http://h:1/metrics (refused)"),
                    ("# TYPE x counter\nx_total 3\n", None), ("# TYPE x counter\nx_total 4\n", None)])
    monkeypatch.setattr(scrapes_mod, "fetch_metrics", lambda url: next(answers))
    ep = SimpleNamespace(metrics_url="http://user:pw@h:1/metrics")
    runs = {"solo-a": SimpleNamespace(instances=[SimpleNamespace(name="a", endpoint=ep),
                                                 SimpleNamespace(name="t", endpoint=None)])}
    group = SimpleNamespace(windows=[SimpleNamespace(run_id="solo-a", repetition=1),
                                     SimpleNamespace(run_id="solo-a", repetition=2)], run=runs.__getitem__)
    scrapes = WindowScrapes(group, RunDir(tmp_path))
    assert scrapes
    scrapes.before(0)
    scrapes.before(1)  # window 0 never reported done (its worker died): closed first
    scrapes.after(1)
    scrapes.after(1)  # once only
    scrapes.close_all()
    folder = RunDir(tmp_path).run("solo-a")
    rows = read_scrapes(folder.metrics_scrapes)
    assert [(r.repetition, r.when, r.error is None) for r in rows] == [(1, "before", True), (1, "after", False),
                                                                      (2, "before", True), (2, "after", True)]
    assert rows[0].url == "http://h:1/metrics"  # no credentials written
    assert folder.window_metrics("a", 2, "after").read_text() == "# TYPE x counter\nx_total 4\n"
    assert not folder.window_metrics("a", 1, "after").exists()


# ---- the fake server's vLLM-shaped /metrics --------------------------------------------------------

def test_fake_server_counts_like_vllm_and_hides_its_front_end():
    from aiohttp import ClientPayloadError
    from aiohttp.test_utils import TestClient, TestServer

    from colobench.serve.fake_openai import FakeOpenAIServer, FakeServerSettings

    async def main():
        server = FakeOpenAIServer(FakeServerSettings(ttft_ms=1, itl_ms=1, frontend_delay_ms=60, models=("a", "b")))
        async with TestClient(TestServer(server.app())) as client:
            for fault in (None, None, "cut"):
                headers = {"x-colobench-fault": fault} if fault else {}
                resp = await client.post("/v1/completions", headers=headers,
                                         json={"model": "a", "prompt": "one two", "max_tokens": 8, "stream": True})
                try:
                    await resp.read()
                except ClientPayloadError:
                    assert fault == "cut"
            server.engine.prefix_lookup("b", 10, 4)  # what a prefix cache reports
            return await (await client.get("/metrics")).text()

    text = asyncio.run(main())
    a, b = parse(text, "a"), parse(text, "b")
    assert a["vllm:request_success_total"] == 2  # the cut stream is not a success
    assert a["vllm:prompt_tokens_total"] == 12 and a["vllm:prefix_cache_queries_total"] == 12  # "one two": 2 + 2 tokens
    assert a["vllm:prefix_cache_hits_total"] == 0 and a["vllm:num_requests_running"] == 0
    assert a["vllm:time_to_first_token_seconds_count"] == 3
    assert a["vllm:time_to_first_token_seconds_sum"] / 3 < 0.06  # the 60 ms front end is the client's alone
    assert a["vllm:inter_token_latency_seconds_count"] == 2 * 7 + 3  # the cut one stopped at its 4th token
    assert a["vllm:e2e_request_latency_seconds_count"] == 2 and "process_resident_memory_bytes" in a
    assert b["vllm:prefix_cache_hits_total"] == 4 and b["vllm:prefix_cache_queries_total"] == 10


# ---- end to end: an interleaved solo + co-located run against two fake servers ---------------------

@pytest.mark.slow
def test_server_counters_per_phase_match_the_clients(tmp_path: Path, cli_env: dict, fake_server):
    """Interleaved order (solo a, solo b, together, then again): each phase's server counters are its
    own windows' (warm-up and the other phases excluded), so a's solo and co-located counts differ
    (the co-located filler) and each equals the requests a's client completed in that phase's
    windows; b's server has a 150 ms front end its own histograms do not see: the TTFT
    disagreement check fires for b in both phases."""
    a = fake_server("--ttft-ms", "2", "--itl-ms", "1")[0]
    b = fake_server("--ttft-ms", "2", "--itl-ms", "1", "--frontend-delay-ms", "150")[0]
    out = tmp_path / "run"
    proc = run_cli(["run", "-e", a, "-e", b, "-m", "fake-model", "-c", "2", "-n", "8", "-r", "6",
                    "--repetitions", "2", "--scrape-metrics", "-o", str(out)], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = written(out)
    runs = {"solo": "solo-fake-model-1", "colocated": "colocated"}
    counted = {}
    for phase, run_id in runs.items():
        ev = summary["phases"][phase]["fake-model-1"]["server"]
        rows = [r for r in read_jsonl(out / "runs" / run_id / "records" / "fake-model-1.jsonl") if not r["warmup"]]
        assert ev["windows"] == 2 and ev["engine"] == "vllm" and not ev["problems"]
        assert ev["requests"] == {"client": len(rows), "server": len(rows)} and all(r["ok"] for r in rows)
        assert [w["requests"] for w in ev["repetitions"]] == [w["client_requests"] for w in ev["repetitions"]]
        assert ev["prefix_cache_hit_pct"] == 0 and ev["ttft_ms"]["server"] <= ev["ttft_ms"]["client"]
        counted[phase] = len(rows)
    assert counted["solo"] == 12 and counted["colocated"] > 12  # measured 6 x 2, plus filler while b finishes
    # the server's own total since it started (the last scrape) holds the warm-up and both phases
    last = parse((out / "runs" / "colocated" / "metrics" / "fake-model-1.r2.after.prom").read_text(), "fake-model")
    assert last["vllm:request_success_total"] > counted["solo"] + counted["colocated"]
    disagree = {(c["subject"]["instance"], c["subject"]["phase"]) for c in summary["checks"]
                if c["kind"] == "server_agreement" and c["verdict"] == "ttft_disagrees"}
    assert {("fake-model-2", "solo"), ("fake-model-2", "colocated")} <= disagree
    assert "client against the server's own /metrics" in proc.stdout
    report = run_cli(["report", str(out), "--md"], cli_env, tmp_path)
    assert report.returncode == 0 and "| fake-model-2 | solo |" in report.stdout.split("client against")[1]
    html = (out / "report.html").read_text()
    assert "<h3>client against the server's own /metrics (the same windows)</h3>" in html
    assert json.loads((out / "summary.json").read_text())["points"][0]["phases"]["solo"]["fake-model-1"]["server"]
