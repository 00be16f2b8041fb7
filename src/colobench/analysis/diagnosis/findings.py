"""The finding type and its ranking."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}


@dataclass
class Finding:
    kind: str  # bandwidth_contention, compute_contention, host_bound, cpu_contention, warmup_outliers,
    # throttling, memory_pressure, input_length_variance, periodic_stalls, client_bound
    severity: str  # high | medium | low
    subject: str  # "tiny-1 (colocated)", "point tiny-bs8"
    title: str
    evidence: dict[str, Any]
    windows_ns: list[list[int]] = field(default_factory=list)
    windows_s: list[list[float]] = field(default_factory=list)  # the same, in seconds from the run's start
    recommendation: str = ""
    score: float = 0.0  # size of the effect, for ranking within a severity
    point: str = ""
    run_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rank(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (SEVERITY_ORDER.get(f.severity, 3), -f.score))
