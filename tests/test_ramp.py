"""Ramped open loops: a rate that grows within each repetition (in steps, or along a line), and
each step's rate and latency reported. Counts are checked, never timings."""

from __future__ import annotations

import numpy as np
import pytest

from colobench.workload.arrivals import ramp_offsets_s, ramp_rates


def test_step_ramp_sends_each_steps_rate():
    assert ramp_rates(10, 40, 4) == [10, 20, 30, 40]
    offsets = ramp_offsets_s(10, 40, duration_s=8, steps=4, shape="step", seed=3)
    assert np.all(np.diff(offsets) >= 0) and offsets[0] == 0 and offsets[-1] < 8
    per_step = np.histogram(offsets, bins=[0, 2, 4, 6, 8])[0].tolist()
    assert per_step == [20, 40, 60, 80]  # each step's rate x its 2 s, exactly


def test_linear_ramp_grows_along_a_line():
    offsets = ramp_offsets_s(10, 90, duration_s=10, steps=4, shape="linear", seed=1)
    assert abs(len(offsets) - 500) <= 1 and offsets[-1] < 10  # the mean rate (50/s) x 10 s
    halves = np.histogram(offsets, bins=[0, 5, 10])[0]
    # expected 150 in the first half (10 -> 50/s) and 350 in the second (50 -> 90/s)
    assert 110 < halves[0] < 190 and 310 < halves[1] < 390
    flat = ramp_offsets_s(20, 20, duration_s=5, steps=2, shape="linear", seed=1)
    assert abs(len(flat) - 100) <= 1


def test_ramp_flag_and_its_checks():
    from pydantic import ValidationError

    from conftest import flag_spec
    from colobench.specs.models import WorkloadSpec

    spec, _ = flag_spec(["tiny"], {"--rate": "5", "--duration": "10", "--ramp": "40:8:linear"})
    ramp = spec.workload.ramp
    assert (ramp.to_rate, ramp.steps, ramp.shape) == (40, 8, "linear")
    with pytest.raises(ValidationError, match="a ramp needs an open loop with a start rate and a duration"):
        WorkloadSpec(rate=5, ramp={"to_rate": 40})


def test_a_ramped_run_reports_each_step(tmp_path):
    from colobench import api
    from colobench.specs import experiment_from_dict

    spec = experiment_from_dict({
        "name": "ramp", "repetitions": 2,
        "instances": [{"name": "a", "model": "fake", "backend": "fake", "fake": {"ttft_ms": 1, "tpot_ms": 1}}],
        "workload": {"rate": 10, "duration_s": 2, "output_tokens": 2, "concurrency": 32,
                     "ramp": {"to_rate": 40, "steps": 2}}}, "t")
    mt = api.run_experiment(spec, out=tmp_path / "ramp").summary.point().metrics("solo", "a")
    assert mt.open_loop.requested_rate == 25  # the ramp's mean
    steps = [(s.step, s.requested_rate, s.completed, s.achieved_rate) for s in mt.by_step]
    # 1 s at 10/s then 1 s at 40/s, twice: 20 and 80 requests
    assert steps == [(1, 10, 20, 10), (2, 40, 80, 40)]


@pytest.mark.slow
def test_load_sweep_on_the_fake_shared_device(tmp_path, cli_env):
    """`run --profile sweep`: the synchronous and throughput steps, then rates evenly between, for
    both instances alone and co-located; every step a run directory; the curve and the knee in
    load_sweep.json and on the console. (How close the knee comes to the device's computed
    capacity is a benchmark figure, not asserted: it rests on this host's timing.)"""
    import json

    from conftest import run_cli
    from test_capacity import _shared_device_experiment

    exp = _shared_device_experiment(tmp_path / "e.yaml")
    out = tmp_path / "sweep"
    proc = run_cli(["run", str(exp), "--profile", "sweep", "--profile-steps", "2", "--duration", "1",
                    "--repetitions", "1", "-o", str(out)], cli_env, tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = json.loads((out / "load_sweep.json").read_text())
    steps = [f.name for f in sorted((out / "steps").iterdir())]
    assert steps == ["01-synchronous", "02-throughput", "03-rate-1", "04-rate-2", "05-together-1", "06-together-2"]
    assert all((out / "steps" / s / "summary.json").is_file() for s in steps)
    for name in ("a", "b"):
        points = sweep["points"][name]
        assert [(p["step"], p["phase"]) for p in points] == [
            (s, ph) for s in ("synchronous", "throughput", "rate-1", "rate-2") for ph in ("solo", "colocated")] + [
            ("together-1", "colocated"), ("together-2", "colocated")]
        sync, peak = points[0]["achieved_rate"], points[2]["achieved_rate"]
        rates = [p["requested_rate"] for p in points if p["phase"] == "solo" and p["requested_rate"] is not None]
        assert len(rates) == 2 and sync < rates[0] < rates[1] < max(peak, rates[1] + 1e-9)
        assert set(sweep["knee"][name]) == {"solo", "colocated"}
    assert "load sweep: a" in proc.stdout and "knee (the highest rate" in proc.stdout
    bad = run_cli(["run", str(exp), "--profile", "ramp", "-o", str(tmp_path / "x")], cli_env, tmp_path)
    assert bad.returncode == 2 and "the one load profile is sweep" in bad.stderr
