"""The investigations' building blocks against planted truths: allocator fragmentation from known
reserved and allocated figures, the log rules against fixture logs (each rule fires once, clean
logs give nothing, a finding's window lands on the planted time), per-category metrics against
hand-computed values, and the advice table against a planted variant sweep."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from colobench import api
from colobench.rundir import ClockAnchor, InstanceEntry, PlannedRun, RunDir
from colobench.analysis.advice import Guard, advise
from colobench.analysis.diagnosis.logscan import RULES, line_time, rules_from, scan_run
from colobench.analysis.model import (Distribution, Distributions, InstanceFacts, Interference, PhaseMetrics, Point,
                                      Quality, Validity)
from colobench.analysis.phase import instance_phase_metrics
from colobench.analysis.resources import allocator
from colobench.errors import SpecError
from colobench.records import RequestRecord
from colobench.specs import experiment_from_dict

from conftest import run_cli

MS = 1_000_000
FIXTURES = Path(__file__).parent / "fixtures"


# ---- fragmentation --------------------------------------------------------------------------------

def test_fragmentation_from_known_allocator_figures():
    a = allocator({"max_reserved_bytes": 1000, "max_allocated_bytes": 900, "reserved_bytes": 800,
                   "allocated_bytes": 600})
    assert a.fragmentation_pct_peak == pytest.approx(10.0) and a.fragmentation_pct_end == pytest.approx(25.0)
    assert allocator(None) is None


@pytest.mark.slow
def test_fragmentation_of_a_planted_allocator_is_a_finding(tmp_path: Path):
    """A fake device whose allocator holds 100 MiB for 80 MiB of tensors: 20%, above 15%."""
    spec = experiment_from_dict({
        "instances": [{"name": "a", "model": "fake", "backend": "fake",
                       "fake": {"ttft_ms": 1, "tpot_ms": 1, "reserved_mb": 100, "allocated_mb": 80}}],
        "workload": {"output_tokens": 3, "requests": 4}, "repetitions": 1}, "t")
    summary = api.run_experiment(spec, out=tmp_path / "run").summary
    a = summary.point().metrics("solo", "a").allocator
    assert a.reserved_bytes == 100 * 2**20 and a.fragmentation_pct_end == pytest.approx(20.0)
    (f,) = [f for f in summary.findings if f.kind == "fragmentation"]
    assert "20%" in f.title and "expandable_segments:True" in f.recommendation


def test_cpu_has_no_fragmentation_figure_and_says_why():
    from colobench.analysis.resources import instance_resources

    mt = instance_phase_metrics(_records([("x", 10.0)] * 3))
    facts = InstanceFacts(model="m", backend="transformers", device="cpu", dtype="float32", cpu_threads=1, workload={})
    out = instance_resources([], facts, "cpu", mt, ["a"], [], {}, False)
    assert "no reserved pool" in out["unmeasured"]["fragmentation_pct"]


# ---- logs -----------------------------------------------------------------------------------------------

RULE_LINES = {  # one real or real-shaped line per rule (CANN ones from the public samples)
    "ascend_resource_busy": "[ERROR] RUNTIME(1234,python):2025-10-11-15:09:34.713.335 EL0005: Resource_Busy",
    "ascend_out_of_memory": "EL0004: [PID: 3132] 2025-10-15-16:32:16.417.528 Failed to allocate memory.",
    "ascend_kernel_error": "[ERROR] RecentErrMsg: EZ9999: Inner Error!",
    "ascend_stream_timeout": "Kernel task happen error, retCode=0x25, [aicore timeout].[FUNC:PreCheckTaskErr]",
    "ascend_sync_failed": "[ERROR] aclrtSynchronizeStream(stream) failed: 507035 (main.cpp:92)",
    "ascend_communication": "EI0002: [PID: 2969] 2025-10-11-15:09:34.713.335 The wait execution of the Notify register "
                            "times out.",
    "ascend_runtime_error": "[ERROR] 2025-09-28-07:22:30 (PID:316198, Device:7, RankID:-1) ERR00100 PTA call acl api "
                            "failed",
    "npu_smi_driver": "dcmi module initialize failed. ret is -8005",
    "cuda_out_of_memory": "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
    "cuda_error": "RuntimeError: CUDA error: device-side assert triggered",
    "nccl_timeout": "[Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1, OpType=ALLREDUCE)",
    "thermal_throttling": "GPU 0: clocks throttled by thermal slowdown",
    "engine_preemption": "WARNING 05-09 00:49:33 scheduler.py:1057 Sequence group 0 is preempted by "
                         "PreemptionMode.RECOMPUTE mode because there is not enough KV cache space.",
    "engine_kv_cache_full": "RuntimeError: No available blocks",
    "engine_out_of_memory": "ValueError: No available memory for the cache blocks. Try increasing "
                            "`gpu_memory_utilization` when initializing the engine.",
    "too_many_open_files": "OSError: [Errno 24] Too many open files",
    "engine_dead": "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue. See stack trace "
                   "(above) for the root cause.",
    "transformers_results": "The attention mask is not set and cannot be inferred from input because pad token is "
                            "same as eos token.",
}


def test_every_rule_has_a_planted_line_and_fires_alone():
    assert set(RULE_LINES) == {r.name for r in RULES}
    for name, line in RULE_LINES.items():
        fired = {r.name for r in RULES if r.regex().search(line)}
        assert name in fired, (name, fired)


# more lines of the serving engines' rules (vLLM's and SGLang's own wording), each firing its rule and
# no other engine rule: a line is one cause
ENGINE_LINES = [
    ("engine_preemption", "[2026-09-13 16:06:07] KV cache pool is full. Retract requests. #retracted_reqs: 1, "
                          "#new_token_ratio: 0.0980 -> 0.3487"),
    ("engine_preemption", "WARNING scheduler.py:1754] Sequence group streaming_chat_32k_2 is preempted by "
                          "PreemptionMode.SWAP mode because there is not enough KV cache space."),
    ("engine_kv_cache_full", "ERROR 10-10 01:14:54 block_manager.py:120] The KV cache is full: out of blocks for "
                             "sequence 17"),
    ("engine_out_of_memory", "ValueError: To serve at least one request with the models's max seq len (8192), "
                             "(1.00 GiB KV cache is needed, which is larger than the available KV cache memory "
                             "(0.50 GiB)."),
    ("engine_out_of_memory", "RuntimeError: Not enough memory. Please try to increase --mem-fraction-static."),
    ("engine_out_of_memory", "Out of memory: Killed process 4242 (VLLM::EngineCor) total-vm:2097152kB"),
    ("too_many_open_files", "ERROR:    [Errno 24] Too many open files: socket.accept() out of system resource"),
    ("engine_dead", "ERROR 12-19 16:32:36 client.py:250] RuntimeError('Engine loop has died')"),
    ("engine_dead", "vllm.engine.async_llm_engine.AsyncEngineDeadError: Background loop has errored already."),
    ("engine_dead", "[2025-10-11 15:09:34] Received sigquit from a child process. It usually means the child "
                    "failed."),
    ("engine_dead", "ERROR 03-12 06:01:27 [core.py:456] EngineCore failed to start."),
]


@pytest.mark.parametrize("rule,line", ENGINE_LINES)
def test_engine_rules_fire_on_their_lines_alone(rule: str, line: str):
    engine = {r.name for r in RULES if r.name.startswith(("engine_", "too_many"))}
    fired = {r.name for r in RULES if r.regex().search(line)} & engine
    assert fired == {rule}, (rule, fired)


def test_engine_rules_leave_ordinary_server_lines_alone():
    quiet = ["INFO 05-09 00:49:33 [loggers.py:123] Engine 000: Avg prompt throughput: 12.0 tokens/s, Running: 1 reqs, "
             "Waiting: 0 reqs, GPU KV cache usage: 0.1%, Prefix cache hit rate: 50.0%",
             "[2026-09-13 16:06:07] Decode batch, #running-req: 66, #token: 84642, token usage: 0.97, gen throughput "
             "(token/s): 2574.67, #queue-req: 11",
             'INFO:     127.0.0.1:50072 - "GET /metrics HTTP/1.1" 200 OK']
    engine = [r for r in RULES if r.name.startswith(("engine_", "too_many"))]
    assert not [(r.name, line) for line in quiet for r in engine if r.regex().search(line)]


def _scan(tmp_path: Path, text: str, anchor: dict | None = None, rules=RULES):
    folder = RunDir(tmp_path).run("solo-a")
    folder.log("a").parent.mkdir(parents=True, exist_ok=True)
    folder.log("a").write_text(text)
    run = PlannedRun(run_id="solo-a", phase="solo",
                     instances=[InstanceEntry(name="a", model="m", device="cpu", dtype="float32", cpu_threads=1)])
    return scan_run(folder, run, "", ClockAnchor(**anchor) if anchor else None, 0, rules)


def test_log_rules_against_fixture_logs(tmp_path: Path):
    findings = _scan(tmp_path, "\n".join(["starting", *RULE_LINES.values(), "done"]) + "\n")
    assert sorted(f.evidence["rule"] for f in findings) == sorted(RULE_LINES)
    by_rule = {f.evidence["rule"]: f for f in findings}
    oom = by_rule["ascend_out_of_memory"]
    assert oom.evidence["count"] == 1 and "a.log:3:" in oom.evidence["lines"][0] and oom.subjects[0].instance == "a"
    assert oom.kind == "log:ascend_out_of_memory" and oom.severity == "high" and oom.recommendation


def test_clean_logs_give_nothing(tmp_path: Path):
    clean = ("[colobench] worker a pid 1 runs solo-a: loading tiny on cpu (float32, 1 threads)\n"
             "Loading checkpoint shards: 100%\nwarm-up done\n")
    assert _scan(tmp_path, clean) == []


def test_a_findings_window_is_the_planted_time(tmp_path: Path):
    """A CANN line stamped 2025-10-15 16:32:16.417528 local time lands on the records' clock through
    the run's anchor (a wall time and a monotonic time read together)."""
    stamp = time.mktime((2025, 10, 15, 16, 32, 16, 0, 0, -1)) + 0.417528
    anchor = {"unix_s": stamp - 12.5, "mono_ns": 5_000_000_000}
    (f,) = _scan(tmp_path, RULE_LINES["ascend_out_of_memory"] + "\n", anchor)
    assert f.windows[0].start_ns == pytest.approx(5_000_000_000 + 12.5e9, abs=1e3)
    assert f.windows[0].start_s == pytest.approx(17.5, abs=1e-3)  # seconds from the run's origin (0 here)
    assert line_time("I0928 07:22:40.736525688 something", 2025) == pytest.approx(
        time.mktime((2025, 9, 28, 7, 22, 40, 0, 0, -1)) + 0.736525688)


