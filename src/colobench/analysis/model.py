"""The summary as typed, frozen models: one shape for every run, the schema of `summary.json`.

Every summary has `points`: a run without sweep axes is one point with id "". A point holds its
instances' facts, its runs' outcomes, the metrics of each instance in each phase (`solo`,
`colocated`) under vLLM-compatible names (`mean_ttft_ms`, `p99_tpot_ms`, `output_throughput`...),
the interference between its instances and the energy they shared. Verdicts are `Check`s (one
table of thresholds, `colobench.analysis.checks`); diagnoses are `Finding`s, one per cause. Units
live in the names (`_ms`, `_bytes`, `_pct`, `_j`, `_tok_s`), a `None` is a figure that could not
be measured (the reason is under `unmeasured`).

`SCHEMA` names this shape; summaries written as `colobench.summary/1` (a run without a sweep put
`phases` at the top) are converted on load (`colobench.analysis.compat`). `colobench schema`
prints the JSON Schema generated from these models.
"""

from __future__ import annotations

from typing import Annotated, Any, Iterator, Literal, get_args

from pydantic import ConfigDict, Field, StringConstraints, create_model

from colobench.analysis.distribution import Distribution
from colobench.analysis.registry import METRICS, STATS
from colobench.typed import Frozen

SCHEMA = "colobench.summary/2"
Phase = Literal["solo", "colocated"]
PHASES: tuple[Phase, ...] = ("solo", "colocated")


Model = Frozen  # every summary model: immutable, unknown keys refused


class Stat(Model):
    """Mean and peak of a sampled quantity over a window."""

    mean: float | None = None
    peak: float | None = None


class OpenLoop(Model):
    requested_rate: float | None = None
    achieved_rate: float | None = None
    rate_error_pct: float | None = None
    rate_ok: bool | None = None
    mean_schedule_lag_ms: float | None = None
    p99_schedule_lag_ms: float | None = None
    schedule_lag_ms: Distribution = Distribution(count=0)


class ClientLoad(Model):
    """The load generator's own load: its CPU (fraction of one core) and event-loop lag."""

    processes: int = 1
    cpu_util_mean: float | None = None
    cpu_util_max: float | None = None
    loop_lag_p99_ms: float | None = None
    cpu_s: float = 0.0
    rss_bytes_peak: int | None = None  # the load generator's own resident memory (not the server's)


class OtherProcess(Model):
    """A process outside the run that took CPU during it: mean share of one core, in %."""

    pid: int
    name: str
    cpu_pct: float


class HostWindow(Model):
    samples: int = 0
    cpu_pct: Stat | None = None
    worker_cpu_pct: Stat | None = None
    worker_rss_bytes_peak: int | None = None
    load_1m: Stat | None = None
    others: list[OtherProcess] = []  # the busiest processes outside the run


class DeviceWindow(Model):
    samples: int = 0
    sources: list[str] = []
    util_pct: Stat | None = None
    power_w: Stat | None = None
    mem_used_bytes_peak: float | None = None
    mem_total_bytes: float | None = None
    temp_c: Stat | None = None
    sm_clock_mhz: Stat | None = None
    mem_clock_mhz: Stat | None = None
    aicore_pct: Stat | None = None
    hbm_bw_util_pct: Stat | None = None
    dram_bw_util_pct: Stat | None = None
    sm_util_pct: Stat | None = None
    card_power_w: Stat | None = None  # a card-level reading shared by the card's chips (A3, 310P Duo)
    throttle_reasons: list[str] = []
    process_mem_bytes_peak: float | None = None
    energy_j: float | None = None
    energy_method: str | None = None


class Peak(Model):
    name: str
    memory_bandwidth_gb_s: float | None = None
    bf16_tflops: float | None = None
    int8_tops: float | None = None
    memory_gb: float | None = None
    source: str = ""


class Roofline(Model):
    """Bytes a decode step must move against the device's peak bandwidth (see `roofline`)."""

    achieved_bandwidth_bytes_s: float | None = None
    mbu_pct: float | None = None
    mfu_pct: float | None = None
    bytes_per_step: float | None = None
    batch: float | None = None
    mean_context_tokens: float | None = None
    decode_ceiling_tok_s: float | None = None
    peak: Peak | None = None
    device: str | None = None
    gpm_dram_bw_util_pct: float | None = None
    gpm_agrees: bool | None = None


