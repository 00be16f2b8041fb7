"""From command-line flags to an `ExperimentSpec`. Part of the CLI layer: it parses, never runs.

Every knob option comes from the knob table (`colobench.specs.knobs`): its flag, short flag,
aliases, help, panel and how its text is parsed. A comma list (or a repeated `--prompts` /
`--env KEY=V1,V2`) gives several values, which makes the knob a sweep axis. Errors about the
command line name the flag (`--prompt-tokens`), not the spec path.
"""

from __future__ import annotations

import inspect
import re
from functools import wraps
from pathlib import Path
from typing import Any, Callable, Optional, get_type_hints

import typer

from colobench.api import default_experiment, spec_from_run_dir
from colobench.errors import ColobenchError, SpecError
from colobench.rundir import RunDir
from colobench.specs import ALL_KNOBS, ExperimentSpec, Knob, experiment_from_dict, load_experiment_yaml, model_label
from colobench.specs import models
from colobench.specs.knobs import PANELS
from colobench.specs.models import SLO_OBJECTIVES

FLAG_KNOBS = [k for k in ALL_KNOBS if k.meta.flag]
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def param_name(k: Knob) -> str:
    """The Python name of a knob's option in a command's signature."""
    return f"knob__{k.scope}__{k.name}"


def _panel(k: Knob) -> str:
    return k.meta.panel[0].upper() + k.meta.panel[1:]


