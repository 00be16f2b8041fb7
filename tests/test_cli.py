"""The command line a person expects: help in panels with readable metavars, vLLM's flag names,
a compact last line, plain progress lines when stderr is not a terminal, and Ray that behaves
like `ray.init()` when no address is given."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest

from colobench.cli import progress as cli_progress
from colobench.analysis.model import Check, Point, Subject, Summary
from colobench.launch import ray_launcher
from colobench.report.headline import MAX_BYTES, headline
from colobench.specs import LaunchSpec

from conftest import flag_spec, run_cli


def test_run_help_is_grouped_and_readable(tmp_path: Path, cli_env: dict):
    proc = run_cli(["run", "--help"], {**cli_env, "COLUMNS": "200"}, tmp_path)
    assert proc.returncode == 0
    text = proc.stdout
    for panel in ("Model and device", "Workload", "Load", "Endpoints", "Variants", "Output", "Launch"):
        assert f"─ {panel} " in text, panel
    assert text.index("Model and device") < text.index("Workload") < text.index("Load") < text.index("Launch")
    for flag in ("--request-rate", "--max-concurrency", "--num-prompts", "--npu-jit-compile", "--attn-implementation"):
        assert flag in text
    assert "list[str]" not in text and "<text>" not in text.lower() and "eager|compiled" in text


def test_vllm_flag_names_are_aliases():
    spec, _ = flag_spec(["tiny"], {"--request-rate": "4", "--max-concurrency": "8", "--num-prompts": "32"})
    wl = spec.workload
    assert (wl.rate, wl.concurrency, wl.requests) == (4.0, 8, 32)


def test_headline_stays_small_for_a_large_sweep():
    points = [Point(id=f"exp-b{k}-p{k * 64}") for k in range(200)]
    checks = [Check(kind="scaling", subject=Subject(point=p.id), verdict="ok", level="ok", value=1.9, threshold=1.5,
                    sentence="fine") for p in points]
    summary = Summary(experiment="exp", points=points, checks=checks, sweep_axes=["batch_size", "prompt_tokens"])
    head = headline(summary)
    text = json.dumps(head, separators=(",", ":"))
    assert len(text) <= MAX_BYTES and head["points_not_shown"] == 200 - len(head["points"]) > 0
    assert head["points"][0] == {"id": "exp-b0-p0", "scaling": {"value": 1.9, "verdict": "ok"}, "valid": "0/0"}


def test_plain_progress_speaks_at_least_every_interval(monkeypatch):
    monkeypatch.setattr(cli_progress, "PLAIN_PROGRESS_EVERY_S", 0.05)
    out = io.StringIO()
    with cli_progress.PlainProgress(out) as progress:
        progress.phase("building preset tiny")
        progress.run_started("solo-a", 40)
        progress.requests_done("solo-a", "a", 12)
        time.sleep(0.3)  # nothing happens: the progress line still comes
        progress.run_finished("solo-a", {"status": "completed"})
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("building preset tiny") and lines[1].endswith("solo-a: started")
    assert sum("solo-a: 12/40 requests" in line for line in lines) >= 2
    assert lines[-1].endswith("solo-a: completed (12 requests)")


def test_run_through_a_pipe_prints_plain_progress_and_the_headline(tmp_path: Path, cli_env: dict):
    exp = tmp_path / "e.yaml"
    exp.write_text("name: piped\nrepetitions: 1\nworkload: {requests: 3, output_tokens: 2}\n"
                   "instances: [{name: a, model: fake, backend: fake, fake: {ttft_ms: 1, tpot_ms: 1}}]\n")
    proc = run_cli(["run", str(exp), "-o", str(tmp_path / "run")], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "[colobench" in proc.stderr and "solo-a: started" in proc.stderr and "\x1b[" not in proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    head = json.loads(last)
    assert len(last) < 2000 and head["experiment"] == "piped" and head["points"][0]["instances"]["a"]["solo"]
    whole = run_cli(["run", str(exp), "-o", str(tmp_path / "run2"), "--json"], cli_env, tmp_path)
    assert json.loads(whole.stdout.strip().splitlines()[-1])["schema"] == "colobench.summary/2"


def test_ray_without_an_address_joins_a_cluster_or_starts_one(monkeypatch):
    assert LaunchSpec(kind="ray").address is None  # no address: what ray.init() would do

    class FakeRay:
        pass

    services = pytest.importorskip("ray._private.services")

    monkeypatch.setattr(services, "canonicalize_bootstrap_address", lambda addr, temp_dir=None: None)
    assert ray_launcher.running_cluster(FakeRay()) == "local"  # nothing recorded: a private one
    monkeypatch.setattr(services, "canonicalize_bootstrap_address", lambda addr, temp_dir=None: "127.0.0.1:1")
    assert ray_launcher.running_cluster(FakeRay()) == "local"  # recorded, but gone: a private one
    with __import__("socket").socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        alive = f"127.0.0.1:{listener.getsockname()[1]}"
        monkeypatch.setattr(services, "canonicalize_bootstrap_address", lambda addr, temp_dir=None: alive)
        assert ray_launcher.running_cluster(FakeRay()) == alive  # a running cluster: joined


@pytest.mark.parametrize("flags, fragment", [
    ({"--api": "chat"}, "--api: applies to openai instances (--endpoint)"),
    ({"--npu-jit-compile": "maybe"}, "--npu-jit-compile: 'maybe' is not true or false"),
    ({"--cpu-affinity": "0-x"}, "--cpu-affinity: '0-x' is not auto, none, a core or a range"),
    ({"--name": "a,b"}, "--name: takes one value, not a list"),
])
def test_flag_errors_name_the_flag(flags, fragment):
    from colobench.errors import SpecError

    with pytest.raises(SpecError) as info:
        flag_spec(["tiny"], flags)
    assert fragment in str(info.value)
