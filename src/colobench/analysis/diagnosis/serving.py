"""Detectors that read the serving engine's own counters (`PhaseMetrics.server`, scraped from its
`/metrics` around every window): what the server did that the workload did not ask for.

A prefix cache (on by default in vLLM and SGLang) serves a prompt's leading tokens from blocks an
earlier request left behind: its prefill is skipped and TTFT falls. That is real serving, when
the traffic shares prefixes (a system prompt, a conversation's earlier turns), and a benchmark
asks for it with the workload's `shared_prefix` or `sessions`. When the workload asked for
neither, hits mean prompts repeated by accident (the same prompts in every repetition or phase,
a small prompt file cycled): every TTFT, and every co-location ratio built on it, is biased low.

Two endpoints that slow each other down (two servers on one card, or two models behind one
server) get no device-side cause from the client's records: colobench cannot see a server's
device. `server_contention` reads what the servers themselves counted in the solo and the
co-located windows: queue time and waiting requests (batch slots full), KV-cache usage and
preemptions (KV memory), the server's own inter-token latency (each decode step slower: the
device's compute or bandwidth time-sliced between the servers), and, where the device is sampled
on this host, its utilisation; and says so when none of these was measurable.
"""

from __future__ import annotations

from typing import Any

from colobench.analysis.checks import THRESHOLDS as T
from colobench.analysis.diagnosis.detectors import PhaseData, PointData, phase_detector, point_detector
from colobench.analysis.model import Finding


def _knob(workload: Any, name: str) -> Any:
    """A workload field, from a spec object or its dump (absent in specs that predate it)."""
    return workload.get(name) if isinstance(workload, dict) else getattr(workload, name, None)


def asks_for_sharing(workload: Any) -> bool:
    """Whether the workload shares prompt prefixes on purpose: a `shared_prefix` of some tokens
    for some share of the requests, or multi-turn `sessions` (each turn extends the last)."""
    shared, sessions = _knob(workload, "shared_prefix"), _knob(workload, "sessions")
    if shared:
        tokens, share = _knob(shared, "tokens"), _knob(shared, "share")
        if (tokens is None or tokens > 0) and (share is None or share > 0):
            return True
    if sessions:
        turns = _knob(sessions, "turns")
        if turns is None or turns > 1:
            return True
    return False


@phase_detector
def unrequested_prefix_cache(p: PhaseData) -> list[Finding]:
    """Prefix-cache hits above `unrequested_prefix_hit_pct` of the prompt tokens in a phase whose
    workload has no sharing knob (`shared_prefix`, `sessions`)."""
    ev = p.metrics.server
    if ev is None or ev.prefix_cache_hit_pct is None or ev.prefix_cache_hit_pct <= T.unrequested_prefix_hit_pct:
        return []
    if asks_for_sharing(p.facts.workload):
        return []
    by_rep = {w.repetition: round(w.prefix_cache_hit_pct, 1) for w in ev.repetitions if w.prefix_cache_hit_pct is not None}
    tokens = (f" ({ev.prefix_cache_hits_tokens:,.0f} of {ev.prefix_cache_queries_tokens:,.0f} prompt tokens)"
              if ev.prefix_cache_hits_tokens is not None and ev.prefix_cache_queries_tokens else "")
    return [p.finding(
        "unrequested_prefix_cache", "high" if ev.prefix_cache_hit_pct >= 20 else "medium",
        f"{p.name}'s server served {ev.prefix_cache_hit_pct:.1f}% of its prompt tokens from its prefix cache{tokens} "
        "though the workload shares no prefix: TTFT is biased low",
        {"prefix_cache_hit_pct": ev.prefix_cache_hit_pct, "hits_tokens": ev.prefix_cache_hits_tokens,
         "queries_tokens": ev.prefix_cache_queries_tokens, "by_repetition_pct": by_rep,
         "source": ev.prefix_cache_source, "threshold_pct": T.unrequested_prefix_hit_pct,
         "server_mean_ttft_ms": ev.ttft_ms.server},
        [list(w) for w in p.metrics.repetition_windows_ns], ev.prefix_cache_hit_pct / 100)]


SLOWED = 1.10  # an endpoint slowed by this much (TPOT or TTFT p50, co-located over solo) asks for a cause
STEP_SLOWER = 1.10  # the server's own ITL grew by this much: each decode step slower on the device
QUEUE_GROWTH_MS = 5.0  # the server's mean queue time grew by this many ms (and at least doubled)
KV_FULL_PCT = 90.0


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _util(p: PhaseData | None) -> float | None:
    dev = p.metrics.device_telemetry if p is not None else None
    return dev.util_pct.mean if dev is not None and dev.util_pct is not None else None


