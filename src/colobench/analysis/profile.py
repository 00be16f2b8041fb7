"""Reading a profiler trace: where the device sat idle, what launching cost, which ops took time.

A Chrome trace (what `torch.profiler` and torch_npu's profiler export) is a list of events;
complete events (`"ph": "X"`) have a start `ts` and a duration `dur` in microseconds.

- **Device idle share**: over the window from the first to the last device kernel, the fraction
  of time no kernel ran. A decode step that is host-bound shows large gaps: the device finishes
  each small kernel before the host has queued the next. On a CPU there are no device kernels;
  the busy intervals are then the top-level operators of the main thread, and the gaps are
  Python and framework overhead between them.
- **Launch overhead**: time the host spent in kernel-launch calls (cudaLaunchKernel and friends,
  aclrtLaunch / aclopCompileAndExecute on Ascend), and how many.
- **Top operators** by device time (kernel durations summed by name), or host time on a CPU.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

DEVICE_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset", "AscendCL@KERNEL", "Kernel")
LAUNCH_NAMES = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cudaGraphLaunch", "aclopCompileAndExecute",
                "aclrtLaunchKernel", "LaunchKernel")


def load_trace(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text())
    events = data.get("traceEvents", data) if isinstance(data, dict) else data
    return [e for e in events if isinstance(e, dict) and e.get("ph") == "X" and "dur" in e]


def union_us(intervals: list[tuple[float, float]]) -> float:
    """Total length of the union of [start, end] intervals."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def idle_share(intervals: list[tuple[float, float]]) -> dict[str, float] | None:
    """Busy and idle time over the window the intervals span."""
    if not intervals:
        return None
    start, stop = min(a for a, _ in intervals), max(b for _, b in intervals)
    window = stop - start
    busy = union_us(intervals)
    return {"window_us": window, "busy_us": busy, "idle_us": window - busy,
            "idle_share": (window - busy) / window if window > 0 else 0.0}


def _top_level(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Operators of the busiest host thread that are not nested inside another one."""
    by_thread: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e.get("cat") == "cpu_op":
            by_thread[(e.get("pid"), e.get("tid"))].append(e)
    if not by_thread:
        return []
    ops = sorted(max(by_thread.values(), key=len), key=lambda e: (e["ts"], -e["dur"]))
    out, end = [], float("-inf")
    for e in ops:
        if e["ts"] >= end:
            out.append(e)
            end = e["ts"] + e["dur"]
    return out


def analyse(events: list[dict[str, Any]], top: int = 10) -> dict[str, Any]:
    device = [e for e in events if e.get("cat") in DEVICE_CATEGORIES]
    on_device = bool(device)
    basis = device if on_device else _top_level(events)
    idle = idle_share([(e["ts"], e["ts"] + e["dur"]) for e in basis])
    launches = [e for e in events if e.get("name") in LAUNCH_NAMES]
    totals: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for e in basis:
        totals[e["name"]] += e["dur"]
        counts[e["name"]] += 1
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:top]
    busy = sum(totals.values()) or 1.0
    return {
        "basis": "device kernels" if on_device else "top-level host operators (no device kernels: CPU run)",
        "idle": idle,
        "launch": {"count": len(launches), "total_us": sum(e["dur"] for e in launches),
                   "mean_us": sum(e["dur"] for e in launches) / len(launches) if launches else None},
        "top_ops": [{"name": n, "total_us": t, "calls": counts[n], "share": t / busy} for n, t in ranked],
    }
