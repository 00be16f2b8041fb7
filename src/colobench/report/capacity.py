"""What `colobench capacity` found, for a person: the latency-versus-load table of each instance
with its knee and capacity, the co-location boundary against its two references (perfect sharing
and two separate cards), and one offline `capacity.html` drawing the region, every probe and the
references, plus each instance's latency against load."""

from __future__ import annotations

import html
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from colobench.analysis.capacity import CapacityRegion, CapacitySummary, SoloCapacity
from colobench.rundir import RunDir


def _n(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def solo_table(s: SoloCapacity) -> Table:
    """Every probe of one instance alone, by rate: the latency-versus-load curve."""
    title = (f"{s.instance} alone: capacity {_n(s.max_rate)} req/s" if s.max_rate is not None
             else f"{s.instance} alone: no probed rate met the SLO")
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


def sharing_sentence(r: CapacityRegion) -> str:
    caps = ", ".join(f"{n} {c:.3g} req/s" for n, c in r.solo_caps.items())
    text = f"solo capacities: {caps}."
    if r.sharing_efficiency is not None:
        text += (f" At the boundary the instances carry {r.sharing_efficiency:.2f} of their solo capacities together "
                 "(1.00 = perfect sharing of one card")
        text += ", 2.00 = as if on separate cards)." if len(r.instances) == 2 else ")."
    if r.vs_separate_cards is not None:
        text += f" Sharing this card keeps {r.vs_separate_cards * 100:.0f}% of the capacity of two separate cards."
    return text


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
        console.print(escape(sharing_sentence(summary.region)))
    console.print(f"{summary.probes} probes in {summary.wall_s:.0f} s", style="dim")


def capacity_html(summary: CapacitySummary) -> str:
    """One offline page: the region with every probe and both references, and each instance's
    p99 latency against its probed rate."""
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs

    figures = []
    r = summary.region
    if r is not None and len(r.instances) == 2:
        a, b = r.instances
        ca, cb = r.solo_caps[a], r.solo_caps[b]
        fig = go.Figure()
        fig.add_trace(go.Scatter(x=[0, ca, ca], y=[cb, cb, 0], mode="lines", name="two separate cards",
                                 line={"dash": "dot", "color": "#888"}))
        fig.add_trace(go.Scatter(x=[0, ca], y=[cb, 0], mode="lines", name="perfect sharing",
                                 line={"dash": "dash", "color": "#444"}))
        probes = [p for bp in r.boundary for p in bp.probes]
        for passed, colour in ((True, "#2a7"), (False, "#c33")):
            chosen = [p for p in probes if p.passed == passed]
            fig.add_trace(go.Scatter(x=[p.rates[a] for p in chosen], y=[p.rates[b] for p in chosen], mode="markers",
                                     name="probe met the SLO" if passed else "probe missed",
                                     marker={"color": colour, "size": 7, "symbol": "circle" if passed else "x"},
                                     text=[html.escape(p.reason) for p in chosen]))
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
        fig.add_trace(go.Scatter(x=[p.rates[s.instance] for p in probes],
                                 y=[(p.attainment.get(s.instance) or 0) * 100 for p in probes], mode="lines+markers",
                                 name="SLO met %", yaxis="y2", line={"dash": "dot"}))
        if s.max_rate is not None:
            fig.add_vline(x=s.max_rate, line_dash="dash", annotation_text="capacity")
        fig.update_layout(title=f"{html.escape(s.instance)} alone: latency against load", height=420,
                          xaxis_title="requested req/s", yaxis_title="ms",
                          yaxis2={"overlaying": "y", "side": "right", "range": [0, 105], "title": "SLO met %"})
        figures.append(fig)
    body = "".join(f.to_html(full_html=False, include_plotlyjs=False) for f in figures)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>capacity: {html.escape(summary.experiment)}"
            f"</title><script>{get_plotlyjs()}</script></head><body style='font-family:system-ui,sans-serif'>"
            f"<h1>capacity: {html.escape(summary.experiment)}</h1><p>{html.escape(sharing_sentence(r)) if r else ''}"
            f"</p>{body}</body></html>")


def write_capacity_html(summary: CapacitySummary, out: Path) -> Path:
    path = RunDir(out).capacity_html
    path.write_text(capacity_html(summary), encoding="utf-8")
    return path
