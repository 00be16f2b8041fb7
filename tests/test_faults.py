"""Faults a long run meets, each planted for real: Ctrl-C, SIGTERM and SIGHUP mid-run, kill -9 of
colobench itself, kill -9 of a worker and then --resume, a server killed mid-run, a full disk,
malformed usage in the middle of a run, a server that echoes the API key. Nothing measured is lost,
nothing secret is written, and the run says what happened. No timing is asserted.

The lifecycle is the same whatever the model, so the workers here run the fake backend (known
timings, no torch to import): a run that is stopped mid-way is given far more requests than it can
finish, and one that must still be running when something is killed, requests enough for seconds
after that."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from colobench.records import read_jsonl

from conftest import pair_experiment, run_cli, start_cli, wait_for_records

pytestmark = pytest.mark.slow

# a request of the pair below takes 5 ms to its first token and 5 ms per token after it (8 tokens)
FAKE_PAIR = [f"{{name: {name}, model: fake, backend: fake, fake: {{ttft_ms: 5, tpot_ms: 5}}}}" for name in ("a", "b")]
ENDLESS = 20_000  # requests a stopped run is given: it never gets near the end


@pytest.fixture
def stopped_at_the_end():
    """`colobench` processes a test started in the background: killed if the test leaves one running."""
    procs: list[subprocess.Popen] = []
    yield procs.append
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)


def _worker_pids(run_dir: Path) -> list[int]:
    pids = []
    for state_file in run_dir.glob("runs/*/run.json"):
        state = json.loads(state_file.read_text())
        pids += [w["pid"] for w in state["workers"].values() if isinstance(w.get("pid"), int)]
    return sorted(set(pids))


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pids: list[int], timeout_s: float = 60.0) -> bool:
    """Whether every one of `pids` is gone within `timeout_s` (a bound for a busy host, not a measure)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(_gone(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def _measured(path: Path) -> int:
    return sum(1 for r in read_jsonl(path) if not r["warmup"] and not r.get("load_only"))


@pytest.mark.parametrize("sig, code, reason", [
    (signal.SIGINT, 130, "interrupted by user (Ctrl-C)"),
    (signal.SIGTERM, 143, "stopped by SIGTERM"),
    (signal.SIGHUP, 129, "stopped by SIGHUP"),
], ids=["ctrl-c", "sigterm", "sighup"])
def test_a_signal_stops_the_run_and_keeps_what_was_measured(sig, code, reason, tmp_path: Path, cli_env: dict,
                                                            cache_dir: Path, stopped_at_the_end):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it: colobench and its workers),
    what `timeout` sends (SIGTERM) and a closed terminal (SIGHUP), to colobench alone: workers stopped,
    what completed summarised and reported, the last line printed, exit 128 + signal; a second signal
    does not cut that short."""
    exp = pair_experiment(tmp_path / "exp.yaml", cache_dir, FAKE_PAIR, requests=ENDLESS)
    out = tmp_path / "run"
    proc = start_cli(["run", str(exp), "-o", str(out)], cli_env, tmp_path, new_session=True)
    stopped_at_the_end(proc)
    wait_for_records(proc, out / "runs" / "colocated" / "records" / "a.jsonl", 5)
    pids = _worker_pids(out)
    send = (lambda: os.killpg(proc.pid, sig)) if sig == signal.SIGINT else (lambda: proc.send_signal(sig))
    send()
    time.sleep(0.2)
    send()  # impatient: the second one is only noted
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and f"stopped by {sig.name}" in stderr
    last = json.loads(stdout.strip().splitlines()[-1])  # the last line is there: the headline
    assert last["run_dir"] == str(out)
    head = last["points"][0]["instances"]["a"]["colocated"]
    assert head["validity"] in ("VALID", "INVALID") and head["output_throughput"] > 0
    assert (out / "summary.json").is_file() and (out / "report.html").is_file()
    state = json.loads((out / "runs" / "colocated" / "run.json").read_text())
    assert state["status"] == "interrupted" and state["stop_reason"] == reason
    assert _wait_gone(pids), "workers outlived the run"
    measured = _measured(out / "runs" / "colocated" / "records" / "a.jsonl")
    assert 5 <= measured < ENDLESS
    a = json.loads((out / "summary.json").read_text())["points"][0]["phases"]["colocated"]["a"]
    assert a["completed"] >= 1 and a["completed"] + a["outside_overlap"] == measured  # every record summarised
    assert not list(out.rglob("*.tmp"))


def test_kill_9_of_colobench_stops_its_workers_and_the_run_says_abandoned(tmp_path: Path, cli_env: dict,
                                                                          cache_dir: Path, stopped_at_the_end):
    exp = pair_experiment(tmp_path / "exp.yaml", cache_dir, FAKE_PAIR, requests=ENDLESS)
    out = tmp_path / "run"
    proc = start_cli(["run", str(exp), "-o", str(out)], cli_env, tmp_path)
    stopped_at_the_end(proc)
    records = out / "runs" / "colocated" / "records" / "a.jsonl"
    wait_for_records(proc, records, 5)
    pids = _worker_pids(out)
    proc.kill()
    proc.communicate(timeout=30)
    assert _wait_gone(pids), "workers kept running after their parent was killed"
    kept = _measured(records)
    time.sleep(1.0)
    assert _measured(records) == kept  # nobody is appending any more
    report = run_cli(["report", str(out)], cli_env, tmp_path)
    assert report.returncode == 0, report.stderr
    assert "colocated: abandoned: the colobench process" in report.stdout
    state = json.loads((out / "runs" / "colocated" / "run.json").read_text())
    assert state["status"] == "abandoned"  # never "running" for a process that is gone


def test_a_killed_worker_keeps_its_partner_and_resume_keeps_every_record(tmp_path: Path, cli_env: dict,
                                                                         cache_dir: Path, stopped_at_the_end):
    """kill -9 of one worker mid-run: its partner runs to the end (every record kept, only the
    overlap counted), the run says who died and how and exits 1. `--resume` then redoes the run:
    the first attempt's records stay byte for byte, kept and not counted, and the new attempt is
    whole. (80 requests of 40 ms: the partner is still running seconds after the kill.)"""
    requests = 80
    exp = pair_experiment(tmp_path / "kill.yaml", cache_dir, [FAKE_PAIR[0].replace("name: a", "name: victim"),
                                                             FAKE_PAIR[1].replace("name: b", "name: partner")],
                          requests=requests)
    out = tmp_path / "run"
    proc = start_cli(["run", str(exp), "-o", str(out)], cli_env, tmp_path)
    stopped_at_the_end(proc)
    victim_records = out / "runs" / "colocated" / "records" / "victim.jsonl"
    wait_for_records(proc, victim_records, 6)
    pid = json.loads((out / "runs" / "colocated" / "run.json").read_text())["workers"]["victim"]["pid"]
    os.kill(pid, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 1, stderr  # ran, but a worker died
    whole = json.loads((out / "summary.json").read_text())
    summary = {**whole["points"][0], "problems": whole["problems"]}
    assert json.loads(stdout.strip().splitlines()[-1])["problems"] == len(whole["problems"]) >= 1
    victim = summary["runs"]["colocated"]["workers"]["victim"]
    assert victim["status"] == "died" and "SIGKILL" in victim["reason"]
    assert summary["runs"]["colocated"]["workers"]["partner"]["status"] == "completed"
    partner = summary["phases"]["colocated"]["partner"]  # every record kept; the overlap counts
    assert _measured(victim_records.with_name("partner.jsonl")) == requests
    assert partner["completed"] + partner["outside_overlap"] == requests and partner["outside_overlap"] > 0
    kept = _measured(victim_records)
    assert 6 <= kept < requests
    victim = summary["phases"]["colocated"]["victim"]
    assert victim["completed"] + victim["outside_overlap"] == kept
    assert any("victim died" in p for p in summary["problems"])

    before = {f.name: f.read_bytes() for f in (out / "runs" / "colocated" / "records").glob("*.jsonl")}
    assert sum(len(b.splitlines()) for b in before.values()) > 0
    resumed = run_cli(["run", str(exp), "-o", str(out), "--resume"], cli_env, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    attempt = out / "runs" / "colocated" / "attempts" / "1" / "records"
    assert {f.name: f.read_bytes() for f in attempt.glob("*.jsonl")} == before  # every byte kept
    assert "attempts/1 (kept, not counted)" in resumed.stderr
    assert "an earlier unfinished attempt" in resumed.stdout
    summary = json.loads((out / "summary.json").read_text())
    (attempt_entry,) = summary["points"][0]["runs"]["colocated"]["attempts"]
    assert attempt_entry["folder"] == "runs/colocated/attempts/1" and attempt_entry["records"] > 0
    assert summary["points"][0]["phases"]["colocated"]["victim"]["completed"] \
        + summary["points"][0]["phases"]["colocated"]["victim"]["outside_overlap"] == requests  # the new attempt alone


def test_a_server_killed_mid_run_stops_its_instance(tmp_path: Path, cli_env: dict, fake_server):
    url, server = fake_server("--ttft-ms", "5", "--itl-ms", "2")
    out = tmp_path / "run"
    proc = start_cli(["run", "-e", url, "-m", "fake-model", "-c", "8", "-n", "16", "--duration", "60",
                      "--repetitions", "1", "-o", str(out)], cli_env, tmp_path)
    records = out / "runs" / "solo-fake-model" / "records" / "fake-model.jsonl"
    wait_for_records(proc, records, 50)
    server.kill()
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    rows = list(read_jsonl(records))
    failed = [r for r in rows if not r["ok"]]
    assert failed and len(failed) <= 200  # a bounded count, not a storm of refused requests
    assert sum(1 + r.get("also_failed", 0) for r in failed) < 5000
    summary = json.loads((out / "summary.json").read_text())
    assert any("endpoint_down" in p for p in summary["problems"]), summary["problems"]
    (finding,) = [f for f in summary["findings"] if f["kind"] == "endpoint_down"]
    assert "server went away at" in finding["title"] and finding["evidence"]["last_success_s"] is not None
    assert not [c for c in summary["checks"] if c["kind"] == "client_bound"]
    assert "Traceback" not in stderr


def _file_size_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.parametrize("how", ["tmpfs", "file size limit"])
def test_a_full_disk_stops_the_run_and_keeps_what_was_flushed(how: str, tmp_path: Path, cli_env: dict,
                                                              cache_dir: Path):
    exp = pair_experiment(tmp_path / "exp.yaml", cache_dir, [i.replace("ttft_ms: 5, tpot_ms: 5", "ttft_ms: 1, tpot_ms: 1")
                                                             for i in FAKE_PAIR], requests=400)
    disk = tmp_path / "disk"
    disk.mkdir()
    extra = {}
    if how == "tmpfs":
        if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(disk)],
                                               capture_output=True).returncode != 0:
            pytest.skip("mounting a small tmpfs needs root (the file-size-limit case covers the rest)")
    else:
        extra = {"preexec_fn": _file_size_limit(96 * 1024)}
    try:
        out = disk / "run"
        proc = subprocess.run([sys.executable, "-m", "colobench", "run", str(exp), "-o", str(out)], env=cli_env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=300, **extra)
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
        headline = json.loads(proc.stdout.strip().splitlines()[-1])  # the summary, printed even if not written
        assert headline["problems"] >= 1
        assert "disk full" in proc.stdout
        kept = _measured(out / "runs" / "colocated" / "records" / "a.jsonl")
        assert kept > 0  # what was flushed is there
        assert not list(out.rglob("*.tmp"))
        # run.json could not be rewritten on the full disk; once the run is over, it is not "running"
        report = run_cli(["report", str(out), "--json"], cli_env, tmp_path)
        status = json.loads(report.stdout)["points"][0]["runs"]["colocated"]["status"]
        assert report.returncode == 0 and status in ("disk_full", "abandoned", "interrupted", "partial"), status
    finally:
        if how == "tmpfs":
            subprocess.run(["umount", str(disk)], capture_output=True)


def test_malformed_usage_mid_run_fails_requests_not_the_worker(tmp_path: Path, cli_env: dict, fake_server):
    # seed 2: the faults start after the warm-up has had good answers (a warm-up that fails every
    # request stops the worker, by design: with 30% faults four in a row is a 1% chance a seed finds)
    url, _ = fake_server("--ttft-ms", "1", "--itl-ms", "0", "--error-rate", "0.3", "--seed", "2",
                         "--faults", "bad_usage,negative_usage,huge_usage")
    out = tmp_path / "run"
    proc = run_cli(["run", "-e", url, "-m", "fake-model", "-c", "4", "-n", "8", "-r", "60", "--repetitions", "1",
                    "-o", str(out)], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    worker = summary["points"][0]["runs"]["solo-fake-model"]["workers"]["fake-model"]
    assert worker["status"] == "completed"  # the instance lived through every bad response
    phase = summary["points"][0]["phases"]["solo"]["fake-model"]
    errors = " | ".join(phase["errors"])
    assert phase["completed"] + phase["failed"] == 60 and phase["failed"] > 0
    assert "malformed usage: completion_tokens 'abc'" in errors or "usage reports -5" in errors
    assert phase["output_throughput"] < 1e6  # no 10^12 tokens counted
    assert phase["mean_output_tokens"] == 8


def _everything_written(proc: subprocess.CompletedProcess, out: Path) -> dict[str, str]:
    """stdout, stderr and every file of the run directory, by name; a report's embedded plotly.js
    left out (the library's own code holds digit runs such as 12345678, never scrubbed)."""
    from plotly.offline import get_plotlyjs

    texts = {"stdout": proc.stdout, "stderr": proc.stderr}
    for path in out.rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_text(errors="replace").replace(get_plotlyjs(), "")
    return texts


def test_a_server_echoing_the_key_leaks_it_nowhere(tmp_path: Path, cli_env: dict, fake_server):
    key, credential, signature, password = "sk-colobench-TOPSECRET-1234", "credential-VALUE-5678", \
        "sig-VALUE-9012", "pw-VALUE-3456"
    env = {**cli_env, "TEST_API_KEY": key}
    url, _ = fake_server("--ttft-ms", "1", "--itl-ms", "0", "--api-key-env", "TEST_API_KEY", "--echo-headers",
                         "--error-rate", "0.3", "--faults", "http_500", "--seed", "3", env=env)
    exp = tmp_path / "exp.yaml"
    exp.write_text(f"""
repetitions: 1
telemetry: {{idle_s: 0}}
workload: {{output_tokens: 4, requests: 30, concurrency: 2}}
instances:
  - name: ep
    backend: openai
    model: fake-model
    base_url: {url}
    api_key_env: TEST_API_KEY
    headers: {{X-Credential: {credential}, X-Api-Sig: {signature}, X-Trace: visible-value}}
""")
    out = tmp_path / "run"
    proc = run_cli(["run", str(exp), "-o", str(out)], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [r for r in read_jsonl(out / "runs" / "solo-ep" / "records" / "ep.jsonl") if not r["ok"]]
    assert rows and all("***" in r["error"] for r in rows)  # the echo was there, scrubbed
    texts = _everything_written(proc, out)
    for secret in (key, credential, signature):
        assert not [name for name, t in texts.items() if secret in t], secret
    assert "visible-value" in (out / "manifest.json").read_text()  # an ordinary header stays readable
    wrong = run_cli(["run", "-e", f"http://user:{password}@127.0.0.1:1/v1", "-m", "fake-model", "-o",
                     str(tmp_path / "x")], env, tmp_path)
    assert wrong.returncode == 2 and password not in wrong.stdout + wrong.stderr


def test_a_second_writer_of_a_run_directory_is_refused(tmp_path: Path, cli_env: dict, cache_dir: Path,
                                                      stopped_at_the_end):
    """Two `colobench run --resume` on one folder at once both wrote (42 record lines for 21
    measured): the second is refused with the first's pid, exit 2, and writes nothing."""
    exp = pair_experiment(tmp_path / "exp.yaml", cache_dir, FAKE_PAIR, requests=ENDLESS)
    out = tmp_path / "run"
    proc = start_cli(["run", str(exp), "-o", str(out)], cli_env, tmp_path, new_session=True)
    stopped_at_the_end(proc)
    records = out / "runs" / "colocated" / "records" / "a.jsonl"
    wait_for_records(proc, records, 3)
    second = run_cli(["run", str(exp), "-o", str(out), "--resume"], cli_env, tmp_path)
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert second.returncode == 2 and len(lines) == 1, second.stderr
    assert f"another colobench (pid {proc.pid}) is writing this folder" in lines[0]
    assert not (out / "runs" / "colocated" / "attempts").exists()  # nothing moved aside by the second one
    os.killpg(proc.pid, signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130 and not (out / ".colobench.lock").exists()


SH_KEY, ENV_TOKEN, NUMERIC_KEY = "sk-shellstring-SECRET-42", "hf_envflag-SECRET-43", "97531864"


def test_secrets_from_shell_strings_env_flags_and_numbers_reach_no_file(tmp_path: Path, cli_env: dict):
    """A key inside a managed server's `sh -c` string, a worker's `--env HF_TOKEN=...` and a numeric
    key in a server's env: in no file, stdout or stderr, in any encoding."""
    exp = tmp_path / "exp.yaml"
    exp.write_text(f"""
repetitions: 1
telemetry: {{idle_s: 0}}
workload: {{output_tokens: 4, requests: 6, concurrency: 2}}
servers:
  - name: s
    command: [sh, -c, "exec {sys.executable} -m colobench fake-server --port {{port}} --ttft-ms 1 --itl-ms 0 # --api-key {SH_KEY}"]
    env: {{NUMERIC_API_KEY: {NUMERIC_KEY}}}
instances:
  - {{name: ep, backend: openai, server: s, model: fake-model}}
""")
    out = tmp_path / "run"
    proc = run_cli(["run", str(exp), "-o", str(out), "--env", f"HF_TOKEN={ENV_TOKEN}"], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    texts = _everything_written(proc, out)
    for secret in (SH_KEY, ENV_TOKEN, NUMERIC_KEY):
        forms = {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1]}
        assert not [name for name, text in texts.items() for form in forms if form in text], secret
    assert "***" in (out / "manifest.json").read_text()


def test_text_from_a_server_cannot_drive_the_terminal(tmp_path: Path, cli_env: dict, fake_server):
    """A served model name with ANSI escapes, quoted in an error: printed as `\\x1b`, not sent."""
    url, _ = fake_server("--models", "\x1b]2;owned\x07\x1b[31mevil")
    proc = run_cli(["run", "-e", url, "-m", "fake-model"], cli_env, tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "\x1b" not in proc.stderr + proc.stdout and "\\x1b]2;owned\\x07\\x1b[31mevil" in lines[0]


def test_sighup_to_the_whole_group_of_an_endpoint_run(tmp_path: Path, cli_env: dict, fake_server, stopped_at_the_end):
    """A closed terminal sends SIGHUP to colobench, its workers and multiprocessing's resource
    tracker at once: the run stops in order (129, no KeyError traceback from the tracker)."""
    url, _ = fake_server("--ttft-ms", "5", "--itl-ms", "2")
    out = tmp_path / "run"
    proc = start_cli(["run", "-e", url, "-m", "fake-model", "-c", "4", "-n", "16", "--duration", "120",
                      "--repetitions", "1", "-o", str(out)], cli_env, tmp_path, new_session=True)
    stopped_at_the_end(proc)
    wait_for_records(proc, out / "runs" / "solo-fake-model" / "records" / "fake-model.jsonl", 10)
    pids = _worker_pids(out)
    os.killpg(proc.pid, signal.SIGHUP)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 129, stderr[-2000:]
    assert "Traceback" not in stderr and "KeyError" not in stderr and "stopped by SIGHUP" in stderr
    assert json.loads(stdout.strip().splitlines()[-1])["run_dir"] == str(out)
    assert _wait_gone(pids)
