"""The `colobench` command: parsing, printing, exit codes. Everything else is `colobench.api`.

Exit codes: 0 done, 1 ran but a worker failed, 2 bad input (one line on stderr, nothing
written), 130 interrupted by Ctrl-C (what completed is summarised and kept).
Tables go to stdout and its last line is the summary as one line of JSON; progress and
messages go to stderr, so `colobench run | tail -1 | jq` works.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from colobench import api
from colobench.analysis.compare import TOLERANCE, entries, overall
from colobench.analysis.compare import compare as compare_runs
from colobench.cli_flags import FLAG_KNOBS, build_spec, for_flags, knobs_named, with_knob_options
from colobench.analysis.diagnosis.logscan import RULES as LOG_RULES
from colobench.capacity import CapacityProgress, load_capacity, run_capacity
from colobench.report.capacity import print_capacity, write_capacity_html
from colobench.analysis.diagnosis.logscan import rules_from
from colobench.devices.npu_smi import chip_rows, kind_of_output
from colobench.errors import ColobenchError, SpecError, check_file_target, os_reason, writing
from colobench import stopping
from colobench.secrets import ScrubbingStream
from colobench.models.presets import PRESETS, default_cache_dir, is_built
from colobench.report import exports
from colobench.report.console import print_findings, print_summary, validity_line
from colobench.report.headline import headline
from colobench.report.html import comparison_page
from colobench.serve.fake_openai import KNOWN_FAULTS, FakeServerConfig, serve
from colobench.rundir import DEFAULT_RUNS_DIR, RunDir
from colobench.specs import Knob

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode="rich", no_args_is_help=True,
                  help="Benchmark LLM inference alone and co-located; diagnose why instances slow each other.")
PLAIN_PROGRESS_EVERY_S = 10.0


def _stdout() -> Console:
    """stdout for tables: every line scrubbed of the secrets this process knows (see `secrets`)."""
    return Console(file=ScrubbingStream(sys.stdout), width=None if sys.stdout.isatty() else 160, highlight=False,
                   force_terminal=sys.stdout.isatty() or None)


def _stderr() -> Console:
    return Console(file=ScrubbingStream(sys.stderr), stderr=True, highlight=False,
                   force_terminal=sys.stderr.isatty() or None)


class _RichProgress:
    """Draws the API's progress callbacks as a rich progress bar on a terminal's stderr."""

    def __init__(self, console: Console):
        self.console = console
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("requests"), TimeElapsedColumn(), console=console, transient=False)
        self.tasks: dict[str, Any] = {}
        self.started = False  # drawn from the first event on, so an early error prints alone

    def __enter__(self) -> "_RichProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.started:
            self.bar.stop()

    def _start(self) -> None:
        if not self.started:
            self.bar.start()
            self.started = True

    def phase(self, text: str) -> None:
        self._start()
        self.console.print(escape(text), style="dim")

    def run_started(self, run_id: str, total_requests: int | None) -> None:
        self._start()
        self.tasks[run_id] = self.bar.add_task(f"{run_id}: loading", total=total_requests)

    def requests_done(self, run_id: str, instance: str, count: int) -> None:
        self.bar.update(self.tasks[run_id], advance=count, description=run_id)

    def worker_event(self, run_id: str, kind: str, instance: str, payload: Any) -> None:
        if kind in ("died", "error"):
            self.console.print(f"[red]{escape(run_id)}: worker {escape(instance)} {kind}:[/] {escape(str(payload))}")

    def run_finished(self, run_id: str, state: dict[str, Any]) -> None:
        self.bar.update(self.tasks[run_id], description=f"{run_id}: {state['status']}")


class _PlainProgress:
    """For a stderr that is not a terminal (CI, nohup, a pipe): plain lines, and one at least
    every `PLAIN_PROGRESS_EVERY_S` seconds while a run goes on, so a log never falls silent."""

    def __init__(self, stream: Any = None):
        self.stream = stream or sys.stderr
        self.lock = threading.Lock()
        self.current: dict[str, Any] | None = None
        self.done_event = threading.Event()
        self.thread = threading.Thread(target=self._tick, name="colobench-progress", daemon=True)

    def __enter__(self) -> "_PlainProgress":
        self.t0 = self.last = time.monotonic()
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.done_event.set()

    def _line(self, text: str) -> None:
        with self.lock:
            self.last = time.monotonic()
            print(f"[colobench {self.last - self.t0:6.0f} s] {text}", file=self.stream, flush=True)

    def _tick(self) -> None:
        """A status line whenever nothing was said for `PLAIN_PROGRESS_EVERY_S`."""
        while not self.done_event.wait(PLAIN_PROGRESS_EVERY_S / 10):
            run = self.current
            if run is not None and time.monotonic() - self.last >= PLAIN_PROGRESS_EVERY_S:
                total = f"/{run['total']}" if run["total"] else ""
                self._line(f"{run['id']}: {run['done']}{total} requests, {time.monotonic() - run['t0']:.0f} s")

    def phase(self, text: str) -> None:
        self._line(text)

    def run_started(self, run_id: str, total_requests: int | None) -> None:
        self.current = {"id": run_id, "total": total_requests, "done": 0, "t0": time.monotonic()}
        self._line(f"{run_id}: started")

    def requests_done(self, run_id: str, instance: str, count: int) -> None:
        if self.current is not None:
            self.current["done"] += count

    def worker_event(self, run_id: str, kind: str, instance: str, payload: Any) -> None:
        if kind in ("died", "error"):
            self._line(f"{run_id}: worker {instance} {kind}: {payload}")

    def run_finished(self, run_id: str, state: dict[str, Any]) -> None:
        done = self.current["done"] if self.current else 0
        self.current = None
        self._line(f"{run_id}: {state['status']} ({done} requests)")


def _progress(console: Console) -> Any:
    return _RichProgress(console) if console.is_terminal else _PlainProgress()


RUN_KNOBS = [k for k in FLAG_KNOBS if k.name not in ("model",)]


@app.command()
@with_knob_options(RUN_KNOBS)
def run(
    experiment: Optional[Path] = typer.Argument(None, help="experiment YAML; without it, -m flags or the default job",
                                                metavar="[EXPERIMENT.yaml]"),
    model: list[str] = typer.Option([], "--model", "-m", help="preset name or HF checkpoint folder (or the served model "
                                    "name of an --endpoint); repeat to co-locate", rich_help_panel="Model and device",
                                    metavar="MODEL"),
    endpoint: list[str] = typer.Option([], "--endpoint", "-e", help="OpenAI-compatible base URL (http://host:port/v1); "
                                       "repeat to co-locate; -m gives the served model name",
                                       rich_help_panel="Endpoints", metavar="URL"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run directory (default colobench-runs/<time>-<name>)",
                                       rich_help_panel="Output", metavar="DIR"),
    resume: bool = typer.Option(False, "--resume", help="keep the completed runs in --out and redo the rest",
                                rich_help_panel="Output", metavar=""),
    json_only: bool = typer.Option(False, "--json", help="print only the whole summary as JSON on stdout",
                                   rich_help_panel="Output", metavar=""),
    knobs: dict[Knob, Any] | None = None,
) -> None:
    """Run each instance alone, then all together, and report how much they slow each other.

    Comma lists (--batch-size 1,2,4,8 --scenario short,long) sweep the product of their values.
    The last line of stdout is a compact JSON headline; --json prints the whole summary instead.
    """
    if resume and out is None:
        raise ColobenchError("--resume needs --out: the run directory to resume")
    spec, source = build_spec(experiment, model, endpoint, knobs or {}, out if resume else None)
    err = _stderr()
    # Ctrl-C, SIGTERM and SIGHUP: stop the workers, then everything below still happens (a second
    # signal is only noted), and the exit status is 128 + the signal
    with stopping.stop_on_signals():
        try:
            with _progress(err) as progress:
                result = api.run_experiment(spec, out=out, progress=progress, source=source, command=sys.argv,
                                            resume=resume)
        except SpecError as exc:
            raise for_flags(exc) from None
        if not json_only:
            print_summary(result.summary, _stdout())
        try:
            report_path: Any = api.write_html_report(result.run_dir, result.summary)
        except OSError as exc:  # a full disk: the summary was printed; say what is missing
            report_path = f"not written ({os_reason(exc)})"
        err.print(f"run directory: {escape(str(result.run_dir))}; report: {escape(str(report_path))}")
        print(api.dump_json_line(result.summary if json_only else headline(result.summary)), flush=True)
        if result.interrupted:
            signame = signal.Signals(stopping.state.received or signal.SIGINT).name
            err.print(f"[yellow]stopped by {signame}: the summary covers what completed; --resume redoes the rest[/]")
            raise typer.Exit(stopping.exit_code())
    if result.summary.problems:
        raise typer.Exit(1)


class _CapacityLines(CapacityProgress):
    """One line per probe on stderr: what was asked, what came back, pass or fail."""

    def __init__(self, console: Console):
        self.console, self.count = console, 0

    def probe_done(self, label: str, probe: Any) -> None:
        self.count += 1
        rates = ", ".join(f"{n} {r:.3g}" for n, r in probe.rates.items())
        met = ", ".join(f"{n} {v * 100:.1f}%" for n, v in probe.attainment.items() if v is not None)
        verdict = "[green]pass[/]" if probe.passed else f"[red]fail[/] ({escape(probe.reason)})"
        self.console.print(f"\\[colobench capacity] probe {self.count} {escape(label)}: {escape(rates)} req/s, SLO met "
                           f"{escape(met) or '-'}: {verdict} [{probe.wall_s:.0f} s]")

    def note(self, text: str) -> None:
        self.console.print(f"\\[colobench capacity] {escape(text)}")


@app.command()
@with_knob_options(RUN_KNOBS)
def capacity(
    experiment: Optional[Path] = typer.Argument(None, help="experiment YAML with an slo on every instance",
                                                metavar="[EXPERIMENT.yaml]"),
    model: list[str] = typer.Option([], "--model", "-m", help="preset name or HF checkpoint folder (or the served model "
                                    "name of an --endpoint); repeat for the co-location region",
                                    rich_help_panel="Model and device", metavar="MODEL"),
    endpoint: list[str] = typer.Option([], "--endpoint", "-e", help="OpenAI-compatible base URL; repeat to co-locate",
                                       rich_help_panel="Endpoints", metavar="URL"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="folder for capacity.json, capacity.html and every "
                                       "probe's run (default colobench-runs/<time>-<name>-capacity)",
                                       rich_help_panel="Output", metavar="DIR"),
    target: float = typer.Option(0.99, "--target", min=0.5, max=1.0, help="share of requests that must meet the SLO",
                                 rich_help_panel="Capacity"),
    precision: float = typer.Option(0.05, "--precision", min=0.005, max=1.0, help="stop bisecting when the bracket "
                                    "is this close (relative)", rich_help_panel="Capacity"),
    probe_s: float = typer.Option(10.0, "--probe-s", min=0.5, max=3600, help="seconds per probe at least (longer "
                                  "when a verdict needs more requests)", rich_help_panel="Capacity"),
    rays: int = typer.Option(5, "--rays", min=1, max=50, help="ratios of the two instances' rates searched for the "
                             "co-location boundary (at least 5)", rich_help_panel="Capacity"),
    start_rate: Optional[float] = typer.Option(None, "--start-rate", min=1e-6, help="first probed rate, req/s "
                                               "(default: the instance's rate, else a pilot)",
                                               rich_help_panel="Capacity"),
    knobs: dict[Knob, Any] | None = None,
) -> None:
    """The highest request rate each instance carries alone within its SLO, then the rate pairs
    co-located instances carry together: the boundary against perfect sharing and separate cards.

    Give the objectives with --slo ttft_ms=...,tpot_ms=... (or slo: per instance in the file).
    Every probe is a run under OUT/probes; capacity.json and capacity.html are in OUT.
    """
    spec, source = build_spec(experiment, model, endpoint, knobs or {})
    folder = out or RunDir.new(DEFAULT_RUNS_DIR, f"{spec.name}-capacity").root
    err = _stderr()
    with stopping.stop_on_signals():
        try:
            summary = run_capacity(spec, folder, target=target, precision=precision, probe_s=probe_s, rays=rays,
                                   start_rate=start_rate, progress=_CapacityLines(err), source=source)
        except SpecError as exc:
            raise for_flags(exc) from None
        except KeyboardInterrupt:
            err.print(f"[yellow]stopped: what was found so far is in {escape(str(RunDir(folder).capacity))}[/]")
            raise typer.Exit(stopping.exit_code())
    print_capacity(summary, _stdout())
    page = write_capacity_html(summary, folder)
    err.print(f"capacity: {escape(str(RunDir(folder).capacity))}; report: {escape(str(page))}")
    line = {"capacity": {"solo": {n: s.max_rate for n, s in summary.solo.items()},
                         "sharing_efficiency": summary.region.sharing_efficiency if summary.region else None,
                         "vs_separate_cards": summary.region.vs_separate_cards if summary.region else None,
                         "out": str(folder)}}
    print(api.dump_json_line(line), flush=True)


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
                _stderr().print(f"wrote {escape(str(write_capacity_html(found, Path(run_dir))))}")
        else:
            print_capacity(found, _stdout())
        return
    summary = api.load_summary(run_dir)
    if json_out:
        print(api.dump_json_line(summary))
        return
    if html_out:
        with writing("--html", RunDir(run_dir).report):
            path = api.write_html_report(run_dir, summary)
        _stderr().print(f"wrote {escape(str(path))}")
    if csv_out or md_out:
        rows = exports.metric_rows(summary)
        if csv_out:
            with writing("--csv", csv_out):
                exports.write_csv(rows, csv_out)
            _stderr().print(f"wrote {escape(str(csv_out))}")
        if md_out:
            print(exports.to_markdown(rows))
    if records_out:
        with writing("--records", records_out):
            count = exports.export_records(RunDir(run_dir), records_out)
        _stderr().print(f"wrote {count} records to {escape(str(records_out))}")
    if html_out or csv_out or md_out or records_out:
        return
    print_summary(summary, _stdout())
    print(api.dump_json_line(headline(summary)))


@app.command()
def devices(
    probe: bool = typer.Option(False, "--probe", help="measure copy bandwidth and a large matmul on each device"),
    json_out: bool = typer.Option(False, "--json", help="print the result as JSON"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address",
                                              help="also list the nodes of this Ray cluster (auto, host:port, local)"),
    npu_smi: list[Path] = typer.Option([], "--npu-smi", metavar="FILE",
                                       help="parse saved npu-smi outputs (info, -t usages/common/power/..., -m) of one "
                                       "host and print one row per chip; repeat for several files"),
) -> None:
    """The environment check: devices, drivers and versions, memory, peak figures (and measured)."""
    if npu_smi:
        _print_npu_smi(npu_smi, json_out)
        return
    result = api.list_devices(probe=probe)
    if ray_address:
        result["ray_nodes"] = api.ray_cluster(ray_address)
    if json_out:
        print(api.dump_json_line(result))
        return
    console = _stdout()
    host = result["host"]
    console.print(f"host: {escape(str(host['hostname']))}, {escape(str(host['cpu_model']))}, "
                  f"{host['logical_cores']} logical cores, {(host['memory_bytes'] or 0) / 2**30:.1f} GiB")
    console.print("versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v))
    table = Table(show_edge=False, header_style="bold")
    for col in ("device", "name", "memory", "driver", "peak bandwidth", "peak bf16", "measured copy", "measured matmul"):
        table.add_column(col)
    for row in result["devices"]:
        peak = row.get("peak") or {}
        probed = row.get("probe") or {}
        copy = (f"{probed['copy_bandwidth_bytes_s'] / 1e9:,.0f} GB/s"
                + (f" ({probed['copy_pct_of_peak']:.0f}%)" if probed.get("copy_pct_of_peak") else "")) if probed else "-"
        matmul = (f"{probed['matmul_flops'] / 1e12:,.2f} TFLOP/s {probed['matmul_dtype']}"
                  + (f" ({probed['matmul_pct_of_peak']:.0f}%)" if probed.get("matmul_pct_of_peak") else "")) if probed else "-"
        table.add_row(row["device"], escape(str(row["name"])),
                      f"{row['memory_bytes'] / 2**30:.1f} GiB" if row.get("memory_bytes") else "-",
                      escape(str(row.get("driver") or "-")),
                      f"{peak['memory_bandwidth_gb_s']:,.0f} GB/s" if peak and peak.get("memory_bandwidth_gb_s") else
                      ("no public figure" if peak else "-"),
                      f"{peak['bf16_tflops']:,.0f} TFLOP/s" if peak.get("bf16_tflops") else "-", copy, matmul)
    console.print(table)
    if result.get("ray_nodes") is not None:
        nodes = Table(show_edge=False, header_style="bold", title=f"Ray cluster at {escape(ray_address)}")
        for col in ("node", "ip", "host", "alive", "CPU", "GPU", "NPU", "other resources", "labels"):
            nodes.add_column(col)
        for n in result["ray_nodes"]:
            res = dict(n["resources"])
            cells = [f"{res.pop(k):g}" if k in res else "-" for k in ("CPU", "GPU", "NPU")]
            nodes.add_row(escape(str(n["node_id"])[:8]), escape(str(n["ip"])), escape(str(n["hostname"])),
                          "yes" if n["alive"] else "no", *cells,
                          escape(", ".join(f"{k} {v:g}" for k, v in res.items()) or "-"),
                          escape(", ".join(f"{k}={v}" for k, v in n["labels"].items()) or "-"))
        console.print(nodes)
    if not probe:
        console.print("add --probe to measure copy bandwidth and a large matmul on each device", style="dim")
    elif result.get("probe_cache"):
        console.print(f"probe figures kept in {escape(result['probe_cache'])}: a CPU run without a configured peak "
                      "uses the measured copy bandwidth as its peak (and says so)", style="dim")
    print(api.dump_json_line(result))


def _print_npu_smi(files: list[Path], json_out: bool) -> None:
    """`devices --npu-smi FILE...`: what colobench reads from a real machine's npu-smi outputs."""
    texts = []
    for path in files:
        try:
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
        except OSError as exc:
            raise ColobenchError(f"--npu-smi {path}: cannot read ({os_reason(exc)})") from None
        if kind_of_output(texts[-1]) == "unknown":
            raise ColobenchError(f"--npu-smi {path}: not an npu-smi output colobench knows (info table, -t report or -m)")
    rows = chip_rows(texts)
    if json_out:
        print(api.dump_json_line(rows))
        return
    table = Table(show_edge=False, header_style="bold", title="npu-smi, one row per chip", title_justify="left")
    for col in ("NPU", "chip", "logic", "name", "memory used/total MB", "AI Core %", "bandwidth %", "power W",
                "temp C", "processes (MB)"):
        table.add_column(col, justify="left" if col in ("name", "processes (MB)") else "right")

    def num(v: Any) -> str:
        return "-" if v is None else f"{v:g}"

    for r in rows:
        used = r.get("mem_used_mb", r.get("mem_used_mb_from_pct"))
        memory = (f"{r.get('memory_kind', '')} {num(used)} / {num(r.get('mem_total_mb'))}"
                  + (" (from a %)" if "mem_used_mb" not in r and used is not None else "")).strip()
        power = num(r.get("power_w")) + (" (card)" if r.get("power_is_card_level") else "")
        procs = ", ".join(f"{p['pid']} {escape(p['name'])} {p['memory_mb']}" for p in r.get("processes", []))
        table.add_row(str(r["npu_id"]), str(r["chip_id"]), num(r.get("logic_id")), escape(str(r.get("name") or "-")),
                      memory, num(r.get("aicore_pct", r.get("util_pct"))), num(r.get("hbm_bw_util_pct",
                      r.get("ddr_bw_util_pct"))), power, num(r.get("temp_c")), procs or "-")
    _stdout().print(table)


