"""Planted causes in synthetic records and telemetry: each produces the right finding with the
right evidence window, and clean data produces none."""

from __future__ import annotations

import numpy as np
import pytest

from colobench.analysis.telemetry import device_window
from colobench.analysis.checks import phase_checks, validity
from colobench.analysis.diagnosis import detectors as d
from colobench.analysis.diagnosis import rank
from colobench.analysis.distribution import difference_is_significant
from colobench.analysis.model import Check, DeviceWindow, HostWindow, InstanceFacts, Stat, Subject
from colobench.analysis.phase import instance_phase_metrics
from colobench.records import RequestRecord

S = 1_000_000_000
MS = 1_000_000


def records(start_s=0.0, n=60, ttft_ms=20.0, itl_ms=10.0, tokens=32, stalls=None, rng_seed=0, name="a",
            jitter_ms=0.2, prompt_tokens=128, warmup=False, gap_ms=1.0):
    """Back-to-back requests; `stalls(t_ns) -> extra_ns` adds delay to the step starting at t."""
    rng = np.random.default_rng(rng_seed)
    out, t = [], int(start_s * S)
    for k in range(n):
        submit = t
        tok = [submit + int(ttft_ms * MS)]
        for _ in range(tokens - 1):
            step = int((itl_ms + rng.normal(0, jitter_ms)) * MS)
            step += stalls(tok[-1]) if stalls else 0
            tok.append(tok[-1] + step)
        out.append(RequestRecord(instance=name, run_id="r", repetition=0 if warmup else 1, request_id=k, batch_id=k,
                                 batch_size=1, prompt_tokens=prompt_tokens, output_tokens=tokens, submit_ns=submit,
                                 token_ns=tok, done_ns=tok[-1], warmup=warmup))
        t = tok[-1] + int(gap_ms * MS)
    return out


FACTS = InstanceFacts(model="m", backend="transformers", device="cuda:0", dtype="bfloat16", cpu_threads=1, workload={})


def phase(recs, phase_name="solo", name="a", device="cuda:0", samples=None, gc=None, warm=None, extra=None):
    metrics = instance_phase_metrics(recs + (warm or [])).model_copy(update=extra or {})
    return d.PhaseData(point="", run_id=f"{phase_name}-run", phase=phase_name, name=name, device=device,
                       backend="transformers", records=[r for r in recs if r.ok], warmup=warm or [], metrics=metrics,
                       facts=FACTS, samples=samples or [], gc=gc or [],
                       origin_ns=min(r.submit_ns for r in recs), logical_cores=8)


def windows_ns(f):
    return [[w.start_ns, w.end_ns] for w in f.windows]


def verdict(recs):
    """The validity of one solo phase made of `recs`."""
    mt = instance_phase_metrics(recs)
    return validity(mt, phase_checks("", "solo", "a", mt, recs))


def all_findings(point: d.PointData):
    """Every registered detector over one point, as the diagnosis runs them."""
    out = [f for detector in d.POINT_DETECTORS for f in detector(point)]
    out += [f for p in point.phases.values() for detector in d.PHASE_DETECTORS for f in detector(p)]
    return out + [f for detector in d.SWEEP_DETECTORS for f in detector([point])]


def clean_point() -> d.PointData:
    point = d.PointData("", {})
    point.phases[("solo", "a")] = phase(records(), warm=records(n=1, warmup=True))
    point.phases[("colocated", "a")] = phase(records(start_s=100), "colocated", warm=records(n=1, warmup=True))
    return point


def test_clean_data_has_no_finding():
    assert all_findings(clean_point()) == []


