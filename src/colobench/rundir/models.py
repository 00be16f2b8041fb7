"""What a run directory holds, as typed models: `Manifest` (manifest.json), `RunState` (each
run.json) with its `WorkerState`s and the `WorkerInfo` each worker reported when it loaded, and
the `ServerEntry` of every managed server start.

Launch writes these models; analysis and report read them, never raw dicts. They are `Stored`
models: a key this version does not know (a newer colobench's) is kept, and files written by
older versions are converted on read (`read_manifest`, `read_run_state`): a manifest/1 file is a
manifest/2 file with fewer keys, and summary/1-era run.json files kept the load generator's CPU
as a ratio per repetition (`cpu_util`, `loop_lag_ms`), which `ClientWindow` still reads.

Statuses are a closed vocabulary. A run: `starting`, `running`, `completed`, `partial` (some
worker did not complete), `failed` (none did), `interrupted` (a signal), `disk_full`, `abandoned`
(its colobench process is gone), and on read only `not started` (no run.json) or `unknown` (an
unreadable one). A worker: `starting`, `loaded`, `running`, `completed`, `failed` (it reported an
error), `died` (it exited without one), `interrupted`, `abandoned`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError

from colobench.records import CorruptFile, load_json, read_jsonl
from colobench.specs import quality_reference
from colobench.typed import Stored

MANIFEST_SCHEMA = "colobench.manifest/2"

RunStatus = Literal["starting", "running", "completed", "partial", "failed", "interrupted", "disk_full", "abandoned",
                    "not started", "unknown"]
WorkerStatus = Literal["starting", "loaded", "running", "completed", "failed", "died", "interrupted", "abandoned"]
LIVE: tuple[WorkerStatus, ...] = ("starting", "loaded", "running")
ENDED: tuple[WorkerStatus, ...] = ("completed", "failed", "died", "interrupted")
# an instance run by several client processes shows the worst of them
WORST_FIRST: tuple[WorkerStatus, ...] = ("died", "failed", "abandoned", "interrupted", "starting", "loaded", "running",
                                         "completed")


# ---- the plan, as the manifest and each run.json recorded it --------------------------------------

class InstanceEntry(Stored):
    """A resolved instance as the plan recorded it (`plan.ResolvedInstance` dumped): the fields
    analysis reads are typed, the rest kept as written."""

    name: str
    model: str
    preset: str | None = None
    backend: str = "transformers"
    device: str
    dtype: str
    cpu_threads: int
    workload: dict[str, Any] = {}
    endpoint: dict[str, Any] | None = None
    server: str | None = None
    slo: dict[str, Any] | None = None
    reference: str | None = None

    @property
    def objectives(self) -> dict[str, float]:
        """The SLO's objectives that are set (`ttft_ms`, ...)."""
        return {k: v for k, v in (self.slo or {}).items() if v is not None}


class PlannedRun(Stored):
    run_id: str
    point: str = ""
    phase: Literal["solo", "colocated"]
    instances: list[InstanceEntry]
    repetitions: int = 1


class PointEntry(Stored):
    id: str = ""
    axes: dict[str, Any] = {}


class PlanEntry(Stored):
    name: str
    points: list[PointEntry] = []
    runs: list[PlannedRun]
    cache_dir: str | None = None
    order: str = "interleaved"
    quality_reference: dict[str, Any] = {}  # a sweep of quality axes: each one's reference value, by label
    groups: list[dict[str, Any]] = []  # the groups the runs executed in (`plan.RunGroup` dumped)

    def paired_points(self) -> dict[str, list[str]]:
        """Point -> the other points interleaved with it in one group (variants whose
        repetitions were paired); empty for a plan without such groups."""
        out: dict[str, list[str]] = {}
        for group in self.groups:
            points = list(dict.fromkeys(r.get("point", "") for r in group.get("runs", []) if isinstance(r, dict)))
            if len(points) > 1:
                for p in points:
                    out[p] = [q for q in points if q != p]
        return out

    def point_entries(self) -> list[PointEntry]:
        """The points (a plan without a sweep, as old manifests wrote it: one point with id "")."""
        return self.points or [PointEntry()]

    def runs_of(self, point: str) -> list[PlannedRun]:
        return [r for r in self.runs if r.point == point]

    @property
    def axes(self) -> list[str]:
        return list(self.point_entries()[0].axes)


# ---- managed servers ----------------------------------------------------------------------------

