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

from pathlib import Path
from typing import Any

import numpy as np


def save_probe(path: Path, probe: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {"texts": probe["texts"]} if "texts" in probe else {}
    np.savez_compressed(path, generated=probe["generated"], eval_logprobs=probe["eval_logprobs"].astype(np.float16),
                        **extra)


def load_probe(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


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
        texts = {"texts": [{"reference": str(a), "variant": str(b)} for a, b in zip(reference["texts"], variant["texts"])]}
    return {**texts, "token_agreement": float(same.mean()), "first_divergence_min": min(first),
            "first_divergence_mean": float(np.mean(first)), "generated_tokens": int(rows * cols),
            "top1_agreement": float(np.mean(lr.argmax(-1) == lv.argmax(-1))),
            "kl_divergence": float(max(0.0, kl.mean()))}


def _ratio(a: Any, b: Any) -> float | None:
    return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


def _attach(metrics: dict[str, Any], ref_metrics: dict[str, Any], reference: str, q: dict[str, Any],
            facts: dict[str, Any] | None, ref_facts: dict[str, Any] | None) -> None:
    q["reference"] = reference
    q["vs_reference"] = {k: _ratio(metrics.get(k), ref_metrics.get(k)) for k in
                         ("output_throughput", "mean_tpot_ms", "peak_memory_bytes", "energy_per_token_j")}
    q["vs_reference"]["weight_bytes"] = _ratio((facts or {}).get("weight_bytes"), (ref_facts or {}).get("weight_bytes"))
    metrics["quality"] = q
    metrics["token_agreement"] = q["token_agreement"]


def attach_quality(run_dir: Path, plan: dict[str, Any], points: list[dict[str, Any]],
                   sweep: dict[str, list[Any]]) -> None:
    """Compare each variant's probe with its reference's and put the result in its metrics:
    an instance's `reference` in the same run, or across a sweep the point whose variant axes
    (dtype, quantization, graph) are at their first values and whose other axes are the same."""
    from colobench.sweep import VARIANT_AXES, axis_label

    def probe(run_id: str, name: str) -> dict[str, np.ndarray] | None:
        return load_probe(run_dir / "runs" / run_id / "quality" / f"{name}.npz")

    by_id = {p["id"]: p for p in points}
    run_of = {(r.get("point", ""), r["phase"], i["name"]): r["run_id"] for r in plan["runs"] for i in r["instances"]}
    for run in plan["runs"]:  # references inside one run
        point = by_id.get(run.get("point", ""))
        for inst in run["instances"]:
            ref = inst.get("reference")
            if not ref or point is None:
                continue
            metrics = ((point.get("phases") or {}).get(run["phase"]) or {}).get(inst["name"])
            ref_metrics = ((point.get("phases") or {}).get(run["phase"]) or {}).get(ref)
            a, b = probe(run["run_id"], ref), probe(run["run_id"], inst["name"])
            if metrics is not None and ref_metrics is not None and a is not None and b is not None:
                facts = point.get("instances") or {}
                _attach(metrics, ref_metrics, ref, compare_probes(a, b), facts.get(inst["name"]), facts.get(ref))
    variant = {axis_label(p): values[0] for p, values in sweep.items() if p.split(".")[-1] in VARIANT_AXES}
    if not variant:
        return
    for point in points:
        axes = point.get("axes") or {}
        if all(axes.get(k) == v for k, v in variant.items()):
            continue  # a reference itself
        ref = next((p for p in points if all((p.get("axes") or {}).get(k) == (variant[k] if k in variant else axes.get(k))
                                             for k in axes)), None)
        if ref is None:
            continue
        for phase, by_name in (point.get("phases") or {}).items():
            for name, metrics in by_name.items():
                ref_metrics = ((ref.get("phases") or {}).get(phase) or {}).get(name)
                a = probe(run_of.get((ref["id"], phase, name), ""), name)
                b = probe(run_of.get((point["id"], phase, name), ""), name)
                if ref_metrics is not None and a is not None and b is not None:
                    _attach(metrics, ref_metrics, ref["id"], compare_probes(a, b),
                            (point.get("instances") or {}).get(name), (ref.get("instances") or {}).get(name))
