"""`colobench characterize`: each instance's solo profile with its sensitivity curves.

1. The experiment's instances run alone (solo baselines only, no co-located run): `runs/solo/`,
   an ordinary run directory. Its summary gives each instance's profile
   (`analysis.instance_profile`).
2. For each pressure probe resource and level, the same solo runs again with a probe running
   beside them (`colobench pressure`, a separate process started before the run and stopped
   after it, by its pid): `runs/<resource>-<level>/`. The probe reports what it achieved; each
   instance's slowdown against step 1 at that achieved level is one point of its curve.
3. The profiles, curves included, are written to `profiles/` and the probes' outcomes to
   `characterize.json`.

The probe presses where the first instance runs (`--target` overrides): the host's CPU for an
in-process CPU model, the accelerator for one on a card, the server for an endpoint (its own
served model name, or `--probe-model`: a fake shared device serves a separate `probe` model so its
counters say what the probe did). An endpoint's `/metrics` is scraped (`metrics_url: auto` unless
set): where the server exports a device's own work counters, they are the instance's demand. A probe that cannot start (calibration failed, a bad target)
is recorded with its reason, and the rest carries on; so is a run that fails.
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from colobench import api
from colobench.analysis.instance_profile import InstanceProfile, sensitivity_level, solo_profiles
from pydantic import Field

from colobench.analysis.model import Model, Schemed
from colobench.capacity import load_capacity
from colobench.errors import ColobenchError, make_dir
from colobench.rundir import RunDir, write_json_atomic
from colobench.specs import ExperimentSpec, experiment_from_dict

CHARACTERIZE_SCHEMA = "colobench.characterize/1"
DEFAULT_LEVELS: dict[str, tuple[float, ...]] = {
    "host_cpu": (0.5, 1.0, 2.0), "device_time": (0.25, 0.5, 0.75), "compute": (0.15, 0.3, 0.5),
    "memory_bandwidth": (0.3, 0.6)}
READY_TIMEOUT_S = 120.0


class ProbeOutcome(Model):
    label: str
    resource: str
    nominal: float
    achieved: float | None = None
    job_s: float | None = None  # a prefill probe: device seconds per request
    streams: int | None = None  # a decode probe: streams it kept decoding
    source: str | None = None
    calibration: dict[str, Any] = {}
    run_dir: str | None = None
    error: str | None = None


class Characterization(Schemed):
    schema_version: str = Field(CHARACTERIZE_SCHEMA, alias="schema")
    experiment: str
    target: str
    probe_model: str | None = None
    solo_run: str | None = None
    probes: list[ProbeOutcome] = []
    profiles: dict[str, str] = {}  # "[point/]instance" -> profile file, relative to the folder


def default_target(spec: ExperimentSpec) -> tuple[str, tuple[str, ...], str | None]:
    """(target, resources, probe model) for the experiment's first instance."""
    plan = api.prepare(spec)
    first = plan.points[0].instances[0]
    if first.endpoint is not None:
        return first.endpoint.base_url, ("compute", "memory_bandwidth"), first.model
    if first.device == "cpu":
        return "host", ("host_cpu",), None
    return first.device, ("device_time", "compute", "memory_bandwidth"), None


def _solo_spec(spec: ExperimentSpec, label: str) -> ExperimentSpec:
    data = spec.model_dump(mode="json", exclude_none=True)
    data.update(name=f"{spec.name}-{label}", colocated=False, solo_baselines=True)
    for inst in data["instances"]:  # an endpoint's counters (a device's own work, where exported) are its demand
        if inst.get("backend") == "openai" and inst.get("metrics_url") is None and not inst.get("server"):
            inst["metrics_url"] = "auto"
    return experiment_from_dict(data, "characterize")


