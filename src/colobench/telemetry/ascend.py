"""Huawei Ascend NPUs: through the DCMI library when it is present, else `npu-smi`.

`npu-smi` is slow (hundreds of ms a call on 8-card hosts) and must not run concurrently with
itself, so the default interval is 1 s and calls are serialised. Where `libdcmi.so` is
installed (it ships with the driver), the same figures come straight from the library in
microseconds. Values: AI Core, AI CPU and overall NPU utilisation, HBM used and total, HBM
bandwidth utilisation, power, temperature.

The parsers read the documented output formats:

- `npu-smi info -t usages -i N`: `Key : value` lines (`HBM Capacity(MB)`, `HBM Usage Rate(%)`,
  `Aicore Usage Rate(%)`, `HBM Bandwidth Usage Rate(%)`, ...); key names vary between CANN
  versions, so each figure has aliases;
- `npu-smi info -t power -i N` / `-t temp -i N`: `Power Dissipation(W)` or `NPU Real-time
  Power(W)`, `NPU Temperature(C)` or `Temperature(C)`;
- `npu-smi info`: the summary table (per chip: health, power, temperature, AI Core %, HBM used /
  total; then the process table with each process's memory).
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import threading
from typing import Any

from colobench.telemetry.base import SamplerUnavailable

ALIASES = {
    "aicore_pct": ("Aicore Usage Rate(%)", "AI Core Usage Rate(%)", "AICore Usage Rate(%)"),
    "aicpu_pct": ("Aicpu Usage Rate(%)", "AI CPU Usage Rate(%)"),
    "aivector_pct": ("Aivector Usage Rate(%)",),
    "util_pct": ("NPU Utilization(%)", "NPU Real-time Utilization(%)", "Chip Usage Rate(%)"),
    "hbm_used_pct": ("HBM Usage Rate(%)",),
    "hbm_total_mb": ("HBM Capacity(MB)",),
    "hbm_bw_util_pct": ("HBM Bandwidth Usage Rate(%)", "Memory Bandwidth Usage Rate(%)"),
    "ddr_used_pct": ("DDR Usage Rate(%)", "Memory Usage Rate(%)"),
    "ddr_total_mb": ("DDR Capacity(MB)",),
    "power_w": ("Power Dissipation(W)", "NPU Real-time Power(W)", "Power(W)", "Chip Power(W)"),
    "temp_c": ("NPU Temperature(C)", "Temperature(C)"),
}
_KEY_LINE = re.compile(r"^\s*(.+?)\s*:\s*([-+]?\d+(?:\.\d+)?)\s*$")


def parse_key_values(text: str) -> dict[str, float]:
    """`Key : number` lines of `npu-smi info -t ...` mapped to colobench names (first alias wins)."""
    raw: dict[str, float] = {}
    for line in text.splitlines():
        match = _KEY_LINE.match(line)
        if match:
            raw.setdefault(match.group(1).strip(), float(match.group(2)))
    out: dict[str, float] = {}
    for name, keys in ALIASES.items():
        for key in keys:
            if key in raw:
                out[name] = raw[key]
                break
    return out


def usage_metrics(values: dict[str, float]) -> dict[str, Any]:
    """Parsed `-t usages` values as sample metrics (bytes where the tool gives MB and %)."""
    m: dict[str, Any] = {k: values[k] for k in ("aicore_pct", "aicpu_pct", "aivector_pct", "util_pct",
                                                   "hbm_bw_util_pct", "power_w", "temp_c") if k in values}
    total_mb = values.get("hbm_total_mb") or values.get("ddr_total_mb")
    used_pct = values.get("hbm_used_pct") if values.get("hbm_total_mb") else values.get("ddr_used_pct")
    if total_mb:
        m["mem_total_bytes"] = int(total_mb * 2**20)
        if used_pct is not None:
            m["mem_used_bytes"] = int(total_mb * 2**20 * used_pct / 100)
    if "util_pct" not in m and "aicore_pct" in m:
        m["util_pct"] = m["aicore_pct"]
    return m


_CHIP_ROW = re.compile(r"^\|\s*(\d+)\s+(\S+)\s*\|\s*(\S+)\s*\|\s*([\d.NA/-]+)\s+([\d.NA/-]+)\s+(\d+)\s*/\s*(\d+)\s*\|")
_CHIP_ROW2 = re.compile(r"^\|\s*(\d+)\s*\|\s*(\S+)\s*\|\s*(\d+)\s+(\d+)\s*/\s*(\d+)\s+(\d+)\s*/\s*(\d+)\s*\|")
_PROC_ROW = re.compile(r"^\|\s*(\d+)\s+(\d+)\s*\|\s*(\d+)\s*\|\s*(\S.*?)\s*\|\s*(\d+)\s*\|")


def parse_info_table(text: str) -> dict[int, dict[str, Any]]:
    """The `npu-smi info` summary table: per NPU id, name, health, power, temperature, AI Core %,
    HBM used/total and the processes with their memory."""
    chips: dict[int, dict[str, Any]] = {}
    last: int | None = None
    in_processes = False
    for line in text.splitlines():
        if "Process id" in line:
            in_processes = True
            continue
        if in_processes:
            match = _PROC_ROW.match(line)
            if match and int(match.group(1)) in chips:
                chips[int(match.group(1))].setdefault("processes", {})[match.group(3)] = int(match.group(5)) * 2**20
            continue
        match = _CHIP_ROW.match(line)
        if match:
            last = int(match.group(1))
            power, temp = match.group(4), match.group(5)
            chips[last] = {"name": match.group(2), "health": match.group(3),
                           "power_w": float(power) if re.match(r"^[\d.]+$", power) else None,
                           "temp_c": float(temp) if re.match(r"^[\d.]+$", temp) else None}
            continue
        match = _CHIP_ROW2.match(line)
        if match and last is not None:
            chips[last].update({"bus_id": match.group(2), "aicore_pct": float(match.group(3)),
                                "mem_used_bytes": int(match.group(6)) * 2**20,
                                "mem_total_bytes": int(match.group(7)) * 2**20})
            last = None
    return chips


class NpuSmiSampler:
    """Runs `npu-smi info -t usages -i N` and `-t power -i N` for each NPU, one call at a time."""

    name = "npu-smi"
    _lock = threading.Lock()  # npu-smi must not run concurrently with itself

    def __init__(self, indices: list[int], interval_s: float = 1.0, run: Any = None, timeout_s: float = 10.0):
        self.indices, self.interval_s, self.timeout_s = indices, interval_s, timeout_s
        self._run = run

    def start(self) -> None:
        if self._run is None:
            if shutil.which("npu-smi") is None:
                raise SamplerUnavailable("npu-smi is not on PATH")
            self._run = self._subprocess
        self._run(["npu-smi", "info", "-t", "usages", "-i", str(self.indices[0])])

    def _subprocess(self, args: list[str]) -> str:
        with self._lock:
            out = subprocess.run(args, capture_output=True, text=True, timeout=self.timeout_s)
        if out.returncode != 0:
            raise SamplerUnavailable(f"{' '.join(args)} failed: {(out.stderr or out.stdout).strip()[:200]}")
        return out.stdout

    def sample(self) -> list[tuple[str, dict[str, Any]]]:
        rows = []
        for i in self.indices:
            values = parse_key_values(self._run(["npu-smi", "info", "-t", "usages", "-i", str(i)]))
            values.update(parse_key_values(self._run(["npu-smi", "info", "-t", "power", "-i", str(i)])))
            rows.append((f"npu:{i}", usage_metrics(values)))
        return rows

    def stop(self) -> None:
        pass


class _HbmInfo(ctypes.Structure):
    _fields_ = [("memory_size", ctypes.c_ulonglong), ("freq", ctypes.c_uint), ("memory_usage", ctypes.c_ulonglong),
                ("temp", ctypes.c_int), ("bandwith_util_rate", ctypes.c_uint)]


DCMI_UTIL_AICORE, DCMI_UTIL_AICPU, DCMI_UTIL_HBM_BW, DCMI_UTIL_NPU = 2, 3, 10, 13
DCMI_PATHS = ("libdcmi.so", "/usr/local/dcmi/libdcmi.so", "/usr/local/Ascend/driver/lib64/driver/libdcmi.so")


class DcmiSampler:
    """The same figures through libdcmi (card/device ids: NPU N is card N, device 0 on 910B)."""

    name = "dcmi"

    def __init__(self, indices: list[int], interval_s: float = 0.2, lib: Any = None):
        self.indices, self.interval_s, self.lib = indices, interval_s, lib

    def start(self) -> None:
        if self.lib is None:
            for path in DCMI_PATHS:
                try:
                    self.lib = ctypes.CDLL(path)
                    break
                except OSError:
                    continue
            else:
                raise SamplerUnavailable("libdcmi.so not found")
        rc = self.lib.dcmi_init()
        if rc != 0:
            raise SamplerUnavailable(f"dcmi_init returned {rc}")

    def _util(self, card: int, kind: int) -> float | None:
        value = ctypes.c_uint(0)
        rc = self.lib.dcmi_get_device_utilization_rate(card, 0, kind, ctypes.byref(value))
        return float(value.value) if rc == 0 else None

    def sample(self) -> list[tuple[str, dict[str, Any]]]:
        rows = []
        for card in self.indices:
            m: dict[str, Any] = {"aicore_pct": self._util(card, DCMI_UTIL_AICORE),
                                 "aicpu_pct": self._util(card, DCMI_UTIL_AICPU),
                                 "util_pct": self._util(card, DCMI_UTIL_NPU),
                                 "hbm_bw_util_pct": self._util(card, DCMI_UTIL_HBM_BW)}
            power = ctypes.c_int(0)
            if self.lib.dcmi_get_device_power_info(card, 0, ctypes.byref(power)) == 0:
                m["power_w"] = power.value / 10.0  # the library reports tenths of a watt
            temp = ctypes.c_int(0)
            if self.lib.dcmi_get_device_temperature(card, 0, ctypes.byref(temp)) == 0:
                m["temp_c"] = float(temp.value)
            hbm = _HbmInfo()
            if self.lib.dcmi_get_device_hbm_info(card, 0, ctypes.byref(hbm)) == 0:
                m["mem_total_bytes"] = int(hbm.memory_size) * 2**20
                m["mem_used_bytes"] = int(hbm.memory_usage) * 2**20
            if m.get("util_pct") is None:
                m["util_pct"] = m.get("aicore_pct")
            rows.append((f"npu:{card}", {k: v for k, v in m.items() if v is not None}))
        return rows

    def stop(self) -> None:
        pass
