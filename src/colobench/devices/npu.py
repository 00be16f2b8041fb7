"""Huawei Ascend NPUs through torch_npu.

`import torch_npu` registers the `npu` device type with torch and a `torch.npu` namespace that
mirrors `torch.cuda` (`is_available`, `device_count`, `synchronize`, `get_device_name`,
`max_memory_allocated`, ...). Ascend executes asynchronously like CUDA, and with
TASK_QUEUE_ENABLE the host even queues operators in a second thread, so synchronising before
reading the clock matters at least as much here. The CANN version is `torch.version.cann`, which
`import torch_npu` sets (no torch_npu release has `torch_npu.version.cann`), else
`torch_npu.npu.utils.get_cann_version()`; the driver and firmware versions come from
`npu-smi info -t board` (`Software Version`, `Firmware Version`).

Which chip `npu:k` is: `read_chip_map` runs `npu-smi info -m` (NPU id, chip id, logic id for every
chip); with `ASCEND_RT_VISIBLE_DEVICES` applied (`devices.npu_smi.chip_for`) that places each
device for the samplers and the Ray launcher, and the map goes into the manifest.

Runtime knobs the Ascend tuning guides use, applied before the model loads:
`npu_jit_compile` (`torch_npu.npu.set_compile_mode(jit_compile=...)`: online operator
compilation, off for static shapes) and `npu_allow_internal_format`
(`torch.npu.config.allow_internal_format`: private NZ formats for matmul weights).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import asdict
from typing import Any

from colobench.devices.base import DeviceInfo, DeviceUnavailable, GraphMode, parse_device
from colobench.devices.npu_smi import MappedChip, chip_for, parse_key_values, parse_mapping


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


VISIBLE_ENV = "ASCEND_RT_VISIBLE_DEVICES"
NPU_SMI_TIMEOUT_S = 10.0


UNKNOWN = ("", "not known", "unknown", "None")
VERSION_FILES = {"npu_driver": "/usr/local/Ascend/driver/version.info",
                 "npu_firmware": "/usr/local/Ascend/firmware/version.info"}


def _known(value: Any) -> str | None:
    return None if value is None or str(value).strip() in UNKNOWN else str(value).strip()


def cann_version(torch_npu: Any) -> str | None:
    """The CANN version of the running torch_npu: `torch.version.cann` (set on import; "not known"
    when ASCEND_HOME_PATH is unset), else `torch_npu.npu.utils.get_cann_version("CANN")` (v7.0.0+;
    "" when ACL cannot say)."""
    import torch

    found = _known(getattr(getattr(torch, "version", None), "cann", None))
    if found:
        return found
    try:
        return _known(torch_npu.npu.utils.get_cann_version(module="CANN"))
    except Exception:  # older builds lack it: the manifest says unknown rather than guess
        return None


def version_file(path: str) -> str | None:
    """`Version=` of an Ascend version.info file (driver, firmware)."""
    try:
        for line in open(path, encoding="utf-8", errors="replace"):
            key, _, value = line.partition("=")
            if key.strip().lower() == "version":
                return _known(value)
    except OSError:
        pass
    return None


def _npu_smi(args: list[str]) -> str | None:
    """One npu-smi call's stdout, or None without npu-smi (or when it fails)."""
    if shutil.which("npu-smi") is None:
        return None
    try:
        out = subprocess.run(["npu-smi", *args], capture_output=True, text=True, timeout=NPU_SMI_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def read_chip_map(run: Any = None) -> list[MappedChip] | None:
    """Every chip of the host from `npu-smi info -m` (None without npu-smi)."""
    text = (run or _npu_smi)(["info", "-m"])
    return parse_mapping(text) if text else None


def npu_placement(instances: list[tuple[str, str, str | None]], run: Any = None) -> dict[str, Any] | None:
    """For (name, device, ASCEND_RT_VISIBLE_DEVICES) of each instance: the host's chip map and
    where each Ascend instance's `npu:k` really is (None when no instance is on an NPU)."""
    npus = [(name, device, visible) for name, device, visible in instances if parse_device(device)[0] == "npu"]
    if not npus:
        return None
    mapping = read_chip_map(run)
    placed = {name: {**asdict(chip_for(parse_device(device)[1] or 0, mapping or [], visible)), "visible": visible}
              for name, device, visible in npus}
    return {"chips": [asdict(c) for c in mapping] if mapping is not None else None,
            "source": "npu-smi info -m" if mapping is not None else "npu-smi not found: npu:k assumed to be NPU id k, "
            "chip 0", "instances": placed}


def board_versions(npu_id: int = 0, run: Any = None) -> dict[str, str | None]:
    """Driver (`Software Version`) and firmware of one NPU id, from `npu-smi info -t board`, else
    from the driver's and firmware's version.info files."""
    text = (run or _npu_smi)(["info", "-t", "board", "-i", str(npu_id)])
    card = parse_key_values(text).card if text else {}
    return {"npu_driver": _known(card.get("softwareversion")) or version_file(VERSION_FILES["npu_driver"]),
            "npu_firmware": _known(card.get("firmwareversion")) or version_file(VERSION_FILES["npu_firmware"])}


def versions() -> dict[str, str | None]:
    try:
        torch_npu = _torch_npu()
    except DeviceUnavailable:
        return {}
    mapping = read_chip_map() or []
    first = min((c.npu_id for c in mapping), default=0)
    return {"cann": cann_version(torch_npu), **board_versions(first)}


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

        cann = cann_version(self._torch_npu)
        total = None
        try:
            total = int(torch.npu.get_device_properties(self.index).total_memory)
        except Exception:  # older torch_npu builds lack total_memory; the manifest says unknown
            pass
        chip = chip_for(self.index, read_chip_map() or [], os.environ.get(VISIBLE_ENV))
        return DeviceInfo(f"npu:{self.index}", "npu", torch.npu.get_device_name(self.index), total,
                          f"CANN {cann}" if cann else None,
                          {"torch_npu": getattr(self._torch_npu, "__version__", None), "cann": cann,
                           **board_versions(chip.npu_id), "npu_id": chip.npu_id, "chip_id": chip.chip_id,
                           "logic_id": chip.logic_id})

    def reset_peak_memory(self) -> None:
        import torch

        torch.npu.reset_peak_memory_stats(self.index)

    def peak_memory_bytes(self) -> int | None:
        import torch

        return int(torch.npu.max_memory_allocated(self.index))

    def memory_stats(self) -> dict[str, int] | None:
        import torch

        return {"reserved_bytes": int(torch.npu.memory_reserved(self.index)),
                "allocated_bytes": int(torch.npu.memory_allocated(self.index)),
                "max_reserved_bytes": int(torch.npu.max_memory_reserved(self.index)),
                "max_allocated_bytes": int(torch.npu.max_memory_allocated(self.index))}

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
