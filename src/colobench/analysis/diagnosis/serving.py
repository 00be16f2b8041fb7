"""Detectors that read the serving engine's own counters (`PhaseMetrics.server`, scraped from its
`/metrics` around every window): what the server did that the workload did not ask for.

A prefix cache (on by default in vLLM and SGLang) serves a prompt's leading tokens from blocks an
earlier request left behind: its prefill is skipped and TTFT falls. That is real serving, when
the traffic shares prefixes (a system prompt, a conversation's earlier turns), and a benchmark
asks for it with the workload's `shared_prefix` or `sessions`. When the workload asked for
neither, hits mean prompts repeated by accident (the same prompts in every repetition or phase,
a small prompt file cycled): every TTFT, and every co-location ratio built on it, is biased low.
"""

from __future__ import annotations

from typing import Any

from colobench.analysis.checks import THRESHOLDS as T
from colobench.analysis.diagnosis.detectors import PhaseData, phase_detector
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
