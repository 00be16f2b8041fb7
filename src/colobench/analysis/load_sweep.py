"""A load sweep's points and knees (`colobench run --profile sweep`, run by `colobench.load_sweep`).

Each instance's curve is its points, step by step and phase by phase: the synchronous step (one
request at a time), the throughput step (a closed loop at full concurrency) and the rate steps
between. The *knee* of an instance in a phase is the highest asked rate it kept up with: it sent
at least `KEPT_UP` of the rate, and its p99 TPOT (TTFT when there is none) stayed within `RISE`
times the synchronous step's: past it, requests queue and latency grows with the load.
"""

from __future__ import annotations

from pydantic import Field

from colobench.analysis.model import Summary
from colobench.typed import Frozen

KEPT_UP = 0.95
RISE = 1.5


class SweepPoint(Frozen):
    """One step of the curve for one instance in one phase."""

    step: str  # synchronous, throughput, rate-1 ...
    phase: str
    requested_rate: float | None = None
    achieved_rate: float | None = None
    completed: int = 0
    failed: int = 0
    median_ttft_ms: float | None = None
    p99_ttft_ms: float | None = None
    median_tpot_ms: float | None = None
    p99_tpot_ms: float | None = None
    folder: str = ""


class LoadSweep(Frozen):
    """Every instance's curve, alone and co-located, and its knee."""

    experiment: str
    steps: int
    step_s: float
    points: dict[str, list[SweepPoint]] = Field(default_factory=dict)  # instance -> its points, in order
    knee: dict[str, dict[str, float | None]] = Field(default_factory=dict)  # instance -> phase -> rate


def points_of(summary: Summary, step: str, folder: str) -> dict[str, list[SweepPoint]]:
    out: dict[str, list[SweepPoint]] = {}
    for phase, name, mt in summary.point().rows():
        ol = mt.open_loop
        out.setdefault(name, []).append(SweepPoint(
            step=step, phase=phase, requested_rate=ol.requested_rate if ol else None,
            achieved_rate=ol.achieved_rate if ol else mt.request_throughput, completed=mt.completed, failed=mt.failed,
            median_ttft_ms=mt.median_ttft_ms, p99_ttft_ms=mt.p99_ttft_ms, median_tpot_ms=mt.median_tpot_ms,
            p99_tpot_ms=mt.p99_tpot_ms, folder=folder))
    return out


def knee(points: list[SweepPoint], phase: str) -> float | None:
    """The highest asked rate this phase kept up with (see the module docstring); None when it kept
    up with none, or the synchronous step is missing."""
    sync = next((p for p in points if p.step == "synchronous" and p.phase == phase), None)
    if sync is None:
        return None
    key = "p99_tpot_ms" if sync.p99_tpot_ms is not None else "p99_ttft_ms"
    base = getattr(sync, key)
    best = None
    for p in points:
        if p.phase != phase or p.requested_rate is None or p.achieved_rate is None:
            continue
        value = getattr(p, key)
        if p.achieved_rate >= KEPT_UP * p.requested_rate and value is not None and base and value <= RISE * base:
            best = max(best or 0.0, p.requested_rate)
    return best


