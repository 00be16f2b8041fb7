"""Trace replay: Mooncake JSONL and Azure CSV traces read and checked row by row, token-exact
prompts that share the blocks the trace says they share, each request due at its trace time
(scaled by the speed), and two co-located instances replaying two traces. Small files made here;
nothing asserts on this machine's timing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from colobench.workload.trace import TraceError, block_prompts, read_trace

MOONCAKE = [
    {"timestamp": 10.0, "input_length": 700, "output_length": 5, "hash_ids": [1, 2]},
    {"timestamp": 0.0, "input_length": 600, "output_length": 3, "hash_ids": [1, 3]},
    {"timestamp": 25.5, "input_length": 40, "output_length": 2, "hash_ids": [], "session_id": 7},
]


def _mooncake(tmp_path: Path, rows: list[dict] | None = None) -> Path:
    path = tmp_path / "trace.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (rows if rows is not None else MOONCAKE)))
    return path


def _azure(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "azure.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + body)
    return path


def test_mooncake_rows_sorted_from_zero(tmp_path: Path):
    trace = read_trace(_mooncake(tmp_path))
    assert trace.format == "mooncake" and [r.t_s for r in trace.rows] == [0.0, 0.010, 0.0255]
    assert [(r.input_tokens, r.output_tokens, r.hash_ids) for r in trace.rows] == [(600, 3, (1, 3)), (700, 5, (1, 2)),
                                                                                   (40, 2, ())]
    assert trace.rows[2].session == "7" and trace.span_s == pytest.approx(0.0255)
    assert trace.offsets_s(2.0) == pytest.approx([0.0, 0.005, 0.01275])  # --trace-speed 2: twice as fast
    cut = trace.window(0.005, 0.015)
    assert [r.input_tokens for r in cut.rows] == [700] and cut.rows[0].t_s == 0.0
    facts = trace.facts(2.0)
    assert facts["requests"] == 3 and facts["with_blocks"] == 2 and facts["replayed_span_s"] == pytest.approx(0.01275)


def test_azure_csv_with_dotnet_timestamps_and_seconds(tmp_path: Path):
    trace = read_trace(_azure(tmp_path, "2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:46.1805900,100,1\n"))
    assert trace.format == "azure" and [r.input_tokens for r in trace.rows] == [100, 374]
    assert trace.rows[1].t_s == pytest.approx(0.5) and trace.rows[1].hash_ids == ()
    seconds = read_trace(_azure(tmp_path, "12.5,10,2\n10,20,3\n"))
    assert [r.t_s for r in seconds.rows] == [0.0, 2.5]


@pytest.mark.parametrize("rows, fragment", [
    ([{"timestamp": 0, "input_length": 10}], "trace.jsonl:1: output_length is missing"),
    ([{"timestamp": -5, "input_length": 10, "output_length": 2}], "timestamp must be milliseconds"),
    ([{"timestamp": 0, "input_length": 0, "output_length": 2}], "input_length must be a whole number of tokens"),
    ([{"timestamp": 0, "input_length": 5, "output_length": 2, "hash_ids": ["a"]}], "hash_ids must be a list"),
    ([], "no requests in the trace"),
])
def test_bad_mooncake_rows_are_named(tmp_path: Path, rows, fragment):
    with pytest.raises(TraceError, match=fragment):
        read_trace(_mooncake(tmp_path, rows))


def test_bad_files_are_named(tmp_path: Path):
    bad = tmp_path / "t.jsonl"
    bad.write_text('{"timestamp": 0, "input_length": 5, "output_length": 1}\nnot json\n')
    with pytest.raises(TraceError, match=r"t\.jsonl:2: not a JSON object"):
        read_trace(bad)
    with pytest.raises(TraceError, match="cannot read"):
        read_trace(tmp_path / "missing.jsonl")
    header = tmp_path / "h.csv"
    header.write_text("time,in,out\n1,2,3\n")
    with pytest.raises(TraceError, match="ContextTokens, GeneratedTokens missing"):
        read_trace(header)
    with pytest.raises(TraceError, match=r"azure\.csv:2: TIMESTAMP 'yesterday'"):
        read_trace(_azure(tmp_path, "yesterday,1,1\n"))


def test_block_prompts_share_what_the_trace_shares(tmp_path: Path):
    rows = read_trace(_mooncake(tmp_path)).rows

    def draw(rng, n):
        return rng.integers(100, 30000, size=n)

    first = block_prompts(rows, draw, seed=0, salt=("rep", "1"), block_tokens=512)
    assert [len(p) for p in first] == [600, 700, 40]  # token-exact
    assert first[0][:512] == first[1][:512]  # block 1 is both prompts' first block
    assert first[0][512:600] != first[1][512:600]  # then blocks 3 and 2: their own
    again = block_prompts(rows, draw, seed=0, salt=("rep", "1"), block_tokens=512)
    assert again == first  # the same replay is the same prompts
    other = block_prompts(rows, draw, seed=0, salt=("rep", "2"), block_tokens=512)
    assert other[0][:512] == other[1][:512] and other[0][:512] != first[0][:512]  # a new repetition: new blocks


def test_the_driver_replays_the_trace(tmp_path: Path):
    from colobench.backends.fake import FakeBackend
    from colobench.loadgen.driver import LoadDriver
    from colobench.specs.models import WorkloadSpec

    wl = WorkloadSpec(trace=str(_mooncake(tmp_path)), trace_speed=2.0)
    assert wl.load_model == "open"
    driver = LoadDriver(FakeBackend(), wl, 8, None, name="a")
    assert driver.count == 3 and driver.offsets == pytest.approx([0.0, 0.005, 0.01275])
    assert [(len(r.prompt), r.output_tokens) for r in driver.measured_requests] == [(600, 3), (700, 5), (40, 2)]
    first = driver.measured_requests
    driver.new_window("solo-a", 2)
    assert [len(r.prompt) for r in driver.measured_requests] == [600, 700, 40]
    assert driver.measured_requests[0].prompt != first[0].prompt  # each repetition its own content
    assert driver.measured_requests[0].prompt[:512] == driver.measured_requests[1].prompt[:512]


@pytest.mark.parametrize("fields, fragment", [
    ({"rate": 5.0}, "drop rate"),
    ({"load": "closed", "concurrency": 2}, "replayed in an open loop"),
    ({"shared_prefix": {"tokens": 8}}, "drop prompts, sessions and shared_prefix"),
])
def test_trace_with_conflicting_fields(fields, fragment):
    from pydantic import ValidationError

    from colobench.specs.models import WorkloadSpec

    with pytest.raises(ValidationError, match=fragment):
        WorkloadSpec(trace="x.jsonl", **fields)


def test_two_co_located_instances_replay_two_traces(tmp_path: Path, cli_env: dict):
    from conftest import run_cli

    mooncake = _mooncake(tmp_path, [{"timestamp": 5.0 * k, "input_length": 30 + k, "output_length": 2,
                                     "hash_ids": [k % 2]} for k in range(12)])
    azure = _azure(tmp_path, "".join(f"{0.004 * k:.3f},{20 + k},2\n" for k in range(12)))
    exp = tmp_path / "exp.yaml"
    exp.write_text("repetitions: 2\ninstances:\n"
                   f"  - {{name: a, model: fake, backend: fake, fake: {{ttft_ms: 1, tpot_ms: 1}}, "
                   f"workload: {{trace: {mooncake}}}}}\n"
                   f"  - {{name: b, model: fake, backend: fake, fake: {{ttft_ms: 1, tpot_ms: 1}}, "
                   f"workload: {{trace: {azure}, trace_speed: 2}}}}\n")
    proc = run_cli(["run", str(exp), "-o", str(tmp_path / "run")], cli_env, tmp_path)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    summary = json.loads(run_cli(["report", str(tmp_path / "run"), "--json"], cli_env, tmp_path).stdout)
    point = summary["points"][0]
    assert point["instances"]["a"]["trace"]["format"] == "mooncake"
    assert point["instances"]["b"]["trace"]["speed"] == 2 and point["instances"]["b"]["trace"]["requests"] == 12
    for name in ("a", "b"):
        solo = point["phases"]["solo"][name]
        assert solo["completed"] == 24 and solo["open_loop"]["requested_rate"] is None
        assert solo["mean_prompt_tokens"] == pytest.approx(float(np.mean([30 + k if name == "a" else 20 + k
                                                                         for k in range(12)])))
    assert set(point["interference"]["slowdown"]) == {"a", "b"}
    assert "trace replay:" in proc.stdout and "(mooncake: 12 requests" in proc.stdout
    missing = run_cli(["run", "-m", "tiny", "--trace", str(tmp_path / "none.jsonl"), "-o", str(tmp_path / "x")],
                      cli_env, tmp_path)
    assert missing.returncode == 2 and "none.jsonl: cannot read" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_sessions_keep_their_turn_order_and_times(tmp_path: Path):
    """A Mooncake conversation trace: a session's turns are sent in order, each at its trace time
    but never before the answer it follows; TTFT is reported per turn."""
    import asyncio

    from colobench.analysis.phase import instance_phase_metrics
    from colobench.backends.fake import FakeBackend
    from colobench.loadgen import streaming
    from colobench.loadgen.driver import LoadDriver
    from colobench.loadgen.recorder import Recorder
    from colobench.records import RecordWriter, read_records
    from colobench.specs.models import WorkloadSpec

    rows = [{"timestamp": 0, "input_length": 20, "output_length": 2, "hash_ids": [1], "session_id": "s"},
            {"timestamp": 1, "input_length": 10, "output_length": 2, "hash_ids": [9]},
            {"timestamp": 2, "input_length": 40, "output_length": 2, "hash_ids": [1, 2], "session_id": "s"},
            {"timestamp": 3, "input_length": 60, "output_length": 2, "hash_ids": [1, 2, 3], "session_id": "s"}]
    wl = WorkloadSpec(trace=str(_mooncake(tmp_path, rows)), trace_block_tokens=16)
    driver = LoadDriver(FakeBackend(ttft_ms=30, tpot_ms=1), wl, 8, None, name="a")
    reqs = driver.measured_requests
    assert [(len(r.prompt), r.session, r.turn) for r in reqs] == [(20, 0, 0), (40, 0, 1), (60, 0, 2), (10, None, 0)]
    assert [r.at_s for r in reqs] == [None, 0.002, 0.003, None] and driver.offsets == [0.0, 0.001]
    assert reqs[1].prompt[:16] == reqs[0].prompt[:16] == reqs[2].prompt[:16]  # block 1: the conversation so far
    path = tmp_path / "records.jsonl"
    recorder = Recorder(RecordWriter(path), "a", "r", repetition=1)
    asyncio.run(streaming.open_loop(driver.backend, streaming.sessions_of(reqs), driver.offsets, recorder))
    records = {(r.session, r.turn): r for r in read_records(path, [])}
    first, second, third = records[(0, 0)], records[(0, 1)], records[(0, 2)]
    # the trace said 2 ms after the first turn; its answer took 30 ms or more: sent after the answer
    assert second.submit_ns >= first.done_ns and third.submit_ns >= second.done_ns
    metrics = instance_phase_metrics(list(records.values()))
    assert list(metrics.by_turn) == ["0", "1", "2"] and metrics.by_turn["1"].completed == 1


def test_burstgpt_csv_leaves_out_failed_requests(tmp_path: Path):
    path = tmp_path / "burst.csv"
    path.write_text("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                    "5,ChatGPT,472,18,490,Conversation log\n"
                    "45,ChatGPT,1087,0,1087,Conversation log\n"
                    "118,GPT-4,417,276,693,API log\n")
    trace = read_trace(path)
    assert trace.format == "burstgpt" and trace.skipped == 1
    assert [(r.t_s, r.input_tokens, r.output_tokens) for r in trace.rows] == [(0.0, 472, 18), (113.0, 417, 276)]
    assert trace.facts()["skipped"] == 1
    bad = tmp_path / "b.csv"
    bad.write_text("Timestamp,Model,Request tokens\n1,x,2\n")
    with pytest.raises(TraceError, match="Response tokens missing"):
        read_trace(bad, "burstgpt")


def test_text_prompts_share_the_trace_blocks(tmp_path: Path):
    """A server that takes text: each prompt composed to its length, whole shared blocks as the same
    words (one-token words by default: 16 words a 16-token block)."""
    from colobench.loadgen.driver import LoadDriver
    from colobench.specs.models import WorkloadSpec

    class TextServer:  # what the driver asks of an HTTP backend without a tokenizer
        vocab_size = 0

    rows = [{"timestamp": 0, "input_length": 40, "output_length": 2, "hash_ids": [1, 2, 3]},
            {"timestamp": 1, "input_length": 40, "output_length": 2, "hash_ids": [1, 2, 9]},
            {"timestamp": 2, "input_length": 40, "output_length": 2, "hash_ids": [5, 6, 7]}]
    wl = WorkloadSpec(trace=str(_mooncake(tmp_path, rows)), trace_block_tokens=16)
    reqs = LoadDriver(TextServer(), wl, 4, None, name="a").measured_requests
    words = [r.text.split() for r in reqs]
    assert [len(w) for w in words] == [40, 40, 40] and [r.prompt_target for r in reqs] == [40, 40, 40]
    # "the", then blocks 1 and 2 (16 words each): the same in the first two prompts, not in the third
    assert words[0][:33] == words[1][:33] and words[0][1:33] != words[2][1:33]
    assert words[0][33:] != words[1][33:]  # past the whole blocks, each prompt its own


def test_two_traces_against_the_fake_server(tmp_path: Path, cli_env: dict, fake_server):
    """The small Mooncake and Azure files replayed through the HTTP client against `colobench
    fake-server` (text prompts, the server counts them): every request of each trace sent once a
    repetition, each no earlier than its trace time, and the schedule lag recorded (how close to
    the trace: benchmarks/trace_replay.py measures it, no time is asserted here)."""
    from conftest import run_cli

    from colobench.records import read_records

    url, _ = fake_server()
    mooncake = _mooncake(tmp_path, [{"timestamp": 5.0 * k, "input_length": 40 + k, "output_length": 3,
                                     "hash_ids": [k % 2]} for k in range(20)])
    azure = _azure(tmp_path, "".join(f"{0.005 * k:.3f},{30 + k},3\n" for k in range(20)))
    exp = tmp_path / "http.yaml"
    exp.write_text("repetitions: 2\nworkload: {concurrency: 32, trace_block_tokens: 16}\ninstances:\n"
                   f"  - {{name: a, model: fake-model, backend: openai, base_url: \"{url}\", workload: {{trace: {mooncake}}}}}\n"
                   f"  - {{name: b, model: fake-model, backend: openai, base_url: \"{url}\", workload: {{trace: {azure}}}}}\n")
    proc = run_cli(["run", str(exp), "-o", str(tmp_path / "run")], cli_env, tmp_path)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    for name, trace in (("a", read_trace(mooncake)), ("b", read_trace(azure))):
        records = [r for r in read_records(tmp_path / "run" / "runs" / f"solo-{name}" / "records" / f"{name}.jsonl")
                   if not r.warmup and not r.load_only]
        assert len(records) == 2 * len(trace.rows) and all(r.ok for r in records)
        for rep in (1, 2):
            mine = sorted((r for r in records if r.repetition == rep), key=lambda r: r.scheduled_ns)
            start = mine[0].scheduled_ns
            assert [round((r.scheduled_ns - start) / 1e9, 6) for r in mine] == pytest.approx(
                [row.t_s for row in trace.rows], abs=1e-6)  # due at the trace's times
            assert all(r.submit_ns >= r.scheduled_ns for r in mine)  # never early
    summary = json.loads(run_cli(["report", str(tmp_path / "run"), "--json"], cli_env, tmp_path).stdout)
    assert summary["points"][0]["phases"]["colocated"]["a"]["open_loop"]["mean_schedule_lag_ms"] is not None
