"""The host through psutil: CPU per core and total, load average, each worker's CPU share,
resident memory, thread count and context switches, and the busiest processes outside the run
(a server the run measures, managed or named by `server_pid`, and its children are the run's own).
On a CPU-only run this is the device telemetry; on an accelerator run it shows host-side
contention (two workers' dispatch threads on one core, another process stealing cycles). The
outside processes are what lets the diagnosis name a CPU hog instead of blaming the partner.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import psutil

OTHERS_TOP = 5
OTHERS_MIN_CPU_PCT = 5.0  # of one core
OTHERS_EVERY_S = 2.0  # walking every process costs milliseconds: not on every sample


def own_trees(server_pids: tuple[int, ...] = ()) -> set[int]:
    """colobench, everything it started (workers, managed servers and their children: vLLM's
    `VLLM::Worker`), and the process tree of every `server_pid`: the run's own processes."""
    ours = set()
    for root in (os.getpid(), *server_pids):
        try:
            proc = psutil.Process(root)
            ours.update([root, *(c.pid for c in proc.children(recursive=True))])
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return ours


class HostSampler:
    name = "host"

    def __init__(self, pids: Callable[[], dict[str, int]], interval_s: float = 0.5, server_pids: tuple[int, ...] = ()):
        self.pids, self.interval_s, self.server_pids = pids, interval_s, server_pids
        self._procs: dict[int, Any] = {}
        self._others: dict[int, Any] = {}
        self._others_at = 0.0

    def start(self) -> None:
        psutil.cpu_percent(percpu=True)  # the first call only starts the interval
        self._busiest_others(set())
        self._others_at = time.monotonic()

    def _proc(self, pid: int) -> Any:
        proc = self._procs.get(pid)
        if proc is None:
            proc = self._procs[pid] = psutil.Process(pid)
            proc.cpu_percent()  # start its interval
        return proc

    def _own_trees(self) -> set[int]:
        return own_trees(self.server_pids)

    def _busiest_others(self, ours: set[int]) -> list[dict[str, Any]]:
        """The processes outside the run (and outside colobench itself, the servers it measures and
        their children) that used the most CPU since the last sample, as a share of one core."""
        ours = ours | self._own_trees()
        seen, out = set(), []
        for proc in psutil.process_iter(["pid", "name"]):
            pid = proc.info["pid"]
            if pid in ours:
                continue
            seen.add(pid)
            known = self._others.setdefault(pid, proc)
            try:
                pct = known.cpu_percent()  # 0 on the first call: the interval starts
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            if pct >= OTHERS_MIN_CPU_PCT:
                out.append({"pid": pid, "name": proc.info["name"], "cpu_pct": pct})
        self._others = {pid: p for pid, p in self._others.items() if pid in seen}
        return sorted(out, key=lambda p: -p["cpu_pct"])[:OTHERS_TOP]

    def sample(self) -> list[tuple[str, dict[str, Any]]]:
        per_core = psutil.cpu_percent(percpu=True)
        workers, ours = {}, set()
        for name, pid in self.pids().items():
            try:
                proc = self._proc(pid)
                with proc.oneshot():
                    ctx = proc.num_ctx_switches()
                    workers[name] = {"pid": pid, "cpu_pct": proc.cpu_percent(), "rss_bytes": proc.memory_info().rss,
                                     "threads": proc.num_threads(),
                                     "ctx_switches": ctx.voluntary + ctx.involuntary}
                ours.update([pid, *(c.pid for c in proc.children(recursive=True))])
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                self._procs.pop(pid, None)
        mem = psutil.virtual_memory()
        others = None
        if time.monotonic() - self._others_at >= OTHERS_EVERY_S:
            self._others_at = time.monotonic()
            others = self._busiest_others(ours)
        return [("host", {
            "cpu_pct": sum(per_core) / len(per_core) if per_core else None,
            "cpu_per_core_pct": per_core,
            "load_1m": os.getloadavg()[0],
            "mem_used_bytes": mem.total - mem.available,
            "mem_total_bytes": mem.total,
            "workers": workers,
            **({"others": others} if others is not None else {}),
        })]

    def stop(self) -> None:
        self._procs.clear()
        self._others.clear()
