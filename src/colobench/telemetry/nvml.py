"""NVIDIA GPUs through NVML (nvidia-ml-py, imported as `pynvml`).

Per device and sample: utilisation (the share of time any kernel ran, not how busy the SMs
were), memory used and total, memory used per process id (what tells co-located instances
apart), power, the cumulative energy counter (millijoules since the driver loaded: energy over a
window is a difference, far better than integrating power samples), SM and memory clocks,
temperature, throttle reasons, PCIe throughput. On Hopper and newer, NVML's GPM gives the DRAM
bandwidth utilisation and SM utilisation over the interval between two samples; each tick
closes one interval and opens the next, so nothing blocks. Every query fails soft: a value the
driver does not support is simply absent.
"""

from __future__ import annotations

from typing import Any

from colobench.telemetry.base import SamplerUnavailable

THROTTLE_NAMES = {  # nvmlClocksEventReasons bits
    0x1: "gpu_idle", 0x2: "applications_clocks", 0x4: "sw_power_cap", 0x8: "hw_slowdown", 0x10: "sync_boost",
    0x20: "sw_thermal", 0x40: "hw_thermal", 0x80: "hw_power_brake", 0x100: "display_clocks",
}


def _try(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:
        return None


class NvmlSampler:
    name = "nvml"

    def __init__(self, indices: list[int], interval_s: float = 0.1, nvml: Any = None):
        self.indices, self.interval_s = indices, interval_s
        self.nv = nvml
        self.handles: dict[int, Any] = {}
        self.gpm_prev: dict[int, Any] = {}

    def start(self) -> None:
        if self.nv is None:
            try:
                import pynvml
            except ImportError:
                raise SamplerUnavailable("nvidia-ml-py is not installed (pip install nvidia-ml-py)") from None
            self.nv = pynvml
        try:
            self.nv.nvmlInit()
        except Exception as exc:
            raise SamplerUnavailable(f"NVML did not initialise ({exc})") from None
        for i in self.indices:
            self.handles[i] = self.nv.nvmlDeviceGetHandleByIndex(i)
            support = _try(self.nv.nvmlGpmQueryDeviceSupport, self.handles[i])
            if support is not None and getattr(support, "isSupportedDevice", 0):
                sample = self.nv.nvmlGpmSampleAlloc()
                if _try(self.nv.nvmlGpmSampleGet, self.handles[i], sample) is not None:
                    self.gpm_prev[i] = sample

    def _gpm(self, i: int, handle: Any) -> dict[str, float]:
        nv = self.nv
        current = nv.nvmlGpmSampleAlloc()
        if _try(nv.nvmlGpmSampleGet, handle, current) is None:
            return {}
        previous, self.gpm_prev[i] = self.gpm_prev[i], current
        try:
            request = nv.c_nvmlGpmMetricsGet_t()
            request.version = nv.NVML_GPM_METRICS_GET_VERSION
            request.numMetrics = 2
            request.sample1, request.sample2 = previous, current
            request.metrics[0].metricId = nv.NVML_GPM_METRIC_DRAM_BW_UTIL
            request.metrics[1].metricId = nv.NVML_GPM_METRIC_SM_UTIL
            nv.nvmlGpmMetricsGet(request)
            return {"dram_bw_util_pct": float(request.metrics[0].value), "sm_util_pct": float(request.metrics[1].value)}
        except Exception:
            return {}
        finally:
            _try(nv.nvmlGpmSampleFree, previous)

    def sample(self) -> list[tuple[str, dict[str, Any]]]:
        nv = self.nv
        rows = []
        for i, h in self.handles.items():
            m: dict[str, Any] = {}
            util = _try(nv.nvmlDeviceGetUtilizationRates, h)
            if util is not None:
                m["util_pct"], m["mem_activity_pct"] = float(util.gpu), float(util.memory)
            mem = _try(nv.nvmlDeviceGetMemoryInfo, h)
            if mem is not None:
                m["mem_used_bytes"], m["mem_total_bytes"] = int(mem.used), int(mem.total)
            procs = _try(nv.nvmlDeviceGetComputeRunningProcesses, h) or []
            m["process_mem_bytes"] = {str(p.pid): int(p.usedGpuMemory or 0) for p in procs}
            power_mw = _try(nv.nvmlDeviceGetPowerUsage, h)
            if power_mw is not None:
                m["power_w"] = power_mw / 1000.0
            energy_mj = _try(nv.nvmlDeviceGetTotalEnergyConsumption, h)
            if energy_mj is not None:
                m["energy_counter_j"] = energy_mj / 1000.0
            m["sm_clock_mhz"] = _try(nv.nvmlDeviceGetClockInfo, h, getattr(nv, "NVML_CLOCK_SM", 1))
            m["mem_clock_mhz"] = _try(nv.nvmlDeviceGetClockInfo, h, getattr(nv, "NVML_CLOCK_MEM", 2))
            m["temp_c"] = _try(nv.nvmlDeviceGetTemperature, h, getattr(nv, "NVML_TEMPERATURE_GPU", 0))
            reasons_fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
                nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
            reasons = _try(reasons_fn, h) if reasons_fn else None
            if reasons is not None:
                m["throttle_reasons"] = [n for bit, n in THROTTLE_NAMES.items() if reasons & bit and bit != 0x1]
            tx = _try(nv.nvmlDeviceGetPcieThroughput, h, getattr(nv, "NVML_PCIE_UTIL_TX_BYTES", 0))
            rx = _try(nv.nvmlDeviceGetPcieThroughput, h, getattr(nv, "NVML_PCIE_UTIL_RX_BYTES", 1))
            if tx is not None and rx is not None:
                m["pcie_tx_bytes_s"], m["pcie_rx_bytes_s"] = tx * 1024, rx * 1024  # NVML reports KB/s
            if i in self.gpm_prev:
                m.update(self._gpm(i, h))
            rows.append((f"cuda:{i}", {k: v for k, v in m.items() if v is not None}))
        return rows

    def stop(self) -> None:
        for sample in self.gpm_prev.values():
            _try(self.nv.nvmlGpmSampleFree, sample)
        self.gpm_prev.clear()
        _try(self.nv.nvmlShutdown)
