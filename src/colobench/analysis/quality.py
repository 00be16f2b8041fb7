"""Did the optimisation change what the model says? Quality of a variant against a reference.

Both run the same probe (`TransformersBackend.quality_probe`): greedy generation for fixed
prompts, and the next-token distribution at every position of a fixed text. Compared:

- token_agreement: the fraction of generated tokens equal to the reference's (position by
  position; after a divergence the continuations usually differ, which is the point);
- first_divergence: for each prompt, the first position where the outputs differ (its minimum
  and mean; the output length when they never do);
- top1_agreement: how often the most likely next token is the same over the fixed text;
- kl_divergence: mean over positions of KL(reference || variant) of the next-token distributions,
  in nats; 0 for identical outputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from colobench.analysis.model import InstanceFacts, PhaseMetrics, Point, Quality, TextPair
from colobench.records import load_probe
from colobench.rundir import PlanEntry, RunDir


def compare_probes(reference: dict[str, np.ndarray], variant: dict[str, np.ndarray]) -> dict[str, Any]:
    gr, gv = reference["generated"], variant["generated"]
    rows, cols = min(gr.shape[0], gv.shape[0]), min(gr.shape[1], gv.shape[1])
    same = gr[:rows, :cols] == gv[:rows, :cols]
    first = [int(np.argmin(row)) if not row.all() else cols for row in same]
    lr = reference["eval_logprobs"].astype(np.float64)
    lv = variant["eval_logprobs"].astype(np.float64)
    kl = np.sum(np.exp(lr) * (lr - lv), axis=-1)
    texts = {}
    if "texts" in reference and "texts" in variant:  # real checkpoints: what each said, side by side
        texts = {"texts": [TextPair(reference=str(a), variant=str(b)) for a, b in zip(reference["texts"], variant["texts"])]}
    return {**texts, "token_agreement": float(same.mean()), "first_divergence_min": min(first),
            "first_divergence_mean": float(np.mean(first)), "generated_tokens": int(rows * cols),
            "top1_agreement": float(np.mean(lr.argmax(-1) == lv.argmax(-1))),
            "kl_divergence": float(max(0.0, kl.mean()))}


def _ratio(a: Any, b: Any) -> float | None:
    return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


def _quality(metrics: PhaseMetrics, ref_metrics: PhaseMetrics, reference: str, compared: dict[str, Any],
             facts: InstanceFacts | None, ref_facts: InstanceFacts | None) -> PhaseMetrics:
    vs = {k: _ratio(getattr(metrics, k), getattr(ref_metrics, k)) for k in
          ("output_throughput", "mean_tpot_ms", "peak_memory_bytes", "energy_per_token_j")}
    vs["weight_bytes"] = _ratio(facts.weight_bytes if facts else None, ref_facts.weight_bytes if ref_facts else None)
    q = Quality(reference=reference, vs_reference=vs, **compared)
    return metrics.model_copy(update={"quality": q, "token_agreement": q.token_agreement})


def quality_of_points(run_dir: RunDir, plan: PlanEntry, points: list[Point]) -> list[Point]:
    """Each variant's probe compared with its reference's, into its metrics: an instance's
    `reference` in the same run, or across a sweep the point whose quality axes (dtype,
    quantization, graph, ...) are at their first values (`plan.quality_reference`) and whose
    other axes are the same."""
    def probe(run_id: str, name: str) -> dict[str, np.ndarray] | None:
        return load_probe(run_dir.run(run_id).quality(name)) if run_id else None

    by_id = {p.id: p for p in points}
    run_of = {(r.point, r.phase, i.name): r.run_id for r in plan.runs for i in r.instances}
    updates: dict[tuple[str, str, str], PhaseMetrics] = {}
    for run in plan.runs:  # references inside one run
        point = by_id.get(run.point)
        for inst in run.instances:
            ref = inst.reference
            if not ref or point is None:
                continue
            metrics, ref_metrics = point.metrics(run.phase, inst.name), point.metrics(run.phase, ref)
            a, b = probe(run.run_id, ref), probe(run.run_id, inst.name)
            if metrics is not None and ref_metrics is not None and a is not None and b is not None:
                updates[(point.id, run.phase, inst.name)] = _quality(
                    metrics, ref_metrics, ref, compare_probes(a, b), point.instances.get(inst.name),
                    point.instances.get(ref))
    variant = plan.quality_reference
    for point in points if variant else []:
        if all(point.axes.get(k) == v for k, v in variant.items()):
            continue  # a reference itself
        ref = next((p for p in points if all(p.axes.get(k) == (variant[k] if k in variant else point.axes.get(k))
                                             for k in point.axes)), None)
        if ref is None:
            continue
        for phase, name, metrics in point.rows():
            ref_metrics = ref.metrics(phase, name)
            a = probe(run_of.get((ref.id, phase, name), ""), name)
            b = probe(run_of.get((point.id, phase, name), ""), name)
            if ref_metrics is not None and a is not None and b is not None:
                updates[(point.id, phase, name)] = _quality(metrics, ref_metrics, ref.id, compare_probes(a, b),
                                                            point.instances.get(name), ref.instances.get(name))
    if not updates:
        return points
    return [p.model_copy(update={"phases": {phase: {name: updates.get((p.id, phase, name), mt) for name, mt in by.items()}
                                            for phase, by in p.phases.items()}}) for p in points]
