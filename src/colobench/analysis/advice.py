"""Advice per scenario: after a sweep of variants, which one to run for each way of serving.

Four scenarios, each a figure and a direction:

- `interactive` (one user at a time): the lowest median TPOT, ties broken by the lowest median
  TTFT; both shown;
- `throughput` (batch serving): the highest output tokens per second;
- `memory` (a memory-constrained card): the lowest peak memory;
- `sharing` (two models on one card): the highest aggregate throughput scaling of the
  co-located run (only points that have one).

A variant is a candidate only when its quality stays within the guard: token agreement with its
reference at least `min_token_agreement` and KL divergence at most `max_kl` (a variant without a
quality figure is one whose outputs cannot differ: a batch size, a runtime knob); and when the
phase behind the figure is VALID. Each choice comes with its figure, the runner-up and its figure,
and the variants left out with the reason, so the person can check the pick.

A pick is only as good as its margin over the runner-up: `margin` is `clear` when the ratio's 95%
interval over repetitions lies beyond the 5% tolerance (paired by repetition where the two
variants were interleaved in one group, `Point.paired_with`: Student t over the per-repetition log
ratios, so a drift of the host that moved both alike cancels; otherwise Welch, as `colobench
compare`),
`inconclusive` when it excludes 1 but not the tolerance, `within noise` when it holds 1 (either
would do; more repetitions decide), `no interval` below 3 repetitions; `single figure` for peak
memory, which has one value per phase; for sharing, `within noise` when the two scalings'
intervals overlap.

Only variant axes are choices. Axes that change the question rather than the answer (the
workload scenario, the prompts, prompt and output lengths, the arrival process, the number of
requests) are held fixed: the advice is given within each of their combinations, so a sweep of
`--scenario short,long --dtype float32,bfloat16` advises a dtype for short prompts and one for
long prompts, and a sweep of scenarios alone advises nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from colobench.analysis.compare import TOLERANCE, verdict
from colobench.analysis.distribution import welch
from colobench.analysis.interference import ratio_interval
from colobench.analysis.model import Advice, PhaseMetrics, Point

MIN_TOKEN_AGREEMENT = 0.90
MAX_KL = 0.05


@dataclass(frozen=True)
class Guard:
    min_token_agreement: float = MIN_TOKEN_AGREEMENT
    max_kl: float = MAX_KL


PER_REPETITION = {"interactive": "p50_tpot_ms", "throughput": "output_throughput"}  # the figure, per repetition
SCENARIOS = {  # scenario -> (figure, what it is, lower is better)
    "interactive": ("median_tpot_ms", "median TPOT ms (then TTFT)", True),
    "throughput": ("output_throughput", "output tok/s", False),
    "memory": ("peak_memory_bytes", "peak memory", True),
    "sharing": ("throughput_scaling", "aggregate scaling (x)", False),
}


# workload axes: what is asked of the model, not a way of serving it (see the module docstring)
QUESTION_AXES = frozenset({"scenario", "prompts", "prompt_tokens", "output_tokens", "requests", "duration",
                           "warmup_requests", "seed", "repetitions", "order", "load", "rate", "arrival",
                           "burstiness"})


def is_question(axis: str) -> bool:
    """Whether a sweep axis (`scenario`, `workload.prompt_tokens`, `instances.1.workload.rate`)
    changes the workload rather than the variant served."""
    return ".env." not in f".{axis}" and axis.split(".")[-1] in QUESTION_AXES


def _phase(point: Point, name: str) -> PhaseMetrics | None:
    return point.metrics("solo", name) or point.metrics("colocated", name)


def _excluded(point: Point, name: str, guard: Guard) -> str | None:
    """Why a point's variant is not a candidate for `name` (None: it is)."""
    mt = _phase(point, name)
    if mt is None or not mt.completed:
        return "nothing measured"
    if mt.validity is not None and mt.validity.verdict != "VALID":
        return "INVALID: " + "; ".join(mt.validity.reasons)[:120]
    q = mt.quality
    if q is not None and (q.token_agreement < guard.min_token_agreement or q.kl_divergence > guard.max_kl):
        return (f"quality outside the guard: token agreement {q.token_agreement * 100:.1f}% (at least "
                f"{guard.min_token_agreement * 100:.0f}%), KL {q.kl_divergence:.3g} (at most {guard.max_kl:g})")
    return None


