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


def test_devices_that_differ_get_the_service_that_only_fits_the_big_one():
    services = [service("big", 0.05, memory_gb=60), service("s1", 0.05, memory_gb=10),
                service("s2", 0.05, memory_gb=10)]
    small_first = [DeviceSpec(name="l4", memory_bytes=24 * GB, cores=4), DeviceSpec(name="h100", memory_bytes=80 * GB,
                                                                                      cores=16)]
    result = Placer(services, small_first, "min_devices", target=0.99).run()
    best = result.best
    assert best.feasible and best.devices_used == 1  # all three fit the 80 GB one: 80 >= 60 + 10 + 10
    assert best.groups[0].device == "h100"
    tight = [service("big", 0.05, memory_gb=70), *services[1:]]
    best = Placer(tight, small_first, "min_devices", target=0.99).run().best
    where = {s.service: g.device for g in best.groups for s in g.services}
    assert best.feasible and where["big"] == "h100" and best.devices_used == 2
    assert {where["s1"], where["s2"]} & {"l4"}  # the rest goes where it fits
    # the cores split follows the device's own count
    assert sum(s.cores for g in best.groups if g.device == "l4" for s in g.services) == pytest.approx(4)


def test_local_search_climbs_from_a_bad_start_to_the_optimum():
    services = [service("h1", 0.3), service("h2", 0.3), service("l1", 0.05), service("l2", 0.05)]
    placer = Placer(services, devices(2), "max_goodput", target=0.99)
    start = placer.place([["h1", "h2"], ["l1", "l2"]], "start")  # the two heavy ones together: one is shed
    assert start.goodput_req_s == pytest.approx(3.0)
    climbed = placer.local_search([["h1", "h2"], ["l1", "l2"]], "local")
    assert climbed.goodput_req_s == pytest.approx(4.0) and climbed.feasible
    assert climbed.goodput_req_s == pytest.approx(placer.run().optimum_goodput_req_s)


def test_a_devices_list_in_the_file_and_its_errors(tmp_path: Path):
    from colobench.errors import ColobenchError
    from colobench.place import load_placement, device_specs
    spec = {"devices": [{"name": "h100", "count": 2, "memory_gb": 80}, {"name": "l4", "count": 1, "memory_gb": 24}],
            "services": [{"name": "a", "profile": "a.profile.json", "rate": 1}]}
    (tmp_path / "p.yaml").write_text(json.dumps(spec))
    names = [(d.name, d.memory_bytes) for d in device_specs(load_placement(tmp_path / "p.yaml"))]
    assert names == [("h1000", 80 * GB), ("h1001", 80 * GB), ("l40", 24 * GB)]
    spec["devices"][1]["name"] = "h100"
    (tmp_path / "p.yaml").write_text(json.dumps(spec))
    with pytest.raises(ColobenchError, match="devices: two kinds named h100"):
        load_placement(tmp_path / "p.yaml")


def test_the_placement_page_draws_each_device_with_its_needs_and_escapes_names():
    from colobench.report.placement import placement_page
    services = [service("<b>h1</b>", 0.3, memory_gb=20), service("l1", 0.05, memory_gb=20)]
    result = Placer(services, devices(2), "min_devices", target=0.99).run()
    page = placement_page(result)
    assert "<b>h1</b>" not in page and "&lt;b&gt;h1&lt;/b&gt;" in page
    assert page.count("class='device'") == 2  # the one used and the one left free
    assert "height:25.0%" in page  # 20 of 80 GB needed
    assert "<script" not in page
