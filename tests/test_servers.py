"""Managed servers: colobench starts the serving stack itself (`servers:` and `server: NAME`).

The spec's rules and the pure helpers first; then, marked slow, real processes: a managed
`colobench fake-server` (pinned, logged, found by the log scan, gone afterwards), a readiness
timeout and an early exit, a server killed mid-run, Ctrl-C and kill -9 of colobench, two servers
kept across runs, and a managed `transformers serve`.
No timing is asserted."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from colobench.devices import visible_devices
from colobench.errors import SpecError
from colobench.launch.servers import ManagedServer, ServerFailed, bind, exit_text, register_secrets
from colobench.plan import plan_experiment
from colobench.secrets import scrub
from colobench.specs import experiment_from_dict
from colobench.specs.servers import ServerSpec

from conftest import FAKE_BANNER, all_counted, run_cli, start_cli, wait_for_line, wait_for_records, written

FAKE = [sys.executable, "-m", "colobench", "fake-server", "--port", "{port}"]
SECRET = "sk-server-secret-4711"
# a wrapper that prints a CUDA error and the server's token before it becomes the fake server
PLANT = ("import os, sys; print('RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB', file=sys.stderr, "
         "flush=True); print('token is', os.environ.get('FAKE_API_TOKEN'), flush=True); "
         "os.execv(sys.executable, [sys.executable, '-m', 'colobench', 'fake-server', *sys.argv[1:]])")


# a server that is up but never ready: it answers 404 to everything from its first milliseconds
NEVER_READY = [sys.executable, "-S", "-c", "import signal, socket, sys\n"
               "def bye(*_):\n"
               "    print('Traceback (most recent call last): stopped by SIGTERM', flush=True)\n"
               "    sys.exit(1)\n"
               "signal.signal(signal.SIGTERM, bye)\n"
               "server = socket.create_server(('127.0.0.1', int(sys.argv[1])))\n"
               "print('stub listening, never ready', flush=True)\n"
               "while True:\n"
               "    conn, _ = server.accept()\n"
               "    conn.recv(65536)\n"
               "    conn.sendall(b'HTTP/1.0 404 Not Found\\r\\nContent-Length: 0\\r\\n\\r\\n')\n"
               "    conn.close()\n", "{port}"]


def experiment(**over) -> dict:
    base = {"name": "m", "servers": [{"name": "fake", "command": FAKE}],
            "instances": [{"name": "a", "backend": "openai", "server": "fake", "model": "fake-model"}]}
    return {**base, **over}


def spec_error(data: dict) -> str:
    with pytest.raises(SpecError) as err:
        experiment_from_dict(data, "e.yaml")
    return str(err.value)


# ---- the spec ------------------------------------------------------------------------------------


def test_a_servers_args_become_flags_and_a_list_of_them_a_sweep_of_servers():
    from colobench.sweep import all_servers, expand
    data = experiment(servers=[{"name": "fake", "command": FAKE, "args": {"itl_ms": [1, 3], "no_prefix_cache": True,
                                                                          "verbose": False}}])
    spec = experiment_from_dict(data, "e.yaml")
    assert list(spec.sweep) == ["servers.fake.args.itl_ms"]
    points = expand(spec)
    assert [p.id for p in points] == ["m-itl_ms1", "m-itl_ms3"]
    assert points[0].axes == {"fake.itl_ms": 1}
    for point, itl in zip(points, ("1", "3")):
        (server,) = point.spec.servers
        assert server.name == f"fake.{point.id}" and point.spec.instances[0].server == server.name
        assert server.full_command()[len(FAKE):] == ["--no-prefix-cache", "--itl-ms", itl]
    assert sorted(s.name for s in all_servers(spec)) == ["fake.m-itl_ms1", "fake.m-itl_ms3"]
    # an env axis by its path, and a server no axis touches keeps its name
    spec = experiment_from_dict(experiment(sweep={"servers.fake.env.X": ["a", "b"]}), "e.yaml")
    assert [p.spec.servers[0].env for p in expand(spec)] == [{"X": "a"}, {"X": "b"}]
    assert [p.spec.servers[0].name for p in expand(experiment_from_dict(experiment(), "e.yaml"))] == ["fake"]


def test_a_server_axis_naming_no_server_or_a_bad_flag_is_refused():
    assert "no server named 'nope'" in spec_error(experiment(sweep={"servers.nope.args.x": [1, 2]}))
    assert "is not a flag name" in spec_error(experiment(servers=[{"name": "fake", "command": FAKE,
                                                                   "args": {"--bad": 1}}]))



def test_a_managed_instance_gets_its_url_when_its_server_has_a_port():
    spec = experiment_from_dict(experiment(instances=[{"name": "a", "backend": "openai", "server": "fake",
                                                        "model": "fake-model", "metrics_url": "auto"}]), "e.yaml")
    plan = plan_experiment(spec)
    inst = plan.instances[0]
    assert inst.server == "fake" and inst.endpoint.base_url == "http://127.0.0.1:{port}/v1"

    class Up:
        port, pid = 8123, 4242
    bound = bind(plan.groups[0], {"fake": Up()})
    ep = bound.instances[0].endpoint
    assert ep.base_url == "http://127.0.0.1:8123/v1" and ep.metrics_url == "http://127.0.0.1:8123/metrics"
    assert ep.server_pid == 4242 and plan.groups[0].instances[0].endpoint.server_pid is None  # a copy


@pytest.mark.parametrize("change, fragment", [
    ({"instances": [{"backend": "openai", "server": "vllm", "model": "x"}]},
     "instances[0].server: no server named 'vllm' (servers: fake)"),
    ({"servers": [], "instances": [{"backend": "openai", "server": "fake", "model": "x"}]},
     "no server named 'fake' (the experiment declares no servers:)"),
    ({"instances": [{"backend": "openai", "server": "fake", "base_url": "http://h:1/v1", "model": "x"}]},
     "give base_url or server, not both"),
    ({"instances": [{"backend": "openai", "model": "x"}]}, "needs base_url (http://host:port/v1) or server"),
    ({"instances": [{"server": "fake", "model": "tiny"}]}, "server applies to backend openai"),
    ({"instances": [{"backend": "openai", "server": "fake", "server_pid": 12, "model": "x"}]},
     "server_pid is the managed server's own"),
    ({"servers": [{"name": "fake", "command": ["vllm", "serve", "m"]}]}, "servers[0]: command has no {port}"),
    ({"servers": [{"name": "fake", "command": FAKE, "device": "gpu:0"}]}, "servers[0].device: device must be cpu"),
    ({"servers": [{"name": "fake", "command": FAKE, "cpu_affinity": []}]}, "servers[0].cpu_affinity"),
    ({"servers": [{"name": "fake", "command": FAKE, "ready_path": "health"}]}, "servers[0].ready_path"),
    ({"servers": [{"name": "fake", "command": FAKE, "ready_timeout_s": 0}]}, "servers[0].ready_timeout_s"),
    ({"servers": [{"name": "fake", "command": FAKE}, {"name": "fake", "command": FAKE}]},
     "server names must be unique; repeated: fake"),
    ({"servers": [{"name": "bad name", "command": FAKE}]}, "servers[0].name"),
    ({"servers": [{"name": "fake", "command": FAKE, "comand": []}]}, "servers[0].comand: unknown key (did you mean "
                                                                      "'command'?)"),
])
def test_bad_server_specs_are_one_line(change, fragment):
    message = spec_error(experiment(**change))
    assert fragment in message and "\n" not in message and message.startswith("e.yaml: ")


def test_a_fixed_port_needs_no_placeholder_and_cores_are_sorted():
    spec = ServerSpec(name="s", command=["llama-server", "-m", "m.gguf", "--port", "8080"], port=8080,
                      cpu_affinity=[3, 1, 1], device="CUDA:1")
    assert spec.cpu_affinity == [1, 3] and spec.device == "cuda:1"


def test_visible_devices_of_a_server():
    assert visible_devices("cuda:1") == {"CUDA_VISIBLE_DEVICES": "1"}
    assert visible_devices("npu:3") == {"ASCEND_RT_VISIBLE_DEVICES": "3"}
    assert visible_devices("cpu") == {"CUDA_VISIBLE_DEVICES": "", "ASCEND_RT_VISIBLE_DEVICES": ""}


def test_secrets_in_server_commands_and_env_are_registered_not_paths_or_counts():
    register_secrets([ServerSpec(name="s", command=["vllm", "serve", "/models/llama", "--api-key", "sk-cmd-1234",
                                                    "--hf-token=hf_abcdefgh", "--tokenizer", "/models/tok",
                                                    "--max-num-batched-tokens", "8192", "--port", "{port}"],
                                 env={"HF_TOKEN": "hf_envtoken", "TOKENIZERS_PARALLELISM": "false"})])
    text = scrub("sk-cmd-1234 hf_abcdefgh hf_envtoken /models/tok 8192 false")
    assert text == "*** *** *** /models/tok 8192 false"


def test_exit_text():
    assert exit_text(1) == "code 1" and exit_text(-9) == "signal 9 (SIGKILL)" and exit_text(None) == "no exit code"


# ---- real processes -----------------------------------------------------------------------------


def gone(pid: int) -> bool:
    """No such process, or only a zombie waiting for init (it runs nothing)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
