"""Predicting co-location from solo profiles: the shared device's per-model costs, hidden penalties
and work counters on a virtual clock; the predictor's physics and curve correction on planted
profiles; the region; pressure probes; and, through the CLI against a fake shared device, planted
demands recovered from a characterisation and the prediction beside a measured co-located run.
No real time is asserted."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from colobench import api
from colobench.analysis.instance_profile import (Demand, InstanceProfile, Latency, LoadFacts, Quantiles,
                                                 SensitivityLevel)
from colobench.analysis.predict import Load, predict, predict_instance, predict_region, wait_quantile
from colobench.devices.pressure import DevicePressure
from colobench.loadgen.pressure import run_probe
from colobench.serve.shared_device import SharedDevice

from test_shared_device import run_to_idle

FIXTURES = Path(__file__).parent / "fixtures" / "rundir_v1"


# ---- the device: costs, penalties, counters ------------------------------------------------------

def test_model_costs_scale_prefill_and_decode_and_the_counters_count_nominal_work():
    device = SharedDevice(decode_tok_s=1000, prefill_tok_s=10_000, itl_s=0.0, keep_token_times=True,
                          model_costs={"big": (2.0, 3.0)})
    big = device.add_request("big", 100, 11)
    run_to_idle(device)
    assert big.first_token_s == pytest.approx(2 * 100 / 10_000)  # prefill of 100 tokens at twice the cost
    assert big.finished_s - big.first_token_s == pytest.approx(10 * 3 / 1000)  # 10 decoded tokens at 3x
    prefill_s, decode_s = device.work_s["big"]
    assert prefill_s == pytest.approx(0.02) and decode_s == pytest.approx(0.03)


def test_the_cross_model_penalty_slows_two_models_decoding_together_but_not_one_and_counters_ignore_it():
    def tpot(models: list[str]) -> tuple[float, dict]:
        device = SharedDevice(decode_tok_s=1e6, prefill_tok_s=1e9, itl_s=0.01, keep_token_times=True,
                              cross_model_penalty=0.5)
        reqs = [device.add_request(m, 1, 21) for m in models]
        run_to_idle(device)
        return (reqs[0].finished_s - reqs[0].first_token_s) / 20, device.work_s

    alone, _ = tpot(["a", "a"])
    together, work = tpot(["a", "b"])
    assert alone == pytest.approx(0.01) and together == pytest.approx(0.015)
    assert work["a"][1] == pytest.approx(20 / 1e6) and work["b"][1] == pytest.approx(20 / 1e6)


def test_crowding_divides_the_budget_past_k_streams():
    device = SharedDevice(decode_tok_s=100, prefill_tok_s=1e9, itl_s=0.0, crowding_penalty=1.0, crowding_streams=2)
    reqs = [device.add_request("a", 1, 11) for _ in range(4)]
    run_to_idle(device)
    # 4 streams > K = 2: budget 100 / (1 + 1 x 2/2) = 50 tok/s shared by 4 -> 12.5 tok/s each
    assert reqs[0].finished_s - reqs[0].first_token_s == pytest.approx(10 / 12.5)


# ---- the predictor on planted profiles -----------------------------------------------------------

def profile(name: str, compute: float, bandwidth: float, rate: float | None, ttft_ms: float = 10.0, tpot_ms: float = 5.0,
            slo: dict | None = None, sensitivity: dict | None = None, mode: str = "open") -> InstanceProfile:
    q = lambda v: Quantiles(mean=v, min=v * 0.9, p50=v, p90=v * 1.1, p99=v * 1.2, max=v * 1.3)  # noqa: E731
    return InstanceProfile(
        instance=name, model=name, backend="openai", device="endpoint", slo=slo,
        load=LoadFacts(mode=mode, request_rate=rate, output_tok_s=(rate or 1.0) * 32, mean_output_tokens=32),
        latency=Latency(ttft_ms=q(ttft_ms), tpot_ms=q(tpot_ms), e2el_ms=q(ttft_ms + 31 * tpot_ms)),
        demand={"compute": Demand(value=compute, unit="share", source="planted"),
                "memory_bandwidth": Demand(value=bandwidth, unit="share", source="planted")},
        sensitivity=sensitivity or {})


def test_time_slicing_physics_gives_the_processor_sharing_factor_and_names_the_driver():
    # no request rate: no job sizes, so the fluid processor-sharing factor
    a, b = profile("a", 0.1, 0.2, None), profile("b", 0.3, 0.1, None)
    pred = predict([a, b])
    # TPOT of a under b's prefill: (1 - 0.1) / (1 - 0.1 - 0.3); the budget (0.3 of 0.6 left) does not bind
    assert pred.instances["a"].slowdown["tpot_p50"] == pytest.approx(0.9 / 0.6)
    assert pred.instances["a"].driver == "compute"
    assert "30% of the time" in pred.instances["a"].driver_sentence
    assert pred.instances["a"].slowdown["output_throughput"] == 1.0  # an open loop keeps its rate
    lo, hi = pred.instances["a"].intervals["tpot_p50"]
    assert lo < 0.9 / 0.6 < hi


def simulated_tpot_p50_ms(arrivals: dict[str, tuple[float, int, int]], seed: int = 3, span_s: float = 400.0,
                          measured: str = "a") -> float:
    """TPOT p50 of model `measured` on the shared device (virtual clock, Poisson arrivals):
    {model: (rate, prompt tokens, output tokens)}; prefill 10,000 tok/s, a budget that never
    binds, a 5 ms cap per stream."""
    import random
    import statistics
    rng = random.Random(seed)
    device = SharedDevice(decode_tok_s=1e7, prefill_tok_s=10_000, itl_s=0.005)
    events = []
    for model, (rate, prompt, output) in arrivals.items():
        t = 0.0
        while t < span_s:
            t += rng.expovariate(rate)
            events.append((t, model, prompt, output))
    requests = []
    for t, model, prompt, output in sorted(events):
        device.advance(t - device.now_s)
        requests.append((model, device.add_request(model, prompt, output)))
    run_to_idle(device)
    return statistics.median((r.finished_s - r.first_token_s) / (r.output_tokens - 1) * 1e3
                             for m, r in requests if m == measured)


def test_planted_prefill_pressure_on_the_device_is_recovered_by_the_stall_physics():
    # a: 3 req/s of 200-token prompts (20 ms prefill) and 41 tokens; b: 3 req/s of 1,000-token
    # prompts (100 ms) and 2 tokens, so b is almost all prefill (30% of the device)
    from colobench.analysis.predict import tpot_with_stalls_ms
    alone = simulated_tpot_p50_ms({"a": (3.0, 200, 41)})
    together = simulated_tpot_p50_ms({"a": (3.0, 200, 41), "b": (3.0, 1000, 2)})
    own, partner = Load(share=3 * 0.02, job_s=0.02), Load(share=3 * 0.1, job_s=0.1)
    predicted = tpot_with_stalls_ms(alone, 40, [own], [own, partner], 0.5) / alone
    assert together / alone > 1.3  # the planted pressure is real
    assert predicted == pytest.approx(together / alone, rel=0.15)


def test_prefill_waits_follow_the_m_g_1_queue():
    # one load of share 0.5 with 0.1 s jobs: mean wait 0.5 x 0.05 / 0.5 = 0.05 s; tail rho exp(-w/theta)
    assert wait_quantile([Load(share=0.5, job_s=0.1)], 0.99) == pytest.approx(0.1 * math.log(0.5 / 0.01))
    assert wait_quantile([Load(share=0.3, job_s=0.1)], 0.5) == 0.0  # most requests do not wait
    assert wait_quantile([Load(share=1.0, job_s=0.1)], 0.5) == math.inf


def test_saturation_is_flagged_and_throughput_capped():
    pred = predict([profile("a", 0.5, 0.1, 2.0), profile("b", 0.6, 0.1, 2.0)])
    a = pred.instances["a"]
    assert a.saturated and a.slowdown["output_throughput"] < 1.0 and "(saturated)" not in a.driver_sentence


def test_a_curve_corrects_the_physics_by_what_the_probe_measured():
    # the instance's probe runs showed 1.5x at a pressure where physics says (1 - 0.1) / (1 - 0.1 - 0.3) = 1.5
    # for compute; for bandwidth, 1.3x at 0.5 where physics says 1.0 (a hidden cost): both kept
    curve = {"memory_bandwidth": [SensitivityLevel(nominal=0.5, level=0.5, slowdown={"tpot_p50": 1.3},
                                                   intervals={"tpot_p50": (1.25, 1.35)})]}
    a = profile("a", 0.1, 0.2, None, sensitivity=curve)
    pred = predict([a, profile("b", 0.0, 0.25, None)])
    inst = pred.instances["a"]
    bw = next(e for e in inst.effects if e.resource == "memory_bandwidth")
    # halfway to the measured level: correction 1 + (1.3 - 1) x 0.25 / 0.5 = 1.15 over physics 1.0
    assert bw.factor["tpot_p50"] == pytest.approx(1.15) and bw.method == "curve"
    assert inst.driver == "memory_bandwidth"


def test_slo_verdict_meets_misses_and_attainment_from_the_scaled_quantiles():
    # TPOT 5 ms alone (max 6.5): about 1x under a light partner, twice and more under a heavy one;
    # physics alone carries a wide interval (its error on the benchmark: 0.32 on the log scale)
    meets = predict([profile("a", 0.05, 0.1, 1.0, slo={"tpot_ms": 20.0}), profile("b", 0.05, 0.1, 1.0)]).instances["a"]
    close = predict([profile("a", 0.05, 0.1, 1.0, slo={"tpot_ms": 7.0}), profile("b", 0.05, 0.1, 1.0)]).instances["a"]
    misses = predict([profile("a", 0.1, 0.1, 1.0, slo={"tpot_ms": 7.0}), profile("b", 0.5, 0.1, 1.0)]).instances["a"]
    assert meets.slo_verdict == "meets" and meets.slo_attainment == 1.0
    assert close.slo_verdict == "inconclusive"  # met at the point value, not at the interval's slow end
    assert misses.slo_verdict == "misses" and misses.slo_attainment < 0.5


def test_a_closed_loop_loses_throughput_as_its_requests_slow():
    pred = predict([profile("a", 0.1, 0.1, None, mode="closed"), profile("b", 0.3, 0.1, None)])
    assert pred.instances["a"].slowdown["output_throughput"] == pytest.approx(1 / 1.5, rel=0.05)


def test_the_region_of_two_instances_at_their_device_capacity_is_perfect_sharing():
    # each request costs 0.1 s of compute: device capacity 10 req/s each, the SLO capacity the same
    a, b = profile("a", 0.2, 0.0, 2.0), profile("b", 0.2, 0.0, 2.0)
    region = predict_region([a, b], {"a": 10.0, "b": 10.0}, [0.25, 0.5, 0.75])
    assert [p.load for p in region.boundary] == pytest.approx([1.0, 1.0, 1.0], rel=1e-3)
    # an SLO capacity half the device's: the partner leaves room, sharing gains
    half = predict_region([a, b], {"a": 5.0, "b": 5.0}, [0.5])
    assert half.boundary[0].load == pytest.approx(4 / 3, rel=1e-3)


def test_two_profiles_of_one_name_are_refused():
    with pytest.raises(ValueError, match="rename one"):
        predict([profile("a", 0.1, 0.1, 1.0), profile("a", 0.1, 0.1, 1.0)])


# ---- probes -------------------------------------------------------------------------------------

def test_a_device_pressure_kernel_runs_its_duty_cycle_on_the_cpu_through_the_devices_layer():
    pytest.importorskip("torch")
    probe = DevicePressure("cpu", "compute", 0.5, matmul_n={"compute": 64})
    probe.start()
    time.sleep(0.3)
    result = probe.stop()
    assert 0 < result["duty"] <= 1 and "error" not in result
    with pytest.raises(ValueError, match="duty cycle"):
        DevicePressure("cpu", "compute", 1.5)


def test_a_host_cpu_probe_says_when_it_presses_and_what_it_achieved():
    lines = []
    result = run_probe("host", "host_cpu", 0.5, lines.append, duration_s=0.5)
    assert lines[0]["ready"] is True and lines[0]["processes"] == 1
    assert result["resource"] == "host_cpu" and result["achieved"] > 0 and "CPU seconds" in result["source"]
    with pytest.raises(ValueError, match="host_cpu"):
        run_probe("host", "compute", 0.5, lines.append, duration_s=0.1)


# ---- prediction beside measurement (old run directories, no new run) ---------------------------

def test_a_co_located_run_carries_its_prediction_beside_the_measurement(tmp_path: Path):
    copy = Path(shutil.copytree(FIXTURES / "tiny-pair", tmp_path / "tiny-pair"))
    summary = api.summarize(copy)
    point = summary.point()
    assert set(point.interference.predicted) == set(point.interference.slowdown)
    for name, pred in point.interference.predicted.items():
        measured = point.interference.slowdown[name].tpot_p50
        assert pred.error_pct["tpot_p50"] == pytest.approx((pred.slowdown["tpot_p50"] / measured - 1) * 100)
        assert pred.method == "physics" and pred.driver == "host_cpu"
    # the headline card (console and HTML) says it under the measured line
    from colobench.report.cards import cards
    from colobench.report.html import cards_html
    lines = [i.predicted for c in cards(summary) for i in c.instances]
    assert lines and all(line and "from the solo profiles (physics; off by" in line for line in lines)
    assert lines[0].split(";")[0] in cards_html(cards(summary), {})
    # every solo phase's profile is written and listed
    assert set(summary.profiles) == set(point.phases["solo"])
    for rel in summary.profiles.values():
        data = json.loads((copy / rel).read_text())
        assert data["schema"] == "colobench.profile/1" and "host_cpu" in data["demand"]


# ---- through the CLI, against a fake shared device -----------------------------------------------

PX, DX, PROMPT, OUTPUT, RATE = 2.0, 1.5, 400, 21, 8.0
M_TOK_S, N_TOK_S = 40_000.0, 4_000.0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_characterize_recovers_planted_demands_and_predict_reads_the_profiles(tmp_path: Path, fake_server,
                                                                                cli_env: dict):
    base, _ = fake_server("--models", "a,b,probe", "--decode-tok-s", str(N_TOK_S), "--prefill-tok-s", str(M_TOK_S),
                          "--itl-ms", "2", "--model-costs", f"a={PX}:{DX}", "--no-prefix-cache")
    inst = {"backend": "openai", "base_url": base, "slo": {"tpot_ms": 50, "ttft_ms": 500},
            "workload": {"prompt_tokens": PROMPT, "output_tokens": OUTPUT, "rate": RATE, "arrival": "poisson"}}
    spec = {"name": "planted", "repetitions": 3, "workload": {"duration_s": 1.5},
            "instances": [{**inst, "name": "a", "model": "a"}, {**inst, "name": "b", "model": "b"}]}
    (tmp_path / "e.yaml").write_text(json.dumps(spec))
    out = tmp_path / "ch"
    proc = subprocess.run([sys.executable, "-m", "colobench", "characterize", str(tmp_path / "e.yaml"), "-o", str(out),
                           "--probe-model", "probe", "--probe", "compute=0.2"], capture_output=True, text=True,
                          env=cli_env, timeout=500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = InstanceProfile.from_json(json.loads((out / "profiles" / "a.profile.json").read_text()))
    b = InstanceProfile.from_json(json.loads((out / "profiles" / "b.profile.json").read_text()))
    # demand per request recovered from the device's counters: a's planted cost, b's unit cost
    assert a.per_request("compute") == pytest.approx(PX * PROMPT / M_TOK_S, rel=0.2)
    assert a.per_request("memory_bandwidth") == pytest.approx(DX * (OUTPUT - 1) / N_TOK_S, rel=0.2)
    assert b.per_request("compute") == pytest.approx(PROMPT / M_TOK_S, rel=0.2)
    level = a.sensitivity["compute"][0]
    assert level.nominal == 0.2 and level.level > 0 and level.probe_job_s is not None
    assert level.slowdown["tpot_p50"] is not None
    outcome = json.loads((out / "characterize.json").read_text())["probes"][0]
    assert "own counter" in outcome["source"] and outcome["error"] is None

    shown = subprocess.run([sys.executable, "-m", "colobench", "predict", str(out)], capture_output=True, text=True,
                           env=cli_env, timeout=120)
    assert shown.returncode == 0 and "predicted co-location" in shown.stdout, shown.stderr
    as_json = subprocess.run([sys.executable, "-m", "colobench", "predict", str(out / "profiles" / "a.profile.json"),
                              str(out / "profiles" / "b.profile.json"), "--json", "--rate", "a=4"],
                             capture_output=True, text=True, env=cli_env, timeout=120)
    data = json.loads(as_json.stdout)
    assert data["schema"] == "colobench.prediction/1" and data["instances"]["a"]["rate"] == 4.0
    # at half the rate a's own prefill share halves
    own = next(e for e in data["instances"]["a"]["effects"] if e["resource"] == "compute")["own"]
    assert own == pytest.approx(a.demand_of("compute") / 2, rel=0.2)


@pytest.mark.parametrize("args, message", [
    (["predict", "{one}"], "a co-location needs two or more"),
    (["predict", "{missing}", "{one}"], "no such file or folder"),
    (["predict", "{bad}", "{one}"], "not a colobench profile"),
    (["predict", "{one}", "{one2}", "--rate", "a=fast"], "--rate 'a=fast'"),
    (["predict", "{one}", "{one2}", "--rate", "zz=1"], "--rate names no profiled instance: zz"),
    (["characterize", "-m", "tiny", "--probe", "bogus=1"], "unknown resource 'bogus'"),
    (["characterize", "-m", "tiny", "--probe", "host_cpu=0"], "levels must be > 0"),
])
def test_bad_input_to_predict_and_characterize_is_one_line(tmp_path: Path, cli_env: dict, args: list, message: str):
    p = profile("a", 0.1, 0.1, 1.0)
    (tmp_path / "a.profile.json").write_text(json.dumps(p.to_json()))
    (tmp_path / "b.profile.json").write_text(json.dumps(p.model_copy(update={"instance": "b"}).to_json()))
    (tmp_path / "bad.profile.json").write_text('{"schema": "something else"}')
    names = {"one": tmp_path / "a.profile.json", "one2": tmp_path / "b.profile.json",
             "missing": tmp_path / "nowhere", "bad": tmp_path / "bad.profile.json"}
    argv = [a.format(**names) for a in args]
    proc = subprocess.run([sys.executable, "-m", "colobench", *argv, *(["-o", str(tmp_path / "o")]
                                                                          if argv[0] == "characterize" else [])],
                          capture_output=True, text=True, env=cli_env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_colocated_false_plans_solo_baselines_only():
    from colobench.errors import SpecError
    from colobench.plan import plan_experiment
    from colobench.specs import experiment_from_dict

    fake = {"backend": "fake", "model": "fake"}
    spec = experiment_from_dict({"name": "s", "colocated": False, "instances": [{**fake, "name": "a"},
                                                                                 {**fake, "name": "b"}]}, "t")
    assert [r.run_id for r in plan_experiment(spec).runs] == ["solo-a", "solo-b"]
    with pytest.raises(SpecError, match="nothing to run"):
        experiment_from_dict({"name": "s", "colocated": False, "solo_baselines": False,
                              "instances": [{**fake, "name": "a"}, {**fake, "name": "b"}]}, "t")


def test_endpoints_without_device_counters_get_no_prediction_rather_than_a_confident_one(tmp_path: Path):
    copy = Path(shutil.copytree(FIXTURES / "endpoint", tmp_path / "endpoint"))
    summary = api.summarize(copy, write=False)
    predicted = summary.point().interference.predicted
    assert predicted and all(p.method == "unmeasured" and not p.slowdown for p in predicted.values())
    from colobench.report.cards import cards
    assert all(i.predicted.startswith("no prediction: the solo profiles measured no shared demand")
               for c in cards(summary) for i in c.instances)


def test_a_rate_past_the_profiled_one_queues_behind_its_own_extra_requests():
    a = profile("a", 0.1, 0.0, 10.0, slo={"tpot_ms": 10.0})  # 10 ms of prefill a request
    same = predict_instance(a, [], {"a": 10.0})
    assert all(v == pytest.approx(1.0) for v in same.slowdown.values())
    below = predict_instance(a, [], {"a": 5.0})  # below the profile: its measured figures stand
    assert all(v == pytest.approx(1.0) for v in below.slowdown.values())
    twice = predict_instance(a, [], {"a": 20.0})
    assert twice.slowdown["ttft_p99"] > 1.2 and twice.slowdown["tpot_p50"] > 1.1  # the extra prefills queue and pause
    partner = profile("b", 0.1, 0.0, 10.0)
    # the extra load of itself weighs like a partner of its shape at the same extra rate
    beside = predict_instance(a, [partner], {"a": 10.0, "b": 10.0})
    assert twice.slowdown == pytest.approx(beside.slowdown, rel=0.02)


def test_host_cores_are_a_queue_for_arrivals_and_a_fluid_for_busy_workers():
    from colobench.analysis.predict import physics_factor
    own, partner = Load(share=0.3), Load(share=0.3)
    # one core, Poisson arrivals: processor sharing, (1 - 0.3) / (1 - 0.6)
    assert physics_factor("host_cpu", "tpot_p50", own, [partner], 1.0, queued=True)[0] == pytest.approx(1.75)
    # the same on 16 cores waits almost never
    assert physics_factor("host_cpu", "tpot_p50", own, [partner], 16.0, queued=True)[0] == pytest.approx(1.0, abs=1e-6)
    # past the cores: saturated
    assert physics_factor("host_cpu", "ttft_p99", own, [Load(share=0.8)], 1.0, queued=True) == (5.0, True)
    # workers always busy (a closed loop): each wants its cores, nothing waits while they fit
    assert physics_factor("host_cpu", "tpot_p50", Load(share=1.0), [Load(share=1.0)], 2.0) == (1.0, False)
    assert physics_factor("host_cpu", "tpot_p50", Load(share=1.0), [Load(share=1.0)], 1.0)[0] == pytest.approx(2.0)
