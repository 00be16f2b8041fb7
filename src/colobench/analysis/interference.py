"""How much co-located instances slow each other, from solo and co-located phase metrics.

- **slowdown** of an instance = co-located value / solo value, for the median and p99 of TTFT,
  TPOT and end-to-end latency (1.0 = no interference, 2.0 = twice as slow), plus its output
  throughput ratio (co-located / solo; below 1 means it lost throughput).
- **throughput scaling** = sum of the instances' co-located output throughputs / mean of their
  solo output throughputs. N instances that do not interfere give N; one that gains nothing
  from co-location gives 1. Below 0.75 N (1.5x for two) means they share a bottleneck.
- **stability**: a phase is stable when the coefficient of variation of its TPOT is under 10%
  (std under a tenth of the mean), the headline decode latency.
"""

from __future__ import annotations

from typing import Any

SCALING_BOTTLENECK_FRACTION = 0.75  # of the ideal N: 1.5x for two instances
ABOVE_IDEAL_FRACTION = 1.10  # scaling beyond 1.1 N means the baselines, not the co-located run, were off
STABLE_CV = 0.10
MIN_REQUESTS_FOR_P99 = 100
CLIENT_CPU_BOUND = 0.90  # of one core
CLIENT_LOOP_LAG_MS = 10.0
CLIENT_CONCURRENCY_FRACTION = 0.75


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def slowdown(solo: dict[str, Any], coloc: dict[str, Any]) -> dict[str, float | None]:
    out = {}
    for metric in ("ttft", "tpot", "e2el"):
        out[f"{metric}_p50"] = _ratio(coloc.get(f"median_{metric}_ms"), solo.get(f"median_{metric}_ms"))
        out[f"{metric}_p99"] = _ratio(coloc.get(f"p99_{metric}_ms"), solo.get(f"p99_{metric}_ms"))
    out["output_throughput"] = _ratio(coloc.get("output_throughput"), solo.get("output_throughput"))
    return out


def throughput_scaling(solo: dict[str, Any], coloc: dict[str, Any]) -> float | None:
    """Sum of co-located throughputs over the mean solo throughput (ideal = number of instances)."""
    names = [n for n in coloc if n in solo]
    solo_t = [solo[n].get("output_throughput") for n in names]
    coloc_t = [coloc[n].get("output_throughput") for n in names]
    if not names or any(v is None for v in solo_t + coloc_t):
        return None
    mean_solo = sum(solo_t) / len(solo_t)
    return sum(coloc_t) / mean_solo if mean_solo else None