def test_managed_server_pinned_ready_and_stopped(tmp_path: Path):
    spec = ServerSpec(name="fake", command=FAKE, cpu_affinity=[0], device="cpu", env={"EXTRA_SETTING": "on"})
    server = ManagedServer(spec, tmp_path / "logs" / "server-fake.log")
    try:
        server.start()
        ready_s = server.wait_ready()
        proc = psutil.Process(server.pid)
        assert ready_s > 0 and server.alive() and server.exit_code is None
        assert proc.cpu_affinity() == [0] and server.pinned == [0]  # read back from the live process
        assert all(psutil.Process(t.id).cpu_affinity() == [0] for t in proc.threads())
        env = proc.environ()
        assert env["CUDA_VISIBLE_DEVICES"] == "" and env["EXTRA_SETTING"] == "on"
        assert os.getpgid(server.pid) == server.pid != os.getpgid(0)  # its own process group
    finally:
        code = server.stop()
    assert code is not None and not server.alive() and gone(server.pid) and server.stopped
    log = server.log_path.read_text()
    assert "fake OpenAI server on http://127.0.0.1:" in log and server.command[-1] == str(server.port)
    facts = server.facts(tmp_path)
    assert facts["log"] == "logs/server-fake.log" and facts["pinned_cores"] == [0] and facts["exit_code"] == code


