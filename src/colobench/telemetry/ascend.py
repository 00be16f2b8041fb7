"""Huawei Ascend NPUs: through the DCMI library when it answers, else `npu-smi`.

Which card and chip: torch's `npu:k` is the k-th logic id `ASCEND_RT_VISIBLE_DEVICES` leaves
visible, and that logic id sits on some NPU id and chip (`npu-smi info -m`; NPU ids need not
start at 0, an A3 or 310P Duo NPU id holds two chips, a 310 card four). The samplers take the
resolved chips (`devices.npu_smi.NpuChip`) and label each row with torch's name, so rows line
up with the instances that used them.

`npu-smi` is slow (hundreds of ms a call on 8-card hosts) and must not run concurrently with
itself, so the default interval is 1 s and calls are serialised. Each tick reads the `info`
table once (per chip: power, temperature, AI Core or NPU utilisation, HBM used and total in MB,
and the process table: each process's own HBM on the chip) and `-t usages` once per NPU id in
use (HBM bandwidth, AI CPU, AI Vector, DDR bandwidth on 310P). A power reading the table prints
once for several chips (A3) is card-level: it goes to `card_power_w`, never to a chip's
`power_w`, so energy per chip is not invented. Where `libdcmi.so` ships with the driver, DCMI
gives the same figures in microseconds, with the card and device ids it maps the logic id to;
a DCMI that returns nothing for `DCMI_EMPTY_TICKS` samples in a row hands over to npu-smi.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import threading
from typing import Any

from colobench.devices.npu_smi import NpuChip, figures, parse_info, parse_key_values
from colobench.telemetry.base import SamplerUnavailable

MB = 2**20
DCMI_EMPTY_TICKS = 3


def chip_metrics(chip: NpuChip, info: Any, usages: Any) -> dict[str, Any]:
    """One chip's sample metrics from a parsed `info` table (or None) and its NPU id's parsed
    `-t usages` report (or None)."""
    m: dict[str, Any] = {}
    row = info.chip(chip.npu_id, chip.chip_id) if info is not None else None
    if row is not None:
        if row.power_w is not None:
            m["card_power_w" if row.power_is_card_level else "power_w"] = row.power_w
        if row.temp_c is not None:
            m["temp_c"] = row.temp_c
        if row.aicore_pct is not None:
            m["aicore_pct"] = row.aicore_pct
        if row.npu_util_pct is not None:
            m["util_pct"] = row.npu_util_pct
        if row.hbm_total_mb:
            m["mem_used_bytes"], m["mem_total_bytes"] = (row.hbm_used_mb or 0) * MB, row.hbm_total_mb * MB
        elif row.memory_total_mb:  # 310-class chips: their memory is DDR
            m["mem_used_bytes"], m["mem_total_bytes"] = (row.memory_used_mb or 0) * MB, row.memory_total_mb * MB
        procs = {str(p.pid_in_container if p.pid_in_container is not None else p.pid): p.memory_mb * MB
                 for p in info.processes if p.npu_id == chip.npu_id and p.chip_id == chip.chip_id}
        if procs:
            m["process_mem_bytes"] = procs
    if usages is not None:
        values = figures(usages.chips.get(chip.chip_id, {}))
        for key in ("aicore_pct", "aicpu_pct", "aivector_pct", "aicube_pct", "hbm_bw_util_pct", "ddr_bw_util_pct"):
            if key in values:
                m.setdefault(key, values[key])
        if "util_pct" in values:
            m["util_pct"] = values["util_pct"]
        if "mem_total_bytes" not in m:  # no table row: the usage percentage is all there is (whole %)
            total = values.get("hbm_total_mb") or values.get("ddr_total_mb")
            used_pct = values.get("hbm_used_pct") if values.get("hbm_total_mb") else values.get("ddr_used_pct")
            if total:
                m["mem_total_bytes"] = int(total * MB)
                if used_pct is not None:
                    m["mem_used_bytes"] = int(total * MB * used_pct / 100)
    if "util_pct" not in m and "aicore_pct" in m:
        m["util_pct"] = m["aicore_pct"]
    return m


class NpuSmiSampler:
    """`npu-smi info` and `npu-smi info -t usages -i <NPU id>`, one call at a time."""

    name = "npu-smi"
    _lock = threading.Lock()  # npu-smi must not run concurrently with itself

    def __init__(self, chips: list[NpuChip], interval_s: float = 1.0, run: Any = None, timeout_s: float = 10.0):
        self.chips, self.interval_s, self.timeout_s = chips, interval_s, timeout_s
        self._run = run

    def start(self) -> None:
        if self._run is None:
            if shutil.which("npu-smi") is None:
                raise SamplerUnavailable("npu-smi is not on PATH")
            self._run = self._subprocess
        table = parse_info(self._run(["npu-smi", "info"]))
        missing = [c.label for c in self.chips if table.chip(c.npu_id, c.chip_id) is None]
        if missing and not table.chips:
            raise SamplerUnavailable("npu-smi info printed no chip this parser recognises (save its output and "
                                     "check it with `colobench devices --npu-smi FILE`)")

    def _subprocess(self, args: list[str]) -> str:
        with self._lock:
            out = subprocess.run(args, capture_output=True, text=True, timeout=self.timeout_s)
        if out.returncode != 0:
            raise SamplerUnavailable(f"{' '.join(args)} failed: {(out.stderr or out.stdout).strip()[:200]}")
        return out.stdout

    def sample(self) -> list[tuple[str, dict[str, Any]]]:
        info = parse_info(self._run(["npu-smi", "info"]))
        usages = {npu: parse_key_values(self._run(["npu-smi", "info", "-t", "usages", "-i", str(npu)]))
                  for npu in sorted({c.npu_id for c in self.chips})}
        return [(c.label, chip_metrics(c, info, usages[c.npu_id])) for c in self.chips]

    def stop(self) -> None:
        pass


class _HbmInfo(ctypes.Structure):
    _fields_ = [("memory_size", ctypes.c_ulonglong), ("freq", ctypes.c_uint), ("memory_usage", ctypes.c_ulonglong),
                ("temp", ctypes.c_int), ("bandwith_util_rate", ctypes.c_uint)]


class _MemoryInfo(ctypes.Structure):  # dcmi_get_memory_info_stru (96 bytes)
    _fields_ = [("memory_size", ctypes.c_ulonglong), ("memory_available", ctypes.c_ulonglong),
                ("freq", ctypes.c_uint), ("hugepagesize", ctypes.c_ulong), ("hugepages_total", ctypes.c_ulong),
                ("hugepages_free", ctypes.c_ulong), ("utiliza", ctypes.c_uint), ("reserve", ctypes.c_ubyte * 60)]


# input_type of dcmi_get_device_utilization_rate (dcmi_interface_api.h; Huawei's DCMI API reference):
# 2 AI Core, 3 AI CPU, 10 HBM bandwidth, 13 the NPU overall (6 would be HBM capacity, not bandwidth)
DCMI_UTIL_AICORE, DCMI_UTIL_AICPU, DCMI_UTIL_HBM_BW, DCMI_UTIL_NPU = 2, 3, 10, 13
DCMI_PATHS = ("libdcmi.so", "/usr/local/dcmi/libdcmi.so", "/usr/local/Ascend/driver/lib64/driver/libdcmi.so")


class DcmiSampler:
    """The same figures through libdcmi, addressed by the card and device ids DCMI gives for each
    chip's logic id (`dcmi_get_card_id_device_id_from_logicid`)."""

    name = "dcmi"

    def __init__(self, chips: list[NpuChip], interval_s: float = 0.2, lib: Any = None):
        self.chips, self.interval_s, self.lib = chips, interval_s, lib
        self.ids: dict[str, tuple[int, int]] = {}

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
        cards = self._cards()
        for chip in self.chips:
            card, device = ctypes.c_int(-1), ctypes.c_int(-1)
            rc = self.lib.dcmi_get_card_id_device_id_from_logicid(ctypes.byref(card), ctypes.byref(device),
                                                                   ctypes.c_uint(chip.logic_id))
            if rc != 0 or (cards is not None and card.value not in cards):
                raise SamplerUnavailable(f"DCMI has no card for {chip.label} (logic id {chip.logic_id}; "
                                         f"rc {rc}, cards {cards})")
            self.ids[chip.label] = (card.value, device.value)

    def _cards(self) -> list[int] | None:
        num, ids = ctypes.c_int(0), (ctypes.c_int * 64)()
        if self.lib.dcmi_get_card_list(ctypes.byref(num), ids, 64) != 0:
            return None
        return [ids[k] for k in range(num.value)]

    def _util(self, card: int, device: int, kind: int) -> float | None:
        value = ctypes.c_uint(0)
        rc = self.lib.dcmi_get_device_utilization_rate(card, device, kind, ctypes.byref(value))
        return float(value.value) if rc == 0 else None

    def sample(self) -> list[tuple[str, dict[str, Any]]]:
        rows = []
        for chip in self.chips:
            card, device = self.ids[chip.label]
            m: dict[str, Any] = {"aicore_pct": self._util(card, device, DCMI_UTIL_AICORE),
                                 "aicpu_pct": self._util(card, device, DCMI_UTIL_AICPU),
                                 "util_pct": self._util(card, device, DCMI_UTIL_NPU),
                                 "hbm_bw_util_pct": self._util(card, device, DCMI_UTIL_HBM_BW)}
            power = ctypes.c_int(0)
            if self.lib.dcmi_get_device_power_info(card, device, ctypes.byref(power)) == 0:
                m["power_w"] = power.value / 10.0  # the library reports tenths of a watt
            temp = ctypes.c_int(0)
            if self.lib.dcmi_get_device_temperature(card, device, ctypes.byref(temp)) == 0:
                m["temp_c"] = float(temp.value)
            hbm = _HbmInfo()
            if self.lib.dcmi_get_device_hbm_info(card, device, ctypes.byref(hbm)) == 0:
                m["mem_total_bytes"] = int(hbm.memory_size) * MB
                m["mem_used_bytes"] = int(hbm.memory_usage) * MB
            else:  # 310 and 310P: no HBM; their DDR through memory_info_v3
                mem = _MemoryInfo()
                if self.lib.dcmi_get_device_memory_info_v3(card, device, ctypes.byref(mem)) == 0 and mem.memory_size:
                    m["mem_total_bytes"] = int(mem.memory_size) * MB
                    m["mem_used_bytes"] = int(mem.memory_size - mem.memory_available) * MB
            if m.get("util_pct") is None:
                m["util_pct"] = m.get("aicore_pct")
            rows.append((chip.label, {k: v for k, v in m.items() if v is not None}))
        return rows

    def stop(self) -> None:
        pass