class Validity(Model):
    """VALID or INVALID with reasons: the verdict of the phase's checks (see `checks`)."""

    verdict: Literal["VALID", "INVALID"]
    stability: str | None = None
    headline: str = "tpot"
    cv_pct: float | None = None
    reasons: list[str] = []
    warnings: list[str] = []


class TextPair(Model):
    reference: str
    variant: str


class Quality(Model):
    """A variant's outputs against its reference's, on the same fixed prompts (see `quality`)."""

    reference: str
    token_agreement: float
    first_divergence_min: int
    first_divergence_mean: float
    generated_tokens: int
    top1_agreement: float
    kl_divergence: float
    texts: list[TextPair] = []
    vs_reference: dict[str, float | None] = {}


def _distributions() -> type[Model]:
    """Each registered metric's distribution over requests (`ttft_ms`, ...; one that applies to some
    phases only, or was added after a summary was written, may be missing), and the throughputs'
    over repetitions."""
    fields: dict[str, Any] = {m.distribution_key: (Distribution, ...) if m.core else (Distribution | None, None)
                              for m in METRICS}
    fields.update(output_throughput_tok_s=(Distribution, ...), request_throughput_req_s=(Distribution, ...))
    return create_model("Distributions", __base__=Model, __doc__=_distributions.__doc__, **fields)


Distributions = _distributions()


class _RepetitionValues(Model):
    """One value per measured repetition (`repetitions` gives their numbers, in order) for each
    headline: the unit every interval is built from. `summary(metric)` is the values' shape with
    the Student-t interval of their mean (none below 3 repetitions). The latency keys
    (`mean_ttft_ms`, `p50_ttft_ms`, `p99_ttft_ms`, ...) come from the metric registry."""

    repetitions: list[int] = []
    output_throughput: list[float | None] = []
    request_throughput: list[float | None] = []
    goodput: list[float | None] = []  # with an SLO: good requests per second of the repetition's window
    slo_attainment: list[float | None] = []

    def summary(self, metric: str) -> Distribution:
        return Distribution.of_repetitions([v for v in getattr(self, metric) if v is not None])

    def by_repetition(self, metric: str) -> dict[int, float]:
        return {k: v for k, v in zip(self.repetitions, getattr(self, metric)) if v is not None}


RepetitionStats = create_model(
    "RepetitionStats", __base__=_RepetitionValues, __doc__=_RepetitionValues.__doc__,
    **{m.repetition_key(stat): (list[float | None], []) for m in METRICS for stat in m.repetition})


class ClientServer(Model):
    """One quantity as the client measured it and as the server reported it over the same windows."""

    client: float | None = None
    server: float | None = None

    @property
    def difference(self) -> float | None:
        """client - server (None unless both are known)."""
        return self.client - self.server if self.client is not None and self.server is not None else None

    @property
    def relative(self) -> float | None:
        """(client - server) / server (None unless both are known and the server's is not 0)."""
        diff = self.difference
        return diff / self.server if diff is not None and self.server else None


class ServerWindow(Model):
    """One measured window as the server counted it (its scrape after the window minus the one
    before), beside the client's count; `error` says why it has no server figures."""

    repetition: int
    requests: int | None = None
    client_requests: int = 0
    client_failed: int = 0
    mean_ttft_ms: float | None = None
    client_mean_ttft_ms: float | None = None
    prefix_cache_hit_pct: float | None = None
    preemptions: int | None = None
    error: str | None = None


class ServerEvidence(Model):
    """The server's own counters over an instance-phase: each window's difference between the
    `/metrics` scrape just after it and the one just before (warm-up excluded, the co-located
    filler included: the server saw it), summed over the phase's repetitions, each beside the
    client's figure over the same requests (every request the client sent in those windows,
    timed from its submission). See `analysis.server` for the definitions."""

    engine: str | None = None  # vllm, sglang (by the series' prefix); None: neither
    url: str | None = None
    windows: int = 0  # windows with a usable scrape before and after
    repetitions: list[ServerWindow] = []
    shared_with: list[str] = []  # instances of the same run that one server (and model) also counted
    series: dict[str, str] = {}  # quantity -> the series it was read from
    requests: ClientServer = ClientServer()  # client: completed; server: finished (success counter)
    client_failed: int = 0
    prompt_tokens: ClientServer = ClientServer()
    output_tokens: ClientServer = ClientServer()
    ttft_ms: ClientServer = ClientServer()
    itl_ms: ClientServer = ClientServer()  # per output token after the first
    tpot_ms: ClientServer = ClientServer()  # per request: (end - first token) / (tokens - 1)
    e2el_ms: ClientServer = ClientServer()
    queue_ms: float | None = None  # the server's mean wait before scheduling
    preemptions: int | None = None  # vLLM preemptions, SGLang retractions
    kv_cache_usage_pct: float | None = None  # the largest seen (see kv_cache_usage_source)
    kv_cache_usage_source: str | None = None
    requests_waiting_peak: float | None = None
    # the device's own work counters where the server exports them (the fake shared device): device
    # seconds of this model's prefill and of decode budget, over `window_s` seconds of windows
    device_prefill_s: float | None = None
    device_decode_s: float | None = None
    window_s: float | None = None
    prefix_cache_hits_tokens: float | None = None
    prefix_cache_queries_tokens: float | None = None
    prefix_cache_hit_pct: float | None = None
    prefix_cache_source: str | None = None
    problems: list[str] = []  # failed scrapes, restarts: windows left out and why


