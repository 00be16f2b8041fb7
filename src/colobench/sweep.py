"""Sweeps: spec fields given as lists become axes; their product gives the experiment's points.

An axis is a path into the experiment and a list of values:

    workload.batch_size        every instance's workload (alias: batch_size, and every
                               other workload field by its name)
    instances.*.dtype          every instance (aliases: dtype, device, model, cpu_threads)
    instances.1.workload.rate  one instance only
    scenario                   the named scenario (short, long, mixed, peak or your own)

Lists written in place of a value in YAML (`batch_size: [1, 2, 4, 8]`) and comma lists on the
command line (`--batch-size 1,2,4,8`) become axes. Each point is a complete `ExperimentSpec`
(validated before anything runs) with a stable readable id built from the experiment's name
and the point's values in axis order: `tiny-bs8-short`, `llama-3.2-1b-bf16-c32`. The same
spec always gives the same ids, which is what lets `--resume` skip finished points.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

WORKLOAD_AXES = ("load", "prompt_tokens", "output_tokens", "requests", "duration_s", "batch_size", "concurrency",
                 "rate", "arrival", "burstiness", "warmup_requests", "kv_cache_tokens", "seed")
INSTANCE_AXES = ("device", "dtype", "model", "cpu_threads", "quantization", "graph", "cpu_affinity")
VARIANT_AXES = ("dtype", "quantization", "graph")
LIST_VALUED = ("cpu_affinity",)  # what changes a model's outputs: quality is checked across them
TOP_AXES = ("scenario", "repetitions")

ABBREVIATIONS = {"batch_size": "bs", "concurrency": "c", "rate": "r", "prompt_tokens": "p", "output_tokens": "o",
                 "requests": "n", "duration_s": "d", "cpu_threads": "t", "burstiness": "burst", "kv_cache_tokens": "kv",
                 "seed": "seed", "repetitions": "reps", "warmup_requests": "w"}
DTYPE_SHORT = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}

_PATH = re.compile(r"^(workload\.(\w+)|instances\.(\*|\d+)\.(workload\.|env\.)?(\w+)|scenario|repetitions)$")


@dataclass(frozen=True)
class Point:
    """One combination of axis values: a complete experiment with an id."""

    id: str
    axes: dict[str, Any] = field(default_factory=dict)  # readable axis name -> value
    spec: Any = None  # ExperimentSpec without a sweep


def canonical_path(name: str) -> str:
    """Expand an alias (batch_size, dtype, env.TASK_QUEUE_ENABLE) to its full axis path."""
    if name.startswith("env."):
        return f"instances.*.{name}"
    if name in WORKLOAD_AXES:
        return f"workload.{name}"
    if name in INSTANCE_AXES:
        return f"instances.*.{name}"
    return name


def normalise_axes(axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Aliases expanded, paths and value lists checked. Raises ValueError naming the axis."""
    out: dict[str, list[Any]] = {}
    for name, values in axes.items():
        path = canonical_path(name)
        match = _PATH.match(path)
        if not match:
            raise ValueError(f"unknown sweep axis {name!r}: use a workload field (batch_size, rate, ...), "
                             f"{', '.join(INSTANCE_AXES)}, scenario, or a path like instances.0.workload.rate")
        leaf = match.group(2) or match.group(5)
        if match.group(3) and not match.group(4) and leaf not in INSTANCE_AXES:
            raise ValueError(f"sweep axis {name!r}: instances can sweep {', '.join(INSTANCE_AXES)}")
        if (match.group(2) or match.group(4) == "workload.") and leaf not in WORKLOAD_AXES:
            raise ValueError(f"sweep axis {name!r}: {leaf!r} is not a sweepable workload field")
        if not isinstance(values, list) or not values:
            raise ValueError(f"sweep axis {name!r} needs a non-empty list of values")
        if len({repr(v) for v in values}) != len(values):
            raise ValueError(f"sweep axis {name!r} repeats a value")
        if path in out:
            raise ValueError(f"sweep axis {path!r} given twice")
        out[path] = list(values)
    return out


