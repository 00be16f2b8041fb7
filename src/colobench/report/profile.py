"""`colobench profile` on the console: the async-timing trap, the device's idle share, kernel
launches and the top operators. Formatting only: the figures come from `profiling`."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _spread(part: dict[str, float]) -> str:
    return f"{part['median_ms']:.3f} ms ({part['p10_ms']:.3f}-{part['p90_ms']:.3f})"


def print_profile(result: dict[str, Any], console: Console) -> None:
    trap, analysis = result["async_timing_trap"], result["analysis"]
    console.print(f"[bold]{escape(result['model'])}[/] on {result['device']} ({result['dtype']}, graph {result['graph']}, "
                  f"{result['quantization']}), batch {result['batch_size']}, {result['output_tokens']} steps profiled")
    console.print(f"async-timing trap, medians of {trap['iterations']} steps (10th-90th percentile): host clock "
                  f"{_spread(trap['host_clock_without_sync'])}, .to('cpu') right after "
                  f"{_spread(trap['copy_to_cpu_right_after'])}, synchronised step {_spread(trap['synchronized_step'])}")
    idle = analysis["idle"] or {}
    if idle:
        console.print(f"idle share ({analysis['basis']}): {idle['idle_share'] * 100:.1f}% of "
                      f"{idle['window_us'] / 1e3:.1f} ms")
    launch = analysis["launch"]
    if launch.get("unavailable"):
        console.print(f"kernel launches: unavailable ({escape(launch['unavailable'])})")
    elif launch["count"]:
        console.print(f"kernel launches: {launch['count']}, {launch['total_us'] / 1e3:.2f} ms on the host")
    table = Table(show_edge=False, header_style="bold", title="top operators", title_justify="left")
    for col in ("operator", "total ms", "calls", "share"):
        table.add_column(col, justify="left" if col == "operator" else "right")
    for op in analysis["top_ops"]:
        table.add_row(escape(op["name"][:80]), f"{op['total_us'] / 1e3:.2f}", str(op["calls"]), f"{op['share'] * 100:.1f}%")
    console.print(table)
    console.print(f"trace: {escape(result['trace'])} (open in Perfetto or MindStudio Insight)", style="dim")
