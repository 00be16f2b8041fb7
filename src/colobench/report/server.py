"""The client-against-server table: each instance-phase's figures as colobench measured them beside
the server's own counters over the same windows (`PhaseMetrics.server`, `analysis.server`), as a
console table, an HTML table, markdown and CSV columns. Formatting only.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from colobench.analysis.model import ClientServer, PhaseMetrics, ServerEvidence, Summary

# (label, field of ServerEvidence holding a ClientServer, unit, CSV stem)
PAIRS = (("requests", "requests", "", "requests"), ("prompt tokens", "prompt_tokens", "", "prompt_tokens"),
         ("output tokens", "output_tokens", "", "output_tokens"), ("TTFT", "ttft_ms", "ms", "mean_ttft_ms"),
         ("ITL", "itl_ms", "ms", "mean_itl_ms"), ("TPOT", "tpot_ms", "ms", "mean_tpot_ms"),
         ("E2E", "e2el_ms", "ms", "mean_e2el_ms"))
# (label, field of ServerEvidence: the server's alone, CSV column)
SERVER_ONLY = (("queue", "queue_ms", "server_mean_queue_ms"), ("preemptions", "preemptions", "server_preemptions"),
               ("KV cache %", "kv_cache_usage_pct", "server_kv_cache_usage_pct"),
               ("waiting (peak)", "requests_waiting_peak", "server_requests_waiting_peak"),
               ("prefix-cache hit %", "prefix_cache_hit_pct", "server_prefix_cache_hit_pct"))


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000 or float(v).is_integer():
        return f"{v:,.0f}"
    return f"{v:.1f}" if abs(v) >= 100 else f"{v:.2f}"


def _diff(pair: ClientServer, unit: str) -> str:
    diff, rel = pair.difference, pair.relative
    if diff is None:
        return "-"
    text = f"{diff:+,.0f}" if not unit else f"{diff:+.2f} {unit}"
    return text + (f" ({rel * 100:+.1f}%)" if rel is not None and unit else "")


def has_evidence(mt: PhaseMetrics | None) -> bool:
    return mt is not None and mt.server is not None and mt.server.windows > 0


def _server_only(ev: ServerEvidence, field: str) -> str:
    value = getattr(ev, field)
    if field == "prefix_cache_hit_pct" and value is not None and ev.prefix_cache_queries_tokens:
        return f"{value:.1f} ({ev.prefix_cache_hits_tokens:,.0f} / {ev.prefix_cache_queries_tokens:,.0f} tok)"
    return _num(value)


def server_table(solo: PhaseMetrics | None, coloc: PhaseMetrics | None) -> Table | None:
    """One instance's client-against-server rows, solo and co-located side by side (None without
    server evidence)."""
    phases = [(label, mt.server) for label, mt in (("solo", solo), ("co-located", coloc)) if has_evidence(mt)]
    if not phases:
        return None
    table = Table(show_edge=False, header_style="bold", title_justify="left",
                  title="client against the server's own /metrics (same windows)")
    table.add_column("")
    for label, _ in phases:
        table.add_column(f"{label} client", justify="right")
        table.add_column("server", justify="right")
        table.add_column("client - server", justify="right")
    for label, field, unit, _ in PAIRS:
        pairs = [getattr(ev, field) for _, ev in phases]
        if all(p.client is None and p.server is None for p in pairs):
            continue
        row = [label + (f" {unit}" if unit else "")]
        for pair in pairs:
            row += [_num(pair.client), _num(pair.server), _diff(pair, unit)]
        table.add_row(*row)
    for label, field, _ in SERVER_ONLY:
        if all(getattr(ev, field) is None for _, ev in phases):
            continue
        row = [label]
        for _, ev in phases:
            row += ["", _server_only(ev, field), ""]
        table.add_row(*row)
    return table


def server_notes(label: str, mt: PhaseMetrics | None) -> list[str]:
    """Dim lines under the table: the engine and windows, where shared, what was left out."""
    if mt is None or mt.server is None:
        return []
    ev = mt.server
    lines = [f"[dim]  {label} server: {escape(ev.engine or 'unknown engine')} at {escape(ev.url or '-')}, "
             f"{ev.windows} window(s) scraped"
             + (f"; counts {escape(', '.join(ev.shared_with))} too" if ev.shared_with else "")
             + (f"; KV cache from {escape(ev.kv_cache_usage_source)}" if ev.kv_cache_usage_source else "") + "[/]"]
    lines += [f"[yellow]  {label} server: {escape(p)}[/]" for p in ev.problems]
    return lines


def server_rows(summary: Summary) -> list[dict[str, Any]]:
    """One row per instance-phase with server evidence: every pair's client and server values."""
    rows = []
    for p in summary.points:
        for phase, name, mt in p.rows():
            if not has_evidence(mt):
                continue
            ev = mt.server
            row: dict[str, Any] = {"point": p.id, **p.axes, "phase": phase, "instance": name, "engine": ev.engine,
                                   "windows": ev.windows}
            row.update(server_columns(mt))
            rows.append(row)
    return rows


