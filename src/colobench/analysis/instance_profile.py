"""An instance's solo profile: what it asks of each shared resource at its load, how fast it was
alone, and (after `colobench characterize`) how it slows under calibrated pressure.

The co-location predictor (`analysis.predict`) works from these alone, never from a run of the
pair it predicts. A profile holds:

- **demand** per shared resource, in the resource's own unit, at the measured load:
  - `device_time`: the share of wall time the device executes the instance's work (NVML/npu-smi
    utilisation in a solo run; the fake shared device's own work counters); a model on the CPU
    has none: its device is the host, and its demand is `host_cpu`;
  - `compute`: share of the device's compute (the fake device: prefill seconds per second, its
    exclusive phase; an accelerator: MFU where the FLOPs model gives it);
  - `memory_bandwidth`: share of the peak bandwidth (the fake device: decode budget used; an
    accelerator or CPU: bytes per second from the bytes model and the measured steps / the peak);
  - `host_cpu`: cores of the host its worker (an in-process model) kept busy.
- **latency** as quantiles (min, p50, p90, p99, max) of TTFT, TPOT and end-to-end time, with the
  server's own queueing and TTFT where its counters give them (the front end = client TTFT minus
  server TTFT), and the decode step (TPOT p50);
- **footprint**: weights, KV cache at the load (bytes per token x tokens in flight), peak memory,
  the allocator's reserve;
- **scaling**: the same figures at every other load of the run (a sweep over rates or batch
  sizes), so the predictor can read demand per request;
- **sensitivity** per resource (from `colobench characterize`): the slowdown of its TTFT, TPOT and
  throughput with a pressure probe at each level, the level as the probe achieved it, with the
  interval from the repetitions (Welch: the probe run and the solo run are separate runs);
- **noise**: the coefficient of variation of its headline figures over repetitions.

`profile.json` is one `InstanceProfile` (`PROFILE_SCHEMA`), readable alone: every figure names
its unit, every figure that could not be measured is None with its reason under `unmeasured`.
"""

from __future__ import annotations

from typing import Any, Literal

from colobench.analysis.distribution import Distribution, welch
from pydantic import Field

from colobench.analysis.model import InstanceFacts, Model, PhaseMetrics, Schemed, Summary

PROFILE_SCHEMA = "colobench.profile/1"
RESOURCES: tuple[str, ...] = ("device_time", "compute", "memory_bandwidth", "host_cpu")
UNITS = {"device_time": "share of wall time", "compute": "share of peak compute",
         "memory_bandwidth": "share of peak bandwidth", "host_cpu": "cores"}
# slowdown keys a sensitivity level and a prediction carry: metric -> (PhaseMetrics field, repetition key)
SLOWDOWN_FIELDS = {"ttft_p50": ("median_ttft_ms", "p50_ttft_ms"), "ttft_p99": ("p99_ttft_ms", "p99_ttft_ms"),
                   "tpot_p50": ("median_tpot_ms", "p50_tpot_ms"), "tpot_p99": ("p99_tpot_ms", "p99_tpot_ms"),
                   "output_throughput": ("output_throughput", "output_throughput")}


class Demand(Model):
    value: float
    unit: str
    source: str  # where the figure came from, in words


class Quantiles(Model):
    """A latency's shape over the phase's requests, in ms (the predictor's SLO attainment reads it
    as a piecewise-linear distribution through these points)."""

    mean: float | None = None
    min: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, d: Distribution | None) -> "Quantiles | None":
        if d is None or not d.count:
            return None
        return cls(mean=d.mean, min=d.min, p50=d.p50, p90=d.p90, p99=d.p99, max=d.max)

    def share_below(self, limit: float) -> float | None:
        """The share of requests at or below `limit` (ms), interpolated between the quantiles."""
        points = [(q, v) for q, v in ((0.0, self.min), (0.5, self.p50), (0.9, self.p90), (0.99, self.p99),
                                       (1.0, self.max)) if v is not None]
        if not points:
            return None
        if limit < points[0][1]:
            return 0.0
        for (q0, v0), (q1, v1) in zip(points, points[1:]):
            if limit < v1:
                return q0 + (q1 - q0) * ((limit - v0) / (v1 - v0) if v1 > v0 else 1.0)
        return 1.0