def _stability(name: str, phase: str, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    from colobench.analysis.validity import stability

    cv = metrics["distributions"]["tpot_ms"].get("cv")
    if cv is not None:
        out.append({"check": "stability", "subject": f"{name}/{phase}", "verdict": stability(cv), "value": cv,
                    "threshold": STABLE_CV,
                    "detail": f"TPOT cv {cv * 100:.1f}% (stable below 5%, acceptable to 10%)"})
    open_loop = metrics.get("open_loop") or {}
    if open_loop.get("rate_ok") is False:
        out.append({"check": "rate", "subject": f"{name}/{phase}", "verdict": "rate_off",
                    "value": open_loop["achieved_rate"], "threshold": open_loop["requested_rate"],
                    "detail": f"sent {open_loop['achieved_rate']:.2f} req/s for {open_loop['requested_rate']:.2f} "
                              f"requested ({open_loop['rate_error_pct']:+.1f}%, more than 1% off)"})
    client = metrics.get("client") or {}
    if metrics.get("backend") == "openai":
        reasons = []
        if (client.get("cpu_util_max") or 0) >= CLIENT_CPU_BOUND:
            reasons.append(f"load generator at {client['cpu_util_max'] * 100:.0f}% of a core")
        if (client.get("loop_lag_p99_ms") or 0) > CLIENT_LOOP_LAG_MS:
            reasons.append(f"event-loop lag p99 {client['loop_lag_p99_ms']:.1f} ms")
        target = metrics.get("parallel")
        achieved = metrics.get("mean_concurrency")
        if metrics.get("load_model") == "closed" and target and achieved is not None \
                and achieved < CLIENT_CONCURRENCY_FRACTION * target:
            reasons.append(f"mean concurrency {achieved:.1f} of {target} asked")
        if open_loop.get("rate_ok") is False:
            reasons.append("achieved rate off target")
        if reasons:
            out.append({"check": "client", "subject": f"{name}/{phase}", "verdict": "client_bound",
                        "value": client.get("cpu_util_max"), "threshold": CLIENT_CPU_BOUND,
                        "detail": "the client may be the bottleneck: " + "; ".join(reasons)
                                  + " (add client_processes, or run the client on another host)"})
    if metrics.get("output_length_mismatch"):
        out.append({"check": "output_length", "subject": f"{name}/{phase}", "verdict": "inexact_lengths",
                    "value": metrics["output_length_mismatch"], "threshold": 0,
                    "detail": f"{metrics['output_length_mismatch']} request(s) got a different output length than "
                              "asked: the server may ignore ignore_eos/min_tokens (see exact_output_fields, extra_body)"})
    if "chunks" in (metrics.get("token_count_source") or {}):
        out.append({"check": "token_count", "subject": f"{name}/{phase}", "verdict": "chunk_counts",
                    "value": metrics["token_count_source"]["chunks"], "threshold": 0,
                    "detail": "the server sent no usage: output tokens are counted as content chunks (a lower bound);"
                              " set `tokenizer` to count them"})
    roof = metrics.get("roofline") or {}
    if roof.get("gpm_agrees") is False:
        out.append({"check": "bandwidth_cross_check", "subject": f"{name}/{phase}", "verdict": "mbu_disagrees",
                    "value": roof["gpm_dram_bw_util_pct"], "threshold": 10.0,
                    "detail": f"NVML GPM measured {roof['gpm_dram_bw_util_pct']:.0f}% DRAM bandwidth, the roofline "
                              f"computes {metrics.get('mbu_pct'):.0f}% MBU: more than 10 points apart (weights or KV "
                              "bytes mis-counted, or traffic the model does not explain)"})
    if metrics.get("failed"):
        out.append({"check": "failures", "subject": f"{name}/{phase}", "verdict": "failed_requests",
                    "value": metrics["failed"], "threshold": 0,
                    "detail": f"{metrics['failed']} failed request(s), error rate "
                              f"{metrics['failed'] / max(1, metrics['failed'] + metrics['completed']) * 100:.1f}%: "
                              f"{', '.join(metrics['errors'])}"})
    return out


def jain_fairness(values: list[float]) -> float | None:
    """Jain's index (sum x)^2 / (n sum x^2): 1 when every instance keeps the same share of its solo
    throughput, 1/n when one instance keeps everything."""
    if not values or not any(values):
        return None
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


def bandwidth_bound(solo: dict[str, dict[str, Any]], names: list[str]) -> dict[str, Any] | None:
    """What the hardware allows: decode-bound instances sharing one device cannot together move
    more bytes per second than its peak, so scaling <= peak / mean solo bandwidth."""
    rows = [solo[n] for n in names if n in solo]
    bws = [r.get("achieved_bandwidth_bytes_s") for r in rows]
    peaks = [((r.get("roofline") or {}).get("peak") or {}).get("memory_bandwidth_gb_s") for r in rows]
    devices = {(r.get("roofline") or {}).get("device") for r in rows}
    if not rows or None in bws or not all(peaks) or len(set(peaks)) != 1 or len(devices) > 1:
        return None
    mean_bw = sum(bws) / len(bws)
    bound = min(len(rows), peaks[0] * 1e9 / mean_bw) if mean_bw else None
    return {"scaling_bound": bound, "mean_solo_bandwidth_bytes_s": mean_bw, "peak_bandwidth_bytes_s": peaks[0] * 1e9}


def interference(solo: dict[str, dict[str, Any]], coloc: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The `interference` block of the summary."""
    n = len(coloc)
    scaling = throughput_scaling(solo, coloc) if n > 1 else None
    ratios = [coloc[k]["output_throughput"] / solo[k]["output_throughput"] for k in coloc
              if k in solo and coloc[k].get("output_throughput") and solo[k].get("output_throughput")]
    fairness = jain_fairness(ratios) if n > 1 and len(ratios) == n else None
    shared = len({c.get("roofline", {}).get("device") for c in coloc.values()}) == 1 if coloc else False
    bound = bandwidth_bound(solo, list(coloc)) if n > 1 and shared else None
    verdicts: list[dict[str, Any]] = []
    if scaling is not None and scaling > ABOVE_IDEAL_FRACTION * n:
        verdicts.append({
            "check": "baseline", "subject": "aggregate", "verdict": "above_ideal", "value": scaling, "threshold": n,
            "detail": f"{scaling:.2f}x is above the ideal {n}x: the solo baselines ran slower than the co-located "
                      "run, so something else loaded the host or device during them; repeat before trusting the "
                      "slowdowns"})
    if scaling is not None:
        threshold = SCALING_BOTTLENECK_FRACTION * n
        ok = scaling >= threshold
        verdicts.append({
            "check": "scaling", "subject": "aggregate", "verdict": "ok" if ok else "bottleneck", "value": scaling,
            "threshold": threshold,
            "detail": f"{scaling:.2f}x aggregate throughput for {n} instances (ideal {n}x; "
                      f"{'at least' if ok else 'below'} {threshold:.2f}x{'' if ok else ': a shared bottleneck'})",
        })
    few: dict[str, int] = {}
    for phase, metrics_by_name in (("solo", solo), ("colocated", coloc)):
        for name, metrics in metrics_by_name.items():
            verdicts += _stability(name, phase, metrics)
            if metrics.get("completed", 0) < MIN_REQUESTS_FOR_P99:
                few[f"{name}/{phase}"] = metrics.get("completed", 0)
    if few:
        least = min(few.values())
        verdicts.append({"check": "sample_size", "subject": ", ".join(few), "verdict": "few_requests", "value": least,
                         "threshold": MIN_REQUESTS_FOR_P99,
                         "detail": f"as few as {least} measured requests: below {MIN_REQUESTS_FOR_P99} a p99 is "
                                   f"close to the maximum; use --requests or --repetitions for tail latency"})
    if bound and bound.get("scaling_bound") and scaling is not None:
        near = scaling >= 0.9 * bound["scaling_bound"]
        bound["near_bound"] = near
        verdicts.append({"check": "hardware_bound", "subject": "aggregate", "verdict": "near_bound" if near else
                         "below_bound", "value": scaling, "threshold": bound["scaling_bound"],
                         "detail": f"the device's bandwidth allows at most {bound['scaling_bound']:.2f}x for these "
                                   f"instances; {scaling:.2f}x is {'near' if near else 'far below'} that bound"})
    if fairness is not None:
        verdicts.append({"check": "fairness", "subject": "aggregate", "verdict": "fair" if fairness >= 0.95 else
                         "unfair", "value": fairness, "threshold": 0.95,
                         "detail": f"Jain's fairness {fairness:.3f} over the instances' kept share of solo throughput"})
    return {
        "instances": n,
        "ideal_scaling": n if n > 1 else None,
        "throughput_scaling": scaling,
        "fairness": fairness,
        "bandwidth_bound": bound,
        "slowdown": {name: slowdown(solo[name], coloc[name]) for name in coloc if name in solo},
        "verdicts": verdicts,
    }
