"""What each instance-phase used: device and host telemetry in its window, the roofline, energy.

Summary keys (null where not measurable, with the reason under `unmeasured`):
`mean_device_util_pct`, `peak_memory_bytes`, `achieved_bandwidth_bytes_s`, `mbu_pct`, `mfu_pct`,
`energy_j`, `energy_per_token_j`, `tokens_per_j`. On a CPU the device telemetry is the host's:
utilisation is the workers' CPU share, memory their resident set. An endpoint's memory is its
server's (its process tree when `server_pid` is given, else `process_resident_memory_bytes` from
its /metrics), never the load generator's own, which goes to `client.rss_bytes_peak`. Co-located instances on one
accelerator share its energy: each instance's `energy_j` is the device's over that instance's
window (marked shared), and the point's `energy.colocated` gives the device total over the
co-located run with the energy per token of all instances together.
"""

from __future__ import annotations

from typing import Any

from colobench.analysis.model import Allocator, InstanceFacts, Peak, PhaseMetrics, Roofline, SharedEnergy
from colobench.analysis.roofline import decode_roofline
from colobench.analysis.telemetry import device_window, energy_over_windows, host_window, in_windows
from colobench.devices import kind_of
from colobench.devices.peaks import DevicePeak, lookup, with_overrides

NOT_VISIBLE = "the server's device is not visible to the client"
SERVER_SAMPLE_SLACK_NS = 1_000_000_000


def _peak(facts: InstanceFacts, card: str, overrides: dict[str, dict[str, Any]]) -> DevicePeak | None:
    """The device's peak: the table's (exact model), with the experiment's own figures over it;
    a measured copy bandwidth (`devices --probe`) only where the table has no bandwidth."""
    name = (facts.device_info or {}).get("name") or card
    table = lookup(name) if kind_of(card).accelerator else None
    given = overrides.get(card)
    measured = given is not None and str(given.get("source", "")).startswith("measured")
    if measured and table is not None and table.memory_bandwidth_gb_s:
        return table
    return with_overrides(table, name, given)


FRAGMENTATION_UNMEASURED = {"cpu": "the CPU allocator keeps no reserved pool: no fragmentation figure",
                            "endpoint": "a server's allocator is not visible to the client"}


def allocator(memory: dict[str, Any] | None) -> Allocator | None:
    """Fragmentation from the allocator figures a worker reported (None when it reported none)."""
    if not memory:
        return None

    def pct(reserved: int, allocated: int) -> float | None:
        return 100.0 * (reserved - allocated) / reserved if reserved else None

    return Allocator(**{k: int(memory[k]) for k in ("max_reserved_bytes", "max_allocated_bytes", "reserved_bytes",
                                                     "allocated_bytes")},
                     fragmentation_pct_peak=pct(memory["max_reserved_bytes"], memory["max_allocated_bytes"]),
                     fragmentation_pct_end=pct(memory["reserved_bytes"], memory["allocated_bytes"]))


def server_memory(samples: list[dict[str, Any]], name: str, windows: list[tuple[int, int]]) -> tuple[int, str] | None:
    """An endpoint's server's peak resident memory in some windows (widened by a sampling interval:
    a short window may hold no sample of its own), and where it came from."""
    wide = [(a - SERVER_SAMPLE_SLACK_NS, b + SERVER_SAMPLE_SLACK_NS) for a, b in windows]
    rows = in_windows([s for s in samples if s["device"] == f"server:{name}"], wide)
    rows = [s for s in rows if s["metrics"].get("rss_bytes")]
    if not rows:
        return None
    top = max(rows, key=lambda s: s["metrics"]["rss_bytes"])
    return int(top["metrics"]["rss_bytes"]), str(top["metrics"].get("source") or "server")


def server_cpu(samples: list[dict[str, Any]], name: str, windows: list[tuple[int, int]]) -> float | None:
    """An endpoint's server's process tree CPU in some windows: the mean, in cores (a server on this
    host: managed, or named by `server_pid`)."""
    rows = in_windows([s for s in samples if s["device"] == f"server:{name}"], windows)
    values = [s["metrics"]["cpu_pct"] for s in rows if isinstance(s["metrics"].get("cpu_pct"), (int, float))]
    return sum(values) / len(values) / 100 if values else None


