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

Across runs the repetitions cannot see a shift of the whole host (a CPU hog, another tenant, a
governor or clock that changed), so every run times a host reference (`analysis.host_reference`)
and `compare` reads it first: when B's host ran slower or faster beyond the reference's own noise,
a metric whose change lies within what that shift explains for its instance (how much of its time
the instance spends on the host CPU, `host_share`) is called "host shift", not better or worse,
and one beyond it is better or worse "beyond the host shift". With several runs on a side
(`compare A1 A2 A3 -- B1 B2 B3`) each run is one sample: the interval uses the between-run
variance, which also carries every host and start-up variation the runs saw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from colobench.analysis.distribution import MIN_REPETITIONS, Distribution, welch
from colobench.analysis.host_reference import HostShift, host_shift, pooled
from colobench.analysis.interference import ratio_interval
from colobench.analysis.model import HostReference, PhaseMetrics, Summary
from colobench.analysis.registry import compared
from colobench.devices import is_accelerator

TOLERANCE = 0.05

# (summary key, repetition-level values, higher is better); values None: a single figure
METRICS = compared()
VERDICTS = ("better", "worse", "inconclusive", "noise", "host shift", "no interval", "single figure", "invalid side")
PAIRED_HINT = ("for a verdict on a change, run both variants as a sweep in one run (a list as the flag's value, "
               "`--dtype float16,bfloat16`, `--env KEY=a,b`, or `sweep:` in YAML), then `colobench compare RUN:POINT1 "
               "RUN:POINT2`: their repetitions are interleaved and paired, so a host shift moves both alike")

Entries = dict[tuple[str, str], PhaseMetrics]


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


def entries(summary: Summary, point: str | None = None) -> Entries:
    """(phase, instance) -> metrics of one run directory (or one of its sweep points)."""
    chosen = summary.point(point)
    return {(phase, name): mt for phase, name, mt in chosen.rows()}


def _match(runs: list[Entries]) -> list[tuple[str, list[PhaseMetrics]]]:
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


def host_share(metrics: Sequence[PhaseMetrics]) -> float:
    """How much of an instance's time depends on the host CPU, 0-1: its worker's CPU over its
    measured windows (the process's own CPU time per window, else the host sampler's share of a
    core), the most of the runs compared. An endpoint (its server's CPU is not its worker's) or an
    instance with neither figure counts as wholly host-bound: the shift may explain all of it."""
    shares = []
    for mt in metrics:
        if mt.backend == "openai":
            return 1.0
        if mt.client is not None and mt.client.cpu_util_mean is not None:
            shares.append(min(1.0, mt.client.cpu_util_mean))
        elif mt.host is not None and mt.host.worker_cpu_pct is not None and mt.host.worker_cpu_pct.mean is not None:
            shares.append(min(1.0, mt.host.worker_cpu_pct.mean / 100.0))
        else:
            return 1.0
    return max(shares) if shares else 1.0


def shifted_verdict(interval: tuple[float, float], higher_is_better: bool, band: tuple[float, float],
                    tolerance: float) -> str | None:
    """better / worse beyond what a host shift explains (`band`: log slowdowns it explains), or
    None when the change lies within it (widened by the tolerance)."""
    t = math.log(1 + tolerance)
    low, high = math.log(interval[0]), math.log(interval[1])
    worse_low, worse_high = (-high, -low) if higher_is_better else (low, high)  # as log slowdowns
    if worse_low > band[1] + t:
        return "worse"
    if worse_high < band[0] - t:
        return "better"
    return None


def _side_value(side: list[PhaseMetrics], key: str) -> float | None:
    values = [getattr(mt, key) for mt in side]
    if any(v is None for v in values):
        return None
    return sum(values) / len(values)


def _side_distribution(side: list[PhaseMetrics], per_rep: str) -> Distribution | None:
    """One run: its repetitions. Several runs: one value per run (each run's repetition mean), so
    the interval carries the variance between runs."""
    if not all(mt.repetition_stats for mt in side):
        return None
    if len(side) == 1:
        return side[0].repetition_stats.summary(per_rep)
    means = [mt.repetition_stats.summary(per_rep).mean for mt in side]
    return None if any(m is None for m in means) else Distribution.of_repetitions(means)


def _paired(a: PhaseMetrics, b: PhaseMetrics, per_rep: str) -> tuple[float, tuple[float, float]] | None:
    """b over a from repetition k of each (variants interleaved in one run): the geometric mean
    of the per-repetition ratios and its Student t interval; None below 3 pairs."""
    if a.repetition_stats is None or b.repetition_stats is None:
        return None
    ra, rb = a.repetition_stats.by_repetition(per_rep), b.repetition_stats.by_repetition(per_rep)
    common = sorted(set(ra) & set(rb))
    ratios = [rb[k] / ra[k] for k in common if ra[k] and rb[k]]
    interval = ratio_interval(ratios) if len(ratios) == len(common) else None
    if interval is None:
        return None
    return math.exp(sum(math.log(r) for r in ratios) / len(ratios)), interval


