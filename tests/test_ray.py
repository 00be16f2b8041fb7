"""The Ray launcher: placement, clock offsets, streaming, deaths; Ray stays optional.

The end-to-end tests start one private Ray instance for the module (2 CPUs, a small object
store, a session folder next to this file, no dashboard) and run the CLI against it as a
second driver, the way a user points colobench at a running cluster. They are marked `ray`
and `slow`. Their actors run the fake backend: what is tested is the launcher (placement,
clocks, streaming, deaths, Ctrl-C), which is the same whatever the model.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from colobench.errors import ColobenchError
from colobench.launch.ray_actors import local_device, physical_device, shift_lines, shift_ns
from colobench.plan import plan_experiment
from colobench.records import read_jsonl
from colobench.specs import LaunchSpec, experiment_from_dict
from conftest import all_counted, pair_experiment, run_cli, start_cli, wait_for_records, written

pytestmark = pytest.mark.xdist_group("ray")  # one Ray at a time, on one xdist worker

SKEW_NS = 5_000 * 10**9  # a node whose clock reads 5000 s ahead of the driver's
FAKE_TIMINGS = "{ttft_ms: 5, tpot_ms: 5}"  # a request of 8 tokens: 40 ms
ENDLESS = 20_000  # requests of a run that is stopped long before its end


# ---- pieces that need no cluster ------------------------------------------------------------

def test_shift_moves_every_timestamp_and_nothing_else():
    row = {"submit_ns": 10, "scheduled_ns": None, "token_ns": [11, 12], "done_ns": 13, "request_id": 7}
    assert shift_ns(dict(row), -10) == {"submit_ns": 0, "scheduled_ns": None, "token_ns": [1, 2], "done_ns": 3,
                                        "request_id": 7}
    lines = b'{"t_ns": 100, "device": "host"}\n{"start_ns": 5, "duration_ns": 3}\n'
    shifted = [json.loads(x) for x in shift_lines(lines, 1000).splitlines()]
    assert shifted == [{"t_ns": 1100, "device": "host"}, {"start_ns": 1005, "duration_ns": 3}]
    assert shift_lines(lines, 0) is lines


def test_devices_as_ray_assigns_them():
    assert local_device("cuda:3", {"GPU": ["5"]}) == "cuda:0"  # CUDA_VISIBLE_DEVICES=5 in the actor
    assert physical_device("cuda:3", {"GPU": ["5"]}) == "cuda:5"  # what NVML and nvidia-smi call it
    assert local_device("npu:1", {"NPU": ["2"]}) == "npu:0" and physical_device("npu:1", {"NPU": ["2"]}) == "npu:2"
    assert local_device("cuda:1", {}) == "cuda:1" and physical_device("cpu", {"GPU": ["0"]}) == "cpu"


class _SimulatedClock:
    """A driver clock that moves only when told: the round trips below are exactly the planted ones,
    however busy the host (a busy-wait on the real clock stretches when the process is preempted)."""

    def __init__(self, start_ns: int = 10**12):
        self.t = start_ns

    def __call__(self) -> int:
        return self.t

    def advance(self, ns: int) -> None:
        self.t += ns


class _FakeActor:
    """Answers clock pings as a node whose clock is `skew_ns` ahead, after `delay_ns` each way."""

    def __init__(self, skew_ns: int, delays_ns: list[int], clock: _SimulatedClock):
        self.skew_ns, self.delays, self.clock = skew_ns, iter(delays_ns), clock
        self.clock_ns = SimpleNamespace(remote=self._ping)

    def _ping(self):
        delay = next(self.delays)
        self.clock.advance(delay)
        value = self.clock() + self.skew_ns
        self.clock.advance(delay)
        return value


def test_clock_offset_from_the_fastest_round_trip(monkeypatch):
    from colobench.launch.ray_launcher import estimate_offset

    clock = _SimulatedClock()
    monkeypatch.setattr(sys.modules[estimate_offset.__module__], "now_ns", clock)  # the driver's clock
    fake_ray = SimpleNamespace(get=lambda x: x)
    actor = _FakeActor(SKEW_NS, [2_000_000, 300_000, 1_000_000, 5_000_000], clock)
    est = estimate_offset(fake_ray, actor, rounds=4)
    assert 600_000 <= est["rtt_min_ns"] < 1_500_000  # the 0.3 ms-each-way round was chosen
    assert abs(est["offset_ns"] - SKEW_NS) <= est["error_ns"]  # the bound holds by construction
    assert est["rtt_median_ns"] > est["rtt_min_ns"]


def test_death_reason_is_one_line():
    from colobench.launch.ray_launcher import death_reason

    text = ("The actor died unexpectedly before finishing this task.\n\tclass_name: InstanceWorker\n"
            "The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR Worker exit "
            "detail: Worker unexpectedly exits with a connection error code 2. End of file. Some common causes "
            "include: (1) the process was killed by the OOM killer")
    assert death_reason(RuntimeError(text)) == ("actor died: Worker unexpectedly exits with a connection error code 2. "
                                                 "End of file.")
    assert death_reason(RuntimeError("boom")) == "actor died: boom"


def _plan(instances: list[dict]):
    spec = experiment_from_dict({"instances": instances, "workload": {"requests": 2}}, "test.yaml")
    return plan_experiment(spec, auto_device="cpu", cpu_count=8)


def test_actor_options_follow_the_device():
    from colobench.launch.ray_launcher import actor_options

    plan = _plan([{"model": "tiny", "device": "cuda:0"}, {"model": "tiny", "device": "cuda:0"},
                  {"model": "tiny", "device": "npu:0", "ray": {"node_labels": {"zone": "a"}, "num_cpus": 2}}])
    a, _, npu = (actor_options(i, LaunchSpec(kind="ray")) for i in plan.points[0].instances)
    assert a["num_gpus"] == 0.5 and a["num_cpus"] == 2  # two instances share cuda:0; 8 cores / 3 instances
    assert a["runtime_env"]["env_vars"]["OMP_NUM_THREADS"] == "2"
    assert npu["resources"] == {"NPU": 1.0} and npu["label_selector"] == {"zone": "a"} and npu["num_cpus"] == 2
    assert "num_gpus" not in npu


def test_unplaceable_request_is_a_clear_error():
    from colobench.launch.ray_launcher import check_placeable

    plan = _plan([{"model": "tiny", "device": "cuda:0"}])
    nodes = [{"Alive": True, "NodeID": "n1", "Resources": {"CPU": 2.0, "memory": 1e9, "node:1.2.3.4": 1.0}}]
    with pytest.raises(ColobenchError) as err:
        check_placeable(SimpleNamespace(nodes=lambda: nodes), plan, LaunchSpec(kind="ray"), "exp.yaml")
    assert str(err.value) == ("exp.yaml: instances[0] (tiny) asks Ray for CPU 8, GPU 1; no node of the cluster offers "
                              "that (nodes: CPU 2)")


def test_bad_ray_address_fails_fast():
    from colobench.launch.ray_launcher import _probe

    with pytest.raises(ColobenchError, match="nothing answers there"):
        _probe("127.0.0.1:1")


def test_nothing_imports_ray_without_asking(tmp_path: Path, cli_env: dict):
    code = ("import sys; import colobench.cli, colobench.api, colobench.launch.local, colobench.launch.state; "
            "from colobench.launch import worker, ray_actors, ray_launcher; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).returncode == 0
    # with Ray absent, asking for it is a one-line error and nothing is written
    blocked = "import sys; sys.modules['ray'] = None; from colobench.cli import main; sys.argv[0] = 'colobench'; main()"
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", blocked, "run", "-m", "tiny", "--launcher", "ray", "-o", str(out)],
                          env=cli_env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == ("error: launch.kind ray needs Ray, which is not installed: "
                                                    "pip install 'colobench[ray]'")
    assert "Traceback" not in proc.stderr and not out.exists()


# ---- a private Ray instance ----------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_address():
    ray = pytest.importorskip("ray")
    base = Path(__file__).parent / ".ray"
    if len(str(base)) > 40:  # Ray's unix sockets live below this folder: their paths must stay short
        base = Path(tempfile.gettempdir())
    base.mkdir(exist_ok=True)
    temp = tempfile.mkdtemp(prefix="r", dir=base)
    os.environ.setdefault("RAY_worker_niceness", "0")  # as colobench does for address: local
    ray.init(num_cpus=2, object_store_memory=80 * 2**20, _temp_dir=temp, include_dashboard=False,
             log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def _experiment(path: Path, cache_dir: Path, requests: int, extra: str = "") -> Path:
    path.write_text(f"""
