"""NVIDIA GPUs through torch.cuda."""

from __future__ import annotations

from typing import Any

from colobench.devices.base import DeviceInfo, DeviceUnavailable, GraphMode


def count() -> int:
    """CUDA devices this process sees (0 without a CUDA build of torch or a driver)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check(index: int) -> None:
    import torch

    if not torch.cuda.is_available():
        raise DeviceUnavailable("CUDA is not available (no NVIDIA GPU, driver or CUDA build of torch)")
    n = torch.cuda.device_count()
    if index >= n:
        raise DeviceUnavailable(f"only {n} CUDA device{'s' if n != 1 else ''} present (cuda:0..cuda:{n - 1})")


def versions() -> dict[str, str | None]:
    """CUDA runtime of this torch build and the NVIDIA driver (through NVML, when installed)."""
    import torch

    out: dict[str, str | None] = {"cuda_runtime": torch.version.cuda}
    try:
        import pynvml

        pynvml.nvmlInit()
        out["nvidia_driver"] = pynvml.nvmlSystemGetDriverVersion()
    except Exception:  # no NVML or no driver: the manifest says nothing rather than guess
        pass
    return out


def total_memory_bytes(index: int) -> int | None:
    """The card's memory through NVML (no CUDA context in the caller), None without NVML.
    (CUDA_VISIBLE_DEVICES renumbering is not applied: a plan-time estimate, not a measurement.)"""
    try:
        import pynvml

        pynvml.nvmlInit()
        return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(index)).total)
    except Exception:
        return None


class CudaDevice:
    kind = "cuda"

    def __init__(self, index: int):
        self.index = index

    def torch_device(self) -> Any:
        import torch

        return torch.device("cuda", self.index)

    def synchronize(self) -> None:
        import torch

        torch.cuda.synchronize(self.index)

    def info(self) -> DeviceInfo:
        import torch

        props = torch.cuda.get_device_properties(self.index)
        return DeviceInfo(f"cuda:{self.index}", "cuda", props.name, int(props.total_memory),
                          f"CUDA {torch.version.cuda}",
                          {"multiprocessors": props.multi_processor_count,
                           "capability": f"{props.major}.{props.minor}"})

    def reset_peak_memory(self) -> None:
        import torch

        torch.cuda.reset_peak_memory_stats(self.index)

    def peak_memory_bytes(self) -> int | None:
        import torch

        return int(torch.cuda.max_memory_allocated(self.index))

    def memory_stats(self) -> dict[str, int] | None:
        import torch

        return {"reserved_bytes": int(torch.cuda.memory_reserved(self.index)),
                "allocated_bytes": int(torch.cuda.memory_allocated(self.index)),
                "max_reserved_bytes": int(torch.cuda.max_memory_reserved(self.index)),
                "max_allocated_bytes": int(torch.cuda.max_memory_allocated(self.index))}

    def cap_memory(self, fraction: float) -> bool:
        import torch

        # the caching allocator refuses allocations past the fraction with an out-of-memory error
        torch.cuda.set_per_process_memory_fraction(fraction, self.index)
        return True

    def empty_cache(self) -> None:
        import torch

        torch.cuda.empty_cache()

    def apply_knobs(self, knobs: dict[str, Any]) -> dict[str, Any]:
        return {}

    def graph_mode(self) -> GraphMode:
        # CUDA graphs: one replay per decode step instead of hundreds of kernel launches
        return GraphMode(mode="reduce-overhead", compile_all_devices=False)

    def profiler(self) -> Any:
        import torch

        return torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                  torch.profiler.ProfilerActivity.CUDA])
