"""What differs between a CPU, an NVIDIA GPU and an Ascend NPU, behind one small interface.

Accelerators run asynchronously: a kernel launch returns to Python long before the device has
finished it, so a host clock read right after a model call measures *dispatch*, not execution
(the classic "`.to('cpu')` is slow" trap: the copy is where the host finally waits). Every
timestamp colobench records for device work is taken after `synchronize()`, which blocks until
the device has finished everything queued. On a CPU it is a no-op.

No other layer branches on the device kind: they ask a `Device` for what they need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class DeviceUnavailable(Exception):
    """The device named in a spec is not present here; the message says why."""


@dataclass(frozen=True)
class DeviceInfo:
    """Facts about a device for the manifest."""

    device: str  # as given: cpu, cuda:0, npu:1
    kind: str  # cpu | cuda | npu
    name: str  # marketing name: "NVIDIA H100 80GB HBM3", "Ascend910B3", CPU model
    total_memory_bytes: int | None
    driver: str | None  # CUDA runtime / CANN version where known
    extra: dict[str, Any]


class Device(Protocol):
    """One device as seen by a worker process."""

    kind: str
    index: int | None

    def torch_device(self) -> Any:
        """The `torch.device` to move models and tensors to."""

    def synchronize(self) -> None:
        """Block until all queued work on this device has finished."""

    def info(self) -> DeviceInfo:
        """Name, memory, driver: for the manifest."""

    def reset_peak_memory(self) -> None:
        """Start a new peak-memory window."""

    def peak_memory_bytes(self) -> int | None:
        """Peak memory the framework allocated on this device since the last reset (None if unknown)."""

    def cap_memory(self, fraction: float) -> bool:
        """Let this process allocate at most `fraction` of the device's memory (co-located
        instances share a card; neither may starve the other). False where nothing caps it."""


def parse_device(device: str) -> tuple[str, int | None]:
    """`cuda:1` -> ("cuda", 1); `cuda` -> ("cuda", 0); `cpu` -> ("cpu", None)."""
    kind, _, index = device.partition(":")
    if kind == "cpu":
        return "cpu", None
    return kind, int(index) if index else 0
