"""What the CLI and notebooks call: plan, run, summarise. Never prints.

`run_experiment(spec)` validates and checks everything first (nothing is written if the spec
cannot work), builds any preset not yet cached, writes `manifest.json`, runs the plan's groups
(`launch.orchestrate`) with the local or the Ray launcher, and writes `summary.json`. The run
directory's layout and life are `colobench.rundir`'s; this module only orders the steps.
"""

from __future__ import annotations

import contextlib
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from pydantic import ValidationError

from colobench.analysis.compat import load_summary_data
from colobench.analysis.instance_profile import solo_profiles
from colobench.analysis.predict import with_predictions
from colobench.analysis.model import Summary
from colobench.analysis.summary import summarize_run_dir
from colobench.backends.openai_admin import check_instances
from colobench.clock import monotonic_s
from colobench.devices.cpu import allowed_cores
from colobench.devices import resolve_auto
from colobench.devices.inventory import inventory
from colobench.errors import ColobenchError, check_dir_target, os_reason
from colobench.launch import ray_launcher
from colobench.launch.local import run_local
from colobench.launch.orchestrate import Progress, run_groups
from colobench.launch.servers import check_servers, servers_for
from colobench.models.presets import default_cache_dir, ensure_preset, is_built
from colobench.plan import ExperimentPlan, check_plan, plan_experiment, prompt_jobs
from colobench.profiling import run_profile
from colobench.records import CorruptFile
from colobench.report.html import write_report
from colobench.rundir import (DEFAULT_RUNS_DIR, LOCK_NAME, ManifestFile, RunDir, folder_lock, make_run_dir,
                              new_manifest, open_run_dir, read_manifest, remove_if_empty, resumed_manifest, settle_abandoned, spec_from_run_dir,
                              write_json_atomic, write_prompts)
from colobench.secrets import register_spec, scrub
from colobench.specs import ExperimentSpec, InstanceSpec, LaunchSpec, WorkloadSpec
from colobench.workload.prompts import prepare_prompt_sets

__all__ = ["DEFAULT_RUNS_DIR", "ExperimentResult", "Progress", "default_experiment", "dump_json_line", "list_devices",
           "load_summary", "prepare", "profile", "ray_cluster", "run_experiment", "schema", "spec_from_run_dir",
           "summarize", "validity_table", "write_html_report"]


@dataclass
class ExperimentResult:
    run_dir: Path
    summary: Summary
    interrupted: bool = False


def auto_device() -> str:
    return resolve_auto()


def default_experiment(device: str | None = None) -> ExperimentSpec:
    """The embedded default: two instances of one random-weight Llama preset on one device,
    `tiny` on CPU and `llama-3.2-1b` on an accelerator."""
    device = device or auto_device()
    model = "tiny" if device == "cpu" else "llama-3.2-1b"
    return ExperimentSpec(name="default-colocation", workload=WorkloadSpec(requests=10),
                          instances=[InstanceSpec(model=model, device=device), InstanceSpec(model=model, device=device)])


def prepare(spec: ExperimentSpec, source: str = "experiment") -> ExperimentPlan:
    """Validate against this host: resolve `auto`, check devices and model folders. Writes nothing."""
    needs_auto = any(i.device == "auto" for i in spec.instances) or any(
        v == "auto" for k, vs in spec.sweep.items() if k.endswith(".device") for v in vs)
    plan = plan_experiment(spec, auto_device=auto_device() if needs_auto else "cpu", source=source)
    local = spec.launch.kind == "local" or spec.launch.address == "local"
    check_plan(plan, source, allowed_cores() if local else None)
    return plan


def build_presets(plan: ExperimentPlan, progress: Progress) -> None:
    cache = Path(plan.cache_dir)
    for name in sorted({i.preset for i in plan.instances if i.preset}):
        if not is_built(name, cache):
            progress.phase(f"building preset {name} (random weights, once; cached in {cache})")
            t0 = monotonic_s()
            ensure_preset(name, cache)
            progress.phase(f"built preset {name} in {monotonic_s() - t0:.1f} s")