class ServerEntry(Stored):
    """One start of a managed server: what it ran (secrets scrubbed), where, how it ended."""

    name: str
    command: list[str] | str | None = None
    port: int | None = None
    pid: int | None = None
    device: str | None = None
    visible_devices: dict[str, str] = {}
    cpu_affinity: list[int] | str | None = None
    pinned_cores: list[int] | None = None
    log: str | None = None  # relative to the run directory when inside it
    ready_s: float | None = None
    exit_code: int | None = None
    stopped_by_colobench: bool = False
    runs: list[str] = []
    problem: str | None = None  # died, never came up: shown among the summary's problems


# ---- manifest.json -------------------------------------------------------------------------------

class Environment(Stored):
    """The host, as `devices.inventory.environment()` saw it (free-form beyond these keys)."""

    hostname: str | None = None
    cpu_model: str | None = None
    logical_cores: int | None = None


class Manifest(Stored):
    """manifest.json: written before anything runs, rewritten as devices, telemetry and servers
    become known."""

    schema_: str = Field(MANIFEST_SCHEMA, alias="schema")
    colobench_version: str | None = None
    created_unix_s: float | None = None
    created_utc: str | None = None
    resumed_utc: list[str] = []
    command: list[str] | None = None
    experiment: dict[str, Any] = {}  # the spec as given (secrets redacted): `--resume` validates it again
    plan: PlanEntry
    environment: Environment = Environment()
    devices: dict[str, dict[str, Any]] = {}  # the devices as the workers named them
    telemetry: dict[str, dict[str, Any]] = {}  # per run id (and "idle"): each sampler's status
    measured_peaks: dict[str, Any] = {}  # `devices --probe` figures for devices without a datasheet peak
    npu_map: dict[str, Any] | None = None
    servers: list[ServerEntry] = []
    ray: dict[str, Any] = {}  # per run id: each actor's node, IP, pid, cards and clock offset

    model_config = ConfigDict(populate_by_name=True)

    @property
    def peaks(self) -> dict[str, Any]:
        """Peak figures by device: the experiment's own win over the host's measured ones."""
        own = (self.experiment.get("telemetry") or {}).get("peaks") or {}
        return {**self.measured_peaks, **own}

    @property
    def log_rules(self) -> list[Any]:
        """The experiment's own log rules (checked by `diagnosis.logscan.rules_from`)."""
        return self.experiment.get("log_rules") or []

    @property
    def advice_guard(self) -> dict[str, Any]:
        """The experiment's quality guard for advice (`min_token_agreement`, `max_kl`)."""
        return self.experiment.get("advice") or {}

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


# ---- run.json ------------------------------------------------------------------------------------

class WorkerInfo(Stored):
    """What a worker reported once its model loaded: the backend's facts (parameters, bytes, the
    device), how it loaded, and the knobs it really ran with."""

    backend: str | None = None
    parameters: int | None = None
    weight_bytes: int | None = None
    kv_cache_bytes_per_token: int | None = None
    torch_threads: int | None = None
    architecture: dict[str, Any] | None = None
    quantization: str | None = None
    graph: str | None = None
    attn_implementation: str | None = None
    device: dict[str, Any] | None = None  # devices.DeviceInfo as a dict
    knobs: dict[str, Any] | None = None
    load_model: str | None = None
    parallel: int | None = None
    requests_raised_to: int | None = None
    trace: dict[str, Any] | None = None  # a replayed trace: file, requests, span, speed (`Trace.facts`)
    load_s: float | None = None
    pid: int | None = None
    nice: int | None = None


class ClientWindow(Stored):
    """The load generator's own CPU over one repetition (summary/1 files: its ratio and lags)."""

    repetition: int
    cpu_s: float | None = None
    wall_s: float | None = None
    cpu_util: float | None = None
    loop_lag_ms: dict[str, Any] | None = None


class MetricsScrape(Stored):
    """One scrape of an endpoint's Prometheus `/metrics` at a window boundary (a line of
    `metrics/scrapes.jsonl`): the instance, its repetition, `before` (just before the window's go)
    or `after` (once every worker reported the window done), when on the records' clock, and the
    file of raw text it wrote, or why there is none (a failed scrape is recorded, never fatal)."""

    instance: str
    repetition: int
    when: Literal["before", "after"]
    t_ns: int
    url: str
    file: str | None = None  # the .prom file's name inside metrics/
    error: str | None = None


def read_scrapes(path: Any) -> list[MetricsScrape]:
    """The scrapes a run recorded (none when it recorded none); a line that is not one is skipped."""
    out = []
    for row in read_jsonl(path):
        try:
            out.append(MetricsScrape.model_validate(row))
        except ValidationError:
            continue
    return out


