"""Placement from profiles (`analysis.placement`, `colobench place`): the partitions it searches,
planted services whose best placement is known, the baselines' mistakes, and the file's errors.
No run: every placement is judged by the predictor on planted profiles."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from colobench.analysis.placement import GB, DeviceSpec, Placer, Service, partitions

from test_predict import profile


def test_partitions_are_counted_by_bell_numbers_and_capped_by_devices():
    assert [sum(1 for _ in partitions(list("abcdef"[:n]), n)) for n in range(1, 7)] == [1, 2, 5, 15, 52, 203]
    assert all(len(p) <= 2 for p in partitions(list("abcd"), 2))
    assert sum(1 for _ in partitions(list("abcd"), 2)) == 8  # S(4,1) + S(4,2)


def service(name: str, compute: float, memory_gb: float = 10.0) -> Service:
    # fluid physics (no job sizes): a service alone has TPOT 5 ms (p99 6, max 6.5), and its SLO of
    # 10 ms holds while the partners' prefill share P keeps (1 - u) / (1 - u - P) x 6 under 10
    return Service(name=name, profile=profile(name, compute, 0.0, None, slo={"tpot_ms": 10.0}), rate=1.0,
                   memory_bytes=memory_gb * GB)


def devices(n: int, memory_gb: float = 80.0) -> list[DeviceSpec]:
    return [DeviceSpec(name=f"d{k}", memory_bytes=memory_gb * GB, cores=8) for k in range(n)]


def test_two_heavy_services_never_share_and_the_light_ones_fill_in():
    # heavy+heavy: (1 - 0.3) / (1 - 0.6) = 1.75 -> TPOT p99 10.5 ms, misses; a light one beside a
    # heavy one: (1 - 0.05) / (1 - 0.35) = 1.46 -> 8.8 ms, fits
    services = [service("h1", 0.3), service("h2", 0.3), service("l1", 0.05), service("l2", 0.05)]
    result = Placer(services, devices(4), "min_devices", target=0.99).run()
    best = result.best
    assert best.feasible and best.devices_used == 2
    for g in best.groups:
        assert sum(s.service.startswith("h") for s in g.services) == 1
    assert result.methods["greedy"].devices_used == 2 and result.methods["greedy"].feasible
    assert result.methods["separate"].devices_used == 4
    # memory alone packs everything on one device, and misses
    assert result.methods["memory_first_fit"].devices_used == 1 and not result.methods["memory_first_fit"].feasible
    assert result.runners_up and all(r.why for r in result.runners_up)


def test_memory_splits_follow_needs_and_cores_are_shared():
    services = [service("a", 0.05, memory_gb=20), service("b", 0.05, memory_gb=60)]
    best = Placer(services, devices(2, memory_gb=100), "min_devices", target=0.99).run().best
    assert best.devices_used == 1
    split = {s.service: s.memory_fraction for s in best.groups[0].services}
    assert split["a"] == pytest.approx(0.25) and split["b"] == pytest.approx(0.75)  # 20 + 5, 60 + 15 of 100
    assert sum(s.cores for s in best.groups[0].services) == pytest.approx(8)


def test_max_goodput_leaves_out_what_cannot_fit_on_the_devices_given():
    services = [service("h1", 0.3), service("h2", 0.3), service("h3", 0.3)]
    result = Placer(services, devices(2), "max_goodput", target=0.99).run()
    assert len(result.best.unplaced) == 1 and result.best.goodput_req_s == pytest.approx(2.0)
    assert result.optimum_goodput_req_s == pytest.approx(2.0)


def test_place_cli_reads_a_file_and_bad_input_is_one_line(tmp_path: Path, cli_env: dict):
    for name, compute in (("h1", 0.3), ("h2", 0.3), ("l1", 0.05)):
        p = profile(name, compute, 0.0, None, slo={"tpot_ms": 10.0})
        (tmp_path / f"{name}.profile.json").write_text(json.dumps(p.to_json()))
    spec = {"objective": "min_devices", "target": 0.99, "devices": {"count": 3, "memory_gb": 80},
            "services": [{"name": n, "profile": f"{n}.profile.json", "rate": 1, "memory_gb": 10}
                         for n in ("h1", "h2", "l1")]}
    (tmp_path / "p.yaml").write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, "-m", "colobench", "place", str(tmp_path / "p.yaml"), "--json"],
                          capture_output=True, text=True, env=cli_env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["best"]["devices_used"] == 2 and data["best"]["feasible"] is True
    bad = {**spec, "services": [{**spec["services"][0], "rate": -1}]}
    (tmp_path / "bad.yaml").write_text(json.dumps(bad))
    proc = subprocess.run([sys.executable, "-m", "colobench", "place", str(tmp_path / "bad.yaml")],
                          capture_output=True, text=True, env=cli_env, timeout=120)
    assert proc.returncode == 2 and "services.0.rate" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
