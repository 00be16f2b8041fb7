"""Telemetry: samplers (host, NVIDIA NVML, Ascend npu-smi / DCMI, replay) on the records' clock.

A sampler reads the hardware; it does not interpret. Samples go to `telemetry.jsonl` next to
the request records, one JSON line each: `{"t_ns", "source", "device", "metrics": {...}}`, with
units in the metric names. `colobench.analysis.telemetry` lines them up with the requests.
"""

import os
from typing import Any, Callable

from colobench.devices.npu import VISIBLE_ENV, read_chip_map
from colobench.devices.npu_smi import chip_for

from colobench.telemetry.ascend import DcmiSampler, NpuSmiSampler
from colobench.telemetry.base import SamplerUnavailable, TelemetryRecorder
from colobench.telemetry.host import HostSampler
from colobench.telemetry.nvml import NvmlSampler
from colobench.telemetry.server import ServerSampler, ServerSource


class FirstAvailable:
    """The first of several samplers for the same devices that starts (DCMI, else npu-smi), and
    the next one when it stops answering: `empty_ticks` samples in a row without any figure
    (a DCMI that maps a card but reads nothing) hand over to the next sampler, said in `note`."""

    def __init__(self, samplers: list[Any], empty_ticks: int = 3):
        self.options = samplers
        self.chosen: Any = None
        self.name = "/".join(s.name for s in samplers)
        self.interval_s = samplers[0].interval_s
        self.empty_ticks, self._empty = empty_ticks, 0
        self.note: str | None = None

    def start(self, after: int = 0) -> None:
        reasons = []
        for sampler in self.options[after:]:
            try:
                sampler.start()
            except SamplerUnavailable as exc:
                reasons.append(f"{sampler.name}: {exc}")
                continue
            self.chosen, self.name, self.interval_s = sampler, sampler.name, sampler.interval_s
            return
        raise SamplerUnavailable("; ".join(reasons))

    def sample(self) -> list[tuple[str, dict[str, Any]]]:
        rows = self.chosen.sample()
        self._empty = self._empty + 1 if not any(metrics for _, metrics in rows) else 0
        if self._empty >= self.empty_ticks:
            failed = self.chosen.name
            self.start(self.options.index(self.chosen) + 1)  # raises when there is no other: the sampler stops
            self.note = f"{failed} returned nothing for {self.empty_ticks} samples; {self.name} took over"
            self._empty = 0
            rows = self.chosen.sample()
        return rows

    def stop(self) -> None:
        if self.chosen is not None:
            self.chosen.stop()


def server_sources(instances: list[Any]) -> dict[str, ServerSource]:
    """The endpoints among some resolved instances whose server's memory can be sampled."""
    out = {}
    for inst in instances:
        ep = getattr(inst, "endpoint", None)
        if ep is not None and (ep.server_pid or ep.metrics_url):
            out[inst.name] = ServerSource(ep.server_pid, ep.metrics_url, getattr(inst, "model", None))
    return out


def make_samplers(devices: list[str], pids: Callable[[], dict[str, int]], spec: Any,
                  servers: dict[str, ServerSource] | None = None,
                  npu_visible: dict[str, str | None] | None = None) -> list[Any]:
    """Host sampler always; NVML for CUDA devices; DCMI or npu-smi for Ascend devices (placed by
    the chip map, with each device's `ASCEND_RT_VISIBLE_DEVICES` from `npu_visible`); the servers
    of endpoint instances (their memory) when they can be seen."""
    server_pids = tuple(src.pid for src in (servers or {}).values() if src.pid)
    samplers: list[Any] = [HostSampler(pids, spec.host_interval_s, server_pids)]
    if servers:
        samplers.append(ServerSampler(servers, max(spec.host_interval_s, 1.0)))
    cuda = sorted({int(d.split(":")[1]) for d in devices if d.startswith("cuda:")})
    npu = sorted({int(d.split(":")[1].split("@")[0]) for d in devices if d.startswith("npu:")})
    if cuda:
        samplers.append(NvmlSampler(cuda, spec.nvidia_interval_s))
    if npu:
        mapping = read_chip_map() or []
        visible = npu_visible or {}
        chips = [chip_for(k, mapping, visible.get(f"npu:{k}", os.environ.get(VISIBLE_ENV))) for k in npu]
        samplers.append(FirstAvailable([DcmiSampler(chips, spec.nvidia_interval_s * 2),
                                        NpuSmiSampler(chips, spec.ascend_interval_s)]))
    return samplers


__all__ = ["FirstAvailable", "SamplerUnavailable", "ServerSource", "TelemetryRecorder", "make_samplers",
           "server_sources"]
