"""`colobench run` (each instance alone, then together) and `colobench capacity` (the highest
rates within the SLO, alone and co-located): parse, run through `api`, print, exit."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from colobench import api, stopping
from colobench.analysis.capacity import DEFAULT_MAX_TIME_S
from colobench.capacity import run_capacity
from colobench.cli.app import app, stderr, stdout
from colobench.cli.flags import FLAG_KNOBS, build_spec, for_flags, with_knob_options
from colobench.cli.progress import CapacityLines, progress_for
from colobench.errors import ColobenchError, SpecError, os_reason
from colobench.load_sweep import run_load_sweep
from colobench.report.capacity import print_capacity, write_capacity_html
from colobench.report.load_sweep import print_load_sweep
from colobench.report.console import print_summary
from colobench.report.headline import headline
from colobench.rundir import DEFAULT_RUNS_DIR, RunDir
from colobench.specs import Knob

RUN_KNOBS = [k for k in FLAG_KNOBS if k.name not in ("model",)]


def _load_sweep(spec: Any, source: str, out: Optional[Path], steps: int, resume: bool) -> None:
    """`run --profile sweep`: every step a run under OUT/steps/, the curve and the knees printed."""
    if resume:
        raise ColobenchError("--profile sweep cannot --resume: run it again into a new --out")
    folder = out or Path("colobench-runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{spec.name}-sweep"
    err = stderr()
    with stopping.stop_on_signals():
        try:
            with progress_for(err) as progress:
                sweep = run_load_sweep(spec, folder, steps, source, progress, lambda text: err.print(escape(text)))
        except SpecError as exc:
            raise for_flags(exc) from None
        except KeyboardInterrupt:
            err.print(f"[yellow]stopped: the steps so far are in {escape(str(folder))}/load_sweep.json[/]")
            raise typer.Exit(stopping.exit_code() or 130) from None
    print_load_sweep(sweep, stdout())
    err.print(f"load sweep: {escape(str(folder))} (load_sweep.json, one run directory per step under steps/)")


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
    load_profile: Optional[str] = typer.Option(None, "--profile", help="sweep: the latency-versus-load curve in one "
                                               "command (synchronous, throughput, then rates between; alone and "
                                               "co-located), into --out", rich_help_panel="Load", metavar="sweep"),
    profile_steps: int = typer.Option(6, "--profile-steps", min=1, max=50, help="--profile sweep: rates between the "
                                      "synchronous and the throughput step", rich_help_panel="Load", metavar="N"),
    knobs: dict[Knob, Any] | None = None,
) -> None:
    """Run each instance alone, then all together, and report how much they slow each other.

    Comma lists (--batch-size 1,2,4,8 --scenario short,long) sweep the product of their values.
    The last line of stdout is a compact JSON headline; --json prints the whole summary instead.
    """
    if resume and out is None:
        raise ColobenchError("--resume needs --out: the run directory to resume")
    if load_profile is not None and load_profile != "sweep":
        raise ColobenchError(f"--profile {load_profile!r}: the one load profile is sweep")
    spec, source = build_spec(experiment, model, endpoint, knobs or {}, out if resume else None)
    err = stderr()
    if load_profile == "sweep":
        _load_sweep(spec, source, out, profile_steps, resume)
        return
    # Ctrl-C, SIGTERM and SIGHUP: stop the workers, then everything below still happens (a second
    # signal is only noted), and the exit status is 128 + the signal
    with stopping.stop_on_signals():
        try:
            with progress_for(err) as progress:
                result = api.run_experiment(spec, out=out, progress=progress, source=source, command=sys.argv,
                                            resume=resume)
        except SpecError as exc:
            raise for_flags(exc) from None
        if not json_only:
            print_summary(result.summary, stdout())
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
    min_rate: Optional[float] = typer.Option(None, "--min-rate", min=1e-6, help="never probe below this rate, "
                                             "req/s (default: 64 times below the start)", rich_help_panel="Capacity"),
    max_time: float = typer.Option(DEFAULT_MAX_TIME_S, "--max-time", min=1.0, max=7 * 24 * 3600.0,
                                   help="time budget of the whole search, seconds: it stops before a probe that "
                                   "would pass it, keeping what it found (exit 1)", rich_help_panel="Capacity"),
    knobs: dict[Knob, Any] | None = None,
) -> None:
    """The highest request rate each instance carries alone within its SLO, then the rate pairs
    co-located instances carry together: the boundary against perfect sharing and separate cards.

    Give the objectives with --slo ttft_ms=...,tpot_ms=... (or slo: per instance in the file).
    Every probe is a run under OUT/probes; capacity.json and capacity.html are in OUT.
    """
    spec, source = build_spec(experiment, model, endpoint, knobs or {})
    folder = out or RunDir.new(DEFAULT_RUNS_DIR, f"{spec.name}-capacity").root
    err = stderr()
    with stopping.stop_on_signals():
        try:
            summary = run_capacity(spec, folder, target=target, precision=precision, probe_s=probe_s, rays=rays,
                                   start_rate=start_rate, progress=CapacityLines(err), source=source,
                                   min_rate=min_rate, max_time_s=max_time)
        except SpecError as exc:
            raise for_flags(exc) from None
        except KeyboardInterrupt:
            err.print(f"[yellow]stopped: what was found so far is in {escape(str(RunDir(folder).capacity))}[/]")
            raise typer.Exit(stopping.exit_code())
    print_capacity(summary, stdout())
    page = write_capacity_html(summary, folder)
    err.print(f"capacity: {escape(str(RunDir(folder).capacity))}; report: {escape(str(page))}")
    line = {"capacity": {"solo": {n: s.max_rate for n, s in summary.solo.items()},
                         "sharing_efficiency": summary.region.sharing_efficiency if summary.region else None,
                         "vs_separate_cards": summary.region.vs_separate_cards if summary.region else None,
                         "stopped": summary.stopped, "out": str(folder)}}
    print(api.dump_json_line(line), flush=True)
    if summary.stopped:
        raise typer.Exit(1)
