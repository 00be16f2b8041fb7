"""Samplers through fixtures and fakes, replay, the recorder, roofline and energy arithmetic."""

from __future__ import annotations

import ctypes
import math
import time
import types
from pathlib import Path

import pytest

from colobench.analysis.resources import instance_resources, shared_energy
from colobench.analysis.distribution import Distribution
from colobench.analysis.model import Distributions, InstanceFacts, PhaseMetrics
from colobench.analysis.roofline import decode_bytes_per_step, decode_roofline, kv_bytes_per_token, prefill_flops
from colobench.analysis.telemetry import device_window, energy_over_window
from colobench.devices.peaks import lookup, with_overrides
from colobench.records import read_jsonl
from colobench.telemetry import TelemetryRecorder
from colobench.telemetry.base import SamplerUnavailable
from colobench.telemetry.nvml import NvmlSampler
from colobench.telemetry.replay import ReplaySampler, read_samples

# ---- NVIDIA ------------------------------------------------------------------------------------

def fake_nvml(gpm: bool = True):
    """The pynvml calls the sampler makes, with known values (no GPU needed)."""
    class MetricsGet(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint), ("numMetrics", ctypes.c_uint)]

        def __init__(self):
            super().__init__()
            self.metrics = [types.SimpleNamespace(metricId=0, value=0.0) for _ in range(2)]
            self.sample1 = self.sample2 = None

    nv = types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlShutdown=lambda: None, nvmlDeviceGetHandleByIndex=lambda i: f"h{i}",
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=87, memory=60),
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=40 * 2**30, total=80 * 2**30),
        nvmlDeviceGetComputeRunningProcesses=lambda h: [types.SimpleNamespace(pid=11, usedGpuMemory=3 * 2**30),
                                                        types.SimpleNamespace(pid=12, usedGpuMemory=5 * 2**30)],
        nvmlDeviceGetPowerUsage=lambda h: 350_500, nvmlDeviceGetTotalEnergyConsumption=lambda h: 1_234_567,
        nvmlDeviceGetClockInfo=lambda h, kind: {1: 1980, 2: 2619}[kind], NVML_CLOCK_SM=1, NVML_CLOCK_MEM=2,
        nvmlDeviceGetTemperature=lambda h, s: 61, NVML_TEMPERATURE_GPU=0,
        nvmlDeviceGetCurrentClocksEventReasons=lambda h: 0x4 | 0x1,
        nvmlDeviceGetPcieThroughput=lambda h, kind: 100 if kind == 0 else 200,
        NVML_PCIE_UTIL_TX_BYTES=0, NVML_PCIE_UTIL_RX_BYTES=1,
        nvmlGpmQueryDeviceSupport=lambda h: types.SimpleNamespace(isSupportedDevice=int(gpm)),
        nvmlGpmSampleAlloc=lambda: object(), nvmlGpmSampleGet=lambda h, s: s, nvmlGpmSampleFree=lambda s: None,
        c_nvmlGpmMetricsGet_t=MetricsGet, NVML_GPM_METRICS_GET_VERSION=1,
        NVML_GPM_METRIC_DRAM_BW_UTIL=10, NVML_GPM_METRIC_SM_UTIL=2,
    )

    def metrics_get(request):
        assert request.version == 1 and request.numMetrics == 2 and request.sample1 is not request.sample2
        for metric in request.metrics:
            metric.value = {10: 72.5, 2: 91.0}[metric.metricId]

    nv.nvmlGpmMetricsGet = metrics_get
    return nv


def test_nvml_sampler_with_a_fake_driver():
    sampler = NvmlSampler([0], nvml=fake_nvml())
    sampler.start()
    ((device, m),) = sampler.sample()
    assert device == "cuda:0" and m["util_pct"] == 87 and m["mem_used_bytes"] == 40 * 2**30
    assert m["process_mem_bytes"] == {"11": 3 * 2**30, "12": 5 * 2**30}
    assert m["power_w"] == 350.5 and m["energy_counter_j"] == 1234.567
    assert (m["sm_clock_mhz"], m["mem_clock_mhz"], m["temp_c"]) == (1980, 2619, 61)
    assert m["throttle_reasons"] == ["sw_power_cap"]  # the idle bit is not a throttle
    assert (m["pcie_tx_bytes_s"], m["pcie_rx_bytes_s"]) == (102400, 204800)
    assert (m["dram_bw_util_pct"], m["sm_util_pct"]) == (72.5, 91.0)


def test_nvml_without_gpm_or_driver():
    sampler = NvmlSampler([0], nvml=fake_nvml(gpm=False))
    sampler.start()
    assert "dram_bw_util_pct" not in sampler.sample()[0][1]
    broken = types.SimpleNamespace(nvmlInit=lambda: (_ for _ in ()).throw(RuntimeError("Driver Not Loaded")))
    with pytest.raises(SamplerUnavailable, match="Driver Not Loaded"):
        NvmlSampler([0], nvml=broken).start()


# ---- recorder and replay -----------------------------------------------------------------------

