"""`colobench place --verify` (`place_verify`): profiles from a run of managed fake servers, the
placement started from them (servers pinned to the cores the placement gave them, the memory flag
passed), measured against the prediction, fed back into the profiles, and a service predicted to
meet that measurably misses named with a non-zero exit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from colobench.analysis.placement import GB, DeviceSpec
from colobench.place_verify import _core_split

from conftest import run_cli

FAKE = [sys.executable, "-m", "colobench", "fake-server", "--port", "{port}", "--ttft-ms", "2"]


def test_cores_are_split_by_share_and_shared_when_too_few():
    device = DeviceSpec(name="d", memory_bytes=GB, cores=4, core_ids=[4, 5, 6, 7])
    assert _core_split(device, [3.0, 1.0]) == [[4, 5, 6], [7]]
    assert _core_split(device, [None, None]) == [[4, 5], [6, 7]]
    assert _core_split(device, [10.0, 0.01, 0.01]) == [[4, 5], [6], [7]]  # every service at least one core
    one = DeviceSpec(name="d", memory_bytes=GB, cores=1, core_ids=[0])
    assert _core_split(one, [1.0, 1.0]) == [[0], [0]]  # one core: shared
    assert _core_split(DeviceSpec(name="d", memory_bytes=GB), [1.0]) == [None]


def profile_run(tmp_path: Path, cli_env: dict, cache_dir: Path) -> Path:
    exp = tmp_path / "three.yaml"
    servers = [{"name": f"s{k}", "command": [*FAKE, "--itl-ms", str(itl)]} for k, itl in enumerate((2, 3, 4))]
    exp.write_text(json.dumps({
        "name": "three", "repetitions": 1, "colocated": False, "cache_dir": str(cache_dir),
        "telemetry": {"idle_s": 0, "host_interval_s": 0.2},
        "workload": {"duration_s": 2, "prompt_tokens": 16, "output_tokens": 8, "rate": 5, "arrival": "poisson"},
        "servers": servers,
        "instances": [{"name": n, "backend": "openai", "server": f"s{k}", "model": "fake-model",
                       "slo": {"tpot_ms": 50}} for k, n in enumerate(("chat", "code", "tiny"))]}))
    proc = run_cli(["run", str(exp), "-o", str(tmp_path / "prof")], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "prof"


@pytest.mark.slow
def test_verify_runs_the_placement_pinned_and_feeds_the_measurement_back(tmp_path: Path, cli_env: dict,
                                                                        cache_dir: Path):
    profile_run(tmp_path, cli_env, cache_dir)
    place = tmp_path / "place.yaml"
    place.write_text(json.dumps({
        "objective": "min_devices", "target": 0.9, "verify": {"duration_s": 2},
        "devices": {"name": "core", "count": 2, "memory_gb": 4, "cores": 1},
        "services": [{"name": "chat", "profile": "prof/profiles/chat.profile.json", "rate": 5, "memory_gb": 2,
                      "memory_arg": "jitter_ms"},
                     {"name": "code", "profile": "prof/profiles/code.profile.json", "rate": 5, "memory_gb": 1},
                     {"name": "tiny", "profile": "prof/profiles/tiny.profile.json", "rate": 5, "memory_gb": 1}]}))
    out = tmp_path / "verify"
    proc = run_cli(["place", str(place), "--verify", "-o", str(out), "--json"], cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    placed = {s["service"]: g["device"] for g in data["best"]["groups"] for s in g["services"]}
    rows = {r["service"]: r for r in data["verify"]["services"]}
    assert set(rows) == {"chat", "code", "tiny"} and not data["verify"]["missed"]
    for name, row in rows.items():
        assert row["device"] == placed[name] and row["cores"] == [0 if placed[name] == "core0" else 1]
        assert row["measured_requests"] > 3 and row["measured_verdict"] in ("meets", "inconclusive")
        assert row["measured_slowdown"]["tpot_p50"] > 0
    # each server started pinned to its device's core, the memory flag passed to the one that names it
    servers = {s["name"]: s for s in json.loads((out / "run" / "manifest.json").read_text())["servers"]}
    assert set(servers) == {"chat-server", "code-server", "tiny-server"}
    for name, s in servers.items():
        assert s["pinned_cores"] == rows[name.removesuffix("-server")]["cores"]
    chat = servers["chat-server"]["command"]
    assert chat[chat.index("--jitter-ms") + 1] == f"{rows['chat']['memory_fraction']:.3f}".rstrip("0")
    assert "memory split not applied" not in rows["chat"]["memory_applied"]
    assert rows["code"]["memory_applied"].startswith("not applied")
    # fed back: every profile gained the co-location it ran in; the new placement file plans from them
    fed = json.loads((out / "profiles" / "chat.profile.json").read_text())
    (seen,) = fed["observed"]
    assert sorted(seen["partners"]) == sorted(n for n in rows if placed[n] == placed["chat"] and n != "chat")
    again = run_cli(["place", str(out / "placement.yaml"), "--json"], cli_env, tmp_path)
    assert again.returncode == 0, again.stderr
    page = (out / "placement.html").read_text()
    assert "core0" in page and "measured" in page and "<script" not in page


@pytest.mark.slow
def test_a_service_predicted_to_meet_that_misses_is_named_and_fails_the_command(tmp_path: Path, cli_env: dict,
                                                                                cache_dir: Path):
    prof = profile_run(tmp_path, cli_env, cache_dir)
    # the profile is doctored: it claims a TPOT of 0.5 ms where the server takes 2 ms a token
    path = prof / "profiles" / "chat.profile.json"
    doctored = json.loads(path.read_text())
    doctored["latency"]["tpot_ms"] = {k: 0.5 for k in ("mean", "min", "p50", "p90", "p99", "max")}
    path.write_text(json.dumps(doctored))
    place = tmp_path / "place.yaml"
    place.write_text(json.dumps({
        "target": 0.9, "verify": {"duration_s": 2}, "devices": {"count": 1, "memory_gb": 4},
        "services": [{"name": "chat", "profile": "prof/profiles/chat.profile.json", "rate": 5,
                      "slo": {"tpot_ms": 1.0}, "memory_gb": 1}]}))
    out = tmp_path / "verify"
    proc = run_cli(["place", str(place), "--verify", "-o", str(out)], cli_env, tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "misses its SLO when run: chat" in proc.stdout
    row = json.loads((out / "verify.json").read_text())["services"][0]
    assert row["predicted_verdict"] == "meets" and row["measured_verdict"] == "misses" and row["false_meet"]
