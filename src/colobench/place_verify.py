"""`colobench place --verify`: the chosen placement started and measured, against what was predicted.

Every service is rebuilt from the run its profile came from (its instance, its managed server:
`profile.run_dir`'s manifest), then placed as the placement says:

- a managed server is started on its device (`accelerator`: cuda:N / npu:N / cpu), its whole
  process tree pinned to the cores the placement gave it (the device's cores split by host-CPU
  demand, disjoint when there are enough, shared otherwise), its memory fraction passed as the
  flag the service names (`memory_arg: gpu_memory_utilization` for vLLM);
- an in-process instance gets the same cores (`cpu_affinity`), device and `memory_fraction`;
- an endpoint the user started (`base_url`) is only driven (said in the notes).

All services run at once, as in production (every device busy together; on one host they share
its CPU), each at its rate (the profile's arrival process), for `verify.duration_s` x
`verify.repetitions`. One ordinary experiment does it (`DIR/run`), so the run directory, its
summary and report are the usual ones.

Per service: measured attainment (its Wilson interval's verdict at the target: meets / misses /
inconclusive) beside the predicted one, and the measured slowdowns beside the predicted. A service
predicted to meet that measurably misses is named. The measurement is fed back: each profile
gains an `observed` co-location (`analysis.instance_profile.Observation`) and is written to
`DIR/profiles/`, and `DIR/placement.yaml` is the placement file pointing at them, so `colobench
place DIR/placement.yaml` plans again with what was measured.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from colobench import api
from colobench.analysis.capacity import attainment_verdict
from colobench.analysis.instance_profile import InstanceProfile
from colobench.analysis.placement import (DeviceSpec, Placement, PlacementResult, PlacementVerification, Service,
                                          VerifiedService)
from colobench.analysis.predict import LATENCY_KEYS, observation
from colobench.api import Progress
from colobench.errors import ColobenchError, make_dir
from colobench.place import Problem
from colobench.rundir import RunDir, spec_from_run_dir, write_json_atomic
from colobench.specs import experiment_from_dict
from colobench.sweep import expand

KEYS = LATENCY_KEYS
FIGURES = {"ttft_p50": "median_ttft_ms", "ttft_p99": "p99_ttft_ms", "tpot_p50": "median_tpot_ms",
           "tpot_p99": "p99_tpot_ms"}


def _core_split(device: DeviceSpec, shares: list[float | None]) -> list[list[int] | None]:
    """The device's cores to its services: disjoint blocks by share when there are at least as many
    cores as services (each at least one), all of them shared otherwise."""
    ids = device.core_ids
    if not ids:
        return [None] * len(shares)
    if len(ids) < len(shares):
        return [list(ids)] * len(shares)
    weights = [s or 1.0 for s in shares]
    raw = [len(ids) * w / sum(weights) for w in weights]
    counts = [max(1, math.floor(r)) for r in raw]
    while sum(counts) > len(ids):
        counts[counts.index(max(counts))] -= 1
    order = sorted(range(len(raw)), key=lambda k: raw[k] - math.floor(raw[k]), reverse=True)
    for k in order[:len(ids) - sum(counts)]:
        counts[k] += 1
    out, start = [], 0
    for c in counts:
        out.append(list(ids[start:start + c]))
        start += c
    return out


def _source(profile: InstanceProfile, field: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The instance (plain data, its workload merged) and its managed server (or None) of the run
    a profile came from."""
    if not profile.run_dir or not RunDir(profile.run_dir).manifest.is_file():
        raise ColobenchError(f"{field}: the profile's run ({profile.run_dir or 'not recorded'}) is gone; --verify "
                             "starts a service the way that run did")
    spec = spec_from_run_dir(profile.run_dir)
    if profile.point:
        spec = next((p.spec for p in expand(spec) if p.id == profile.point and p.spec is not None), spec)
    names = spec.instance_names()
    if profile.instance not in names:
        raise ColobenchError(f"{field}: {profile.run_dir} has no instance {profile.instance!r}")
    k = names.index(profile.instance)
    data = spec.model_dump(mode="json", exclude_none=True)
    inst = data["instances"][k]
    inst["workload"] = spec.workload_for(k).model_dump(mode="json", exclude_none=True)
    server = next((s for s in data.get("servers", []) if s["name"] == inst.get("server")), None)
    return inst, server


