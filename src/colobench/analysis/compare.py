"""Compare runs: each metric's ratio to the first run, its interval, and a verdict that an A/A
comparison (two identical experiments) passes.

Runs are matched by (phase, instance); when the runs share no instance name but each has one
instance per phase (an fp16 run against an int8 run, an NPU run against a GPU run), they are
matched by phase.

Every headline is compared on its repetition-level values (one per measured window: the mean
TTFT of each repetition, its output rate, ...): Welch's t on the difference, the standard errors
carried into the ratio, a 95% interval of the ratio (`distribution.welch`). Requests are not
independent samples; repetitions are the unit that also carries the variation from one run to
the next. A difference is *beyond noise* only when the whole interval lies beyond a tolerance
around 1 (`TOLERANCE`, 5% by default: a real regression, not a statistically detectable 0.5%,
which two runs on a shared box differ by anyway); an interval that crosses the tolerance line
while excluding 1 is *inconclusive*; an interval around 1 is *noise*. Below 3 repetitions there
is no interval, and the row says so. Single figures (peak memory, MBU, energy per token) get a
ratio only. Ratio intervals are on the log scale (never below zero). A subject whose result is
INVALID in either run is not judged ("invalid side"): an invalid result describes no system.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from colobench.analysis.distribution import MIN_REPETITIONS, welch
from colobench.analysis.model import PhaseMetrics, Summary
from colobench.analysis.registry import compared

TOLERANCE = 0.05

# (summary key, repetition-level values, higher is better); values None: a single figure
METRICS = compared()
VERDICTS = ("better", "worse", "inconclusive", "noise", "no interval", "single figure", "invalid side")


def _invalid(mt: PhaseMetrics) -> bool:
    return mt.validity is not None and mt.validity.verdict == "INVALID"


@dataclass
class Row:
    subject: str
    metric: str
    higher_is_better: bool
    values: list[float | None]
    ratios: list[float | None] = field(default_factory=list)
    intervals: list[tuple[float, float] | None] = field(default_factory=list)
    p_values: list[float | None] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)

    @property
    def beyond_noise(self) -> list[bool]:
        return [v in ("better", "worse") for v in self.verdicts]

    def to_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "metric": self.metric, "higher_is_better": self.higher_is_better,
                "values": self.values, "ratios": self.ratios, "intervals": self.intervals, "p_values": self.p_values,
                "verdicts": self.verdicts, "beyond_noise": self.beyond_noise}


def entries(summary: Summary, point: str | None = None) -> dict[tuple[str, str], PhaseMetrics]:
    """(phase, instance) -> metrics of one run directory (or one of its sweep points)."""
    chosen = summary.point(point)
    return {(phase, name): mt for phase, name, mt in chosen.rows()}


def _match(runs: list[dict[tuple[str, str], PhaseMetrics]]) -> list[tuple[str, list[PhaseMetrics]]]:
    common = set(runs[0]).intersection(*runs[1:])
    if common:
        return [(f"{name} ({phase})", [r[(phase, name)] for r in runs]) for phase, name in sorted(common)]
    out = []
    for phase in ("solo", "colocated"):
        per = [[v for (ph, _), v in r.items() if ph == phase] for r in runs]
        if all(len(p) == 1 for p in per):
            out.append((f"{phase}", [p[0] for p in per]))
    return out


def verdict(ratio: float, interval: tuple[float, float] | None, higher_is_better: bool,
            tolerance: float = TOLERANCE) -> str:
    """better / worse (the interval lies beyond the tolerance), inconclusive (it excludes 1 but
    crosses the tolerance line), noise (it holds 1), no interval."""
    if interval is None:
        return "no interval"
    low, high = interval
    if low > 1 + tolerance or high < 1 - tolerance:
        return "better" if (low > 1) == higher_is_better else "worse"
    if low > 1 or high < 1:
        return "inconclusive"
    return "noise"


def compare(runs: list[dict[tuple[str, str], PhaseMetrics]], tolerance: float = TOLERANCE) -> list[Row]:
    """Rows: subject, metric, each run's value, and against the first run the ratio, its
    interval, Welch's p-value and the verdict."""
    rows = []
    for subject, matched in _match(runs):
        base = matched[0]
        for key, per_rep, higher_better in METRICS:
            a = getattr(base, key)
            if a is None:
                continue
            row = Row(subject, key, higher_better, [getattr(mt, key) for mt in matched])
            for other in matched[1:]:
                b = getattr(other, key)
                cmp = welch(base.repetition_stats.summary(per_rep), other.repetition_stats.summary(per_rep)) \
                    if per_rep and base.repetition_stats and other.repetition_stats else None
                ratio = b / a if b is not None and a else None
                row.ratios.append(ratio)
                row.intervals.append((cmp.low, cmp.high) if cmp else None)
                row.p_values.append(cmp.p_value if cmp else None)
                if _invalid(base) or _invalid(other):
                    row.verdicts.append("invalid side")  # an INVALID result describes no system: not judged
                elif ratio is None:
                    row.verdicts.append("no interval")
                elif per_rep is None:
                    row.verdicts.append("single figure")
                else:
                    row.verdicts.append(verdict(ratio, (cmp.low, cmp.high) if cmp else None, higher_better, tolerance))
            rows.append(row)
    return rows


def overall(rows: list[Row], k: int = 0) -> str:
    """One sentence for run k+1 against the first: no difference, or which metrics differ."""
    invalid = sorted({r.subject for r in rows if r.verdicts[k] == "invalid side"})
    if invalid and all(r.verdicts[k] in ("invalid side", "single figure") for r in rows):
        return f"not judged: {', '.join(invalid)} INVALID in one of the runs (see `colobench diagnose`)"
    note = (f" ({', '.join(invalid)}: INVALID in one of the runs, not judged; see `colobench diagnose`)"
            if invalid else "")
    return _overall(rows, k) + note


def _overall(rows: list[Row], k: int) -> str:
    judged = [r for r in rows if r.verdicts[k] not in ("single figure", "invalid side")]
    with_interval = [r for r in judged if r.verdicts[k] != "no interval"]
    if not with_interval:
        return (f"no verdict: {len(judged)} metrics compared without intervals (fewer than {MIN_REPETITIONS} "
                "repetitions in a run)")
    differ = [f"{r.subject} {r.metric} {r.verdicts[k]} ({r.ratios[k]:.3f}x)" for r in with_interval
              if r.verdicts[k] in ("better", "worse")]
    unsure = sum(1 for r in with_interval if r.verdicts[k] == "inconclusive")
    tail = f"; {unsure} inconclusive" if unsure else ""
    if not differ:
        return f"no difference: none of {len(with_interval)} metrics beyond noise{tail}"
    return f"{len(differ)} of {len(with_interval)} metrics differ: {', '.join(differ)}{tail}"
