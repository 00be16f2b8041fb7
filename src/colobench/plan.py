"""From what the user asked (`ExperimentSpec`) to what will run (`ExperimentPlan`).

Planning expands sweep axes into points (`colobench.sweep`), then for each point resolves
everything a worker must not guess: `auto` devices and dtypes, preset or checkpoint folders,
thread counts, memory shares, each instance's own workload (scenario applied); and names the
runs with stable readable ids: one *solo* run per instance (its baseline) and one *co-located*
run with all instances started together, under the point's id (`tiny-bs8/solo-tiny`).

CPU threads: co-located workers sharing a CPU each get `cores // n` torch threads (at least 1),
and the solo baselines use the same count, so a slowdown reflects interference, not a change of
thread count. Every count is recorded in the plan and the run records.

Preflight (`check_plan`) raises a one-line `ColobenchError` for anything that cannot work
(missing device, missing checkpoint, prompt longer than the model's context) before a single
file is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal


from colobench.devices import Device, DeviceUnavailable, check_device, kind_of, memory_budget_bytes, normalise
from colobench.devices.cpu import core_ranges
from colobench.errors import ColobenchError, SpecError
from colobench.models.presets import PRESETS, approx_params, default_cache_dir, kv_values_per_token, preset_path
from colobench.specs import (INSTANCE_KNOBS, QUALITY_AXES, EndpointConfig, ExperimentSpec, FakeTimings,
                             InstanceKnobs, RayPlacement, WorkloadSpec, quality_reference)
from colobench.sweep import expand
from colobench.typed import Frozen
from colobench.workload.prompts import PromptJob, prompt_set_key, read_prompt_file
from colobench.workload.trace import TraceError, read_trace


class ResolvedInstance(InstanceKnobs):
    """An instance with nothing left to decide. Its knobs (`InstanceKnobs`) are copied from the
    spec as declared; `device`, `dtype` and `cpu_threads` are resolved."""

    name: str
    model: str  # as the user wrote it
    prompt_salt: str = ""  # the run directory's name: prompts differ between run directories, repeat within one
    preset: str | None  # preset name when `model` is one
    model_path: str | None  # folder the worker loads (built preset or checkpoint)
    backend: str
    device: str  # cpu, cuda:0, npu:1, endpoint (never auto)
    dtype: str  # float32, bfloat16, float16, none (never auto)
    cpu_threads: int
    memory_share: float = 1.0  # fraction of its device's memory this instance may plan for
    workload: WorkloadSpec
    fake: FakeTimings | None = None
    endpoint: EndpointConfig | None = None
    server: str | None = None  # openai backend: the managed server it talks to (its URL is bound at run time)
    tokenizer: str | None = None  # openai backend: local tokenizer for counting tokens
    cpu_cores: list[int] | None = None  # pinned cores (None: not pinned)
    reference: str | None = None
    quality_probe: bool = False  # record greedy outputs and log-probs for the quality check
    ray: RayPlacement | None = None  # Ray launcher placement (None: derived from the device)
    secret_env: list[str] = []  # `env` variables whose values are secrets (scrubbed by value)
    # in a group that interleaves several sweep points (variants): `<name>@<point>`, the worker's
    # name there (its records, logs and messages); None elsewhere, where the name is enough
    member: str | None = None

    @property
    def key(self) -> str:
        """The instance's worker name within its group: `member`, else `name`."""
        return self.member or self.name

    @property
    def in_process(self) -> bool:
        """The model runs in the worker, on a device of this host (not behind a server, not fake)."""
        return self.backend == "transformers"

    def backend_settings(self, device: Device | None = None) -> dict[str, Any]:
        """What `backends.make_backend(self.backend, ...)` takes: resolved values only, and for an
        in-process model the `Device` the worker made."""
        if self.backend == "fake":
            return (self.fake or FakeTimings()).model_dump()
        if self.backend == "openai":
            return {"model": self.model, "config": self.endpoint, "tokenizer_path": self.tokenizer}
        return {"model_path": self.model_path, "device": device, "dtype": self.dtype, "quantization": self.quantization,
                "graph": self.graph, "attn_implementation": self.attn_implementation}


