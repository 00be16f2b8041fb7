"""The `colobench` command: parsing, printing, exit codes. Everything else is `colobench.api`.

Exit codes: 0 done, 1 ran but a worker failed, 2 bad input (one line on stderr, nothing
written), 130 interrupted by Ctrl-C (what completed is summarised and kept).
Tables go to stdout and its last line is the summary as one line of JSON; progress and
messages go to stderr, so `colobench run | tail -1 | jq` works.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from colobench.errors import ColobenchError, SpecError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Benchmark LLM inference alone and co-located; diagnose why instances slow each other.")

FLAG_FIELDS = {  # spec field -> the flag that sets it, for error messages about flags
    r"workload\.prompt_tokens": "--prompt-tokens",
    r"workload\.output_tokens": "--output-tokens",
    r"workload\.requests": "--requests",
    r"workload\.batch_size": "--batch-size",
    r"repetitions": "--repetitions",
    r"instances\[\d+\]\.device": "--device",
    r"instances\[\d+\]\.dtype": "--dtype",
    r"instances\[\d+\]\.model": "--model",
}


def _flag_name(field: str) -> str:
    for pattern, flag in FLAG_FIELDS.items():
        if re.fullmatch(pattern, field):
            return flag
    return field


def _stdout() -> Console:
    return Console(width=None if sys.stdout.isatty() else 160, highlight=False)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


class _RichProgress:
    """Draws the API's progress callbacks as a rich progress bar on stderr."""

    def __init__(self, console: Console):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("requests"), TimeElapsedColumn(), console=console, transient=False)
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> "_RichProgress":
        self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.stop()

    def phase(self, text: str) -> None:
        self.console.print(escape(text), style="dim")

    def run_started(self, run_id: str, total_requests: int) -> None:
        self.tasks[run_id] = self.bar.add_task(f"{run_id}: loading", total=total_requests)

    def requests_done(self, run_id: str, instance: str, count: int) -> None:
        self.bar.update(self.tasks[run_id], advance=count, description=run_id)

    def worker_event(self, run_id: str, kind: str, instance: str, payload: Any) -> None:
        if kind in ("died", "error"):
            self.console.print(f"[red]{escape(run_id)}: worker {escape(instance)} {kind}:[/] {escape(str(payload))}")

    def run_finished(self, run_id: str, state: dict[str, Any]) -> None:
        self.bar.update(self.tasks[run_id], description=f"{run_id}: {state['status']}")


def _build_spec(experiment: Optional[Path], models: list[str], overrides: dict[str, Any], device: Optional[str],
                dtype: Optional[str], name: Optional[str], cache_dir: Optional[Path]):
    from colobench import api
    from colobench.specs import experiment_from_dict, load_experiment_yaml

    if experiment is not None and models:
        raise ColobenchError(f"{experiment}: give the models either in the file or with --model, not both")
    if experiment is not None:
        spec = load_experiment_yaml(experiment)
        data = spec.model_dump(exclude_unset=True)
        source = str(experiment)
    else:
        source = "command line"
        if models:
            data = {"name": "colocation" if len(models) > 1 else "solo", "instances": [{"model": m} for m in models]}
        else:
            data = api.default_experiment(device if device not in (None, "auto") else None).model_dump(exclude_unset=True)
    data = dict(data)
    workload = {k: v for k, v in overrides.items() if k != "repetitions" and v is not None}
    if workload:
        data["workload"] = {**(data.get("workload") or {}), **workload}
    if overrides.get("repetitions") is not None:
        data["repetitions"] = overrides["repetitions"]
    if name:
        data["name"] = name
    if cache_dir:
        data["cache_dir"] = str(cache_dir)
    if device or dtype:
        data["instances"] = [{**i, **({"device": device} if device else {}), **({"dtype": dtype} if dtype else {})}
                             for i in data.get("instances", [])]
    try:
        return experiment_from_dict(data, source), source
    except SpecError as exc:
        raise _for_flags(exc) from None


def _for_flags(exc: SpecError) -> SpecError:
    """Errors about the command line name the flag (--prompt-tokens), not the spec path."""
    return exc.with_field(_flag_name(exc.field)) if exc.source == "command line" else exc


@app.command()
def run(
    experiment: Optional[Path] = typer.Argument(None, help="experiment YAML; without it, -m flags or the default job"),
    model: list[str] = typer.Option([], "--model", "-m", help="preset name or HF checkpoint folder; repeat to co-locate"),
    device: Optional[str] = typer.Option(None, "--device", "-d", help="auto, cpu, cuda[:N] or npu[:N] for every instance"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="auto, float32, bfloat16 or float16"),
    prompt_tokens: Optional[int] = typer.Option(None, "--prompt-tokens", "-p", help="tokens per prompt"),
    output_tokens: Optional[int] = typer.Option(None, "--output-tokens", "-n", help="tokens generated per request"),
    requests: Optional[int] = typer.Option(None, "--requests", "-r", help="measured requests per repetition"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="requests per static batch"),
    repetitions: Optional[int] = typer.Option(None, "--repetitions", help="measured windows per run (default 3)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run directory (default colobench-runs/<time>-<name>)"),
    name: Optional[str] = typer.Option(None, "--name", help="experiment name"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="where presets are built (default ~/.cache/colobench)"),
    json_only: bool = typer.Option(False, "--json", help="print only the summary JSON line on stdout"),
) -> None:
    """Run each instance alone, then all together, and report how much they slow each other."""
    from colobench import api
    from colobench.report.console import print_summary

    overrides = {"prompt_tokens": prompt_tokens, "output_tokens": output_tokens, "requests": requests,
                 "batch_size": batch_size, "repetitions": repetitions}
    spec, source = _build_spec(experiment, model, overrides, device, dtype, name, cache_dir)
    err = _stderr()
    try:
        with _RichProgress(err) as progress:
            result = api.run_experiment(spec, out=out, progress=progress, source=source, command=sys.argv)
    except SpecError as exc:
        raise _for_flags(exc) from None
    if not json_only:
        print_summary(result.summary, _stdout())
    err.print(f"run directory: {escape(str(result.run_dir))}")
    print(api.dump_json_line(result.summary), flush=True)
    if result.interrupted:
        err.print("[yellow]interrupted: the summary covers what completed[/]")
        raise typer.Exit(130)
    if result.summary.get("problems"):
        raise typer.Exit(1)


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="a run directory written by `colobench run`"),
    json_out: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Print the tables of a run again, recomputed from its records alone."""
    from colobench import api
    from colobench.report.console import print_summary

    summary = api.load_summary(run_dir)
    if json_out:
        print(api.dump_json_line(summary))
        return
    print_summary(summary, _stdout())
    print(api.dump_json_line(summary))


@app.command()
def presets() -> None:
    """List the architecture presets (real shapes, random weights)."""
    from rich.table import Table

    from colobench.models.presets import PRESETS, default_cache_dir, is_built

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


def main() -> None:
    import click

    try:
        code = app(standalone_mode=False)
    except ColobenchError as exc:
        _stderr().print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        _stderr().print("[yellow]interrupted[/]")
        sys.exit(130)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