def test_recorder_writes_samples_and_reports_unavailable(tmp_path: Path):
    class Counter:
        name, interval_s = "counter", 0.01

        def __init__(self):
            self.n = 0

        def start(self):
            pass

        def sample(self):
            self.n += 1
            return [("cuda:0", {"power_w": 100.0 + self.n})]

        def stop(self):
            pass

    class Absent(Counter):
        name = "absent"

        def start(self):
            raise SamplerUnavailable("no driver")

    path = tmp_path / "telemetry.jsonl"
    recorder = TelemetryRecorder([Counter(), Absent()], path)
    status = recorder.start()
    time.sleep(0.2)
    final = recorder.stop()
    assert status == {"counter": "ok", "absent": "unavailable: no driver"} and final["counter"] == "ok"
    rows = list(read_jsonl(path))
    assert len(rows) >= 5 and all(r["source"] == "counter" and r["device"] == "cuda:0" for r in rows)
    assert [r["t_ns"] for r in rows] == sorted(r["t_ns"] for r in rows)
    replay = ReplaySampler(path)
    replay.start()
    assert replay.sample() == [("cuda:0", rows[0]["metrics"])]
    assert len(read_samples(path, device="cuda:0")) == len(rows)


# ---- roofline and energy -----------------------------------------------------------------------

def _facts(**fields):
    return InstanceFacts(**{"model": "m", "backend": "transformers", "device": "cuda:0", "dtype": "bfloat16",
                            "cpu_threads": 1, "workload": {}, **fields})


def _metrics(**fields):
    d = Distribution(count=0)
    return PhaseMetrics(completed=1, failed=0, distributions=Distributions(
        ttft_ms=d, tpot_ms=d, itl_ms=d, e2el_ms=d, output_throughput_tok_s=d, request_throughput_req_s=d), **fields)


def test_roofline_llama_3_2_1b_by_hand():
    weights = 1_235_814_400 * 2  # bf16, tied embeddings stored once
    kv = kv_bytes_per_token(layers=16, kv_heads=8, head_dim=64, dtype_bytes=2)
    assert kv == 32_768
    step = decode_bytes_per_step(weights, kv, batch=1, mean_context_tokens=128 + 64)
    assert step == 2_471_628_800 + 192 * 32_768 == 2_477_920_256
    h100 = lookup("NVIDIA H100 80GB HBM3")
    facts = _facts(weight_bytes=weights, kv_cache_bytes_per_token=kv, parameters=1_235_814_400,
                   architecture={"num_hidden_layers": 16, "hidden_size": 2048})
    metrics = _metrics(mean_itl_ms=1.0, mean_batch=1, mean_prompt_tokens=128, mean_output_tokens=128,
                       mean_ttft_ms=2.0, load_model="static")
    roof, reasons = decode_roofline(facts, metrics, h100.memory_bandwidth_bytes_s, h100.peak_flops("bfloat16"))
    assert roof["achieved_bandwidth_bytes_s"] == pytest.approx(2_477_920_256 / 1e-3)
    assert roof["mbu_pct"] == pytest.approx(100 * 2.477920256e12 / 3.35e12)  # 73.97%
    assert roof["decode_ceiling_tok_s"] == pytest.approx(3.35e12 / 2_477_920_256)  # about 1352 tokens/s
    flops = 2 * 1_235_814_400 * 128 + 2 * 16 * 128**2 * 2048
    assert roof["mfu_pct"] == pytest.approx(100 * flops / 2e-3 / 989e12) and not reasons


def test_roofline_mistral_7b_batch_8_by_hand():
    weights = 7_248_023_552 * 2
    kv = kv_bytes_per_token(layers=32, kv_heads=8, head_dim=128, dtype_bytes=2)
    assert kv == 131_072
    assert decode_bytes_per_step(weights, kv, 8, 1024) == 14_496_047_104 + 8 * 1024 * 131_072 == 15_569_788_928
    assert prefill_flops(7_248_023_552, 32, 4096, 512, 2) == 2 * (2 * 7_248_023_552 * 512 + 2 * 32 * 512**2 * 4096)
    roof, reasons = decode_roofline(_facts(weight_bytes=weights, kv_cache_bytes_per_token=kv),
                                    _metrics(mean_itl_ms=20.0, mean_batch=8, mean_prompt_tokens=1024,
                                             mean_output_tokens=0, load_model="closed"), None, None)
    assert roof["achieved_bandwidth_bytes_s"] == pytest.approx(15_569_788_928 / 0.02)
    assert roof["mbu_pct"] is None and "no peak memory bandwidth" in reasons["mbu_pct"]
    assert "static batching" in reasons["mfu_pct"]


def test_peak_table_and_overrides():
    assert lookup("Ascend910A").memory_bandwidth_gb_s == 1200 and lookup("NVIDIA H200").bf16_tflops == 989
    assert lookup("Ascend910B3").memory_bandwidth_gb_s is None  # no published figure: measured, or none
    assert lookup("NVIDIA H100 PCIe").name == "NVIDIA H100 PCIe" and lookup("Intel Xeon") is None
    cpu = with_overrides(None, "AMD EPYC", {"memory_bandwidth_gb_s": 50})
    assert cpu.memory_bandwidth_bytes_s == 50e9 and cpu.peak_flops("bfloat16") is None


