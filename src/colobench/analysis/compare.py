"""Compare runs: each metric's ratio to the first run, with an interval and a noise verdict.

Runs are matched by (phase, instance); when the runs share no instance name but each has one
instance per phase (an fp16 run against an int8 run, an NPU run against a GPU run), they are
matched by phase. For means the summary holds a 95% confidence interval; the ratio's interval
is the conservative [low_b / high_a, high_b / low_a], and the difference is beyond the noise when
the two confidence intervals do not overlap. Percentiles and single figures get a ratio only.
"""

from __future__ import annotations

from typing import Any

from colobench.analysis.model import PhaseMetrics, Summary

METRICS = [  # (summary key, distribution key holding its CI, higher is better)
    ("output_throughput", "output_throughput_tok_s", True),
    ("request_throughput", "request_throughput_req_s", True),
    ("mean_ttft_ms", "ttft_ms", False), ("p99_ttft_ms", None, False),
    ("mean_tpot_ms", "tpot_ms", False), ("p99_tpot_ms", None, False),
    ("mean_itl_ms", "itl_ms", False),
    ("mean_e2el_ms", "e2el_ms", False), ("p99_e2el_ms", None, False),
    ("peak_memory_bytes", None, False), ("mbu_pct", None, True), ("energy_per_token_j", None, False),
]


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


def compare(runs: list[dict[tuple[str, str], PhaseMetrics]]) -> list[dict[str, Any]]:
    """Rows: subject, metric, each run's value, ratio to the first, ratio interval, beyond noise."""
    rows = []
    for subject, matched in _match(runs):
        base = matched[0]
        for key, dist_key, higher_better in METRICS:
            a = getattr(base, key)
            if a is None:
                continue
            da = getattr(base.distributions, dist_key) if dist_key else None
            row: dict[str, Any] = {"subject": subject, "metric": key, "higher_is_better": higher_better,
                                   "values": [getattr(mt, key) for mt in matched], "ratios": [], "intervals": [],
                                   "beyond_noise": []}
            for other in matched[1:]:
                b = getattr(other, key)
                ratio = b / a if b is not None and a else None
                db = getattr(other.distributions, dist_key) if dist_key else None
                interval, beyond = None, None
                if da and db and None not in (da.ci95_low, da.ci95_high, db.ci95_low, db.ci95_high) and da.ci95_low > 0:
                    interval = [db.ci95_low / da.ci95_high, db.ci95_high / da.ci95_low]
                    beyond = db.ci95_low > da.ci95_high or db.ci95_high < da.ci95_low
                row["ratios"].append(ratio)
                row["intervals"].append(interval)
                row["beyond_noise"].append(beyond)
            rows.append(row)
    return rows