class _PhaseFields(Model):
    """One instance in one phase: counts, vLLM-compatible latency and throughput keys, the full
    distributions, the load generator's own load, telemetry over its window, the roofline,
    energy, validity and (for variants) quality."""

    completed: int
    failed: int
    error_rate: float | None = None
    warmup_requests: int = 0
    repetitions: int = 0
    total_input_tokens: int = 0
    total_output_tokens: int = 0
    duration: float = 0.0
    request_throughput: float | None = None
    output_throughput: float | None = None
    total_token_throughput: float | None = None
    mean_concurrency: float | None = None
    mean_prompt_tokens: float | None = None
    min_prompt_tokens: int | None = None
    max_prompt_tokens: int | None = None
    mean_output_tokens: float | None = None
    mean_batch: float | None = None
    distributions: Distributions
    repetition_stats: RepetitionStats | None = None
    repetition_windows_ns: list[tuple[int, int]] = []  # each repetition's [first start, last end]
    overlap_fraction: float | None = None  # co-located: share of measured request time with every partner loaded
    outside_overlap: int = 0  # co-located: measured requests left out (a partner was not under load)
    partner_absent: bool = False  # co-located: no repetition had every partner under load
    open_loop: OpenLoop | None = None
    token_count_source: dict[str, int] | None = None
    output_length_mismatch: int | None = None
    prompt_length_mismatch: int | None = None  # HTTP: prompts the server counted other than asked
    mean_expected_prompt_tokens: float | None = None  # HTTP: the mean prompt length asked for
    reasoning_chunks: int | None = None  # reasoning models: chunks of reasoning, counted as output tokens
    errors: dict[str, int] = {}
    window_ns: tuple[int, int] | None = None
    peak_memory_bytes: int | None = None
    memory_source: str | None = None  # endpoints: where the server's memory came from
    allocator: Allocator | None = None  # CUDA and Ascend: reserved against allocated (fragmentation)
    by_category: dict[str, CategoryMetrics] = {}  # prompts that name their category: every category's figures
    by_turn: dict[str, CategoryMetrics] = {}  # multi-turn sessions: each turn's figures ("0" the first)
    by_step: list[StepMetrics] = []  # a ramped open loop: each step's rate and latency
    slo: SLOResult | None = None  # the instance's latency objectives: attainment and goodput
    goodput: float | None = None  # good requests per second (slo.goodput_req_s)
    slo_attainment: float | None = None  # share of measured requests that met every objective
    load_model: str | None = None
    parallel: int | None = None
    backend: str = "transformers"
    warmup_s: float | None = None
    client: ClientLoad | None = None
    server_metrics: dict[str, float] | None = None
    server: ServerEvidence | None = None  # the server's own counters beside the client's
    host: HostWindow | None = None
    device_telemetry: DeviceWindow | None = None
    mean_device_util_pct: float | None = None
    server_cpu_cores: float | None = None  # an endpoint's server process tree: CPU seconds per second (psutil)
    achieved_bandwidth_bytes_s: float | None = None
    mbu_pct: float | None = None
    mfu_pct: float | None = None
    roofline: Roofline | None = None
    energy_j: float | None = None
    energy_method: str | None = None
    energy_shared: bool | None = None
    energy_per_token_j: float | None = None
    tokens_per_j: float | None = None
    unmeasured: dict[str, str] = {}
    validity: Validity | None = None
    quality: Quality | None = None
    token_agreement: float | None = None


PhaseMetrics = create_model(
    "PhaseMetrics", __base__=_PhaseFields, __doc__=_PhaseFields.__doc__,
    **{m.key(stat): (float | None, None) for m in METRICS for stat in STATS})


