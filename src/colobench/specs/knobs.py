"""One declaration per knob: a spec field says, next to its type, default and help, how a user
reaches it and what it means for an experiment.

A knob is a pydantic field declared with `knob(...)`. Its metadata (kept in the field's
`json_schema_extra`, so it also documents the JSON Schema) gives:

- `flag`, `short`, `aliases`: the `colobench run` option (`--batch-size`, `-b`, `--max-concurrency`);
- `panel`: the help panel the option is listed in;
- `parse`: how the option's text becomes values (`int`, `float`, `int|max`, `bool`, `str`,
  `prompts`, `env`, `cores`, `prefix` (TOKENS[:SHARE]), `auto` for a switch that sets the value `auto`);
- `axis`: a list of values is a sweep axis (`--batch-size 1,2,4` or `batch_size: [1, 2, 4]`);
- `abbrev` and `id_style`: how a value appears in a sweep point's id (`b8`, `fp16`, `int8`); a
  field with a short flag uses that letter, so ids agree with the command line;
- `quality`: changing it changes what the model says (dtype, quantisation, graph mode): a sweep
  over it compares each point's outputs with the first value's;
- `device_kinds`, `backends`: the devices and backends the field applies to (refused elsewhere);
- `list_valued`: the field's own value is a list (a list is not an axis when written in place).

Everything else is derived from these declarations: the CLI options and their panels, the
mapping from flags to fields for error messages, the sweep axes and their aliases, point ids,
and the knobs recorded with each worker. Adding a knob is one `knob(...)` field plus its effect
where the worker applies it (`launch.worker`, a device's `apply_knobs`, or a backend setting).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

Scope = Literal["workload", "instance", "experiment", "launch"]
PANELS = ("model and device", "workload", "load", "endpoints", "variants", "output", "launch")


@dataclass(frozen=True)
class KnobMeta:
    flag: str | None = None
    short: str | None = None
    aliases: tuple[str, ...] = ()
    panel: str = "workload"
    parse: str = "str"
    metavar: str | None = None
    axis: bool = False
    abbrev: str | None = None
    id_style: str = "prefix"  # prefix (b8), value (int8), dtype (bf16), model (label), bool (jit1), prompts, cores, shared
    quality: bool = False
    device_kinds: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()
    list_valued: bool = False
    repeat: bool = False  # the option may be given several times (each occurrence one value)


CONSTRAINTS = ("gt", "ge", "lt", "le", "min_length", "max_length")


def knob(default: Any = ..., *, help: str, default_factory: Any = None, **meta: Any) -> Any:
    """A pydantic `Field` carrying knob metadata (see `KnobMeta` for the keys; `gt`, `ge`, `le`
    and the like are the field's constraints)."""
    constraints = {k: meta.pop(k) for k in CONSTRAINTS if k in meta}
    KnobMeta(**meta)  # typos in metadata fail at import, not when a user types the flag
    extra = {"knob": {k: list(v) if isinstance(v, tuple) else v for k, v in meta.items()}}
    if default_factory is not None:
        return Field(default_factory=default_factory, description=help, json_schema_extra=extra, **constraints)
    return Field(default, description=help, json_schema_extra=extra, **constraints)


@dataclass(frozen=True)
class Knob:
    scope: Scope
    name: str
    help: str
    meta: KnobMeta

    @property
    def path(self) -> str:
        """Where the value goes in an experiment: `workload.batch_size`, `instances.*.dtype`,
        `repetitions`, `launch.kind`."""
        return {"workload": f"workload.{self.name}", "instance": f"instances.*.{self.name}",
                "experiment": self.name, "launch": f"launch.{self.name}"}[self.scope]

    @property
    def id_prefix(self) -> str:
        """What a point id writes before the value: the short flag's letter where there is one."""
        return (self.meta.short or "").lstrip("-") or self.meta.abbrev or ""

    def id_part(self, value: Any) -> str:
        """This knob's value as a piece of a sweep point's id (`b8`, `bf16`, `jit0`, `int8`)."""
        style = self.meta.id_style
        if style == "dtype":
            return DTYPE_SHORT.get(value, _fmt(value))
        if style == "model":
            return model_label(str(value))
        if style == "bool":
            return f"{self.id_prefix}{int(bool(value))}"
        if style == "prompts":
            if isinstance(value, dict) and value.get("file"):
                return "prompts-" + model_label(re.sub(r"\.[A-Za-z0-9]+$", "", str(value["file"]).rstrip("/")))
            builtin = (value or {}).get("builtin") if isinstance(value, dict) else None
            return "builtin" + ("" if builtin in (None, "all") else "-" + "-".join(builtin))
        if style == "shared":  # a shared prefix: prefix256, prefix256x0.5
            if not isinstance(value, dict):
                return "noprefix"
            share = value.get("share", 1.0)
            return f"prefix{_fmt(value.get('tokens'))}" + ("" if share in (None, 1, 1.0) else f"x{_fmt(share)}")
        if style == "cores":
            return "nopin" if value is None else f"pin{_fmt(value if isinstance(value, str) else '.'.join(map(str, value)))}"
        if style == "ramp":
            if not isinstance(value, dict):
                return "noramp"
            return f"ramp{_fmt(value.get('to_rate'))}x{_fmt(value.get('steps', 4))}" + (
                "lin" if value.get("shape") == "linear" else "")
        if style == "trace":
            return "trace-" + model_label(re.sub(r"\.[A-Za-z0-9]+$", "", str(value))) if value else "notrace"
        if style == "value":
            return _fmt(value)
        return f"{self.id_prefix}{_fmt(value)}"


DTYPE_SHORT = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return re.sub(r"[^A-Za-z0-9._-]+", "", str(value))


def model_label(model: str) -> str:
    """A short readable label for a model reference: the preset name or the folder's name."""
    label = re.split(r"[\\/]", model.rstrip("/\\"))[-1] or model
    label = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-._").lower()
    return label or "model"


def knobs_of(model: type, scope: Scope) -> list[Knob]:
    """The knobs a pydantic model declares, in field order."""
    out = []
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if "knob" in extra:
            meta = {k: tuple(v) if isinstance(v, list) else v for k, v in extra["knob"].items()}
            out.append(Knob(scope, name, info.description or "", KnobMeta(**meta)))
    return out
