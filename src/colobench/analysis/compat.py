"""Summaries written by older colobench versions, converted to today's shape on load.

`colobench.summary/1` had two shapes: a run without a sweep put `phases`, `instances`, `runs`,
`interference` and `energy` at the top, a sweep put them under `points[]` (with its axis values
also copied into each point). Its verdicts lived in `interference.verdicts` with subjects written
as "name/phase", and findings carried one subject string and flat window lists. Every number keeps
its key and meaning; keys that only described the shape are dropped.
"""

from __future__ import annotations

from typing import Any

from colobench.analysis.model import (CHECK_KINDS, FINDING_KINDS, SCHEMA, Check, Finding, InstanceFacts, PhaseMetrics,
                                      Point, Subject, Summary, Window)

V1 = "colobench.summary/1"
_LEVELS = {"unstable": "invalid", "client_bound": "invalid", "bottleneck": "warning", "above_ideal": "warning",
           "rate_off": "warning", "inexact_lengths": "warning", "chunk_counts": "warning", "mbu_disagrees": "warning",
           "failed_requests": "warning", "few_requests": "warning", "fair": "info", "unfair": "info",
           "near_bound": "info", "below_bound": "info"}


def _known(model: type, data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k in model.model_fields}


def _subject(point: str, text: str) -> Subject:
    """`tiny-1/colocated`, `tiny-1 (colocated)` or `aggregate`."""
    if text in ("aggregate", "") or text.startswith("point "):
        return Subject(point=point)
    if "/" in text:
        name, _, phase = text.partition("/")
    else:
        name, _, rest = text.partition(" (")
        phase = rest.rstrip(")")
    return Subject(point=point, instance=name, phase=phase if phase in ("solo", "colocated") else None)


def _check(point: str, v: dict[str, Any]) -> list[Check]:
    subjects = [s.strip() for s in v.get("subject", "").split(",")] if v.get("check") == "sample_size" else \
        [v.get("subject", "")]
    kind = v.get("check")
    return [Check(kind=kind if kind in CHECK_KINDS else "unknown", subject=_subject(point, s), verdict=v["verdict"],
                  level=_LEVELS.get(v["verdict"], "ok"), value=v.get("value"), threshold=v.get("threshold"),
                  sentence=v.get("detail", "")) for s in subjects]


def _finding(f: dict[str, Any]) -> Finding:
    point = f.get("point", "")
    windows = [Window(run_id=f.get("run_id", ""), start_ns=a, end_ns=b, start_s=s[0], end_s=s[1])
               for (a, b), s in zip(f.get("windows_ns") or [], f.get("windows_s") or [])]
    kind = f["kind"] if f["kind"] in FINDING_KINDS or str(f["kind"]).startswith("log:") else "unknown"
    evidence = {**(f.get("evidence") or {}), **({"kind": f["kind"]} if kind == "unknown" else {})}
    return Finding(kind=kind, severity=f["severity"], subjects=[_subject(point, f.get("subject", ""))],
                   title=f["title"], evidence=evidence, windows=windows,
                   recommendation=f.get("recommendation", ""), score=f.get("score", 0.0), point=point)


def _point(p: dict[str, Any]) -> tuple[Point, list[Check]]:
    inter = dict(p.get("interference") or {})
    verdicts = inter.pop("verdicts", [])
    phases = {phase: {name: PhaseMetrics(**_known(PhaseMetrics, mt)) for name, mt in by.items()}
              for phase, by in (p.get("phases") or {}).items()}
    point = Point(id=p.get("id", ""), axes=p.get("axes") or {}, runs=p.get("runs") or {}, phases=phases,
                  instances={n: InstanceFacts(**_known(InstanceFacts, f)) for n, f in (p.get("instances") or {}).items()},
                  interference=inter, energy=p.get("energy") or {})
    return point, [c for v in verdicts for c in _check(point.id, v)]


def from_v1(data: dict[str, Any]) -> Summary:
    """A summary/1 mapping as a `Summary`."""
    raw_points = data.get("points") or [{"id": "", "axes": {}, **{k: data.get(k) for k in
                                                                  ("instances", "runs", "phases", "interference",
                                                                   "energy")}}]
    points, checks = [], []
    for p in raw_points:
        point, point_checks = _point(p)
        points.append(point)
        checks += point_checks
    return Summary(schema=SCHEMA, experiment=data.get("experiment", ""), colobench_version=data.get("colobench_version"),
                   run_dir=data.get("run_dir"), telemetry=data.get("telemetry") or {},
                   idle_power_w=data.get("idle_power_w") or {},
                   sweep_axes=list((data.get("sweep") or {}).get("axes") or []), points=points,
                   batch_scaling=data.get("batch_scaling") or [], checks=checks,
                   findings=[_finding(f) for f in data.get("findings") or []], problems=data.get("problems") or [])


def load_summary_data(data: dict[str, Any], source: str = "a summary") -> Summary:
    """A summary mapping of any known schema as today's `Summary`."""
    schema = data.get("schema")
    if schema == V1:
        return from_v1(data)
    if schema == SCHEMA:
        return Summary.model_validate(data)
    raise ValueError(f"{source}: unknown summary schema {schema!r} (this colobench reads {V1} and {SCHEMA})")
