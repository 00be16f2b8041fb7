"""Telemetry over a time window: what the device and the host did while requests ran.

Samples carry `t_ns` on the same clock as request records, so a window is simply the
instance-phase's [first start, last completion]. Energy: from the hardware's cumulative energy
counter where the device has one (NVML), as the counter's increase over the window, with the
counter interpolated linearly at both ends; otherwise by integrating power samples over the
window (trapezoids), and the summary says which. Windows shorter than `MIN_ENERGY_WINDOW_S` are
not given an energy figure: at 100 ms sampling the error at the ends would dominate.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from colobench.analysis.model import DeviceWindow, HostWindow, OtherProcess, Stat

MIN_ENERGY_WINDOW_S = 1.0


Window = tuple[int, int]


def in_window(samples: list[dict[str, Any]], t0: int, t1: int) -> list[dict[str, Any]]:
    return [s for s in samples if t0 <= s["t_ns"] <= t1]


def in_windows(samples: list[dict[str, Any]], windows: list[Window]) -> list[dict[str, Any]]:
    """Samples inside any of the windows (a phase's repetitions: interleaved with other phases)."""
    return [s for s in samples if any(a <= s["t_ns"] <= b for a, b in windows)]


def energy_over_windows(samples: list[dict[str, Any]], windows: list[Window]) -> tuple[float | None, str]:
    """Joules over several windows (a phase's repetitions), and how; None when any is too short
    for an energy figure (then a per-token figure would miss some of the tokens)."""
    if not windows:
        return None, "no measured windows"
    total, methods = 0.0, set()
    for a, b in windows:
        energy, method = energy_over_window(samples, a, b)
        if energy is None:
            return None, method if len(windows) == 1 else f"a repetition's window: {method}"
        total += energy
        methods.add(method)
    return total, " and ".join(sorted(methods))


def _interp(samples: list[dict[str, Any]], key: str, t: int) -> float | None:
    points = [(s["t_ns"], s["metrics"][key]) for s in samples if s["metrics"].get(key) is not None]
    if len(points) < 2 or not points[0][0] <= t <= points[-1][0]:
        return None
    ts, vs = zip(*points)
    return float(np.interp(t, ts, vs))


def energy_over_window(samples: list[dict[str, Any]], t0: int, t1: int) -> tuple[float | None, str]:
    """Joules used by one device in [t0, t1] and how they were obtained (or why not)."""
    if (t1 - t0) / 1e9 < MIN_ENERGY_WINDOW_S:
        return None, f"window shorter than {MIN_ENERGY_WINDOW_S:g} s"
    start, end = _interp(samples, "energy_counter_j", t0), _interp(samples, "energy_counter_j", t1)
    if start is not None and end is not None:
        return end - start, "energy counter"
    points = [(s["t_ns"], s["metrics"]["power_w"]) for s in samples if s["metrics"].get("power_w") is not None]
    if len(points) < 2:
        if any(s["metrics"].get("card_power_w") is not None for s in samples):
            return None, "only a card-level power reading (shared by the card's chips): no energy per chip"
        return None, "no energy counter or power samples for this device"
    ts = np.array([p[0] for p in points], dtype=np.float64)
    ws = np.array([p[1] for p in points], dtype=np.float64)
    if ts[0] > t0 or ts[-1] < t1:
        return None, "power samples do not cover the window"
    grid = np.concatenate([[t0], ts[(ts > t0) & (ts < t1)], [t1]])
    power = np.interp(grid, ts, ws)
    return float(np.trapezoid(power, grid) / 1e9), "power integration"


def _stat(values: list[float]) -> Stat:
    return Stat(mean=float(np.mean(values)) if values else None, peak=float(np.max(values)) if values else None)


def device_window(samples: list[dict[str, Any]], device: str, windows: list[Window],
                  pids: list[int] | None = None) -> DeviceWindow:
    """Utilisation, memory, power, energy, clocks and throttling of one device in some windows."""
    rows = [s for s in samples if s["device"] == device]
    window = in_windows(rows, windows)
    if not window:
        return DeviceWindow()

    def values(key: str) -> list[float]:
        return [s["metrics"][key] for s in window if isinstance(s["metrics"].get(key), (int, float))]
    util, power = _stat(values("util_pct")), _stat(values("power_w"))
    out: dict[str, Any] = {
        "samples": len(window), "sources": sorted({s["source"] for s in window}),
        "util_pct": util, "power_w": power, "mem_used_bytes_peak": _stat(values("mem_used_bytes")).peak,
        "mem_total_bytes": (values("mem_total_bytes") or [None])[-1],
        "temp_c": _stat(values("temp_c")),
    }
    for key in ("sm_clock_mhz", "mem_clock_mhz", "aicore_pct", "hbm_bw_util_pct", "dram_bw_util_pct", "sm_util_pct",
                "card_power_w"):
        if values(key):
            out[key] = _stat(values(key))
    reasons = sorted({r for s in window for r in s["metrics"].get("throttle_reasons") or []})
    if reasons:
        out["throttle_reasons"] = reasons
    if pids:
        per_proc = [sum(s["metrics"].get("process_mem_bytes", {}).get(str(p), 0) for p in pids) for s in window]
        if any(per_proc):
            out["process_mem_bytes_peak"] = max(per_proc)
    energy, method = energy_over_windows(rows, windows)
    out["energy_j"], out["energy_method"] = energy, method
    return DeviceWindow(**out)


def is_host(device: str) -> bool:
    """`host`, or `host@<node>` when a Ray run spans several nodes."""
    return device == "host" or device.startswith("host@")


def host_window(samples: list[dict[str, Any]], windows: list[Window], workers: list[str]) -> HostWindow:
    """Host CPU and the given workers' CPU share and resident memory in some windows (on the node
    that runs them, when a Ray run spans several)."""
    hosts = [s for s in samples if is_host(s["device"])]
    if len({s["device"] for s in hosts}) > 1:
        hosts = [s for s in hosts if any(w in s["metrics"].get("workers", {}) for w in workers)]
    window = in_windows(hosts, windows)
    if not window:
        return HostWindow()
    cpu = [s["metrics"]["cpu_pct"] for s in window if s["metrics"].get("cpu_pct") is not None]
    worker_cpu = [sum(s["metrics"]["workers"].get(w, {}).get("cpu_pct", 0.0) for w in workers) for s in window]
    rss = [sum(s["metrics"]["workers"].get(w, {}).get("rss_bytes", 0) for w in workers) for s in window]
    return HostWindow(samples=len(window), cpu_pct=_stat(cpu), worker_cpu_pct=_stat(worker_cpu),
                      worker_rss_bytes_peak=max(rss) if rss else None,
                      load_1m=_stat([s["metrics"]["load_1m"] for s in window if s["metrics"].get("load_1m") is not None]),
                      others=_others(window))


def _others(window: list[dict[str, Any]]) -> list[OtherProcess]:
    """The busiest processes outside the run over a window: mean share of a core over the
    samples that looked (a process absent from a look used less than the sampler's floor)."""
    looks = [s["metrics"]["others"] for s in window if "others" in s["metrics"]]
    if not looks:
        return []
    total: dict[tuple[int, str], float] = {}
    for look in looks:
        for p in look:
            total[(p["pid"], p["name"])] = total.get((p["pid"], p["name"]), 0.0) + p["cpu_pct"]
    ranked = sorted(((pid, name, t / len(looks)) for (pid, name), t in total.items()), key=lambda x: -x[2])
    return [OtherProcess(pid=pid, name=name, cpu_pct=pct) for pid, name, pct in ranked[:5]]