name: ray-eq
repetitions: 2
cache_dir: {cache_dir}
telemetry: {{idle_s: 0}}
workload: {{prompt_tokens: 16, output_tokens: 8, requests: {requests}, batch_size: 2}}
instances:
  - {{name: a, model: fake, backend: fake, fake: {FAKE_TIMINGS}}}
  - {{name: b, model: fake, backend: fake, fake: {FAKE_TIMINGS}, env: {{COLOBENCH_SIMULATED_CLOCK_SKEW_NS: "{SKEW_NS}"}}}}
{extra}""")
    return path


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "gc" not in p.parts}


def _counts(records: Path) -> dict:
    rows = read_jsonl(records)
    return {(r["repetition"], r["warmup"], r["request_id"], r["prompt_tokens"], r["output_tokens"]) for r in rows}


@pytest.mark.ray
@pytest.mark.slow
def test_ray_run_matches_local_run_and_corrects_clock_offsets(tmp_path: Path, cli_env: dict, cache_dir: Path,
                                                              ray_address: str):
    exp = _experiment(tmp_path / "eq.yaml", cache_dir, requests=6)
    local = run_cli(["run", str(exp), "-o", str(tmp_path / "local"), "--json"], cli_env, tmp_path)
    assert local.returncode == 0, local.stderr
    on_ray = run_cli(["run", str(exp), "-o", str(tmp_path / "ray"), "--json", "--launcher", "ray",
                      "--ray-address", ray_address], cli_env, tmp_path)
    assert on_ray.returncode == 0, on_ray.stderr
    lo, ra = tmp_path / "local", tmp_path / "ray"
    assert _tree(lo) == _tree(ra)  # same files: manifest, run.json, records, logs, telemetry, summary
    s_lo = json.loads(local.stdout.splitlines()[-1])["points"][0]
    s_ra = json.loads(on_ray.stdout.splitlines()[-1])["points"][0]
    assert s_lo["phases"].keys() == s_ra["phases"].keys() == {"solo", "colocated"}
    for phase, run_id in (("solo", "solo-{}"), ("colocated", "colocated")):
        for name in ("a", "b"):
            assert s_lo["phases"][phase][name].keys() == s_ra["phases"][phase][name].keys()
            all_counted(s_ra["phases"][phase][name], 12, ra / "runs" / run_id.format(name) / "records" / f"{name}.jsonl")
            assert s_ra["phases"][phase][name]["failed"] == 0
            assert phase == "colocated" or s_ra["phases"][phase][name]["completed"] == 12
    assert s_ra["interference"]["throughput_scaling"] is not None
    assert s_lo["interference"].keys() == s_ra["interference"].keys()
    for run_id in ("solo-a", "solo-b", "colocated"):
        for name in (["a", "b"] if run_id == "colocated" else [run_id[5:]]):
            rec = Path("runs") / run_id / "records" / f"{name}.jsonl"
            assert _counts(lo / rec) == _counts(ra / rec)
        state = json.loads((ra / "runs" / run_id / "run.json").read_text())
        assert state["launcher"] == "ray" and state["status"] == "completed" and not state["warnings"]
        assert all(w["info"]["nice"] == 0 for w in state["workers"].values())  # measuring at normal priority
    # b's node clock reads 5000 s ahead; on the driver's timeline its requests fall in the run's windows
    state = json.loads((ra / "runs" / "colocated" / "run.json").read_text())
    starts = state["repetition_start_ns"]
    for r in read_jsonl(ra / "runs" / "colocated" / "records" / "b.jsonl"):
        if not r["warmup"]:
            assert starts[r["repetition"] - 1] <= r["submit_ns"] < starts[r["repetition"] - 1] + 120 * 10**9
            assert r["submit_ns"] <= r["token_ns"][0] <= r["done_ns"]
    clock = json.loads((ra / "manifest.json").read_text())["ray"]["colocated"]["actors"]["b"]["clock"]
    assert clock["simulated_skew_ns"] == SKEW_NS and clock["applied_offset_ns"] == clock["offset_ns"]
    assert abs(clock["offset_ns"] - SKEW_NS) <= clock["error_ns"] < 50_000_000
    a_clock = json.loads((ra / "manifest.json").read_text())["ray"]["colocated"]["actors"]["a"]["clock"]
    assert a_clock["applied_offset_ns"] == 0 and abs(a_clock["offset_ns"]) <= a_clock["error_ns"]
    # the two instances started together: first submits of each repetition within 50 ms
    firsts = {}
    for name in ("a", "b"):
        for r in read_jsonl(ra / "runs" / "colocated" / "records" / f"{name}.jsonl"):
            if not r["warmup"]:
                key = (name, r["repetition"])
                firsts[key] = min(firsts.get(key, r["submit_ns"]), r["submit_ns"])
    for rep in (1, 2):
        assert abs(firsts[("a", rep)] - firsts[("b", rep)]) < 50_000_000
    rebuilt = json.loads(run_cli(["report", str(ra), "--json"], cli_env, tmp_path).stdout)["points"][0]
    assert rebuilt["phases"] == s_ra["phases"]


@pytest.mark.ray
@pytest.mark.slow
def test_killed_actor_keeps_partner_records(tmp_path: Path, cli_env: dict, cache_dir: Path, ray_address: str):
    # 120 requests of 40 ms: the partner is still running seconds after the kill
    exp = pair_experiment(tmp_path / "kill.yaml", cache_dir,
                          [f"{{name: {n}, model: fake, backend: fake, fake: {FAKE_TIMINGS}}}" for n in ("victim", "partner")])
    out = tmp_path / "run"
    proc = start_cli(["run", str(exp), "-o", str(out), "--launcher", "ray", "--ray-address", ray_address],
                     cli_env, tmp_path)
    victim_records = out / "runs" / "colocated" / "records" / "victim.jsonl"
    wait_for_records(proc, victim_records, 6)
    pid = json.loads((out / "runs" / "colocated" / "run.json").read_text())["workers"]["victim"]["pid"]
    os.kill(pid, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 1, stderr  # ran, but an actor died
    summary = written(out)
    victim = summary["runs"]["colocated"]["workers"]["victim"]
    assert victim["status"] == "died" and victim["reason"].startswith("actor died"), victim
    assert summary["runs"]["colocated"]["workers"]["partner"]["status"] == "completed"
    partner = summary["phases"]["colocated"]["partner"]  # every record kept; the overlap counts
    assert sum(1 for r in read_jsonl(victim_records.with_name("partner.jsonl")) if not r["warmup"] and not r["load_only"]) == 120
    assert partner["completed"] + partner["outside_overlap"] == 120 and partner["outside_overlap"] > 0
    kept = [r for r in read_jsonl(victim_records) if not r["warmup"] and not r["load_only"]]
    assert 6 <= len(kept) < 120
    victim = summary["phases"]["colocated"]["victim"]
    assert victim["completed"] + victim["outside_overlap"] == len(kept)
    assert any("victim died" in p for p in summary["problems"])


def test_split_colocation_is_flagged():
    from colobench.launch.ray_launcher import _split_colocation

    apart = [{"device": "cuda:1", "planned_device": "cuda:0"}, {"device": "cuda:2", "planned_device": "cuda:0"}]
    together = [{"device": "cuda:3", "planned_device": "cuda:0"}, {"device": "cuda:3", "planned_device": "cuda:0"}]
    assert _split_colocation(apart) == ["instances planned to share cuda:0 were placed on cuda:1, cuda:2: ask for "
                                        "fractions that add up to one card (ray.num_gpus) or pin them to one node"]
    assert _split_colocation(together) == [] and _split_colocation([{"device": "cpu"}, {"device": "cpu"}]) == []


def test_a_run_that_cannot_fit_at_once_is_a_clear_error():
    from colobench.launch.ray_launcher import check_placeable

    plan = _plan([{"model": "tiny", "device": "cpu", "cpu_threads": 2}, {"model": "tiny", "device": "cpu",
                                                                         "cpu_threads": 2}])
    nodes = [{"Alive": True, "NodeID": "n1", "Resources": {"CPU": 2.0}}, {"Alive": True, "NodeID": "n2",
                                                                          "Resources": {"CPU": 1.0}}]
    with pytest.raises(ColobenchError) as err:
        check_placeable(SimpleNamespace(nodes=lambda: nodes), plan, LaunchSpec(kind="ray"), "exp.yaml")
    assert str(err.value) == ("exp.yaml: runs solo-tiny-1, solo-tiny-2, colocated (one set of actors, interleaved) ask "
                              "Ray for CPU 4 (the cluster has 3) at once; set instances' ray.num_cpus / cpu_threads "
                              "lower or add nodes")


def test_launcher_flags_are_checked(tmp_path: Path, cli_env: dict):
    proc = run_cli(["run", "-m", "tiny", "--launcher", "local", "--ray-address", "auto"], cli_env, tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: command line: --ray-address: applies to --launcher ray"
    proc = run_cli(["run", "-m", "tiny", "--launcher", "slurm"], cli_env, tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: command line: --launcher: Input should be 'local' or 'ray' (got 'slurm')"


@pytest.mark.ray
@pytest.mark.slow  # starts a Ray instance
def test_ship_source_needs_colobench_to_start_ray(ray_address: str):
    from colobench.launch.ray_launcher import ray_session

    with pytest.raises(ColobenchError, match="launch.ship_source: Ray is already initialised"):
        with ray_session(LaunchSpec(kind="ray", ship_source=True)):
            pass


@pytest.mark.ray
@pytest.mark.slow
def test_ctrl_c_stops_the_actors_and_keeps_what_was_measured(tmp_path: Path, cli_env: dict, cache_dir: Path,
                                                             ray_address: str):
    out = tmp_path / "run"
    exp = tmp_path / "solo.yaml"
    exp.write_text(f"repetitions: 1\nworkload: {{prompt_tokens: 16, output_tokens: 8, requests: {ENDLESS}}}\n"
                   f"instances: [{{name: tiny, model: fake, backend: fake, fake: {FAKE_TIMINGS}}}]\n")
    proc = start_cli(["run", str(exp), "-o", str(out), "--launcher", "ray", "--ray-address", ray_address],
                     cli_env, tmp_path, new_session=True)
    records = out / "runs" / "solo-tiny" / "records" / "tiny.jsonl"
    try:
        wait_for_records(proc, records, 5)
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the driver's process group (actors live elsewhere)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    state = json.loads((out / "runs" / "solo-tiny" / "run.json").read_text())
    assert state["status"] == "interrupted" and state["workers"]["tiny"]["status"] == "interrupted"
    pid = state["workers"]["tiny"]["pid"]
    gone = time.monotonic() + 60  # a bound for a busy host, not a measure
    while Path(f"/proc/{pid}").exists() and time.monotonic() < gone:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists(), "the actor outlived the interrupted run"
    kept = [r for r in read_jsonl(records) if not r["warmup"] and not r["load_only"]]
    assert 0 < len(kept) < ENDLESS
    assert written(out)["phases"]["solo"]["tiny"]["completed"] == len(kept)


@pytest.mark.ray
@pytest.mark.slow  # starts a Ray instance
def test_devices_lists_the_ray_cluster(tmp_path: Path, cli_env: dict, ray_address: str):
    proc = run_cli(["devices", "--ray-address", ray_address, "--json"], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    nodes = json.loads(proc.stdout.splitlines()[-1])["ray_nodes"]
    assert len(nodes) == 1 and nodes[0]["alive"] and nodes[0]["resources"]["CPU"] == 2.0
    table = run_cli(["devices", "--ray-address", ray_address], cli_env, tmp_path)
    assert f"Ray cluster at {ray_address}" in table.stdout and nodes[0]["node_id"][:8] in table.stdout
    bad = run_cli(["devices", "--ray-address", "127.0.0.1:1"], cli_env, tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --ray-address 127.0.0.1:1: nothing answers there")