class InstanceFacts(Model):
    """What an instance was: the plan's settings and what its worker reported when it loaded."""

    model: str
    preset: str | None = None
    backend: str
    device: str
    dtype: str
    cpu_threads: int
    workload: dict[str, Any]
    endpoint: dict[str, Any] | None = None
    parameters: int | None = None
    weight_bytes: int | None = None
    kv_cache_bytes_per_token: int | None = None
    torch_threads: int | None = None
    architecture: dict[str, Any] | None = None
    load_model: str | None = None
    parallel: int | None = None
    requests_raised_to: int | None = None
    trace: dict[str, Any] | None = None  # a replayed trace: file, format, requests, span, speed, blocks
    quantization: str | None = None
    graph: str | None = None
    attn_implementation: str | None = None
    knobs: dict[str, Any] | None = None
    device_info: dict[str, Any] | None = None


class WorkerOutcome(Model):
    status: str | None = None
    reason: str | None = None
    pid: int | list[int | None] | None = None
    exitcode: int | None = None


class Attempt(Model):
    """An earlier, unfinished attempt at a run (`--resume` redid it): kept, never counted."""

    folder: str  # relative to the run directory
    status: str | None = None
    records: int = 0  # measured requests it recorded


class SLOResult(Model):
    """How a phase's requests met the instance's latency objectives (`slo:`). A request is good when
    it completed and met every objective; failed requests count as not good. `attainment` is good
    over all measured requests; `goodput_req_s` good requests per second of measured time; `missed`
    how many completed requests missed each objective; `worst` the objective missed most."""

    objectives: dict[str, float]
    requests: int
    good: int
    attainment: float | None = None
    goodput_req_s: float | None = None
    missed: dict[str, int] = {}
    failed: int = 0
    worst: str | None = None


class CategoryMetrics(Model):
    """One prompt category's share of a phase: its requests' latency and how fast they ran.
    `output_tok_s_per_request` is output tokens over the summed request time (each request's
    own speed, whatever else ran beside it)."""

    completed: int
    mean_prompt_tokens: float | None = None
    min_prompt_tokens: int | None = None
    max_prompt_tokens: int | None = None
    mean_output_tokens: float | None = None
    mean_ttft_ms: float | None = None
    median_ttft_ms: float | None = None
    p99_ttft_ms: float | None = None
    mean_tpot_ms: float | None = None
    median_tpot_ms: float | None = None
    p99_tpot_ms: float | None = None
    mean_e2el_ms: float | None = None
    p99_e2el_ms: float | None = None
    output_tok_s_per_request: float | None = None


class StepMetrics(Model):
    """One step of a ramped open loop (`workload.ramp`): its requested rate (a linear ramp's mean
    over the step), what was sent (over every repetition's same step), and its requests' latency."""

    step: int  # 1-based
    start_s: float  # from the window's start
    end_s: float
    requested_rate: float
    achieved_rate: float | None = None
    completed: int = 0
    failed: int = 0
    median_ttft_ms: float | None = None
    p99_ttft_ms: float | None = None
    median_tpot_ms: float | None = None
    p99_tpot_ms: float | None = None
    mean_e2el_ms: float | None = None


class Allocator(Model):
    """The device's caching allocator over a phase: reserved (held from the device) against
    allocated (in tensors), at the peak and at the end. Reserved but not allocated is memory no
    one else can use: `fragmentation_pct` = (reserved - allocated) / reserved."""

    max_reserved_bytes: int
    max_allocated_bytes: int
    reserved_bytes: int
    allocated_bytes: int
    fragmentation_pct_peak: float | None = None
    fragmentation_pct_end: float | None = None


class RunEntry(Model):
    phase: Phase
    status: str | None = None
    stop_reason: str | None = None  # interrupted, disk_full or abandoned: why
    workers: dict[str, WorkerOutcome] = {}
    telemetry: dict[str, str] | None = None
    attempts: list[Attempt] = []


class Slowdown(Model):
    """Co-located / solo, per instance (1.0 = no interference, 2.0 = twice as slow), each with the
    95% interval of the ratio from the repetitions paired by number (`intervals`; none below 3),
    and `beyond_noise`: whether that interval excludes 1."""

    ttft_p50: float | None = None
    ttft_p99: float | None = None
    tpot_p50: float | None = None
    tpot_p99: float | None = None
    e2el_p50: float | None = None
    e2el_p99: float | None = None
    output_throughput: float | None = None
    intervals: dict[str, tuple[float, float] | None] = {}
    beyond_noise: dict[str, bool | None] = {}


