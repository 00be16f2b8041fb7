"""Findings are ranked, and one cause gives one finding.

A detector looks at one instance-phase (or one point) at a time, so the same cause seen in four
phases (CPU contention on a busy host, say) comes out four times; `merge` makes it one finding
per (point, kind) that names every subject and carries every window, with the strongest
observation's title, evidence and severity.
"""

from __future__ import annotations

from colobench.analysis.model import Finding

SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}


def merge(findings: list[Finding]) -> list[Finding]:
    """One finding per (point, kind), in first-seen order."""
    groups: dict[tuple[str, str], list[Finding]] = {}
    for f in findings:
        groups.setdefault((f.point, f.kind), []).append(f)
    out = []
    for group in groups.values():
        if len(group) == 1:
            out.append(group[0])
            continue
        top = min(group, key=lambda f: (SEVERITY_ORDER.get(f.severity, 3), -f.score))
        subjects = list(dict.fromkeys(s for f in group for s in f.subjects))
        others = [s.label for s in subjects if s not in top.subjects]
        title = top.title + (f" (also in {', '.join(others)})" if others else "")
        windows = sorted({(w.run_id, w.start_ns, w.end_ns): w for f in group for w in f.windows}.values(),
                         key=lambda w: (w.start_ns, w.end_ns))
        out.append(top.model_copy(update={"subjects": subjects, "title": title, "windows": windows,
                                          "evidence": {**top.evidence, "observations": len(group)}}))
    return out


def rank(findings: list[Finding]) -> list[Finding]:
    return sorted(merge(findings), key=lambda f: (SEVERITY_ORDER.get(f.severity, 3), -f.score))