def _samples(device="cuda:0", start_s=0.0, seconds=3.0, step_s=0.1, watts=200.0, counter=True):
    rows = []
    n = int(seconds / step_s) + 1
    for k in range(n):
        t = start_s + k * step_s
        m = {"power_w": watts, "util_pct": 50.0 + k % 2 * 10}
        if counter:
            m["energy_counter_j"] = 1000.0 + watts * t
        rows.append({"t_ns": int(t * 1e9), "source": "fake", "device": device, "metrics": m})
    return rows


def test_energy_from_counter_and_from_power():
    t0, t1 = int(0.55e9), int(2.05e9)  # 1.5 s, inside the samples, not on a sample boundary
    energy, method = energy_over_window(_samples(), t0, t1)
    assert method == "energy counter" and energy == pytest.approx(300.0)
    energy, method = energy_over_window(_samples(counter=False), t0, t1)
    assert method == "power integration" and energy == pytest.approx(300.0)
    assert energy_over_window(_samples(), 0, int(0.5e9)) == (None, "window shorter than 1 s")
    assert energy_over_window(_samples(counter=False, seconds=1.0), 0, int(2e9))[0] is None


def test_resources_for_an_instance_on_a_gpu():
    samples = _samples(watts=300.0)
    for s in samples:
        s["metrics"]["process_mem_bytes"] = {"11": 6 * 2**30}
        s["metrics"]["dram_bw_util_pct"] = 70.0
    facts = _facts(device_info={"name": "NVIDIA H100 80GB HBM3"}, weight_bytes=2_471_628_800,
                   kv_cache_bytes_per_token=32_768, parameters=1_235_814_400,
                   architecture={"num_hidden_layers": 16, "hidden_size": 2048})
    metrics = _metrics(window_ns=(int(0.5e9), int(2.5e9)), total_output_tokens=1200, mean_itl_ms=1.0, mean_batch=1,
                       mean_prompt_tokens=128, mean_output_tokens=128, load_model="static", mean_ttft_ms=2.0)
    out = instance_resources(samples, facts, "cuda:0", metrics, ["a"], [11], {}, shared_device=False)
    assert out["energy_j"] == pytest.approx(600.0) and out["energy_method"] == "energy counter"
    assert out["energy_per_token_j"] == pytest.approx(0.5) and out["tokens_per_j"] == pytest.approx(2.0)
    assert out["peak_memory_bytes"] == 6 * 2**30 and 50 <= out["mean_device_util_pct"] <= 60
    assert out["mbu_pct"] == pytest.approx(73.97, abs=0.01)
    assert out["roofline"].gpm_dram_bw_util_pct == 70.0 and out["roofline"].gpm_agrees is True
    shared = shared_energy(samples, {"a": metrics, "b": metrics.model_copy(update={"total_output_tokens": 800})},
                           {"a": "cuda:0", "b": "cuda:0"})
    assert shared["cuda:0"].energy_j == pytest.approx(600.0) and shared["cuda:0"].output_tokens == 2000
    assert shared["cuda:0"].energy_per_token_j == pytest.approx(0.3)


def test_device_window_reports_throttling():
    samples = _samples()
    samples[5]["metrics"]["throttle_reasons"] = ["hw_thermal"]
    out = device_window(samples, "cuda:0", [(0, int(3e9))])
    assert out.throttle_reasons == ["hw_thermal"] and out.power_w.mean == 200.0
    assert math.isclose(out.util_pct.peak, 60.0)


@pytest.mark.cuda
def test_probe_on_a_gpu():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU")
    from colobench.devices.probe import probe

    result = probe("cuda:0")
    assert result["copy_bandwidth_bytes_s"] > 1e11 and result["matmul_flops"] > 1e13


def test_a_measured_server_and_its_children_are_never_outside_the_run():
    """A server named by `server_pid` (not colobench's child: started elsewhere) and the workers it
    spawns (vLLM's `VLLM::Worker`) are the run's own processes; so is everything colobench started."""
    import os
    import signal
    import subprocess
    import sys

    from colobench.telemetry.host import HostSampler

    code = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    # the shell starts the "server" in the background and exits: the server is nobody's child here
    out = subprocess.run(["sh", "-c", f"{sys.executable} -c \"{code}\" >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True)
    server = int(out.stdout.strip())
    try:
        import psutil

        deadline = time.monotonic() + 30
        while not psutil.Process(server).children() and time.monotonic() < deadline:
            time.sleep(0.05)
        child = psutil.Process(server).children()[0].pid
        assert server not in HostSampler(dict)._own_trees()  # without server_pid it would be "outside"
        sampler = HostSampler(dict, server_pids=(server,))
        own = sampler._own_trees()
        assert {server, child, os.getpid()} <= own
        sampler.start()
        assert not {p["pid"] for p in sampler._busiest_others(set())} & {server, child}
    finally:
        for pid in (server,):
            try:
                for c in psutil.Process(pid).children(recursive=True):
                    c.kill()
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, psutil.NoSuchProcess):
                pass