class BandwidthBound(Model):
    scaling_bound: float | None = None
    mean_solo_bandwidth_bytes_s: float | None = None
    peak_bandwidth_bytes_s: float | None = None
    near_bound: bool | None = None


class PredictedSlowdown(Model):
    """The slowdown `analysis.predict` expected from the solo profiles alone (never from this
    co-located run), beside the measured one: every co-located run is a validation point."""

    slowdown: dict[str, float] = {}
    intervals: dict[str, tuple[float, float]] = {}
    driver: str | None = None
    driver_sentence: str = ""
    method: str = "physics"  # curve (a sensitivity curve of the instance), physics, unmeasured (no demand)
    error_pct: dict[str, float | None] = {}  # (predicted / measured - 1) x 100
    within_interval: dict[str, bool | None] = {}  # the measured slowdown inside the predicted interval


class Interference(Model):
    instances: int = 0
    ideal_scaling: int | None = None
    throughput_scaling: float | None = None
    throughput_scaling_interval: tuple[float, float] | None = None  # from the repetitions, paired by number
    excluded: list[str] = []  # instances left out: their co-located phase had no partner under load
    fairness: float | None = None
    bandwidth_bound: BandwidthBound | None = None
    slowdown: dict[str, Slowdown] = {}
    predicted: dict[str, PredictedSlowdown] = {}  # from the solo profiles (analysis.predict)


class SharedEnergy(Model):
    """One accelerator's energy over a co-located run, shared by its instances."""

    instances: list[str]
    energy_j: float | None = None
    method: str | None = None
    output_tokens: int = 0
    energy_per_token_j: float | None = None
    tokens_per_j: float | None = None


class Energy(Model):
    colocated: dict[str, SharedEnergy] = {}


class Subject(Model):
    """What a check or a finding is about: an instance in a phase of a point, or (no instance)
    the point's instances together."""

    point: str = ""
    instance: str | None = None
    phase: Phase | None = None

    @property
    def label(self) -> str:
        if self.instance is None:
            return "aggregate"
        return f"{self.instance} ({self.phase})" if self.phase else self.instance


Level = Literal["ok", "info", "warning", "invalid"]
# every check colobench makes (`analysis.checks`); `unknown`: one an older summary named otherwise
CheckKind = Literal["sample_size", "warmup", "stability", "jitter", "steady_state", "drift", "saturation", "failures",
                    "rate", "client_bound", "host_contention", "output_length", "token_count", "prompt_length",
                    "bandwidth_cross_check", "implausible", "partner_absent", "overlap", "server_agreement",
                    "scaling", "baseline",
                    "hardware_bound", "fairness", "unknown"]
CHECK_KINDS: tuple[str, ...] = get_args(CheckKind)
# every cause the diagnosis names (`analysis.diagnosis.detectors`), and `log:<rule>` for a log rule's
# matches (the built-in table's and the user's own)
FindingKind = Literal["bandwidth_contention", "bandwidth_near_peak", "compute_contention", "cpu_contention",
                      "client_bound", "host_bound", "warmup_outliers", "throttling", "memory_pressure", "endpoint_down",
                      "failing", "fragmentation", "input_length_variance", "batch_padding", "periodic_stalls",
                      "unrequested_prefix_cache", "implausible_figure", "server_contention", "unknown"]
FINDING_KINDS: tuple[str, ...] = get_args(FindingKind)
LogFindingKind = Annotated[str, StringConstraints(pattern=r"^log:.+$")]


class Check(Model):
    """One verdict: its kind, what it judges, the value against its threshold, and a sentence.
    `level` says what it means for the result: `invalid` makes the phase INVALID."""

    kind: CheckKind
    subject: Subject
    verdict: str
    level: Level
    value: float | None = None
    threshold: float | None = None
    sentence: str


class Window(Model):
    """A time window a finding rests on: nanoseconds on the records' clock, and seconds from the
    start of its run."""

    run_id: str
    start_ns: int
    end_ns: int
    start_s: float
    end_s: float


class Finding(Model):
    """A diagnosis: one per cause, with every subject and window it was seen in."""

    kind: FindingKind | LogFindingKind
    severity: Literal["high", "medium", "low"]
    subjects: list[Subject]
    title: str
    evidence: dict[str, Any]
    windows: list[Window] = []
    recommendation: str = ""
    score: float = 0.0
    point: str = ""


