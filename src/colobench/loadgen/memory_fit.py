"""How many requests fit at once: the `max` in `batch_size: max` / `concurrency: max`.

Each request in flight holds its KV cache: 2 (K and V) x layers x KV heads x head dim x dtype
bytes per token, for up to prompt + output tokens. The instance's share of device memory (the
device's total divided among the instances placed on it, less a 10% reserve for activations
and the allocator) minus its weights, divided by that per-request footprint (with 25% headroom
for temporaries), gives the count; it is clamped to [1, max_parallel].
"""

from __future__ import annotations

MEMORY_RESERVE_FRACTION = 0.10
PER_REQUEST_HEADROOM = 1.25


def max_parallel_requests(total_memory_bytes: int | None, share: float, weight_bytes: int,
                          kv_bytes_per_token: int | None, tokens_per_request: int, cap: int) -> int:
    """Largest number of concurrent requests that fits the instance's memory share."""
    if not total_memory_bytes or not kv_bytes_per_token:
        return cap
    budget = total_memory_bytes * (1 - MEMORY_RESERVE_FRACTION) * share - weight_bytes
    per_request = kv_bytes_per_token * tokens_per_request * PER_REQUEST_HEADROOM
    return max(1, min(cap, int(budget // per_request)))
