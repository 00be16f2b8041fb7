"""A serving engine's Prometheus `/metrics` text, read as the few series colobench sets beside its
own measurements.

vLLM names its series `vllm:...` and SGLang `sglang:...`; both label them with the served model
(`model_name`), and run one series per engine of a data-parallel server. `parse` sums each sample
over its label sets (the largest value for a gauge), keeping only the served model's samples
where the text names that model, so one server that serves several models (colobench's fake
server with `--models a,b`) is read per model. `SERIES` says, for each quantity, which series
give it, newest name first (vLLM renamed `time_per_output_token_seconds` to
`inter_token_latency_seconds`, and `gpu_prefix_cache_hits` to `prefix_cache_hits`); the first one
present in a scrape is used.

Histograms are read by their `_sum` and `_count` only: the difference of two scrapes gives the
mean over the observations between them (its buckets would give no more for a mean, and their
bounds differ between engines and versions). The parser is prometheus_client's own (already
required for reading a server's memory), not a hand-written one.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

MODEL_LABEL = "model_name"

# quantity -> candidate series, newest name first; counters and histogram sums/counts are taken as
# differences between two scrapes, gauges as they are
COUNTERS: dict[str, tuple[str, ...]] = {
    "requests": ("vllm:request_success_total", "sglang:num_requests_total"),
    "prompt_tokens": ("vllm:prompt_tokens_total", "sglang:prompt_tokens_total"),
    "generation_tokens": ("vllm:generation_tokens_total", "sglang:generation_tokens_total"),
    "preemptions": ("vllm:num_preemptions_total", "sglang:num_retracted_requests_total"),
    # a device's own work counters, per model (colobench's fake shared device exports them; a real
    # engine does not): seconds of prefill, and decode budget used in seconds of the whole budget
    "device_prefill_s": ("colobench:device_prefill_seconds_total",),
    "device_decode_s": ("colobench:device_decode_seconds_total",),
}
HISTOGRAMS: dict[str, tuple[str, ...]] = {  # seconds
    "ttft": ("vllm:time_to_first_token_seconds", "sglang:time_to_first_token_seconds"),
    # per output token (vLLM: one observation per engine step of a request; SGLang: the interval
    # shared among the tokens it brought), the same quantity under its old name after the new one
    "itl": ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds",
            "sglang:inter_token_latency_seconds", "sglang:time_per_output_token_seconds"),
    "tpot": ("vllm:request_time_per_output_token_seconds",),  # one observation per request
    "e2el": ("vllm:e2e_request_latency_seconds", "sglang:e2e_request_latency_seconds"),
    "queue": ("vllm:request_queue_time_seconds", "sglang:queue_time_seconds"),
}
GAUGES: dict[str, tuple[str, ...]] = {
    "kv_cache_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage"),  # 0..1
    "running": ("vllm:num_requests_running", "sglang:num_running_reqs"),
    "waiting": ("vllm:num_requests_waiting", "sglang:num_queue_reqs"),
    "prefix_hit_rate": ("vllm:gpu_prefix_cache_hit_rate", "sglang:cache_hit_rate"),  # 0..1, the engine's own window
}
# prefix-cache counters in tokens: (hits, queries, whether the queries alone mean 0 hits), the first
# pair present. vLLM creates both counters at start; SGLang's cached-token counter appears at its
# first hit, and its prompt-token counter says nothing of caching alone (an older SGLang has no such
# counter: its hit-rate gauge is read instead)
PREFIX_PAIRS: tuple[tuple[str, str, bool], ...] = (
    ("vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total", True),
    ("vllm:gpu_prefix_cache_hits_total", "vllm:gpu_prefix_cache_queries_total", True),
    ("sglang:cached_tokens_total", "sglang:prompt_tokens_total", False),
)
ENGINES = {"vllm:": "vllm", "sglang:": "sglang"}


def parse(text: str, model: str | None = None) -> dict[str, float]:
    """Sample name -> value, summed over label sets (a gauge: the largest), of the served `model`'s
    samples where any sample names it in `model_name`, else of all. Buckets and `_created`
    samples are left out. Raises ValueError for text that is not Prometheus exposition."""
    samples = []
    for family in text_string_to_metric_families(text):
        gauge = family.type == "gauge"
        for sample in family.samples:
            if sample.name.endswith(("_bucket", "_created")):
                continue
            samples.append((sample.name, sample.labels.get(MODEL_LABEL), float(sample.value), gauge))
    named = model is not None and any(m == model for _, m, _, _ in samples)
    out: dict[str, float] = {}
    for name, labelled, value, gauge in samples:
        if named and labelled is not None and labelled != model:
            continue
        if name in out:
            out[name] = max(out[name], value) if gauge else out[name] + value
        else:
            out[name] = value
    return out


def engine_of(values: dict[str, float]) -> str | None:
    """vllm or sglang, by the prefix of the series a scrape holds (None: neither)."""
    for prefix, engine in ENGINES.items():
        if any(name.startswith(prefix) for name in values):
            return engine
    return None


def first_present(values: dict[str, float], candidates: tuple[str, ...], suffix: str = "") -> str | None:
    """The first candidate series (with `suffix`, `_sum` for a histogram) a scrape holds."""
    return next((c for c in candidates if c + suffix in values), None)


def gauges(text: str, model: str | None = None) -> dict[str, float]:
    """The gauges of `GAUGES` a scrape holds, by quantity (what the telemetry sampler keeps)."""
    values = parse(text, model)
    out = {}
    for quantity, candidates in GAUGES.items():
        series = first_present(values, candidates)
        if series is not None:
            out[quantity] = values[series]
    return out
