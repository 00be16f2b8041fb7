"""A run directory's life: made (or reopened with `--resume`), its manifest written before
anything runs and rewritten as facts arrive, unfinished attempts moved aside, runs whose
colobench process died settled as abandoned.

Every JSON file goes through `write_json_atomic` (a temporary file and a rename, every string
scrubbed of secrets), so a reader never sees half a file and a full disk leaves the last good
one. `--resume` never deletes: an unfinished run's files move to `attempts/<k>/` inside it, are
listed by the summary and never counted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
from pydantic import BaseModel, ValidationError

from colobench import __version__
from colobench.clock import wall_unix_s
from colobench.devices.inventory import environment, measured_peaks
from colobench.devices.npu import VISIBLE_ENV, npu_placement
from colobench.errors import ColobenchError, make_dir
from colobench.plan import ExperimentPlan, RunGroup
from colobench.records import CorruptFile
from colobench.rundir.models import Manifest, RunState, ServerEntry, read_manifest, read_run_state
from colobench.rundir.paths import ATTEMPTS, RunDir, RunFolder
from colobench.secrets import scrub_data
from colobench.specs import ExperimentSpec, redact

DEFAULT_RUNS_DIR = Path("colobench-runs")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON (plain data or a model) through a temporary file and a rename, every string
    scrubbed of secrets; on failure (a full disk) the temporary file is removed."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json", by_alias=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps(scrub_data(data), indent=2, default=str))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def plain(data: Any) -> Any:
    """A spec or plan dump as it is stored: JSON types only, secrets redacted."""
    return json.loads(json.dumps(redact(data), default=str))


def process_start() -> float | None:
    """This process's start time (with its pid: who wrote a run.json)."""
    try:
        return psutil.Process().create_time()
    except psutil.Error:
        return None


def process_gone(pid: Any, started_unix_s: Any) -> bool:
    """Whether the process that wrote a run.json is gone (a reused pid is another process: its
    start time differs)."""
    if not isinstance(pid, int):
        return False
    try:
        proc = psutil.Process(pid)
        return started_unix_s is not None and abs(proc.create_time() - float(started_unix_s)) > 1.0
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


# ---- opening ----------------------------------------------------------------------------------

def open_run_dir(out: Path | None, name: str, resume: bool) -> RunDir:
    """The run directory to write: `out`, or a fresh `colobench-runs/<time>-<name>`. A new one must
    be empty; `--resume` needs `out`."""
    if resume and out is None:
        raise ColobenchError("--resume needs --out: the run directory to resume")
    run_dir = RunDir(out) if out is not None else RunDir.new(DEFAULT_RUNS_DIR, name)
    if not resume and run_dir.root.exists() and any(run_dir.root.iterdir()):
        raise ColobenchError(f"--out {run_dir}: folder exists and is not empty; choose another or add --resume")
    return run_dir


def resumed_manifest(run_dir: RunDir, spec: ExperimentSpec) -> Manifest:
    """The manifest of the run `--resume` continues: it must exist and hold the same experiment."""
    if not run_dir.manifest.is_file():
        raise ColobenchError(f"--resume {run_dir}: no manifest.json there; nothing to resume")
    try:
        manifest = read_manifest(run_dir.manifest)
    except CorruptFile as exc:
        raise ColobenchError(str(exc)) from None
    before, now = plain(manifest.experiment), plain(spec.model_dump())
    if before != now:
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        raise ColobenchError(f"--resume {run_dir}: the experiment differs from the one that run started "
                             f"(changed: {', '.join(changed)}); use another --out")
    return manifest


def spec_from_run_dir(path: Path | str) -> ExperimentSpec:
    """The experiment a run directory was started with (for `--resume` without a spec)."""
    run_dir = RunDir(path)
    if not run_dir.manifest.is_file():
        raise ColobenchError(f"--resume {run_dir}: no manifest.json there; nothing to resume")
    try:
        return ExperimentSpec.model_validate(read_manifest(run_dir.manifest).experiment)
    except CorruptFile as exc:
        raise ColobenchError(str(exc)) from None
    except (TypeError, ValidationError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise ColobenchError(f"{run_dir.manifest}: not the manifest of a run colobench can resume "
                             f"({reason})") from None


LOCK_NAME = ".colobench.lock"  # who writes the folder now: its pid (flock: released by the kernel when it dies)


@contextlib.contextmanager
def folder_lock(folder: Path, flag: str = "--out") -> Iterator[None]:
    """Hold the folder exclusively while this process writes it: a second `colobench run --resume`
    (or anything else) on the same folder is refused with the holder's pid. The lock is the
    kernel's (`flock`), so a holder killed with -9 leaves no stale lock: its lock file is taken
    over as it is. The file is removed on the way out (checked by inode, so a process that opened
    the file just before cannot take a lock on a removed file while another takes the new one)."""
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise ColobenchError(f"{flag} {folder}: another colobench (pid {holder}) is writing this folder; wait "
                                 "for it to end, or choose another") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file between our open and our lock: try again
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def make_run_dir(run_dir: RunDir) -> bool:
    """Create the folder; True when this call made it (nothing to keep if the run never starts)."""
    created = not run_dir.root.exists()
    make_dir(run_dir.root, "--out")
    return created


def remove_if_empty(run_dir: RunDir) -> None:
    """Leave nothing behind when nothing was run (a preset build failed, Ctrl-C before the start)."""
    if run_dir.root.is_dir() and not any(p.name != LOCK_NAME for p in run_dir.root.iterdir()):
        with contextlib.suppress(OSError):
            (run_dir.root / LOCK_NAME).unlink()
        run_dir.root.rmdir()


def write_prompts(run_dir: RunDir, prompt_sets: dict[str, list[list[int]]]) -> dict[str, str]:
    """Each tokenized prompt set as `prompts/<key>.json`; returns the absolute file of each key."""
    files = {}
    for key, ids in prompt_sets.items():
        path = run_dir.prompts(key)
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(ids))
        files[key] = str(path.resolve())
    return files