class HostReferenceSample(Stored):
    """One timing of the host reference (a line of `host_reference.jsonl`, written by
    `telemetry.host_reference`): when (`start`, `repetition 2`, `before <group>`, `end`), the
    reference's figures, and the host facts (the first sample only) and device references (the
    first and the last, where a device is used)."""

    at: str
    unix_s: float
    threads: int = Field(ge=1)
    cpu_ms: float = Field(gt=0)
    copy_gb_s: float = Field(gt=0)
    others_cpu_pct: float | None = None
    load_1m: float | None = None
    cpu_freq_mhz: float | None = None
    facts: dict[str, Any] | None = None
    devices: dict[str, dict[str, Any]] | None = None


def read_host_reference(path: Any, problems: list[str] | None = None) -> list[HostReferenceSample]:
    """The host reference samples of a run (none for a run older than them); a line that is not
    one is skipped and, with `problems`, named there."""
    out = []
    for number, row in enumerate(read_jsonl(path, problems), start=1):
        try:
            out.append(HostReferenceSample.model_validate(row))
        except ValidationError as exc:
            if problems is not None:
                problems.append(f"{path}: sample {number} skipped ({_first_line(exc)})")
    return out


class AllocatorMemory(Stored):
    """The device allocator over a run's windows: at its peak and at the end."""

    max_reserved_bytes: int
    max_allocated_bytes: int
    reserved_bytes: int
    allocated_bytes: int


class WorkerState(Stored):
    status: WorkerStatus = "starting"
    pid: int | list[int | None] | None = None
    reason: str | None = None
    exitcode: int | None = None
    info: WorkerInfo | None = None
    warmup_s: float | None = None
    warmup_requests: int | None = None
    peak_memory_bytes: int | None = None
    memory: AllocatorMemory | None = None
    client: list[ClientWindow] = []


class ClockAnchor(Stored):
    """A wall time and the records' monotonic clock read together: log lines' times map onto it."""

    unix_s: float
    mono_ns: int


class RunState(Stored):
    """run.json: one run's workers, outcome and clock, rewritten whenever a reader would want it."""

    run_id: str
    point: str = ""
    phase: Literal["solo", "colocated"] = "solo"
    repetitions: int = 1
    instances: list[InstanceEntry] = []  # as the run used them (managed servers' URLs bound, Ray's cards)
    launcher: str = "local"
    order: str = "phase-major"
    group: list[str] = []
    status: RunStatus = "starting"
    stop_reason: str | None = None
    started_unix_s: float | None = None
    ended_unix_s: float | None = None
    repetition_start_ns: list[int] = []
    # who writes this run: a reader that finds it running with this process gone knows it was abandoned
    colobench_pid: int | None = None
    colobench_started_unix_s: float | None = None
    clock_anchor: ClockAnchor | None = None
    workers: dict[str, WorkerState] = {}
    telemetry: dict[str, Any] | None = None
    ray: dict[str, Any] | None = None
    warnings: list[str] = []

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=False)


def _first_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "the top"
        return f"{where}: {err['msg']}"
    return str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__


def read_manifest(path: Any) -> Manifest:
    """manifest.json as a `Manifest` (any version colobench wrote), or `CorruptFile` naming it."""
    data = load_json(path)
    if not isinstance(data, dict):
        raise CorruptFile(f"{path}: not a colobench manifest (a JSON {type(data).__name__}, not an object)")
    try:
        return Manifest.model_validate(_converted(data))
    except ValidationError as exc:
        raise CorruptFile(f"{path}: not a colobench manifest ({_first_line(exc)})") from None


def _converted(data: dict[str, Any]) -> dict[str, Any]:
    """A manifest/1 file as manifest/2: its plan did not name the quality reference of a sweep
    (work it out from the experiment's sweep, as analysis did then)."""
    plan = data.get("plan")
    if isinstance(plan, dict) and "quality_reference" not in plan:
        sweep = (data.get("experiment") or {}).get("sweep") or {}
        plan = {**plan, "quality_reference": quality_reference(sweep) if isinstance(sweep, dict) else {}}
        data = {**data, "plan": plan}
    return data


def read_run_state(path: Any) -> RunState:
    """A run.json as a `RunState`, or `CorruptFile` naming it."""
    data = load_json(path)
    if not isinstance(data, dict):
        raise CorruptFile(f"{path}: not a run record (a JSON {type(data).__name__}, not an object)")
    try:
        return RunState.model_validate(data)
    except ValidationError as exc:
        raise CorruptFile(f"{path}: not a run record ({_first_line(exc)})") from None
