"""What the CLI and notebooks call: plan, run, summarise. Never prints.

`run_experiment(spec)` validates and checks everything first (nothing is written if the spec
cannot work), builds any preset not yet cached, writes `manifest.json`, runs each planned run
with the local launcher, and writes `summary.json`. A run directory looks like:

    manifest.json                    spec, plan, environment (written before anything runs)
    runs/<run_id>/run.json           workers: pids, load facts, outcome (rewritten as it goes)
    runs/<run_id>/records/<i>.jsonl  one line per request, appended as each completes
    runs/<run_id>/logs/<i>.log       the worker's stdout and stderr
    runs/<run_id>/logs/server-<s>.log  a managed server's output (in the first run that uses it)
    summary.json                     derived by `summarize(run_dir)`, re-computable any time
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from colobench import __version__
from colobench.analysis.compat import load_summary_data
from colobench.analysis.model import Summary
from colobench.analysis.summary import summarize_run_dir
from colobench.backends.openai_admin import EndpointProblem, check_endpoint, scrape_metrics
from colobench.clock import monotonic_s, wall_unix_s
from colobench.devices import is_accelerator, resolve_auto
from colobench.devices.inventory import environment, inventory, measured_peaks
from colobench.devices.npu import VISIBLE_ENV, npu_placement
from colobench.errors import ColobenchError, SpecError, check_dir_target, make_dir, os_reason
from colobench.launch import ray_launcher
from colobench.launch.local import DiskFull, RunInterrupted, run_local, write_json_atomic
from colobench.launch.servers import ServerPool, check_servers
from colobench.launch.state import process_gone
from colobench.models.presets import default_cache_dir, ensure_preset, is_built
from colobench.plan import ExperimentPlan, RunGroup, RunSpec, check_plan, plan_experiment, prompt_jobs, prompt_key
from colobench.profiling import run_profile
from colobench.report.html import write_report
from colobench.records import CorruptFile, load_json
from colobench.secrets import register_endpoint, scrub
from colobench.specs import ExperimentSpec, InstanceSpec, LaunchSpec, WorkloadSpec, redact
from colobench.telemetry import TelemetryRecorder, make_samplers
from colobench.workload.prompts import prepare_prompt_sets

DEFAULT_RUNS_DIR = Path("colobench-runs")


@dataclass
class ExperimentResult:
    run_dir: Path
    summary: Summary
    interrupted: bool = False


class Progress:
    """Callbacks the API reports through; the CLI draws them, a notebook may ignore them."""

    def phase(self, text: str) -> None: ...

    def run_started(self, run_id: str, total_requests: int | None) -> None: ...

    def requests_done(self, run_id: str, instance: str, count: int) -> None: ...

    def worker_event(self, run_id: str, kind: str, instance: str, payload: Any) -> None: ...

    def run_finished(self, run_id: str, state: dict[str, Any]) -> None: ...


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
    check_plan(plan, source)
    return plan


def probe_endpoints(plan: ExperimentPlan, source: str = "experiment") -> None:
    """Check every endpoint before anything runs: its key's variable set, reachable, serving the
    model, taking the key. Registers each endpoint's secrets first, so no message shows them. An
    instance of a managed server is reached once its server is up (`probe_managed`)."""
    for k, inst in enumerate(plan.instances):
        if inst.endpoint is None:
            continue
        register_endpoint(inst.endpoint)
        key_env = inst.endpoint.api_key_env
        if key_env and not os.environ.get(key_env):
            raise SpecError(source, f"instances[{k}].api_key_env", f"environment variable {key_env} is not set (it "
                            "should hold the API key)", show_value=False)
        if inst.server is not None:
            continue
        try:
            check_endpoint(inst.endpoint, inst.model)
        except EndpointProblem as exc:
            field = f"instances[{k}]" + (f".{exc.field}" if exc.field else "")
            raise SpecError(source, field, exc.message, exc.value, show_value=exc.show_value) from None


def probe_managed(group: RunGroup, spec: ExperimentSpec, source: str = "experiment") -> None:
    """Once a group's managed servers answer: each of its instances reaches its server, which
    serves the model and takes the key (as `probe_endpoints` for the others)."""
    names = spec.instance_names()
    for inst in group.instances:
        if inst.server is None or inst.endpoint is None:
            continue
        where = f"instances[{names.index(inst.name)}]" if inst.name in names else f"instance {inst.name}"
        try:
            check_endpoint(inst.endpoint, inst.model)
        except EndpointProblem as exc:
            field = {"base_url": "server"}.get(exc.field, exc.field)
            raise SpecError(source, where + (f".{field}" if field else ""), exc.message, exc.value,
                            show_value=exc.show_value) from None


def _scrape(run: RunSpec, rdir: Path, when: str) -> None:
    """Keep each endpoint's Prometheus text as runs/<run>/metrics/<instance>.<when>.prom."""
    for inst in run.instances:
        if inst.endpoint is not None and inst.endpoint.metrics_url:
            (rdir / "metrics").mkdir(parents=True, exist_ok=True)
            (rdir / "metrics" / f"{inst.name}.{when}.prom").write_text(scrape_metrics(inst.endpoint.metrics_url))