def server_columns(mt: PhaseMetrics) -> dict[str, Any]:
    """The CSV columns of one phase's server evidence: `server_<x>` the server's, `server_client_<x>`
    the client's over the same windows (empty without evidence)."""
    if not has_evidence(mt):
        return {}
    ev = mt.server
    out: dict[str, Any] = {}
    for _, field, _, stem in PAIRS:
        pair = getattr(ev, field)
        out[f"server_client_{stem}"], out[f"server_{stem}"] = pair.client, pair.server
    for _, field, column in SERVER_ONLY:
        out[column] = getattr(ev, field)
    return out


def server_markdown(summary: Summary) -> str:
    """The client-against-server table as markdown ("" without evidence): `client / server` per cell."""
    shown = [(p, phase, name, mt.server) for p in summary.points for phase, name, mt in p.rows() if has_evidence(mt)]
    if not shown:
        return ""
    head = (["point"] if summary.is_sweep else []) + ["instance", "phase"] + \
        [label + (f" {unit}" if unit else "") + " (client / server)" for label, _, unit, _ in PAIRS] + \
        [label for label, _, _ in SERVER_ONLY]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p, phase, name, ev in shown:
        cells = ([p.id] if summary.is_sweep else []) + [name, phase]
        cells += [f"{_num(getattr(ev, f).client)} / {_num(getattr(ev, f).server)}" for _, f, _, _ in PAIRS]
        cells += [_server_only(ev, f) for _, f, _ in SERVER_ONLY]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def server_html(summary: Summary, escape_html: Any) -> str:
    """The client-against-server table for the report page ("" without evidence)."""
    shown = [(p, phase, name, mt.server) for p in summary.points for phase, name, mt in p.rows() if has_evidence(mt)]
    if not shown:
        return ""
    head = ("<tr>" + ("<th>point</th>" if summary.is_sweep else "") + "<th>instance</th><th>phase</th>"
            + "".join(f"<th>{escape_html(label)}{' ' + unit if unit else ''}<br><small>client / server</small></th>"
                      for label, _, unit, _ in PAIRS)
            + "".join(f"<th>{escape_html(label)}</th>" for label, _, _ in SERVER_ONLY) + "<th>engine, windows</th></tr>")
    rows = []
    for p, phase, name, ev in shown:
        cells = "".join(f"<td>{_num(getattr(ev, f).client)} / {_num(getattr(ev, f).server)}</td>" for _, f, _, _ in PAIRS)
        cells += "".join(f"<td>{escape_html(_server_only(ev, f))}</td>" for _, f, _ in SERVER_ONLY)
        notes = [f"{ev.engine or 'unknown'}, {ev.windows} window(s)"] + \
            ([f"shared with {', '.join(ev.shared_with)}"] if ev.shared_with else []) + ev.problems
        rows.append("<tr>" + (f"<td>{escape_html(p.id)}</td>" if summary.is_sweep else "")
                    + f"<td>{escape_html(name)}</td><td>{escape_html(phase)}</td>{cells}"
                    f"<td><small>{'<br>'.join(escape_html(n) for n in notes)}</small></td></tr>")
    return ("<h3>client against the server's own /metrics (the same windows)</h3><table>" + head + "".join(rows)
            + "</table>")