def test_bandwidth_saturated_co_run():
    point = d.PointData("", {})
    point.phases[("solo", "a")] = phase(records(itl_ms=10))
    coloc = records(start_s=100, itl_ms=16, rng_seed=1)
    samples = [{"t_ns": t, "source": "nvml", "device": "cuda:0", "metrics": {"dram_bw_util_pct": 92.0}}
               for t in range(coloc[0].submit_ns, coloc[-1].done_ns, S // 10)]
    p = phase(coloc, "colocated", samples=samples)
    p.metrics = p.metrics.model_copy(update={"device_telemetry": device_window(samples, "cuda:0", [p.metrics.window_ns])})
    point.phases[("colocated", "a")] = p
    (f,) = d.bandwidth_contention(point)
    assert f.kind == "bandwidth_contention" and f.severity == "high"
    assert f.evidence["slowdown"] == pytest.approx(1.6, rel=0.02) and f.evidence["bandwidth_pct_of_peak"] == 92.0
    assert windows_ns(f) == [list(p.metrics.window_ns)] and f.windows[0].start_s == 0.0
    assert f.subjects == [Subject(instance="a", phase="colocated")]
    assert "INT8" in f.recommendation


def test_no_bandwidth_cause_on_an_impossible_figure():
    """MBU 210% alone and 224% together (a wrong peak) used to give "bandwidth near peak" and an
    INT8 remedy as the top findings; now the one finding says the figure is wrong and how to fix it."""
    from colobench.analysis.model import Peak, Roofline

    roof = Roofline(peak=Peak(name="cpu", memory_bandwidth_gb_s=20.0, source="table"), bytes_per_step=2**30,
                    device="cpu")
    point = d.PointData("", {})
    for ph, name, mbu, start in (("solo", "a", 210.0, 0), ("solo", "b", 120.0, 50), ("colocated", "a", 112.0, 100),
                                 ("colocated", "b", 112.0, 100)):
        point.phases[(ph, name)] = phase(records(start_s=start, itl_ms=16), ph, name, device="cpu", extra={
            "mbu_pct": mbu, "achieved_bandwidth_bytes_s": mbu / 100 * 20e9, "roofline": roof})
    found = all_findings(point)
    kinds = [f.kind for f in found]
    assert "bandwidth_near_peak" not in kinds and "bandwidth_contention" not in kinds
    (f,) = [f for f in found if f.kind == "implausible_figure"]
    assert f.severity == "high" and "cannot judge memory bandwidth" in f.title and "210%" in f.title
    assert "224%" in f.title and "devices --probe" in f.recommendation and "INT8" not in f.recommendation


def test_host_bound_batch_sweep():
    points = []
    for batch, tpot, mbu in ((1, 10.0, 12.0), (8, 10.8, 20.0)):
        point = d.PointData(f"m-bs{batch}", {"batch_size": batch})
        p = phase(records(itl_ms=tpot), device="npu:0", extra={"mbu_pct": mbu})
        p.point = point.id
        point.phases[("solo", "a")] = p
        points.append(point)
    (f,) = d.host_bound_sweep(points)
    assert f.kind == "host_bound" and f.evidence["batch_large"] == 8 and f.evidence["step_growth"] < 1.15
    assert "TASK_QUEUE_ENABLE=2" in f.recommendation and len(f.windows) == 2
    bandwidth_bound = d.PointData("m-bs8", {"batch_size": 8})
    bandwidth_bound.phases[("solo", "a")] = phase(records(itl_ms=10.8), device="npu:0", extra={"mbu_pct": 85.0})
    assert d.host_bound_sweep([points[0], bandwidth_bound]) == []  # flat steps at high bandwidth: decode-bound


def test_host_bound_sweep_holds_other_axes_fixed():
    """dtype x batch: fp32 at batch 1 against bf16 at batch 8 looks flat (3.7 vs 3.7 ms) but each
    dtype's own step grows 1.2-1.4x, so nothing is host-bound; a flat dtype is named with its axis."""
    def point(dtype, batch, tpot):
        pd = d.PointData(f"{dtype}-b{batch}", {"dtype": dtype, "batch_size": batch})
        p = phase(records(itl_ms=tpot), device="npu:0", extra={"mbu_pct": 10.0})
        p.point = pd.id
        pd.phases[("solo", "a")] = p
        return pd

    grows = [point("float32", 1, 3.7), point("float32", 8, 4.5), point("bfloat16", 1, 2.7), point("bfloat16", 8, 3.7)]
    assert d.host_bound_sweep(grows) == []
    flat = grows[:2] + [point("bfloat16", 1, 2.7), point("bfloat16", 8, 2.8)]
    (f,) = d.host_bound_sweep(flat)
    assert f.evidence["held_fixed"] == {"dtype": "bfloat16"} and "(dtype=bfloat16)" in f.title


def test_periodic_gc_stalls():
    gc = []

    def stall(t_ns):
        period = S  # every second, a 60 ms pause
        if (t_ns % period) < 10 * MS and not any(g["start_ns"] // period == t_ns // period for g in gc):
            gc.append({"start_ns": t_ns + MS, "duration_ns": 58 * MS, "generation": 2, "collected": 1000})
            return 60 * MS
        return 0

    recs = records(n=40, itl_ms=10, tokens=64, stalls=stall)
    (f,) = d.periodic_stalls(phase(recs, gc=gc))
    assert f.kind == "periodic_stalls" and f.evidence["period_s"] == pytest.approx(1.0, abs=0.05)
    assert f.evidence["gc_explained"] == f.evidence["stalls"] >= 4
    assert all(b - a >= 50 * MS for a, b in windows_ns(f)) and "gc.freeze" in f.recommendation


def test_throttled_window():
    def stall(t_ns):
        return 8 * MS if 3 * S <= t_ns < 4 * S else 0

    recs = records(n=40, itl_ms=10, tokens=32, stalls=stall)
    samples = []
    for t in range(0, 12 * S, S // 10):
        throttled = 3 * S <= t < 4 * S
        samples.append({"t_ns": t, "source": "nvml", "device": "cuda:0",
                        "metrics": {"sm_clock_mhz": 1100 if throttled else 1980,
                                    "throttle_reasons": ["hw_thermal"] if throttled else []}})
    (f,) = d.throttling(phase(recs, samples=samples))
    assert f.kind == "throttling" and f.severity == "high" and f.evidence["reasons"] == ["hw_thermal"]
    (window,) = windows_ns(f)
    assert 2.8 * S <= window[0] <= 3.1 * S and 3.9 * S <= window[1] <= 4.2 * S
    assert f.evidence["slow_steps_in_windows"] >= 1


def test_warmup_outlier():
    warm = records(n=1, ttft_ms=2000, warmup=True)
    (f,) = d.warmup_outliers(phase(records(start_s=10), warm=warm))
    assert f.kind == "warmup_outliers" and f.evidence["worst_ratio"] > 3 and f.severity == "low"
    assert windows_ns(f) == [[warm[0].submit_ns, warm[0].done_ns]]


def test_client_bound_http_run():
    point = d.PointData("", {}, checks=[Check(
        kind="client_bound", subject=Subject(instance="a", phase="colocated"), verdict="client_bound", level="invalid",
        sentence="the client may be the bottleneck: load generator at 97% of a core")])
    point.phases[("colocated", "a")] = phase(records(), "colocated", device="endpoint")
    (f,) = d.client_bound(point)
    assert f.kind == "client_bound" and f.severity == "high" and "97% of a core" in f.evidence["detail"]
    assert "client_processes" in f.recommendation


def test_compute_contention_prefill_lines_up_with_stalls():
    long_prefill = records(start_s=0, n=12, ttft_ms=300, itl_ms=5, tokens=20, name="b", gap_ms=100)
    windows = [[r.submit_ns, r.token_ns[0]] for r in long_prefill]

    def stall(t_ns):
        return 40 * MS if any(a <= t_ns < b for a, b in windows) and (t_ns // (50 * MS)) % 3 == 0 else 0

    victim = records(start_s=0, n=60, itl_ms=10, tokens=32, stalls=stall)
    point = d.PointData("", {})
    point.phases[("colocated", "a")] = phase(victim, "colocated")
    point.phases[("colocated", "b")] = phase(long_prefill, "colocated", name="b")
    findings = [f for f in d.compute_contention(point) if f.subjects[0].instance == "a"]
    (f,) = findings
    assert f.evidence["culprit"] == "b" and f.evidence["overlap_fraction"] >= 0.9
    assert f.evidence["overlap_fraction"] > 2 * f.evidence["chance_fraction"]


def test_input_length_variance():
    rng = np.random.default_rng(3)
    recs = []
    for k in range(60):
        n = int(rng.integers(8, 128))
        recs += records(start_s=k, n=1, tokens=n, rng_seed=k)
    for k, r in enumerate(recs):
        r.request_id = k
    (f,) = d.input_length_variance(phase(recs))
    assert f.evidence["r2"] > 0.9


def test_batch_padding_in_static_batches():
    """Batches of 4: three 50-token prompts beside one of 1000. Positions 4 x 1000 per batch, real
    tokens 1150: padding 71.25%, by hand. Equal lengths in each batch give nothing."""
    def batched(lengths: list[int]) -> list[RequestRecord]:
        recs = records(n=len(lengths) * 3)
        for k, r in enumerate(recs):
            r.batch_id, r.batch_size, r.prompt_tokens = k // len(lengths), len(lengths), lengths[k % len(lengths)]
        return recs

    (f,) = d.batch_padding(phase(batched([50, 50, 1000, 50])))
    assert f.kind == "batch_padding" and f.evidence["padding_pct"] == pytest.approx(100 * (4000 - 1150) / 4000)
    assert f.evidence["longest_prompt_tokens"] == 1000 and f.evidence["batches"] == 3 and f.severity == "medium"
    assert "continuous batching" in f.recommendation
    assert d.batch_padding(phase(batched([300, 300, 300, 300]))) == []
    assert d.batch_padding(phase(records())) == []  # batch size 1: nothing padded


def test_memory_pressure_and_oom():
    p = phase(records(), extra={"device_telemetry": DeviceWindow(mem_used_bytes_peak=79 * 2**30,
                                                                 mem_total_bytes=80 * 2**30)})
    p.worker_reason = "RuntimeError: CUDA out of memory"
    kinds = [(f.kind, f.severity) for f in d.memory_pressure(p)]
    assert kinds == [("memory_pressure", "medium"), ("memory_pressure", "high")]


def test_cpu_contention_is_one_finding_with_every_window():
    point = d.PointData("", {})
    busy = {"host": HostWindow(samples=3, load_1m=Stat(mean=12.0), cpu_pct=Stat(mean=99.0))}
    for k, (ph, name) in enumerate((("solo", "a"), ("solo", "b"), ("colocated", "a"), ("colocated", "b"))):
        point.phases[(ph, name)] = phase(records(start_s=10 * k), ph, name=name, device="cpu", extra=busy)
    observations = d.cpu_contention(point)
    assert len(observations) == 4 and observations[0].evidence["load_1m"] == 12.0
    (f,) = rank(observations)  # one cause, one finding: every phase it was seen in, every window
    assert f.kind == "cpu_contention" and f.evidence["logical_cores"] == 8 and f.evidence["observations"] == 4
    assert len(f.subjects) == 4 and len(f.windows) == 4 and "also in" in f.title


# ---- validity ------------------------------------------------------------------------------------

def repetitions(itl_ms: list[float], n: int = 24, jitter_ms: float = 0.2) -> list[RequestRecord]:
    """One window of `n` requests per repetition, repetition k's steps taking `itl_ms[k]`."""
    out = []
    for k, itl in enumerate(itl_ms):
        for r in records(start_s=10 * k, n=n, itl_ms=itl, rng_seed=k, jitter_ms=jitter_ms):
            r.repetition = k + 1
            out.append(r)
    return out


def test_validity_verdicts():
    good = repetitions([10.0] * 5)
    v = verdict(good + records(n=1, warmup=True))
    assert v.verdict == "VALID" and v.stability == "stable" and not v.reasons and v.cv_pct < 5
    assert verdict(good).reasons[0].startswith("no warm-up")
    assert "only 5 measured requests" in verdict(records(n=5)).reasons[0]
    one = verdict(records(n=120) + records(n=1, warmup=True))  # one repetition: no stability verdict at all
    assert one.stability is None and one.verdict == "VALID" and any("not judged" in w for w in one.warnings)
    drift = []
    for k in range(90):
        drift += records(start_s=k, n=1, itl_ms=10 + k * 0.1, rng_seed=k)
    assert any(r.startswith("not steady state") for r in verdict(drift).reasons)
    # requests that differ among themselves, repetitions that agree: jitter (a warning), not instability
    speeds = np.random.default_rng(1).normal(10, 2, 100).clip(5, 20)
    noisy = [r for k, itl in enumerate(speeds) for r in records(start_s=k, n=1, itl_ms=float(itl), rng_seed=k)]
    for k, r in enumerate(noisy):
        r.repetition = 1 + k % 5
    jittery = verdict(noisy + records(n=1, warmup=True))
    assert jittery.stability in ("stable", "acceptable") and any("varies from request to request" in w
                                                                 for w in jittery.warnings)
    # repetitions whose means disagree: unstable, INVALID
    unstable = verdict(repetitions([10.0, 14.0, 8.0, 13.0, 9.0]) + records(n=1, warmup=True))
    assert unstable.stability == "unstable" and unstable.verdict == "INVALID"


def test_over_saturated_open_loop():
    recs = []
    for k in range(60):
        r = records(start_s=k * 0.05, n=1, ttft_ms=20 + k * 10, rng_seed=k)[0]
        r.scheduled_ns = r.submit_ns
        recs.append(r)
    assert any("over-saturated" in r for r in verdict(recs).reasons)
    # 8 ms growing to 25 ms over 5 s at a fast server's edge: relative growth, no growing queue
    edge = []
    for k in range(100):
        r = records(start_s=k * 0.05, n=1, ttft_ms=8 + (17 * k / 99), rng_seed=k)[0]
        r.scheduled_ns = r.submit_ns
        edge.append(r)
    assert not any("over-saturated" in r for r in verdict(edge).reasons)


def test_over_saturation_seen_in_flight_not_only_in_ttft():
    """A continuous-batching server at 137% of its capacity admits every request: TTFT stays flat,
    TPOT and the requests in flight grow. Host jitter (a few slow requests) is not over-saturation."""
    def open_loop(itl_of):
        recs = []
        for k in range(100):
            r = records(start_s=k * 0.05, n=1, ttft_ms=20, itl_ms=itl_of(k), rng_seed=k)[0]
            r.scheduled_ns = r.submit_ns
            recs.append(r)
        return recs

    overloaded = verdict(open_loop(lambda k: 2 + 0.2 * k))
    assert any("requests in flight grew" in r and "TPOT" in r for r in overloaded.reasons), overloaded.reasons
    jitter = verdict(open_loop(lambda k: 30.0 if k % 17 == 0 else 2.0))
    assert not any("over-saturated" in r for r in jitter.reasons), jitter.reasons


def test_difference_against_noise():
    rng = np.random.default_rng(0)
    a, b = rng.normal(10, 1, 500), rng.normal(10.5, 1, 500)
    assert difference_is_significant(list(a), list(b)) is True
    assert difference_is_significant(list(a[:250]), list(a[250:])) is False


def test_endpoint_pair_gets_a_device_side_cause_or_says_none_is_measurable():
    """Two endpoints, each 1.6x slower beside the other: the servers' counters name the cause
    (decode steps slower on the device, requests queued, KV cache full, preemptions); without a
    scrape or device telemetry, a low finding says no device-side figure was measured."""
    from colobench.analysis.diagnosis import serving
    from colobench.analysis.model import ClientServer, ServerEvidence

    def endpoint(phase_name, name, itl, evidence=None):
        p = phase(records(n=30, itl_ms=itl, name=name), phase_name, name, device="endpoint",
                  extra={"server": evidence})
        p.backend = "openai"
        return p

    def server(itl, queue, kv, preempt, waiting):
        return ServerEvidence(engine="vllm", windows=3, itl_ms=ClientServer(client=itl, server=itl * 0.98),
                              queue_ms=queue, kv_cache_usage_pct=kv, preemptions=preempt,
                              requests_waiting_peak=waiting)

    point = d.PointData("", {})
    for name in ("a", "b"):
        point.phases[("solo", name)] = endpoint("solo", name, 10.0, server(10.0, 1.0, 40.0, 0, 0))
        point.phases[("colocated", name)] = endpoint("colocated", name, 16.0, server(16.0, 30.0, 97.0, 12, 6))
    found = [f for f in all_findings(point) if f.kind == "server_contention"]
    assert len(found) == 2 and {f.subjects[0].instance for f in found} == {"a", "b"}
    title = found[0].title
    assert "1.60x slower beside its partner" in title and "ITL 1.60x solo" in title
    assert "(1 -> 30 ms mean wait" in title and "KV cache 97% used" in title and "12 more preemptions" in title
    assert found[0].severity == "high" and "--max-num-seqs" in found[0].recommendation
    # no scrape, no device telemetry: said so, not silently nothing
    blind = d.PointData("", {})
    for name in ("a", "b"):
        blind.phases[("solo", name)] = endpoint("solo", name, 10.0)
        blind.phases[("colocated", name)] = endpoint("colocated", name, 16.0)
    (first, *_) = serving.server_contention(blind)
    assert first.severity == "low" and "device-side cause not measurable" in first.title
    assert "its server's /metrics was not scraped" in first.title and first.evidence["measurable"] is False
    # in-process instances, or endpoints that did not slow down: nothing
    calm = d.PointData("", {})
    for name in ("a", "b"):
        calm.phases[("solo", name)] = endpoint("solo", name, 10.0)
        calm.phases[("colocated", name)] = endpoint("colocated", name, 10.2)
    assert serving.server_contention(calm) == []
