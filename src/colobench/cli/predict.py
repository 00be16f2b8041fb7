"""`colobench characterize` (solo profiles with sensitivity curves), `colobench predict` (the
co-located figures of instances from their profiles alone), `colobench place` (services onto
devices from their profiles) and the hidden `colobench pressure` (one pressure probe, the process
`characterize` starts beside each run)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from colobench import api, stopping
from colobench.analysis.instance_profile import RESOURCES, InstanceProfile
from colobench.analysis.predict import DEFAULT_TARGET, predict as predict_profiles, predict_region
from colobench.characterize import DEFAULT_LEVELS, capacity_caps, characterize as run_characterize, load_profiles
from colobench.cli.app import app, stderr, stdout
from colobench.cli.flags import build_spec, for_flags, with_knob_options
from colobench.cli.progress import progress_for
from colobench.cli.run import RUN_KNOBS
from colobench.errors import ColobenchError, SpecError, writing
from colobench.loadgen.pressure import run_probe
from colobench.analysis.placement import METHODS
from colobench.place import load_problem, place as run_place
from colobench.place_verify import verify as run_verify
from colobench.report.placement import placement_page, print_placement, print_verification
from colobench.report.predict import print_prediction, print_profiles
from colobench.specs import Knob


def _levels(probes: list[str]) -> dict[str, tuple[float, ...]] | None:
    """`--probe host_cpu=0.5,1,2` (repeatable) -> {resource: levels}; a bare name takes its defaults."""
    if not probes:
        return None
    out: dict[str, tuple[float, ...]] = {}
    for item in probes:
        name, _, values = item.partition("=")
        if name not in RESOURCES:
            raise ColobenchError(f"--probe {item!r}: unknown resource {name!r} (known: {', '.join(RESOURCES)})")
        try:
            levels = tuple(float(v) for v in values.split(",")) if values else DEFAULT_LEVELS[name]
        except ValueError:
            raise ColobenchError(f"--probe {item!r}: levels are numbers, comma separated (e.g. host_cpu=0.5,1,2)") from None
        if any(v <= 0 for v in levels):
            raise ColobenchError(f"--probe {item!r}: levels must be > 0")
        out[name] = levels
    return out


@app.command()
@with_knob_options(RUN_KNOBS)
def characterize(
    experiment: Optional[Path] = typer.Argument(None, help="experiment YAML; without it, -m or -e flags",
                                                metavar="[EXPERIMENT.yaml]"),
    model: list[str] = typer.Option([], "--model", "-m", help="preset name or checkpoint folder (or the served model "
                                    "name of an --endpoint); repeat for several instances", metavar="MODEL"),
    endpoint: list[str] = typer.Option([], "--endpoint", "-e", help="OpenAI-compatible base URL", metavar="URL"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="folder (default colobench-runs/<time>-<name>-profile)",
                                       metavar="DIR"),
    probe: list[str] = typer.Option([], "--probe", help="RESOURCE[=LEVEL,LEVEL,...] (repeatable): host_cpu (cores), "
                                    "device_time, compute, memory_bandwidth (shares); default: what the instance's "
                                    "device shares", metavar="SPEC"),
    target: Optional[str] = typer.Option(None, "--target", help="where the probe presses: host, cuda:0, npu:0 or an "
                                         "endpoint URL (default: where the first instance runs)", metavar="WHERE"),
    probe_model: Optional[str] = typer.Option(None, "--probe-model", help="endpoint probes: the served model the "
                                              "probe sends to (default: the instance's)", metavar="NAME"),
    knobs: dict[Knob, Any] | None = None,
) -> None:
    """Profile each instance alone, then beside pressure probes: its demand and sensitivity curves.

    The profiles (profiles/*.profile.json) are what `colobench predict` reads.
    """
    spec, source = build_spec(experiment, model, endpoint, knobs or {})
    folder = out or Path("colobench-runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{spec.name}-profile"
    err = stderr()
    with stopping.stop_on_signals():
        try:
            with progress_for(err) as progress:
                result, profiles = run_characterize(spec, folder, _levels(probe), target, probe_model, progress,
                                                    lambda text: err.print(escape(text)))
        except SpecError as exc:
            raise for_flags(exc) from None
        except KeyboardInterrupt:
            err.print(f"[yellow]stopped: what was measured is in {escape(str(folder))}[/]")
            raise typer.Exit(stopping.exit_code() or 130) from None
    print_profiles(list(profiles.values()), stdout())
    for p in result.probes:
        if p.error:
            err.print(f"[yellow]probe {escape(p.label)}: {escape(p.error)}[/]")
    err.print(f"profiles: {escape(str(folder))}/profiles (characterize.json: the probes and what each achieved)")
    print(api.dump_json_line({"characterize": str(folder), "profiles": result.profiles}), flush=True)


def _rates(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            raise ColobenchError(f"--rate {item!r}: write INSTANCE=REQ_PER_S, e.g. a=2.5") from None
        if out[name] < 0:
            raise ColobenchError(f"--rate {item!r}: a rate is >= 0")
    return out


@app.command()
def predict(
    sources: list[str] = typer.Argument(..., help="profiles: .profile.json files, characterize folders or run "
                                        "directories (their solo phases); NAME=FILE renames a profile (two runs "
                                        "that both call their instance tiny-1)", metavar="PROFILE..."),
    rate: list[str] = typer.Option([], "--rate", help="INSTANCE=REQ_PER_S: predict at this rate instead of the "
                                   "profiled one (open loop; repeatable)", metavar="NAME=R"),
    capacity: Optional[Path] = typer.Option(None, "--capacity", help="a `colobench capacity` folder of the same "
                                            "instances: its solo capacities give the predicted region", metavar="DIR"),
    target: float = typer.Option(DEFAULT_TARGET, "--target", min=0.5, max=1.0, help="SLO attainment to meet",
                                 metavar="SHARE"),
    json_out: bool = typer.Option(False, "--json", help="print the prediction as JSON", metavar=""),
) -> None:
    """Predict how much instances slow each other co-located, from their solo profiles alone."""
    profiles: list[InstanceProfile] = []
    for source in sources:
        name, eq, path = source.partition("=")
        if eq and name and "/" not in name:
            found = load_profiles(Path(path))
            if len(found) != 1:
                raise ColobenchError(f"{source}: NAME= renames one profile, and {path} holds {len(found)}")
            profiles.append(found[0].model_copy(update={"instance": name}))
        else:
            profiles.extend(load_profiles(Path(source)))
    if len(profiles) < 2:
        raise ColobenchError(f"{len(profiles)} profile(s) given: a co-location needs two or more instances")
    rates = _rates(rate)
    unknown = sorted(set(rates) - {p.instance for p in profiles})
    if unknown:
        raise ColobenchError(f"--rate names no profiled instance: {', '.join(unknown)}")
    try:
        prediction = predict_profiles(profiles, rates or None, target=target)
    except ValueError as exc:
        raise ColobenchError(str(exc)) from None
    if capacity is not None:
        caps, shares = capacity_caps(capacity)
        missing = [p.instance for p in profiles if p.instance not in caps]
        if missing or len(profiles) != 2:
            raise ColobenchError(f"--capacity {capacity}: the region is predicted for two instances with solo "
                                 f"capacities (missing: {', '.join(missing) or 'none'})")
        region = predict_region(profiles, caps, shares or [1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6])
        prediction = prediction.model_copy(update={"region": region})
    if json_out:
        print(json.dumps(prediction.to_json(), indent=1))
        return
    print_prediction(prediction, stdout())


@app.command()
def place(
    placement: Path = typer.Argument(..., help="placement YAML: objective, target, devices, services (each a "
                                     "profile, a rate, an SLO, its memory)", metavar="PLACEMENT.yaml"),
    json_out: bool = typer.Option(False, "--json", help="print the result as JSON", metavar=""),
    verify: bool = typer.Option(False, "--verify", help="start the placement (managed servers pinned to their cores, "
                                "memory split applied), drive every service at its rate, and measure it against "
                                "the prediction", metavar=""),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="--verify: its folder (default colobench-runs/"
                                       "<time>-place-verify)", metavar="DIR"),
    duration: Optional[float] = typer.Option(None, "--duration", help="--verify: seconds each repetition runs "
                                             "(default: the file's verify.duration_s, 60)", metavar="S"),
    html_out: Optional[Path] = typer.Option(None, "--html", help="write the placement page here (with --verify "
                                            "it is also DIR/placement.html)", metavar="FILE"),
    method: Optional[str] = typer.Option(None, "--method", help="show and verify this method's placement instead of "
                                         "the best: " + ", ".join(METHODS), metavar="NAME"),
) -> None:
    """Place services on devices from their profiles: the fewest devices, or the most goodput.

    With --verify the chosen placement is run and measured; the profiles gain what was measured.
    """
    if duration is not None and duration <= 0:
        raise ColobenchError(f"--duration: {duration} must be > 0")
    if method is not None and method not in METHODS:
        raise ColobenchError(f"--method: {method!r} is not one of {', '.join(METHODS)}")
    problem = load_problem(placement)
    result = run_place(problem)
    if method is not None:
        if method not in result.methods:
            raise ColobenchError(f"--method {method}: not run for this placement (more services than the exhaustive "
                                 "search takes)")
        result = result.model_copy(update={"best": result.methods[method]})
    verified = None
    if verify:
        folder = out or Path("colobench-runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-place-verify"
        err = stderr()
        with stopping.stop_on_signals():
            try:
                with progress_for(err) as progress:
                    verified = run_verify(problem, result, folder, progress, duration)
            except SpecError as exc:
                raise for_flags(exc) from None
            except KeyboardInterrupt:
                err.print(f"[yellow]stopped: what was measured is in {escape(str(folder))}[/]")
                raise typer.Exit(stopping.exit_code() or 130) from None
        with writing("--out", folder / "placement.html"):
            (folder / "placement.html").write_text(placement_page(result, verified), encoding="utf-8")
    if html_out is not None:
        with writing("--html", html_out):
            html_out.write_text(placement_page(result, verified), encoding="utf-8")
        stderr().print(f"wrote {escape(str(html_out))}")
    if json_out:
        data = result.model_dump(mode="json")
        if verified is not None:
            data["verify"] = verified.model_dump(mode="json")
        print(json.dumps(data, indent=1))
    else:
        print_placement(result, stdout())
        if verified is not None:
            print_verification(verified, stdout())
    if verified is not None and verified.missed:
        raise typer.Exit(1)


@app.command(hidden=True)
def pressure(
    target: str = typer.Option(..., "--target", help="host, cuda:0, npu:0, cpu (torch) or an endpoint URL"),
    resource: str = typer.Option(..., "--resource", help="host_cpu, device_time, compute, memory_bandwidth"),
    level: float = typer.Option(..., "--level", help="cores (host_cpu) or a share in [0, 1]"),
    model: Optional[str] = typer.Option(None, "--model", help="endpoint: the served model to send to"),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="endpoint: the variable holding the key"),
    metrics_url: Optional[str] = typer.Option(None, "--metrics-url", help="endpoint: its /metrics (default: beside it)"),
    duration: Optional[float] = typer.Option(None, "--duration", help="seconds (default: until SIGTERM)"),
) -> None:
    """One pressure probe: a JSON line when it presses, a JSON line of what it achieved at the end."""
    def emit(data: dict[str, Any]) -> None:
        print(json.dumps(data), flush=True)

    key = os.environ.get(api_key_env) if api_key_env else None
    try:
        result = run_probe(target, resource, level, emit, model, key, metrics_url, duration)
    except (ValueError, RuntimeError) as exc:
        emit({"target": target, "resource": resource, "nominal": level, "error": str(exc)})
        raise typer.Exit(2) from None
    emit(result)
