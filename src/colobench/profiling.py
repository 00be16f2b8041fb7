"""`colobench profile`: a short window of one instance's work under the PyTorch profiler.

It loads the instance in this process, warms it up, shows the async-timing trap (the same
decode step timed by a host clock without synchronising, by the copy of its result to the CPU
that follows, and with the device synchronised), then records one batch under `torch.profiler`
(torch_npu's profiler on Ascend), writes the Chrome trace (open it in Perfetto or MindStudio
Insight) and its analysis (`colobench.analysis.profile`).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import numpy as np

from colobench.analysis.distribution import Distribution
from colobench.analysis.profile import EmptyTrace, analyse, load_trace
from colobench.errors import ColobenchError
from colobench.launch.worker import start_backend, worker_env
from colobench.rundir import RunDir
from colobench.workload.synthetic import build_requests, static_batches


TRAP_ITERATIONS = 20
TRAP_WARMUP = 3


def async_timing_trap(backend: Any, prompt: tuple[int, ...], iterations: int = TRAP_ITERATIONS) -> dict[str, Any]:
    """One decode step timed three ways, `iterations` times after a warm-up, as medians with their
    spread (10th and 90th percentiles). On an asynchronous device the host clock around the call
    measures only the dispatch; the `.to('cpu')` after it waits for the device and so seems slow;
    only the synchronised time is the step's real duration. On a CPU, where the call itself
    computes, the host clock and the synchronised time agree and the copy costs nothing."""
    import torch

    model, device = backend.model, backend.device
    dispatch, copy, synced = [], [], []
    with torch.inference_mode():
        ids = torch.tensor([prompt], dtype=torch.long).to(device.torch_device())
        out = model(ids, use_cache=True)
        cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        for k in range(TRAP_WARMUP + iterations):
            device.synchronize()
            t0 = time.perf_counter_ns()
            step = model(token, past_key_values=cache, use_cache=True)
            t1 = time.perf_counter_ns()
            step.logits.to("cpu")
            t2 = time.perf_counter_ns()
            device.synchronize()
            t3 = time.perf_counter_ns()
            model(token, past_key_values=cache, use_cache=True)
            device.synchronize()
            t4 = time.perf_counter_ns()
            if k >= TRAP_WARMUP:
                dispatch.append((t1 - t0) / 1e6)
                copy.append((t2 - t1) / 1e6)
                synced.append((t4 - t3) / 1e6)

    def spread(values: list[float]) -> dict[str, float]:
        d = Distribution.of(values)
        p10, p90 = (float(v) for v in np.percentile(values, [10, 90]))
        return {"median_ms": d.p50, "p10_ms": p10, "p90_ms": p90}

    return {"iterations": iterations, "host_clock_without_sync": spread(dispatch),
            "copy_to_cpu_right_after": spread(copy), "synchronized_step": spread(synced),
            "host_clock_without_sync_ms": Distribution.of(dispatch).p50,
            "copy_to_cpu_right_after_ms": Distribution.of(copy).p50,
            "synchronized_step_ms": Distribution.of(synced).p50, "device": device.kind,
            "explanation": "the host clock alone measures dispatch; the copy waits for the device; only the "
                           "synchronised time is the step"}


def run_profile(plan: Any, out: RunDir) -> dict[str, Any]:
    """Profile the plan's first instance in this process, set up as a worker sets up its own
    (thread counts and the instance's environment before torch loads, knobs, memory cap); write
    trace.json and profile.json into `out`."""
    inst = plan.instances[0]
    if not inst.in_process:
        raise ColobenchError("profile runs an in-process model (backend transformers)")
    os.environ.update(worker_env(inst.model_dump()))
    device, backend, info = start_backend(inst)
    wl = inst.workload
    batch_size = wl.batch_size if isinstance(wl.batch_size, int) else 1
    batch = static_batches(build_requests(batch_size, wl.prompt_tokens, wl.output_tokens, backend.vocab_size,
                                          wl.seed), batch_size)[0]
    backend.generate(batch)  # warm-up (and compilation in graph mode), not profiled
    trap = async_timing_trap(backend, batch.prompts[0])
    out.root.mkdir(parents=True, exist_ok=True)
    profiler = device.profiler()
    with profiler:
        steps = backend.generate(batch)[0].token_ns
    trace = out.trace
    profiler.export_chrome_trace(str(trace))  # torch_npu's catches its own errors: the trace is checked below
    try:
        events = load_trace(trace)
    except EmptyTrace as exc:
        backend.stop()
        raise ColobenchError(f"profile: {exc}") from None
    result = {"instance": inst.name, "model": inst.model, "device": inst.device, "dtype": inst.dtype,
              "batch_size": batch_size, "prompt_tokens": len(batch.prompts[0]), "output_tokens": len(steps),
              "graph": inst.graph, "quantization": inst.quantization, "weight_bytes": info.get("weight_bytes"),
              "profiled_ms": (steps[-1] - steps[0]) / 1e6 if len(steps) > 1 else None,
              "async_timing_trap": trap, "trace": str(trace), "analysis": analyse(events)}
    out.profile.write_text(json.dumps(result, indent=2))
    backend.stop()
    return result
