"""The ceiling next to every number: bytes a decode step must move, and the FLOPs of a prefill.

Decode generates one token per sequence per step, and every step must read all the weights
once plus each sequence's KV cache up to its current length. With little arithmetic per byte,
the step takes at least (bytes moved / memory bandwidth): that is the roofline. For a batch of
B sequences at mean context L:

    bytes_per_step = weight_bytes + B * L * kv_bytes_per_token
    kv_bytes_per_token = 2 (K and V) * layers * kv_heads * head_dim * dtype_bytes

Achieved bandwidth = bytes_per_step / measured step time; MBU (model bandwidth utilisation) is
its fraction of the device's peak. Prefill is one large matmul over the prompt, compute bound:

    prefill_flops = B * (2 * params * P + 2 * layers * P^2 * hidden)   (weights, then causal attention)

and MFU is prefill_flops / prefill time / peak FLOP/s. Weight bytes are counted from the loaded
model's tensors as stored, so quantised weights count at their real size.
"""

from __future__ import annotations

from typing import Any

from colobench.analysis.model import InstanceFacts, PhaseMetrics


def kv_bytes_per_token(layers: int, kv_heads: int, head_dim: int, dtype_bytes: int) -> int:
    """KV-cache bytes one token adds: K and V, every layer."""
    return 2 * layers * kv_heads * head_dim * dtype_bytes


def decode_bytes_per_step(weight_bytes: int, kv_per_token: int, batch: float, mean_context_tokens: float) -> float:
    """Bytes one decode step must read: all weights once, and each sequence's KV cache."""
    return weight_bytes + batch * mean_context_tokens * kv_per_token


def prefill_flops(params: int, layers: int, hidden: int, prompt_tokens: float, batch: float) -> float:
    """FLOPs of prefilling `batch` prompts: 2 per weight per token, plus causal attention."""
    return batch * (2 * params * prompt_tokens + 2 * layers * prompt_tokens ** 2 * hidden)


def decode_roofline(facts: InstanceFacts, metrics: PhaseMetrics, peak_bandwidth_bytes_s: float | None,
                    peak_flops: float | None) -> tuple[dict[str, Any], dict[str, str]]:
    """Achieved bandwidth, MBU and MFU of one instance-phase, and the reasons for what is null."""
    reasons: dict[str, str] = {}
    out: dict[str, Any] = {"achieved_bandwidth_bytes_s": None, "mbu_pct": None, "mfu_pct": None}
    weights, kv = facts.weight_bytes, facts.kv_cache_bytes_per_token
    step_ms = metrics.mean_itl_ms
    if not weights or not kv:
        reasons["achieved_bandwidth_bytes_s"] = "model shapes unknown (endpoint or fake backend)"
        return out, reasons
    if not step_ms:
        reasons["achieved_bandwidth_bytes_s"] = "no decode steps measured"
        return out, reasons
    batch = metrics.mean_batch or 1.0
    context = (metrics.mean_prompt_tokens or 0) + (metrics.mean_output_tokens or 0) / 2
    step_bytes = decode_bytes_per_step(weights, kv, batch, context)
    out.update(bytes_per_step=step_bytes, batch=batch, mean_context_tokens=context)
    out["achieved_bandwidth_bytes_s"] = step_bytes / (step_ms / 1e3)
    if peak_bandwidth_bytes_s:
        out["mbu_pct"] = 100 * out["achieved_bandwidth_bytes_s"] / peak_bandwidth_bytes_s
        out["decode_ceiling_tok_s"] = batch * peak_bandwidth_bytes_s / step_bytes
    else:
        reasons["mbu_pct"] = "no peak memory bandwidth for this device (set telemetry.peaks)"
    arch = facts.architecture or {}
    ttft_ms = metrics.mean_ttft_ms
    if metrics.load_model != "static":
        reasons["mfu_pct"] = "prefill time is measurable per batch only under static batching"
    elif not peak_flops:
        reasons["mfu_pct"] = f"no peak FLOP/s for {facts.dtype} on this device"
    elif ttft_ms and facts.parameters and arch.get("num_hidden_layers") and arch.get("hidden_size"):
        flops = prefill_flops(facts.parameters, arch["num_hidden_layers"], arch["hidden_size"],
                              metrics.mean_prompt_tokens or 0, batch)
        out["mfu_pct"] = 100 * flops / (ttft_ms / 1e3) / peak_flops
    return out, reasons
