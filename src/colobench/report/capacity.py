"""What `colobench capacity` found, for a person: the latency-versus-load table of each instance
with its knee and capacity, the co-location boundary against its two references (perfect sharing
and two separate cards), and one offline `capacity.html` drawing the region, every probe and the
references, plus each instance's latency against load."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from colobench.report.html import PLOTLY_JS, scrubbed_page
from colobench.analysis.capacity import CapacityRegion, CapacitySummary, SoloCapacity
from colobench.devices.base import DeviceKind, DeviceUnavailable, kind_of
from colobench.rundir import RunDir


def _n(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def solo_table(s: SoloCapacity) -> Table:
    """Every probe of one instance alone, by rate: the latency-versus-load curve."""
    lowest = min((p.rates[s.instance] for p in s.probes), default=None)
    title = (f"{s.instance} alone: capacity {_n(s.max_rate)} req/s" if s.max_rate is not None
             else f"{s.instance} alone: no rate met the SLO down to {_n(lowest)} req/s")
    if s.first_failing_rate is not None:
        title += f" (fails at {_n(s.first_failing_rate)})"
    if s.knee_rate is not None:
        title += f", knee at {_n(s.knee_rate)} req/s"
    table = Table(show_edge=False, header_style="bold", title=escape(title), title_justify="left")
    for col in ("rate req/s", "sent req/s", "requests", "SLO met", "goodput req/s", "TTFT p99 ms", "TPOT p99 ms",
                "verdict"):
        table.add_column(col, justify="left" if col == "verdict" else "right")
    for p in sorted(s.probes, key=lambda p: p.rates[s.instance]):
        n = s.instance
        mark = " (knee)" if s.knee_rate is not None and abs(p.rates[n] - s.knee_rate) < 1e-9 else ""
        verdict = "[green]pass[/]" if p.passed else f"[red]fail[/]: {escape(p.reason)}"
        table.add_row(f"{p.rates[n]:.3g}{mark}", _n(p.achieved_rate.get(n)), str(p.requests.get(n, "-")),
                      _pct(p.attainment.get(n)), _n(p.goodput.get(n)), _n(p.p99_ttft_ms.get(n)),
                      _n(p.p99_tpot_ms.get(n)), verdict)
    return table


def region_table(r: CapacityRegion) -> Table:
    """The boundary along each ray, against perfect sharing (load 1) and separate cards."""
    names = r.instances
    table = Table(show_edge=False, header_style="bold", title="co-location boundary (load = sum of rate / solo "
                  "capacity: 1 is perfect sharing)", title_justify="left")
    two = len(names) == 2
    cols = ["share", *(["ratio B/A"] if two else []), *(f"{escape(n)} req/s" for n in names), "load",
            "separate cards", "fails at", "probes"]
    for col in cols:
        table.add_column(col, justify="right")
    for b in r.boundary:
        table.add_row(f"{b.share:.2f}", *([_n(b.ratio)] if two else []), *(_n(b.rates[n]) for n in names),
                      f"{b.load:.2f}", f"{b.rectangle_load:.2f}", _n(b.first_failing_load), str(len(b.probes)))
    return table


def shared_thing(device_kind: str | None) -> tuple[str, str, str]:
    """What the instances share, in words that fit it (the devices layer's): (this one, one of
    them, two separate ones)."""
    try:
        return kind_of(device_kind).shared if device_kind else DeviceKind("", False, "").shared
    except DeviceUnavailable:
        return DeviceKind("", False, "").shared


def sharing_sentence(r: CapacityRegion, device_kind: str | None = None) -> str:
    this, one, two = shared_thing(device_kind)
    caps = ", ".join(f"{n} {c:.3g} req/s" for n, c in r.solo_caps.items())
    text = f"solo capacities: {caps}."
    if r.sharing_efficiency is not None:
        text += (f" At the boundary the instances carry {r.sharing_efficiency:.2f} of their solo capacities together "
                 f"(1.00 = perfect sharing of {one}")
        text += f", 2.00 = as if on {two})." if len(r.instances) == 2 else ")."
    if r.vs_separate_cards is not None:
        text += f" Sharing {this} keeps {r.vs_separate_cards * 100:.0f}% of the capacity of {two}."
    return text


def probe_kind(p: Any) -> str:
    """How a probe is drawn: what decided it, not only whether it passed."""
    if p.inferred:
        return "inferred (dominance)"
    if p.passed:
        if p.decided_by_point:
            return "met the SLO (inconclusive: decided by the point value)"
        return "met the SLO, another check failed" if p.met_slo_other_failed else "met the SLO"
    if p.over_saturated:
        return "over-saturated (queue grows)"
    return "missed the SLO (inconclusive: decided by the point value)" if p.decided_by_point else "missed the SLO"


PROBE_STYLE = {  # kind: (colour, symbol)
    "met the SLO": ("#2a7", "circle"),
    "met the SLO, another check failed": ("#e90", "circle-open"),
    "met the SLO (inconclusive: decided by the point value)": ("#2a7", "diamond-open"),
    "missed the SLO": ("#c33", "x"),
    "missed the SLO (inconclusive: decided by the point value)": ("#c33", "diamond"),
    "over-saturated (queue grows)": ("#822", "triangle-up"),
    "inferred (dominance)": ("#999", "square-open"),
}
OBJECTIVE_SERIES = {"ttft_ms": "p99_ttft_ms", "tpot_ms": "p99_tpot_ms"}


def print_capacity(summary: CapacitySummary, console: Console) -> None:
    objectives = "; ".join(f"{n}: " + ", ".join(f"{k} <= {v:g}" for k, v in o.items())
                           for n, o in summary.objectives.items())
    console.print(f"[bold]capacity[/] of {escape(summary.experiment)}: SLO met by at least "
                  f"{summary.target * 100:g}% of requests ({escape(objectives)}), precision "
                  f"{summary.precision * 100:g}%, probes of {summary.probe_s:g} s or more")
    for s in summary.solo.values():
        console.print()
        console.print(solo_table(s))
    if summary.region is not None:
        console.print()
        console.print(region_table(summary.region))
        console.print(escape(sharing_sentence(summary.region, summary.device_kind)))
    if summary.stopped:
        console.print(f"[yellow]stopped before the end:[/] {escape(summary.stopped)}")
    console.print(f"{summary.probes} probes in {summary.wall_s:.0f} s", style="dim")


def capacity_html(summary: CapacitySummary) -> str:
    """One offline page: the region with every probe and both references, and each instance's
    p99 latency against its probed rate."""
    import plotly.graph_objects as go

    figures = []
    r = summary.region
    if r is not None and len(r.instances) == 2:
        a, b = r.instances
        ca, cb = r.solo_caps[a], r.solo_caps[b]
        fig = go.Figure()
        fig.add_trace(go.Scatter(x=[0, ca, ca], y=[cb, cb, 0], mode="lines", name=shared_thing(summary.device_kind)[2],
                                 line={"dash": "dot", "color": "#888"}))
        fig.add_trace(go.Scatter(x=[0, ca], y=[cb, 0], mode="lines", name="perfect sharing",
                                 line={"dash": "dash", "color": "#444"}))
        probes = [p for bp in r.boundary for p in bp.probes]
        for kind, (colour, symbol) in PROBE_STYLE.items():
            chosen = [p for p in probes if probe_kind(p) == kind]
            if not chosen:
                continue
            fig.add_trace(go.Scatter(x=[p.rates[a] for p in chosen], y=[p.rates[b] for p in chosen], mode="markers",
                                     name=f"probe: {kind}", marker={"color": colour, "size": 8, "symbol": symbol},
                                     text=[html.escape("; ".join([p.reason, *p.notes])) for p in chosen]))
        pts = [(ca, 0.0)] + sorted(((bp.rates[a], bp.rates[b]) for bp in r.boundary), key=lambda xy: -xy[0]) + [(0.0, cb)]
        fig.add_trace(go.Scatter(x=[x for x, _ in pts], y=[y for _, y in pts], mode="lines+markers",
                                 name="boundary (both meet their SLO)", line={"color": "#1f77b4", "width": 3},
                                 fill="tozeroy", fillcolor="rgba(31,119,180,0.12)"))
        fig.update_layout(title=f"co-location region of {html.escape(a)} and {html.escape(b)}: rate pairs at which "
                                "both meet their SLO", height=560,
                          xaxis_title=f"{a} req/s", yaxis_title=f"{b} req/s")
        figures.append(fig)
    for s in summary.solo.values():
        probes = sorted(s.probes, key=lambda p: p.rates[s.instance])
        fig = go.Figure()
        for key, label in (("p99_ttft_ms", "TTFT p99 ms"), ("p99_tpot_ms", "TPOT p99 ms")):
            fig.add_trace(go.Scatter(x=[p.rates[s.instance] for p in probes],
                                     y=[getattr(p, key).get(s.instance) for p in probes], mode="lines+markers",
                                     name=label))
        for objective, limit in summary.objectives.get(s.instance, {}).items():
            if objective in OBJECTIVE_SERIES:  # the SLO's threshold beside the p99 it is judged on
                fig.add_hline(y=limit, line_dash="dot", line_color="#c33",
                              annotation_text=f"SLO {objective.removesuffix('_ms').upper()} {limit:g} ms")
        fig.add_trace(go.Scatter(x=[p.rates[s.instance] for p in probes],
                                 y=[(p.attainment.get(s.instance) or 0) * 100 for p in probes], mode="lines+markers",
                                 name="SLO met %", yaxis="y2", line={"dash": "dot"}))
        fig.add_hline(y=summary.target * 100, yref="y2", line_dash="dash", line_color="#2a7",
                      annotation_text=f"target {summary.target * 100:g}%")
        for kind, (colour, symbol) in PROBE_STYLE.items():
            chosen = [p for p in probes if probe_kind(p) == kind]
            if chosen:
                fig.add_trace(go.Scatter(x=[p.rates[s.instance] for p in chosen],
                                         y=[(p.attainment.get(s.instance) or 0) * 100 for p in chosen], yaxis="y2",
                                         mode="markers", name=f"probe: {kind}",
                                         marker={"color": colour, "size": 9, "symbol": symbol},
                                         text=[html.escape("; ".join([p.reason, *p.notes])) for p in chosen]))
        if s.max_rate is not None:
            fig.add_vline(x=s.max_rate, line_dash="dash", annotation_text="capacity")
        fig.update_layout(title=f"{html.escape(s.instance)} alone: latency against load", height=420,
                          xaxis_title="requested req/s", yaxis_title="p99 ms",
                          yaxis2={"overlaying": "y", "side": "right", "range": [0, 101], "title": "SLO met %",
                                  "tickvals": [0, 20, 40, 60, 80, 100], "ticksuffix": "%"})
        figures.append(fig)
    body = "".join(f.to_html(full_html=False, include_plotlyjs=False) for f in figures)
    return scrubbed_page(
            f"<!doctype html><html><head><meta charset='utf-8'><title>capacity: {html.escape(summary.experiment)}"
            f"</title><script>{PLOTLY_JS}</script></head><body style='font-family:system-ui,sans-serif'>"
            f"<h1>capacity: {html.escape(summary.experiment)}</h1><p>{html.escape(sharing_sentence(r, summary.device_kind)) if r else ''}"
            f"</p>{body}</body></html>")


def write_capacity_html(summary: CapacitySummary, out: Path) -> Path:
    path = RunDir(out).capacity_html
    path.write_text(capacity_html(summary), encoding="utf-8")
    return path
