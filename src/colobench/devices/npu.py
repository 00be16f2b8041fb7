"""Huawei Ascend NPUs through torch_npu.

`import torch_npu` registers the `npu` device type with torch and a `torch.npu` namespace that
mirrors `torch.cuda` (`is_available`, `device_count`, `synchronize`, `get_device_name`,
`max_memory_allocated`, ...). Ascend executes asynchronously like CUDA, and with
TASK_QUEUE_ENABLE the host even queues operators in a second thread, so synchronising before
reading the clock matters at least as much here. The CANN version comes from
`torch_npu.version.cann` where the build records it.

Runtime knobs the Ascend tuning guides use, applied before the model loads:
`npu_jit_compile` (`torch_npu.npu.set_compile_mode(jit_compile=...)`: online operator
compilation, off for static shapes) and `npu_allow_internal_format`
(`torch.npu.config.allow_internal_format`: private NZ formats for matmul weights).
"""

from __future__ import annotations

from typing import Any

from colobench.devices.base import DeviceInfo, DeviceUnavailable, GraphMode


def _torch_npu() -> Any:
    """Import torch_npu (registers torch.npu) or explain why the NPU path is unavailable."""
    try:
        import torch_npu  # noqa: F401  (import registers the device type)
    except ImportError as exc:
        raise DeviceUnavailable(f"torch_npu is not installed ({exc.__class__.__name__}: {exc})") from None
    return torch_npu


def count() -> int:
    """NPUs this process sees (0 without torch_npu or a driver)."""
    import torch

    try:
        _torch_npu()
    except DeviceUnavailable:
        return 0
    return torch.npu.device_count() if torch.npu.is_available() else 0


def check(index: int) -> None:
    import torch

    _torch_npu()
    if not torch.npu.is_available():
        raise DeviceUnavailable("torch_npu is installed but reports no NPU (driver or CANN missing?)")
    n = torch.npu.device_count()
    if index >= n:
        raise DeviceUnavailable(f"only {n} NPU{'s' if n != 1 else ''} present (npu:0..npu:{n - 1})")


def versions() -> dict[str, str | None]:
    try:
        torch_npu = _torch_npu()
    except DeviceUnavailable:
        return {}
    return {"cann": getattr(getattr(torch_npu, "version", None), "cann", None)}


class NpuDevice:
    kind = "npu"

    def __init__(self, index: int):
        self.index = index
        self._torch_npu = _torch_npu()

    def torch_device(self) -> Any:
        import torch

        return torch.device(f"npu:{self.index}")

    def synchronize(self) -> None:
        import torch

        torch.npu.synchronize(self.index)

    def info(self) -> DeviceInfo:
        import torch

        cann = getattr(getattr(self._torch_npu, "version", None), "cann", None)
        total = None
        try:
            total = int(torch.npu.get_device_properties(self.index).total_memory)
        except Exception:  # older torch_npu builds lack total_memory; the manifest says unknown
            pass
        return DeviceInfo(f"npu:{self.index}", "npu", torch.npu.get_device_name(self.index), total,
                          f"CANN {cann}" if cann else None,
                          {"torch_npu": getattr(self._torch_npu, "__version__", None)})

    def reset_peak_memory(self) -> None:
        import torch

        torch.npu.reset_peak_memory_stats(self.index)

    def peak_memory_bytes(self) -> int | None:
        import torch

        return int(torch.npu.max_memory_allocated(self.index))

    def cap_memory(self, fraction: float) -> bool:
        import torch

        # the caching allocator refuses allocations past the fraction with an out-of-memory error
        torch.npu.set_per_process_memory_fraction(fraction, self.index)
        return True

    def empty_cache(self) -> None:
        import torch

        torch.npu.empty_cache()

    def apply_knobs(self, knobs: dict[str, Any]) -> dict[str, Any]:
        applied = {}
        if knobs.get("npu_jit_compile") is not None:
            self._torch_npu.npu.set_compile_mode(jit_compile=knobs["npu_jit_compile"])
            applied["npu_jit_compile"] = knobs["npu_jit_compile"]
        if knobs.get("npu_allow_internal_format") is not None:
            self._torch_npu.npu.config.allow_internal_format = knobs["npu_allow_internal_format"]
            applied["npu_allow_internal_format"] = knobs["npu_allow_internal_format"]
        return applied

    def graph_mode(self) -> GraphMode:
        """torch.compile with torchair's NPU backend: the graph runs through the CANN graph engine."""
        try:
            import torchair
        except ImportError:
            raise RuntimeError("graph mode on Ascend needs torchair (it ships with torch_npu 2.1+)") from None
        return GraphMode(backend=torchair.get_npu_backend(compiler_config=torchair.CompilerConfig()))

    def profiler(self) -> Any:
        prof = self._torch_npu.profiler
        return prof.profile(activities=[prof.ProfilerActivity.CPU, prof.ProfilerActivity.NPU])
