"""Endpoints end to end through the CLI: the fake server in its own process, and two real
`transformers serve` processes on a tiny local checkpoint. No timing is asserted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from colobench.records import read_jsonl

from conftest import free_port, run_cli, written

pytestmark = pytest.mark.slow


def _wait_for(url: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early: {proc.stdout.read() if proc.stdout else ''}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers (transformers serve's /v1/models may answer 500)
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {timeout_s} s")


@pytest.fixture
def server_process():
    procs = []

    def start(args: list[str], probe_path: str, env: dict | None = None) -> str:
        port = free_port()
        proc = subprocess.Popen([*args, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True, env=env)
        procs.append(proc)
        _wait_for(f"http://127.0.0.1:{port}{probe_path}", proc)
        return f"http://127.0.0.1:{port}/v1"

    yield start
    for proc in procs:  # only the processes this test started (a server that exited is gone already)
        if proc.poll() is not None:
            continue
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def fake(start, *flags: str, env: dict | None = None) -> str:
    """A `colobench fake-server` (conftest's `fake_server`: handed over once its banner says it listens)."""
    return start("--ttft-ms", "5", "--itl-ms", "1", *flags, env=env)[0]


def test_two_fake_endpoints_co_located_with_faults(tmp_path: Path, cli_env: dict, fake_server):
    a = fake(fake_server, "--error-rate", "0.2", "--faults", "http_500,cut,malformed", "--seed", "1")
    b = fake(fake_server, "--tokens-per-chunk", "4", "--no-done", "--usage", "always", "--keepalive")
    out = tmp_path / "run"
    proc = run_cli(["run", "-e", a, "-e", b, "-m", "fake-model", "-c", "4", "-n", "16", "-r", "30",
                    "--repetitions", "2", "--scrape-metrics", "-o", str(out)], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = written(out)
    faulty, clean = summary["phases"]["colocated"]["fake-model-1"], summary["phases"]["colocated"]["fake-model-2"]
    # Every request is in the records; the phase counts those inside the window where both were under
    # load, and the two client processes leave the barrier a few milliseconds apart (more on a busy
    # host), so a request sent in that gap can fall outside: the counts add up with `outside_overlap`.
    faulty_rows = [r for r in read_jsonl(out / "runs" / "colocated" / "records" / "fake-model-1.jsonl")
                   if not r["warmup"] and not r.get("load_only")]
    assert len(faulty_rows) == 60 and any(not r["ok"] for r in faulty_rows)
    assert faulty["failed"] > 0 and faulty["completed"] + faulty["failed"] + faulty["outside_overlap"] == 60
    assert 0 < faulty["error_rate"] < 0.6 and faulty["distributions"]["ttft_ms"]["count"] == faulty["completed"]
    assert any(c["verdict"] == "failed_requests" for c in summary["checks"])
    clean_rows = [r for r in read_jsonl(out / "runs" / "colocated" / "records" / "fake-model-2.jsonl")
                  if not r["warmup"] and not r.get("load_only")]
    assert len(clean_rows) == 60 and all(r["ok"] for r in clean_rows)  # the clean endpoint: all 60 completed
    assert clean["failed"] == 0 and clean["completed"] + clean["outside_overlap"] == 60 and clean["completed"] > 0
    assert clean["token_count_source"] == {"usage": clean["completed"]}
    assert clean["output_length_mismatch"] == 0 and clean["total_output_tokens"] == clean["completed"] * 16
    assert clean["client"]["cpu_util_max"] is not None and clean["client"]["loop_lag_p99_ms"] is not None
    assert clean["server_metrics"]["fake_generation_tokens_total"] >= 60 * 16
    assert (out / "runs" / "colocated" / "metrics" / "fake-model-1.r1.before.prom").is_file()  # every window
    records = [r for r in read_jsonl(out / "runs" / "colocated" / "records" / "fake-model-2.jsonl") if not r["warmup"]]
    assert all(len(r["token_ns"]) == 4 for r in records)  # 16 tokens in chunks of 4: four content chunks
    assert "client:" in proc.stdout


def test_open_loop_over_two_client_processes(tmp_path: Path, cli_env: dict, fake_server):
    url = fake(fake_server)
    out = tmp_path / "run"
    proc = run_cli(["run", "-e", url, "-m", "fake-model", "--rate", "50", "-r", "40", "-n", "4",
                    "--repetitions", "1", "--client-processes", "2", "-o", str(out)], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    metrics = written(out)["phases"]["solo"]["fake-model"]
    assert metrics["completed"] == 40 and metrics["client"]["processes"] == 2
    parts = sorted(p.name for p in (out / "runs" / "solo-fake-model" / "records").iterdir())
    assert parts == ["fake-model.0.jsonl", "fake-model.1.jsonl"]
    ids = sorted(r["request_id"] for p in parts for r in read_jsonl(out / "runs" / "solo-fake-model" / "records" / p)
                 if not r["warmup"])
    assert ids == list(range(40))  # the two processes split one schedule, nothing twice
    assert metrics["open_loop"]["achieved_rate"] > 0 and metrics["open_loop"]["requested_rate"] == 50


def _prefix_cache(url: str) -> tuple[float, float]:
    """The fake server's vLLM-shaped prefix-cache counters: (queries, hits), in tokens."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(url.removesuffix("/v1") + "/metrics", timeout=10).read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:  # per served model: summed
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values["vllm:prefix_cache_queries_total"], values["vllm:prefix_cache_hits_total"]


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_exact_prompts_and_no_accidental_prefix_cache_hits(tmp_path: Path, cli_env: dict, fake_server, api):
    """Against a server with a prefix cache and a tokenizer of two tokens a word: every prompt is
    the length asked for (the server's usage), the run says its prompts are exact, and a default
    run (repetitions and phases included) leaves the cache nothing to find; a shared prefix asked
    for is hit at about its share."""
    url = fake(fake_server)
    out = tmp_path / "run"
    base = ["run", "-e", url, "-e", url, "-m", "fake-model", "--api", api, "-c", "2", "-n", "4", "-r", "12",
            "-p", "64", "--repetitions", "2", "--scrape-metrics"]
    proc = run_cli([*base, "-o", str(out)], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    queries, hits = _prefix_cache(url)
    assert queries > 0 and hits / queries < 0.01
    rows = [r for p in (out / "runs").glob("*/records/*.jsonl") for r in read_jsonl(p) if not r["warmup"]]
    assert rows and {r["prompt_tokens"] for r in rows} == {64}
    runs = json.loads((out / "runs" / "colocated" / "run.json").read_text())
    assert all(w["info"]["exact_prompts"] for w in runs["workers"].values())
    summary = written(out)
    assert not any(c["kind"] == "prompt_length_mismatch" for c in summary["checks"])
    for name in ("fake-model-1", "fake-model-2"):  # the server's own counters, per phase
        assert summary["phases"]["solo"][name]["server"]["prefix_cache_hit_pct"] < 1

    shared = tmp_path / "shared"
    proc = run_cli([*base, "--shared-prefix", "32:0.5", "-o", str(shared)], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    queries2, hits2 = _prefix_cache(url)
    # half the prompts start with 32 shared tokens of 64: about a quarter of the prompt tokens hit
    # (on chat too: the prefix makes up for the template's closing tokens)
    share = (hits2 - hits) / (queries2 - queries)
    assert 0.15 < share < 0.35, share


def test_api_key_is_used_and_never_written(tmp_path: Path, cli_env: dict, fake_server):
    env = {**cli_env, "SERVER_KEY": "sk-very-secret-42", "CLIENT_KEY": "sk-very-secret-42"}
    url = fake(fake_server, "--api-key-env", "SERVER_KEY", env=env)
    exp = tmp_path / "e.yaml"
    exp.write_text(f"""
name: keyed
repetitions: 1
workload: {{requests: 5, output_tokens: 3, concurrency: 2}}
instances:
  - {{model: fake-model, backend: openai, base_url: "{url}", api_key_env: CLIENT_KEY,
     headers: {{X-Api-Key: hidden-header-value, X-Trace: visible}}}}
""")
    out = tmp_path / "run"
    proc = run_cli(["run", str(exp), "-o", str(out)], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert written(out)["phases"]["solo"]["fake-model"]["completed"] == 5
    for path in out.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert "sk-very-secret-42" not in text and "hidden-header-value" not in text, path
    assert "visible" in (out / "manifest.json").read_text()
    wrong = run_cli(["run", str(exp), "-o", str(tmp_path / "run2")], {**env, "CLIENT_KEY": "wrong"}, tmp_path)
    assert wrong.returncode == 2 and "refused the credentials" in wrong.stderr


def test_endpoint_errors_before_running(tmp_path: Path, cli_env: dict, fake_server, monkeypatch, capsys):
    """Against a live server, a model it does not serve, through a real `colobench` process, and a
    bad --api through `main()` in-process (test_bad_input.py holds the rest of the one bad-input
    table, the unreachable endpoint among it): exit 2, one line, no traceback, nothing written."""
    from conftest import invoke

    url = fake(fake_server)
    proc = run_cli(["run", "-e", url, "-m", "other-model", "-c", "2"], cli_env, tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "not served at" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "colobench-runs").exists()
    monkeypatch.chdir(tmp_path)
    code, out, err = invoke(["run", "-e", url, "-m", "fake-model", "--api", "rest", "-c", "2"], monkeypatch, capsys)
    assert code == 2 and "Traceback" not in err + out and "--api" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "colobench-runs").exists()


def test_two_transformers_serve_endpoints(tmp_path: Path, cli_env: dict, server_process, tokenizer_checkpoint: Path):
    """A real OpenAI-compatible server we did not write: no [DONE], usage in the last chunk,
    several tokens per chunk, 422 for unknown fields, /v1/models answering 500."""
    serve = [sys.executable, "-c", "from transformers.cli.transformers import main; main()", "serve",
             str(tokenizer_checkpoint), "--device", "cpu"]
    env = {**cli_env, "HF_HUB_OFFLINE": "1"}
    a = server_process(serve, "/health", env)
    b = server_process(serve, "/health", env)
    model = str(tokenizer_checkpoint)
    exp = tmp_path / "serve.yaml"
    common = ('backend: openai, api: chat, exact_output_fields: [], '
              'extra_body: {generation_config: \'{"min_new_tokens": $output_tokens, "max_new_tokens": $output_tokens}\'}')
    exp.write_text(f"""
name: tserve
repetitions: 1
workload: {{requests: 4, output_tokens: 6, concurrency: 2, prompts: {{builtin: [en_qa, code]}}}}
instances:
  - {{name: a, model: "{model}", base_url: "{a}", {common}}}
  - {{name: b, model: "{model}", base_url: "{b}", {common}}}
""")
    out = tmp_path / "run"
    proc = run_cli(["run", str(exp), "-o", str(out)], env, tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr + proc.stdout[-2000:]
    summary = written(out)
    for phase, run_id in (("solo", "solo-{}"), ("colocated", "colocated")):
        for name in ("a", "b"):
            rows = [r for r in read_jsonl(out / "runs" / run_id.format(name) / "records" / f"{name}.jsonl")
                    if not r["warmup"] and not r.get("load_only")]
            assert len(rows) == 4 and all(r["ok"] for r in rows)  # every request completed
            m = summary["phases"][phase][name]  # co-located: those inside the overlap (see above)
            assert m["completed"] + m["outside_overlap"] == 4 and m["completed"] > 0 and m["failed"] == 0
            assert m["token_count_source"] == {"usage": m["completed"]} and m["output_length_mismatch"] == 0
            assert m["mean_ttft_ms"] > 0 and m["mean_tpot_ms"] > 0
    assert summary["interference"]["throughput_scaling"] > 0
    head = json.loads(proc.stdout.strip().splitlines()[-1])
    assert head["points"][0]["instances"]["a"]["solo"]["validity"] in ("VALID", "INVALID")