@pytest.mark.slow
@pytest.mark.parametrize("extra, listens, fragment", [
    ({"ready_path": "/nope", "ready_timeout_s": 2}, True, "not ready after 2 s (GET /nope: HTTP 404)"),
    ({"command": [*FAKE, "--no-such-flag"]}, False, "exited with code 2 before it was ready"),
])
def test_a_server_that_never_becomes_ready_is_one_line_and_stopped(tmp_path: Path, extra, listens, fragment):
    server = ManagedServer(ServerSpec(**{"name": "fake", "command": FAKE, **extra}), tmp_path / "server-fake.log")
    server.start()
    if listens:
        # the server's own signal that it listens (its banner, copied to the log), before the
        # readiness poll: the 2 s then run out against a server answering 404, however long the
        # busy host took to start it; the poll asks once more after the deadline, so 404 is last
        wait_for_line(server.proc, server.log_path, FAKE_BANNER)
    with pytest.raises(ServerFailed) as err:
        server.wait_ready()
    message = str(err.value)
    assert message.startswith("server fake: ") and fragment in message and "\n" not in message
    said = "last log lines before colobench stopped it: " if listens else "last log lines: "
    assert said in message and f"(log: {server.log_path})" in message
    assert not server.alive() and gone(server.pid)


def managed_yaml(path: Path, cache_dir: Path, command: list[str], requests: int, extra: str = "",
                 workload: str = "output_tokens: 4, concurrency: 2") -> Path:
    path.write_text(f"""
name: managed
repetitions: 1
cache_dir: {cache_dir}
telemetry: {{idle_s: 0, host_interval_s: 0.2}}
workload: {{requests: {requests}, {workload}}}
servers:
  - name: fake
    command: {json.dumps(command)}
{extra}
instances:
  - {{name: a, backend: openai, server: fake, model: fake-model, api_key_env: CLIENT_KEY}}
""")
    return path


