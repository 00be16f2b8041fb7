"""Typed, frozen configuration: the parts of an experiment, validated once, with no side effects.

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

import os
import re
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator
from pydantic.fields import FieldInfo

from colobench.specs.knobs import knob, knobs_of
from colobench.text import header_value_error
from colobench.typed import Frozen

DEVICE_PATTERN = re.compile(r"^(auto|cpu|(cuda|npu)(:\d+)?)$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MANAGED_BASE_URL = "http://127.0.0.1:{port}/v1"  # a managed server's instance, until the server has its port

Dtype = Literal["auto", "float32", "bfloat16", "float16"]


# Upper bounds: a value past these is a typo or a unit mistake, never an experiment (a batch of
# a billion took 10 GB before it was killed). Every number in a spec has a range.
MAX_TOKENS = 10_000_000  # prompt or output tokens of one request
MAX_PARALLEL = 65_536  # batch size, concurrency
MAX_REQUESTS = 10_000_000  # per repetition
MAX_REPETITIONS = 1_000
MAX_DURATION_S = 7 * 24 * 3600.0
MAX_RATE = 1_000_000.0  # requests/s
MAX_TIMEOUT_S = 24 * 3600.0
MAX_THREADS = 4_096
MAX_SEED = 2**63 - 1


def _takes_bool(annotation: Any) -> bool:
    """Whether a field's type admits a boolean (bool, Any, or a union or Literal holding one)."""
    if annotation is bool or annotation is Any:
        return True
    if get_origin(annotation) is Literal:
        return any(isinstance(a, bool) for a in get_args(annotation))
    return any(_takes_bool(a) for a in get_args(annotation)) if get_origin(annotation) in (Union, UnionType) else False


ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def checked_name(value: str) -> str:
    """A name that prefixes folders, files and point ids (an experiment, instance or server)."""
    if not NAME_PATTERN.match(value):
        raise ValueError("name may hold letters, digits, '.', '_' and '-' and must start with a letter or digit")
    return value


def env_names(value: dict[str, Any]) -> dict[str, str]:
    """Environment variables of a worker or a server: names a shell accepts, values as text
    (no NUL byte: the operating system cannot pass one)."""
    for key, item in value.items():
        if not ENV_NAME.match(key):
            raise ValueError(f"{key!r} is not an environment variable name")
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise ValueError(f"the value of {key} must be text or a number")  # never the value: it may be a key
        if "\x00" in str(item):
            raise ValueError(f"the value of {key} holds a NUL byte")
        if key.upper() in THREAD_COUNT_VARS and not re.fullmatch(r"[1-9]\d*(,[1-9]\d*)*", str(item).strip()):
            raise ValueError(f"{key} must be a positive thread count (got {str(item)!r})")
    return {k: str(v) for k, v in value.items()}


