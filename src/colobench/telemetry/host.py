"""The host through psutil: CPU per core and total, load average, and each worker's CPU share,
resident memory, thread count and context switches. On a CPU-only run this is the device
telemetry; on an accelerator run it shows host-side contention (two workers' dispatch threads
on one core, another process stealing cycles).
"""

from __future__ import annotations

import os
from typing import Any, Callable

import psutil



class HostSampler:
    name = "host"

    def __init__(self, pids: Callable[[], dict[str, int]], interval_s: float = 0.5):
        self.pids, self.interval_s = pids, interval_s
        self._procs: dict[int, Any] = {}

    def start(self) -> None:
        self.psutil = psutil
        psutil.cpu_percent(percpu=True)  # the first call only starts the interval

    def _proc(self, pid: int) -> Any:
        proc = self._procs.get(pid)
        if proc is None:
            proc = self._procs[pid] = self.psutil.Process(pid)
            proc.cpu_percent()  # start its interval
        return proc

    def sample(self) -> list[tuple[str, dict[str, Any]]]:
        per_core = self.psutil.cpu_percent(percpu=True)
        workers = {}
        for name, pid in self.pids().items():
            try:
                proc = self._proc(pid)
                with proc.oneshot():
                    ctx = proc.num_ctx_switches()
                    workers[name] = {"pid": pid, "cpu_pct": proc.cpu_percent(), "rss_bytes": proc.memory_info().rss,
                                     "threads": proc.num_threads(),
                                     "ctx_switches": ctx.voluntary + ctx.involuntary}
            except (self.psutil.NoSuchProcess, self.psutil.AccessDenied, self.psutil.ZombieProcess):
                self._procs.pop(pid, None)
        mem = self.psutil.virtual_memory()
        return [("host", {
            "cpu_pct": sum(per_core) / len(per_core) if per_core else None,
            "cpu_per_core_pct": per_core,
            "load_1m": os.getloadavg()[0],
            "mem_used_bytes": mem.total - mem.available,
            "mem_total_bytes": mem.total,
            "workers": workers,
        })]

    def stop(self) -> None:
        self._procs.clear()
