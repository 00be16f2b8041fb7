"""`colobench place`'s tables: the chosen placement (each device, its services, memory split,
cores, predicted attainment and headroom, the driver), the methods beside each other, and the
runners-up with why they lost; `--verify`'s measured-against-predicted table; and the placement
page (`placement.html`: devices as columns, each service a block as tall as its memory share and
as dark as its load, predicted and measured attainment side by side).

The page is hand-written HTML and CSS, no plotting library: stacked blocks in columns are what a
table of flex boxes draws, and the page stays one small offline file. Every text is escaped."""

from __future__ import annotations

import html

from rich.console import Console
from rich.table import Table

from colobench.analysis.placement import Placement, PlacementResult, PlacementVerification
from colobench.text import printable


def print_placement(result: PlacementResult, console: Console) -> None:
    best = result.best
    table = Table(title=f"placement ({result.objective}, target {result.target:.0%}): {best.method}, "
                  f"{best.devices_used} device(s) used, {best.devices_free} free", title_justify="left")
    for col in ("device", "service", "memory", "cores", "predicted attainment", "TPOT x", "driver"):
        table.add_column(col, overflow="fold")
    for g in best.groups:
        for s in g.services:
            att = f"{s.attainment:.1%} ({s.verdict})" if s.attainment is not None else "no SLO"
            table.add_row(printable(g.device), printable(s.service), f"{s.memory_fraction:.2f}",
                          f"{s.cores:.1f}" if s.cores is not None else "-", att, f"{s.slowdown['tpot_p50']:.2f}",
                          printable(s.driver))
    console.print(table)
    if best.unplaced:
        console.print(f"left out: {', '.join(printable(n) for n in best.unplaced)}")
    if best.feasible and best.inconclusive:
        console.print(f"[yellow]every SLO met by the point estimate; inconclusive within the prediction's interval: "
                      f"{', '.join(printable(n) for n in best.inconclusive)} (run it: --verify)[/]")
    methods = Table(title="methods (predicted)", title_justify="left")
    for col in ("method", "devices", "goodput req/s", "every SLO met", "vs optimum"):
        methods.add_column(col)
    for name, p in result.methods.items():
        vs = (f"{p.goodput_req_s / result.optimum_goodput_req_s:.1%}" if result.optimum_goodput_req_s else "-")
        methods.add_row(name, str(p.devices_used), f"{p.goodput_req_s:.2f}", _met(p), vs)
    console.print(methods)
    for p in result.runners_up:
        groups = " | ".join("+".join(s.service for s in g.services) for g in p.groups)
        console.print(f"runner-up: {printable(groups)}: {printable(p.why)}")


def _met(p: Placement) -> str:
    """Whether every SLO is met: with confidence (every verdict "meets"), by the point estimate, or not."""
    return ("yes" if p.confident else "yes (point estimate)") if p.feasible else "no"


def print_verification(v: PlacementVerification, console: Console) -> None:
    table = Table(title=f"placement verified (target {v.target:.0%}): measured against predicted",
                  title_justify="left")
    for col in ("device", "service", "cores", "memory", "predicted", "measured", "TPOT p50 x pred/meas",
                "TTFT p99 x pred/meas"):
        table.add_column(col, overflow="fold")
    for r in v.services:
        pred = f"{r.predicted_attainment:.1%} ({r.predicted_verdict})" if r.predicted_attainment is not None else "-"
        meas = (f"{r.measured_attainment:.1%} of {r.measured_requests} ({r.measured_verdict})"
                if r.measured_attainment is not None else "-")
        if r.false_meet:
            meas = f"[red]{meas}[/]"

        def pair(k: str) -> str:
            p, m = r.predicted_slowdown.get(k), r.measured_slowdown.get(k)
            return f"{p:.2f} / {m:.2f}" if p is not None and m is not None else "-"
        cores = ",".join(map(str, r.cores)) if r.cores else "-"
        table.add_row(printable(r.device), printable(r.service), cores, f"{r.memory_fraction:.2f}", pred, meas,
                      pair("tpot_p50"), pair("ttft_p99"))
    console.print(table)
    for r in v.services:
        if not r.memory_applied.startswith("not applied"):
            continue
        console.print(f"{printable(r.service)}: memory split {printable(r.memory_applied)}")
    for note in v.notes:
        console.print(printable(note))
    if v.missed:
        console.print(f"[red]misses its SLO when run: {', '.join(printable(n) for n in v.missed)}[/]")
    else:
        console.print("every service run met its SLO or was inconclusive" if any(
            r.measured_verdict == "inconclusive" for r in v.services) else "every service run met its SLO")
    console.print(f"fed back: {printable(v.profiles_dir)}; plan again with `colobench place "
                  f"{printable(v.placement_file)}`")