def experiment_of(path: Path, placement: Placement, services: dict[str, Service], entries: dict[str, Any],
                  devices: dict[str, DeviceSpec], duration_s: float, repetitions: int
                  ) -> tuple[dict[str, Any], list[VerifiedService], list[str]]:
    """The one experiment that runs the placement, the rows to fill, and notes."""
    instances, servers, rows, notes = [], [], [], []
    for group in placement.groups:
        device = devices[group.device]
        cores = _core_split(device, [s.cores for s in group.services])
        for s, core_ids in zip(group.services, cores):
            svc, entry = services[s.service], entries[s.service]
            field = f"{path}: services[{entry['index']}]"
            inst, server = _source(svc.profile, field)
            inst.update(name=s.service, slo=svc.slo or svc.profile.slo)
            inst["workload"].update(rate=svc.rate, duration_s=duration_s)
            for gone in ("requests", "concurrency", "load"):
                inst["workload"].pop(gone, None)
            if "arrival" not in inst["workload"]:
                inst["workload"]["arrival"] = "poisson"
            fraction = round(s.memory_fraction, 3)
            if server is not None:
                server = {**server, "name": f"{s.service}-server"}
                server.pop("port", None)
                if core_ids:
                    server["cpu_affinity"] = core_ids
                if device.accelerator:
                    server["device"] = device.accelerator
                memory_arg = entry.get("memory_arg")
                if memory_arg:
                    server["args"] = {**server.get("args", {}), memory_arg: fraction}
                applied = f"--{memory_arg.replace('_', '-')} {fraction}" if memory_arg else \
                    "not applied: the service names no memory_arg (its server's memory flag)"
                inst["server"] = server["name"]
                servers.append(server)
            elif inst.get("backend") != "openai":
                if core_ids:
                    inst["cpu_affinity"] = core_ids
                if device.accelerator:
                    inst["device"] = device.accelerator
                applied = "memory_fraction" if device.accelerator not in (None, "cpu") else \
                    "not applied: a CPU has no memory split"
                if applied == "memory_fraction":
                    inst["memory_fraction"] = fraction
            else:
                applied = "not applied: served at its base_url, not started by colobench"
                notes.append(f"{s.service}: served at {inst.get('base_url')}, which colobench did not start: not "
                             "pinned, not split, only driven")
            instances.append(inst)
            rows.append(VerifiedService(service=s.service, device=group.device, cores=core_ids,
                                        memory_fraction=s.memory_fraction, memory_applied=applied,
                                        predicted_attainment=s.attainment, predicted_verdict=s.verdict))
    together = len(instances) > 1
    data = {"name": "placement-verify", "repetitions": repetitions, "instances": instances, "servers": servers,
            "solo_baselines": not together, "colocated": together}
    return data, rows, notes


def verify(problem: Problem, result: PlacementResult, out: Path, progress: Progress | None = None,
           duration_s: float | None = None) -> PlacementVerification:
    path, spec = problem.path, problem.spec
    placement = result.best
    if not placement.groups:
        raise ColobenchError(f"{path}: the placement puts no service on a device; nothing to verify")
    if out.exists() and any(out.iterdir()):
        raise ColobenchError(f"--out {out}: folder exists and is not empty; choose another")
    services = {s.name: s for s in problem.services}
    entries = {e.name: {**e.model_dump(), "index": k} for k, e in enumerate(spec.services)}
    devices = {d.name: d for d in problem.devices}
    data, rows, notes = experiment_of(path, placement, services, entries, devices,
                                      duration_s or spec.verify.duration_s, spec.verify.repetitions)
    if placement.unplaced:
        notes.append(f"left out by the placement, not run: {', '.join(placement.unplaced)}")
    experiment = experiment_from_dict(data, f"{path} (--verify)")
    make_dir(out, "--out")
    run = api.run_experiment(experiment, out / "run", progress, source=f"{path} (--verify)")
    point = run.summary.point()
    phase = "colocated" if data["colocated"] else "solo"
    group_of = {s.service: [o.service for o in g.services] for g in placement.groups for s in g.services}
    planned = {s.service: s for g in placement.groups for s in g.services}
    fed: dict[str, InstanceProfile] = {}
    for i, row in enumerate(rows):
        svc = services[row.service]
        profile = svc.profile.model_copy(update={"instance": row.service, "slo": svc.slo or svc.profile.slo})
        partners = [n for n in group_of[row.service] if n != row.service]
        got: dict[str, Any] = {"predicted_slowdown": {k: planned[row.service].slowdown.get(k) for k in KEYS}}
        m = point.metrics(phase, row.service)
        if m is None:
            notes.append(f"{row.service}: no measurement (see {out / 'run'})")
            fed[row.service] = profile
            rows[i] = row.model_copy(update=got)
            continue
        if m.slo is not None and m.slo.requests:
            verdict = attainment_verdict(m.slo.good, m.slo.requests, spec.target)
            got.update(measured_good=m.slo.good, measured_requests=m.slo.requests, measured_attainment=m.slo.attainment,
                       measured_verdict={"pass": "meets", "fail": "misses"}.get(verdict, "inconclusive"))
        seen = observation(profile, partners, {n: services[n].rate for n in group_of[row.service]},
                           {k: getattr(m, FIGURES[k]) for k in KEYS}, got["predicted_slowdown"],
                           got.get("measured_attainment"), str(out / "run"))
        got["measured_slowdown"] = seen.measured
        got["false_meet"] = row.predicted_verdict == "meets" and got.get("measured_verdict") == "misses"
        rows[i] = row.model_copy(update=got)
        fed[row.service] = profile.model_copy(update={"observed": [*profile.observed, seen]})
    profiles_dir = out / "profiles"
    make_dir(profiles_dir, "--out")
    for name, profile in fed.items():
        write_json_atomic(profiles_dir / f"{name}.profile.json", profile.to_json())
    again = spec.model_dump(mode="json", exclude_none=True)
    for entry in again["services"]:
        if entry["name"] in fed:
            entry["profile"] = str((profiles_dir / f"{entry['name']}.profile.json").resolve())
            entry.pop("instance", None)
        else:
            entry["profile"] = str((path.parent / entry["profile"]).resolve()) \
                if not Path(entry["profile"]).is_absolute() else entry["profile"]
    placement_file = out / "placement.yaml"
    placement_file.write_text(yaml.safe_dump(again, sort_keys=False))
    verified = PlacementVerification(
        placement=placement, target=spec.target, run_dir=str(out / "run"), services=rows,
        missed=[r.service for r in rows if r.measured_verdict == "misses"], notes=notes,
        profiles_dir=str(profiles_dir), placement_file=str(placement_file))
    write_json_atomic(out / "verify.json", verified.model_dump(mode="json"))
    return verified