def run_experiment(spec: ExperimentSpec, out: Path | None = None, progress: Progress | None = None,
                   source: str = "experiment", command: list[str] | None = None,
                   resume: bool = False) -> ExperimentResult:
    """Run every planned run of `spec`; on Ctrl-C stop, summarise what completed, and return with
    `interrupted=True`. With `resume`, runs already completed in `out` are kept and skipped."""
    register_spec(spec)  # every secret value it holds, before any message or file could show one
    progress = progress or Progress()
    if out is not None:
        check_dir_target(Path(out), "--out")
    plan = prepare(spec, source)
    check_dir_target(Path(plan.cache_dir), "--cache-dir")
    check_servers(spec, plan, source)  # programs, devices, cores, fixed ports; secrets in commands registered
    prompt_sets = prepare_prompt_sets(prompt_jobs(plan), source)
    names = spec.instance_names()
    check_instances(plan.instances, [f"instances[{names.index(i.name)}]" if i.name in names else f"instance {i.name}"
                                     for i in plan.instances], source)
    with contextlib.ExitStack() as stack:
        launcher: Any = run_local
        if spec.launch.kind == "ray":
            progress.phase(f"connecting to Ray ({spec.launch.address or 'a running cluster, else a private one'})")
            ray = stack.enter_context(ray_launcher.ray_session(spec.launch))
            ray_launcher.check_placeable(ray, plan, spec.launch, source)
            launcher = functools.partial(ray_launcher.run_ray, launch=spec.launch)
        run_dir = open_run_dir(Path(out) if out is not None else None, spec.name, resume)
        previous = None
        if resume:
            resumed_manifest(run_dir, spec)  # there, and the same experiment: checked before anything is made
        make_run_dir(run_dir)
        stack.enter_context(folder_lock(run_dir.root))  # one writer at a time (a second --resume is refused)
        if resume:
            previous = resumed_manifest(run_dir, spec)  # read again, now that no one else writes it
            settle_abandoned(run_dir)  # an attempt cut short by kill -9 of colobench says so where it is kept
        elif any(p.name != LOCK_NAME for p in run_dir.root.iterdir()):
            raise ColobenchError(f"--out {run_dir}: folder exists and is not empty; choose another or add --resume")
        try:
            build_presets(plan, progress)
        except BaseException:
            remove_if_empty(run_dir)  # nothing was run: leave nothing behind
            raise
        prompt_files = write_prompts(run_dir, prompt_sets)
        manifest = ManifestFile(run_dir, new_manifest(spec, plan, command, previous))
        manifest.write()
        interrupted, problems = run_groups(spec, plan, run_dir, manifest, prompt_files, launcher, progress, resume,
                                           source)
        summary = summarize(run_dir.root, problems=problems)
        return ExperimentResult(run_dir.root, summary, interrupted)


def summarize(run_dir: Path | str, write: bool = True, problems: list[str] | None = None,
              log_rules: list[Any] | None = None) -> Summary:
    """Recompute the summary from a run directory's files (and write `summary.json`); `problems`
    are added to the summary's (what the run directory could not record: a full disk)."""
    run_dir = RunDir(run_dir)
    if not run_dir.is_run_dir():
        raise ColobenchError(f"{run_dir}: not a colobench run directory (no manifest.json)")
    settled = settle_abandoned(run_dir)
    try:
        summary = summarize_run_dir(run_dir, settled, log_rules).model_copy(update={"run_dir": str(run_dir)})
        summary = with_predictions(summary, host_cores=host_cores())
        if problems:
            summary = summary.model_copy(update={"problems": [*summary.problems, *problems]})
    except CorruptFile as exc:
        raise ColobenchError(str(exc)) from None
    except (KeyError, ValueError, TypeError) as exc:
        raise ColobenchError(f"{run_dir}: cannot read run directory ({exc.__class__.__name__}: {exc})") from None
    if write:
        try:
            summary = summary.model_copy(update={"profiles": write_profiles(run_dir, summary)})
            write_json_atomic(run_dir.summary, summary.to_json())
        except OSError as exc:  # a full disk: the summary is still printed, and says why it is not on disk
            summary = summary.model_copy(update={"problems": [
                *summary.problems, f"{run_dir.summary}: not written ({os_reason(exc)})"]})
    return summary


