"""Sweep axes: which fields take a list of values, what an axis is called, how a value shows in
a point id. Everything here is derived from the knob declarations (`axis=True`).

An axis is a path into the experiment and a list of values:

    workload.batch_size        every instance's workload (alias: batch_size, and every other
                               workload knob by its name)
    instances.*.dtype          every instance (alias: dtype, and every other instance knob)
    instances.1.workload.rate  one instance only
    instances.*.env.KEY        an environment variable (alias: env.KEY)
    scenario, repetitions      experiment-wide knobs
    servers.NAME.args.KEY      a managed server's flag (`--key-with-dashes VALUE`), e.g.
                               servers.vllm-a.args.gpu_memory_utilization: [0.3, 0.45, 0.6]
    servers.NAME.env.KEY       a managed server's environment variable

Lists written in place of a value in YAML (`batch_size: [1, 2, 4, 8]`, `env: {KEY: [0, 2]}`,
`prompts: [{file: a.jsonl}, {builtin: all}]`, a server's `args: {max_num_seqs: [8, 32]}`) become
axes too, except for fields whose own value is a list (`cpu_affinity: [0, 1]` pins to two cores):
sweep those under `sweep:`.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from colobench.specs.knobs import Knob
from colobench.specs.models import EXPERIMENT_KNOBS, INSTANCE_KNOBS, WORKLOAD_KNOBS

WORKLOAD_AXES = {k.name: k for k in WORKLOAD_KNOBS if k.meta.axis}
INSTANCE_AXES = {k.name: k for k in INSTANCE_KNOBS if k.meta.axis}
TOP_AXES = {k.name: k for k in EXPERIMENT_KNOBS if k.meta.axis}
QUALITY_AXES = tuple(k.name for k in INSTANCE_KNOBS if k.meta.quality)  # axes whose points compare outputs

_PATH = re.compile(r"^(workload\.(\w+)|instances\.(\*|\d+)\.(workload\.|env\.)?(\w+)|(\w+))$")
# a server name may hold dots, so a server axis is read by this pattern, never split on "."
SERVER_PATH = re.compile(r"^servers\.([A-Za-z0-9][\w.-]*)\.(args|env)\.(\w+)$")


def canonical_path(name: str) -> str:
    """Expand an alias (batch_size, dtype, env.TASK_QUEUE_ENABLE) to its full axis path."""
    if name.startswith("env."):
        return f"instances.*.{name}"
    if name in WORKLOAD_AXES:
        return f"workload.{name}"
    if name in INSTANCE_AXES:
        return f"instances.*.{name}"
    return name


def axis_knob(path: str) -> Knob | None:
    """The knob an axis path sweeps (None for an environment variable, whose knob is `env`)."""
    parts = path.split(".")
    if len(parts) > 1 and parts[-2] == "env":
        return INSTANCE_AXES["env"]
    leaf = parts[-1]
    if parts[0] == "workload" or (len(parts) > 2 and parts[2] == "workload"):
        return WORKLOAD_AXES.get(leaf)
    if parts[0] == "instances":
        return INSTANCE_AXES.get(leaf)
    return TOP_AXES.get(leaf)


def normalise_axes(axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Aliases expanded, paths and value lists checked. Raises ValueError naming the axis."""
    out: dict[str, list[Any]] = {}
    for name, values in axes.items():
        path = canonical_path(name)
        match = _PATH.match(path)
        known = SERVER_PATH.match(path) or (match and axis_knob(path) is not None
                                            and not (match.group(6) and path not in TOP_AXES))
        if not known:
            raise ValueError(f"unknown sweep axis {name!r}: use a workload field ({', '.join(WORKLOAD_AXES)}), an "
                             f"instance field ({', '.join(INSTANCE_AXES)}), env.KEY, {', '.join(TOP_AXES)}, or a "
                             "path like instances.0.workload.rate or servers.NAME.args.KEY")
        if not isinstance(values, list) or not values:
            raise ValueError(f"sweep axis {name!r} needs a non-empty list of values")
        if len({repr(v) for v in values}) != len(values):
            raise ValueError(f"sweep axis {name!r} repeats a value")
        if path in out:
            raise ValueError(f"sweep axis {path!r} given twice")
        out[path] = list(values)
    return out


def _lift(mapping: dict[str, Any], axes: dict[str, Knob], prefix: str, sweep: dict[str, Any]) -> None:
    for key, k in axes.items():
        if isinstance(mapping.get(key), list) and not k.meta.list_valued:
            sweep[f"{prefix}{key}"] = mapping.pop(key)
    env = mapping.get("env")
    if "env" in axes and isinstance(env, dict):
        for var, value in list(env.items()):
            if isinstance(value, list):
                sweep[f"{prefix}env.{var}"] = env.pop(var)