def build_presets(plan: ExperimentPlan, progress: Progress) -> None:
    cache = Path(plan.cache_dir)
    for name in sorted({i.preset for i in plan.instances if i.preset}):
        if not is_built(name, cache):
            progress.phase(f"building preset {name} (random weights, once; cached in {cache})")
            t0 = monotonic_s()
            ensure_preset(name, cache)
            progress.phase(f"built preset {name} in {monotonic_s() - t0:.1f} s")


def new_run_dir(name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = DEFAULT_RUNS_DIR / f"{stamp}-{name}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path


ATTEMPTS = "attempts"


def keep_attempt(run_dir: Path) -> Path | None:
    """Before a run is redone (`--resume`), move what its unfinished attempt left (records, logs,
    run.json, telemetry) into `attempts/<k>/` inside it: never deleted, never counted (the
    summary lists it). Returns the folder, or None when there was nothing."""
    if not run_dir.is_dir():
        return None
    left = [p for p in run_dir.iterdir() if p.name != ATTEMPTS]
    if not left:
        return None
    taken = [int(p.name) for p in (run_dir / ATTEMPTS).glob("*") if p.name.isdigit()]
    dest = run_dir / ATTEMPTS / str(max(taken, default=0) + 1)
    dest.mkdir(parents=True)
    for p in left:
        shutil.move(str(p), str(dest / p.name))
    return dest


def _run_finished(run_dir: Path) -> bool:
    state_file = run_dir / "run.json"
    if not state_file.is_file():
        return False
    try:
        return json.loads(state_file.read_text()).get("status") == "completed"
    except ValueError:
        return False


def _check_resumable(run_dir: Path, spec: ExperimentSpec) -> dict[str, Any]:
    manifest_file = run_dir / "manifest.json"
    if not manifest_file.is_file():
        raise ColobenchError(f"--resume {run_dir}: no manifest.json there; nothing to resume")
    manifest = json.loads(manifest_file.read_text())
    before = json.loads(json.dumps(manifest.get("experiment"), default=str))
    now = json.loads(json.dumps(redact(spec.model_dump()), default=str))
    if before != now:
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        raise ColobenchError(f"--resume {run_dir}: the experiment differs from the one that run started "
                             f"(changed: {', '.join(changed)}); use another --out")
    return manifest


def spec_from_run_dir(run_dir: Path) -> ExperimentSpec:
    """The experiment a run directory was started with (for `--resume` without a spec)."""
    manifest_file = Path(run_dir) / "manifest.json"
    if not manifest_file.is_file():
        raise ColobenchError(f"--resume {run_dir}: no manifest.json there; nothing to resume")
    try:
        return ExperimentSpec.model_validate(load_json(manifest_file)["experiment"])
    except CorruptFile as exc:
        raise ColobenchError(str(exc)) from None
    except (KeyError, TypeError, ValidationError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise ColobenchError(f"{manifest_file}: not the manifest of a run colobench can resume ({reason})") from None


def run_experiment(spec: ExperimentSpec, out: Path | None = None, progress: Progress | None = None,
                   source: str = "experiment", command: list[str] | None = None,
                   resume: bool = False) -> ExperimentResult:
    """Run every planned run of `spec`; on Ctrl-C stop, summarise what completed, and return with
    `interrupted=True`. With `resume`, runs already completed in `out` are kept and skipped."""
    progress = progress or Progress()
    if out is not None:
        check_dir_target(Path(out), "--out")
    plan = prepare(spec, source)
    check_dir_target(Path(plan.cache_dir), "--cache-dir")
    check_servers(spec, plan, source)  # programs, devices, cores, fixed ports; secrets in commands registered
    prompt_sets = prepare_prompt_sets(prompt_jobs(plan), source)
    probe_endpoints(plan, source)
    with contextlib.ExitStack() as stack:
        launcher = run_local
        if spec.launch.kind == "ray":
            progress.phase(f"connecting to Ray ({spec.launch.address or 'a running cluster, else a private one'})")
            ray = stack.enter_context(ray_launcher.ray_session(spec.launch))
            ray_launcher.check_placeable(ray, plan, spec.launch, source)
            launcher = functools.partial(ray_launcher.run_ray, launch=spec.launch)
        return _run_plan(spec, plan, prompt_sets, launcher, out, progress, command, resume, source)


def _run_plan(spec: ExperimentSpec, plan: ExperimentPlan, prompt_sets: dict[str, list[list[int]]], launcher: Any,
              out: Path | None, progress: Progress, command: list[str] | None, resume: bool,
              source: str = "experiment") -> ExperimentResult:
    run_dir = Path(out) if out else new_run_dir(spec.name)
    previous = None
    if resume:
        if out is None:
            raise ColobenchError("--resume needs --out: the run directory to resume")
        previous = _check_resumable(run_dir, spec)
        settle_abandoned(run_dir)  # an attempt cut short by kill -9 of colobench says so where it is kept
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise ColobenchError(f"--out {run_dir}: folder exists and is not empty; choose another or add --resume")
    created = not run_dir.exists()
    make_dir(run_dir, "--out")
    try:
        build_presets(plan, progress)
    except BaseException:
        if created and not any(run_dir.iterdir()):
            run_dir.rmdir()  # nothing was run: leave nothing behind
        raise
    prompt_files = {}
    for key, ids in prompt_sets.items():
        (run_dir / "prompts").mkdir(exist_ok=True)
        (run_dir / "prompts" / f"{key}.json").write_text(json.dumps(ids))
        prompt_files[key] = str((run_dir / "prompts" / f"{key}.json").resolve())
    manifest = {
        "schema": "colobench.manifest/1",
        "colobench_version": __version__,
        "created_unix_s": wall_unix_s(),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
        "experiment": redact(spec.model_dump()),
        "plan": redact(plan.model_dump()),
        "environment": environment(),
        "devices": {},
        "telemetry": {},
        "measured_peaks": measured_peaks(Path(plan.cache_dir)),  # for devices without a datasheet peak
        # which NPU id and chip each npu:k is (what telemetry reads), None without Ascend instances
        "npu_map": npu_placement([(i.name, i.device, i.env.get(VISIBLE_ENV) or os.environ.get(VISIBLE_ENV))
                                  for i in plan.instances]),
    }
    if previous is not None:
        manifest["created_utc"] = previous.get("created_utc")
        manifest["resumed_utc"] = [*previous.get("resumed_utc", []), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())]
        manifest["devices"] = previous.get("devices", {})
    write_json_atomic(run_dir / "manifest.json", manifest)
    interrupted, disk_full = False, None
    servers = ServerPool(spec.servers, spec.keep_servers, run_dir, progress.phase)
    try:
        idle_power(plan, spec, run_dir, manifest, progress)
        runs_dir = run_dir / "runs"
        for group in plan.groups:
            unfinished = {r.run_id for r in group.runs if not (resume and _run_finished(runs_dir / r.run_id))}
            for run in group.runs:
                if run.run_id not in unfinished:
                    progress.phase(f"{run.run_id}: already completed, skipped")
            if not unfinished:
                continue
            group = group.only(unfinished)
            for run in group.runs:  # an unfinished run is redone; what it measured is kept apart, not counted
                kept = keep_attempt(runs_dir / run.run_id)
                if kept is not None:
                    progress.phase(f"{run.run_id}: the unfinished attempt's records moved to {kept} (kept, not "
                                   "counted)")
            # a group's shared telemetry file (interleaved runs) is appended to: analysis takes each
            # run's samples by its windows, so an earlier attempt's samples are never counted
            label = group_label(group)
            group = servers.up(group, label)  # its managed servers answering, their ports and pids bound in
            if any(i.server for i in group.instances):
                probe_managed(group, spec, source)
                manifest["servers"] = servers.manifest()
                write_json_atomic(run_dir / "manifest.json", manifest)
            counts = [_expected_requests(i.workload) for w in group.windows for i in group.run(w.run_id).instances]
            progress.run_started(label, None if None in counts else sum(counts))
            files = {i.name: prompt_files[key] for i in group.instances if (key := prompt_key(i)) is not None}
            for run in group.runs:
                _scrape(run, runs_dir / run.run_id, "before")
            states = launcher(group, runs_dir,
                              on_progress=lambda name, n, label=label: progress.requests_done(label, name, n),
                              on_event=lambda kind, name, payload, label=label: progress.worker_event(
                                  label, kind, name, payload),
                              prompts_files=files, telemetry=spec.telemetry)
            for run in group.runs:
                _scrape(run, runs_dir / run.run_id, "after")
            for run_id, state in states.items():
                for worker in state["workers"].values():  # the devices as the workers named them
                    dev = (worker.get("info") or {}).get("device")
                    if isinstance(dev, dict) and dev.get("device"):
                        manifest["devices"].setdefault(dev["device"], dev)
                if state.get("telemetry"):
                    manifest["telemetry"][run_id] = state["telemetry"]
                if state.get("ray"):  # where each actor ran and its clock offset, with the estimate's error
                    manifest.setdefault("ray", {})[run_id] = state["ray"]
            write_json_atomic(run_dir / "manifest.json", manifest)
            progress.run_finished(label, _group_status(states))
            if servers.starts:  # a server that died during the group is noted; stopped unless kept
                servers.down(group, label)
                manifest["servers"] = servers.manifest()
                write_json_atomic(run_dir / "manifest.json", manifest)
    except (RunInterrupted, KeyboardInterrupt):
        interrupted = True
    except DiskFull as exc:
        disk_full = str(exc)
    finally:  # every way out: no managed server is left running, and the manifest says how each ended
        servers.close()
        interrupted = interrupted or servers.interrupted
        if servers.starts:
            manifest["servers"] = servers.manifest()
            with contextlib.suppress(OSError):
                write_json_atomic(run_dir / "manifest.json", manifest)
    summary = summarize(run_dir, problems=[disk_full] if disk_full else [])
    return ExperimentResult(run_dir, summary, interrupted)


def idle_power(plan: ExperimentPlan, spec: ExperimentSpec, run_dir: Path, manifest: dict[str, Any],
               progress: Progress) -> None:
    """Sample the accelerators for `telemetry.idle_s` before anything runs: the idle power that
    energy per token should be read against."""
    devices = sorted({i.device for i in plan.instances if is_accelerator(i.device)})
    if not devices or not spec.telemetry.enabled or spec.telemetry.idle_s <= 0:
        return
    progress.phase(f"measuring idle power of {', '.join(devices)} for {spec.telemetry.idle_s:g} s")
    recorder = TelemetryRecorder(make_samplers(devices, dict, spec.telemetry)[1:], run_dir / "idle_telemetry.jsonl")
    manifest["telemetry"]["idle"] = recorder.start()
    time.sleep(spec.telemetry.idle_s)
    recorder.stop()


def group_label(group: RunGroup) -> str:
    """What progress lines call a group: its run, or its point's runs together."""
    if len(group.runs) == 1:
        return group.runs[0].run_id
    prefix = f"{group.point}/" if group.point else ""
    return prefix + "+".join(r.run_id.removeprefix(prefix) for r in group.runs)


def _group_status(states: dict[str, dict[str, Any]]) -> dict[str, Any]:
    statuses = [s["status"] for s in states.values()]
    status = statuses[0] if len(set(statuses)) == 1 else ", ".join(f"{k}: {s['status']}" for k, s in states.items())
    return {"status": status}


def _expected_requests(wl: Any) -> int | None:
    """Requests one repetition will send, for the progress bar (None when bounded by time)."""
    if wl.duration_s:
        return round(wl.rate * wl.duration_s) if wl.load_model == "open" else None
    if "max" in (wl.batch_size, wl.concurrency):
        return None  # the worker resolves "max" from device memory and may raise the count
    return wl.requests


def settle_abandoned(run_dir: Path) -> dict[str, dict[str, Any]]:
    """A run.json still saying "starting" or "running" whose colobench process is gone (kill -9 of
    colobench itself, a disk that filled before it could say so) is rewritten as "abandoned", with
    the reason: a run directory never claims to be running for a process that is not there.
    Returns the settled states by run id (what the summary uses when the file cannot be rewritten)."""
    settled: dict[str, dict[str, Any]] = {}
    for state_file in sorted((run_dir / "runs").glob("**/run.json")):
        if ATTEMPTS in state_file.parts:
            continue
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            continue  # summarize names a corrupt file
        if isinstance(state, dict) and state.get("status") in ("starting", "running") \
                and process_gone(state.get("colobench_pid"), state.get("colobench_started_unix_s")):
            state["status"] = "abandoned"
            state["stop_reason"] = (f"the colobench process (pid {state.get('colobench_pid')}) that ran it is gone; "
                                    "its workers stopped with it")
            for w in (state.get("workers") or {}).values():
                if w.get("status") not in ("completed", "died", "failed"):
                    w.update(status="abandoned", reason="its colobench process is gone")
            settled[state_file.parent.name] = state
            try:
                write_json_atomic(state_file, state)
            except OSError:
                pass  # a read-only copy or a full disk: the summary still says so, from `settled`
    return settled


def summarize(run_dir: Path | str, write: bool = True, problems: list[str] | None = None,
              log_rules: list[Any] | None = None) -> Summary:
    """Recompute the summary from a run directory's files (and write `summary.json`); `problems`
    are added to the summary's (what the run directory could not record: a full disk)."""
    run_dir = Path(run_dir)
    if not (run_dir / "manifest.json").is_file():
        raise ColobenchError(f"{run_dir}: not a colobench run directory (no manifest.json)")
    settled = settle_abandoned(run_dir)
    try:
        summary = summarize_run_dir(run_dir, settled, log_rules).model_copy(update={"run_dir": str(run_dir)})
        if problems:
            summary = summary.model_copy(update={"problems": [*summary.problems, *problems]})
    except CorruptFile as exc:
        raise ColobenchError(str(exc)) from None
    except (KeyError, ValueError, TypeError) as exc:
        raise ColobenchError(f"{run_dir}: cannot read run directory ({exc.__class__.__name__}: {exc})") from None
    if write:
        try:
            write_json_atomic(run_dir / "summary.json", summary.to_json())
        except OSError as exc:  # a full disk: the summary is still printed, and says why it is not on disk
            summary = summary.model_copy(update={"problems": [
                *summary.problems, f"{run_dir / 'summary.json'}: not written ({os_reason(exc)})"]})
    return summary


def write_html_report(run_dir: Path | str, summary: Summary | None = None) -> Path:
    """Write `report.html` into the run directory."""
    run_dir = Path(run_dir)
    summary = summary if summary is not None else load_summary(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
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
    check_dir_target(Path(out), "--out")
    plan = prepare(spec, source)
    check_dir_target(Path(plan.cache_dir), "--cache-dir")
    build_presets(plan, Progress())
    make_dir(Path(out), "--out")
    return run_profile(plan, Path(out))


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