def host_cores() -> int:
    """The cores this process may use (a profile's host CPU capacity where its run did not say)."""
    return len(allowed_cores())


def write_profiles(run_dir: RunDir, summary: Summary) -> dict[str, str]:
    """Every solo phase's profile (`analysis.instance_profile`) into the run's `profiles/`; what
    was written, "[point/]instance" -> its path relative to the run directory."""
    written = {}
    for (point, name), profile in solo_profiles(summary, str(run_dir.root), host_cores()).items():
        path = run_dir.instance_profile(point, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, profile.to_json())
        written[f"{point}/{name}" if point else name] = str(path.relative_to(run_dir.root))
    return written


def write_html_report(run_dir: Path | str, summary: Summary | None = None) -> Path:
    """Write `report.html` into the run directory."""
    run_dir = RunDir(run_dir)
    summary = summary if summary is not None else load_summary(run_dir.root)
    try:
        manifest = read_manifest(run_dir.manifest)
    except CorruptFile as exc:
        raise ColobenchError(str(exc)) from None
    return write_report(run_dir, summary, manifest)


def load_summary(path: Path | str, log_rules: list[Any] | None = None) -> Summary:
    """The summary of a run directory, recomputed from its records; or a `summary.json` file on
    its own (any schema colobench wrote, converted to today's)."""
    path = Path(path)
    if path.is_file():
        try:
            return load_summary_data(json.loads(path.read_text(encoding="utf-8")), str(path))
        except (ValueError, ValidationError) as exc:
            raise ColobenchError(f"{path}: not a colobench summary ({str(exc).splitlines()[0]})") from None
    return summarize(path, write=False, log_rules=log_rules)


@contextlib.contextmanager
def managed_servers(spec: ExperimentSpec, run_dir: RunDir, source: str = "experiment",
                    note: Any = None) -> Iterator[ExperimentSpec]:
    """The experiment's managed servers started once for many runs (each `run_experiment` of a
    capacity search reuses them: a vLLM start costs a minute, a search has dozens of probes);
    yields the experiment with each instance pointed at its server. Stopped on every way out."""
    if any(i.server for i in spec.instances):
        check_servers(spec, prepare(spec, source), source)
    with servers_for(spec, run_dir, source, note or (lambda text: None)) as running:
        yield running


def ray_cluster(address: str) -> list[dict[str, Any]]:
    """The nodes of the Ray cluster at `address` and what each offers (CPUs, GPUs, NPUs, labels)."""
    with ray_launcher.ray_session(LaunchSpec(kind="ray", address=address), where="--ray-address") as ray:
        return ray_launcher.cluster_nodes(ray)


def list_devices(probe: bool = False) -> dict[str, Any]:
    """The environment check: host, versions, every visible device with its memory and peak
    figures, and (with `probe`) measured copy bandwidth and matmul rate against those peaks, kept
    in the cache (a CPU's measured copy bandwidth becomes its peak in later runs)."""
    return inventory(probe, default_cache_dir())


def profile(spec: ExperimentSpec, out: Path, source: str = "command line") -> dict[str, Any]:
    """Run `colobench profile` for the spec's first instance (see `colobench.profiling`)."""
    register_spec(spec)
    check_dir_target(Path(out), "--out")
    plan = prepare(spec, source)
    check_dir_target(Path(plan.cache_dir), "--cache-dir")
    build_presets(plan, Progress())
    folder = RunDir(out)
    make_run_dir(folder)
    return run_profile(plan, folder)


def validity_table(summary: Summary) -> list[dict[str, Any]]:
    """Every instance-phase's validity verdict, with its point."""
    return [{"point": p.id, "phase": phase, "instance": name,
             "validity": mt.validity.model_dump() if mt.validity else None}
            for p in summary.points for phase, name, mt in p.rows()]


def schema() -> dict[str, Any]:
    """The JSON Schema of `summary.json`, generated from the summary's models."""
    return Summary.model_json_schema(by_alias=True)


def dump_json_line(data: Any) -> str:
    """One line of JSON (a summary, or any plain data)."""
    if isinstance(data, Summary):
        data = data.to_json()
    return scrub(json.dumps(data, separators=(",", ":"), default=str))
