"""`colobench report`, `diagnose` and `compare`: everything read back from run directories
(recomputed from their records, no device needed) and printed or exported."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from colobench import api
from colobench.analysis.compare import PAIRED_HINT, TOLERANCE, entries, shifts_of
from colobench.analysis.compare import compare as compare_runs
from colobench.analysis.diagnosis.logscan import RULES as LOG_RULES
from colobench.analysis.diagnosis.logscan import rules_from
from colobench.capacity import load_capacity
from colobench.cli.app import SIDE_BREAK, app, stderr, stdout
from colobench.errors import ColobenchError, check_file_target, os_reason, writing
from colobench.report import exports
from colobench.report.capacity import print_capacity, write_capacity_html
from colobench.report.comparison import comparison_markdown, comparison_table, print_comparison
from colobench.report.console import print_summary
from colobench.report.findings import print_diagnosis
from colobench.report.headline import headline
from colobench.report.html import comparison_page
from colobench.report.server import server_markdown
from colobench.rundir import RunDir
from colobench.specs.loading import parse_yaml
from colobench.text import printable

@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="a run directory written by `colobench run`"),
    json_out: bool = typer.Option(False, "--json", help="print the summary as JSON"),
    html_out: bool = typer.Option(False, "--html", help="write RUN_DIR/report.html (offline, self-contained)"),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="write the metrics table as CSV to this file"),
    md_out: bool = typer.Option(False, "--md", help="print the metrics table as markdown"),
    records_out: Optional[Path] = typer.Option(None, "--records", help="export every request record to .csv or .parquet"),
) -> None:
    """Print the tables of a run again, recomputed from its records alone; or export them. A
    `colobench capacity` folder: its capacity tables again (--html rewrites capacity.html)."""
    check_file_target(csv_out, "--csv")
    check_file_target(records_out, "--records")
    if RunDir(run_dir).is_capacity_dir():
        found = load_capacity(Path(run_dir))
        if json_out:
            print(api.dump_json_line({"capacity": found.model_dump(mode="json", by_alias=True)}))
        elif html_out:
            with writing("--html", RunDir(run_dir).capacity_html):
                stderr().print(f"wrote {escape(str(write_capacity_html(found, Path(run_dir))))}")
        else:
            print_capacity(found, stdout())
        return
    summary = api.load_summary(run_dir)
    if json_out:
        print(api.dump_json_line(summary))
        return
    if html_out:
        with writing("--html", RunDir(run_dir).report):
            path = api.write_html_report(run_dir, summary)
        stderr().print(f"wrote {escape(str(path))}")
    if csv_out or md_out:
        rows = exports.metric_rows(summary)
        if csv_out:
            with writing("--csv", csv_out):
                exports.write_csv(rows, csv_out)
            stderr().print(f"wrote {escape(str(csv_out))}")
        if md_out:
            print(printable(exports.to_markdown(rows), one_line=False))
            server = server_markdown(summary)
            if server:
                print(printable("\nclient against the server's own /metrics (the same windows):\n\n" + server,
                                one_line=False))
    if records_out:
        with writing("--records", records_out):
            count = exports.export_records(RunDir(run_dir), records_out)
        stderr().print(f"wrote {count} records to {escape(str(records_out))}")
    if html_out or csv_out or md_out or records_out:
        return
    print_summary(summary, stdout())
    print(api.dump_json_line(headline(summary)))


def _load_run(spec: str) -> tuple[Any, Any, tuple[str, str, list[str]] | None]:
    """(entries, host reference, (run dir, point, points paired with it) or None) of RUN_DIR or
    RUN_DIR:POINT."""
    path, _, point = spec.partition(":") if ":" in spec and not Path(spec).exists() else (spec, "", "")
    try:
        summary = api.load_summary(path)
        where = (str(Path(path).resolve()), point, summary.point(point).paired_with or []) if point else None
        return entries(summary, point or None), summary.host_reference, where
    except ValueError as exc:
        raise ColobenchError(f"{spec}: {exc}") from None


def _paired_points(loaded: list[list[Any]]) -> bool:
    """Two sweep points of one run, interleaved with each other (variants): a paired comparison."""
    if len(loaded) != 2 or any(len(side) != 1 for side in loaded):
        return False
    a, b = loaded[0][0][2], loaded[1][0][2]
    return a is not None and b is not None and a[0] == b[0] and b[1] in a[2]


@app.command()
def compare(
    runs: list[str] = typer.Argument(..., help="run directories, or RUN_DIR:POINT for a sweep point; the first is the "
                                     "base. Several runs per side: A1 A2 A3 -- B1 B2 B3"),
    md: bool = typer.Option(False, "--md", help="print a markdown table"),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="write the comparison as CSV"),
    json_out: bool = typer.Option(False, "--json", help="print the comparison as JSON"),
    html_out: Optional[Path] = typer.Option(None, "--html", help="write an offline HTML comparison page"),
    tolerance: float = typer.Option(TOLERANCE, "--tolerance", help="a difference smaller than this fraction is never "
                                    "called beyond noise", min=0.0, max=1.0),
) -> None:
    """Each metric's ratio to the first run, its 95% interval over repetitions, and a verdict:
    better / worse (the interval lies beyond the tolerance), inconclusive, noise, or host shift
    (the host reference of the runs moved, and explains the change). With `A1 A2 A3 -- B1 B2 B3`
    each side is several runs and the interval uses the variance between runs."""
    if SIDE_BREAK in runs:
        k = runs.index(SIDE_BREAK)
        sides = [runs[:k], runs[k + 1:]]
        if SIDE_BREAK in sides[1] or not sides[0] or not sides[1]:
            raise ColobenchError("compare A1 A2 -- B1 B2: one `--` between two sides, each with at least one run")
        labels = ["+".join(side) for side in sides]
    else:
        sides = [[r] for r in runs]
        labels = list(runs)
    if len(sides) < 2:
        raise ColobenchError("compare needs at least two runs")
    check_file_target(csv_out, "--csv")
    check_file_target(html_out, "--html")
    loaded = [[_load_run(spec) for spec in side] for side in sides]
    per_side = [[e for e, _, _ in side] if len(side) > 1 else side[0][0] for side in loaded]
    hosts = [[h for _, h, _ in side] if len(side) > 1 else side[0][1] for side in loaded]
    paired = _paired_points(loaded)
    shifts = [] if paired else shifts_of(hosts, tolerance)  # one run: one host, and the pairs carry it
    rows = compare_runs(per_side, tolerance, shifts, paired=paired)
    if not rows:
        raise ColobenchError("the runs share no instance, and do not have one instance per phase to pair")
    header, table_rows, sentences = comparison_table(rows, labels, shifts)
    if paired:
        sentences.append("paired: the two points' repetitions were interleaved in one run; each interval is "
                         "from the per-repetition ratios")
    elif any(s.shifted for s in shifts) or any(v in ("better", "worse", "inconclusive") for r in rows
                                               for v in r.verdicts):
        sentences.append(PAIRED_HINT)
    if json_out:
        print(api.dump_json_line({"runs": labels, "sides": sides, "tolerance": tolerance, "paired": paired,
                                  "host_shifts": [s.to_dict() for s in shifts],
                                  "rows": [r.to_dict() for r in rows], "overall": sentences}))
    elif md:
        print(printable(comparison_markdown(header, table_rows, sentences), one_line=False))
    else:
        print_comparison(header, table_rows, sentences, tolerance, stdout())
    if csv_out:
        with writing("--csv", csv_out):
            exports.write_csv([dict(zip(header, row)) for row in table_rows], csv_out)
    if html_out:
        with writing("--html", html_out):
            html_out.write_text(comparison_page(header, table_rows, [r.to_dict() for r in rows], labels, sentences),
                                encoding="utf-8")
        stderr().print(f"wrote {escape(str(html_out))}")


@app.command()
def diagnose(
    run_dir: Path = typer.Argument(..., help="a run directory written by `colobench run`"),
    json_out: bool = typer.Option(False, "--json", help="print the findings as JSON"),
    log_rules: Optional[Path] = typer.Option(None, "--log-rules", metavar="FILE",
                                             help="YAML list of extra log rules ({pattern, cause, severity, remedy, "
                                             "name}) to scan the run's logs for"),
) -> None:
    """Ranked findings with evidence and what to change, and each result's validity verdict; the
    run's logs are scanned again (with --log-rules, for your patterns too)."""
    rules = _read_log_rules(log_rules) if log_rules else None
    summary = api.load_summary(run_dir, log_rules=rules)
    if json_out:
        print(api.dump_json_line({"findings": [f.model_dump(mode="json") for f in summary.findings],
                                  "checks": [c.model_dump(mode="json") for c in summary.checks],
                                  "validity": api.validity_table(summary)}))
        return
    yours = f" and {len(rules)} from {log_rules}" if rules else ""
    print_diagnosis(summary, stdout(), len(RunDir(run_dir).log_files()), len(LOG_RULES), yours)


def _read_log_rules(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ColobenchError(f"--log-rules {path}: cannot read ({os_reason(exc)})") from None
    except UnicodeDecodeError:
        raise ColobenchError(f"--log-rules {path}: not a UTF-8 text file") from None
    data = parse_yaml(text, f"--log-rules {path}")
    if isinstance(data, dict) and "log_rules" in data:
        data = data["log_rules"]
    return rules_from(data, str(path))