def _pct(x: float | None) -> str:
    return f"{x:.1%}" if x is not None else "-"


PAGE_STYLE = """body{font-family:system-ui,sans-serif;margin:24px;color:#222}
.devices{display:flex;gap:16px;align-items:flex-end}.device{width:220px}
.stack{height:360px;border:2px solid #444;display:flex;flex-direction:column-reverse;background:#f4f4f4}
.svc{border-top:1px solid #fff;color:#fff;font-size:12px;padding:2px 4px;overflow:hidden}
.free{color:#666;font-size:12px;padding:2px 4px}.spare{color:#888;font-size:11px;padding:2px 4px;
background:repeating-linear-gradient(45deg,#f4f4f4,#f4f4f4 6px,#e8e8e8 6px,#e8e8e8 12px)}td.text{text-align:left}.miss{outline:3px solid #d62728;outline-offset:-3px}
h2{font-size:15px;margin:6px 0}table{border-collapse:collapse;margin-top:18px}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}td:first-child,th:first-child{text-align:left}"""


def placement_page(result: PlacementResult, verified: PlacementVerification | None = None) -> str:
    """One offline HTML page of the chosen placement (and its verification)."""
    e = html.escape
    best = result.best
    measured = {r.service: r for r in verified.services} if verified else {}
    columns = []
    for g in best.groups:
        blocks = []
        for s in g.services:
            m = measured.get(s.service)
            shade = max(0.25, min(1.0, 0.25 + s.slowdown["tpot_p50"] - 1.0))
            tip = (f"{s.service}: memory {s.memory_fraction:.0%}, predicted {_pct(s.attainment)}"
                   + (f", measured {_pct(m.measured_attainment)} ({m.measured_verdict})" if m else "") + f"; {s.driver}")
            miss = " miss" if m is not None and m.measured_verdict == "misses" else ""
            blocks.append(f"<div class='svc{miss}' title='{e(tip)}' style='height:{min(100.0, s.need_fraction * 100):.1f}%;"
                          f"background:rgba(31,119,180,{shade:.2f})'>{e(s.service)}<br>load {s.load:.0%} · pred "
                          f"{_pct(s.attainment)}" + (f" · meas {_pct(m.measured_attainment)}" if m else "") + "</div>")
        spare = max(0.0, 1.0 - sum(s.need_fraction for s in g.services))
        load = sum(s.load for s in g.services)
        columns.append(f"<div class='device'><h2>{e(g.device)}</h2><div class='stack'>{''.join(blocks)}"
                       f"<div class='spare' style='height:{spare * 100:.1f}%'>{spare:.0%} spare, shared in proportion"
                       f"</div></div><div class='free'>{g.memory_bytes / 1e9:.1f} GB needed; load {load:.0%} of the "
                       "device</div></div>")
    for k in range(best.devices_free):
        columns.append("<div class='device'><h2>free</h2><div class='stack'><div class='free'>no service</div></div>"
                       "</div>")
    rows = []
    for g in best.groups:
        for s in g.services:
            m = measured.get(s.service)
            rows.append(f"<tr><td>{e(s.service)}</td><td>{e(g.device)}</td><td>{s.memory_fraction:.2f}</td>"
                        f"<td>{_pct(s.attainment)} ({e(str(s.verdict))})</td>"
                        f"<td>{_pct(m.measured_attainment) if m else '-'}"
                        f"{' (' + e(str(m.measured_verdict)) + ')' if m else ''}</td>"
                        f"<td>{s.slowdown['tpot_p50']:.2f}</td><td class='text'>{e(s.driver)}</td></tr>")
    methods = "".join(
        f"<tr><td>{e(name)}</td><td>{p.devices_used}</td><td>{p.goodput_req_s:.2f}</td>"
        f"<td>{_met(p)}</td></tr>" for name, p in result.methods.items())
    left = f"<p>left out: {e(', '.join(best.unplaced))}</p>" if best.unplaced else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>colobench placement</title>"
            f"<style>{PAGE_STYLE}</style></head><body><h1>Placement ({e(result.objective)}, target "
            f"{result.target:.0%}): {e(best.method)}</h1><p>Each column a device; each block a service, as tall as "
            "the memory it needs (the spare memory on top is split in proportion), darker the more it is predicted to "
            "slow down; load: the device seconds a second it brings at its rate; a red outline: measured to miss its "
            "SLO."
            f"</p><div class='devices'>{''.join(columns)}</div>{left}"
            "<table><tr><th>service</th><th>device</th><th>memory</th><th>predicted attainment</th>"
            f"<th>measured attainment</th><th>TPOT x (pred)</th><th>driver</th></tr>{''.join(rows)}</table>"
            "<table><tr><th>method</th><th>devices</th><th>goodput req/s (predicted)</th><th>every SLO met</th></tr>"
            f"{methods}</table></body></html>")