def compare(runs: list[Entries | list[Entries]], tolerance: float = TOLERANCE,
            shifts: list[HostShift | None] | None = None, paired: bool = False) -> list[Row]:
    """Rows: subject, metric, each side's value, and against the first side the ratio, its
    interval, Welch's p-value and the verdict. A side is one run's entries, or a list of several
    runs' (each run then one sample). `shifts[k]`: side k+1's host against the first side's.
    `paired`: the sides are points of one run whose repetitions were interleaved (variants): the
    interval comes from the per-repetition ratios, repetition k of one against repetition k of
    the other (no p-value)."""
    sides = [r if isinstance(r, list) else [r] for r in runs]
    flat = [e for side in sides for e in side]
    bounds = [sum(len(s) for s in sides[:k]) for k in range(len(sides) + 1)]
    rows = []
    for subject, matched_flat in _match(flat):
        matched = [matched_flat[bounds[k]:bounds[k + 1]] for k in range(len(sides))]
        base = matched[0]
        for key, per_rep, higher_better in METRICS:
            a = _side_value(base, key)
            if a is None:
                continue
            row = Row(subject, key, higher_better, [_side_value(side, key) for side in matched])
            for k, other in enumerate(matched[1:]):
                b = _side_value(other, key)
                da, db = (_side_distribution(base, per_rep), _side_distribution(other, per_rep)) if per_rep else (None,
                                                                                                                  None)
                cmp = welch(da, db) if da is not None and db is not None else None
                pair = _paired(base[0], other[0], per_rep) if paired and per_rep and len(base) == len(other) == 1 \
                    else None
                # with an interval, the ratio it is about (of the repetition means, or the paired
                # ratios: a p99's pooled figure can lie outside it); without one, the figures' ratio
                ratio = pair[0] if pair else cmp.ratio if cmp else (b / a if b is not None and a else None)
                row.ratios.append(ratio)
                row.intervals.append(pair[1] if pair else (cmp.low, cmp.high) if cmp else None)
                row.p_values.append(None if pair else cmp.p_value if cmp else None)
                if any(_invalid(mt) for mt in base + other):
                    row.verdicts.append("invalid side")  # an INVALID result describes no system: not judged
                elif ratio is None:
                    row.verdicts.append("no interval")
                elif per_rep is None:
                    row.verdicts.append("single figure")
                else:
                    interval = row.intervals[-1]
                    said = verdict(ratio, interval, higher_better, tolerance)
                    shift = shifts[k] if shifts else None
                    if said in ("better", "worse") and shift is not None and shift.shifted and interval[0] > 0:
                        band = shift.band(host_share(base + other), _device_of(subject, base + other))
                        said = shifted_verdict(interval, higher_better, band, tolerance) or "host shift"
                    row.verdicts.append(said)
            rows.append(row)
    return rows


def _device_of(subject: str, metrics: list[PhaseMetrics]) -> str | None:
    """The accelerator an instance ran on (its device reference may have moved), else None."""
    devices = {mt.roofline.device for mt in metrics if mt.roofline and mt.roofline.device}
    return next(iter(devices)) if len(devices) == 1 and is_accelerator(next(iter(devices))) else None


def shifts_of(hosts: list[HostReference | list[HostReference | None] | None], tolerance: float = TOLERANCE
              ) -> list[HostShift]:
    """Each side's host against the first side's (a side of several runs pools their samples)."""
    pooled_ = [pooled(h) if isinstance(h, list) else h for h in hosts]
    return [host_shift(pooled_[0], other, tolerance) for other in pooled_[1:]]


def overall(rows: list[Row], k: int = 0, shift: HostShift | None = None, name: str = "B") -> str:
    """One sentence for side k+1 against the first: the host shift first (when the host moved),
    then no difference, or which metrics differ."""
    invalid = sorted({r.subject for r in rows if r.verdicts[k] == "invalid side"})
    if invalid and all(r.verdicts[k] in ("invalid side", "single figure") for r in rows):
        host = f"; {shift.sentence(name)}" if shift is not None else ""
        return f"not judged: {', '.join(invalid)} INVALID in one of the runs (see `colobench diagnose`){host}"
    note = (f" ({', '.join(invalid)}: INVALID in one of the runs, not judged; see `colobench diagnose`)"
            if invalid else "")
    if shift is not None and shift.unavailable:
        note += f" ({shift.sentence(name)})"
    return _overall(rows, k, shift, name) + note


def _overall(rows: list[Row], k: int, shift: HostShift | None, name: str) -> str:
    judged = [r for r in rows if r.verdicts[k] not in ("single figure", "invalid side")]
    with_interval = [r for r in judged if r.verdicts[k] != "no interval"]
    if not with_interval:
        return (f"no verdict: {len(judged)} metrics compared without intervals (fewer than {MIN_REPETITIONS} "
                "repetitions in a run)")
    differ = [f"{r.subject} {r.metric} {r.verdicts[k]} ({r.ratios[k]:.3f}x)" for r in with_interval
              if r.verdicts[k] in ("better", "worse")]
    unsure = sum(1 for r in with_interval if r.verdicts[k] == "inconclusive")
    tail = f"; {unsure} inconclusive" if unsure else ""
    if shift is not None and not shift.unavailable and not shift.shifted:
        tail += f"; {shift.sentence(name)}"
    if shift is not None and shift.shifted:
        followed = sum(1 for r in with_interval if r.verdicts[k] == "host shift")
        lead = f"{shift.sentence(name)}; "
        follow = f"; {followed} moved with the host" if followed else ""
        if not differ:
            return f"{lead}no metric of {len(with_interval)} differs beyond that{follow}{tail}"
        return f"{lead}{len(differ)} of {len(with_interval)} metrics differ beyond that: {', '.join(differ)}{follow}{tail}"
    if not differ:
        return f"no difference: none of {len(with_interval)} metrics beyond noise{tail}"
    return f"{len(differ)} of {len(with_interval)} metrics differ: {', '.join(differ)}{tail}"
