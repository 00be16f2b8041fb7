"""A plan run into a run directory, group of runs after group of runs.

For each group (`plan.RunGroup`: a point's interleaved runs, or one run phase-major): runs that
`--resume` finds completed are skipped, what an unfinished one left is moved to its
`attempts/`, the managed servers it needs are started (and their instances probed), the launcher
(local processes or Ray actors) runs its windows (scraping each endpoint's `/metrics` at every
window boundary: `launch.scrapes`), and the manifest records what the group learned (devices, telemetry status,
Ray placement, server starts). A signal or a full disk ends the loop; every managed server is
stopped on every way out.

Progress is reported through `Progress` callbacks: the CLI draws them, a notebook ignores them.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from colobench.backends.openai_admin import check_instances
from colobench.devices import is_accelerator
from colobench.launch.local import DiskFull, RunInterrupted, worker_parts
from colobench.launch.servers import ServerPool
from colobench.plan import ExperimentPlan, RunGroup, prompt_key
from colobench.rundir import ManifestFile, RunDir, RunState, keep_attempt, unfinished_runs
from colobench.specs import ExperimentSpec
from colobench.sweep import all_servers
from colobench.telemetry import TelemetryRecorder, make_samplers
from colobench.telemetry.host_reference import HostReference


class Progress:
    """Callbacks a run reports through; the CLI draws them, a notebook may ignore them."""

    def phase(self, text: str) -> None: ...

    def run_started(self, run_id: str, total_requests: int | None) -> None: ...

    def requests_done(self, run_id: str, instance: str, count: int) -> None: ...

    def worker_event(self, run_id: str, kind: str, instance: str, payload: Any) -> None: ...

    def run_finished(self, run_id: str, state: dict[str, Any]) -> None: ...


Launcher = Callable[..., dict[str, RunState]]


def group_label(group: RunGroup) -> str:
    """What progress lines call a group: its run, or its point's runs together."""
    if len(group.runs) == 1:
        return group.runs[0].run_id
    prefix = f"{group.point}/" if group.point else ""
    return prefix + "+".join(r.run_id.removeprefix(prefix) for r in group.runs)


def group_status(states: dict[str, RunState]) -> dict[str, Any]:
    statuses = [s.status for s in states.values()]
    status = statuses[0] if len(set(statuses)) == 1 else ", ".join(f"{k}: {s.status}" for k, s in states.items())
    return {"status": status}


def expected_requests(wl: Any) -> int | None:
    """Requests one repetition will send, for the progress bar (None when bounded by time)."""
    if wl.duration_s:
        return round(wl.rate * wl.duration_s) if wl.load_model == "open" else None
    if "max" in (wl.batch_size, wl.concurrency):
        return None  # the worker resolves "max" from device memory and may raise the count
    return wl.requests


def idle_power(plan: ExperimentPlan, spec: ExperimentSpec, run_dir: RunDir, manifest: ManifestFile,
               progress: Progress) -> None:
    """Sample the accelerators for `telemetry.idle_s` before anything runs: the idle power that
    energy per token should be read against."""
    devices = sorted({i.device for i in plan.instances if is_accelerator(i.device)})
    if not devices or not spec.telemetry.enabled or spec.telemetry.idle_s <= 0:
        return
    progress.phase(f"measuring idle power of {', '.join(devices)} for {spec.telemetry.idle_s:g} s")
    recorder = TelemetryRecorder(make_samplers(devices, dict, spec.telemetry)[1:], run_dir.idle_telemetry)
    status = recorder.start()
    time.sleep(spec.telemetry.idle_s)
    recorder.stop()
    manifest.update(telemetry={**manifest.manifest.telemetry, "idle": status})


def salted(group: RunGroup, salt: str) -> RunGroup:
    """The group with its instances' prompt salt set: a second run against the same server (an A/A
    pair, a rerun) sends prompts of its own, so the server's prefix cache cannot favour it; the
    same run directory (a resume) sends the same prompts again."""
    runs = [r.model_copy(update={"instances": [i.model_copy(update={"prompt_salt": salt}) for i in r.instances]})
            for r in group.runs]
    return group.model_copy(update={"runs": runs})