class LoadFacts(Model):
    mode: Literal["open", "closed"]
    requested_rate: float | None = None  # req/s asked (open loop)
    request_rate: float | None = None  # req/s completed
    output_tok_s: float | None = None
    concurrency: float | None = None  # mean requests in flight
    mean_prompt_tokens: float | None = None
    mean_output_tokens: float | None = None
    batch: float | None = None
    repetitions: int = 0


class Latency(Model):
    ttft_ms: Quantiles | None = None
    tpot_ms: Quantiles | None = None
    e2el_ms: Quantiles | None = None
    decode_step_ms: float | None = None  # TPOT p50
    server_ttft_ms: float | None = None  # the server's own mean TTFT (its counters)
    queue_ms: float | None = None  # the server's mean wait before scheduling
    front_end_ms: float | None = None  # client mean TTFT minus the server's: HTTP, tokenising


class Footprint(Model):
    weight_bytes: int | None = None
    kv_cache_bytes: float | None = None  # bytes per token x tokens held at the mean concurrency
    peak_memory_bytes: int | None = None
    allocator_reserve_bytes: int | None = None  # reserved but not allocated at the peak


class ScalePoint(Model):
    """The instance alone at one load of the run (one sweep point)."""

    point: str
    axes: dict[str, Any] = {}
    request_rate: float | None = None
    output_tok_s: float | None = None
    ttft_p50_ms: float | None = None
    tpot_p50_ms: float | None = None
    demand: dict[str, float] = {}


class SensitivityLevel(Model):
    """The instance with a pressure probe beside it: the probe's asked level, what it achieved (the
    x of the curve), and the instance's slowdown against its solo run (probe / solo)."""

    nominal: float
    level: float
    probe_job_s: float | None = None  # a prefill probe: the device seconds one of its requests held
    probe_streams: float | None = None  # a decode probe: its streams decoding at once
    slowdown: dict[str, float | None] = {}
    intervals: dict[str, tuple[float, float] | None] = {}
    run_dir: str | None = None


class Observation(Model):
    """A co-location measured after the profile (`colobench place --verify`): who ran beside it, at
    what rates, and its measured slowdowns against those the predictor gave beforehand. The
    predictor multiplies its own figure by measured / predicted when it meets the same partners
    again at rates within `OBSERVED_RATE_TOLERANCE`: a measurement beats the physics."""
    partners: list[str]
    rates: dict[str, float]
    measured: dict[str, float | None]  # slowdown factors by key (ttft_p50, tpot_p99, ...)
    predicted: dict[str, float | None]
    slo_attainment: float | None = None
    run_dir: str | None = None


class InstanceProfile(Schemed):
    schema_version: str = Field(PROFILE_SCHEMA, alias="schema")
    instance: str
    model: str
    backend: str
    device: str
    point: str = ""
    run_dir: str | None = None
    valid: bool = True  # the solo phase's verdict (an INVALID one is kept, and said)
    workload: dict[str, Any] = {}
    slo: dict[str, float] | None = None
    load: LoadFacts
    latency: Latency
    demand: dict[str, Demand] = {}
    footprint: Footprint = Footprint()
    scaling: list[ScalePoint] = []
    sensitivity: dict[str, list[SensitivityLevel]] = {}
    host_cores: int | None = None  # the cores this run could use (host_cpu's capacity)
    noise: dict[str, float] = {}  # coefficient of variation over repetitions of the headline figures
    repetition_values: dict[str, list[float]] = {}  # each headline figure, per repetition (Welch intervals)
    unmeasured: dict[str, str] = {}
    observed: list[Observation] = []  # co-locations measured since (fed back by `colobench place --verify`)

    def demand_of(self, resource: str) -> float:
        d = self.demand.get(resource)
        return d.value if d is not None else 0.0

    def per_request(self, resource: str) -> float | None:
        """Demand per request per second (device seconds a request costs), for loads other than
        the measured one."""
        d, rate = self.demand.get(resource), self.load.request_rate
        return d.value / rate if d is not None and rate else None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "InstanceProfile":
        schema = data.get("schema") if isinstance(data, dict) else None
        if schema != PROFILE_SCHEMA:
            raise ValueError(f"schema is {schema!r}, not {PROFILE_SCHEMA!r}")
        return cls.model_validate(data)


