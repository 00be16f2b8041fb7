"""`colobench compare` as a table: each metric of each run, its ratio to the first run with the
95% interval and the verdict, then one sentence per run; as rich, markdown or CSV rows.
Formatting only: the ratios and verdicts come from `analysis.compare`."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from colobench.analysis.compare import overall


def _ratio(row: Any, k: int) -> str:
    ratio, interval, said = row.ratios[k], row.intervals[k], row.verdicts[k]
    if ratio is None:
        return "-"
    text = f"{ratio:.3f}x" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")
    return f"{text} {said}"


def comparison_table(rows: list[Any], runs: list[str], shifts: list[Any] | None = None
                     ) -> tuple[list[str], list[list[str]], list[str]]:
    """(header, cells of each row, one sentence per run after the first: the host reference's,
    when the runs recorded one, leads it)."""
    table_rows = [[r.subject, r.metric, *(f"{v:,.4g}" if isinstance(v, float) else str(v) for v in r.values),
                   *(_ratio(r, k) for k in range(len(runs) - 1))] for r in rows]
    header = ["subject", "metric", *runs, *(f"{run} / {runs[0]}" for run in runs[1:])]
    sentences = []
    for k in range(len(runs) - 1):
        shift = shifts[k] if shifts else None
        sentences.append(f"{runs[k + 1]} against {runs[0]}: {overall(rows, k, shift, runs[k + 1])}")

    return header, table_rows, sentences


def comparison_markdown(header: list[str], table_rows: list[list[str]], sentences: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in table_rows]
    return "\n".join(lines + sentences)


def print_comparison(header: list[str], table_rows: list[list[str]], sentences: list[str], tolerance: float,
                     console: Console) -> None:
    table = Table(show_edge=False, header_style="bold",
                  title=f"comparison (ratio [95% interval over repetitions], verdict; tolerance {tolerance * 100:.0f}%)")
    for col in header:
        table.add_column(escape(col))
    for row in table_rows:
        table.add_row(*(escape(c) for c in row))
    console.print(table)
    for sentence in sentences:
        console.print(escape(sentence))
