"""An endpoint's server, seen from outside: its memory (and CPU) while a run loads it.

colobench does not run the server, so its device is invisible, but its memory is not: either
colobench is told the server's process id (`server_pid`, a server on this host; the whole
process tree is summed, since vLLM and SGLang run their engine in child processes), or the server
exports `process_resident_memory_bytes` on its Prometheus `/metrics` (prometheus_client's
process collector, which vLLM, SGLang and TGI all expose; it is the resident memory of the
process that answers /metrics only, which for vLLM's v1 engine is the API server, not the engine
core: the process id is the better source when there is one). Rows have the device
`server:<instance>` and the metrics `rss_bytes`, `source`, and `cpu_pct` (process tree only).
When it reads `/metrics` anyway (no process id), the same text gives the engine's momentary
gauges too: `kv_cache_usage_pct`, `requests_running`, `requests_waiting` (vLLM's or SGLang's,
`telemetry.prometheus`); with a process id the sampler does not add a `/metrics` request per
second to the measured windows for them.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from typing import Any

import psutil
from prometheus_client.parser import text_string_to_metric_families

from colobench.telemetry.base import SamplerUnavailable
from colobench.telemetry.prometheus import gauges

SCRAPE_TIMEOUT_S = 1.0
RSS_METRIC = "process_resident_memory_bytes"


# the engine's gauges a sample keeps: quantity (`telemetry.prometheus.GAUGES`) -> (key, scale)
GAUGE_KEYS = {"kv_cache_usage": ("kv_cache_usage_pct", 100.0), "running": ("requests_running", 1.0),
              "waiting": ("requests_waiting", 1.0)}


@dataclass(frozen=True)
class ServerSource:
    pid: int | None = None
    metrics_url: str | None = None
    model: str | None = None  # the served model, for a server that serves several


def resident_from_metrics(text: str) -> int | None:
    """`process_resident_memory_bytes` from Prometheus text (summed if several processes export it)."""
    values = [s.value for family in text_string_to_metric_families(text) for s in family.samples
              if s.name == RSS_METRIC]
    return int(sum(values)) if values else None


class ServerSampler:
    name = "server"

    def __init__(self, servers: dict[str, ServerSource], interval_s: float = 1.0):
        self.servers, self.interval_s = servers, interval_s
        self._procs: dict[int, Any] = {}

    def start(self) -> None:
        if not self.servers:
            raise SamplerUnavailable("no endpoint names a server_pid or a metrics_url")

    def _tree(self, pid: int) -> dict[str, Any]:
        root = self._procs.get(pid) or psutil.Process(pid)
        self._procs[pid] = root
        rss, cpu = 0, 0.0
        for proc in [root, *root.children(recursive=True)]:
            try:
                rss += proc.memory_info().rss
                cpu += self._procs.setdefault(proc.pid, proc).cpu_percent()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return {"rss_bytes": rss, "cpu_pct": cpu, "source": f"process tree of pid {pid}"}

    def sample(self) -> list[tuple[str, dict[str, Any]]]:
        rows = []
        for name, src in self.servers.items():
            metrics: dict[str, Any] | None = None
            if src.pid is not None:
                try:
                    metrics = self._tree(src.pid)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    metrics = None  # gone, or not ours to read: /metrics may still say
            if metrics is None and src.metrics_url:
                try:
                    with urllib.request.urlopen(src.metrics_url, timeout=SCRAPE_TIMEOUT_S) as resp:
                        text = resp.read().decode("utf-8", "replace")
                    rss, engine = resident_from_metrics(text), gauges(text, src.model)
                except (OSError, ValueError):
                    rss, engine = None, {}
                if rss is not None:
                    metrics = {"rss_bytes": rss, "source": f"{RSS_METRIC} at {src.metrics_url}"}
                if engine:
                    metrics = {**(metrics or {}), **{key: engine[q] * scale for q, (key, scale) in GAUGE_KEYS.items()
                                                     if q in engine}}
            if metrics is not None:
                rows.append((f"server:{name}", metrics))
        return rows

    def stop(self) -> None:
        self._procs.clear()