def _causes(solo: PhaseData, coloc: PhaseData) -> tuple[list[str], dict[str, Any], bool]:
    """What the server (and the device, where sampled) say about one endpoint's slowdown:
    (causes in words, evidence, whether anything was measurable)."""
    s, c = solo.metrics.server, coloc.metrics.server
    ev: dict[str, Any] = {}
    causes: list[str] = []
    measured = False
    if c is not None and c.windows:
        measured = True
        ev.update(queue_ms=(s.queue_ms if s else None, c.queue_ms), preemptions=(s.preemptions if s else None,
                  c.preemptions), kv_cache_usage_pct=(s.kv_cache_usage_pct if s else None, c.kv_cache_usage_pct),
                  requests_waiting_peak=(s.requests_waiting_peak if s else None, c.requests_waiting_peak),
                  server_itl_ms=(s.itl_ms.server if s else None, c.itl_ms.server))
        step = _ratio(c.itl_ms.server, s.itl_ms.server if s else None)
        if step is not None and step >= STEP_SLOWER:
            causes.append(f"each decode step slower on the device (the server's own ITL {step:.2f}x solo: "
                          "compute or memory bandwidth time-sliced between the servers)")
        q0, q1 = (s.queue_ms if s else None) or 0.0, c.queue_ms
        if q1 is not None and q1 - q0 >= QUEUE_GROWTH_MS and q1 >= 2 * q0:
            causes.append(f"requests queued in the server ({q0:.0f} -> {q1:.0f} ms mean wait: its batch slots full)")
        elif (c.requests_waiting_peak or 0) > max(0.0, (s.requests_waiting_peak or 0) if s else 0):
            causes.append(f"requests waiting in the server (up to {c.requests_waiting_peak:.0f})")
        if c.kv_cache_usage_pct is not None and c.kv_cache_usage_pct >= KV_FULL_PCT:
            causes.append(f"KV cache {c.kv_cache_usage_pct:.0f}% used")
        pre0 = (s.preemptions if s else None) or 0
        if c.preemptions and c.preemptions > pre0:
            causes.append(f"{c.preemptions - pre0:.0f} more preemptions than alone (KV memory short)")
    util0, util1 = _util(solo), _util(coloc)
    if util1 is not None:
        measured = True
        ev["device_util_pct"] = (util0, util1)
        if util1 >= 90:
            causes.append(f"the device {util1:.0f}% busy" + (f" (alone {util0:.0f}%)" if util0 is not None else ""))
    return causes, ev, measured


@point_detector
def server_contention(point: PointData) -> list[Finding]:
    """Endpoints slowed co-located (TPOT or TTFT p50 at least `SLOWED` times solo): the
    device-side cause from the servers' counters and the device telemetry, or, when neither was
    measured, a finding that says so (the host-side findings cannot explain a server's device)."""
    out = []
    pairs = [(point.phases.get(("solo", name)), p) for (phase, name), p in point.phases.items() if phase == "colocated"]
    if len(pairs) < 2 or not all(p.backend == "openai" for _, p in pairs):
        return []
    for solo, coloc in pairs:
        if solo is None:
            continue
        slow = max((r for r in (_ratio(coloc.metrics.median_tpot_ms, solo.metrics.median_tpot_ms),
                                _ratio(coloc.metrics.median_ttft_ms, solo.metrics.median_ttft_ms)) if r is not None),
                   default=None)
        if slow is None or slow < SLOWED:
            continue
        causes, evidence, measured = _causes(solo, coloc)
        evidence.update(slowdown=slow, partners=[p.name for _, p in pairs if p is not coloc])
        windows = [list(w) for w in coloc.metrics.repetition_windows_ns]
        if causes:
            out.append(coloc.finding(
                "server_contention", "high" if slow >= 1.5 else "medium",
                f"{coloc.name} {slow:.2f}x slower beside its partner; on the server's side: {'; '.join(causes)}",
                evidence, windows, slow))
        else:
            why = ("its server's counters show no queueing, KV pressure or slower steps" if measured else
                   "no device-side figure was measured: its server's /metrics was not scraped (--scrape-metrics "
                   "URL, on by default for managed servers) and the device it runs on is not sampled on this host")
            out.append(coloc.finding(
                "server_contention", "low",
                f"{coloc.name} {slow:.2f}x slower beside its partner; device-side cause not measurable: {why}",
                {**evidence, "measurable": measured}, windows, slow * 0.1))
    return out
