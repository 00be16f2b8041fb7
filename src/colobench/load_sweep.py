"""`colobench run --profile sweep`: the latency-versus-load curve of every instance, alone and
co-located, in one command (guidellm's sweep profile).

Three kinds of step, each an ordinary colobench run (solo phases and the co-located one) in its
own folder under OUT/steps/, so each can be reopened with `colobench report`:

1. **synchronous**: a closed loop of one request at a time: the latency floor, and the rate one
   request at a time sustains (S, per instance, from its solo phase);
2. **throughput**: a closed loop at the workload's concurrency (64 when none is given): the most
   the instance completes (T, per instance, alone);
3. **rates**: `steps` open loops at rates evenly between S and T (S + k (T - S) / (steps + 1)),
   each instance at its own, alone and then together at the same rates (how the partner changes
   what each could carry alone);
4. **together** (two instances or more): `steps` co-located open loops at rates evenly between
   the synchronous and the throughput steps' co-located rates: the curve of the pair.

The curve is each step's achieved rate against its latency (TTFT and TPOT p50/p99). The *knee*
of each instance and phase is the highest rate step that the instance still kept up with (`analysis.load_sweep.knee`). `load_sweep.json` holds every point; the console prints the
table. Each step runs `duration_s` seconds (the workload's, 10 by default) per repetition.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from colobench import api
from colobench.analysis.load_sweep import LoadSweep, knee, points_of
from colobench.analysis.model import Summary
from colobench.errors import ColobenchError, make_dir
from colobench.rundir import write_json_atomic
from colobench.specs import ExperimentSpec, experiment_from_dict

DEFAULT_STEPS = 6
DEFAULT_STEP_S = 10.0
DEFAULT_CONCURRENCY = 64


def run_load_sweep(spec: ExperimentSpec, out: Path, steps: int = DEFAULT_STEPS, source: str = "experiment",
                   progress: Any = None, note: Callable[[str], None] = lambda _: None) -> LoadSweep:
    """The whole sweep into `out` (see the module docstring); `load_sweep.json` is rewritten after
    every step, so an interrupted sweep keeps its points."""
    if spec.sweep:
        raise ColobenchError("--profile sweep chooses the load itself: drop the sweep axes")
    if out.exists() and any(out.iterdir()):
        raise ColobenchError(f"--out {out}: folder exists and is not empty; choose another")
    make_dir(out, "--out")
    names = spec.instance_names()
    base = spec.model_dump(mode="json", exclude_none=True)
    step_s = spec.workload.duration_s or DEFAULT_STEP_S
    concurrency = spec.workload.concurrency if isinstance(spec.workload.concurrency, int) else DEFAULT_CONCURRENCY
    sweep = LoadSweep(experiment=spec.name, steps=steps, step_s=step_s)

    def experiment(label: str, per_instance: dict[str, dict[str, Any]], solo: bool = True) -> ExperimentSpec:
        data = {**base, "name": f"{spec.name}-{label}", "sweep": {}, "solo_baselines": solo}
        data.pop("scenario", None)
        for key in ("rate", "concurrency", "load", "duration_s", "requests", "batch_size", "ramp", "trace"):
            data.get("workload", {}).pop(key, None)
        data["instances"] = [{**inst, "name": name, "workload": {**{k: v for k, v in (inst.get("workload") or {}).items()
                                                                  if k not in ("rate", "concurrency", "load", "ramp",
                                                                               "batch_size", "requests", "duration_s")},
                                                               **per_instance[name]}}
                             for name, inst in zip(names, base["instances"])]
        return experiment_from_dict(data, source)

    def run(label: str, per_instance: dict[str, dict[str, Any]], number: int, solo: bool = True) -> Summary:
        folder = out / "steps" / f"{number:02d}-{label}"
        note(f"load sweep step {number}: {label}")
        result = api.run_experiment(experiment(label, per_instance, solo), out=folder, progress=progress,
                                    source=source)
        if result.interrupted:
            raise KeyboardInterrupt
        for name, pts in points_of(result.summary, label, str(folder.relative_to(out))).items():
            sweep.points.setdefault(name, []).extend(pts)
        write_json_atomic(out / "load_sweep.json", sweep.model_dump(mode="json"))
        return result.summary

    closed = {"load": "closed", "duration_s": step_s}
    sync = run("synchronous", {n: {**closed, "concurrency": 1} for n in names}, 1)
    peak = run("throughput", {n: {**closed, "concurrency": concurrency} for n in names}, 2)
    slow = {n: sync.point().metrics("solo", n) for n in names}
    fast = {n: peak.point().metrics("solo", n) for n in names}
    low = {n: (m.request_throughput if m else None) for n, m in slow.items()}
    high = {n: (m.request_throughput if m else None) for n, m in fast.items()}
    missing = [n for n in names if not low[n] or not high[n]]
    if missing:
        raise ColobenchError(f"load sweep: {', '.join(missing)} completed nothing in the synchronous or throughput "
                             f"step (see {out / 'steps'})")
    def between(lo: dict[str, float], hi: dict[str, float], k: int) -> dict[str, float]:
        return {n: lo[n] + k * (max(hi[n], lo[n]) - lo[n]) / (steps + 1) for n in names}

    def open_loop(rates: dict[str, float]) -> dict[str, dict[str, Any]]:
        return {n: {"load": "open", "rate": round(rates[n], 4), "duration_s": step_s, "concurrency": concurrency}
                for n in names}

    for k in range(1, steps + 1):  # each instance between its own synchronous and throughput rate, alone
        run(f"rate-{k}", open_loop(between(low, high, k)), 2 + k)
    if len(names) > 1:  # together: between the rates they sustain together, one at a time and at full load
        co_low = {n: (m.request_throughput if (m := sync.point().metrics("colocated", n)) else None) for n in names}
        co_high = {n: (m.request_throughput if (m := peak.point().metrics("colocated", n)) else None) for n in names}
        if all(co_low.values()) and all(co_high.values()):
            for k in range(1, steps + 1):
                run(f"together-{k}", open_loop(between(co_low, co_high, k)), 2 + steps + k, solo=False)
    knees = {n: {phase: knee(pts, phase) for phase in ("solo", "colocated")} for n, pts in sweep.points.items()}
    sweep = sweep.model_copy(update={"knee": knees})
    write_json_atomic(out / "load_sweep.json", sweep.model_dump(mode="json"))
    return sweep
