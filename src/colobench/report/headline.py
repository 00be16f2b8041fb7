"""The last line `colobench run` prints: a compact JSON headline for scripts
(`colobench run ... | tail -1 | jq .points[0].scaling`), well under 2 KB whatever the run; the
whole summary is `--json` or `summary.json`.

Per point: the aggregate scaling with its verdict, and for each instance and phase its validity
and main means. A sweep with many points keeps the first ones that fit and says how many more
there are (`points_not_shown`).
"""

from __future__ import annotations

import json
from typing import Any

from colobench.analysis.model import Point, Summary

MAX_BYTES = 1800


def _r(value: float | None) -> float | None:
    """Four significant figures: a headline, not a measurement record."""
    return float(f"{value:.4g}") if isinstance(value, float) else value


def _point(summary: Summary, point: Point, detail: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"id": point.id} if point.id or summary.is_sweep else {}
    scaling = next((c for c in summary.checks if c.kind == "scaling" and c.subject.point == point.id
                    and c.subject.instance is None), None)
    if scaling is not None:
        out["scaling"] = {"value": _r(scaling.value), "verdict": scaling.verdict}
    if detail:
        out["instances"] = {name: {phase: {"validity": mt.validity.verdict if mt.validity else None,
                                           "output_throughput": _r(mt.output_throughput),
                                           "mean_ttft_ms": _r(mt.mean_ttft_ms), "mean_tpot_ms": _r(mt.mean_tpot_ms)}
                                   for phase, by in point.phases.items() if (mt := by.get(name)) is not None}
                            for name in point.instances}
    else:
        verdicts = [mt.validity.verdict for _, _, mt in point.rows() if mt.validity]
        out["valid"] = f"{verdicts.count('VALID')}/{len(verdicts)}"
    return out


def headline(summary: Summary) -> dict[str, Any]:
    """The headline of a summary, as plain data."""
    out: dict[str, Any] = {"schema": summary.schema_version, "experiment": summary.experiment,
                           "run_dir": summary.run_dir, "problems": len(summary.problems),
                           "findings": [f.kind for f in summary.findings][:10], "points": []}
    detail = not summary.is_sweep
    for k, point in enumerate(summary.points):
        candidate = out["points"] + [_point(summary, point, detail)]
        if len(json.dumps({**out, "points": candidate}, separators=(",", ":"))) > MAX_BYTES:
            out["points_not_shown"] = len(summary.points) - k
            break
        out["points"] = candidate
    return out