class RunSpec(Frozen):
    """Instances started together on a shared clock, measured over `repetitions` windows."""

    run_id: str  # "<point>/<run>" in a sweep, "<run>" otherwise
    point: str = ""
    phase: Literal["solo", "colocated"]
    instances: list[ResolvedInstance]
    repetitions: int


class Window(Frozen):
    """One measured window: repetition `repetition` of run `run_id`."""

    run_id: str
    repetition: int  # 1-based, within its run


class RunGroup(Frozen):
    """Runs executed by one set of workers, window after window. Interleaved order: a point's runs
    (each solo baseline, then the co-located run) once per repetition, every instance loaded
    throughout; phase-major: one run alone, its repetitions back to back."""

    point: str = ""
    runs: list[RunSpec]
    windows: list[Window]

    @property
    def instances(self) -> list[ResolvedInstance]:
        """Every instance of the group's runs, once each (by worker name: `key`), in order."""
        seen: dict[str, ResolvedInstance] = {}
        for run in self.runs:
            for inst in run.instances:
                seen.setdefault(inst.key, inst)
        return list(seen.values())

    @property
    def points(self) -> list[str]:
        """The sweep points whose runs the group holds (several: interleaved variants)."""
        return list(dict.fromkeys(r.point for r in self.runs))

    def run(self, run_id: str) -> RunSpec:
        return next(r for r in self.runs if r.run_id == run_id)

    def only(self, run_ids: set[str]) -> "RunGroup":
        """The group restricted to some of its runs (the rest finished before a resume)."""
        return RunGroup(point=self.point, runs=[r for r in self.runs if r.run_id in run_ids],
                        windows=[w for w in self.windows if w.run_id in run_ids])


def group_runs(runs: list[RunSpec], order: str) -> list[RunGroup]:
    """The groups a point's runs execute in, for an order."""
    if order == "phase-major" or not runs:
        return [RunGroup(point=r.point, runs=[r], windows=[Window(run_id=r.run_id, repetition=k + 1)
                                                           for k in range(r.repetitions)]) for r in runs]
    reps = max(r.repetitions for r in runs)
    windows = [Window(run_id=r.run_id, repetition=k + 1) for k in range(reps) for r in runs if k < r.repetitions]
    return [RunGroup(point=runs[0].point, runs=runs, windows=windows)]


def _variant_signature(runs: list[RunSpec]) -> str | None:
    """What must be equal for two sweep points to be variants of one another (interleaved in one
    group): the runs, instances, devices and workloads; not the variant axes (dtype,
    quantization, graph, attention, env, runtime knobs, a fake backend's timings). None: a point
    that is never interleaved with others (an endpoint: its server is its own)."""
    if any(i.backend == "openai" for r in runs for i in r.instances):
        return None
    shape = [(r.run_id.rsplit("/", 1)[-1], r.phase, r.repetitions,
              [(i.name, i.model, i.preset, i.backend, i.device, i.cpu_threads, i.cpu_cores, i.memory_share,
                i.workload.model_dump(mode="json"), i.ray.model_dump(mode="json") if i.ray else None)
               for i in r.instances]) for r in runs]
    return json.dumps(shape, sort_keys=True, default=str)


