"""Exports: the metrics table as CSV or markdown, every request record as CSV or Parquet.

Keys keep the summary's (vLLM-compatible) names, so a spreadsheet or a script reads them as the
JSON does.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from colobench.analysis import metrics as m
from colobench.analysis.model import Summary
from colobench.analysis.registry import table_keys
from colobench.errors import ColobenchError
from colobench.records import read_records
from colobench.report.server import server_columns
from colobench.rundir import RunDir, read_manifest

COLUMNS = table_keys("csv")
MARKDOWN_COLUMNS = table_keys("markdown")


# a figure the table shows, and the `unmeasured` reason that explains its absence
UNMEASURED_BY = {"energy_per_token_j": "energy_j", "tokens_per_j": "energy_j", "energy_j": "energy_j",
                 "mbu_pct": "mbu_pct", "mean_device_util_pct": "mean_device_util_pct",
                 "peak_memory_bytes": "peak_memory_bytes"}


def unmeasured_reasons(mt: Any) -> dict[str, str]:
    """Column -> why it is empty, for the columns of the tables that an instance left unmeasured."""
    return {col: mt.unmeasured[key] for col, key in UNMEASURED_BY.items()
            if getattr(mt, col, None) is None and key in mt.unmeasured}


def metric_rows(summary: Summary) -> list[dict[str, Any]]:
    """One row per point, phase and instance, with axis values and the headline metrics; the
    co-located rows carry their point's throughput scaling, and `unmeasured` says why a figure
    (energy without a power counter, MBU without a peak) is empty."""
    rows = []
    for p in summary.points:
        for phase, name, mt in p.rows():
            row = {"point": p.id, **p.axes, "phase": phase, "instance": name}
            row.update({c: getattr(mt, c, None) for c in COLUMNS})
            scaling = p.interference.throughput_scaling
            row["scaling"] = scaling if phase == "colocated" else None
            reasons = unmeasured_reasons(mt)
            row["unmeasured"] = "; ".join(f"{k}: {v}" for k, v in reasons.items()) or None
            row["_why"] = reasons  # for the markdown's notes; not a column
            row["validity"] = mt.validity.verdict if mt.validity else None
            row.update(server_columns(mt))  # the server's own figures, where its /metrics was scraped
            rows.append(row)
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    fields = list(dict.fromkeys(k for row in rows for k in row if not k.startswith("_")))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value).replace("|", "\\|")


def to_markdown(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """The table as markdown; a figure left unmeasured reads "unmeasured", and why is said once
    under the table."""
    if not rows:
        return ""
    own = ("validity", "scaling", "unmeasured")
    keys = [k for k in rows[0] if k not in COLUMNS and k not in own and not k.startswith(("server_", "_"))] + \
        (columns or MARKDOWN_COLUMNS) + ["scaling", "validity"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    notes: dict[str, str] = {}
    for row in rows:
        why = row.get("_why") or {}
        cells = []
        for k in keys:
            if row.get(k) is None and k in why:
                cells.append("unmeasured")
                notes.setdefault(f"{k}: {why[k]}", "")
            else:
                cells.append(_cell(row.get(k)))
        lines.append("| " + " | ".join(cells) + " |")
    if notes:
        lines += ["", *(f"- unmeasured {note}" for note in notes)]
    return "\n".join(lines)


def record_rows(run_dir: RunDir | Path) -> list[dict[str, Any]]:
    """Every request record of every run, with its run id, phase and derived latencies."""
    run_dir, rows = RunDir(run_dir), []
    for run in read_manifest(run_dir.manifest).plan.runs:
        for path in run_dir.run(run.run_id).record_files():
            for r in read_records(path):
                ok = r.ok and r.token_ns and r.done_ns is not None
                rows.append({"point": run.point, "run_id": run.run_id, "phase": run.phase,
                             **r.to_dict(), "token_ns": r.token_ns,
                             "ttft_ms": m.ttft_ns(r) / 1e6 if ok else None,
                             "tpot_ms": (t / 1e6 if (t := m.tpot_ns(r)) else None) if ok else None,
                             "e2el_ms": m.e2el_ns(r) / 1e6 if ok else None})
    return rows


def export_records(run_dir: RunDir | Path, path: Path) -> int:
    """Write every record to `path` (.csv: token times as a JSON list; .parquet: a list column)."""
    rows = record_rows(run_dir)
    if path.suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ColobenchError(f"{path}: Parquet export needs pyarrow (pip install pyarrow)") from None
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.suffix == ".csv":
        write_csv([{**r, "token_ns": json.dumps(r["token_ns"])} for r in rows], path)
    else:
        raise ColobenchError(f"{path}: records export to .csv or .parquet")
    return len(rows)
