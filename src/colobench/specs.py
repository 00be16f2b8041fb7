"""Typed, frozen configuration: what the user asks for, validated once, with no side effects.

Vocabulary (see DESIGN.md):

- an **instance** is one model served by one backend on one device (`InstanceSpec`);
- a **workload** is what an instance is asked to do (`WorkloadSpec`);
- an **experiment** is what the user asks for (`ExperimentSpec`): its instances, each run alone
  (the *solo* baselines) and then all together (the *co-located* run), each repeated.

This module only checks shapes and values. It never looks at the filesystem, the environment
or a device: whether `cuda:3` exists or a checkpoint folder is there is decided by
`colobench.api` just before anything runs, so validation is pure and testable anywhere.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from colobench.errors import SpecError

DEVICE_PATTERN = re.compile(r"^(auto|cpu|(cuda|npu)(:\d+)?)$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

Dtype = Literal["auto", "float32", "bfloat16", "float16"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WorkloadSpec(_Frozen):
    """A static-batch workload with exact lengths: every request has `prompt_tokens` tokens in and
    exactly `output_tokens` out (end-of-sequence is ignored), `batch_size` requests are generated
    together, and `warmup_batches` batches run first and are never counted."""

    prompt_tokens: int = Field(128, gt=0, description="tokens per prompt")
    output_tokens: int = Field(64, gt=0, description="tokens generated per request (exact)")
    requests: int = Field(16, gt=0, description="measured requests per repetition")
    batch_size: int = Field(1, gt=0, description="requests generated together")
    warmup_batches: int = Field(1, ge=0, description="batches run before measuring, never counted")
    seed: int = Field(0, description="seed of the synthetic prompt generator")


class WorkloadOverride(_Frozen):
    """An instance's own workload: any `WorkloadSpec` field, overriding the experiment's."""

    prompt_tokens: int | None = Field(None, gt=0)
    output_tokens: int | None = Field(None, gt=0)
    requests: int | None = Field(None, gt=0)
    batch_size: int | None = Field(None, gt=0)
    warmup_batches: int | None = Field(None, ge=0)
    seed: int | None = None


class FakeTimings(_Frozen):
    """Known timings for the `fake` backend (tests and smoke checks of the pipeline itself)."""

    ttft_ms: float = Field(5.0, ge=0)
    tpot_ms: float = Field(1.0, ge=0)
    load_s: float = Field(0.0, ge=0)
    fail_batches: list[int] = Field(default_factory=list, description="measured batch ids that raise (fault tests)")
    fail_load: bool = Field(False, description="raise while loading (fault tests)")


class InstanceSpec(_Frozen):
    """One model on one backend on one device."""

    model: str = Field(min_length=1, description="preset name (see `colobench presets`) or a local HF checkpoint folder")
    name: str | None = Field(None, description="label in tables and file names; derived from `model` when absent")
    backend: Literal["transformers", "fake"] = "transformers"
    device: str = Field("auto", description="auto, cpu, cuda[:N] or npu[:N]")
    dtype: Dtype = "auto"
    cpu_threads: int | None = Field(None, gt=0, description="torch threads for this worker; default shares the cores evenly")
    workload: WorkloadOverride | None = Field(None, description="fields overriding the experiment's workload for this instance")
    fake: FakeTimings | None = None

    @field_validator("device")
    @classmethod
    def _device_format(cls, value: str) -> str:
        value = value.strip().lower()
        if not DEVICE_PATTERN.match(value):
            raise ValueError("device must be auto, cpu, cuda[:N] or npu[:N]")
        return value

    @field_validator("name")
    @classmethod
    def _name_format(cls, value: str | None) -> str | None:
        if value is not None and not NAME_PATTERN.match(value):
            raise ValueError("name may hold letters, digits, '.', '_' and '-' and must start with a letter or digit")
        return value


class ExperimentSpec(_Frozen):
    """What the user asks for: instances, a workload, repetitions."""

    name: str = "colocation"
    instances: list[InstanceSpec] = Field(min_length=1)
    workload: WorkloadSpec = WorkloadSpec()
    repetitions: int = Field(3, gt=0, description="measured windows per run, for confidence intervals")
    solo_baselines: bool = Field(True, description="run each instance alone before the co-located run")
    cache_dir: str | None = Field(None, description="where built presets are kept (default ~/.cache/colobench)")

    @field_validator("name")
    @classmethod
    def _name_format(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError("name may hold letters, digits, '.', '_' and '-' and must start with a letter or digit")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> "ExperimentSpec":
        names = [i.name for i in self.instances if i.name is not None]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"instance names must be unique; repeated: {', '.join(dupes)}")
        return self

    def instance_names(self) -> list[str]:
        """Names of the instances, derived from the model where not given (`tiny-1`, `tiny-2`)."""
        bases = [i.name or model_label(i.model) for i in self.instances]
        explicit = [i.name is not None for i in self.instances]
        out: list[str] = []
        for k, base in enumerate(bases):
            if not explicit[k] and bases.count(base) > 1:
                base = f"{base}-{bases[:k + 1].count(base)}"
            out.append(base)
        return out

    def workload_for(self, index: int) -> WorkloadSpec:
        """The experiment's workload with the instance's own overrides applied."""
        override = self.instances[index].workload
        if override is None:
            return self.workload
        return self.workload.model_copy(update=override.model_dump(exclude_unset=True, exclude_none=True))


def model_label(model: str) -> str:
    """A short readable label for a model reference: the preset name or the folder's name."""
    label = Path(model.rstrip("/")).name or model
    label = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-._").lower()
    return label or "model"


# ---- loading and error formatting -------------------------------------------------------------


def _loc_to_field(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def validation_error_to_spec_error(err: ValidationError, source: str, field_names: dict[str, str] | None = None) -> SpecError:
    """The first problem of a pydantic error as one line: source, field path, message, value."""
    first = err.errors()[0]
    field = _loc_to_field(first["loc"])
    if field_names and field in field_names:
        field = field_names[field]
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
        return SpecError(source, field, message, show_value=False)
    if first["type"] == "missing":
        return SpecError(source, field, "required field is missing", show_value=False)
    more = len(err.errors()) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
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
