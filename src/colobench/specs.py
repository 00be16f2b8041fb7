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
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from colobench.errors import SpecError

DEVICE_PATTERN = re.compile(r"^(auto|cpu|(cuda|npu)(:\d+)?)$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

Dtype = Literal["auto", "float32", "bfloat16", "float16"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


LOADS = ("static", "closed", "open")


class LengthDist(_Frozen):
    """A token-length distribution: `{mean, std}` (normal, rounded, at least 1) or `{min, max}`
    (uniform integers, both ends included)."""

    mean: int | None = Field(None, gt=0)
    std: float | None = Field(None, ge=0)
    min: int | None = Field(None, gt=0)
    max: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_kind(self) -> "LengthDist":
        normal = self.mean is not None
        uniform = self.min is not None or self.max is not None
        if normal == uniform:
            raise ValueError("give either {mean, std} or {min, max}")
        if uniform and (self.min is None or self.max is None or self.min > self.max):
            raise ValueError("uniform lengths need min <= max")
        if normal and self.std is None:
            raise ValueError("a normal length needs std (use a plain number for a fixed length)")
        return self

    def upper_bound(self) -> int:
        """The largest length this distribution is allowed to produce (normal: mean + 4 std)."""
        if self.max is not None:
            return self.max
        return int(self.mean + 4 * (self.std or 0)) + 1


Length = Annotated[int, Field(gt=0)] | LengthDist


def length_upper_bound(length: Length) -> int:
    return length if isinstance(length, int) else length.upper_bound()


class PromptSource(_Frozen):
    """Where prompt text comes from when it is not synthetic: a local file, or the built-in set."""

    file: str | None = Field(None, description="JSONL (prompt or messages per line) or ShareGPT JSON")
    builtin: list[str] | Literal["all"] | None = Field(None, description="built-in categories, or all")

    @model_validator(mode="after")
    def _exactly_one(self) -> "PromptSource":
        if (self.file is None) == (self.builtin is None):
            raise ValueError("give either file or builtin")
        return self


class WorkloadSpec(_Frozen):
    """What one instance is asked to do.

    Load models: `static` generates `batch_size` requests together; `closed` keeps `concurrency`
    requests in flight; `open` sends requests at `rate` per second (Poisson, or gamma with
    `burstiness`) whether or not earlier ones finished, optionally capped at `concurrency` in
    flight. When `load` is not given it follows from the fields: a rate means open, a
    concurrency means closed, otherwise static.

    Every request gets exactly its output length (end-of-sequence ignored). The run is bounded by
    `requests` per repetition or, when given, by `duration_s`. Warm-up requests run first and are
    never counted.
    """

    load: Literal["static", "closed", "open"] | None = None
    prompt_tokens: Length = Field(128, description="tokens per prompt: a number or {mean, std} / {min, max}")
    output_tokens: Length = Field(64, description="tokens generated per request (exact)")
    requests: int = Field(16, gt=0, description="measured requests per repetition")
    duration_s: float | None = Field(None, gt=0, description="bound each repetition by time instead of count")
    batch_size: int | Literal["max"] = Field(1, description="static batch size; max = largest that fits")
    concurrency: int | Literal["max"] | None = Field(None, description="closed loop: in flight; open loop: cap")
    rate: float | None = Field(None, gt=0, description="open loop arrival rate, requests/s")
    arrival: Literal["poisson", "gamma", "constant"] = "poisson"
    burstiness: float = Field(1.0, gt=0, description="gamma arrivals: 1 = Poisson, > 1 burstier")
    warmup_requests: int | None = Field(None, ge=0, description="default: one batch, or `concurrency` requests")
    kv_cache_tokens: int | None = Field(None, gt=0, description="continuous batching KV cache size in tokens")
    max_parallel: int = Field(256, gt=0, description="upper bound for batch_size / concurrency 'max'")
    prompts: PromptSource | None = Field(None, description="prompt text source; synthetic token ids when absent")
    seed: int = Field(0, description="seed of prompts, lengths and arrivals")

    @field_validator("batch_size", "concurrency")
    @classmethod
    def _positive(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value <= 0:
            raise ValueError("must be greater than 0 (or max)")
        return value

    @model_validator(mode="after")
    def _load_fits_fields(self) -> "WorkloadSpec":
        load = self.load_model
        if load == "open" and self.rate is None:
            raise ValueError("load 'open' needs a rate (requests/s)")
        if load == "closed" and self.concurrency is None:
            raise ValueError("load 'closed' needs a concurrency")
        if load != "open" and self.rate is not None:
            raise ValueError(f"rate applies to load 'open', not {load!r}")
        if load == "static" and self.concurrency is not None:
            raise ValueError("concurrency applies to load 'closed' or 'open', not 'static'")
        return self

    @property
    def load_model(self) -> str:
        if self.load:
            return self.load
        if self.rate is not None:
            return "open"
        if self.concurrency is not None:
            return "closed"
        return "static"

    def max_prompt_tokens(self) -> int:
        return length_upper_bound(self.prompt_tokens)

    def max_output_tokens(self) -> int:
        return length_upper_bound(self.output_tokens)


def _optional_copy(model: type[BaseModel], name: str, doc: str) -> type[BaseModel]:
    """A model with the same fields and constraints as `model`, every one optional (default None)."""
    from pydantic import create_model
    from pydantic.fields import FieldInfo

    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        copy = FieldInfo.merge_field_infos(info, default=None, default_factory=None)
        fields[field_name] = (info.annotation | None, copy)
    return create_model(name, __base__=_Frozen, __doc__=doc, **fields)


WorkloadOverride = _optional_copy(
    WorkloadSpec, "WorkloadOverride", "Any `WorkloadSpec` fields, overriding the experiment's workload.")


class ScenarioSpec(_Frozen):
    """A named workload: fields for every instance, and/or per-instance fields by position
    (instance k gets `instances[k % len]`, so `mixed` gives A short and B long)."""

    workload: WorkloadOverride | None = None  # type: ignore[valid-type]
    instances: list[WorkloadOverride] | None = None  # type: ignore[valid-type]


class FakeTimings(_Frozen):
    """Known timings for the `fake` backend (tests and smoke checks of the pipeline itself)."""

    ttft_ms: float = Field(5.0, ge=0)
    tpot_ms: float = Field(1.0, ge=0)
    load_s: float = Field(0.0, ge=0)
    fail_batches: list[int] = Field(default_factory=list, description="measured batch ids that raise (fault tests)")
    fail_load: bool = Field(False, description="raise while loading (fault tests)")
    fail_above_batch: int | None = Field(None, gt=0, description="batches larger than this raise out of memory")


class _EndpointFields(_Frozen):
    """How to talk to an OpenAI-compatible server: shared by instances and their resolved config."""

    api: Literal["completions", "chat"] = "completions"
    api_key_env: str | None = Field(None, description="environment variable that holds the API key")
    headers: dict[str, str] = Field(default_factory=dict)
    extra_body: dict[str, Any] = Field(default_factory=dict)
    exact_output_fields: list[Literal["ignore_eos", "min_tokens"]] = Field(
        default_factory=lambda: ["ignore_eos", "min_tokens"])
    request_timeout_s: float = Field(600.0, gt=0)
    stall_timeout_s: float = Field(60.0, gt=0)
    metrics_url: str | None = Field(None, description="Prometheus URL scraped before and after each run, or auto")
    client_processes: int = Field(1, gt=0, description="load-generator processes for this instance")


class EndpointConfig(_EndpointFields):
    """The `openai` backend's resolved settings (what the worker's client uses)."""

    base_url: str


ENDPOINT_FIELDS = tuple(EndpointConfig.model_fields)


class RayPlacement(_Frozen):
    """Where the Ray launcher places one instance's actor (ignored by the local launcher).

    Unset fields follow the instance's device: a CUDA instance asks for `num_gpus` equal to its
    memory share (two instances on one card ask for 0.5 each, and Ray packs fractions onto one
    card), an Ascend instance for the same amount of the custom `NPU` resource, and every actor
    for `num_cpus` equal to its torch threads. Ray's fractions only place actors; the memory cap
    is applied by the worker itself (see `Device.cap_memory`).
    """

    num_gpus: float | None = Field(None, ge=0, description="GPUs for the actor (fractions share a card)")
    num_cpus: float | None = Field(None, ge=0, description="CPUs for the actor (default: its cpu_threads)")
    resources: dict[str, float] = Field(default_factory=dict, description="custom resources, e.g. {NPU: 0.5}")
    node_labels: dict[str, str] = Field(default_factory=dict,
                                        description="only nodes with these labels (Ray label_selector)")
    node_id: str | None = Field(None, description="pin to one node by its Ray node id (hex)")


class LaunchSpec(_Frozen):
    """How instances are started: `local` (one process per instance on this host) or `ray`
    (one Ray actor per instance, on the devices and nodes of a Ray cluster)."""

    kind: Literal["local", "ray"] = "local"
    address: str = Field("auto", description="ray: cluster address (auto, ray://host:10001, host:6379) or "
                         "local = start a private single-node Ray instance for this experiment")
    namespace: str | None = Field(None, description="ray: namespace the actors are created in")
    num_cpus: int | None = Field(None, gt=0, description="address local: CPUs the private instance offers")
    object_store_mb: int | None = Field(None, ge=80, description="address local: object store size in MiB")
    temp_dir: str | None = Field(None, description="address local: Ray's session folder (short path: sockets)")
    ship_source: bool = Field(False, description="ray: send this colobench source tree to the nodes "
                              "(runtime_env py_modules) instead of using the one installed there")
    clock_sync_rounds: int = Field(32, ge=3, le=10_000, description="round trips per actor for the clock offset")
    start_lead_s: float = Field(0.25, gt=0, le=60, description="repetitions start this long after the driver's go, "
                                "on every node's own clock")


class InstanceSpec(_EndpointFields):
    """One model on one backend on one device, or one served model behind an endpoint.

    For `backend: openai`, `model` is the served model name and the endpoint fields apply:
    `base_url` (`http://host:port/v1`), `api` (completions or chat), `api_key_env` (the name of
    the environment variable holding the key; the key itself is never written anywhere),
    `headers` and `extra_body` (added to every request), `exact_output_fields` (ignore_eos and
    min_tokens by default; [] for servers that refuse unknown fields), `tokenizer` (a local
    folder, to count tokens when the server sends no usage), `metrics_url` (a Prometheus
    `/metrics` URL, or `auto`, scraped before and after each run), `client_processes` (spread
    the load generator over several processes), `request_timeout_s`, `stall_timeout_s`.
    """

    model: str = Field(min_length=1, description="preset name, local HF checkpoint folder, or served model name")
    name: str | None = Field(None, description="label in tables and file names; derived from `model` when absent")
    backend: Literal["transformers", "fake", "openai"] = "transformers"
    base_url: str | None = Field(None, description="openai backend: http://host:port/v1")
    tokenizer: str | None = Field(None, description="local tokenizer folder for counting tokens without usage")
    device: str = Field("auto", description="auto, cpu, cuda[:N] or npu[:N]")
    dtype: Dtype = "auto"
    quantization: Literal["none", "int8", "int4"] = Field(
        "none", description="weight-only quantisation (optimum-quanto on CPU and CUDA)")
    graph: Literal["eager", "compiled"] = Field(
        "eager", description="compiled: static KV cache + torch.compile (CUDA graphs on NVIDIA)")
    env: dict[str, str] = Field(default_factory=dict, description="environment for the worker, set before torch "
                                "loads (TASK_QUEUE_ENABLE, CPU_AFFINITY_CONF, ...)")
    cpu_affinity: list[int] | Literal["auto"] | None = Field(
        None, description="pin the worker to these cores; auto = the host's cores split evenly")
    npu_jit_compile: bool | None = Field(None, description="Ascend: torch_npu.npu.set_compile_mode(jit_compile=...)")
    npu_allow_internal_format: bool | None = Field(None, description="Ascend: torch.npu.config.allow_internal_format")
    reference: str | None = Field(None, description="another instance of the same run to compare outputs with "
                                  "(token agreement, KL divergence)")
    cpu_threads: int | None = Field(None, gt=0, description="torch threads for this worker; default shares the cores evenly")
    memory_fraction: float | None = Field(
        None, gt=0, le=1, description="share of its device's memory this instance may allocate (a cap on CUDA and "
        "Ascend, and what `max` batch sizes plan for); default: what the others leave, split evenly")
    workload: WorkloadOverride | None = Field(  # type: ignore[valid-type]
        None, description="fields overriding the experiment's workload for this instance")
    fake: FakeTimings | None = None
    ray: RayPlacement | None = Field(None, description="Ray launcher: resources and node for this instance's actor")

    @field_validator("device")
    @classmethod
    def _device_format(cls, value: str) -> str:
        value = value.strip().lower()
        if not DEVICE_PATTERN.match(value):
            raise ValueError("device must be auto, cpu, cuda[:N] or npu[:N]")
        return value

    @field_validator("base_url")
    @classmethod
    def _url_format(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("base_url must start with http:// or https:// (e.g. http://127.0.0.1:8000/v1)")
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ValueError(f"{key!r} is not an environment variable name")
        return {k: str(v) for k, v in value.items()}

    @model_validator(mode="after")
    def _backend_fields(self) -> "InstanceSpec":
        if self.backend != "transformers" and (self.quantization != "none" or self.graph != "eager"):
            raise ValueError("quantization and graph apply to backend transformers (a server sets its own)")
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend openai needs base_url (http://host:port/v1)")
        if self.backend != "openai":
            if self.base_url:
                raise ValueError("base_url applies to backend openai")
            if self.client_processes != 1:
                raise ValueError("client_processes applies to backend openai")
        return self

    def endpoint_config(self) -> EndpointConfig | None:
        if self.backend != "openai":
            return None
        metrics = self.metrics_url
        if metrics == "auto":
            metrics = re.sub(r"/v1/?$", "", self.base_url.rstrip("/")) + "/metrics"
        return EndpointConfig(**{f: getattr(self, f) for f in ENDPOINT_FIELDS if f != "metrics_url"},
                              metrics_url=metrics)

    @field_validator("name")
    @classmethod
    def _name_format(cls, value: str | None) -> str | None:
        if value is not None and not NAME_PATTERN.match(value):
            raise ValueError("name may hold letters, digits, '.', '_' and '-' and must start with a letter or digit")
        return value


class TelemetrySpec(_Frozen):
    """What to sample during runs, how often, and the peak figures to compare with."""

    enabled: bool = True
    host_interval_s: float = Field(0.5, gt=0)
    nvidia_interval_s: float = Field(0.1, gt=0)
    ascend_interval_s: float = Field(1.0, gt=0, description="npu-smi is slow; DCMI, when present, samples faster")
    idle_s: float = Field(1.0, ge=0, description="seconds of idle sampling before the first run (idle power)")
    peaks: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="per device (cpu, cuda:0, npu:1): memory_bandwidth_gb_s, bf16_tflops, int8_tops")


class ExperimentSpec(_Frozen):
    """What the user asks for: instances, a workload, a scenario, sweep axes, repetitions.

    `sweep` maps axis paths to lists of values; each combination is one *point* of the
    experiment (see `colobench.sweep`). Lists written in place of a value
    (`batch_size: [1, 2, 4, 8]`) become axes too.
    """

    name: str = "colocation"
    instances: list[InstanceSpec] = Field(min_length=1)
    workload: WorkloadSpec = WorkloadSpec()
    scenario: str | None = Field(None, description="a built-in (short, long, mixed, peak) or a name in scenarios")
    scenarios: dict[str, ScenarioSpec] = Field(default_factory=dict, description="user-defined scenarios")
    sweep: dict[str, list[Any]] = Field(default_factory=dict, description="axis path -> values")
    repetitions: int = Field(3, gt=0, description="measured windows per run, for confidence intervals")
    solo_baselines: bool = Field(True, description="run each instance alone before the co-located run")
    cache_dir: str | None = Field(None, description="where built presets are kept (default ~/.cache/colobench)")
    telemetry: TelemetrySpec = TelemetrySpec()
    launch: LaunchSpec = LaunchSpec()

    @model_validator(mode="before")
    @classmethod
    def _lift_inline_lists(cls, data: Any) -> Any:
        from colobench.sweep import lift_inline_axes

        return lift_inline_axes(data) if isinstance(data, dict) else data

    @field_validator("name")
    @classmethod
    def _name_format(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError("name may hold letters, digits, '.', '_' and '-' and must start with a letter or digit")
        return value

    @field_validator("sweep")
    @classmethod
    def _sweep_axes(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        from colobench.sweep import normalise_axes

        return normalise_axes(value)

    @model_validator(mode="after")
    def _consistent(self) -> "ExperimentSpec":
        names = [i.name for i in self.instances if i.name is not None]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"instance names must be unique; repeated: {', '.join(dupes)}")
        known = self.instance_names()
        for inst in self.instances:
            if inst.reference is not None and inst.reference not in known:
                raise ValueError(f"reference {inst.reference!r} is not an instance ({', '.join(known)})")
        scenario_names = [self.scenario] if self.scenario else []
        scenario_names += [v for v in self.sweep.get("scenario", []) if isinstance(v, str)]
        for name in scenario_names:
            if self.scenario_definition(name) is None:
                from colobench.workload.scenarios import BUILTIN_SCENARIOS

                known = ", ".join([*BUILTIN_SCENARIOS, *self.scenarios])
                raise ValueError(f"unknown scenario {name!r}; known: {known}")
        if not self.sweep:  # a sweep validates each point when it is expanded
            for k in range(len(self.instances)):
                self.workload_for(k)
        return self

    def scenario_definition(self, name: str) -> dict[str, Any] | None:
        from colobench.workload.scenarios import BUILTIN_SCENARIOS

        if name in self.scenarios:
            return self.scenarios[name].model_dump(exclude_none=True)
        return BUILTIN_SCENARIOS.get(name)

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
        """Instance `index`'s workload: the experiment's, then the instance's own fields, then the
        scenario's. Raises ValueError naming the instance if the combination is invalid."""
        from colobench.workload.scenarios import scenario_fields

        fields = self.workload.model_dump(exclude_unset=True)
        override = self.instances[index].workload
        if override is not None:
            fields.update(override.model_dump(exclude_unset=True, exclude_none=True))
        try:
            merged = WorkloadSpec.model_validate(fields)
            if self.scenario:
                fields.update(scenario_fields(self.scenario_definition(self.scenario) or {}, index, merged.load_model))
                merged = WorkloadSpec.model_validate(fields)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            message = first["msg"].removeprefix("Value error, ")
            raise ValueError(f"instances[{index}].workload{'.' + where if where else ''}: {message}") from None
        return merged


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


def model_label(model: str) -> str:
    """A short readable label for a model reference: the preset name or the folder's name."""
    label = Path(model.rstrip("/")).name or model
    label = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-._").lower()
    return label or "model"


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
