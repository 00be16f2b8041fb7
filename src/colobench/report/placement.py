"""`colobench place`'s tables: the chosen placement (each device, its services, memory split,
cores, predicted attainment and headroom, the driver), the methods beside each other, and the
runners-up with why they lost."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from colobench.analysis.placement import PlacementResult
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
                          f"{s.cores:.1f}" if s.cores is not None else "-", att, f"{s.tpot_slowdown:.2f}",
                          printable(s.driver))
    console.print(table)
    if best.unplaced:
        console.print(f"left out: {', '.join(printable(n) for n in best.unplaced)}")
    methods = Table(title="methods (predicted)", title_justify="left")
    for col in ("method", "devices", "goodput req/s", "every SLO met", "vs optimum"):
        methods.add_column(col)
    for name, p in result.methods.items():
        vs = (f"{p.goodput_req_s / result.optimum_goodput_req_s:.1%}" if result.optimum_goodput_req_s else "-")
        methods.add_row(name, str(p.devices_used), f"{p.goodput_req_s:.2f}", "yes" if p.feasible else "no", vs)
    console.print(methods)
    for p in result.runners_up:
        groups = " | ".join("+".join(s.service for s in g.services) for g in p.groups)
        console.print(f"runner-up: {printable(groups)}: {printable(p.why)}")
