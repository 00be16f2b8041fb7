"""`colobench run --profile sweep` as a table: each instance's latency against the load it was
asked for and what it sent, alone and co-located, and its knee. Formatting only."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from colobench.analysis.load_sweep import KEPT_UP, RISE, LoadSweep


def _num(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else (f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.{digits}f}")


def print_load_sweep(sweep: LoadSweep, console: Console) -> None:
    for name, points in sweep.points.items():
        table = Table(show_edge=False, header_style="bold", title_justify="left",
                      title=f"load sweep: {escape(name)} ({sweep.step_s:g} s per step)")
        for col in ("step", "phase", "asked req/s", "sent req/s", "ok/failed", "TTFT p50/p99 ms", "TPOT p50/p99 ms"):
            table.add_column(col, justify="left" if col in ("step", "phase") else "right")
        for p in points:
            table.add_row(escape(p.step), p.phase, _num(p.requested_rate), _num(p.achieved_rate),
                          f"{p.completed}/{p.failed}", f"{_num(p.median_ttft_ms, 1)}/{_num(p.p99_ttft_ms, 1)}",
                          f"{_num(p.median_tpot_ms, 1)}/{_num(p.p99_tpot_ms, 1)}")
        console.print(table)
        knees = sweep.knee.get(name, {})
        said = "; ".join(f"{phase} {_num(rate)} req/s" if rate is not None else f"{phase}: kept up with no rate step"
                         for phase, rate in knees.items())
        console.print(f"  knee (the highest rate sent at {KEPT_UP:.0%} with p99 latency within {RISE:g}x the "
                      f"synchronous step's): {escape(said)}")