def lift_inline_axes(data: dict[str, Any]) -> dict[str, Any]:
    """Move lists written in place of scalar values into `sweep` (a new dict; input untouched)."""
    data = copy.deepcopy(data)
    sweep = dict(data.get("sweep") or {})
    workload = data.get("workload")
    if isinstance(workload, dict):
        for key in WORKLOAD_AXES:
            if isinstance(workload.get(key), list):
                sweep[f"workload.{key}"] = workload.pop(key)
    for k, inst in enumerate(data.get("instances") or []):
        if not isinstance(inst, dict):
            continue
        for key in INSTANCE_AXES:
            if key in LIST_VALUED:
                continue  # a list is this field's value, not an axis: sweep it under `sweep:`
            if isinstance(inst.get(key), list):
                sweep[f"instances.{k}.{key}"] = inst.pop(key)
        if isinstance(inst.get("workload"), dict):
            for key in WORKLOAD_AXES:
                if isinstance(inst["workload"].get(key), list):
                    sweep[f"instances.{k}.workload.{key}"] = inst["workload"].pop(key)
    for key in TOP_AXES:
        if isinstance(data.get(key), list):
            sweep[key] = data.pop(key)
    if sweep:
        data["sweep"] = sweep
    return data


def _apply(data: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    if parts[0] == "workload":
        data.setdefault("workload", {})[parts[1]] = value
    elif parts[0] == "instances":
        targets = data["instances"] if parts[1] == "*" else [data["instances"][int(parts[1])]]
        for inst in targets:
            if parts[2] in ("workload", "env"):
                inst[parts[2]] = {**(inst.get(parts[2]) or {}), parts[3]: value}
            else:
                inst[parts[2]] = value
    else:
        data[parts[0]] = value


def axis_label(path: str) -> str:
    """The readable name of an axis in summaries: batch_size, dtype, batch_size[1]."""
    parts = path.split(".")
    label = f"env.{parts[-1]}" if len(parts) > 1 and parts[-2] == "env" else parts[-1]
    if parts[0] == "instances" and parts[1] != "*":
        return f"{label}[{parts[1]}]"
    return label


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return re.sub(r"[^A-Za-z0-9._-]+", "", str(value))


def id_part(path: str, value: Any) -> str:
    parts = path.split(".")
    leaf = parts[-1]
    prefix = f"i{parts[1]}" if parts[0] == "instances" and parts[1] != "*" else ""
    if len(parts) > 1 and parts[-2] == "env":
        text = f"{leaf.lower()}{_fmt(value)}"
    elif leaf == "dtype":
        text = DTYPE_SHORT.get(value, _fmt(value))
    elif leaf == "model":
        from colobench.specs import model_label

        text = model_label(str(value))
    elif leaf in ABBREVIATIONS:
        text = f"{ABBREVIATIONS[leaf]}{_fmt(value)}"
    else:
        text = _fmt(value)
    return f"{prefix}{text}"


def expand(spec: Any, source: str = "experiment") -> list[Point]:
    """Every point of `spec`, each validated. A spec without axes is one point with id ''."""
    from pydantic import ValidationError

    from colobench.errors import SpecError
    from colobench.specs import ExperimentSpec, validation_error_to_spec_error

    if not spec.sweep:
        return [Point("", {}, spec)]
    base = spec.model_dump(exclude_unset=True, exclude={"sweep"})
    paths = list(spec.sweep)
    points = []
    for combo in itertools.product(*(spec.sweep[p] for p in paths)):
        data = copy.deepcopy(base)
        for path, value in zip(paths, combo):
            _apply(data, path, value)
        point_id = "-".join([spec.name] + [id_part(p, v) for p, v in zip(paths, combo)])
        axes = {axis_label(p): v for p, v in zip(paths, combo)}
        try:
            point_spec = ExperimentSpec.model_validate(data)
        except ValidationError as err:
            raise validation_error_to_spec_error(err, f"{source} (sweep point {point_id})") from None
        except ValueError as err:
            raise SpecError(f"{source} (sweep point {point_id})", "", str(err), show_value=False) from None
        points.append(Point(point_id, axes, point_spec))
    return points