@app.command()
def compare(
    runs: list[str] = typer.Argument(..., help="run directories, or RUN_DIR:POINT for a sweep point; the first is the base"),
    md: bool = typer.Option(False, "--md", help="print a markdown table"),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="write the comparison as CSV"),
    json_out: bool = typer.Option(False, "--json", help="print the comparison as JSON"),
    html_out: Optional[Path] = typer.Option(None, "--html", help="write an offline HTML comparison page"),
    tolerance: float = typer.Option(TOLERANCE, "--tolerance", help="a difference smaller than this fraction is never "
                                    "called beyond noise", min=0.0, max=1.0),
) -> None:
    """Each metric's ratio to the first run, its 95% interval over repetitions, and a verdict:
    better / worse (the interval lies beyond the tolerance), inconclusive, noise."""
    if len(runs) < 2:
        raise ColobenchError("compare needs at least two runs")
    check_file_target(csv_out, "--csv")
    check_file_target(html_out, "--html")
    loaded = []
    for spec in runs:
        path, _, point = spec.partition(":") if ":" in spec and not Path(spec).exists() else (spec, "", "")
        try:
            loaded.append(entries(api.load_summary(path), point or None))
        except ValueError as exc:
            raise ColobenchError(f"{spec}: {exc}") from None
    rows = compare_runs(loaded, tolerance)
    if not rows:
        raise ColobenchError("the runs share no instance, and do not have one instance per phase to pair")
    labels = [escape(r) for r in runs]

    def fmt_ratio(row: Any, k: int) -> str:
        ratio, interval, said = row.ratios[k], row.intervals[k], row.verdicts[k]
        if ratio is None:
            return "-"
        text = f"{ratio:.3f}x" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")
        return f"{text} {said}"

    table_rows = [[r.subject, r.metric, *(f"{v:,.4g}" if isinstance(v, float) else str(v) for v in r.values),
                   *(fmt_ratio(r, k) for k in range(len(runs) - 1))] for r in rows]
    header = ["subject", "metric", *labels, *(f"{lab} / {labels[0]}" for lab in labels[1:])]
    sentences = [f"{runs[k + 1]} against {runs[0]}: {overall(rows, k)}" for k in range(len(runs) - 1)]
    if json_out:
        print(api.dump_json_line({"runs": runs, "tolerance": tolerance, "rows": [r.to_dict() for r in rows],
                                  "overall": sentences}))
    elif md:
        print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
        print("\n".join("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in table_rows))
        print("\n".join(sentences))
    else:
        table = Table(show_edge=False, header_style="bold",
                      title=f"comparison (ratio [95% interval over repetitions], verdict; tolerance "
                            f"{tolerance * 100:.0f}%)")
        for col in header:
            table.add_column(col)
        for row in table_rows:
            table.add_row(*(escape(c) for c in row))
        console = _stdout()
        console.print(table)
        for sentence in sentences:
            console.print(escape(sentence))
    if csv_out:
        with writing("--csv", csv_out):
            exports.write_csv([dict(zip(header, row)) for row in table_rows], csv_out)
    if html_out:
        with writing("--html", html_out):
            html_out.write_text(comparison_page(header, table_rows, [r.to_dict() for r in rows], runs, sentences),
                                encoding="utf-8")
        _stderr().print(f"wrote {escape(str(html_out))}")


@app.command()
@with_knob_options(knobs_named("device", "dtype", "batch_size", "prompt_tokens", "output_tokens", "graph",
                               "quantization", "attn_implementation", "cache_dir"))
def profile(
    model: str = typer.Option(..., "--model", "-m", help="preset name or HF checkpoint folder", metavar="MODEL"),
    out: Path = typer.Option(..., "--out", "-o", help="folder for trace.json and profile.json", metavar="DIR"),
    knobs: dict[Knob, Any] | None = None,
) -> None:
    """Profile a short window: Chrome trace, device idle share, launch overhead, top operators,
    and the async-timing trap (host clock vs synchronised time)."""
    knobs = dict(knobs or {})
    if not any(k.name == "output_tokens" for k in knobs):
        knobs[knobs_named("output_tokens")[0]] = "16"  # 16 decode steps are plenty for a trace
    spec, source = build_spec(None, [model], [], knobs)
    if spec.sweep:
        raise ColobenchError("profile takes one value per flag, not a list")
    try:
        result = api.profile(spec, out, source)
    except SpecError as exc:
        raise for_flags(exc) from None
    console = _stdout()
    trap, analysis = result["async_timing_trap"], result["analysis"]
    console.print(f"[bold]{escape(result['model'])}[/] on {result['device']} ({result['dtype']}, graph {result['graph']}, "
                  f"{result['quantization']}), batch {result['batch_size']}, {result['output_tokens']} steps profiled")
    def spread(part: dict[str, float]) -> str:
        return f"{part['median_ms']:.3f} ms ({part['p10_ms']:.3f}-{part['p90_ms']:.3f})"

    console.print(f"async-timing trap, medians of {trap['iterations']} steps (10th-90th percentile): host clock "
                  f"{spread(trap['host_clock_without_sync'])}, .to('cpu') right after "
                  f"{spread(trap['copy_to_cpu_right_after'])}, synchronised step {spread(trap['synchronized_step'])}")
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
    print(api.dump_json_line({k: v for k, v in result.items()}))


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
    console = _stdout()
    console.print("[bold]validity[/]")
    for p in summary.points:
        for phase, name, mt in p.rows():
            console.print(f"  {escape(p.id + ' ' if p.id else '')}{escape(name)} ({phase}): {validity_line(mt)}")
    logs = RunDir(run_dir).log_files()
    matched = sum(1 for f in summary.findings if f.kind.startswith("log:"))
    yours = f" and {len(rules)} from {escape(str(log_rules))}" if rules else ""
    console.print(f"[bold]logs[/]: {len(logs)} file(s) under runs/*/logs scanned with {len(LOG_RULES)} built-in "
                  f"rules{yours}: {matched} finding(s)")
    print_findings(summary.findings, console)


def _read_log_rules(path: Path) -> list[Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ColobenchError(f"--log-rules {path}: cannot read ({os_reason(exc)})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ColobenchError(f"--log-rules {path}: not YAML ({str(exc).splitlines()[0]})") from None
    if isinstance(data, dict) and "log_rules" in data:
        data = data["log_rules"]
    return rules_from(data, str(path))


@app.command()
def presets() -> None:
    """List the architecture presets (real shapes, random weights)."""
    table = Table(show_edge=False, header_style="bold")
    for col in ("preset", "shapes of", "parameters", "layers", "hidden", "heads/kv", "vocab", "built"):
        table.add_column(col)
    for p in PRESETS.values():
        c = p.config
        table.add_row(p.name, p.reference, f"{p.approx_params() / 1e6:,.1f} M", str(c["num_hidden_layers"]),
                      str(c["hidden_size"]), f"{c['num_attention_heads']}/{c['num_key_value_heads']}",
                      str(c["vocab_size"]), "yes" if is_built(p.name) else "no")
    console = _stdout()
    console.print(table)
    console.print(f"cache: {escape(str(default_cache_dir()))}", style="dim")


@app.command("fake-server")
def fake_server(
    port: int = typer.Option(8000, "--port", help="TCP port on 127.0.0.1", min=1, max=65535),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
    ttft_ms: float = typer.Option(50.0, "--ttft-ms", help="time to the first token", min=0, max=3_600_000),
    itl_ms: float = typer.Option(10.0, "--itl-ms", help="time between chunks", min=0, max=3_600_000),
    jitter_ms: float = typer.Option(0.0, "--jitter-ms", help="uniform +- jitter on every delay", min=0, max=3_600_000),
    error_rate: float = typer.Option(0.0, "--error-rate", help="fraction of requests that hit a fault", min=0, max=1),
    faults: str = typer.Option(",".join(("http_500", "cut", "malformed", "stall")), "--faults",
                               help="faults drawn on error: http_500, cut, malformed, stall, bad_usage, negative_usage, huge_usage"),
    model_names: str = typer.Option("fake-model", "--models", help="served model names, comma separated"),
    tokens_per_chunk: int = typer.Option(1, "--tokens-per-chunk", help="tokens in each streamed chunk", min=1,
                                         max=100_000),
    usage: str = typer.Option("requested", "--usage", help="requested, always (in the last chunk) or never"),
    no_done: bool = typer.Option(False, "--no-done", help="close the stream without data: [DONE]"),
    keepalive: bool = typer.Option(False, "--keepalive", help="empty chunks and SSE comments between tokens"),
    stamp: bool = typer.Option(False, "--stamp", help="server send times in every chunk (ground truth)"),
    trace: bool = typer.Option(False, "--trace", help="keep send times of every stream for GET /colobench/trace"),
    seed: Optional[int] = typer.Option(None, "--seed", help="seed of jitter and faults"),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="require the key in this variable"),
    no_tokenize: bool = typer.Option(False, "--no-tokenize", help="do not serve POST /tokenize"),
    echo_headers: bool = typer.Option(False, "--echo-headers", help="error bodies quote the request's headers, "
                                      "credentials included (to check that colobench scrubs them)"),
    reasoning_tokens: int = typer.Option(0, "--reasoning-tokens", min=0, max=10_000_000,
                                         help="chat: the first N tokens of each stream are reasoning"),
    reasoning_field: str = typer.Option("reasoning_content", "--reasoning-field",
                                        help="the delta field reasoning goes in: reasoning_content or reasoning"),
    decode_tok_s: Optional[float] = typer.Option(
        None, "--decode-tok-s", help="shared-device mode (with --prefill-tok-s): decode tokens per second of ONE "
        "simulated device shared equally by the streams of all --models, each capped at one token per --itl-ms"),
    prefill_tok_s: Optional[float] = typer.Option(
        None, "--prefill-tok-s", help="shared-device mode (with --decode-tok-s): prompt tokens per second of the "
        "device's one FIFO prefill queue for all --models; prefill pauses decoding; --ttft-ms is then ignored"),
) -> None:
    """Serve a fake OpenAI-compatible API with known timing and optional faults."""
    chosen = tuple(f for f in faults.split(",") if f)
    unknown = [f for f in chosen if f not in KNOWN_FAULTS]
    if unknown:
        raise SpecError("command line", "--faults", f"unknown fault(s) {unknown}; known: {', '.join(KNOWN_FAULTS)}",
                        show_value=False)
    if usage not in ("requested", "always", "never"):
        raise SpecError("command line", "--usage", "must be requested, always or never", usage)
    if not 0 <= error_rate <= 1:
        raise SpecError("command line", "--error-rate", "must be between 0 and 1", error_rate)
    if reasoning_field not in ("reasoning_content", "reasoning"):
        raise SpecError("command line", "--reasoning-field", "must be reasoning_content or reasoning", reasoning_field)
    if (decode_tok_s is None) != (prefill_tok_s is None):
        raise SpecError("command line", "--decode-tok-s" if decode_tok_s is None else "--prefill-tok-s",
                        "the shared device needs both --decode-tok-s and --prefill-tok-s", show_value=False)
    for flag, rate in (("--decode-tok-s", decode_tok_s), ("--prefill-tok-s", prefill_tok_s)):
        if rate is not None and not 0 < rate < float("inf"):  # NaN fails too
            raise SpecError("command line", flag, "must be a number > 0", rate)
    config = FakeServerConfig(ttft_ms=ttft_ms, itl_ms=itl_ms, jitter_ms=jitter_ms, error_rate=error_rate,
                              faults=chosen, models=tuple(m for m in model_names.split(",") if m),
                              tokens_per_chunk=max(1, tokens_per_chunk), usage=usage, done=not no_done,
                              keepalive=keepalive, stamp=stamp, seed=seed, trace=trace, tokenize=not no_tokenize,
                              reasoning_tokens=reasoning_tokens, reasoning_field=reasoning_field, echo_headers=echo_headers,
                              require_api_key=os.environ.get(api_key_env) if api_key_env else None,
                              decode_tok_s=decode_tok_s, prefill_tok_s=prefill_tok_s)
    timing = (f"one shared device: prefill {prefill_tok_s} tok/s, decode {decode_tok_s} tok/s, ITL >= {itl_ms} ms"
              if config.shared_device else f"TTFT {ttft_ms} ms, ITL {itl_ms} ms, jitter {jitter_ms} ms")
    banner = (f"fake OpenAI server on http://{host}:{port}/v1 (models: {', '.join(config.models)}; "
              f"{timing}, error rate {error_rate})")
    try:
        serve(config, host=host, port=port, banner=banner)
    except OSError as exc:  # the port is taken, not ours to use, or the address is not this host's
        raise ColobenchError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror or exc})") from None


@app.command()
def schema() -> None:
    """Print the JSON Schema of summary.json (colobench.summary/2), generated from its models."""
    print(json.dumps(api.schema(), indent=2))


def main() -> None:
    try:
        code = app(standalone_mode=False, prog_name="colobench")
    except ColobenchError as exc:
        _stderr().print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:
        _stderr().print("[yellow]interrupted[/]")
        sys.exit(128 + exc.signum if isinstance(exc, stopping.StopRequested) else 130)
    except OSError as exc:  # a file, folder or port problem no command caught by name: still one line
        where = f"{exc.filename}: " if exc.filename else ""
        _stderr().print(f"[red]error:[/] {escape(where + os_reason(exc))}", soft_wrap=True)
        sys.exit(2)
    except Exception as exc:
        # typer vendors its own click, so its exceptions are matched by their API, not their class
        kind = type(exc).__name__
        if kind == "Abort":
            _stderr().print("[yellow]interrupted[/]")
            sys.exit(130)
        if kind == "Exit":
            sys.exit(getattr(exc, "exit_code", 0))
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # usage errors: one line, exit 2
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            ctx = getattr(exc, "ctx", None)
            hint = f" (see {ctx.command_path} --help)" if ctx is not None and getattr(ctx, "command_path", None) else ""
            _stderr().print(f"[red]error:[/] {escape(' '.join(message.split()))}{escape(hint)}", soft_wrap=True)
            sys.exit(exc.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