def test_user_rules_from_yaml_data(tmp_path: Path):
    rules = rules_from([{"name": "slow_tokenizer", "pattern": r"tokenizer took \d+ s", "cause": "a slow tokenizer",
                         "severity": "low"}], "rules.yaml")
    (f,) = _scan(tmp_path, "tokenizer took 12 s\n", rules=rules)
    assert f.kind == "log:slow_tokenizer" and f.severity == "low"
    for bad, fragment in (([{"pattern": "(", "cause": "c"}], "not a regular expression"),
                          ([{"cause": "x"}], "needs a pattern"),
                          ([{"pattern": "x", "cause": "y", "severity": "urgent"}], "high, medium or low")):
        with pytest.raises(SpecError, match=fragment):
            rules_from(bad, "rules.yaml")


@pytest.mark.slow
def test_diagnose_rescans_an_old_run_with_user_rules(tmp_path: Path, cli_env: dict):
    spec = experiment_from_dict({"instances": [{"name": "a", "model": "fake", "backend": "fake",
                                                "fake": {"ttft_ms": 1, "tpot_ms": 1}}],
                                 "workload": {"output_tokens": 3, "requests": 4}, "repetitions": 1}, "t")
    out = tmp_path / "run"
    api.run_experiment(spec, out=out)
    with open(out / "runs" / "solo-a" / "logs" / "a.log", "a") as log:
        log.write("RuntimeError: NPU out of memory. Tried to allocate 5.03 GiB (NPU 3; 60.96 GiB total capacity)\n")
        log.write("custom marker 42\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text("- {name: marker, pattern: 'custom marker \\d+', cause: the planted marker, severity: medium}\n")
    proc = run_cli(["diagnose", str(out), "--log-rules", str(rules), "--json"], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    kinds = {f["kind"] for f in json.loads(proc.stdout)["findings"]}
    assert {"log:ascend_out_of_memory", "log:marker"} <= kinds


# ---- per-category metrics --------------------------------------------------------------------------------

def _records(spec: list[tuple[str, float]], tokens: int = 5) -> list[RequestRecord]:
    """Back-to-back requests, (category, TPOT ms) each, TTFT 10 ms, prompt 20 + k tokens."""
    out, t = [], 0
    for k, (cat, tpot) in enumerate(spec):
        tok = [t + 10 * MS + int(j * tpot * MS) for j in range(tokens)]
        out.append(RequestRecord(instance="a", run_id="r", repetition=1, request_id=k, batch_id=-1, batch_size=1,
                                 prompt_tokens=20 + k, output_tokens=tokens, submit_ns=t, token_ns=tok,
                                 done_ns=tok[-1], category=cat))
        t = tok[-1] + MS
    return out


def test_per_category_metrics_hand_computed():
    mt = instance_phase_metrics(_records([("code", 2.0), ("code", 4.0), ("zh_qa", 10.0)]))
    code, zh = mt.by_category["code"], mt.by_category["zh_qa"]
    assert code.completed == 2 and zh.completed == 1
    assert code.mean_tpot_ms == pytest.approx(3.0) and zh.mean_tpot_ms == pytest.approx(10.0)
    assert (code.mean_prompt_tokens, code.min_prompt_tokens, code.max_prompt_tokens) == (20.5, 20, 21)
    # e2el = 10 + 4 * tpot: 18 and 26 ms; 10 output tokens over 44 ms
    assert code.mean_e2el_ms == pytest.approx(22.0) and code.output_tok_s_per_request == pytest.approx(10 / 0.044)
    assert (mt.min_prompt_tokens, mt.max_prompt_tokens) == (20, 22)
    assert instance_phase_metrics(_records([(None, 2.0)] * 2)).by_category == {}


# ---- advice ----------------------------------------------------------------------------------------------

def _variant(pid: str, axes: dict, tpot: float, ttft: float, tput: float, mem: int, quality: Quality | None = None,
             valid: bool = True, scaling: float | None = None) -> Point:
    d = Distribution(count=10, mean=1.0)
    mt = PhaseMetrics(completed=10, failed=0, median_tpot_ms=tpot, median_ttft_ms=ttft, output_throughput=tput,
                      peak_memory_bytes=mem, quality=quality,
                      validity=Validity(verdict="VALID" if valid else "INVALID", reasons=[] if valid else ["unstable"]),
                      distributions=Distributions(ttft_ms=d, tpot_ms=d, itl_ms=d, e2el_ms=d,
                                                  output_throughput_tok_s=d, request_throughput_req_s=d))
    facts = InstanceFacts(model="m", backend="transformers", device="npu:0", dtype="float16", cpu_threads=1,
                          workload={})
    phases = {"solo": {"m": mt}}
    if scaling is not None:
        phases["colocated"] = {"m": mt}
    return Point(id=pid, axes=axes, instances={"m": facts}, phases=phases,
                 interference=Interference(instances=2, throughput_scaling=scaling) if scaling else Interference())


def _quality(agreement: float, kl: float) -> Quality:
    return Quality(reference="fp16-b1", token_agreement=agreement, first_divergence_min=0, first_divergence_mean=0,
                   generated_tokens=128, top1_agreement=agreement, kl_divergence=kl)


def test_advice_on_a_planted_variant_sweep():
    """fp16 vs int8 vs int4 at batch 1 and 8 (Mistral-on-910B shaped): int4 is fastest and smallest
    but fails the quality guard; int8 saves no memory (as the investigation found) but is faster."""
    points = [
        _variant("fp16-b1", {"quantization": "none", "batch_size": 1}, 30.0, 80, 33, 15 * 2**30, scaling=1.4),
        _variant("int8-b1", {"quantization": "int8", "batch_size": 1}, 21.0, 70, 47, 15 * 2**30, _quality(0.97, 0.01),
                 scaling=1.7),
        _variant("int4-b1", {"quantization": "int4", "batch_size": 1}, 15.0, 60, 60, 9 * 2**30, _quality(0.61, 0.4),
                 scaling=1.9),
        _variant("fp16-b8", {"quantization": "none", "batch_size": 8}, 32.0, 95, 257, 16 * 2**30),
        _variant("int8-b8", {"quantization": "int8", "batch_size": 8}, 24.0, 90, 300, 16 * 2**30, _quality(0.97, 0.01),
                 valid=False),
    ]
    advice = {a.scenario: a for a in advise(points, ["quantization", "batch_size"])}
    assert (advice["interactive"].choice, advice["interactive"].runner_up) == ("int8-b1", "fp16-b1")
    assert advice["throughput"].choice == "fp16-b8" and advice["throughput"].value == 257  # int8-b8 is INVALID
    assert advice["memory"].choice == "fp16-b1" and advice["memory"].candidates == 3  # int4 is out, int8 ties later
    assert advice["sharing"].choice == "int8-b1" and advice["sharing"].value == 1.7
    excluded = advice["interactive"].excluded
    assert "quality outside the guard" in excluded["int4-b1"] and excluded["int8-b8"].startswith("INVALID")
    loose = {a.scenario: a for a in advise(points, ["quantization"], Guard(min_token_agreement=0.5, max_kl=1.0))}
    assert loose["interactive"].choice == "int4-b1"  # a looser guard admits int4
    assert advise(points[:1], ["quantization"]) == []  # no sweep, no advice


def test_advice_holds_the_workload_fixed():
    """A scenario axis changes the question, not the answer: a dtype is advised per scenario, and a
    sweep of scenarios alone advises nothing (short prompts are not a 'faster variant' of long ones)."""
    points = [
        _variant("short-fp32", {"scenario": "short", "dtype": "float32"}, 4.0, 8, 250, 2**30),
        _variant("short-bf16", {"scenario": "short", "dtype": "bfloat16"}, 3.0, 7, 300, 2**29),
        _variant("long-fp32", {"scenario": "long", "dtype": "float32"}, 5.0, 220, 150, 2**31),
        _variant("long-bf16", {"scenario": "long", "dtype": "bfloat16"}, 6.0, 240, 140, 2**30),
    ]
    advice = advise(points, ["scenario", "dtype"])
    interactive = {a.within["scenario"]: a for a in advice if a.scenario == "interactive"}
    assert interactive["short"].choice == "short-bf16" and interactive["short"].runner_up == "short-fp32"
    assert interactive["long"].choice == "long-fp32" and interactive["long"].axes == {"dtype": "float32"}
    assert all(a.runner_up in {p.id for p in points if p.axes["scenario"] == a.within["scenario"]} for a in advice)
    assert advise(points, ["scenario"]) == [] and advise(points, ["workload.prompt_tokens"]) == []
    assert advise(points, ["env.TASK_QUEUE_ENABLE"]) != []  # a runtime knob is a variant


def test_advice_margin_over_the_runner_up():
    """Three repetitions each. TPOT 20/21/22 ms against 30/31/32: a clear pick. TPOT 20/24/28
    against 21/25/29: the medians say 24 < 25, the repetitions cannot tell them apart."""
    from colobench.analysis.model import RepetitionStats

    def with_reps(point: Point, tpots: list[float], tputs: list[float]) -> Point:
        mt = point.metrics("solo", "m").model_copy(update={"repetition_stats": RepetitionStats(
            repetitions=[1, 2, 3], p50_tpot_ms=tpots, output_throughput=tputs)})
        return point.model_copy(update={"phases": {"solo": {"m": mt}}})

    fast = with_reps(_variant("a", {"dtype": "bfloat16"}, 21.0, 8, 48, 2**30), [20, 21, 22], [47, 48, 49])
    slow = with_reps(_variant("b", {"dtype": "float32"}, 31.0, 9, 32, 2**31), [30, 31, 32], [31, 32, 33])
    clear = {a.scenario: a for a in advise([fast, slow], ["dtype"])}
    assert clear["interactive"].choice == "a" and clear["interactive"].margin == "clear"
    assert clear["throughput"].margin == "clear" and clear["memory"].margin == "single figure"

    near = with_reps(_variant("c", {"dtype": "float32"}, 25.0, 9, 46, 2**31), [21, 25, 29], [44, 46, 48])
    close = with_reps(_variant("a", {"dtype": "bfloat16"}, 24.0, 8, 48, 2**30), [20, 24, 28], [46, 48, 50])
    tie = {a.scenario: a for a in advise([close, near], ["dtype"])}
    assert tie["interactive"].choice == "a" and tie["interactive"].margin == "within noise"
    assert tie["throughput"].margin == "within noise"
    no_reps = {a.scenario: a for a in advise([_variant("a", {"dtype": "x"}, 1, 1, 1, 1),
                                             _variant("b", {"dtype": "y"}, 2, 2, 2, 2)], ["dtype"])}
    assert no_reps["interactive"].margin == "no interval"


def test_advice_margin_of_interleaved_variants_is_paired():
    """Two variants interleaved in one group (`paired_with`): the host drifted from repetition to
    repetition (TPOT 20, 26, 32 ms) and moved both alike, variant b 4% slower in every one. Welch
    on the two sets of repetitions sees only the drift ("within noise"); the paired ratios
    (1.04, 1.04, 1.04) make the pick clear... of a 4% margin: inside the 5% tolerance, so
    "inconclusive" rather than "clear"; at 10% it is clear."""
    from colobench.analysis.model import RepetitionStats

    def with_reps(point: Point, tpots: list[float], paired: bool) -> Point:
        mt = point.metrics("solo", "m").model_copy(update={"repetition_stats": RepetitionStats(
            repetitions=[1, 2, 3], p50_tpot_ms=tpots, output_throughput=[1000 / t for t in tpots])})
        return point.model_copy(update={"phases": {"solo": {"m": mt}},
                                        "paired_with": [{"a": "b", "b": "a"}[point.id]] if paired else []})

    drift = [20.0, 26.0, 32.0]
    for factor, paired_margin in ((1.04, "inconclusive"), (1.10, "clear")):
        for paired in (False, True):
            a = with_reps(_variant("a", {"dtype": "bfloat16"}, 26.0, 8, 38, 2**30), drift, paired)
            b = with_reps(_variant("b", {"dtype": "float32"}, 26.0 * factor, 9, 38 / factor, 2**30),
                          [t * factor for t in drift], paired)
            advice = {x.scenario: x for x in advise([a, b], ["dtype"])}
            assert advice["interactive"].choice == "a"
            assert advice["interactive"].margin == (paired_margin if paired else "within noise")
