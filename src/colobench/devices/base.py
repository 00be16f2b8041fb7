"""What differs between a CPU, an NVIDIA GPU and an Ascend NPU, behind one small interface.

Accelerators run asynchronously: a kernel launch returns to Python long before the device has
finished it, so a host clock read right after a model call measures *dispatch*, not execution
(the classic "`.to('cpu')` is slow" trap: the copy is where the host finally waits). Every
timestamp colobench records for device work is taken after `synchronize()`, which blocks until
the device has finished everything queued. On a CPU it is a no-op.

Two things live here, and no other layer branches on the device kind:

- `DeviceKind`: facts about a kind known without touching any hardware (the parent process
  plans with them): whether it is an accelerator, its default dtype, the environment variable
  that narrows which cards a process sees, the Ray resource that places it, whether the client
  can see it at all (an `endpoint` is a server's device, invisible to colobench).
- `Device`: one device as a worker process uses it (synchronise, memory statistics, the memory
  cap, runtime knobs, graph mode, the profiler), one module per kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class DeviceUnavailable(Exception):
    """The device named in a spec is not present here; the message says why."""


@dataclass(frozen=True)
class DeviceKind:
    """A kind of device, as far as planning, placement and analysis need to know it."""

    name: str  # cpu | cuda | npu | endpoint
    accelerator: bool  # has its own memory and clock domain (telemetry per card, a memory cap)
    default_dtype: str  # what `dtype: auto` becomes
    visible: bool = True  # the client can see and sample it (False: a server's device)
    visible_devices_env: str | None = None  # the variable that narrows the cards a process sees
    ray_resource: str | None = None  # what a Ray actor asks for to be placed on one
    weight_quantization: str | None = None  # None: supported; else why not
    runtime_knobs: tuple[str, ...] = ()  # instance fields only this kind applies
    notes: dict[str, str] = field(default_factory=dict)
    # what co-located instances share, in words: (this one, one of them, two separate ones)
    shared: tuple[str, str, str] = ("this device", "one device", "two separate devices")


KINDS: dict[str, DeviceKind] = {
    # float32 on CPU: bf16 matmuls are slow on many CPUs
    "cpu": DeviceKind("cpu", accelerator=False, default_dtype="float32",
                      shared=("these CPU cores", "one set of CPU cores", "two separate sets of cores")),
    "cuda": DeviceKind("cuda", accelerator=True, default_dtype="bfloat16", visible_devices_env="CUDA_VISIBLE_DEVICES",
                       ray_resource="GPU", shared=("this card", "one card", "two separate cards")),
    # float16 on Ascend: every generation has it (310P has no bfloat16)
    "npu": DeviceKind("npu", accelerator=True, default_dtype="float16", visible_devices_env="ASCEND_RT_VISIBLE_DEVICES",
                      ray_resource="NPU",
                      weight_quantization="weight quantisation on Ascend needs the torch_npu quantisation path, "
                                          "not wired yet",
                      runtime_knobs=("npu_jit_compile", "npu_allow_internal_format"),
                      shared=("this card", "one card", "two separate cards")),
    "endpoint": DeviceKind("endpoint", accelerator=False, default_dtype="none", visible=False),
}


def parse_device(device: str) -> tuple[str, int | None]:
    """`cuda:1` -> ("cuda", 1); `cuda` -> ("cuda", 0); `cpu` -> ("cpu", None); a Ray run's
    `cuda:5@10.0.0.2` -> ("cuda", 5)."""
    kind, _, index = device.split("@")[0].partition(":")
    if kind in ("cpu", "endpoint"):
        return kind, None
    return kind, int(index) if index else 0


def kind_of(device: str) -> DeviceKind:
    """The kind of a device name (`cpu`, `cuda:0`, `npu:1@node`, `endpoint`)."""
    name = parse_device(device)[0]
    try:
        return KINDS[name]
    except KeyError:
        raise DeviceUnavailable(f"unknown device kind {name!r}") from None


def is_accelerator(device: str) -> bool:
    return kind_of(device).accelerator


def normalise(device: str, auto_device: str) -> str:
    """`auto` -> the host's best device; a bare accelerator kind -> its first card."""
    if device == "auto":
        return auto_device
    kind, index = parse_device(device)
    return device if index is None else f"{kind}:{index}"


def visible_devices(device: str) -> dict[str, str]:
    """The environment that shows a process only `device` (a server colobench starts): its card
    through its kind's visible-devices variable (`cuda:1` -> CUDA_VISIBLE_DEVICES=1), or, for
    `cpu`, no card at all (every accelerator kind's variable set empty)."""
    own = kind_of(device).visible_devices_env
    if own is not None:
        return {own: str(parse_device(device)[1])}
    return {k.visible_devices_env: "" for k in KINDS.values() if k.visible_devices_env}


@dataclass(frozen=True)
class DeviceInfo:
    """Facts about a device for the manifest."""

    device: str  # as given: cpu, cuda:0, npu:1
    kind: str  # cpu | cuda | npu
    name: str  # marketing name: "NVIDIA H100 80GB HBM3", "Ascend910B3", CPU model
    total_memory_bytes: int | None
    driver: str | None  # CUDA runtime / CANN version where known
    extra: dict[str, Any]


@dataclass(frozen=True)
class GraphMode:
    """How a model's forward pass is compiled on this device: by transformers' own compile hook
    (`compile_config` with `mode`), or here with a torch.compile `backend` (Ascend's torchair)."""

    mode: str = "default"  # torch.compile mode for transformers' hook
    compile_all_devices: bool = True  # transformers compiles on CUDA only unless told
    backend: Any = None  # a torch.compile backend object: compile `forward` directly with it


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

    def memory_stats(self) -> dict[str, int] | None:
        """The caching allocator's `reserved_bytes` and `allocated_bytes` now, and their peaks since
        the last reset (`max_reserved_bytes`, `max_allocated_bytes`): reserved but unallocated is
        fragmentation. None where there is no caching allocator (the CPU)."""

    def cap_memory(self, fraction: float) -> bool:
        """Let this process allocate at most `fraction` of the device's memory (co-located
        instances share a card; neither may starve the other). False where nothing caps it."""

    def empty_cache(self) -> None:
        """Hand cached, unused allocator blocks back (after an out-of-memory batch)."""

    def apply_knobs(self, knobs: dict[str, Any]) -> dict[str, Any]:
        """Apply the runtime knobs of this kind (`DeviceKind.runtime_knobs`) before the model
        loads; return what was applied."""

    def graph_mode(self) -> GraphMode:
        """How `graph: compiled` compiles the forward pass here."""

    def profiler(self) -> Any:
        """A profiler context manager recording host and device activity (`export_chrome_trace`)."""
