"""From command-line flags to an `ExperimentSpec`: comma lists become sweep axes, errors name
the flag (`--prompt-tokens`), not the spec path. Part of the CLI layer: it parses, never runs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

from colobench.errors import ColobenchError, SpecError

FLAG_FIELDS = {  # spec field -> the flag that sets it, for error messages about flags
    r"workload\.prompt_tokens": "--prompt-tokens",
    r"workload\.output_tokens": "--output-tokens",
    r"workload\.requests": "--requests",
    r"workload\.batch_size": "--batch-size",
    r"workload\.concurrency": "--concurrency",
    r"workload\.rate": "--rate",
    r"workload\.duration_s": "--duration",
    r"workload\.load": "--load",
    r"workload\.arrival": "--arrival",
    r"workload\.burstiness": "--burstiness",
    r"workload\.prompts.*": "--prompts",
    r"workload": "workload flags",
    r"repetitions": "--repetitions",
    r"launch\.kind": "--launcher",
    r"launch\.address": "--ray-address",
    r"instances\[\d+\]\.device": "--device",
    r"instances\[\d+\]\.dtype": "--dtype",
    r"instances\[\d+\]\.model": "--model",
    r"instances\[\d+\]\.base_url": "--endpoint",
    r"instances\[\d+\]\.api": "--api",
    r"instances\[\d+\]\.api_key_env": "--api-key-env",
    r"instances\[\d+\]\.tokenizer": "--tokenizer",
    r"instances\[\d+\]\.client_processes": "--client-processes",
    r"instances\[\d+\]": "--endpoint",
}


def _flag_name(field: str) -> str:
    # flags set the experiment's workload; preflight names the instance it checked
    candidates = [field, re.sub(r"^instances\[\d+\]\.workload", "workload", field)]
    for candidate in candidates:
        for pattern, flag in FLAG_FIELDS.items():
            if re.fullmatch(pattern, candidate):
                return flag
    return field


LIST_FLAGS = {  # flag -> (spec field, value kind); a comma list makes the field a sweep axis
    "--prompt-tokens": ("prompt_tokens", "int"),
    "--output-tokens": ("output_tokens", "int"),
    "--requests": ("requests", "int"),
    "--batch-size": ("batch_size", "int|max"),
    "--concurrency": ("concurrency", "int|max"),
    "--rate": ("rate", "float"),
    "--duration": ("duration_s", "float"),
    "--load": ("load", "str"),
    "--arrival": ("arrival", "str"),
    "--burstiness": ("burstiness", "float"),
    "--dtype": ("dtype", "str"),
    "--device": ("device", "str"),
    "--scenario": ("scenario", "str"),
    "--quantization": ("quantization", "str"),
    "--graph": ("graph", "str"),
}


def _parse_values(flag: str, text: str, kind: str) -> list[Any]:
    """`1,2,4` -> [1, 2, 4]; a wrong item is a one-line error naming the flag."""
    out: list[Any] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            raise SpecError("command line", flag, "empty item in the list", text)
        try:
            if kind == "int" or (kind == "int|max" and item != "max"):
                out.append(int(item))
            elif kind == "float":
                out.append(float(item))
            else:
                out.append(item)
        except ValueError:
            raise SpecError("command line", flag, f"{item!r} is not {'a number' if kind == 'float' else 'an integer'}",
                            show_value=False) from None
    return out


def _prompt_source(text: str) -> dict[str, Any]:
    """`--prompts FILE`, `--prompts builtin` or `--prompts builtin:code,en_qa`."""
    if text == "builtin":
        return {"builtin": "all"}
    if text.startswith("builtin:"):
        return {"builtin": [c for c in text.split(":", 1)[1].split(",") if c]}
    return {"file": text}


def _default_name(models: list[str]) -> str:
    from colobench.specs import model_label

    labels = [model_label(m) for m in models]
    unique = list(dict.fromkeys(labels))
    if len(unique) == 1:
        return unique[0] if len(labels) == 1 else f"{unique[0]}-x{len(labels)}"
    return "+".join(unique)


def _endpoint_instances(endpoints: list[str], models: list[str], endpoint_opts: dict[str, Any]) -> list[dict]:
    """`--endpoint URL` instances: one per URL, each serving the -m name in the same position (or
    the only -m name for all)."""
    if not models:
        raise SpecError("command line", "--model", "an --endpoint needs the served model name: -m NAME",
                        show_value=False)
    if len(models) not in (1, len(endpoints)):
        raise SpecError("command line", "--model", f"give one -m for all {len(endpoints)} endpoints, or one each",
                        show_value=False)
    names = models * len(endpoints) if len(models) == 1 else models
    opts = {k: v for k, v in endpoint_opts.items() if v is not None}
    return [{"backend": "openai", "base_url": url, "model": m, **opts} for url, m in zip(endpoints, names)]


def _build_spec(experiment: Optional[Path], models: list[str], flags: dict[str, Optional[str]],
                repetitions: Optional[int], prompts: Optional[str], name: Optional[str], cache_dir: Optional[Path],
                resume_dir: Optional[Path], endpoints: Optional[list[str]] = None,
                endpoint_opts: Optional[dict[str, Any]] = None, env: Optional[list[str]] = None,
                cpu_affinity: bool = False, launch: Optional[dict[str, Optional[str]]] = None):
    from colobench import api
    from colobench.specs import experiment_from_dict, load_experiment_yaml
    from colobench.sweep import canonical_path

    if experiment is not None and (models or endpoints):
        raise ColobenchError(f"{experiment}: give the instances either in the file or with --model/--endpoint, not both")
    given = {flag: text for flag, text in flags.items() if text is not None}
    launch = {k: v for k, v in (launch or {}).items() if v is not None}
    if "address" in launch and launch.get("kind", "ray") != "ray":
        raise SpecError("command line", "--ray-address", "applies to --launcher ray", show_value=False)
    if "address" in launch:
        launch.setdefault("kind", "ray")
    if endpoints:
        source = "command line"
        data = {"name": _default_name(models or ["endpoint"]),
                "instances": _endpoint_instances(endpoints, models, endpoint_opts or {})}
    elif experiment is not None:
        data = load_experiment_yaml(experiment).model_dump(exclude_unset=True)
        source = str(experiment)
    elif models:
        source = "command line"
        data = {"name": _default_name(models), "instances": [{"model": m} for m in models]}
    elif resume_dir is not None and not given and repetitions is None and prompts is None and not env:
        spec = api.spec_from_run_dir(resume_dir)
        source = str(resume_dir / "manifest.json")
        if not launch:
            return spec, source
        data = spec.model_dump(exclude_unset=True)  # a launcher flag is checked against the run's own
    else:
        source = "command line"
        device = given.get("--device")
        default_device = device if device and "," not in device and device != "auto" else None
        data = api.default_experiment(default_device).model_dump(exclude_unset=True)
    data = dict(data)
    sweep = dict(data.get("sweep") or {})
    workload = dict(data.get("workload") or {})
    instances = [dict(i) for i in data.get("instances", [])]
    for flag, text in given.items():
        field, kind = LIST_FLAGS[flag]
        values = _parse_values(flag, text, kind)
        path = canonical_path(field)
        sweep.pop(path, None)
        for inst in instances:  # a flag for every instance replaces their own values
            inst.pop(field, None)
            if isinstance(inst.get("workload"), dict):
                inst["workload"] = {k: v for k, v in inst["workload"].items() if k != field}
        if len(values) > 1:
            sweep[path] = values
        elif field == "scenario":
            data["scenario"] = values[0]
        elif path.startswith("instances.*."):
            for inst in instances:
                inst[field] = values[0]
        else:
            workload[field] = values[0]
    for item in env or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SpecError("command line", "--env", "expected KEY=VALUE or KEY=V1,V2", item)
        values = text.split(",")
        if len(values) > 1:
            sweep[f"instances.*.env.{key}"] = values
        else:
            for inst in instances:
                inst["env"] = {**(inst.get("env") or {}), key: values[0]}
    if cpu_affinity:
        for inst in instances:
            inst["cpu_affinity"] = "auto"
    if prompts:
        workload["prompts"] = _prompt_source(prompts)
    data.update(workload=workload, instances=instances)
    if sweep:
        data["sweep"] = sweep
    if repetitions is not None:
        data["repetitions"] = repetitions
    if name:
        data["name"] = name
    if cache_dir:
        data["cache_dir"] = str(cache_dir)
    if launch:
        data["launch"] = {**(data.get("launch") or {}), **launch}
    try:
        return experiment_from_dict(data, source), source
    except SpecError as exc:
        raise _for_flags(exc) from None


def _for_flags(exc: SpecError) -> SpecError:
    """Errors about the command line name the flag (--prompt-tokens), not the spec path."""
    return exc.with_field(_flag_name(exc.field)) if exc.source == "command line" else exc