def host_reference(plan: ExperimentPlan, run_dir: RunDir) -> HostReference:
    """The run's host reference: as many threads as its largest group has workers; a reference
    of each accelerator device too."""
    threads = max((len(worker_parts(g)) for g in plan.groups), default=1)
    devices = sorted({i.device for i in plan.instances if is_accelerator(i.device)})
    pids = tuple(i.endpoint.server_pid for i in plan.instances if i.endpoint and i.endpoint.server_pid)
    return HostReference(run_dir.host_reference, threads, devices, pids)


def run_groups(spec: ExperimentSpec, plan: ExperimentPlan, run_dir: RunDir, manifest: ManifestFile,
               prompt_files: dict[str, str], launcher: Launcher, progress: Progress, resume: bool = False,
               source: str = "experiment") -> tuple[bool, list[str]]:
    """Run every group of the plan; returns (interrupted, problems the run directory could not
    record: a full disk)."""
    fields = {name: f"instances[{k}]" for k, name in enumerate(spec.instance_names())}
    servers = ServerPool(all_servers(spec), spec.keep_servers, run_dir, progress.phase)
    interrupted, problems = False, []
    reference = host_reference(plan, run_dir)
    try:
        progress.phase("timing the host reference")
        reference.sample("start", first=True)
        idle_power(plan, spec, run_dir, manifest, progress)
        for number, group in enumerate(plan.groups):
            unfinished = unfinished_runs(run_dir, group, resume)
            for run in group.runs:
                if run.run_id not in unfinished:
                    progress.phase(f"{run.run_id}: already completed, skipped")
            if not unfinished:
                continue
            group = group.only(unfinished)
            for run in group.runs:  # an unfinished run is redone; what it measured is kept apart, not counted
                kept = keep_attempt(run_dir.run(run.run_id))
                if kept is not None:
                    progress.phase(f"{run.run_id}: the unfinished attempt's records moved to {kept} (kept, not "
                                   "counted)")
            # a group's shared telemetry file (interleaved runs) is appended to: analysis takes each
            # run's samples by its windows, so an earlier attempt's samples are never counted
            label = group_label(group)
            if number and reference.count:
                reference.sample(f"before {label}")
            group = servers.up(group, label)  # its managed servers answering, their ports and pids bound in
            group = salted(group, run_dir.root.name)
            if any(i.server for i in group.instances):
                check_instances(group.instances, [fields.get(i.name, f"instance {i.name}") for i in group.instances],
                                source, managed=True)
                manifest.servers(servers.manifest())
            counts = [expected_requests(i.workload) for w in group.windows for i in group.run(w.run_id).instances]
            progress.run_started(label, None if None in counts else sum(counts))
            files = {i.key: prompt_files[key] for i in group.instances if (key := prompt_key(i)) is not None}
            states = launcher(group, run_dir,
                              on_progress=lambda name, n, label=label: progress.requests_done(label, name, n),
                              on_event=lambda kind, name, payload, label=label: progress.worker_event(
                                  label, kind, name, payload),
                              prompts_files=files, telemetry=spec.telemetry, reference=reference)
            manifest.group_done(states)
            progress.run_finished(label, group_status(states))
            if servers.starts:  # a server that died during the group is noted; stopped unless kept
                servers.down(group, label)
                manifest.servers(servers.manifest())
        reference.sample("end")
    except (RunInterrupted, KeyboardInterrupt):
        interrupted = True
    except DiskFull as exc:
        problems.append(str(exc))
    finally:  # every way out: no managed server is left running, and the manifest says how each ended
        servers.close()
        interrupted = interrupted or servers.interrupted
        if servers.starts:
            try:
                manifest.servers(servers.manifest())
            except OSError:
                pass
    return interrupted, problems
