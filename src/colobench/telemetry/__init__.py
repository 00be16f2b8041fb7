"""Telemetry: samplers (host, NVIDIA NVML, Ascend npu-smi / DCMI, replay) on the records' clock.

A sampler reads the hardware; it does not interpret. Samples go to `telemetry.jsonl` next to
the request records, one JSON line each: `{"t_ns", "source", "device", "metrics": {...}}`, with
units in the metric names. `colobench.analysis.telemetry` lines them up with the requests.
"""

from typing import Any, Callable

from colobench.telemetry.ascend import DcmiSampler, NpuSmiSampler
from colobench.telemetry.base import SamplerUnavailable, TelemetryRecorder
from colobench.telemetry.host import HostSampler
from colobench.telemetry.nvml import NvmlSampler
from colobench.telemetry.server import ServerSampler, ServerSource


class FirstAvailable:
    """The first of several samplers for the same device that starts (DCMI, else npu-smi)."""

    def __init__(self, samplers: list[Any]):
        self.options = samplers
        self.chosen: Any = None
        self.name = "/".join(s.name for s in samplers)
        self.interval_s = samplers[0].interval_s

    def start(self) -> None:
        reasons = []
        for sampler in self.options:
            try:
                sampler.start()
            except SamplerUnavailable as exc:
                reasons.append(f"{sampler.name}: {exc}")
                continue
            self.chosen, self.name, self.interval_s = sampler, sampler.name, sampler.interval_s
            return
        raise SamplerUnavailable("; ".join(reasons))

    def sample(self) -> list[tuple[str, dict[str, Any]]]:
        return self.chosen.sample()

    def stop(self) -> None:
        if self.chosen is not None:
            self.chosen.stop()


def server_sources(instances: list[Any]) -> dict[str, ServerSource]:
    """The endpoints among some resolved instances whose server's memory can be sampled."""
    out = {}
    for inst in instances:
        ep = getattr(inst, "endpoint", None)
        if ep is not None and (ep.server_pid or ep.metrics_url):
            out[inst.name] = ServerSource(ep.server_pid, ep.metrics_url)
    return out


def make_samplers(devices: list[str], pids: Callable[[], dict[str, int]], spec: Any,
                  servers: dict[str, ServerSource] | None = None) -> list[Any]:
    """Host sampler always; NVML for CUDA devices; DCMI or npu-smi for Ascend devices; the
    servers of endpoint instances (their memory) when they can be seen."""
    samplers: list[Any] = [HostSampler(pids, spec.host_interval_s)]
    if servers:
        samplers.append(ServerSampler(servers, max(spec.host_interval_s, 1.0)))
    cuda = sorted({int(d.split(":")[1]) for d in devices if d.startswith("cuda:")})
    npu = sorted({int(d.split(":")[1]) for d in devices if d.startswith("npu:")})
    if cuda:
        samplers.append(NvmlSampler(cuda, spec.nvidia_interval_s))
    if npu:
        samplers.append(FirstAvailable([DcmiSampler(npu, spec.nvidia_interval_s * 2),
                                        NpuSmiSampler(npu, spec.ascend_interval_s)]))
    return samplers


__all__ = ["FirstAvailable", "SamplerUnavailable", "ServerSource", "TelemetryRecorder", "make_samplers",
           "server_sources"]
