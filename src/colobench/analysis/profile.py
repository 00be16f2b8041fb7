"""Reading a profiler trace: where the device sat idle, what launching cost, which ops took time.

A Chrome trace (what `torch.profiler` and torch_npu's profiler export) is a list of events, or
an object holding them under `traceEvents`; complete events (`"ph": "X"`) have a start `ts` and a
duration `dur` in microseconds. torch_npu's export differs from torch's in ways that matter:

- `ts` is a string ("1699529623106750.123"), `dur` a number: both are read as numbers;
- device tasks have no `cat`: they are the events of the process named `Ascend Hardware` (one
  thread per stream; `process_name` metadata events name each pid; the pids are encoded, never
  fixed);
- host API calls carry their CANN layer as a prefix (`AscendCL@aclnnMatmul`, `Node@launch`) and
  live in the `CANN` process; at the profiler's default level (Level0) torch_npu drops them, so
  the launch figures say when they are unavailable rather than report zero launches.

- **Device idle share**: over the window from the first to the last device kernel, the fraction
  of time no kernel ran. A decode step that is host-bound shows large gaps: the device finishes
  each small kernel before the host has queued the next. On a CPU there are no device kernels;
  the busy intervals are then the top-level operators of the main thread, and the gaps are
  Python and framework overhead between them.
- **Launch overhead**: time the host spent in kernel-launch calls (cudaLaunchKernel and friends;
  on Ascend the `aclnn*` and `aclop*` operator calls and `Node@launch`), and how many.
- **Top operators** by device time (kernel durations summed by name), or host time on a CPU.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

DEVICE_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset", "AscendCL@KERNEL", "Kernel")
DEVICE_PROCESSES = ("Ascend Hardware",)
LAUNCH_NAMES = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cudaGraphLaunch", "aclopCompileAndExecute",
                "aclopCompileAndExecuteV2", "aclrtLaunchKernel", "LaunchKernel", "launch")
ASCEND_LAYERS = ("AscendCL@", "Runtime@", "Node@", "Model@", "Communication@", "Api@")


class EmptyTrace(ValueError):
    """The profiler wrote no events (torch_npu's profiler logs its own failures and carries on)."""


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def load_trace(path: Path) -> list[dict[str, Any]]:
    """The complete events of a trace, with numeric `ts`/`dur` and each event's `process` name.
    `EmptyTrace` when the file is missing, empty, or holds no complete event."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise EmptyTrace(f"{path}: no trace was written ({exc.strerror})") from None
    try:
        data = json.loads(text) if text.strip() else []
    except json.JSONDecodeError as exc:
        raise EmptyTrace(f"{path}: not a Chrome trace ({exc.msg})") from None
    events = data.get("traceEvents", []) if isinstance(data, dict) else data
    events = [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []
    names = {e.get("pid"): (e.get("args") or {}).get("name") for e in events
             if e.get("ph") == "M" and e.get("name") == "process_name"}
    out = []
    for e in events:
        ts, dur = _number(e.get("ts")), _number(e.get("dur"))
        if e.get("ph") == "X" and ts is not None and dur is not None:
            out.append({**e, "ts": ts, "dur": dur, "process": names.get(e.get("pid"))})
    if not out:
        raise EmptyTrace(f"{path}: the trace holds no complete event (the profiler recorded nothing; torch_npu's "
                         "profiler reports its own failures as [ERROR] lines and carries on)")
    return out


def is_device(e: dict[str, Any]) -> bool:
    return e.get("cat") in DEVICE_CATEGORIES or e.get("process") in DEVICE_PROCESSES


def launch_name(name: str) -> str | None:
    """A host call's name without its CANN layer prefix, if it launches work on the device."""
    for prefix in ASCEND_LAYERS:
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    return name if name in LAUNCH_NAMES or name.startswith(("aclnn", "aclop")) else None


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
    device = [e for e in events if is_device(e)]
    on_device = bool(device)
    basis = device if on_device else _top_level(events)
    idle = idle_share([(e["ts"], e["ts"] + e["dur"]) for e in basis])
    launches = [e for e in events if not is_device(e) and launch_name(str(e.get("name", "")))]
    ascend = any(e.get("process") in DEVICE_PROCESSES for e in events)
    api_events = any(str(e.get("name", "")).startswith(ASCEND_LAYERS) for e in events)
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
        "launch": ({"count": None, "total_us": None, "mean_us": None,
                    "unavailable": "torch_npu's profiler level 0 drops the CANN API events (AscendCL@...): profile "
                                   "at Level1 to count launches"}
                   if ascend and not api_events else
                   {"count": len(launches), "total_us": sum(e["dur"] for e in launches),
                    "mean_us": sum(e["dur"] for e in launches) / len(launches) if launches else None}),
        "top_ops": [{"name": n, "total_us": t, "calls": counts[n], "share": t / busy} for n, t in ranked],
    }
