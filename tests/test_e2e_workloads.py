"""End-to-end sweeps and load models on CPU: tiny preset and fake backends; no timing asserted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from colobench import api
from colobench.errors import ColobenchError, SpecError
from colobench.records import read_jsonl
from colobench.specs import experiment_from_dict

from conftest import all_counted, run_cli

pytestmark = pytest.mark.slow


# the fake backend, named as the preset would be: the sweep and the load model are the same code for it
FAKE_TINY = ("name: tiny\nrepetitions: 1\nworkload: {prompt_tokens: 16, output_tokens: 4, requests: 6}\n"
             "instances: [{name: tiny, model: fake, backend: fake, fake: {ttft_ms: 2, tpot_ms: 2}}]\n")


@pytest.mark.parametrize("flags, axis, values, load, backend", [
    (["-b", "1,2"], "batch_size", [1, 2], "static", "fake"),
    (["-c", "1,3"], "concurrency", [1, 3], "closed", "fake"),
    (["--rate", "20,40"], "rate", [20.0, 40.0], "open", "tiny"),
])
def test_sweep_each_load_model(tmp_path: Path, cli_env: dict, flags, axis, values, load, backend):
    """Each load model as a sweep through the CLI. The static and closed loops run on the tiny
    preset elsewhere (every run; playbook 5's `--load closed`, the checkpoint's text prompts), so
    here on the fake backend (no torch to import); the open loop on the tiny preset."""
    out = tmp_path / "run"
    if backend == "fake":
        (tmp_path / "e.yaml").write_text(FAKE_TINY)
        proc = run_cli(["run", "e.yaml", *flags, "-o", str(out)], cli_env, tmp_path)
    else:
        proc = run_cli(["run", "-m", "tiny", "-d", "cpu", "-p", "16", "-n", "4", "-r", "6", "--repetitions", "1",
                        *flags, "-o", str(out)], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sweep_axes"] == [axis]
    assert [p["axes"][axis] for p in summary["points"]] == values  # axis values next to the metrics
    for point in summary["points"]:
        metrics = point["phases"]["solo"]["tiny"]
        assert metrics["completed"] == 6 and metrics["load_model"] == load
        assert metrics["output_throughput"] > 0 and metrics["mean_ttft_ms"] > 0
        records = [r for r in read_jsonl(out / "runs" / point["id"] / "solo-tiny" / "records" / "tiny.jsonl")
                   if not r["warmup"]]
        assert len(records) == 6
        if load == "open":
            assert all(r["scheduled_ns"] is not None and r["submit_ns"] >= r["scheduled_ns"] for r in records)
            ol = metrics["open_loop"]
            assert ol["requested_rate"] == point["axes"]["rate"] and ol["achieved_rate"] > 0
            assert ol["schedule_lag_ms"]["count"] == 6
        else:
            assert all(r["scheduled_ns"] is None for r in records)
    if load == "static":
        table = summary["batch_scaling"][0]
        assert [row["batch_size"] for row in table["rows"]] == [1, 2] and table["rows"][0]["speedup"] == 1.0
        assert "batch scaling: tiny (solo)" in proc.stdout
    assert "sweep" in proc.stdout


def _fake(name: str, **timings) -> dict:
    return {"name": name, "model": "fake", "backend": "fake", "fake": {"ttft_ms": 1, "tpot_ms": 1, **timings}}


def test_failed_sweep_point_is_recorded_and_sweep_goes_on(tmp_path: Path):
    spec = experiment_from_dict({"name": "oom", "instances": [_fake("a", fail_above_batch=2)], "repetitions": 1,
                                 "workload": {"batch_size": [1, 4, 2], "requests": 8, "output_tokens": 2}}, "t")
    summary = api.run_experiment(spec, out=tmp_path / "run").summary
    assert summary.point("oom-b1").metrics("solo", "a").completed == 8
    assert summary.point("oom-b2").metrics("solo", "a").completed == 8
    failed = summary.point("oom-b4").runs["oom-b4/solo-a"].workers["a"]
    assert failed.status == "failed" and "simulated out of memory" in failed.reason
    assert any("oom-b4/solo-a" in p for p in summary.problems)


def test_duration_bounds(tmp_path: Path):
    # a (static) and b (closed loop, concurrency 2), each bounded by 0.4 s instead of 2 requests
    spec = experiment_from_dict({"name": "dur", "repetitions": 1, "instances": [_fake("a", ttft_ms=2, tpot_ms=2),
                                 {**_fake("b", ttft_ms=2, tpot_ms=2), "workload": {"concurrency": 2}}],
                                 "solo_baselines": True, "workload": {"duration_s": 0.4, "requests": 2,
                                                                      "output_tokens": 3}}, "t")
    point = api.run_experiment(spec, out=tmp_path / "run").summary.point()
    a, b = point.metrics("solo", "a"), point.metrics("solo", "b")
    # about 0.4 s of 6 ms requests: far more than the 2 of the request bound
    assert a.completed > 10 and b.completed > 10
    assert a.load_model == "static" and b.load_model == "closed"


def test_resume_skips_finished_runs(tmp_path: Path):
    data = {"name": "res", "instances": [_fake("a")], "repetitions": 1,
            "workload": {"batch_size": [1, 2], "requests": 4, "output_tokens": 2}}
    out = tmp_path / "run"
    api.run_experiment(experiment_from_dict(data, "t"), out=out)
    first = json.loads((out / "runs" / "res-b1" / "solo-a" / "run.json").read_text())
    # simulate an interruption during the second point
    second_state = out / "runs" / "res-b2" / "solo-a" / "run.json"
    state = json.loads(second_state.read_text())
    state["status"] = "interrupted"
    second_state.write_text(json.dumps(state))
    (out / "runs" / "res-b2" / "solo-a" / "records" / "a.jsonl").write_text("")
    with pytest.raises(ColobenchError, match="folder exists"):
        api.run_experiment(experiment_from_dict(data, "t"), out=out)
    result = api.run_experiment(experiment_from_dict(data, "t"), out=out, resume=True)
    assert json.loads((out / "runs" / "res-b1" / "solo-a" / "run.json").read_text()) == first  # untouched
    redone = json.loads(second_state.read_text())
    assert redone["status"] == "completed" and redone["workers"]["a"]["pid"] != state["workers"]["a"]["pid"]
    assert {p.id: p.metrics("solo", "a").completed for p in result.summary.points} == {"res-b1": 4, "res-b2": 4}
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["resumed_utc"]) == 1
    changed = {**data, "repetitions": 2}
    with pytest.raises(ColobenchError, match="differs"):
        api.run_experiment(experiment_from_dict(changed, "t"), out=out, resume=True)


def test_resume_from_the_cli_reads_the_manifest(tmp_path: Path, cli_env: dict):
    exp = tmp_path / "e.yaml"
    exp.write_text("name: cli\nrepetitions: 1\nworkload: {requests: 3, output_tokens: 2, batch_size: [1, 3]}\n"
                   "instances: [{name: a, model: fake, backend: fake, fake: {ttft_ms: 1, tpot_ms: 1}}]\n")
    out = tmp_path / "run"
    assert run_cli(["run", str(exp), "-o", str(out)], cli_env, tmp_path).returncode == 0
    proc = run_cli(["run", "--resume", "-o", str(out)], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("already completed, skipped") == 2


def test_text_prompts_through_the_checkpoint_tokenizer(tmp_path: Path, tokenizer_checkpoint: Path, cache_dir: Path):
    from transformers import AutoTokenizer

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "What are the main differences between a CPU and a GPU?"}\n'
                       '{"messages": [{"role": "user", "content": "The quick brown fox."}]}\n')
    spec = experiment_from_dict({
        "name": "text", "repetitions": 1, "solo_baselines": False, "cache_dir": str(cache_dir),
        "workload": {"requests": 8, "output_tokens": 3},
        "instances": [{"name": "file", "model": str(tokenizer_checkpoint), "device": "cpu",
                       "workload": {"prompts": {"file": str(prompts)}}},
                      {"name": "builtin", "model": str(tokenizer_checkpoint), "device": "cpu",
                       "workload": {"prompts": {"builtin": ["code"]}, "concurrency": 2}}],
    }, "t")
    result = api.run_experiment(spec, out=tmp_path / "run")
    tok = AutoTokenizer.from_pretrained(tokenizer_checkpoint)
    expected = {len(tok.encode("What are the main differences between a CPU and a GPU?")),
                len(tok.apply_chat_template([{"role": "user", "content": "The quick brown fox."}],
                                            add_generation_prompt=True, tokenize=True)["input_ids"])}
    records = tmp_path / "run" / "runs" / "colocated" / "records"
    assert {r["prompt_tokens"] for r in read_jsonl(records / "file.jsonl") if not r["warmup"]} == expected
    all_counted(result.summary.point().metrics("colocated", "builtin"), 8, records / "builtin.jsonl")
    assert list((tmp_path / "run" / "prompts").glob("*.json"))  # tokenised once, kept with the run


def test_prompt_longer_than_context_fails_before_running(tmp_path: Path, tokenizer_checkpoint: Path):
    small = tmp_path / "small-context"
    shutil.copytree(tokenizer_checkpoint, small)
    config = json.loads((small / "config.json").read_text())
    config["max_position_embeddings"] = 16
    (small / "config.json").write_text(json.dumps(config))
    spec = experiment_from_dict({"instances": [{"model": str(small), "device": "cpu",
                                                "workload": {"prompts": {"builtin": ["long_summary"]}}}]}, "t")
    with pytest.raises(SpecError, match="exceeds .* context of 16 tokens"):
        api.run_experiment(spec, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_bad_prompt_file_through_a_real_process(tmp_path: Path, cli_env: dict, tokenizer_checkpoint: Path):
    """A bad prompt file given to a real `colobench` process (the other cases of the one bad-input
    table run `main()` in-process in test_bad_input.py): exit 2, one line, nothing written."""
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a"}\n{"question": "b"}\n')
    proc = run_cli(["run", "-m", str(tokenizer_checkpoint), "-d", "cpu", "--prompts", "bad.jsonl"], cli_env, tmp_path,
                   timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "bad.jsonl:2: line has neither" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "colobench-runs").exists() and [p.name for p in tmp_path.iterdir()] == ["bad.jsonl"]