# ---- the manifest -------------------------------------------------------------------------------

def new_manifest(spec: ExperimentSpec, plan: ExperimentPlan, command: list[str] | None,
                 previous: Manifest | None = None) -> Manifest:
    """What is known before anything runs: the spec, the plan, the host, the NPU map. A resumed
    run keeps its creation time and the devices its first attempt saw."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    data: dict[str, Any] = {
        "colobench_version": __version__, "created_unix_s": wall_unix_s(), "created_utc": now,
        "command": command, "experiment": plain(spec.model_dump()), "plan": plain(plan.model_dump()),
        "environment": environment(),
        "measured_peaks": measured_peaks(Path(plan.cache_dir)),  # for devices without a datasheet peak
        # which NPU id and chip each npu:k is (what telemetry reads), None without Ascend instances
        "npu_map": npu_placement([(i.name, i.device, i.env.get(VISIBLE_ENV) or os.environ.get(VISIBLE_ENV))
                                  for i in plan.instances]),
    }
    if previous is not None:
        data.update(created_unix_s=previous.created_unix_s, created_utc=previous.created_utc,
                    resumed_utc=[*previous.resumed_utc, now], devices=previous.devices)
    return Manifest.model_validate(data)


class ManifestFile:
    """The manifest of a run directory this process writes, rewritten on every change."""

    def __init__(self, run_dir: RunDir, manifest: Manifest):
        self.run_dir, self.manifest = run_dir, manifest

    def write(self) -> None:
        write_json_atomic(self.run_dir.manifest, self.manifest)

    def update(self, **changes: Any) -> None:
        """Replace top-level fields (validated) and write."""
        self.manifest = Manifest.model_validate({**self.manifest.to_json(), **changes})
        self.write()

    def servers(self, entries: list[dict[str, Any]]) -> None:
        self.update(servers=[ServerEntry.model_validate(e).model_dump(mode="json") for e in entries])

    def group_done(self, states: dict[str, RunState]) -> None:
        """What a group's runs learned: the devices as the workers named them, each run's telemetry
        status, and where each Ray actor ran (with its clock offset and the estimate's error)."""
        devices, telemetry, ray = dict(self.manifest.devices), dict(self.manifest.telemetry), dict(self.manifest.ray)
        for run_id, state in states.items():
            for worker in state.workers.values():
                dev = worker.info.device if worker.info is not None else None
                if isinstance(dev, dict) and dev.get("device"):
                    devices.setdefault(dev["device"], dev)
            if state.telemetry:
                telemetry[run_id] = state.telemetry
            if state.ray:
                ray[run_id] = state.ray
        self.update(devices=devices, telemetry=telemetry, ray=ray)


# ---- runs: finished, kept aside, abandoned --------------------------------------------------------

def run_finished(folder: RunFolder) -> bool:
    """Whether a run completed (what `--resume` skips)."""
    if not folder.state.is_file():
        return False
    try:
        return read_run_state(folder.state).status == "completed"
    except CorruptFile:
        return False


def keep_attempt(folder: RunFolder) -> Path | None:
    """Before a run is redone (`--resume`), move what its unfinished attempt left (records, logs,
    run.json, telemetry) into `attempts/<k>/` inside it: never deleted, never counted (the
    summary lists it). Returns the folder, or None when there was nothing."""
    if not folder.root.is_dir():
        return None
    left = [p for p in folder.root.iterdir() if p.name != ATTEMPTS]
    if not left:
        return None
    dest = folder.next_attempt().root
    dest.mkdir(parents=True)
    for p in left:
        shutil.move(str(p), str(dest / p.name))
    return dest


def unfinished_runs(run_dir: RunDir, group: RunGroup, resume: bool) -> set[str]:
    """The runs of a group still to run: all of them, or with `--resume` those not completed."""
    return {r.run_id for r in group.runs if not (resume and run_finished(run_dir.run(r.run_id)))}


def settle_abandoned(run_dir: RunDir) -> dict[str, RunState]:
    """A run.json still saying "starting" or "running" whose colobench process is gone (kill -9 of
    colobench itself, a disk that filled before it could say so) is rewritten as "abandoned", with
    the reason: a run directory never claims to be running for a process that is not there.
    Returns the settled states by run id (what the summary uses when the file cannot be rewritten)."""
    settled: dict[str, RunState] = {}
    for path in run_dir.run_states():
        try:
            state = read_run_state(path)
        except (OSError, CorruptFile):
            continue  # the summary names a corrupt file
        if state.status not in ("starting", "running") or not process_gone(state.colobench_pid,
                                                                            state.colobench_started_unix_s):
            continue
        workers = {k: w if w.status in ("completed", "died", "failed") else
                   w.model_copy(update={"status": "abandoned", "reason": "its colobench process is gone"})
                   for k, w in state.workers.items()}
        state = state.model_copy(update={
            "status": "abandoned", "workers": workers,
            "stop_reason": f"the colobench process (pid {state.colobench_pid}) that ran it is gone; its workers "
                           "stopped with it"})
        settled[state.run_id] = state
        try:
            write_json_atomic(path, state)
        except OSError:
            pass  # a read-only copy or a full disk: the summary still says so, from `settled`
    return settled