def interleave_variants(points: list[list[RunSpec]]) -> list[RunGroup]:
    """Sweep points that differ only in variant axes, as one group: every variant's workers
    loaded together, and each repetition runs every variant (its solo and co-located windows, in
    the point's order) with the variants' order rotating from one repetition to the next. The
    variants' differences are then paired by repetition, as a point's solo and co-located phases
    are: a host that drifts moves them alike. Each instance's worker is `<name>@<point>`; on an
    accelerator its memory share is divided among the variants loaded beside it. Points that are
    not variants of another keep a group of their own."""
    by_signature: dict[str, list[list[RunSpec]]] = {}
    singles: list[list[RunSpec]] = []
    for runs in points:
        signature = _variant_signature(runs) if runs else None
        (by_signature.setdefault(signature, []) if signature else singles).append(runs)
    groups: list[tuple[int, RunGroup]] = []
    order = {id(runs): k for k, runs in enumerate(points)}
    for runs in singles:
        groups += [(order[id(runs)], g) for g in group_runs(runs, "interleaved")]
    for members in by_signature.values():
        if len(members) == 1:
            groups += [(order[id(members[0])], g) for g in group_runs(members[0], "interleaved")]
            continue
        n = len(members)
        renamed = [[r.model_copy(update={"instances": [i.model_copy(update={
            "member": f"{i.name}@{r.point}",
            "memory_share": i.memory_share / n if kind_of(i.device).accelerator else i.memory_share})
            for i in r.instances]}) for r in runs] for runs in members]
        reps = max(r.repetitions for runs in renamed for r in runs)
        windows = [Window(run_id=r.run_id, repetition=k + 1) for k in range(reps)
                   for runs in renamed[k % n:] + renamed[:k % n] for r in runs if k < r.repetitions]
        groups.append((order[id(members[0])], RunGroup(point="", runs=[r for runs in renamed for r in runs],
                                                       windows=windows)))
    return [g for _, g in sorted(groups, key=lambda x: x[0])]


class PlannedPoint(Frozen):
    id: str
    axes: dict[str, Any]
    instances: list[ResolvedInstance]


class ExperimentPlan(Frozen):
    name: str
    points: list[PlannedPoint]
    runs: list[RunSpec]
    cache_dir: str
    order: Literal["interleaved", "phase-major"] = "interleaved"
    groups: list[RunGroup] = []
    # across a sweep of quality axes (dtype, quantization, graph, ...): their first values, the
    # reference each variant's outputs are compared with (by axis label)
    quality_reference: dict[str, Any] = {}

    @property
    def instances(self) -> list[ResolvedInstance]:
        """Every resolved instance of every point (what preflight checks)."""
        return [i for p in self.points for i in p.instances]


def _model_source(model: str, cache_dir: Path) -> tuple[str | None, str]:
    """(preset name, folder to load) for a model reference."""
    if model in PRESETS:
        return model, str(preset_path(model, cache_dir))
    return None, str(Path(model).expanduser())