class _Probe:
    """A `colobench pressure` process: started, ready (its first line), stopped by its pid."""

    def __init__(self, target: str, resource: str, level: float, model: str | None, api_key_env: str | None,
                 log: Path):
        cmd = [sys.executable, "-m", "colobench", "pressure", "--target", target, "--resource", resource,
               "--level", repr(level)]
        if model:
            cmd += ["--model", model]
        if api_key_env:
            cmd += ["--api-key-env", api_key_env]
        self.log = log.open("w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True, start_new_session=True)

    def ready(self, timeout_s: float = READY_TIMEOUT_S) -> dict[str, Any]:
        assert self.proc.stdout is not None
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                break
            readable, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if readable:
                line = self.proc.stdout.readline()
                if line.strip():
                    return json.loads(line)
        self.stop()
        raise RuntimeError(f"the probe did not start (see {self.log.name})")

    def stop(self) -> dict[str, Any] | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self.log.close()
        lines = [ln for ln in (out or "").splitlines() if ln.strip()]
        try:
            return json.loads(lines[-1]) if lines else None
        except ValueError:
            return None


def characterize(spec: ExperimentSpec, out: Path, levels: dict[str, tuple[float, ...]] | None = None,
                 target: str | None = None, probe_model: str | None = None, progress: Any = None,
                 note: Callable[[str], None] = lambda _: None) -> tuple[Characterization, dict[tuple[str, str], InstanceProfile]]:
    """Profiles with sensitivity curves for every instance of `spec` into `out`."""
    if out.exists() and any(out.iterdir()):
        raise ColobenchError(f"--out {out}: folder exists and is not empty; choose another")
    auto_target, auto_resources, auto_model = default_target(spec)
    target = target or auto_target
    levels = levels if levels is not None else {r: DEFAULT_LEVELS[r] for r in auto_resources}
    probe_model = probe_model or (auto_model if target.startswith("http") else None)
    api_key_env = next((i.api_key_env for i in spec.instances if i.api_key_env), None)
    make_dir(out, "--out")
    folder = RunDir(out)
    result = Characterization(experiment=spec.name, target=target, probe_model=probe_model)

    def save() -> None:
        write_json_atomic(folder.characterization, result.to_json())

    note("solo runs (no probe)")
    base_dir = folder.pressure_run("solo")
    base = api.run_experiment(_solo_spec(spec, "solo"), base_dir.root, progress, source="characterize")
    profiles = solo_profiles(base.summary, str(base_dir.root), api.host_cores())
    if not profiles:
        raise ColobenchError(f"{base_dir}: no instance completed its solo run; nothing to characterise")
    result = result.model_copy(update={"solo_run": str(base_dir.root.relative_to(out))})
    curves: dict[tuple[str, str], dict[str, list[Any]]] = {k: {} for k in profiles}

    def write_all() -> None:
        """The profiles with the curves so far (after every level: Ctrl-C loses no finished level)."""
        for key, profile in profiles.items():
            path = folder.instance_profile(*key)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, profile.model_copy(update={"sensitivity": curves[key]}).to_json())
            result.profiles["/".join(k for k in key if k)] = str(path.relative_to(out))
        save()

    write_all()
    for resource, values in levels.items():
        for level in values:
            label = f"{resource}-{level:g}"
            run_dir = folder.pressure_run(label)
            outcome = ProbeOutcome(label=label, resource=resource, nominal=level,
                                   run_dir=str(run_dir.root.relative_to(out)))
            note(f"{label}: probe on {target}")
            run_dir.root.parent.mkdir(parents=True, exist_ok=True)
            probe = _Probe(target, resource, level, probe_model, api_key_env, folder.probe_log(label))
            pressed, error = None, None
            try:  # the probe is stopped whatever happens, Ctrl-C included (it runs in its own session)
                ready = probe.ready()
                if "error" in ready:
                    raise RuntimeError(ready["error"])
                outcome = outcome.model_copy(update={"calibration": ready.get("calibration") or {}})
                pressed = api.run_experiment(_solo_spec(spec, label), run_dir.root, progress, source="characterize")
            except (RuntimeError, ValueError, ColobenchError) as exc:
                error = str(exc)
            finally:
                final = probe.stop() or {}
            achieved = final.get("achieved")
            outcome = outcome.model_copy(update={"achieved": achieved, "source": final.get("source"),
                                                  "job_s": final.get("job_s"), "streams": final.get("streams"),
                                                  "error": error or final.get("error")})
            result.probes.append(outcome)
            save()
            if pressed is None:
                note(f"{label}: {error}")
                continue
            pressed_profiles = solo_profiles(pressed.summary, str(run_dir.root), api.host_cores())
            for key, solo in profiles.items():
                if key in pressed_profiles and achieved is not None:
                    curves[key].setdefault(resource, []).append(sensitivity_level(
                        solo, pressed_profiles[key], level, float(achieved), str(run_dir.root.relative_to(out)),
                        final.get("job_s"), final.get("streams")))
            write_all()
    return result, {key: profile.model_copy(update={"sensitivity": curves[key]}) for key, profile in profiles.items()}


def _read_profile(path: Path) -> InstanceProfile:
    try:
        return InstanceProfile.from_json(json.loads(path.read_text()))
    except OSError as exc:
        raise ColobenchError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ColobenchError(f"{path}: not a colobench profile ({first})") from None


def load_profiles(source: Path) -> list[InstanceProfile]:
    """The profiles a path holds: a `.profile.json` file, a characterisation folder or a run
    directory (its `profiles/`, or derived from its summary: every instance's solo phase)."""
    if source.is_file():
        return [_read_profile(source)]
    folder = RunDir(source)
    if not source.is_dir():
        raise ColobenchError(f"{source}: no such file or folder (give a .profile.json, a characterize folder or a "
                             "run directory)")
    files = folder.profile_files()
    if files:
        return [_read_profile(f) for f in files]
    if folder.is_run_dir():
        profiles = solo_profiles(api.load_summary(source), str(source), api.host_cores())
        if profiles:
            return list(profiles.values())
        raise ColobenchError(f"{source}: no instance ran alone in this run (a profile is a solo phase)")
    raise ColobenchError(f"{source}: holds no profiles (give a .profile.json, a characterize folder or a run "
                         "directory)")



def capacity_caps(folder: Path) -> tuple[dict[str, float], list[float]]:
    """What a `colobench capacity` folder measured: each instance's capacity alone, and the shares
    of the rays its region was searched along."""
    found = load_capacity(folder)
    caps = {name: solo.max_rate for name, solo in found.solo.items() if solo.max_rate}
    shares = [b.share for b in found.region.boundary] if found.region is not None else []
    return caps, shares