def _demands(m: PhaseMetrics, facts: InstanceFacts) -> tuple[dict[str, Demand], dict[str, str]]:
    out: dict[str, Demand] = {}
    why: dict[str, str] = {}

    def put(resource: str, value: float | None, source: str) -> None:
        if value is not None and value >= 0 and resource not in out:
            out[resource] = Demand(value=value, unit=UNITS[resource], source=source)

    server = m.server
    if server is not None and server.window_s and (server.device_prefill_s is not None
                                                   or server.device_decode_s is not None):
        prefill, decode = (server.device_prefill_s or 0.0) / server.window_s, (server.device_decode_s or 0.0) / server.window_s
        put("compute", prefill, "the device's prefill seconds per second (its own counters)")
        put("memory_bandwidth", decode, "the device's decode budget used per second (its own counters)")
        put("device_time", prefill + decode, "the device's work seconds per second (its own counters)")
    if m.mfu_pct is not None:
        put("compute", m.mfu_pct / 100, "MFU (the FLOPs model over the measured steps)")
    if m.mbu_pct is not None:
        put("memory_bandwidth", m.mbu_pct / 100, "MBU (the bytes model over the measured steps, against the peak)")
    in_process = facts.endpoint is None
    worker_cores, cores_source = None, ""
    if m.client is not None and m.client.cpu_util_mean is not None:  # the worker's own CPU time per window
        worker_cores, cores_source = m.client.cpu_util_mean, "the worker's CPU seconds per second of its windows"
    elif m.host is not None and m.host.worker_cpu_pct is not None and m.host.worker_cpu_pct.mean is not None:
        worker_cores, cores_source = m.host.worker_cpu_pct.mean / 100, "the worker's CPU share (host telemetry)"
    dev = m.device_telemetry
    if dev is not None and dev.util_pct is not None and dev.util_pct.mean is not None:
        put("device_time", dev.util_pct.mean / 100, "device utilisation in the solo run (telemetry)")
    if in_process and worker_cores is not None:
        put("host_cpu", worker_cores, cores_source)
    if not in_process and m.server_cpu_cores is not None:
        put("host_cpu", m.server_cpu_cores, "its server's process tree, CPU seconds per second (host telemetry)")
    for resource in RESOURCES:
        if resource not in out:
            why[f"demand.{resource}"] = {
                "device_time": "the model runs on the host CPU (its demand is host_cpu)" if facts.device == "cpu"
                and in_process else "no device utilisation and no device counters in the solo run",
                "compute": "no FLOPs model for this instance and no device counters",
                "memory_bandwidth": "no bytes model or peak bandwidth for this instance and no device counters",
                "host_cpu": "an endpoint's server CPU is not the client's, and its process was not sampled (give "
                "`server_pid`, or let colobench start it)"
                if not in_process else "no host telemetry samples in the solo run"}[resource]
    return out, why


def _footprint(m: PhaseMetrics, facts: InstanceFacts) -> Footprint:
    kv = None
    if facts.kv_cache_bytes_per_token and m.mean_concurrency is not None:
        held = (m.mean_prompt_tokens or 0) + (m.mean_output_tokens or 0) / 2
        kv = facts.kv_cache_bytes_per_token * held * max(m.mean_concurrency, m.mean_batch or 0)
    reserve = None
    if m.allocator is not None:
        reserve = max(0, m.allocator.max_reserved_bytes - m.allocator.max_allocated_bytes)
    return Footprint(weight_bytes=facts.weight_bytes, kv_cache_bytes=kv, peak_memory_bytes=m.peak_memory_bytes,
                     allocator_reserve_bytes=reserve)


def _repetition_values(m: PhaseMetrics) -> dict[str, list[float]]:
    stats = m.repetition_stats
    if stats is None:
        return {}
    out = {}
    for key, (_, rep_key) in SLOWDOWN_FIELDS.items():
        values = [v for v in getattr(stats, rep_key, []) if v is not None]
        if values:
            out[key] = values
    return out


def _host_cores(summary: Summary) -> int | None:
    facts = summary.host_reference.facts if summary.host_reference is not None else {}
    cores = facts.get("allowed_cpus") or facts.get("logical_cores")
    return int(cores) if isinstance(cores, (int, float)) and cores > 0 else None


