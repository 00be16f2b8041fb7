"""Reading an experiment from YAML or plain data, and every problem as one line that names the
source (file, flag), the field and the value.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from colobench.errors import SpecError
from colobench.secrets import CREDENTIAL_NAME, MASK, scrub_data
from colobench.specs.experiment import ExperimentSpec


def redact(data: Any) -> Any:
    """A copy of a spec dump for everything written to disk (manifest, run.json): header values
    named like credentials or listed in `secret_headers` replaced by `***`, and every registered
    secret value and URL password scrubbed (`colobench.secrets`). Keys belong in `api_key_env`."""
    if isinstance(data, dict):
        out = {}
        listed = {h.lower() for h in data.get("secret_headers") or [] if isinstance(h, str)}
        for k, v in data.items():
            if k == "headers" and isinstance(v, dict):
                out[k] = {h: (MASK if CREDENTIAL_NAME.search(h) or h.lower() in listed else scrub_data(val))
                          for h, val in v.items()}
            else:
                out[k] = redact(v)
        return out
    if isinstance(data, list):
        return [redact(v) for v in data]
    return scrub_data(data)


# ---- loading and error formatting -------------------------------------------------------------


class DuplicateKey(Exception):
    def __init__(self, key: Any, line: int):
        super().__init__(f"duplicate key {key!r} at line {line}")
        self.key, self.line = key, line


class BadYamlShape(Exception):
    """YAML that parses but cannot be an experiment: a list or mapping as a key, data that
    contains itself through an anchor, or more values than any experiment has."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.message, self.line = message, line


MAX_YAML_VALUES = 200_000  # after expanding aliases: "billion laughs" stops here, no experiment comes close


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error, and so is
    a key that is not a scalar (`? [a, b]` would fail later as "unhashable")."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
            raise BadYamlShape(f"a {kind} used as a mapping key (keys are names)", key_node.start_mark.line + 1)
        key = loader.construct_object(key_node, deep=True)
        if key != "<<" and key in seen:
            raise DuplicateKey(key, key_node.start_mark.line + 1)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def check_plain_data(data: Any, limit: int = MAX_YAML_VALUES) -> None:
    """Refuse data that holds itself (`a: &x [*x]`: every reader after this one would recurse
    forever) or that expands to more than `limit` values; raises `BadYamlShape`. Iterative, so a
    deep document cannot overflow the stack here either."""
    count = 0
    stack: list[tuple[Any, frozenset[int]]] = [(data, frozenset())]
    while stack:
        value, above = stack.pop()
        count += 1
        if count > limit:
            raise BadYamlShape(f"more than {limit:,} values once its aliases are expanded (an alias bomb?)")
        if isinstance(value, (dict, list)):
            if id(value) in above:
                raise BadYamlShape("an anchor refers to itself (data that contains itself)")
            inner = above | {id(value)}
            stack.extend((v, inner) for v in (value.values() if isinstance(value, dict) else value))


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


def _known_keys(model: type[BaseModel] = ExperimentSpec, seen: set | None = None) -> set[str]:
    """Every field name of the experiment's models, for "did you mean" on an unknown key."""
    seen = seen if seen is not None else set()
    names: set[str] = set()
    if model in seen:
        return names
    seen.add(model)
    for name, info in model.model_fields.items():
        names.add(name)
        for t in (info.annotation, *_nested(info.annotation)):
            if isinstance(t, type) and issubclass(t, BaseModel):
                names |= _known_keys(t, seen)
    return names


def _nested(annotation: Any) -> list[Any]:
    out = []
    for arg in get_args(annotation):
        out += [arg, *_nested(arg)]
    return out


def validation_error_to_spec_error(err: ValidationError, source: str, field_names: dict[str, str] | None = None) -> SpecError:
    """The first problem of a pydantic error as one line: source, field path, message, value. An
    unknown key comes first (a misspelt key also leaves its field "missing"), named with the
    closest known key."""
    errors = err.errors()
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    first = unknown[0] if unknown else _pick_error(errors)
    field = _loc_to_field(first["loc"])
    if field_names and field in field_names:
        field = field_names[field]
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        key = str(first["loc"][-1])
        known = _known_keys()
        if key in known:  # a real key in the wrong place: suggesting itself would not help
            return SpecError(source, field, "unknown key here (it belongs to another section: see the README's "
                             "'Experiment files')", show_value=False)
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.7)
        return SpecError(source, field, "unknown key" + (f" (did you mean {close[0]!r}?)" if close else ""),
                         show_value=False)
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
    if "\x00" in text:
        raise SpecError(source, "", "not a text file (it holds NUL bytes)", show_value=False)
    data = parse_yaml(text, source)
    if data is None:
        raise SpecError(source, "", "experiment file is empty", show_value=False)
    return experiment_from_dict(data, source)


def parse_yaml(text: str, source: str) -> Any:
    """YAML text as plain data, read safely: no duplicate or non-scalar keys, no data that holds
    itself, no alias bomb, no stack overflow; every problem a `SpecError` naming `source` and the line."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader that refuses duplicate keys
        check_plain_data(data)
    except DuplicateKey as exc:
        raise SpecError(f"{source}:{exc.line}", "", f"key {exc.key!r} given twice in one mapping (the second would "
                        "silently win)", show_value=False) from None
    except BadYamlShape as exc:
        raise SpecError(f"{source}:{exc.line}" if exc.line else source, "", exc.message, show_value=False) from None
    except RecursionError:
        raise SpecError(source, "", "nested too deeply to read", show_value=False) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(where, "", f"malformed YAML: {problem}", show_value=False) from None
    return data
