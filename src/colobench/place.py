"""`colobench place`: a placement file read, its profiles loaded, the search run (`analysis.placement`).

    objective: min_devices            # or max_goodput
    target: 0.99                      # SLO attainment each service must keep
    devices: {count: 3, memory_gb: 80, cores: 16}   # identical devices; or a list of kinds:
    # devices: [{name: h100, count: 2, memory_gb: 80, cores: 16}, {name: l4, count: 1, memory_gb: 24, cores: 8}]
    services:
      - {name: chat, profile: runs/prof/profiles/chat.profile.json, rate: 6, slo: {tpot_ms: 40}, memory_gb: 20}
      - {name: code, profile: runs/prof-code, rate: 2}          # a characterisation or run directory

Every path and value is checked before the search, each error one line naming the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, NamedTuple

import yaml
from pydantic import Field, ValidationError

from colobench.analysis.placement import GB, DeviceSpec, Placer, PlacementResult, Service
from colobench.characterize import load_profiles
from colobench.errors import ColobenchError
from colobench.typed import Frozen


class ServiceEntry(Frozen):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    profile: str
    rate: float = Field(gt=0)
    slo: dict[str, float] | None = None
    memory_gb: float | None = Field(None, gt=0)
    instance: str | None = None  # which profile of a folder holding several (default: the one, or `name`)
    memory_arg: str | None = None  # --verify: the server flag its memory fraction goes to (vLLM: gpu_memory_utilization)


class DevicesEntry(Frozen):
    count: int = Field(ge=1, le=64)
    memory_gb: float = Field(gt=0)
    cores: int | None = Field(None, ge=1)
    name: str = Field("device", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    accelerator: Literal["cuda", "npu", "cpu"] | None = None  # --verify: cuda:N / npu:N each, or cpu


class VerifyEntry(Frozen):
    duration_s: float = Field(60.0, gt=0, le=24 * 3600)
    repetitions: int = Field(1, ge=1, le=20)


class PlacementSpec(Frozen):
    objective: Literal["min_devices", "max_goodput"] = "min_devices"
    target: float = Field(0.99, ge=0.5, le=1.0)
    devices: DevicesEntry | list[DevicesEntry]
    services: list[ServiceEntry] = Field(min_length=1)
    verify: VerifyEntry = VerifyEntry()


def load_placement(path: Path) -> PlacementSpec:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ColobenchError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ColobenchError(f"{path}: not YAML ({str(exc).splitlines()[0]})") from None
    try:
        spec = PlacementSpec.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ColobenchError(f"{path}: {where}: {first['msg']}") from None
    if isinstance(spec.devices, list):
        kinds = [d.name for d in spec.devices]
        if len(set(kinds)) != len(kinds):
            raise ColobenchError(f"{path}: devices: two kinds named {sorted(n for n in kinds if kinds.count(n) > 1)[0]}")
    names = [s.name for s in spec.services]
    if len(set(names)) != len(names):
        raise ColobenchError(f"{path}: services: two services named {sorted(n for n in names if names.count(n) > 1)[0]}")
    return spec


def device_specs(spec: PlacementSpec) -> list[DeviceSpec]:
    """Every device, named `<kind name><k>` (k counts within its kind). Devices with cores take
    consecutive host cores from 0, in the file's order; accelerators number from 0 per kind."""
    kinds = spec.devices if isinstance(spec.devices, list) else [spec.devices]
    out, next_core, index = [], 0, {"cuda": 0, "npu": 0}
    for d in kinds:
        for k in range(d.count):
            core_ids = list(range(next_core, next_core + d.cores)) if d.cores else None
            next_core += d.cores or 0
            acc = d.accelerator
            if acc in index:
                acc, index[d.accelerator] = f"{acc}:{index[acc]}", index[acc] + 1
            out.append(DeviceSpec(name=f"{d.name}{k}", memory_bytes=d.memory_gb * GB, cores=d.cores,
                                  core_ids=core_ids, accelerator=acc))
    return out


def load_services(path: Path, spec: PlacementSpec) -> list[Service]:
    services = []
    for k, entry in enumerate(spec.services):
        source = Path(entry.profile) if Path(entry.profile).is_absolute() else path.parent / entry.profile
        found = load_profiles(source)
        want = entry.instance or (entry.name if len(found) > 1 else None)
        chosen = [p for p in found if want is None or p.instance == want]
        if len(chosen) != 1:
            raise ColobenchError(f"{path}: services[{k}].profile: {source} holds {len(found)} profiles "
                                 f"({', '.join(p.instance for p in found)}); name one with `instance:`")
        services.append(Service(name=entry.name, profile=chosen[0], rate=entry.rate, slo=entry.slo,
                                memory_bytes=entry.memory_gb * GB if entry.memory_gb else None))
    return services


class Problem(NamedTuple):
    """A placement file read once: its spec, its services (profiles loaded), its devices."""
    path: Path
    spec: PlacementSpec
    services: list[Service]
    devices: list[DeviceSpec]


def load_problem(path: Path) -> Problem:
    spec = load_placement(path)
    return Problem(path, spec, load_services(path, spec), device_specs(spec))


def place(problem: Problem) -> PlacementResult:
    try:
        return Placer(problem.services, problem.devices, problem.spec.objective, problem.spec.target).run()
    except ValueError as exc:
        raise ColobenchError(f"{problem.path}: {exc}") from None
