"""NVIDIA GPUs through torch.cuda."""

from __future__ import annotations

from typing import Any

from colobench.devices.base import DeviceInfo, DeviceUnavailable


def check(index: int) -> None:
    import torch

    if not torch.cuda.is_available():
        raise DeviceUnavailable("CUDA is not available (no NVIDIA GPU, driver or CUDA build of torch)")
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceUnavailable(f"only {count} CUDA device{'s' if count != 1 else ''} present (cuda:0..cuda:{count - 1})")


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

    def cap_memory(self, fraction: float) -> bool:
        import torch

        # the caching allocator refuses allocations past the fraction with an out-of-memory error
        torch.cuda.set_per_process_memory_fraction(fraction, self.index)
        return True