class Point(Model):
    id: str = ""
    axes: dict[str, Any] = {}
    instances: dict[str, InstanceFacts] = {}
    runs: dict[str, RunEntry] = {}
    phases: dict[Phase, dict[str, PhaseMetrics]] = {}
    interference: Interference = Interference()
    energy: Energy = Energy()
    # sweep points interleaved with this one repetition by repetition (variants): their
    # differences are paired by repetition number
    paired_with: list[str] | None = None

    def metrics(self, phase: Phase, name: str) -> PhaseMetrics | None:
        return self.phases.get(phase, {}).get(name)

    def rows(self) -> Iterator[tuple[Phase, str, PhaseMetrics]]:
        """Every (phase, instance, metrics), solo first."""
        for phase in PHASES:
            for name, metrics in self.phases.get(phase, {}).items():
                yield phase, name, metrics


class BatchScalingRow(Model):
    point: str
    batch_size: int
    output_throughput: float | None = None
    speedup: float | None = None
    linearity: float | None = None
    mean_e2el_ms: float | None = None
    mean_tpot_ms: float | None = None
    completed: int = 0


class BatchScaling(Model):
    instance: str
    phase: Phase
    axes: dict[str, str] = {}
    rows: list[BatchScalingRow]


class Advice(Model):
    """The variant to run for one scenario (see `analysis.advice`), with the runner-up and the
    variants the quality guard or validity left out."""

    scenario: Literal["interactive", "throughput", "memory", "sharing"]
    instance: str
    within: dict[str, Any] = {}  # the workload-axis values held fixed (scenario: long, prompt_tokens: 512)
    figure: str
    choice: str  # the point id
    axes: dict[str, Any] = {}
    value: float
    also: dict[str, float | None] = {}
    runner_up: str | None = None
    runner_up_value: float | None = None
    candidates: int = 0
    excluded: dict[str, str] = {}  # point id -> why it was not a candidate
    # over the runner-up: clear, inconclusive, within noise, no interval, single figure, no runner-up
    margin: str = "no interval"


class HostReference(Model):
    """The host reference of a run (`analysis.host_reference`): a fixed CPU and memory-copy
    workload timed with `threads` threads at the start, between repetitions and at the end, with
    what else used the CPU and each accelerator's own reference (start and end)."""

    threads: int
    samples: int
    cpu_ms: Distribution
    copy_gb_s: Distribution
    others_cpu_pct_max: float | None = None  # processes outside the run, % of one core, between samples
    others_cpu_pct_mean: float | None = None
    load_1m_max: float | None = None
    facts: dict[str, Any] = {}  # CPU model, governor, cores, host name, kernel
    devices: dict[str, dict[str, Any]] = {}  # device -> matmul_tflops, copy_gb_s (or error)
    timeline: list[dict[str, Any]] = []  # each sample: at, cpu_ms, copy_gb_s, others_cpu_pct


class Schemed(Model):
    """A document written alone (a summary, a profile, a prediction): its `schema` key first."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_version: str = Field("", alias="schema")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class Summary(Schemed):
    """Everything derived from a run directory; `colobench report` rebuilds it from the files."""

    schema_version: str = Field(SCHEMA, alias="schema")
    experiment: str
    colobench_version: str | None = None
    run_dir: str | None = None
    telemetry: dict[str, dict[str, str]] = {}
    idle_power_w: dict[str, float] = {}
    sweep_axes: list[str] = []
    points: list[Point]
    batch_scaling: list[BatchScaling] = []
    checks: list[Check] = []
    findings: list[Finding] = []
    advice: list[Advice] = []
    problems: list[str] = []
    host_reference: HostReference | None = None
    profiles: dict[str, str] = {}  # "[point/]instance" -> its solo profile, relative to the run directory

    def point(self, point_id: str | None = None) -> Point:
        """The point named `point_id`; without one, the only point (a sweep must name one)."""
        if point_id is None:
            if len(self.points) != 1:
                raise ValueError(f"a sweep has several points: name one ({', '.join(p.id for p in self.points)})")
            return self.points[0]
        for p in self.points:
            if p.id == point_id:
                return p
        raise ValueError(f"no sweep point {point_id!r} (points: {', '.join(p.id for p in self.points) or 'none'})")

    @property
    def is_sweep(self) -> bool:
        return bool(self.sweep_axes)

    def checks_of(self, subject: Subject) -> list[Check]:
        return [c for c in self.checks if c.subject == subject]