def lift_inline_axes(data: dict[str, Any]) -> dict[str, Any]:
    """Move lists written in place of scalar values into `sweep` (a new dict; input untouched)."""
    data = copy.deepcopy(data)
    sweep = dict(data.get("sweep") or {})
    if isinstance(data.get("workload"), dict):
        _lift(data["workload"], WORKLOAD_AXES, "workload.", sweep)
    for k, inst in enumerate(data.get("instances") or []):
        if not isinstance(inst, dict):
            continue
        _lift(inst, INSTANCE_AXES, f"instances.{k}.", sweep)
        if isinstance(inst.get("workload"), dict):
            _lift(inst["workload"], WORKLOAD_AXES, f"instances.{k}.workload.", sweep)
    _lift(data, TOP_AXES, "", sweep)
    for server in data.get("servers") or []:
        if not isinstance(server, dict) or not isinstance(server.get("name"), str):
            continue
        for part in ("args", "env"):
            values = server.get(part)
            if isinstance(values, dict):
                for key, value in list(values.items()):
                    if isinstance(value, list):
                        sweep[f"servers.{server['name']}.{part}.{key}"] = values.pop(key)
    if sweep:
        data["sweep"] = sweep
    return data


def apply_axis(data: dict[str, Any], path: str, value: Any) -> None:
    """Set one axis value in an experiment's plain data (in place)."""
    server = SERVER_PATH.match(path)
    if server:
        name, part, key = server.groups()
        found = [s for s in data.get("servers") or [] if isinstance(s, dict) and s.get("name") == name]
        if not found:
            raise ValueError(f"sweep axis {path!r}: no server named {name!r} under servers:")
        found[0][part] = {**(found[0].get(part) or {}), key: value}
        return
    parts = path.split(".")
    if parts[0] == "workload":
        data.setdefault("workload", {})[parts[1]] = value
    elif parts[0] == "instances":
        instances = data["instances"]
        index = parts[1]
        if index != "*" and int(index) >= len(instances):
            raise ValueError(f"sweep axis {path!r}: there are only {len(instances)} instances (0..{len(instances) - 1})")
        for inst in instances if index == "*" else [instances[int(index)]]:
            if parts[2] in ("workload", "env"):
                inst[parts[2]] = {**(inst.get(parts[2]) or {}), parts[3]: value}
            else:
                inst[parts[2]] = value
    else:
        data[parts[0]] = value


def axis_label(path: str) -> str:
    """The readable name of an axis in summaries: batch_size, dtype, env.X, batch_size[1],
    vllm-a.gpu_memory_utilization, vllm-a.env.X."""
    server = SERVER_PATH.match(path)
    if server:
        name, part, key = server.groups()
        return f"{name}.{key}" if part == "args" else f"{name}.env.{key}"
    parts = path.split(".")
    label = f"env.{parts[-1]}" if len(parts) > 1 and parts[-2] == "env" else parts[-1]
    if parts[0] == "instances" and parts[1] != "*":
        return f"{label}[{parts[1]}]"
    return label


def quality_reference(sweep: dict[str, list[Any]]) -> dict[str, Any]:
    """The first value of each quality axis of a sweep (dtype, quantization, graph, ...), by its
    label: the point every variant's outputs are compared with."""
    return {axis_label(p): values[0] for p, values in sweep.items()
            if p.split(".")[-1] in QUALITY_AXES and not SERVER_PATH.match(p)}


def _id_safe(value: Any) -> str:
    """A value as it may appear in a point id (a folder name)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "", str(value))


def id_part(path: str, value: Any) -> str:
    """One axis value in a point id: `b8`, `bf16`, `int8`, `i1rate4`, `task_queue_enable2`,
    `gpu_memory_utilization0.3` (a server's flag)."""
    if SERVER_PATH.match(path):
        return f"{path.split('.')[-1].lower()}{_id_safe(value)}"
    parts = path.split(".")
    prefix = f"i{parts[1]}" if parts[0] == "instances" and parts[1] != "*" else ""
    if len(parts) > 1 and parts[-2] == "env":
        return f"{prefix}{parts[-1].lower()}{_id_safe(value)}"
    knob = axis_knob(path)
    assert knob is not None, path  # normalise_axes refused unknown paths
    return f"{prefix}{knob.id_part(value)}"
