"""Reading an experiment from YAML or plain data, and every problem as one line that names the
source (file, flag), the field and the value.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from colobench.errors import SpecError
from colobench.specs.experiment import ExperimentSpec


SECRET_HEADER = ("auth", "key", "token", "secret", "cookie", "password")


def redact(data: Any) -> Any:
    """A copy of a spec dump with header values that look like credentials replaced, for
    everything written to disk (manifest, run.json). Keys belong in `api_key_env`."""
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            if k == "headers" and isinstance(v, dict):
                out[k] = {h: ("<redacted>" if any(s in h.lower() for s in SECRET_HEADER) else val) for h, val in v.items()}
            else:
                out[k] = redact(v)
        return out
    if isinstance(data, list):
        return [redact(v) for v in data]
    return data


# ---- loading and error formatting -------------------------------------------------------------


_SCALAR_TAG = re.compile(r"^(constrained-)?(int|float|str|bool)$")
_TYPE_TAG = re.compile(r"^(constrained-\w+|int|float|str|bool|none|list\[.*\]|dict\[.*\]|literal\[.*\]|function-.*|[A-Z]\w*)$")


def _is_tag(part: Any) -> bool:
    """pydantic names the union branch it tried inside an error's location (`int`, `LengthDist`)."""
    return isinstance(part, str) and bool(_TYPE_TAG.match(part))


def _loc_to_field(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if _is_tag(part):
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _pick_error(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The most useful error: for a union field given a mapping, the error of the model branch."""
    first = errors[0]
    base = [p for p in first["loc"] if not _is_tag(p)]
    siblings = [e for e in errors if [p for p in e["loc"] if not _is_tag(p)][:len(base)] == base]
    if isinstance(first.get("input"), dict):
        for e in siblings:
            if any(isinstance(p, str) and _is_tag(p) and not _SCALAR_TAG.match(p) for p in e["loc"]):
                return e
    return first


def validation_error_to_spec_error(err: ValidationError, source: str, field_names: dict[str, str] | None = None) -> SpecError:
    """The first problem of a pydantic error as one line: source, field path, message, value."""
    errors = err.errors()
    first = _pick_error(errors)
    field = _loc_to_field(first["loc"])
    if field_names and field in field_names:
        field = field_names[field]
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return SpecError(source, field, "unknown key", show_value=False)
    if first["type"] == "missing":
        return SpecError(source, field, "required field is missing", show_value=False)
    value = first.get("input")
    if isinstance(value, (dict, list)):
        return SpecError(source, field, message, show_value=False)
    return SpecError(source, field, message, value)


def experiment_from_dict(data: Any, source: str, field_names: dict[str, str] | None = None) -> ExperimentSpec:
    """Validate a plain mapping (from YAML or flags) into an `ExperimentSpec`, or raise `SpecError`."""
    if not isinstance(data, dict):
        raise SpecError(source, "", f"expected a mapping at the top level, got {type(data).__name__}", show_value=False)
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as err:
        raise validation_error_to_spec_error(err, source, field_names) from None


def load_experiment_yaml(path: str | Path) -> ExperimentSpec:
    """Read an experiment from a YAML file; every problem is a `SpecError` naming the file."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(source, "", "experiment file not found", show_value=False) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise SpecError(source, "", f"cannot read experiment file: {exc.__class__.__name__}", show_value=False) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(where, "", f"malformed YAML: {problem}", show_value=False) from None
    if data is None:
        raise SpecError(source, "", "experiment file is empty", show_value=False)
    return experiment_from_dict(data, source)
