"""The real pipeline on CPU: spawned workers, the tiny preset, run directories, the CLI.

Nothing here asserts on timing; short workloads keep the suite fast on two cores.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from colobench import api
from colobench.records import read_jsonl
from colobench.specs import experiment_from_dict

from conftest import all_counted, run_cli

pytestmark = pytest.mark.slow

VLLM_KEYS = [f"{stat}_{metric}_ms" for metric in ("ttft", "tpot", "itl", "e2el")
             for stat in ("mean", "median", "std", "p99")] + ["output_throughput", "request_throughput"]
SMALL = {"prompt_tokens": 16, "output_tokens": 8, "requests": 4, "batch_size": 2}


def _spec(cache_dir: Path, instances: list[dict], **extra):
    return experiment_from_dict({"instances": instances, "workload": SMALL, "repetitions": 2,
                                 "cache_dir": str(cache_dir), **extra}, "test")


def test_solo_run(tmp_path: Path, cache_dir: Path, host_reference_on):
    spec = _spec(cache_dir, [{"model": "tiny", "device": "cpu"}], telemetry={"host_interval_s": 0.1})
    result = api.run_experiment(spec, out=tmp_path / "run")
    run_dir = result.run_dir
    manifest = json.loads((run_dir / "manifest.json").read_text())
    env = manifest["environment"]
    assert env["versions"]["torch"] and env["versions"]["transformers"] and env["logical_cores"] >= 1
    assert manifest["plan"]["runs"][0]["instances"][0]["cpu_threads"] >= 1
    assert manifest["devices"]["cpu"]["kind"] == "cpu"
    records = list(read_jsonl(run_dir / "runs" / "solo-tiny" / "records" / "tiny.jsonl"))
    measured = [r for r in records if not r["warmup"] and not r["load_only"]]
    assert len(measured) == 8 and len(records) == 10  # 2 reps x 4, plus one warm-up batch of 2
    assert all(len(r["token_ns"]) == 8 and r["token_ns"] == sorted(r["token_ns"]) for r in measured)
    assert all(isinstance(r["submit_ns"], int) and r["submit_ns"] < r["token_ns"][0] for r in measured)
    solo = result.summary.point().metrics("solo", "tiny").model_dump()
    assert solo["completed"] == 8 and solo["total_output_tokens"] == 64 and solo["repetitions"] == 2
    assert all(solo[k] is not None and solo[k] >= 0 for k in VLLM_KEYS)
    assert result.summary.point().interference.throughput_scaling is None
    written = json.loads((run_dir / "summary.json").read_text())
    assert written["schema"] == "colobench.summary/2" and written["points"][0]["id"] == ""
    assert written["points"][0]["phases"]["solo"]["tiny"]["completed"] == 8
    # host telemetry on the records' clock, and the resource keys with reasons where null
    samples = list(read_jsonl(run_dir / "runs" / "solo-tiny" / "telemetry.jsonl"))
    # every sample is the host's; those inside the measured window see the worker (one taken while it
    # starts or after it exits may not: how soon depends on how busy the host is)
    start, end = min(r["submit_ns"] for r in measured), max(r["token_ns"][-1] for r in measured)
    inside = [s for s in samples if start <= s["t_ns"] <= end]
    assert samples and all(s["source"] == "host" for s in samples)
    assert all("tiny" in s["metrics"]["workers"] for s in inside)
    assert any("tiny" in s["metrics"]["workers"] for s in samples)
    first, last = min(r["submit_ns"] for r in records), max(r["done_ns"] for r in records)
    assert samples[0]["t_ns"] <= last and samples[-1]["t_ns"] >= first  # same clock as the records
    assert json.loads((run_dir / "manifest.json").read_text())["telemetry"]["solo-tiny"] == {"host": "ok"}
    for key in ("mean_device_util_pct", "peak_memory_bytes", "achieved_bandwidth_bytes_s", "mbu_pct", "mfu_pct",
                "energy_j", "energy_per_token_j", "tokens_per_j"):
        assert key in solo
    assert solo["achieved_bandwidth_bytes_s"] > 0 and solo["peak_memory_bytes"] > 0
    assert solo["mbu_pct"] is None and "peak memory bandwidth" in solo["unmeasured"]["mbu_pct"]
    assert solo["energy_j"] is None and solo["unmeasured"]["energy_j"]
    # the host reference: at the start, before the second repetition, at the end (one worker: one thread)
    reference = list(read_jsonl(run_dir / "host_reference.jsonl"))
    assert [s["at"] for s in reference] == ["start", "repetition 2", "end"]
    assert reference[0]["facts"]["logical_cpus"] >= 1 and all(s["threads"] == 1 for s in reference)
    host = result.summary.host_reference
    assert host.samples == 3 and host.cpu_ms.count == 3 and host.cpu_ms.ci95_low is not None


def test_colocated_run_via_cli(tmp_path: Path, cli_env: dict):
    out = tmp_path / "coloc"
    proc = run_cli(["run", "-m", "tiny", "-m", "tiny", "--device", "cpu", "-p", "16", "-n", "8", "-r", "4",
                    "-b", "2", "--repetitions", "2", "-o", str(out)], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    head = json.loads(lines[-1])  # the last line of stdout is the headline
    assert len(lines[-1]) < 2000 and head["run_dir"] == str(out) and head["points"][0]["scaling"]["verdict"]
    assert head["points"][0]["instances"]["tiny-1"]["colocated"]["validity"] in ("VALID", "INVALID")
    summary = json.loads((out / "summary.json").read_text())["points"][0]
    assert "co-located mean ± std" in proc.stdout and "aggregate throughput scaling" in proc.stdout
    assert "co-located telemetry:" in proc.stdout and "GB/s (no peak figure)" in proc.stdout
    assert set(summary["phases"]) == {"solo", "colocated"}
    for phase, run_id in (("solo", "solo-{}"), ("colocated", "colocated")):
        for name in ("tiny-1", "tiny-2"):
            metrics = summary["phases"][phase][name]
            all_counted(metrics, 8, out / "runs" / run_id.format(name) / "records" / f"{name}.jsonl")
            assert phase == "colocated" or metrics["completed"] == 8  # alone, every request counts
            assert all(k in metrics for k in VLLM_KEYS)
    inter = summary["interference"]
    assert isinstance(inter["throughput_scaling"], float) and inter["throughput_scaling"] > 0
    assert set(inter["slowdown"]) == {"tiny-1", "tiny-2"}
    for key in ("ttft_p50", "ttft_p99", "tpot_p50", "tpot_p99", "e2el_p50", "e2el_p99"):
        assert inter["slowdown"]["tiny-1"][key] > 0
    checks = json.loads((out / "summary.json").read_text())["checks"]
    assert any(c["kind"] == "scaling" and c["subject"]["instance"] is None for c in checks)
    # every worker got an explicit thread count, recorded with the run
    run_state = json.loads((out / "runs" / "colocated" / "run.json").read_text())
    assert {w["info"]["torch_threads"] for w in run_state["workers"].values()} == {max(1, os.cpu_count() // 2)}
    assert len(run_state["repetition_start_ns"]) == 2

    again = run_cli(["report", str(out)], cli_env, tmp_path)
    assert again.returncode == 0 and "co-located mean ± std" in again.stdout
    rebuilt = json.loads(run_cli(["report", str(out), "--json"], cli_env, tmp_path).stdout)["points"][0]
    assert rebuilt["phases"] == summary["phases"] and rebuilt["interference"] == summary["interference"]


def test_fake_backend_colocated_pipeline(tmp_path: Path):
    spec = experiment_from_dict({
        "instances": [{"name": "a", "model": "fake", "backend": "fake", "fake": {"ttft_ms": 20, "tpot_ms": 5}},
                      {"name": "b", "model": "fake", "backend": "fake", "fake": {"ttft_ms": 20, "tpot_ms": 5}}],
        "workload": {"prompt_tokens": 4, "output_tokens": 5, "requests": 12}, "repetitions": 1}, "test")
    result = api.run_experiment(spec, out=tmp_path / "fake")
    for phase, run_id in (("solo", "solo-a"), ("colocated", "colocated")):
        a = result.summary.point().metrics(phase, "a")
        all_counted(a, 12, tmp_path / "fake" / "runs" / run_id / "records" / "a.jsonl")
        assert phase == "colocated" or a.completed == 12
        # sleeps are lower bounds: measured values are at least the configured ones
        assert a.median_ttft_ms >= 20 and a.median_tpot_ms >= 5


def test_bad_input_through_a_real_process(tmp_path: Path, cli_env: dict):
    """The bad-input contract of test_bad_input.py (every case there runs `main()` in-process) held
    by a real `colobench` process: exit status 2, one line on stderr, no traceback, nothing written."""
    (tmp_path / "unknown.yaml").write_text("instances:\n  - model: tiny\n    colour: red\n")
    out = tmp_path / "out"
    proc = run_cli(["run", "unknown.yaml", "-o", str(out)], cli_env, tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    message = proc.stderr.strip()
    assert len(message.splitlines()) == 1 and message.startswith("error: unknown.yaml")
    assert "instances[0].colour: unknown key" in message
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["unknown.yaml"]


def test_checkpoint_folder_and_per_instance_workloads(tmp_path: Path, cache_dir: Path):
    """A local HF checkpoint next to a preset, each with its own prompt length."""
    import shutil

    from colobench.models.presets import ensure_preset

    ckpt = tmp_path / "My-Checkpoint"
    shutil.copytree(ensure_preset("tiny", cache_dir), ckpt)
    spec = experiment_from_dict({
        "name": "mixed", "repetitions": 1, "solo_baselines": False, "cache_dir": str(cache_dir),
        "workload": {"output_tokens": 4, "requests": 3},
        "instances": [{"model": str(ckpt), "device": "cpu", "workload": {"prompt_tokens": 8}},
                      {"model": "tiny", "device": "cpu", "workload": {"prompt_tokens": 24, "batch_size": 3}}],
    }, "test")
    result = api.run_experiment(spec, out=tmp_path / "run")
    point = result.summary.point()
    assert set(point.phases) == {"colocated"}
    facts = point.instances
    assert facts["my-checkpoint"].model == str(ckpt) and facts["my-checkpoint"].preset is None
    records = tmp_path / "run" / "runs" / "colocated" / "records"
    a = [r for r in read_jsonl(records / "my-checkpoint.jsonl") if not r["warmup"] and not r["load_only"]]
    b = [r for r in read_jsonl(records / "tiny.jsonl") if not r["warmup"] and not r["load_only"]]
    assert {r["prompt_tokens"] for r in a} == {8} and {r["batch_size"] for r in a} == {1}
    assert {r["prompt_tokens"] for r in b} == {24} and {r["batch_size"] for r in b} == {3}
    assert all(r["output_tokens"] == 4 for r in a + b)


def _fake(name: str, **timings) -> dict:
    return {"name": name, "model": "fake", "backend": "fake", "fake": {"ttft_ms": 1, "tpot_ms": 1, **timings}}


def test_worker_failing_to_load_is_recorded_and_partner_runs(tmp_path: Path):
    spec = experiment_from_dict({"instances": [_fake("broken", fail_load=True), _fake("fine")],
                                 "workload": {"output_tokens": 3, "requests": 4}, "repetitions": 2}, "test")
    result = api.run_experiment(spec, out=tmp_path / "run")
    runs = result.summary.point().runs
    assert runs["colocated"].workers["broken"].status == "failed"
    assert runs["colocated"].workers["broken"].reason == "RuntimeError: simulated load failure"
    assert runs["colocated"].status == "partial"
    assert runs["solo-broken"].status == "failed"
    assert result.summary.point().metrics("colocated", "fine").completed == 8
    assert any("broken failed" in p for p in result.summary.problems)
    # one worker per instance for its whole group: its log starts in its first run's folder
    log = (tmp_path / "run" / "runs" / "solo-broken" / "logs" / "broken.log").read_text()
    assert "Traceback" in log and "simulated load failure" in log


def test_failed_batches_are_counted_not_timed(tmp_path: Path):
    spec = experiment_from_dict({"instances": [_fake("a", fail_batches=[1, 3])],
                                 "workload": {"output_tokens": 3, "requests": 6, "batch_size": 1},
                                 "repetitions": 1}, "test")
    result = api.run_experiment(spec, out=tmp_path / "run")
    a = result.summary.point().metrics("solo", "a")
    assert a.completed == 4 and a.failed == 2
    assert a.errors == {"RuntimeError: simulated out of memory": 2}
    assert a.distributions.ttft_ms.count == 4
    assert any(c.kind == "failures" and c.subject.instance == "a" for c in result.summary.checks)


def test_diagnose_command_on_a_cpu_run(tmp_path: Path, cli_env: dict):
    # what `-m tiny -m tiny -p 16 -n 8 -r 4 --repetitions 1` runs, on the fake backend: the diagnosis
    # is the subject, not the model
    exp = tmp_path / "pair.yaml"
    exp.write_text("repetitions: 1\nworkload: {prompt_tokens: 16, output_tokens: 8, requests: 4}\ninstances:\n"
                   + "".join(f"  - {{name: tiny-{k}, model: fake, backend: fake, device: cpu, "
                             "fake: {ttft_ms: 2, tpot_ms: 2}}\n" for k in (1, 2)))
    out = tmp_path / "run"
    proc = run_cli(["run", str(exp), "-o", str(out)], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "diagnosis:" in proc.stdout  # printed after every run
    diag = run_cli(["diagnose", str(out)], cli_env, tmp_path)
    assert diag.returncode == 0 and "validity" in diag.stdout and "tiny-1 (colocated)" in diag.stdout
    assert "VALID" in diag.stdout and "diagnosis:" in diag.stdout
    data = json.loads(run_cli(["diagnose", str(out), "--json"], cli_env, tmp_path).stdout)
    assert isinstance(data["findings"], list) and len(data["validity"]) == 4
    # 4 measured requests per phase: too few for any verdict but INVALID, and it says why
    assert {row["validity"]["verdict"] for row in data["validity"]} == {"INVALID"}
    # (among its reasons: a busy host may add one, e.g. contention, ahead of it)
    assert all(any("only 4 measured requests" in r for r in row["validity"]["reasons"]) for row in data["validity"])


def test_planted_interference_with_a_longer_partner(tmp_path: Path):
    """Two fake instances on one shared (fake) device, each twice as slow while the other is busy;
    the partner's workload is three times longer. Every measured co-located request of both ran
    with the other under load (the short one keeps its load on, unmeasured, until the long one is
    done), so both slowdowns are the planted 2x. Sleep-based: bounds are wide, the 2x is not."""
    device = tmp_path / "device"
    shared = {"ttft_ms": 10, "tpot_ms": 10, "contention": 2.0, "shared_device": str(device)}
    spec = experiment_from_dict({
        "instances": [{**_fake("short", **shared), "workload": {"requests": 6}},
                      {**_fake("long", **shared), "workload": {"requests": 18}}],
        "workload": {"output_tokens": 6, "batch_size": 1}, "repetitions": 3}, "test")
    summary = api.run_experiment(spec, out=tmp_path / "run").summary
    point = summary.point()
    for name in ("short", "long"):
        coloc = point.metrics("colocated", name)
        assert coloc.overlap_fraction > 0.9 and not coloc.partner_absent
        slowdown = point.interference.slowdown[name]
        assert 1.6 < slowdown.tpot_p50 < 2.4, (name, slowdown)
        low, high = slowdown.intervals["tpot_p50"]
        assert low > 1.3 and slowdown.beyond_noise["tpot_p50"]
    filler = [r for r in read_jsonl(tmp_path / "run" / "runs" / "colocated" / "records" / "short.jsonl")
              if r.get("load_only")]
    assert filler  # the short instance kept its load on while the long one finished
    assert point.interference.throughput_scaling < 1.3  # two instances at half speed: about 1x together
    assert not list(device.iterdir())  # every busy mark cleared