def _cores_for(affinity: Any, k: int, n: int, cores: int) -> list[int] | None:
    """The cores instance k of n is pinned to: as given, or `auto` = an even contiguous share."""
    if affinity is None:
        return None
    if affinity != "auto":
        return list(affinity)
    share = max(1, cores // n)
    first = (k * share) % cores
    return list(range(first, min(cores, first + share)))


def _memory_shares(instances: list[Any], devices: list[str]) -> list[float]:
    """Each instance's share of its device's memory: its `memory_fraction`, else an even split
    of what the instances with an explicit fraction leave on that device."""
    shares = []
    for k, inst in enumerate(instances):
        same = [i for i, d in zip(instances, devices) if d == devices[k]]
        given = sum(i.memory_fraction or 0 for i in same)
        if given > 1 + 1e-9:
            raise ValueError(f"instances on {devices[k]} ask for memory_fraction {given:g} in all (at most 1)")
        if inst.memory_fraction is not None:
            shares.append(inst.memory_fraction)
            continue
        rest = [i for i in same if i.memory_fraction is None]
        left = 1.0 - given
        if left <= 1e-9:
            raise ValueError(f"instances[{k}] on {devices[k]} has no memory left: the others' memory_fraction "
                             f"adds up to {given:g}; give it one")
        shares.append(left / len(rest))
    return shares


def _resolve_instances(spec: ExperimentSpec, auto_device: str, cores: int, cache_dir: Path,
                       quality: bool = False) -> list[ResolvedInstance]:
    names = spec.instance_names()
    devices = [normalise(i.device, auto_device) for i in spec.instances]
    # Workers that share the host CPU for compute split its cores; accelerator workers also need
    # host threads (dispatch), split the same way so co-located workers never oversubscribe.
    share = max(1, cores // len(spec.instances))
    memory = _memory_shares(spec.instances, devices)
    resolved = []
    for k, inst in enumerate(spec.instances):
        preset, path = _model_source(inst.model, cache_dir) if inst.backend == "transformers" else (None, None)
        device = devices[k] if inst.backend != "openai" else "endpoint"
        kind = kind_of(device)
        for knob in INSTANCE_KNOBS:  # knobs that apply to some device kinds only
            if knob.meta.device_kinds and getattr(inst, knob.name) is not None \
                    and kind.name not in knob.meta.device_kinds:
                raise ValueError(f"instances[{k}].{knob.name} applies to {' or '.join(knob.meta.device_kinds)} "
                                 f"devices, not {device}")
        resolved.append(ResolvedInstance(**{
            **inst.knob_values(),
            "name": names[k], "model": inst.model, "preset": preset, "model_path": path, "backend": inst.backend,
            "device": device, "dtype": kind.default_dtype if inst.dtype == "auto" else inst.dtype,
            "cpu_threads": inst.cpu_threads or share, "memory_share": memory[k], "workload": spec.workload_for(k),
            "fake": inst.fake, "endpoint": inst.endpoint_config(), "server": inst.server, "tokenizer": inst.tokenizer,
            "cpu_cores": _cores_for(inst.cpu_affinity, k, len(spec.instances), cores), "reference": inst.reference,
            "ray": inst.ray, "secret_env": inst.secret_env, "quality_probe": inst.backend == "transformers" and (
                quality or inst.reference is not None or any(i.reference == names[k] for i in spec.instances)),
        }))
    return resolved


def plan_experiment(spec: ExperimentSpec, auto_device: str = "cpu", cpu_count: int | None = None,
                    source: str = "experiment") -> ExperimentPlan:
    """Expand and resolve `spec`. Pure: `auto_device` and `cpu_count` are passed in."""
    cores = cpu_count or os.cpu_count() or 1
    cache_dir = Path(spec.cache_dir).expanduser() if spec.cache_dir else default_cache_dir()
    points: list[PlannedPoint] = []
    runs: list[RunSpec] = []
    groups: list[RunGroup] = []
    per_point: list[list[RunSpec]] = []
    quality = any(path.split(".")[-1] in QUALITY_AXES for path in spec.sweep)
    for point in expand(spec, source):
        try:
            resolved = _resolve_instances(point.spec, auto_device, cores, cache_dir, quality)
        except ValueError as exc:
            where = f"{source} (sweep point {point.id})" if point.id else source
            raise SpecError(where, "", str(exc), show_value=False) from None
        points.append(PlannedPoint(id=point.id, axes=point.axes, instances=resolved))
        prefix = f"{point.id}/" if point.id else ""
        point_runs = []
        if point.spec.solo_baselines or len(resolved) == 1:
            point_runs += [RunSpec(run_id=f"{prefix}solo-{r.name}", point=point.id, phase="solo", instances=[r],
                                   repetitions=point.spec.repetitions) for r in resolved]
        if len(resolved) > 1 and point.spec.colocated:
            point_runs.append(RunSpec(run_id=f"{prefix}colocated", point=point.id, phase="colocated",
                                      instances=resolved, repetitions=point.spec.repetitions))
        runs += point_runs
        per_point.append(point_runs)
    if spec.order == "phase-major":  # each run alone, its repetitions back to back
        groups = [g for point_runs in per_point for g in group_runs(point_runs, "phase-major")]
    else:
        groups = interleave_variants(per_point)
    return ExperimentPlan(name=spec.name, points=points, runs=runs, cache_dir=str(cache_dir), order=spec.order,
                          groups=groups, quality_reference=quality_reference(spec.sweep))



def _model_config(inst: ResolvedInstance) -> tuple[dict[str, Any], str] | None:
    """The instance's architecture config and model type (a preset's, or the checkpoint's)."""
    if inst.preset:
        return PRESETS[inst.preset].config, PRESETS[inst.preset].model_type
    if inst.model_path:
        try:
            config = json.loads((Path(inst.model_path) / "config.json").read_text())
        except (OSError, ValueError):
            return None
        if isinstance(config, dict):
            text = config.get("text_config")
            config = {**config, **text} if isinstance(text, dict) else config
            return config, str(config.get("model_type") or "llama")
    return None


def _max_context(inst: ResolvedInstance) -> int | None:
    found = _model_config(inst)
    return found[0].get("max_position_embeddings") if found else None


DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
QUANTIZED_BYTES = {"int8": 1.0, "int4": 0.5}


def memory_estimate(inst: ResolvedInstance) -> dict[str, Any] | None:
    """What an in-process instance needs at least: its weights as stored (dtype, or quantised)
    plus the KV cache of its batch or concurrency at its longest context. None when the shapes or
    the parallelism are not known before it runs (`max`, an uncapped open loop)."""
    found = _model_config(inst) if inst.backend == "transformers" else None
    wl = inst.workload
    parallel = wl.batch_size if wl.load_model == "static" else wl.concurrency
    if found is None or not isinstance(parallel, int) or inst.dtype not in DTYPE_BYTES:
        return None
    config, model_type = found
    try:
        params = approx_params(config, model_type)
        kv_per_token = kv_values_per_token(config) * DTYPE_BYTES[inst.dtype]
    except (KeyError, TypeError, ZeroDivisionError):
        return None
    weights = int(params * QUANTIZED_BYTES.get(inst.quantization, DTYPE_BYTES[inst.dtype]))
    context = wl.max_prompt_tokens() + wl.max_output_tokens()
    kv = kv_per_token * parallel * context
    return {"weights": weights, "kv": kv, "total": weights + kv, "parallel": parallel, "context": context}


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


def _check_memory(point: PlannedPoint, source: str) -> None:
    """Refuse what cannot fit: each accelerator instance against its share of the card, the
    instances on the host's CPU together against its RAM."""
    on_cpu: list[tuple[int, dict[str, Any]]] = []
    for k, inst in enumerate(point.instances):
        est = memory_estimate(inst)
        if est is None:
            continue
        what = (f"needs about {_gib(est['total'])} (weights {_gib(est['weights'])} + KV cache {_gib(est['kv'])} for "
                f"{est['parallel']} x {est['context']} tokens)")
        if kind_of(inst.device).accelerator:
            total = memory_budget_bytes(inst.device)
            if total and est["total"] > total * inst.memory_share:
                raise SpecError(source, f"instances[{k}].workload", f"{inst.name} {what} but its share of "
                                f"{inst.device} is {_gib(total * inst.memory_share)} ({inst.memory_share:.0%} of "
                                f"{_gib(total)}): lower the batch or concurrency, or use max", show_value=False)
        else:
            on_cpu.append((k, est))
    total = memory_budget_bytes("cpu")
    if on_cpu and total and sum(e["total"] for _, e in on_cpu) > total:
        k, est = max(on_cpu, key=lambda p: p[1]["total"])
        together = sum(e["total"] for _, e in on_cpu)
        raise SpecError(source, f"instances[{k}].workload", f"the CPU instances need about {_gib(together)} together "
                        f"(the largest {_gib(est['total'])}: weights {_gib(est['weights'])} + KV cache "
                        f"{_gib(est['kv'])} for {est['parallel']} x {est['context']} tokens), more than the host's "
                        f"{_gib(total)}: lower the batch or concurrency", show_value=False)


def check_plan(plan: ExperimentPlan, source: str = "experiment", allowed_cores: list[int] | None = None) -> None:
    """Everything that can be known wrong before running, as one-line errors. `allowed_cores`:
    the cores workers on this host may be pinned to (None: workers run elsewhere, e.g. Ray)."""
    for point in plan.points:
        _check_point(point, source)
        if allowed_cores is not None:
            _check_cores(point, f"{source} (sweep point {point.id})" if point.id else source, allowed_cores)
        _check_memory(point, f"{source} (sweep point {point.id})" if point.id else source)
    if not plan.runs:
        raise ColobenchError(f"{source}: nothing to run")


def _check_cores(point: PlannedPoint, source: str, allowed: list[int]) -> None:
    """Pinned cores that this process may not use would make every worker fail to start."""
    for k, inst in enumerate(point.instances):
        missing = [c for c in inst.cpu_cores or [] if c not in allowed]
        if missing:
            raise SpecError(source, f"instances[{k}].cpu_affinity", f"core(s) {core_ranges(missing)} not available "
                            f"here (colobench may use {core_ranges(allowed)})", show_value=False)


def _check_point(point: PlannedPoint, source: str) -> None:
    if point.id:
        source = f"{source} (sweep point {point.id})"
    for k, inst in enumerate(point.instances):
        field = f"instances[{k}]"
        if inst.backend == "transformers":
            try:
                check_device(inst.device)
            except DeviceUnavailable as exc:
                raise SpecError(source, f"{field}.device", f"device not available: {exc}", inst.device) from None
            if inst.preset is None:
                path = Path(inst.model_path or "")
                if not path.is_dir():
                    presets = ", ".join(PRESETS)
                    raise SpecError(source, f"{field}.model",
                                    f"not a preset ({presets}) and no such checkpoint folder", inst.model)
                if not (path / "config.json").is_file():
                    raise SpecError(source, f"{field}.model", "checkpoint folder has no config.json", inst.model)
        longest = _trace_check(inst, source, field)
        if inst.backend == "openai":
            if inst.tokenizer and not Path(inst.tokenizer).expanduser().is_dir():
                raise SpecError(source, f"{field}.tokenizer", "no such tokenizer folder", inst.tokenizer)
            if inst.workload.prompts is not None and inst.workload.prompts.file is not None:
                read_prompt_file(inst.workload.prompts.file)
            continue
        context = _max_context(inst)
        wl = inst.workload
        if wl.prompts is not None:
            if inst.backend == "transformers" and inst.preset is not None:
                raise SpecError(source, f"{field}.workload.prompts",
                                f"text prompts need a checkpoint with a tokenizer; preset {inst.preset!r} takes "
                                "synthetic token ids (drop prompts, or use a checkpoint folder)", show_value=False)
            if wl.prompts.file is not None:
                read_prompt_file(wl.prompts.file)  # missing, empty, malformed: SpecError naming the line
        elif longest is not None:
            if context and longest > context:
                raise SpecError(source, f"{field}.workload.trace", f"the trace's longest request ({longest} tokens, "
                                f"prompt and output) exceeds the model's context of {context} tokens", show_value=False)
        elif context and wl.max_prompt_tokens() + wl.max_output_tokens() > context:
            raise SpecError(source, f"{field}.workload",
                            f"prompt + output tokens (up to {wl.max_prompt_tokens() + wl.max_output_tokens()}) exceed "
                            f"the model's context of {context} tokens", show_value=False)


def _trace_check(inst: ResolvedInstance, source: str, field: str) -> int | None:
    """A trace the instance replays, read now (a missing file or a bad row is one line naming it):
    its longest request in tokens, or None without a trace."""
    wl = inst.workload
    if wl.trace is None:
        return None
    try:
        trace = read_trace(wl.trace, wl.trace_format).window(0.0, wl.duration_s)
    except TraceError as exc:
        raise SpecError(source, f"{field}.workload.trace", str(exc), show_value=False) from None
    if not trace.rows:
        raise SpecError(source, f"{field}.workload.duration_s", f"no request of {wl.trace} falls in the first "
                        f"{wl.duration_s:g} s", show_value=False)
    return max(r.input_tokens + r.output_tokens for r in trace.rows)


def prompt_jobs(plan: ExperimentPlan) -> list[PromptJob]:
    """The prompt sets the plan's instances need, one job per instance with text prompts."""
    jobs = []
    for inst in plan.instances:
        src = inst.workload.prompts
        if src is None:
            continue
        if inst.backend == "openai":  # endpoints take text; the server tokenizes
            jobs.append(PromptJob(prompt_set_key(inst.model, src), src, inst.name, inst.model, None,
                                  chat_api=inst.endpoint is not None and inst.endpoint.api == "chat"))
        elif inst.backend == "transformers" and inst.model_path:
            jobs.append(PromptJob(prompt_set_key(inst.model_path, src), src, inst.name, inst.model, inst.model_path,
                                  context_tokens=_max_context(inst),
                                  max_output_tokens=inst.workload.max_output_tokens()))
    return jobs


def prompt_key(inst: ResolvedInstance) -> str | None:
    """The key of the prompt set `inst` uses (see `prompt_jobs`), None for synthetic prompts."""
    src = inst.workload.prompts
    if src is None or not (inst.model_path or inst.endpoint):
        return None
    return prompt_set_key(inst.model_path or inst.model, src)