def server_entries(out: Path) -> list[dict]:
    return json.loads((out / "manifest.json").read_text()).get("servers") or []


@pytest.mark.slow
def test_run_with_a_managed_fake_server(tmp_path: Path, cli_env: dict, cache_dir: Path):
    """The run succeeds through `server:`; the server's log (a planted CUDA error, a secret
    scrubbed) is in the run directory and found by the log scan and `colobench diagnose`; its
    `/metrics` is scraped around the window by default; the server is pinned, recorded in the
    manifest, and gone afterwards."""
    command = [sys.executable, "-c", PLANT, "--port", "{port}", "--ttft-ms", "2", "--itl-ms", "1",
               "--api-key-env", "FAKE_API_TOKEN"]
    exp = managed_yaml(tmp_path / "e.yaml", cache_dir, command, 12,
                       f"    env: {{FAKE_API_TOKEN: {SECRET}}}\n    cpu_affinity: [0]\n    ready_timeout_s: 60")
    out = tmp_path / "run"
    proc = run_cli(["run", str(exp), "-o", str(out)], {**cli_env, "CLIENT_KEY": SECRET}, tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = written(out)
    metrics = summary["phases"]["solo"]["a"]
    assert metrics["completed"] == 12 and metrics["failed"] == 0 and not summary["problems"]
    # its /metrics is scraped around the window without being asked (a managed server's is on by default)
    assert metrics["server"]["windows"] == 1 and metrics["server"]["requests"] == {"client": 12, "server": 12}
    (entry,) = server_entries(out)
    assert entry["log"] == "runs/solo-a/logs/server-fake.log" and entry["runs"] == ["solo-a"]
    assert entry["pinned_cores"] == [0] and entry["ready_s"] > 0 and entry["exit_code"] is not None
    assert entry["stopped_by_colobench"] and entry["problem"] is None and gone(entry["pid"])
    assert entry["command"][3:5] == ["--port", str(entry["port"])]
    assert summary["instances"]["a"]["endpoint"]["base_url"] == f"http://127.0.0.1:{entry['port']}/v1"
    run_state = json.loads((out / "runs" / "solo-a" / "run.json").read_text())
    assert run_state["instances"][0]["endpoint"]["server_pid"] == entry["pid"]  # telemetry sampled its tree
    log = (out / entry["log"]).read_text()
    assert "CUDA out of memory" in log and "token is ***" in log
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path
    findings = json.loads((out / "summary.json").read_text())["findings"]
    found = [f for f in findings if f["kind"] == "log:cuda_out_of_memory"]
    assert found and found[0]["subjects"][0]["instance"] == "a"  # the server's log is its instance's
    assert "server-fake.log" in found[0]["evidence"]["lines"][0]
    diagnose = run_cli(["diagnose", str(out)], cli_env, tmp_path)
    assert diagnose.returncode == 0 and "out of memory" in diagnose.stdout.lower()


def test_a_sweep_over_a_servers_flag_starts_one_server_per_point(tmp_path: Path, cli_env: dict, cache_dir: Path):
    """servers.fake.args.itl_ms: [1, 8]: each point runs on its own server, started with its flag,
    and the slower flag measures slower."""
    exp = managed_yaml(tmp_path / "e.yaml", cache_dir, [*FAKE, "--ttft-ms", "1"], 6, "    args: {itl_ms: [1, 8]}")
    out = tmp_path / "run"
    proc = run_cli(["run", str(exp), "-o", str(out)], {**cli_env, "CLIENT_KEY": "k"}, tmp_path)
    assert proc.returncode == 0, proc.stderr
    entries = server_entries(out)
    assert sorted(e["name"] for e in entries) == ["fake.managed-itl_ms1", "fake.managed-itl_ms8"]
    for e in entries:
        flag = e["command"][e["command"].index("--itl-ms") + 1]
        assert e["name"].endswith(f"itl_ms{flag}") and gone(e["pid"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sweep_axes"] == ["fake.itl_ms"]
    tpot = {p["axes"]["fake.itl_ms"]: p["phases"]["solo"]["a"]["median_tpot_ms"] for p in summary["points"]}
    assert tpot[8] > 4 * tpot[1]


@pytest.mark.slow
def test_two_servers_kept_across_runs(tmp_path: Path, cli_env: dict, cache_dir: Path):
    """keep_servers: each server starts once, before the first run that needs it, serves its solo
    run and the co-located one, and is stopped at the end."""
    fast = json.dumps([*FAKE, "--ttft-ms", "20", "--itl-ms", "10"])  # 50 ms a request: a co-located window to speak of
    exp = tmp_path / "e.yaml"
    exp.write_text(f"""
name: kept
repetitions: 1
order: phase-major
keep_servers: true
cache_dir: {cache_dir}
telemetry: {{idle_s: 0}}
workload: {{requests: 6, output_tokens: 4, concurrency: 2}}
servers:
  - {{name: sa, command: {fast}, cpu_affinity: [0]}}
  - {{name: sb, command: {fast}}}
instances:
  - {{name: a, backend: openai, server: sa, model: fake-model}}
  - {{name: b, backend: openai, server: sb, model: fake-model}}
""")
    out = tmp_path / "run"
    proc = run_cli(["run", str(exp), "-o", str(out)], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    entries = {e["name"]: e for e in server_entries(out)}
    assert len(server_entries(out)) == 2  # one start each
    assert entries["sa"]["runs"] == ["solo-a", "colocated"] and entries["sb"]["runs"] == ["solo-b", "colocated"]
    assert entries["sb"]["log"] == "runs/solo-b/logs/server-sb.log" and entries["sb"]["pinned_cores"] is None
    assert all(gone(e["pid"]) and e["stopped_by_colobench"] for e in entries.values())
    co = written(out)["phases"]["colocated"]
    for name in ("a", "b"):
        all_counted(co[name], 6, out / "runs" / "colocated" / "records" / f"{name}.jsonl")


@pytest.mark.slow
def test_a_readiness_timeout_through_the_cli_leaves_no_server(tmp_path: Path, cli_env: dict, cache_dir: Path):
    """colobench starts the server and its 2 s at once, so the server must answer within them on
    any host: a stub that listens and answers 404 from its first milliseconds (no imports but
    `socket`), where the fake server's own start (aiohttp, colobench) could take longer than 2 s
    on a busy host. What is checked is colobench's side: the one-line error, no server left."""
    exp = managed_yaml(tmp_path / "e.yaml", cache_dir, NEVER_READY, 4,
                       "    ready_path: /never\n    ready_timeout_s: 2")
    out = tmp_path / "run"
    proc = run_cli(["run", str(exp), "-o", str(out)], {**cli_env, "CLIENT_KEY": "k" * 8}, tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    # quoted from before colobench stopped it: not the traceback its SIGTERM caused
    assert last.startswith("error: server fake: not ready after 2 s (GET /never: HTTP 404); last log lines before "
                           "colobench stopped it: stub listening, never ready")
    assert "SIGTERM" not in last and "SIGTERM" in (out / server_entries(out)[0]["log"]).read_text()
    (entry,) = server_entries(out)
    assert gone(entry["pid"]) and entry["problem"].startswith("not ready after 2 s")
    assert (out / entry["log"]).is_file()


@pytest.mark.slow
def test_a_server_killed_mid_run_is_a_problem_and_the_run_finishes(tmp_path: Path, cli_env: dict, cache_dir: Path):
    command = [*FAKE, "--ttft-ms", "300", "--itl-ms", "20"]
    exp = managed_yaml(tmp_path / "e.yaml", cache_dir, command, 12)
    out = tmp_path / "run"
    proc = start_cli(["run", str(exp), "-o", str(out)], {**cli_env, "CLIENT_KEY": "k" * 8}, tmp_path)
    wait_for_records(proc, out / "runs" / "solo-a" / "records" / "a.jsonl", 3)
    (entry,) = server_entries(out)
    os.kill(entry["pid"], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr  # finished, with a problem
    summary = written(out)
    metrics = summary["phases"]["solo"]["a"]
    assert metrics["completed"] >= 3 and metrics["failed"] > 0  # its requests failed, recorded as such
    (problem,) = [p for p in summary["problems"] if p.startswith("server fake:")]
    assert "exited with signal 9 (SIGKILL) during solo-a; last log lines: fake OpenAI server" in problem
    (entry,) = server_entries(out)
    assert entry["exit_code"] == -9 and not entry["stopped_by_colobench"] and gone(entry["pid"])


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "kill-9"])
def test_no_server_outlives_colobench(tmp_path: Path, cli_env: dict, cache_dir: Path, how: str):
    """Ctrl-C: colobench stops the server and exits 130. kill -9 of colobench: the kernel sends
    the server SIGTERM (its parent-death signal)."""
    exp = managed_yaml(tmp_path / "e.yaml", cache_dir, [*FAKE, "--ttft-ms", "20", "--itl-ms", "5"], 2000)
    out = tmp_path / "run"
    proc = start_cli(["run", str(exp), "-o", str(out)], {**cli_env, "CLIENT_KEY": "k" * 8}, tmp_path,
                     new_session=True)
    wait_for_records(proc, out / "runs" / "solo-a" / "records" / "a.jsonl", 3)
    (entry,) = server_entries(out)
    assert not gone(entry["pid"])
    if how == "kill-9":
        proc.kill()
        proc.communicate(timeout=60)
        try:
            psutil.wait_procs([psutil.Process(entry["pid"])], timeout=30)
        except psutil.NoSuchProcess:
            pass
        assert gone(entry["pid"])
        return
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: colobench's group; the server has its own
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    (entry,) = server_entries(out)
    assert gone(entry["pid"]) and entry["stopped_by_colobench"] and entry["exit_code"] is not None
    assert written(out)["phases"]["solo"]["a"]["completed"] >= 3  # what completed is summarised


@pytest.mark.slow
def test_managed_transformers_serve(tmp_path: Path, cli_env: dict, cache_dir: Path, tokenizer_checkpoint: Path):
    """A real OpenAI-compatible server we did not write, started and stopped by colobench."""
    serve = [sys.executable, "-c", "from transformers.cli.transformers import main; main()", "serve",
             str(tokenizer_checkpoint), "--device", "cpu", "--port", "{port}"]
    model = str(tokenizer_checkpoint)
    exp = tmp_path / "serve.yaml"
    exp.write_text(f"""
name: tserve
repetitions: 1
cache_dir: {cache_dir}
telemetry: {{idle_s: 0}}
workload: {{requests: 3, output_tokens: 4, concurrency: 1, prompts: {{builtin: [en_qa]}}}}
servers:
  - {{name: tserve, command: {json.dumps(serve)}, device: cpu, ready_path: /health, ready_timeout_s: 120,
     env: {{HF_HUB_OFFLINE: "1"}}}}
instances:
  - {{name: a, model: "{model}", server: tserve, backend: openai, api: chat, exact_output_fields: [],
     extra_body: {{generation_config: '{{"min_new_tokens": $output_tokens, "max_new_tokens": $output_tokens}}'}}}}
""")
    out = tmp_path / "run"
    proc = run_cli(["run", str(exp), "-o", str(out)], cli_env, tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = written(out)["phases"]["solo"]["a"]
    assert metrics["completed"] == 3 and metrics["failed"] == 0 and metrics["total_output_tokens"] == 12
    (entry,) = server_entries(out)
    assert entry["exit_code"] is not None and gone(entry["pid"]) and entry["problem"] is None
    assert (out / entry["log"]).stat().st_size > 0


DAEMON = r"""
import os, sys, time
pid_file = sys.argv[1]
if os.fork() == 0:          # a daemon, the classic way: fork, setsid, fork again, the middle one exits
    os.setsid()
    if os.fork() == 0:
        with open(pid_file, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)
        os._exit(0)
    os._exit(0)
os.execvp(sys.argv[2], sys.argv[2:])
"""


@pytest.mark.slow
def test_a_daemon_the_server_started_in_its_own_session_is_stopped_with_it(tmp_path: Path):
    """A grandchild that forked twice and called setsid is reparented to init, outside the
    server's tree, group and session; it still carries the server's tag and is stopped."""
    pid_file = tmp_path / "daemon.pid"
    spec = ServerSpec(name="fake", command=[sys.executable, "-c", DAEMON, str(pid_file), *FAKE])
    server = ManagedServer(spec, tmp_path / "server-fake.log")
    try:
        server.start()
        server.wait_ready()
        for _ in range(100):
            if pid_file.exists() and pid_file.read_text():
                break
            time.sleep(0.1)
        daemon = int(pid_file.read_text())
        assert daemon not in {p.pid for p in psutil.Process(server.pid).children(recursive=True)}
        assert os.getsid(daemon) != os.getsid(server.pid)
    finally:
        server.stop()
    assert gone(server.pid)
    for _ in range(100):
        if gone(daemon):
            break
        time.sleep(0.1)
    assert gone(daemon), "the server's daemon outlived colobench's stop"
    assert "[colobench] stopping server fake (SIGTERM)" in server.log_path.read_text()


def test_shutdown_lines_and_advice_are_not_findings(tmp_path: Path):
    """vLLM logs EngineDeadError while colobench stops it, and warns at start that a low ulimit
    "can cause ... [Errno 24] Too many open files": neither is a finding; the same lines before a
    stop, said as facts, are."""
    from colobench.analysis.diagnosis.logscan import RULES, scan_run
    from colobench.rundir import RunFolder
    from colobench.specs import experiment_from_dict as spec_of

    plan = plan_experiment(spec_of({"servers": [{"name": "s", "command": ["x", "{port}"]}],
                                    "instances": [{"backend": "openai", "server": "s", "model": "m"}]}, "t"))
    run = next(r for r in plan.runs if r.phase == "solo")
    folder = RunFolder(tmp_path / "run")
    folder.logs_dir.mkdir(parents=True)
    advice = ("WARNING Found ulimit of 20000 and failed to increase. This can cause fd limit errors like "
              "`OSError: [Errno 24] Too many open files`. Consider increasing with ulimit -n\n")
    dead = "ERROR vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue.\n"
    folder.server_log("s").write_text(advice + "INFO serving\n[colobench] stopping server s (SIGTERM): what follows "
                                      "is its shutdown\n" + dead)
    assert scan_run(folder, run, "", None, 0, RULES) == []
    folder.server_log("s").write_text("OSError: [Errno 24] Too many open files\n" + dead)
    kinds = {f.kind for f in scan_run(folder, run, "", None, 0, RULES)}
    assert kinds == {"log:too_many_open_files", "log:engine_dead"}