def _figure(point: Point, name: str, scenario: str) -> tuple[float, ...] | None:
    mt = _phase(point, name)
    if scenario == "sharing":
        s = point.interference.throughput_scaling
        return (s,) if s is not None else None
    if mt is None:
        return None
    if scenario == "interactive":
        return (mt.median_tpot_ms, mt.median_ttft_ms) if mt.median_tpot_ms is not None else None
    value = getattr(mt, SCENARIOS[scenario][0])
    return (float(value),) if value is not None else None


def advise(points: list[Point], axes: list[str], guard: Guard = Guard()) -> list[Advice]:
    """The advice table of a sweep (empty without a variant axis): per combination of the
    workload axes, instance and scenario, the best candidate variant and the runner-up."""
    fixed = [a for a in axes if is_question(a)]
    if len(points) < 2 or len(fixed) == len(axes):
        return []
    groups: dict[tuple, list[Point]] = {}
    for p in points:
        groups.setdefault(tuple(repr(p.axes.get(a)) for a in fixed), []).append(p)
    out: list[Advice] = []
    for group in groups.values():
        if len(group) >= 2:
            out += _advise_group(group, {a: group[0].axes.get(a) for a in fixed}, guard)
    return out


def _advise_group(points: list[Point], within: dict[str, Any], guard: Guard) -> list[Advice]:
    out: list[Advice] = []
    names = list(dict.fromkeys(n for p in points for n in p.instances))
    for name in names:
        excluded = {p.id: why for p in points if name in p.instances and (why := _excluded(p, name, guard))}
        for scenario, (figure, label, lower) in SCENARIOS.items():
            scored = [(f, p) for p in points if name in p.instances and p.id not in excluded
                      and (f := _figure(p, name, scenario)) is not None]
            if not scored:
                continue
            scored.sort(key=lambda fp: tuple(v if lower else -v for v in fp[0]))
            best, runner = scored[0], scored[1] if len(scored) > 1 else None
            out.append(Advice(
                scenario=scenario, instance=name, within=within, figure=label, choice=best[1].id,
                axes={k: v for k, v in best[1].axes.items() if k not in within},
                value=best[0][0], also=_also(scenario, best[1], name), runner_up=runner[1].id if runner else None,
                runner_up_value=runner[0][0] if runner else None, candidates=len(scored), excluded=excluded,
                margin=_margin(scenario, best[1], runner[1] if runner else None, name, lower)))
    return out


def _margin(scenario: str, best: Point, runner: Point | None, name: str, lower: bool) -> str:
    """How sure the pick is against the runner-up (see the module docstring)."""
    if runner is None:
        return "no runner-up"
    if scenario == "memory":
        return "single figure"
    if scenario == "sharing":
        a, b = best.interference.throughput_scaling_interval, runner.interference.throughput_scaling_interval
        if a is None or b is None:
            return "no interval"
        return "within noise" if a[0] <= b[1] and b[0] <= a[1] else "clear"
    mb, mr = _phase(best, name), _phase(runner, name)
    metric = PER_REPETITION[scenario]
    if mb is None or mr is None or mb.repetition_stats is None or mr.repetition_stats is None:
        return "no interval"
    if runner.id in (best.paired_with or []):  # interleaved: repetition k of one beside repetition k of the other
        b, r = mb.repetition_stats.by_repetition(metric), mr.repetition_stats.by_repetition(metric)
        common = sorted(set(b) & set(r))
        ratios = [b[k] / r[k] for k in common if r[k]]
        interval = ratio_interval(ratios) if len(ratios) == len(common) else None
        if interval is None or not ratios:
            return "no interval"
        ratio = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
        v = verdict(ratio, interval, higher_is_better=not lower, tolerance=TOLERANCE)
    else:
        cmp = welch(mr.repetition_stats.summary(metric), mb.repetition_stats.summary(metric))  # best / runner-up
        if cmp is None:
            return "no interval"
        v = verdict(cmp.ratio, (cmp.low, cmp.high), higher_is_better=not lower, tolerance=TOLERANCE)
    # "worse": the repetitions disagree with the pooled figure that made the pick
    return {"better": "clear", "inconclusive": "inconclusive", "worse": "inconclusive", "noise": "within noise"}.get(v, v)


def _also(scenario: str, point: Point, name: str) -> dict[str, float | None]:
    """The figures beside the chosen one that a person weighs it with."""
    mt = _phase(point, name)
    if mt is None:
        return {}
    if scenario == "interactive":
        return {"median_ttft_ms": mt.median_ttft_ms}
    if scenario == "throughput":
        return {"mean_tpot_ms": mt.mean_tpot_ms, "peak_memory_bytes": mt.peak_memory_bytes}
    if scenario == "memory":
        return {"output_throughput": mt.output_throughput}
    return {"output_throughput": mt.output_throughput}
