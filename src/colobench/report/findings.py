"""Verdicts and findings on the console: the checks worth a line, each phase's validity, the
ranked findings with their evidence tables, and `colobench diagnose`'s page. Formatting only:
every verdict comes from `analysis.checks`, every finding from `analysis.diagnosis`. Text that
came from outside (log lines, server messages) is escaped before rich renders it."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from colobench.analysis.model import Check, Finding, PhaseMetrics, Summary


def notable(checks: list[Check]) -> list[Check]:
    """Checks worth a line: warnings and failures (and the scaling verdict either way)."""
    return [c for c in checks if c.level in ("warning", "invalid") or c.kind == "scaling"]


def print_checks(checks: list[Check], console: Console, with_point: bool = False) -> None:
    if not checks:
        return
    console.print()
    console.print("[bold]checks[/]")
    colour = {"ok": "green", "info": "green", "warning": "yellow", "invalid": "red"}
    groups: dict[tuple[str, str], list[Check]] = {}
    for c in checks:  # one line per verdict, naming every subject that got it
        groups.setdefault((c.kind, c.verdict), []).append(c)
    for group in groups.values():
        c = group[0]
        subjects = ", ".join(escape((f"{s.point} " if with_point and s.point else "") + s.label)
                             for s in dict.fromkeys(g.subject for g in group))
        console.print(f"  [{colour[c.level]}]{c.verdict:<15}[/] {subjects}: {escape(c.sentence)}")


def validity_line(mt: PhaseMetrics | None) -> str:
    """VALID or INVALID, the stability band, and the reasons and warnings."""
    v = mt.validity if mt is not None else None
    if v is None:
        return ""
    colour = "green" if v.verdict == "VALID" else "red"
    detail = "; ".join(v.reasons + v.warnings)
    stab = f", {v.stability} ({v.cv_pct:.1f}% cv)" if v.stability else ""
    return f"[{colour}]{v.verdict}[/]{stab}" + (f": {escape(detail)}" if detail else "")


def print_findings(findings: list[Finding], console: Console, limit: int | None = None) -> None:
    """The ranked findings: severity, what, where (time windows in seconds from the run's start),
    the evidence and what to change."""
    console.print()
    if not findings:
        console.print("[bold]diagnosis[/]: no finding (nothing in the records or telemetry points to a cause)")
        return
    console.print(f"[bold]diagnosis[/]: {len(findings)} finding(s), most important first")
    colour = {"high": "red", "medium": "yellow", "low": "cyan"}
    for k, f in enumerate(findings[:limit] if limit else findings, 1):
        point = f" \\[{escape(f.point)}]" if f.point else ""
        console.print(f" {k}. [{colour.get(f.severity, 'white')}]{f.severity:<6}[/] {escape(f.title)}{point}")
        windows = ", ".join(f"{w.start_s:.2f}-{w.end_s:.2f} s ({escape(w.run_id)})" for w in f.windows[:3])
        more = len(f.windows) - 3
        if windows:
            console.print(f"    windows: {windows}{f' (+{more} more)' if more > 0 else ''} from each run's start",
                          style="dim")
        evidence = ", ".join(f"{k}={evidence_text(v)}" for k, v in f.evidence.items() if v is not None and k != "table")
        console.print(f"    evidence: {escape(evidence)}", style="dim")
        rows = f.evidence.get("table")
        if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
            console.print(evidence_table(rows))
        if f.recommendation:
            console.print(f"    do: {escape(f.recommendation)}")


def evidence_text(value: Any) -> str:
    """An evidence value rounded for reading (three significant figures; the summary keeps all)."""
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {evidence_text(v)}" for k, v in value.items() if v is not None) + "}"
    if isinstance(value, (list, tuple)):
        shown = ", ".join(evidence_text(v) for v in value[:8])
        return f"[{shown}{', ...' if len(value) > 8 else ''}]"
    return str(value)


def evidence_table(rows: list[dict[str, Any]]) -> Table:
    """A finding's evidence table (e.g. bandwidth alone and together against the peak)."""
    table = Table(show_edge=False, header_style="dim bold", padding=(0, 1), pad_edge=False)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    for col in columns:
        table.add_column(escape(col), justify="left" if col in ("instance", "phase") else "right")
    for r in rows:
        table.add_row(*(escape(evidence_text(r.get(c))) if r.get(c) is not None else "-" for c in columns))
    return table


def print_diagnosis(summary: Summary, console: Console, logs_scanned: int, rules: int, own_rules: str = "") -> None:
    """`colobench diagnose`: every phase's validity, what the log scan read, then the findings."""
    console.print("[bold]validity[/]")
    for p in summary.points:
        for phase, name, mt in p.rows():
            console.print(f"  {escape(p.id + ' ' if p.id else '')}{escape(name)} ({phase}): {validity_line(mt)}")
    matched = sum(1 for f in summary.findings if f.kind.startswith("log:"))
    console.print(f"[bold]logs[/]: {logs_scanned} file(s) under runs/*/logs scanned with {rules} built-in "
                  f"rules{escape(own_rules)}: {matched} finding(s)")
    print_findings(summary.findings, console)
