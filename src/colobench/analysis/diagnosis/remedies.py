"""What to change, per finding and device: written for the person at the console.

Keyed by (finding kind, device kind); `*` is the fallback for any device. Device kinds: cpu,
cuda, npu, endpoint (the server's device is not visible; advice is about the serving stack).
"""

from __future__ import annotations

REMEDIES: dict[tuple[str, str], str] = {
    ("bandwidth_contention", "npu"): (
        "The instances saturate HBM bandwidth together. Halve the bytes per step with INT8 weight-only "
        "quantisation, batch the requests into one instance instead of two, or place the instances on separate "
        "NPUs (npu:0 / npu:1). Expect at most (peak bandwidth / bytes per step) tokens/s per device."),
    ("bandwidth_contention", "cuda"): (
        "The instances saturate HBM bandwidth together. Use INT8/FP8 weights, one instance with a larger batch "
        "instead of two, or separate GPUs; MPS or MIG partitions do not add bandwidth."),
    ("bandwidth_contention", "*"): (
        "The instances share a memory-bandwidth ceiling: smaller weights (INT8), one batched instance, or "
        "separate devices."),
    ("fragmentation", "cuda"): (
        "The caching allocator keeps freed blocks it cannot reuse for differently sized tensors. Set "
        "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True (compare it as an axis: --env "
        "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:False,expandable_segments:True), or size the KV cache up "
        "front (static cache) so allocations repeat."),
    ("fragmentation", "npu"): (
        "The NPU caching allocator keeps freed blocks it cannot reuse. Set "
        "PYTORCH_NPU_ALLOC_CONF=expandable_segments:True (compare it as an axis: --env "
        "PYTORCH_NPU_ALLOC_CONF=expandable_segments:False,expandable_segments:True), or a static KV cache so "
        "allocations repeat."),
    ("fragmentation", "*"): (
        "The caching allocator holds memory no tensor uses: expandable segments "
        "(PYTORCH_CUDA_ALLOC_CONF / PYTORCH_NPU_ALLOC_CONF=expandable_segments:True) or fixed-size allocations."),
    ("unrequested_prefix_cache", "*"): (
        "The server's prefix cache answered prompts the workload did not mean to share, so prefill was skipped "
        "and TTFT (and every ratio built on it) reads low. For the uncached figures turn prefix caching off on "
        "the server (vLLM: --no-enable-prefix-caching; SGLang: --disable-radix-cache) or make every prompt "
        "unique; to measure caching on purpose, give the workload a shared_prefix or sessions."),
    ("endpoint_down", "*"): (
        "The server stopped answering and colobench stopped that instance (the rest of the experiment carried "
        "on). Read the server's own log at the time given (a crash, an out-of-memory kill, a restart), bring it "
        "back, and run again with --resume: finished runs are kept."),
    ("failing", "*"): (
        "Nearly every request of this instance failed, so it was stopped: read the errors above (out of memory "
        "at this batch or concurrency is the usual cause) and lower the load or the context."),
    ("server_contention", "*"): (
        "Two servers (or two models of one server) share what the finding names. Batch slots full or "
        "requests queued: raise the server's --max-num-seqs or lower the offered load; KV cache full or "
        "preemptions: give each server more KV memory (--gpu-memory-utilization, --kv-cache-memory, shorter "
        "--max-model-len) or fewer concurrent requests; slower decode steps on a shared device: place the "
        "servers on separate cards, or serve both models from one engine with one batch; nothing measurable: "
        "scrape each server's /metrics (--scrape-metrics URL) and sample its device where it runs."),
    ("implausible_figure", "*"): (
        "Fix the figure before reading any bandwidth cause: measure the device's peak (`colobench devices "
        "--probe` times a memory copy and keeps it as the peak of later runs), or, for a model small enough to "
        "stay in on-chip caches, trust step time and TPOT, not MBU: its bytes per step do not all cross the "
        "memory bus."),
    ("bandwidth_near_peak", "*"): (
        "Decode is close to the memory-bandwidth ceiling: tokens/s cannot grow much further on this device. Fewer "
        "bytes per step (INT8/FP8 weights, a smaller KV cache: shorter contexts or grouped-query models), more "
        "requests per step (larger batches share one read of the weights), or separate devices for co-located "
        "instances."),
    ("compute_contention", "npu"): (
        "One instance's prefill stalls the other's decode steps. Cap prompt chunks (chunked prefill), separate "
        "prefill-heavy and decode-heavy services onto different NPUs, or stagger long prompts."),
    ("compute_contention", "*"): (
        "Prefill of one instance lines up with decode stalls of the other: chunked prefill, or separate devices "
        "for prompt-heavy and decode-heavy work."),
    ("host_bound", "npu"): (
        "The host cannot feed the NPU: step time does not grow with batch and bandwidth use is low. Set "
        "TASK_QUEUE_ENABLE=2, disable online JIT (torch_npu.npu.set_compile_mode(jit_compile=False)), use graph "
        "mode (torchair), bind CPU cores (CPU_AFFINITY_CONF=1), and use larger batches."),
    ("host_bound", "cuda"): (
        "Kernel launch overhead dominates: use CUDA graphs (static KV cache + torch.compile mode "
        "'reduce-overhead'), larger batches, and pin the worker to dedicated cores."),
    ("host_bound", "cpu"): (
        "Python overhead per step dominates: larger batches amortise it; torch.compile of the decode step "
        "helps a little on CPU."),
    ("host_bound", "*"): "The host is the limit: graph mode, larger batches, CPU affinity.",
    ("cpu_contention", "*"): (
        "Workers compete for host cores: give each instance its own cores (cpu_threads, CPU affinity), keep the "
        "sum of threads at or below the core count, and stop other busy processes on the host."),
    ("warmup_outliers", "*"): (
        "The first iterations were far slower (compilation, allocator growth). They were excluded; raise "
        "warmup_requests if the first measured requests are still slow."),
    ("throttling", "cuda"): (
        "Clocks dropped under power or thermal limits during slow windows: check cooling and the power limit "
        "(nvidia-smi -q -d PERFORMANCE), and do not compare runs taken at different clocks."),
    ("throttling", "npu"): (
        "Frequency dropped under power or thermal limits during slow windows: check cooling and the power "
        "mode (npu-smi info -t power), and compare runs only at the same clocks."),
    ("throttling", "*"): "The device throttled during slow windows: check cooling and power limits.",
    ("memory_pressure", "cuda"): (
        "Device memory is nearly full: cap each instance's memory (KV cache size, gpu_memory_utilization), "
        "quantise weights, or use fewer concurrent sequences."),
    ("memory_pressure", "npu"): (
        "HBM is nearly full: cap each instance's KV cache, quantise weights, or reduce concurrency; "
        "PYTORCH_NPU_ALLOC_CONF=expandable_segments:True reduces fragmentation."),
    ("memory_pressure", "*"): "Memory is nearly full: smaller KV caches, quantised weights, or fewer sequences.",
    ("batch_padding", "*"): (
        "Every request of a static batch waits for its longest prompt's prefill. Batch prompts of similar "
        "length together (a prompt file per category, each its own run or point), give the long category a "
        "smaller batch, or serve with continuous batching (vLLM, MindIE, SGLang, transformers' "
        "continuous batching: --load closed -c 8) which does not pad."),
    ("input_length_variance", "*"): (
        "The latency spread follows the prompt and output lengths, not the system: compare like with like "
        "(fixed lengths, or per-length buckets) before blaming interference."),
    ("periodic_stalls", "*"): (
        "Slow steps recur at a fixed period. If they line up with Python GC pauses, call gc.freeze() after "
        "loading and raise gc thresholds (gc.set_threshold) in the serving process; otherwise look for a "
        "periodic background job (monitoring agents, log rotation) on the host."),
    ("client_bound", "*"): (
        "The load generator, not the server, was the limit: raise client_processes, run the client on another "
        "host, or lower the load."),
}


def remedy(kind: str, device: str) -> str:
    device_kind = device.split(":")[0] if device else "*"
    return REMEDIES.get((kind, device_kind)) or REMEDIES.get((kind, "*"), "")
