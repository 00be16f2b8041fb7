"""Compare runs: each metric's ratio to the first run, with an interval and a noise verdict.

Runs are matched by (phase, instance); when the runs share no instance name but each has one
instance per phase (an fp16 run against an int8 run, an NPU run against a GPU run), they are
matched by phase. For means the summary holds a 95% confidence interval; the ratio's interval
is the conservative [low_b / high_a, high_b / low_a], and the difference is beyond the noise when
the two confidence intervals do not overlap. Percentiles and single figures get a ratio only.
"""

from __future__ import annotations

from typing import Any

METRICS = [  # (summary key, distribution key holding its CI, higher is better)
    ("output_throughput", "output_throughput_tok_s", True),
    ("request_throughput", "request_throughput_req_s", True),
    ("mean_ttft_ms", "ttft_ms", False), ("p99_ttft_ms", None, False),
    ("mean_tpot_ms", "tpot_ms", False), ("p99_tpot_ms", None, False),
    ("mean_itl_ms", "itl_ms", False),
    ("mean_e2el_ms", "e2el_ms", False), ("p99_e2el_ms", None, False),
    ("peak_memory_bytes", None, False), ("mbu_pct", None, True), ("energy_per_token_j", None, False),
]


def entries(summary: dict[str, Any], point: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """(phase, instance) -> metrics of one run directory (or one of its sweep points)."""
    if summary.get("points"):
        chosen = [p for p in summary["points"] if point is None or p["id"] == point]
        if point is not None and not chosen:
            raise ValueError(f"no sweep point {point!r} (points: {', '.join(p['id'] for p in summary['points'])})")
        if point is None and len(chosen) > 1:
            raise ValueError("a sweep has several points: name one as RUN_DIR:POINT")
        phases = chosen[0].get("phases") or {}
    else:
        phases = summary.get("phases") or {}
    return {(phase, name): mt for phase, by in phases.items() for name, mt in by.items()}


def _match(runs: list[dict[tuple[str, str], dict[str, Any]]]) -> list[tuple[str, list[dict[str, Any]]]]:
    common = set(runs[0]).intersection(*runs[1:])
    if common:
        return [(f"{name} ({phase})", [r[(phase, name)] for r in runs]) for phase, name in sorted(common)]
    out = []
    for phase in ("solo", "colocated"):
        per = [[v for (ph, _), v in r.items() if ph == phase] for r in runs]
        if all(len(p) == 1 for p in per):
            out.append((f"{phase}", [p[0] for p in per]))
    return out


def compare(runs: list[dict[tuple[str, str], dict[str, Any]]]) -> list[dict[str, Any]]:
    """Rows: subject, metric, each run's value, ratio to the first, ratio interval, beyond noise."""
    rows = []
    for subject, matched in _match(runs):
        base = matched[0]
        for key, dist_key, higher_better in METRICS:
            a = base.get(key)
            if a is None:
                continue
            da = (base.get("distributions") or {}).get(dist_key) if dist_key else None
            row: dict[str, Any] = {"subject": subject, "metric": key, "higher_is_better": higher_better,
                                   "values": [m.get(key) for m in matched], "ratios": [], "intervals": [],
                                   "beyond_noise": []}
            for other in matched[1:]:
                b = other.get(key)
                ratio = b / a if b is not None and a else None
                db = (other.get("distributions") or {}).get(dist_key) if dist_key else None
                interval, beyond = None, None
                if da and db and None not in (da.get("ci95_low"), da.get("ci95_high"), db.get("ci95_low"),
                                              db.get("ci95_high")) and da["ci95_low"] > 0:
                    interval = [db["ci95_low"] / da["ci95_high"], db["ci95_high"] / da["ci95_low"]]
                    beyond = db["ci95_low"] > da["ci95_high"] or db["ci95_high"] < da["ci95_low"]
                row["ratios"].append(ratio)
                row["intervals"].append(interval)
                row["beyond_noise"].append(beyond)
            rows.append(row)
    return rows