# thread counts read by the math libraries: 0 or a negative count is refused here, not silently
# replaced by a default in the worker
THREAD_COUNT_VARS = frozenset({"OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                               "VECLIB_MAXIMUM_THREADS", "BLIS_NUM_THREADS"})


CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token


def checked_http_url(value: str, what: str) -> str:
    """An http(s) URL that an HTTP client can use as is: scheme, a host, a numeric port in range,
    no whitespace or control character (which would inject into the request line). Raises
    ValueError naming `what` and the fault, so a bad `-e` is one line, not a client traceback."""
    example = "http://127.0.0.1:8000/v1" if what == "base_url" else "http://127.0.0.1:8000/metrics"
    if CONTROL_CHARS.search(value) or any(ch.isspace() for ch in value):
        raise ValueError(f"{what} holds a space or a control character")
    if not re.match(r"^https?://", value, re.IGNORECASE):
        raise ValueError(f"{what} must start with http:// or https:// (e.g. {example})")
    try:
        parts = urlsplit(value.replace("{port}", "1"))  # a managed server's URL before it has its port
        port = parts.port  # raises ValueError on a port that is not a number or out of range
    except ValueError as exc:
        raise ValueError(f"{what} is not a valid URL ({exc}; e.g. {example})") from None
    if not parts.hostname:
        raise ValueError(f"{what} has no host (e.g. {example})")
    if port == 0:
        raise ValueError(f"{what}: port 0 is not a server's port")
    try:
        parts.hostname.encode("idna")
    except UnicodeError:
        raise ValueError(f"{what} has a host name that cannot be encoded ({parts.hostname!r})") from None
    return value


def checked_headers(value: dict[str, Any]) -> dict[str, str]:
    """Extra request headers: names that are HTTP tokens, values that can be sent (no CR/LF)."""
    out = {}
    for name, item in value.items():
        if not isinstance(name, str) or not HEADER_NAME.match(name):
            raise ValueError(f"{name!r} is not an HTTP header name")
        text = str(item)
        problem = header_value_error(text)
        if problem:
            raise ValueError(f"the value of header {name} {problem}")  # never the value: it may be a secret
        out[name] = text
    return out


class SpecModel(Frozen):
    """What a user writes: frozen, unknown keys refused, and stricter than colobench's own models:
    infinities and NaN refused, and a boolean is never a number (`requests: true` is an error, not 1)."""

    model_config = ConfigDict(allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: Any) -> Any:
        if isinstance(value, bool) and info.field_name in cls.model_fields \
                and not _takes_bool(cls.model_fields[info.field_name].annotation):
            annotation = cls.model_fields[info.field_name].annotation
            numeric = any(t in (int, float) for t in (annotation, *get_args(annotation)))
            raise ValueError("expected a number, not a boolean" if numeric else "a boolean is not a valid value here")
        return value


LOADS = ("static", "closed", "open")


class LengthDist(SpecModel):
    """A token-length distribution: `{mean, std}` (normal, rounded, at least 1) or `{min, max}`
    (uniform integers, both ends included)."""

    mean: int | None = Field(None, gt=0, le=MAX_TOKENS)
    std: float | None = Field(None, ge=0, le=MAX_TOKENS)
    min: int | None = Field(None, gt=0, le=MAX_TOKENS)
    max: int | None = Field(None, gt=0, le=MAX_TOKENS)

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


Length = Annotated[int, Field(gt=0, le=MAX_TOKENS)] | LengthDist


def length_upper_bound(length: Length) -> int:
    return length if isinstance(length, int) else length.upper_bound()


class PromptSource(SpecModel):
    """Where prompt text comes from when it is not synthetic: a local file, or the built-in set."""

    file: str | None = Field(None, description="JSONL (prompt or messages per line) or ShareGPT JSON")
    builtin: list[str] | Literal["all"] | None = Field(None, description="built-in categories, or all")
    output: Literal["workload", "data"] = Field("workload", description="output lengths: the workload's "
                                                "output_tokens, or each prompt's own reference answer (data)")
    min_prompt_tokens: int | None = Field(None, gt=0, le=MAX_TOKENS, description="leave out shorter prompts")
    max_prompt_tokens: int | None = Field(None, gt=0, le=MAX_TOKENS, description="leave out longer prompts")
    max_output_tokens: int | None = Field(None, gt=0, le=MAX_TOKENS, description="output: data: leave out "
                                          "prompts whose answer is longer")

    @model_validator(mode="after")
    def _exactly_one(self) -> "PromptSource":
        if (self.file is None) == (self.builtin is None):
            raise ValueError("give either file or builtin")
        return self


class SharedPrefix(SpecModel):
    """A prefix of `tokens` tokens that `share` of the requests start with (a system prompt, a
    few-shot preamble): the server's prefix cache is meant to hit it. Without it every request of
    a run has a prompt no other request shares."""

    tokens: int = Field(gt=0, le=MAX_TOKENS, description="length of the shared prefix, in tokens")
    share: float = Field(1.0, gt=0, le=1, description="share of the requests that start with it")


class Sessions(SpecModel):
    """Multi-turn sessions: each request is a turn; a session's turns go one after the other, the
    next `think_time_s` after the previous answer, each turn's prompt the whole conversation so
    far (earlier prompts, a stand-in of each answer, the new message), so a prefix cache hits the
    earlier turns on purpose. `prompt_tokens` is each new message's length."""

    turns: int = Field(gt=1, le=1000, description="turns per session")
    think_time_s: float = Field(0.0, ge=0, le=3600, description="pause between an answer and the next turn")


def length_lower_bound(length: Length) -> int:
    """The shortest length a fixed length or distribution is expected to give (normal: mean - 3 std)."""
    if isinstance(length, int):
        return length
    if length.min is not None:
        return length.min
    return max(1, int(length.mean - 3 * (length.std or 0)))


class Ramp(SpecModel):
    """An open-loop rate that ramps within each repetition: from the workload's `rate` to
    `to_rate` over its `duration_s`, in `steps` steps (`step`: each step at its own constant
    rate; `linear`: a straight line, reported in `steps` segments)."""

    to_rate: float = Field(gt=0, le=MAX_RATE)
    steps: int = Field(4, ge=2, le=100)
    shape: Literal["step", "linear"] = "step"


class WorkloadSpec(SpecModel):
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

    load: Literal["static", "closed", "open"] | None = knob(
        None, help="static, closed or open (inferred: a rate means open, a concurrency closed)", flag="--load",
        panel="load", axis=True, id_style="value")
    prompt_tokens: Length = knob(128, help="tokens per prompt: a number or {mean, std} / {min, max}",
                                 flag="--prompt-tokens", short="-p", parse="int", metavar="N", axis=True)
    output_tokens: Length = knob(64, help="tokens generated per request (exact)", flag="--output-tokens",
                                 short="-n", parse="int", metavar="N", axis=True)
    requests: int = knob(16, help="measured requests per repetition", flag="--requests", short="-r",
                         aliases=("--num-prompts",), parse="int", metavar="N", axis=True, gt=0,
                         le=MAX_REQUESTS)
    duration_s: float | None = knob(None, help="bound each repetition by seconds instead of a request count",
                                    flag="--duration", parse="float", metavar="S", axis=True, abbrev="dur", gt=0,
                                    le=MAX_DURATION_S)
    batch_size: int | Literal["max"] = knob(1, help="static batch size, or max (the largest that fits)",
                                            flag="--batch-size", short="-b", parse="int|max", metavar="N",
                                            panel="load", axis=True)
    concurrency: int | Literal["max"] | None = knob(
        None, help="closed loop: requests in flight; open loop: cap; or max", flag="--concurrency", short="-c",
        aliases=("--max-concurrency",), parse="int|max", metavar="N", panel="load", axis=True)
    rate: float | None = knob(None, help="open loop: requests/s", flag="--rate", aliases=("--request-rate",),
                              parse="float", metavar="REQ_S", panel="load", axis=True, abbrev="rate", gt=0,
                              le=MAX_RATE)
    arrival: Literal["poisson", "gamma", "constant"] = knob(
        "poisson", help="open-loop arrivals: poisson, gamma or constant", flag="--arrival", panel="load", axis=True,
        id_style="value")
    burstiness: float = knob(1.0, help="gamma arrivals: 1 = Poisson, > 1 burstier", flag="--burstiness",
                             parse="float", metavar="X", panel="load", axis=True, abbrev="burst", gt=0, le=1000)
    warmup_requests: int | None = knob(None, help="warm-up requests (default: one batch, or `concurrency` requests)",
                                       flag="--warmup-requests", parse="int", metavar="N", axis=True, abbrev="w", ge=0,
                                       le=MAX_REQUESTS)
    kv_cache_tokens: int | None = knob(None, help="continuous batching: KV cache size in tokens",
                                       flag="--kv-cache-tokens", parse="int", metavar="N", panel="load", axis=True,
                                       abbrev="kv", gt=0, le=MAX_PARALLEL * MAX_TOKENS)
    max_parallel: int = Field(256, gt=0, le=MAX_PARALLEL, description="upper bound for batch_size / concurrency 'max'")
    prompts: PromptSource | None = knob(
        None, help="prompt file (JSONL / ShareGPT), builtin, or builtin:code,en_qa; repeat the flag for an axis",
        flag="--prompts", parse="prompts", metavar="SOURCE", axis=True, id_style="prompts", repeat=True)
    seed: int = knob(0, help="seed of prompts, lengths and arrivals", flag="--seed", parse="int", metavar="N",
                     axis=True, abbrev="seed", ge=0, le=MAX_SEED)
    shared_prefix: SharedPrefix | None = knob(
        None, help="a prefix shared on purpose: TOKENS, or TOKENS:SHARE of the requests (default: no two prompts "
        "share one)", flag="--shared-prefix", parse="prefix", metavar="TOKENS[:SHARE]", axis=True, id_style="shared")
    sessions: Sessions | None = Field(None, description="multi-turn sessions (closed or open loop): turns, "
                                      "think_time_s; open loop: `rate` counts turns, sessions start at rate / turns")
    ramp: Ramp | None = knob(None, help="open loop: a rate that ramps within each repetition, from --rate to TO_RATE "
                             "over --duration in STEPS steps (step: constant within each; linear: a straight line); "
                             "metrics per step", flag="--ramp", parse="ramp", metavar="TO_RATE[:STEPS[:step|linear]]",
                             panel="load", axis=True, id_style="ramp")
    trace: str | None = knob(None, help="replay a trace: Mooncake JSONL, Azure or BurstGPT CSV, each request at its "
                             "time with its lengths and shared blocks (an open loop; --duration cuts it)", flag="--trace",
                             metavar="FILE", panel="load", axis=True, id_style="trace")
    trace_speed: float = knob(1.0, help="trace replay: time scale (2 = twice as fast)", flag="--trace-speed",
                              parse="float", metavar="X", panel="load", axis=True, abbrev="speed", gt=0, le=1000)
    trace_format: Literal["auto", "mooncake", "azure", "burstgpt"] = Field(
        "auto", description="trace file format (auto: a .csv naming `Request tokens` is BurstGPT, another .csv Azure, "
        "else Mooncake JSONL)")
    trace_block_tokens: int = Field(512, gt=0, le=65536, description="tokens per hash_ids block of a Mooncake trace")

    @field_validator("trace")
    @classmethod
    def _trace_path(cls, value: str | None) -> str | None:
        """Absolute (no file is read here): the workers and a later --resume find the same file."""
        return os.path.abspath(os.path.expanduser(value)) if value else value

    @field_validator("batch_size", "concurrency")
    @classmethod
    def _positive(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value <= 0:
            raise ValueError("must be greater than 0 (or max)")
        if isinstance(value, int) and value > MAX_PARALLEL:
            raise ValueError(f"must be at most {MAX_PARALLEL:,} (or max: the largest that fits)")
        return value

    @model_validator(mode="after")
    def _load_fits_fields(self) -> "WorkloadSpec":
        load = self.load_model
        if self.trace is not None:
            if load != "open":
                raise ValueError(f"a trace is replayed in an open loop (each request at its time), not {load!r}")
            if self.rate is not None:
                raise ValueError("a trace sets its own arrival times: drop rate (--trace-speed scales them)")
            if self.prompts is not None or self.sessions is not None or self.shared_prefix is not None:
                raise ValueError("a trace gives every request's lengths and shared blocks: drop prompts, sessions "
                                 "and shared_prefix")
            return self
        if self.ramp is not None:
            if load != "open" or self.rate is None or self.duration_s is None:
                raise ValueError("a ramp needs an open loop with a start rate and a duration (--rate R --duration S "
                                 "--ramp TO_RATE)")
            if self.sessions is not None:
                raise ValueError("a ramp applies to single requests, not sessions")
        if load == "open" and self.rate is None:
            raise ValueError("load 'open' needs a rate (requests/s)")
        if load == "closed" and self.concurrency is None:
            raise ValueError("load 'closed' needs a concurrency")
        if load != "open" and self.rate is not None:
            raise ValueError(f"rate applies to load 'open', not {load!r}")
        if load == "static" and self.concurrency is not None:
            raise ValueError("concurrency applies to load 'closed' or 'open', not 'static'")
        if self.sessions is not None:
            if load == "static":
                raise ValueError("sessions need load 'closed' or 'open': a turn waits for the previous answer")
            if self.prompts is not None:
                raise ValueError("sessions apply to synthetic prompts, not prompts from a file or the built-in set")
        if self.shared_prefix is not None:
            if self.prompts is not None:
                raise ValueError("shared_prefix applies to synthetic prompts, not prompts from a file or the built-in set")
            if self.shared_prefix.tokens >= length_lower_bound(self.prompt_tokens):
                raise ValueError(f"shared_prefix.tokens ({self.shared_prefix.tokens}) must be below the shortest "
                                 f"prompt ({length_lower_bound(self.prompt_tokens)} tokens): each request adds its own")
        return self

    @property
    def load_model(self) -> str:
        if self.load:
            return self.load
        if self.rate is not None or self.trace is not None:
            return "open"
        if self.concurrency is not None:
            return "closed"
        return "static"

    def max_prompt_tokens(self) -> int:
        """The longest prompt: a session's last turn carries every earlier message and answer."""
        turns = self.sessions.turns if self.sessions is not None else 1
        return turns * length_upper_bound(self.prompt_tokens) + (turns - 1) * length_upper_bound(self.output_tokens)

    def max_output_tokens(self) -> int:
        return length_upper_bound(self.output_tokens)


def _optional_copy(model: type[BaseModel], name: str, doc: str) -> type[BaseModel]:
    """A model with the same fields and constraints as `model`, every one optional (default None)."""
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        copy = FieldInfo.merge_field_infos(info, default=None, default_factory=None)
        fields[field_name] = (info.annotation | None, copy)
    return create_model(name, __base__=SpecModel, __doc__=doc, **fields)


WorkloadOverride = _optional_copy(
    WorkloadSpec, "WorkloadOverride", "Any `WorkloadSpec` fields, overriding the experiment's workload.")


class ScenarioSpec(SpecModel):
    """A named workload: fields for every instance, and/or per-instance fields by position
    (instance k gets `instances[k % len]`, so `mixed` gives A short and B long)."""

    workload: WorkloadOverride | None = None  # type: ignore[valid-type]
    instances: list[WorkloadOverride] | None = None  # type: ignore[valid-type]


class FakeTimings(SpecModel):
    """Known timings for the `fake` backend (tests and smoke checks of the pipeline itself)."""

    ttft_ms: float = Field(5.0, ge=0, le=3_600_000)
    tpot_ms: float = Field(1.0, ge=0, le=3_600_000)
    load_s: float = Field(0.0, ge=0, le=MAX_TIMEOUT_S)
    fail_batches: list[int] = Field(default_factory=list, description="measured batch ids that raise (fault tests)")
    fail_load: bool = Field(False, description="raise while loading (fault tests)")
    fail_above_batch: int | None = Field(None, gt=0, le=MAX_PARALLEL,
                                         description="batches larger than this raise out of memory")
    contention: float = Field(1.0, ge=1.0, le=1000, description="TTFT and TPOT times this while another fake instance on "
                                                       "the same shared_device is busy (planted interference)")
    shared_device: str | None = Field(None, description="a folder: fake instances naming the same one contend")
    reserved_mb: float | None = Field(None, ge=0, le=2**24, description="planted allocator figures (fragmentation tests)")
    allocated_mb: float | None = Field(None, ge=0, le=2**24)


class _EndpointFields(SpecModel):
    """How to talk to an OpenAI-compatible server: shared by instances and their resolved config."""

    api: Literal["completions", "chat"] = knob("completions", help="endpoints: completions or chat", flag="--api",
                                               panel="endpoints", backends=("openai",))
    api_key_env: str | None = knob(None, help="endpoints: the environment variable that holds the API key",
                                   flag="--api-key-env", metavar="VAR", panel="endpoints", backends=("openai",))
    headers: dict[str, str] = Field(default_factory=dict)
    secret_headers: list[str] = Field(default_factory=list, description="header names whose values are secrets "
                                      "(besides those named like credentials): scrubbed from everything written")
    extra_body: dict[str, Any] = Field(default_factory=dict)
    exact_output_fields: list[Literal["ignore_eos", "min_tokens"]] = Field(
        default_factory=lambda: ["ignore_eos", "min_tokens"])
    request_timeout_s: float = Field(600.0, gt=0, le=MAX_TIMEOUT_S)
    stall_timeout_s: float = Field(60.0, gt=0, le=MAX_TIMEOUT_S)
    metrics_url: str | None = knob(None, help="endpoints: scrape the server's /metrics at every window boundary "
                                   "(auto: <base>/metrics; on by default for managed servers, off turns it off)",
                                   flag="--scrape-metrics", parse="auto", panel="endpoints", backends=("openai",))
    server_pid: int | None = knob(None, help="endpoints: the server's process id (a server on this host), to sample "
                                  "its memory", flag="--server-pid", parse="int", metavar="PID", panel="endpoints",
                                  backends=("openai",), gt=0, le=2**22)
    client_processes: int = knob(1, help="endpoints: load-generator processes", flag="--client-processes",
                                 parse="int", metavar="N", panel="endpoints", backends=("openai",), gt=0, le=256)

    @field_validator("metrics_url", mode="before")
    @classmethod
    def _metrics_url(cls, value: Any) -> Any:
        if isinstance(value, bool):  # YAML reads `metrics_url: off` as false (and `on` as true)
            return "auto" if value else "off"
        if isinstance(value, str):
            value = value.strip()
            if value.lower() in ("auto", "off", "none"):
                return "off" if value.lower() == "none" else value.lower()
            if not re.match(r"^https?://", value, re.IGNORECASE):
                raise ValueError("metrics_url must be auto, off, or an http(s) URL (e.g. http://127.0.0.1:8000/metrics)")
            return checked_http_url(value, "metrics_url")
        return value

    @field_validator("headers", mode="before")
    @classmethod
    def _headers(cls, value: Any) -> Any:
        return checked_headers(value) if isinstance(value, dict) else value


def metrics_url_of(metrics_url: str | None, base_url: str, managed: bool) -> str | None:
    """The URL to scrape: `auto` is `{base}/metrics` (the base URL without its trailing `/v1`);
    unset means auto for a managed server (colobench started it: its counters are there to read)
    and off for another; `off` is off."""
    if metrics_url is None:
        metrics_url = "auto" if managed else "off"
    if metrics_url == "off":
        return None
    if metrics_url == "auto":
        return re.sub(r"/v1$", "", base_url.rstrip("/")) + "/metrics"
    return metrics_url


class EndpointConfig(_EndpointFields):
    """The `openai` backend's resolved settings (what the worker's client uses)."""

    base_url: str


ENDPOINT_FIELDS = tuple(EndpointConfig.model_fields)


class RayPlacement(SpecModel):
    """Where the Ray launcher places one instance's actor (ignored by the local launcher).

    Unset fields follow the instance's device: a CUDA instance asks for `num_gpus` equal to its
    memory share (two instances on one card ask for 0.5 each, and Ray packs fractions onto one
    card), an Ascend instance for the same amount of the custom `NPU` resource, and every actor
    for `num_cpus` equal to its torch threads. Ray's fractions only place actors; the memory cap
    is applied by the worker itself (see `Device.cap_memory`).
    """

    num_gpus: float | None = Field(None, ge=0, le=1024, description="GPUs for the actor (fractions share a card)")
    num_cpus: float | None = Field(None, ge=0, le=MAX_THREADS, description="CPUs for the actor (default: its cpu_threads)")
    resources: dict[str, float] = Field(default_factory=dict, description="custom resources, e.g. {NPU: 0.5}")
    node_labels: dict[str, str] = Field(default_factory=dict,
                                        description="only nodes with these labels (Ray label_selector)")
    node_id: str | None = Field(None, description="pin to one node by its Ray node id (hex)")


class LaunchSpec(SpecModel):
    """How instances are started: `local` (one process per instance on this host) or `ray`
    (one Ray actor per instance, on the devices and nodes of a Ray cluster)."""

    kind: Literal["local", "ray"] = knob("local", help="local (processes here) or ray (actors on a Ray cluster)",
                                         flag="--launcher", panel="launch")
    address: str | None = knob(
        None, help="ray: auto, host:6379, ray://host:10001 or local (a private one-node Ray); default: a running "
        "cluster if there is one, else a private one", flag="--ray-address", metavar="ADDRESS", panel="launch")
    namespace: str | None = Field(None, description="ray: namespace the actors are created in")
    num_cpus: int | None = Field(None, gt=0, le=MAX_THREADS, description="address local: CPUs the private instance offers")
    object_store_mb: int | None = Field(None, ge=80, le=2**24, description="address local: object store size in MiB")
    temp_dir: str | None = Field(None, description="address local: Ray's session folder (short path: sockets)")
    ship_source: bool = Field(False, description="ray: send this colobench source tree to the nodes "
                              "(runtime_env py_modules) instead of using the one installed there")
    clock_sync_rounds: int = Field(32, ge=3, le=10_000, description="round trips per actor for the clock offset")
    start_lead_s: float = Field(0.25, gt=0, le=60, description="repetitions start this long after the driver's go, "
                                "on every node's own clock")


SLO_OBJECTIVES = ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms")


class SLOSpec(SpecModel):
    """Latency objectives of one instance: a request is good when it meets every one given (see
    `analysis.phase.slo_result`); goodput counts good requests per second, as vLLM's `--goodput`
    and AIPerf do."""

    ttft_ms: float | None = Field(None, gt=0, le=MAX_TIMEOUT_S * 1e3, description="time to the first token")
    tpot_ms: float | None = Field(None, gt=0, le=MAX_TIMEOUT_S * 1e3, description="mean time per output token "
                                  "after the first")
    itl_ms: float | None = Field(None, gt=0, le=MAX_TIMEOUT_S * 1e3, description="every gap between tokens")
    e2el_ms: float | None = Field(None, gt=0, le=MAX_TIMEOUT_S * 1e3, description="end-to-end latency")

    def objectives(self) -> dict[str, float]:
        return {k: v for k in SLO_OBJECTIVES if (v := getattr(self, k)) is not None}

    @model_validator(mode="after")
    def _one_at_least(self) -> "SLOSpec":
        if not self.objectives():
            raise ValueError(f"an slo needs at least one of {', '.join(SLO_OBJECTIVES)}")
        return self


class InstanceKnobs(SpecModel):
    """The fields an instance and its resolved form share: what each worker applies.

    Each is a knob (see `colobench.specs.knobs`): declared once here, it becomes a `colobench run`
    option, a sweep axis, part of point ids and of the knobs recorded with the worker.
    """

    device: str = knob("auto", help="auto, cpu, cuda[:N] or npu[:N]", flag="--device", short="-d",
                       metavar="DEVICE", panel="model and device", axis=True, id_style="value")
    dtype: Dtype = knob("auto", help="auto, float32, bfloat16 or float16", flag="--dtype", panel="model and device",
                        axis=True, id_style="dtype", quality=True)
    quantization: Literal["none", "int8", "int4"] = knob(
        "none", help="weight-only quantisation (optimum-quanto on CPU and CUDA)", flag="--quantization",
        panel="variants", axis=True, id_style="value", quality=True, backends=("transformers",))
    graph: Literal["eager", "compiled"] = knob(
        "eager", help="compiled: static KV cache + torch.compile (CUDA graphs, Inductor, torchair)", flag="--graph",
        panel="variants", axis=True, id_style="value", quality=True, backends=("transformers",))
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2", "flex_attention"] | None = knob(
        None, help="transformers' attention kernel (default: the library's choice)", flag="--attn-implementation",
        metavar="KERNEL", panel="variants", axis=True, id_style="value", quality=True, backends=("transformers",))
    env: dict[str, str] = knob(default_factory=dict, help="KEY=VALUE set in the worker before torch loads "
                               "(TASK_QUEUE_ENABLE, CPU_AFFINITY_CONF, ...); KEY=V1,V2 is an axis", flag="--env",
                               parse="env", metavar="KEY=VALUE", panel="variants", axis=True, repeat=True)
    cpu_affinity: list[int] | Literal["auto"] | None = knob(
        None, help="pin the worker to cores: auto (the host's cores split evenly), none, or 0-3", flag="--cpu-affinity",
        parse="cores", metavar="CORES", panel="variants", axis=True, id_style="cores", list_valued=True)
    cpu_threads: int | None = knob(None, help="torch threads per worker (default: the cores shared evenly)",
                                   flag="--cpu-threads", parse="int", metavar="N", panel="model and device", axis=True,
                                   abbrev="t", gt=0, le=MAX_THREADS)
    memory_fraction: float | None = knob(
        None, help="share of the device's memory this instance may allocate (a cap on CUDA and Ascend, and what "
        "`max` batch sizes plan for); default: what the others leave, split evenly", flag="--memory-fraction",
        parse="float", metavar="F", panel="model and device", axis=True, abbrev="mem", gt=0, le=1)
    npu_jit_compile: bool | None = knob(
        None, help="Ascend: online operator compilation (torch_npu.npu.set_compile_mode(jit_compile=...))",
        flag="--npu-jit-compile", parse="bool", metavar="true|false", panel="variants", axis=True, abbrev="jit",
        id_style="bool", device_kinds=("npu",))
    ascend_log_level: Literal["debug", "info", "warning", "error"] | None = knob(
        None, help="Ascend: CANN log level of the worker (ASCEND_GLOBAL_LOG_LEVEL); its logs are kept and scanned",
        flag="--ascend-log-level", panel="variants", axis=True, abbrev="log", id_style="value", device_kinds=("npu",))
    npu_allow_internal_format: bool | None = knob(
        None, help="Ascend: private weight formats (torch.npu.config.allow_internal_format)",
        flag="--npu-allow-internal-format", parse="bool", metavar="true|false", panel="variants", axis=True,
        abbrev="nz", id_style="bool", device_kinds=("npu",))

    slo: SLOSpec | None = knob(
        None, help="latency objectives, e.g. ttft_ms=200,tpot_ms=50 (also itl_ms, e2el_ms): a request is good "
        "when it meets all; gives goodput and SLO attainment", flag="--slo", parse="slo", metavar="OBJ=MS,...",
        panel="load")

    def knob_values(self) -> dict[str, Any]:
        """The shared fields as they are, to build the resolved instance from."""
        return {k: getattr(self, k) for k in InstanceKnobs.model_fields}


class InstanceSpec(InstanceKnobs, _EndpointFields):
    """One model on one backend on one device, or one served model behind an endpoint.

    For `backend: openai`, `model` is the served model name and the endpoint fields apply:
    `base_url` (`http://host:port/v1`), `api` (completions or chat), `api_key_env` (the name of
    the environment variable holding the key; the key itself is never written anywhere),
    `headers` and `extra_body` (added to every request), `exact_output_fields` (ignore_eos and
    min_tokens by default; [] for servers that refuse unknown fields), `tokenizer` (a local
    folder, to count tokens when the server sends no usage), `metrics_url` (a Prometheus
    `/metrics` URL, `auto` for `{base}/metrics`, or `off`; scraped at every window boundary; a
    managed server's is `auto` unless set), `client_processes` (spread
    the load generator over several processes), `request_timeout_s`, `stall_timeout_s`.
    """

    model: str = knob(..., help="preset name, local HF checkpoint folder, or served model name", axis=True,
                      id_style="model", min_length=1)
    name: str | None = Field(None, description="label in tables and file names; derived from `model` when absent")
    backend: Literal["transformers", "fake", "openai"] = "transformers"
    base_url: str | None = Field(None, description="openai backend: http://host:port/v1")
    server: str | None = Field(None, description="openai backend: a managed server (one of `servers:`) instead of "
                               "base_url")
    tokenizer: str | None = knob(None, help="endpoints: local tokenizer folder, to count tokens without usage",
                                 flag="--tokenizer", metavar="FOLDER", panel="endpoints", backends=("openai",))
    reference: str | None = Field(None, description="another instance of the same run to compare outputs with "
                                  "(token agreement, KL divergence)")
    workload: WorkloadOverride | None = Field(  # type: ignore[valid-type]
        None, description="fields overriding the experiment's workload for this instance")
    fake: FakeTimings | None = None
    ray: RayPlacement | None = Field(None, description="Ray launcher: resources and node for this instance's actor")
    secret_env: list[str] = Field(default_factory=list, description="names of `env` variables whose values are "
                                  "secrets (besides those named like credentials: *_KEY, *_TOKEN): scrubbed from "
                                  "everything written")

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
        return value if value is None else checked_http_url(value, "base_url")

    @field_validator("env", mode="before")
    @classmethod
    def _env_names(cls, value: Any) -> Any:
        return env_names(value) if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _backend_fields(self) -> "InstanceSpec":
        if self.backend == "openai" and not self.base_url and not self.server:
            raise ValueError("backend openai needs base_url (http://host:port/v1) or server (a managed server's name)")
        if self.base_url and self.server:
            raise ValueError("give base_url or server, not both (a managed server's URL is colobench's to pick)")
        if self.server and self.server_pid is not None:
            raise ValueError("server_pid is the managed server's own; drop it")
        for name in ("base_url", "server"):
            if self.backend != "openai" and getattr(self, name):
                raise ValueError(f"{name} applies to backend openai")
        if self.backend != "fake" and self.fake is not None:
            raise ValueError("fake applies to backend fake")
        if self.backend != "openai":  # endpoint settings that are not knobs: set on another backend, an error
            for name in ("headers", "secret_headers", "extra_body", "exact_output_fields", "request_timeout_s",
                         "stall_timeout_s"):
                default = type(self).model_fields[name].get_default(call_default_factory=True)
                if name in self.model_fields_set and getattr(self, name) != default:
                    raise ValueError(f"{name} applies to backend openai (an endpoint), not {self.backend}")
        for k in INSTANCE_KNOBS + ENDPOINT_KNOBS:  # what the knob table says applies to other backends only
            if k.meta.backends and self.backend not in k.meta.backends and k.name in self.model_fields_set \
                    and getattr(self, k.name) != type(self).model_fields[k.name].get_default(call_default_factory=True):
                applies = " or ".join(k.meta.backends)
                raise ValueError(f"{k.name} applies to backend {applies}"
                                 + (" (a server sets its own)" if self.backend == "openai" else ""))
        return self

    def endpoint_config(self) -> EndpointConfig | None:
        if self.backend != "openai":
            return None
        base_url = self.base_url or MANAGED_BASE_URL  # the launcher puts a managed server's port in
        metrics = metrics_url_of(self.metrics_url, base_url, managed=self.server is not None)
        return EndpointConfig(**{f: getattr(self, f) for f in ENDPOINT_FIELDS if f not in ("metrics_url", "base_url")},
                              base_url=base_url, metrics_url=metrics)

    @field_validator("name")
    @classmethod
    def _name_format(cls, value: str | None) -> str | None:
        return checked_name(value) if value is not None else None


ENDPOINT_KNOBS = knobs_of(_EndpointFields, "instance")
INSTANCE_KNOBS = knobs_of(InstanceKnobs, "instance") + [k for k in knobs_of(InstanceSpec, "instance")
                                                        if k.name not in InstanceKnobs.model_fields
                                                        and k.name not in _EndpointFields.model_fields]


class LogRuleSpec(SpecModel):
    """A user's log rule: lines matching `pattern` (a regular expression, case-insensitive) are a
    finding naming `cause`, with `severity` and `remedy`."""

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    pattern: str = Field(min_length=1)
    cause: str = Field(min_length=1)
    severity: Literal["high", "medium", "low"] = "medium"
    remedy: str = ""

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression ({exc})") from None
        return value


class AdviceSpec(SpecModel):
    """The quality guard of the advice table: a variant is advised only when its outputs agree
    with its reference's at least this much."""

    min_token_agreement: float = Field(0.90, ge=0, le=1, description="share of generated tokens equal to the reference's")
    max_kl: float = Field(0.05, ge=0, le=100, description="KL divergence of next-token distributions, nats")


class TelemetrySpec(SpecModel):
    """What to sample during runs, how often, and the peak figures to compare with."""

    enabled: bool = True
    host_interval_s: float = Field(0.5, ge=0.01, le=3600)
    nvidia_interval_s: float = Field(0.1, ge=0.01, le=3600)
    ascend_interval_s: float = Field(1.0, ge=0.01, le=3600, description="npu-smi is slow; DCMI, when present, samples faster")
    idle_s: float = Field(1.0, ge=0, le=3600, description="seconds of idle sampling before the first run (idle power)")
    peaks: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="per device (cpu, cuda:0, npu:1): memory_bandwidth_gb_s, bf16_tflops, int8_tops")


class ExperimentKnobs(SpecModel):
    """The experiment-wide knobs."""

    name: str = knob("colocation", help="experiment name (prefix of run directories and sweep point ids)",
                     flag="--name", metavar="NAME", panel="output")
    scenario: str | None = knob(None, help="short, long, mixed, peak, or one defined in the file", flag="--scenario",
                                short="-s", metavar="NAME", panel="workload", axis=True, id_style="value")
    repetitions: int = knob(5, help="measured windows per run: the unit of every interval (at least 3 for one)",
                            flag="--repetitions", parse="int", metavar="N", panel="workload", axis=True, abbrev="reps",
                            gt=0, le=MAX_REPETITIONS)
    order: Literal["interleaved", "phase-major"] = knob(
        "interleaved", help="interleaved: every repetition runs each solo baseline, then all together, with every "
        "instance loaded throughout (drift spreads over all phases), and a sweep's variants (dtype, quantization, "
        "graph, env, knobs) interleaved per repetition in rotating order; phase-major: all solo repetitions of each "
        "instance, then the co-located ones, each phase in its own processes (a partner is not even loaded)",
        flag="--order", panel="workload")
    cache_dir: str | None = knob(None, help="where presets are built (default $COLOBENCH_CACHE or ~/.cache/colobench)",
                                 flag="--cache-dir", metavar="DIR", panel="output")

    @field_validator("name")
    @classmethod
    def _name_format(cls, value: str) -> str:
        return checked_name(value)


WORKLOAD_KNOBS = knobs_of(WorkloadSpec, "workload")
EXPERIMENT_KNOBS = knobs_of(ExperimentKnobs, "experiment")
LAUNCH_KNOBS = knobs_of(LaunchSpec, "launch")
ALL_KNOBS = INSTANCE_KNOBS + ENDPOINT_KNOBS + WORKLOAD_KNOBS + EXPERIMENT_KNOBS + LAUNCH_KNOBS
