"""Devices: one module per kind (cpu, cuda, npu) behind the `Device` interface in `base`.

`kind_of("cuda:1")` tells what kind a device is without touching it (planning, placement,
analysis); `get_device("cuda:1")` gives the device object a worker uses; `check_device` tells the
parent, before anything runs, whether a device exists; `resolve_auto` picks the best device
present; `present()` lists every device this host has.
"""

from __future__ import annotations

from colobench.devices import cpu, cuda, npu
from colobench.devices.base import (KINDS, Device, DeviceInfo, DeviceKind, DeviceUnavailable, GraphMode,
                                    is_accelerator, kind_of, normalise, parse_device, visible_devices)

__all__ = ["KINDS", "Device", "DeviceInfo", "DeviceKind", "DeviceUnavailable", "GraphMode", "check_device",
           "get_device", "is_accelerator", "kind_of", "log_env", "memory_budget_bytes", "normalise", "parse_device", "present",
           "resolve_auto", "versions", "visible_devices"]

_ACCELERATORS = {"cuda": cuda, "npu": npu}


def get_device(device: str) -> Device:
    kind, index = parse_device(device)
    if kind == "cpu":
        return cpu.CpuDevice()
    if kind == "cuda":
        return cuda.CudaDevice(index or 0)
    if kind == "npu":
        return npu.NpuDevice(index or 0)
    raise DeviceUnavailable(f"unknown device kind {kind!r}")


def check_device(device: str) -> None:
    """Raise `DeviceUnavailable` with the reason if `device` is not present on this host."""
    kind, index = parse_device(device)
    if kind == "cpu":
        return
    if kind not in _ACCELERATORS:
        raise DeviceUnavailable(f"unknown device kind {kind!r}")
    _ACCELERATORS[kind].check(index or 0)


def resolve_auto() -> str:
    """The first accelerator present (cuda:0, then npu:0), else cpu."""
    for candidate in ("cuda:0", "npu:0"):
        try:
            check_device(candidate)
            return candidate
        except DeviceUnavailable:
            continue
    return "cpu"


def present() -> list[str]:
    """Every device this host has: cpu, then each CUDA and Ascend card."""
    return ["cpu"] + [f"{kind}:{i}" for kind, module in _ACCELERATORS.items() for i in range(module.count())]


def memory_budget_bytes(device: str) -> int | None:
    """What a device holds, read without touching it (the host's RAM for cpu; NVML for CUDA;
    None where that cannot be known before a worker opens the device)."""
    kind, index = parse_device(device)
    if kind == "cpu":
        return cpu.total_memory_bytes()
    if kind == "cuda":
        return cuda.total_memory_bytes(index or 0)
    return None


ASCEND_LOG_LEVELS = {"debug": "0", "info": "1", "warning": "2", "error": "3"}


def log_env(device: str, log_dir: str | None, level: str | None) -> dict[str, str]:
    """Environment that sends a device runtime's own logs where the run keeps them: on Ascend,
    CANN's process logs (plog) into `log_dir` (ASCEND_PROCESS_LOG_PATH) at `level`
    (ASCEND_GLOBAL_LOG_LEVEL); nothing elsewhere (CUDA errors reach stderr, which is kept)."""
    if parse_device(device)[0] != "npu":
        return {}
    env = {"ASCEND_PROCESS_LOG_PATH": log_dir} if log_dir else {}
    if level:
        env["ASCEND_GLOBAL_LOG_LEVEL"] = ASCEND_LOG_LEVELS[level]
    return env


def versions() -> dict[str, str | None]:
    """Driver and runtime versions of the accelerator stacks present (CUDA, NVIDIA driver, CANN)."""
    out: dict[str, str | None] = {}
    for module in _ACCELERATORS.values():
        out.update(module.versions())
    return out