def profile_of(summary: Summary, point_id: str, name: str, run_dir: str | None = None,
               host_cores: int | None = None) -> InstanceProfile | None:
    """Instance `name`'s profile from the solo phase of point `point_id` (None without one)."""
    point = summary.point(point_id)
    m = point.metrics("solo", name)
    facts = point.instances.get(name)
    if m is None or facts is None or not m.completed:
        return None
    demand, unmeasured = _demands(m, facts)
    unmeasured.update({f"metrics.{k}": v for k, v in m.unmeasured.items()})
    server = m.server
    client_ttft = server.ttft_ms.client if server is not None else None
    server_ttft = server.ttft_ms.server if server is not None else None
    latency = Latency(
        ttft_ms=Quantiles.of(m.distributions.ttft_ms), tpot_ms=Quantiles.of(m.distributions.tpot_ms),
        e2el_ms=Quantiles.of(m.distributions.e2el_ms), decode_step_ms=m.median_tpot_ms,
        server_ttft_ms=server_ttft, queue_ms=server.queue_ms if server is not None else None,
        front_end_ms=client_ttft - server_ttft if client_ttft is not None and server_ttft is not None else None)
    load = LoadFacts(mode="open" if m.open_loop is not None else "closed",
                     requested_rate=m.open_loop.requested_rate if m.open_loop is not None else None,
                     request_rate=m.request_throughput, output_tok_s=m.output_throughput,
                     concurrency=m.mean_concurrency, mean_prompt_tokens=m.mean_prompt_tokens,
                     mean_output_tokens=m.mean_output_tokens, batch=m.mean_batch, repetitions=m.repetitions)
    values = _repetition_values(m)
    noise = {}
    for key, vs in values.items():
        d = Distribution.of(vs)
        if d.cv is not None and len(vs) > 1:
            noise[key] = abs(d.cv)
    scaling = []
    for other in summary.points:
        om = other.metrics("solo", name)
        if om is None or not om.completed:
            continue
        od, _ = _demands(om, other.instances.get(name, facts))
        scaling.append(ScalePoint(point=other.id, axes=other.axes, request_rate=om.request_throughput,
                                  output_tok_s=om.output_throughput, ttft_p50_ms=om.median_ttft_ms,
                                  tpot_p50_ms=om.median_tpot_ms, demand={k: d.value for k, d in od.items()}))
    return InstanceProfile(
        instance=name, model=facts.model, backend=facts.backend, device=facts.device, point=point_id,
        run_dir=run_dir, valid=m.validity is None or m.validity.verdict == "VALID", workload=facts.workload,
        slo=m.slo.objectives if m.slo is not None else None, load=load, latency=latency, demand=demand,
        footprint=_footprint(m, facts), scaling=scaling if len(scaling) > 1 else [], noise=noise,
        host_cores=_host_cores(summary) or host_cores,
        repetition_values=values, unmeasured=unmeasured)


def solo_profiles(summary: Summary, run_dir: str | None = None,
                  host_cores: int | None = None) -> dict[tuple[str, str], InstanceProfile]:
    """Every instance's profile at every point that ran it alone: (point, instance) -> profile;
    `host_cores`: the cores the run could use, where its host reference did not record them."""
    out = {}
    for point in summary.points:
        for name in point.phases.get("solo", {}):
            p = profile_of(summary, point.id, name, run_dir, host_cores)
            if p is not None:
                out[(point.id, name)] = p
    return out


def sensitivity_level(solo: InstanceProfile, pressed: InstanceProfile, nominal: float, level: float,
                      run_dir: str | None = None, probe_job_s: float | None = None,
                      probe_streams: float | None = None) -> SensitivityLevel:
    """The slowdown of `pressed` (the instance with a probe beside it) against `solo`: each
    headline's ratio of repetition means with its Welch interval (None below 3 repetitions a side)."""
    slowdown: dict[str, float | None] = {}
    intervals: dict[str, tuple[float, float] | None] = {}
    for key in SLOWDOWN_FIELDS:
        a, b = solo.repetition_values.get(key, []), pressed.repetition_values.get(key, [])
        if a and b and sum(a) > 0:
            slowdown[key] = (sum(b) / len(b)) / (sum(a) / len(a))
            cmp = welch(Distribution.of_repetitions(a), Distribution.of_repetitions(b))  # b / a
            intervals[key] = (cmp.low, cmp.high) if cmp is not None else None
        else:
            slowdown[key], intervals[key] = None, None
    return SensitivityLevel(nominal=nominal, level=level, probe_job_s=probe_job_s, probe_streams=probe_streams,
                            slowdown=slowdown,
                            intervals=intervals, run_dir=run_dir)