def instance_resources(samples: list[dict[str, Any]], facts: InstanceFacts, device: str, metrics: PhaseMetrics,
                       worker_keys: list[str], pids: list[int], overrides: dict[str, dict[str, float]],
                       shared_device: bool, name: str = "") -> dict[str, Any]:
    """Fields to add to one instance-phase's metrics (`device` is the one it really ran on)."""
    card = device.split("@")[0]  # `cuda:0@10.0.0.2`: a card on one node of a Ray run spanning several
    kind = kind_of(card)
    unmeasured: dict[str, str] = {}
    out: dict[str, Any] = {}
    windows = metrics.repetition_windows_ns or ([metrics.window_ns] if metrics.window_ns else [])
    if not windows:
        return {"unmeasured": {"telemetry": "no measured requests"}}
    host = host_window(samples, windows, worker_keys)
    out["host"] = host
    dev = device_window(samples, device, windows, pids) if kind.accelerator else None
    out["device_telemetry"] = dev
    util = dev.util_pct.mean if dev is not None and dev.util_pct else None
    if util is None and not kind.accelerator and kind.visible and host.samples:
        util = host.worker_cpu_pct.mean if host.worker_cpu_pct else None
    out["mean_device_util_pct"] = util
    if util is None:
        unmeasured["mean_device_util_pct"] = NOT_VISIBLE if not kind.visible else "no device utilisation samples in the window"
    # peak memory, best source first: the device's per-process figure, the framework's own peak
    # (already in metrics), the worker's resident set; an endpoint's is its server's or unmeasured
    if not kind.visible:
        out["server_cpu_cores"] = server_cpu(samples, name, windows)
        served = server_memory(samples, name, windows)
        if served is not None:
            out["peak_memory_bytes"], out["memory_source"] = served
        else:
            out["peak_memory_bytes"] = None
            unmeasured["peak_memory_bytes"] = ("the server's memory is not visible: give the instance `server_pid` (a "
                                               "server on this host) or a `metrics_url` that exports "
                                               "process_resident_memory_bytes")
        if metrics.client is not None and host.worker_rss_bytes_peak:
            out["client"] = metrics.client.model_copy(update={"rss_bytes_peak": host.worker_rss_bytes_peak})
    elif dev is not None and dev.process_mem_bytes_peak:
        out["peak_memory_bytes"] = int(dev.process_mem_bytes_peak)
    elif not metrics.peak_memory_bytes and host.worker_rss_bytes_peak:
        out["peak_memory_bytes"] = host.worker_rss_bytes_peak
    peak = _peak(facts, card, overrides)
    roof, reasons = decode_roofline(
        facts, metrics, peak.memory_bandwidth_bytes_s if peak and peak.memory_bandwidth_gb_s else None,
        peak.peak_flops(facts.dtype or "") if peak else None)
    out.update({k: roof[k] for k in ("achieved_bandwidth_bytes_s", "mbu_pct", "mfu_pct")})
    gpm = dev.dram_bw_util_pct.mean if dev is not None and dev.dram_bw_util_pct else None
    if gpm is not None and roof.get("mbu_pct") is not None:
        roof["gpm_dram_bw_util_pct"] = gpm
        roof["gpm_agrees"] = abs(gpm - roof["mbu_pct"]) <= 10.0
    out["roofline"] = Roofline(**roof, peak=Peak(**peak.__dict__) if peak else None, device=device)
    unmeasured.update(reasons)
    energy = dev.energy_j if dev is not None else None
    out["energy_j"] = energy
    tokens = metrics.total_output_tokens or 0
    if energy:
        out["energy_method"] = dev.energy_method
        out["energy_shared"] = shared_device
        out["energy_per_token_j"] = energy / tokens if tokens else None
        out["tokens_per_j"] = tokens / energy
    else:
        reason = (dev.energy_method if dev is not None else
                  NOT_VISIBLE if not kind.visible else "CPU runs have no energy counter here")
        unmeasured["energy_j"] = reason or "no power samples"
        out["energy_per_token_j"] = out["tokens_per_j"] = None
    if metrics.allocator is None and kind.name in FRAGMENTATION_UNMEASURED:
        unmeasured["fragmentation_pct"] = FRAGMENTATION_UNMEASURED[kind.name]
    out["unmeasured"] = unmeasured
    return out


def shared_energy(samples: list[dict[str, Any]], phase_metrics: dict[str, PhaseMetrics],
                  devices: dict[str, str]) -> dict[str, SharedEnergy]:
    """Energy of each accelerator over the co-located run and per token of all its instances."""
    out: dict[str, SharedEnergy] = {}
    for device in sorted({d for d in devices.values() if kind_of(d).accelerator}):
        names = [n for n, d in devices.items() if d == device and n in phase_metrics and phase_metrics[n].window_ns]
        if not names:
            continue
        per_rep = list(zip(*(phase_metrics[n].repetition_windows_ns or [phase_metrics[n].window_ns] for n in names)))
        windows = [(min(a for a, _ in ws), max(b for _, b in ws)) for ws in per_rep]  # the run's k-th window
        energy, method = energy_over_windows([s for s in samples if s["device"] == device], windows)
        tokens = sum(phase_metrics[n].total_output_tokens or 0 for n in names)
        out[device] = SharedEnergy(instances=names, energy_j=energy, method=method, output_tokens=tokens,
                                   energy_per_token_j=energy / tokens if energy and tokens else None,
                                   tokens_per_j=tokens / energy if energy else None)
    return out


def idle_power(samples: list[dict[str, Any]]) -> dict[str, float]:
    """Mean power of each device during the idle window before the first run."""
    by_device: dict[str, list[float]] = {}
    for s in samples:
        if s["metrics"].get("power_w") is not None:
            by_device.setdefault(s["device"], []).append(s["metrics"]["power_w"])
    return {d: sum(v) / len(v) for d, v in by_device.items()}