def _option(k: Knob) -> inspect.Parameter:
    names = [k.meta.flag, *([k.meta.short] if k.meta.short else []), *k.meta.aliases]
    help_text = k.help + (" [a comma list is an axis]" if k.meta.axis and not k.meta.repeat else "")
    if k.meta.parse == "auto":  # a switch that sets the value `auto`
        default = typer.Option(False, *names, help=help_text, rich_help_panel=_panel(k), metavar="")
        annotation = bool
    elif k.meta.repeat:
        default = typer.Option([], *names, help=help_text, rich_help_panel=_panel(k), metavar=k.meta.metavar or "TEXT",
                               show_default=False)
        annotation = list[str]
    else:
        choices = _choices(k)
        metavar = k.meta.metavar or ("|".join(choices) if choices else "TEXT")
        default = typer.Option(None, *names, help=help_text, rich_help_panel=_panel(k), metavar=metavar,
                               show_default=False)
        annotation = Optional[str]
    return inspect.Parameter(param_name(k), inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _choices(k: Knob) -> list[str]:
    """The values a Literal-typed knob takes, for its metavar (`eager|compiled`)."""
    owner = next(m for m in (models.WorkloadSpec, models.InstanceSpec, models.ExperimentKnobs, models.LaunchSpec)
                 if k.name in m.model_fields)
    text = str(owner.model_fields[k.name].annotation)
    found = re.findall(r"Literal\[([^\]]*)\]", text)
    values = [v.strip().strip("'\"") for group in found for v in group.split(",")]
    return [v for v in values if v and v not in ("max", "auto")] if len(values) <= 6 else []


def with_knob_options(knobs: list[Knob]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add an option per knob to a typer command; the command receives them as `knobs`:
    {knob: text (or list of texts, or True)} for the options the user gave."""
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        hints = get_type_hints(func)
        own = [p.replace(annotation=hints.get(p.name, p.annotation), kind=inspect.Parameter.KEYWORD_ONLY)
               for p in inspect.signature(func).parameters.values() if p.name != "knobs"]
        by_param = {param_name(k): k for k in knobs}

        @wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            given = {by_param[name]: kwargs.pop(name) for name in list(kwargs) if name in by_param}
            given = {k: v for k, v in given.items() if v not in (None, [], False)}
            return func(**kwargs, knobs=given)

        order = {p[0].upper() + p[1:]: k for k, p in enumerate(PANELS)}
        params = sorted(own + [_option(k) for k in knobs],  # arguments, then the options panel by panel
                        key=lambda p: -1 if p.default.__class__.__name__ == "ArgumentInfo"
                        else order.get(getattr(p.default, "rich_help_panel", None), len(order)))
        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper
    return decorate


def knobs_named(*names: str) -> list[Knob]:
    return [next(k for k in FLAG_KNOBS if k.name == n) for n in names]


# ---- parsing the texts -----------------------------------------------------------------------------


def _one(k: Knob, item: str) -> Any:
    parse, flag = k.meta.parse, k.meta.flag
    try:
        if parse == "int" or (parse == "int|max" and item != "max"):
            return int(item)
        if parse == "float":
            return float(item)
    except ValueError:
        raise SpecError("command line", flag, f"{item!r} is not {'a number' if parse == 'float' else 'an integer'}",
                        show_value=False) from None
    if parse == "bool":
        if item.lower() not in _TRUE + _FALSE:
            raise SpecError("command line", flag, f"{item!r} is not true or false", show_value=False)
        return item.lower() in _TRUE
    if parse == "cores":
        if item in ("auto", "none"):
            return None if item == "none" else "auto"
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if not match:
            raise SpecError("command line", flag, f"{item!r} is not auto, none, a core or a range like 0-3",
                            show_value=False)
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        return list(range(first, last + 1))
    if parse == "prefix":
        match = re.fullmatch(r"(\d+)(?::([0-9.]+))?", item)
        if not match:
            raise SpecError("command line", flag, f"{item!r} is not TOKENS or TOKENS:SHARE (e.g. 256 or 256:0.5)",
                            show_value=False)
        try:
            share = float(match.group(2)) if match.group(2) else 1.0
        except ValueError:
            raise SpecError("command line", flag, f"{match.group(2)!r} is not a share (0 to 1)", show_value=False) from None
        return {"tokens": int(match.group(1)), "share": share}
    if parse == "ramp":
        match = re.fullmatch(r"([0-9.]+)(?::(\d+))?(?::(step|linear))?", item)
        if not match:
            raise SpecError("command line", flag, f"{item!r} is not TO_RATE[:STEPS[:step|linear]] (e.g. 40 or 40:8:linear)",
                            show_value=False)
        try:
            to_rate = float(match.group(1))
        except ValueError:
            raise SpecError("command line", flag, f"{match.group(1)!r} is not a rate", show_value=False) from None
        return {"to_rate": to_rate, "steps": int(match.group(2) or 4), "shape": match.group(3) or "step"}
    if parse == "prompts":
        if item == "builtin":
            return {"builtin": "all"}
        if item.startswith("builtin:"):
            return {"builtin": [c for c in item.split(":", 1)[1].split(",") if c]}
        return {"file": item}
    return item


def _slo(flag: str | None, text: str) -> dict[str, float]:
    """`ttft_ms=200,tpot_ms=50` -> {"ttft_ms": 200.0, "tpot_ms": 50.0} (one value, not a list)."""
    out: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in SLO_OBJECTIVES:
            raise SpecError("command line", flag, f"{item!r} is not OBJECTIVE=MS with OBJECTIVE one of "
                            f"{', '.join(SLO_OBJECTIVES)}", show_value=False)
        if key in out:
            raise SpecError("command line", flag, f"{key} given twice", show_value=False)
        try:
            out[key] = float(value)
        except ValueError:
            raise SpecError("command line", flag, f"{value!r} ({key}) is not a number of milliseconds",
                            show_value=False) from None
    return out


def parse_values(k: Knob, text: Any) -> list[Any]:
    """The values a knob's option gave: `1,2,4` -> [1, 2, 4]; a wrong item is a one-line error."""
    if k.meta.parse == "auto":
        return ["auto"]
    if k.meta.parse == "slo":
        return [_slo(k.meta.flag, str(text))]
    if k.meta.repeat:
        return [_one(k, t) for t in text]
    out = []
    for item in (part.strip() for part in str(text).split(",")):
        if not item:
            raise SpecError("command line", k.meta.flag, "empty item in the list", text)
        out.append(_one(k, item))
    return out


def _env_axes(texts: list[str]) -> dict[str, list[str]]:
    """`--env KEY=V` or `--env KEY=V1,V2` (repeatable) -> {KEY: [values]}."""
    out: dict[str, list[str]] = {}
    for item in texts:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SpecError("command line", "--env", "expected KEY=VALUE or KEY=V1,V2", item)
        if key in out:
            raise SpecError("command line", "--env", f"{key} given twice (give one --env {key}=V1,V2 to sweep it)",
                            show_value=False)
        out[key] = text.split(",")
    return out


def _set_knob(data: dict[str, Any], k: Knob, values: list[Any]) -> None:
    """Put a knob's values into plain experiment data: one value set in place, several an axis."""
    sweep = data.setdefault("sweep", {})
    instances = data.get("instances") or []
    if k.name == "env":
        for key, vals in _env_axes(values).items():
            sweep.pop(f"instances.*.env.{key}", None)
            if len(vals) > 1:
                sweep[f"instances.*.env.{key}"] = vals
            else:
                for inst in instances:
                    inst["env"] = {**(inst.get("env") or {}), key: vals[0]}
        return
    if len(values) > 1 and not k.meta.axis:
        raise SpecError("command line", k.meta.flag, "takes one value, not a list", show_value=False)
    sweep.pop(k.path, None)
    for inst in instances:  # a flag for every instance replaces their own values
        if k.scope == "instance":
            inst.pop(k.name, None)
        if k.scope == "workload" and isinstance(inst.get("workload"), dict):
            inst["workload"] = {f: v for f, v in inst["workload"].items() if f != k.name}
    if len(values) > 1:
        sweep[k.path] = values
    elif k.scope == "workload":
        data.setdefault("workload", {})[k.name] = values[0]
    elif k.scope == "instance":
        for inst in instances:
            inst[k.name] = values[0]
    elif k.scope == "launch":
        data.setdefault("launch", {})[k.name] = values[0]
    else:
        data[k.name] = values[0]


# ---- the experiment ---------------------------------------------------------------------------------


def _default_name(models: list[str]) -> str:
    labels = [model_label(m) for m in models]
    unique = list(dict.fromkeys(labels))
    if len(unique) == 1:
        return unique[0] if len(labels) == 1 else f"{unique[0]}-x{len(labels)}"
    return "-and-".join(unique)  # "+" reads well but is not allowed in a name (it prefixes folders and ids)


def _endpoint_instances(endpoints: list[str], models: list[str]) -> list[dict[str, Any]]:
    """`--endpoint URL` instances: one per URL, each serving the -m name in the same position (or
    the only -m name for all)."""
    if not models:
        raise SpecError("command line", "--model", "an --endpoint needs the served model name: -m NAME",
                        show_value=False)
    if len(models) not in (1, len(endpoints)):
        raise SpecError("command line", "--model", f"give one -m for all {len(endpoints)} endpoints, or one each",
                        show_value=False)
    names = models * len(endpoints) if len(models) == 1 else models
    return [{"backend": "openai", "base_url": url, "model": m} for url, m in zip(endpoints, names)]


def build_spec(experiment: Optional[Path], models: list[str], endpoints: list[str], knobs: dict[Knob, Any],
               resume_dir: Optional[Path] = None) -> tuple[ExperimentSpec, str]:
    """The experiment the command line asks for, and the source to name in errors."""
    if experiment is not None and (models or endpoints):
        raise ColobenchError(f"{experiment}: give the instances either in the file or with --model/--endpoint, not both")
    launch_only = all(k.scope == "launch" for k in knobs)
    if endpoints:
        source = "command line"
        data = {"name": _default_name(models or ["endpoint"]), "instances": _endpoint_instances(endpoints, models)}
    elif experiment is not None:
        data, source = load_experiment_yaml(experiment).model_dump(exclude_unset=True), str(experiment)
    elif models:
        source = "command line"
        data = {"name": _default_name(models), "instances": [{"model": m} for m in models]}
    elif resume_dir is not None and launch_only:
        spec, source = spec_from_run_dir(resume_dir), str(RunDir(resume_dir).manifest)
        if not knobs:
            return spec, source
        data = spec.model_dump(exclude_unset=True)  # a launcher flag is checked against the run's own
    else:
        source = "command line"
        device = next((v for k, v in knobs.items() if k.name == "device"), None)
        default_device = device if device and "," not in device and device != "auto" else None
        data = default_experiment(default_device).model_dump(exclude_unset=True)
    data = dict(data)
    data["instances"] = [dict(i) for i in data.get("instances", [])]
    backends = {i.get("backend", "transformers") for i in data["instances"]}
    for k, text in knobs.items():
        if k.meta.backends and not backends <= set(k.meta.backends):
            raise SpecError("command line", k.meta.flag, f"applies to {' or '.join(k.meta.backends)} instances"
                            + (" (--endpoint)" if k.meta.backends == ("openai",) else ""), show_value=False)
        _set_knob(data, k, parse_values(k, text))
    if data.get("launch", {}).get("address") and data["launch"].get("kind", "ray") != "ray":
        raise SpecError("command line", "--ray-address", "applies to --launcher ray", show_value=False)
    if data.get("launch", {}).get("address"):
        data["launch"].setdefault("kind", "ray")
    if not data.get("sweep"):
        data.pop("sweep", None)
    try:
        return experiment_from_dict(data, source), source
    except SpecError as exc:
        raise for_flags(exc) from None


def _flag_patterns() -> list[tuple[str, str]]:
    out = []
    for k in FLAG_KNOBS:
        where = {"workload": rf"workload\.{k.name}", "instance": rf"instances\[\d+\]\.{k.name}",
                 "experiment": k.name, "launch": rf"launch\.{k.name}"}[k.scope]
        out.append((rf"{where}(\..*|\[.*)?", k.meta.flag))
    return out + [(r"instances\[\d+\]\.base_url", "--endpoint"), (r"instances\[\d+\]\.model", "--model"),
                  (r"workload", "workload flags"), (r"instances\[\d+\]", "--model")]


FLAG_FIELDS = _flag_patterns()


def flag_name(field: str) -> str:
    """The flag that set a spec field (`workload.batch_size` -> --batch-size); the field itself
    when no flag sets it. Preflight names the instance it checked: its workload is the flags'."""
    for candidate in (field, re.sub(r"^instances\[\d+\]\.workload", "workload", field)):
        for pattern, flag in FLAG_FIELDS:
            if re.fullmatch(pattern, candidate):
                return flag
    return field


def for_flags(exc: SpecError) -> SpecError:
    """Errors about the command line name the flag (--prompt-tokens), not the spec path."""
    return exc.with_field(flag_name(exc.field)) if exc.source == "command line" else exc
