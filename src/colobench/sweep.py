"""Sweeps: the product of an experiment's axes gives its points.

Which fields are axes, their aliases and how values show in ids come from the knob table
(`colobench.specs.axes`). Each point is a complete `ExperimentSpec` (validated before anything
runs) with a stable readable id built from the experiment's name and the point's values in axis
order: `tiny-b8-short`, `llama-3.2-1b-bf16-c32`. An id part is a knob's short flag and the value
where the knob has a short flag (`b8`, `c32`, `p128`, `n64`, `r16`), else its abbreviation or the
value itself (`rate4`, `int8`, `fp16`). The same spec always gives the same ids, which is what
lets `--resume` skip finished points.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from colobench.errors import SpecError
from colobench.specs import ExperimentSpec, axis_label, id_part, validation_error_to_spec_error
from colobench.specs.axes import apply_axis


@dataclass(frozen=True)
class Point:
    """One combination of axis values: a complete experiment with an id."""

    id: str
    axes: dict[str, Any] = field(default_factory=dict)  # readable axis name -> value
    spec: ExperimentSpec | None = None  # without a sweep


def expand(spec: ExperimentSpec, source: str = "experiment") -> list[Point]:
    """Every point of `spec`, each validated. A spec without axes is one point with id ''."""
    if not spec.sweep:
        return [Point("", {}, spec)]
    base = spec.model_dump(exclude_unset=True, exclude={"sweep"})
    paths = list(spec.sweep)
    for path in paths:
        values = spec.sweep[path]
        for k, value in enumerate(values):
            if any(_same(value, other) for other in values[:k]):
                raise SpecError(f"{source}: sweep", axis_label(path), f"the value {value!r} is listed twice (one "
                                "point would overwrite the other)", show_value=False)
    points = []
    taken: set[str] = set()
    for combo in itertools.product(*(spec.sweep[p] for p in paths)):
        data = copy.deepcopy(base)
        point_id = _unique("-".join([spec.name] + [id_part(p, v) for p, v in zip(paths, combo)]), taken)
        where = f"{source} (sweep point {point_id})"
        try:
            for path, value in zip(paths, combo):
                apply_axis(data, path, value)
            _own_servers(data, base, point_id)
            point_spec = ExperimentSpec.model_validate(data)
        except ValidationError as err:
            raise validation_error_to_spec_error(err, where) from None
        except ValueError as err:
            raise SpecError(where, "", str(err), show_value=False) from None
        points.append(Point(point_id, {axis_label(p): v for p, v in zip(paths, combo)}, point_spec))
    return points


def _own_servers(data: dict[str, Any], base: dict[str, Any], point_id: str) -> None:
    """A server an axis changed (its args or env) is a different server at every point: renamed
    `<name>.<point id>`, with its instances, so each point starts its own and its log is its own."""
    before = {s["name"]: s for s in base.get("servers") or []}
    renamed = {}
    for server in data.get("servers") or []:
        if server != before.get(server["name"]):
            renamed[server["name"]] = server["name"] = f"{server['name']}.{point_id}"
    for inst in data.get("instances") or []:
        if inst.get("server") in renamed:
            inst["server"] = renamed[inst["server"]]


def all_servers(spec: ExperimentSpec) -> list:
    """Every managed server of every point (a server a sweep changes, once per point)."""
    found = {s.name: s for point in expand(spec) if point.spec is not None for s in point.spec.servers}
    return list(found.values())


def _same(a: Any, b: Any) -> bool:
    """The same axis value (4 and 4.0 are; True and 1 are not)."""
    return type(a) is type(b) and a == b or (isinstance(a, (int, float)) and isinstance(b, (int, float))
                                             and not isinstance(a, bool) and not isinstance(b, bool) and a == b)


def _unique(point_id: str, taken: set[str]) -> str:
    """`point_id`, or `point_id-2`, `-3`... when distinct values give the same id (`--env X='a b',ab`
    both read `xab`; two checkpoint folders both named `tiny`): every point keeps its own folder
    and records. Deterministic in the axis order, so `--resume` finds the same ids."""
    unique, n = point_id, 1
    while unique in taken:
        n += 1
        unique = f"{point_id}-{n}"
    taken.add(unique)
    return unique
