"""The host CPU as a device: nothing to synchronise, memory is the process's resident set."""

from __future__ import annotations

import os
import platform
import resource
from typing import Any

from colobench.devices.base import DeviceInfo, GraphMode


def cpu_model_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def total_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


class CpuDevice:
    kind = "cpu"
    index = None

    def torch_device(self) -> Any:
        import torch

        return torch.device("cpu")

    def synchronize(self) -> None:
        """CPU kernels run synchronously in the calling thread: nothing to wait for."""

    def info(self) -> DeviceInfo:
        return DeviceInfo("cpu", "cpu", cpu_model_name(), total_memory_bytes(), None,
                          {"logical_cores": os.cpu_count()})

    def reset_peak_memory(self) -> None:
        """ru_maxrss cannot be reset; the peak is the process's lifetime peak."""

    def peak_memory_bytes(self) -> int | None:
        # Linux reports ru_maxrss in KiB.
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def memory_stats(self) -> dict[str, int] | None:
        return None  # torch's CPU allocator keeps no reserved pool

    def cap_memory(self, fraction: float) -> bool:
        return False  # host memory is not partitioned per process here

    def empty_cache(self) -> None:
        """The CPU allocator returns memory by itself."""

    def apply_knobs(self, knobs: dict[str, Any]) -> dict[str, Any]:
        return {}

    def graph_mode(self) -> GraphMode:
        return GraphMode(mode="default", compile_all_devices=True)  # Inductor's C++ code on CPU

    def profiler(self) -> Any:
        import torch

        return torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])


def allowed_cores() -> list[int]:
    """The cores this process may run on (its affinity mask: a container's or taskset's cpuset),
    which is what a pinned worker or server can be given."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def core_ranges(cores: list[int]) -> str:
    """[0, 1, 2, 3, 8] -> "0-3,8"."""
    spans: list[list[int]] = []
    for c in sorted(cores):
        if spans and spans[-1][1] == c - 1:
            spans[-1][1] = c
        else:
            spans.append([c, c])
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in spans)
