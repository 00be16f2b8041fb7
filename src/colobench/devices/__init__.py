"""Devices: one module per kind (cpu, cuda, npu) behind the `Device` interface in `base`.

`get_device("cuda:1")` gives the device object a worker uses; `check_device` tells the parent,
before anything runs, whether a device exists; `resolve_auto` picks the best device present.
"""

from __future__ import annotations

from colobench.devices.base import Device, DeviceInfo, DeviceUnavailable, parse_device

__all__ = ["Device", "DeviceInfo", "DeviceUnavailable", "check_device", "get_device", "parse_device", "resolve_auto"]


def get_device(device: str) -> Device:
    kind, index = parse_device(device)
    if kind == "cpu":
        from colobench.devices.cpu import CpuDevice

        return CpuDevice()
    if kind == "cuda":
        from colobench.devices.cuda import CudaDevice

        return CudaDevice(index or 0)
    if kind == "npu":
        from colobench.devices.npu import NpuDevice

        return NpuDevice(index or 0)
    raise DeviceUnavailable(f"unknown device kind {kind!r}")


def check_device(device: str) -> None:
    """Raise `DeviceUnavailable` with the reason if `device` is not present on this host."""
    kind, index = parse_device(device)
    if kind == "cpu":
        return
    if kind == "cuda":
        from colobench.devices import cuda

        cuda.check(index or 0)
    elif kind == "npu":
        from colobench.devices import npu

        npu.check(index or 0)
    else:
        raise DeviceUnavailable(f"unknown device kind {kind!r}")


def resolve_auto() -> str:
    """The first accelerator present (cuda:0, then npu:0), else cpu."""
    for candidate in ("cuda:0", "npu:0"):
        try:
            check_device(candidate)
            return candidate
        except DeviceUnavailable:
            continue
    return "cpu"
