"""One worker process: one instance, loaded once, measured over every repetition of a run.

Life of a worker (messages to the parent in brackets):
  load the model [loaded] -> warm-up requests, recorded but flagged and never counted ->
  for each repetition: [ready] -> wait for the parent's go -> run the workload's load model,
  appending a record per request as it completes [progress] -> ... -> [done]
Any exception becomes [error] with a one-line reason and a traceback in the worker's log.

The worker ignores Ctrl-C: the terminal sends SIGINT to the whole process group, and the parent
decides how to stop. Thread-count variables are set before torch is imported (they are read
once, at import), which is why this module imports nothing heavy at the top.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
WARMUP_SEED_OFFSET = 1_000_003
OPEN_LOOP_WARMUP_REQUESTS = 4


def _wait_for_go(event: Any, parent_pid: int) -> None:
    """Wait for the parent's start signal; exit if the parent has gone away."""
    while not event.wait(0.5):
        if os.getppid() != parent_pid:
            sys.exit(3)


def _free_device_memory() -> None:
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None:
        for ns in ("cuda", "npu"):
            mod = getattr(torch, ns, None)
            if mod is not None and getattr(mod, "is_available", lambda: False)():
                mod.empty_cache()


def worker_main(instance: dict, run_id: str, run_dir: str, repetitions: int, queue: Any, go_events: list,
                parent_pid: int, prompts_file: str | None = None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    run_path = Path(run_dir)
    name = instance["name"]
    (run_path / "logs").mkdir(parents=True, exist_ok=True)
    log = open(run_path / "logs" / f"{name}.log", "a", buffering=1, encoding="utf-8")
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(instance["cpu_threads"])
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        _work(instance, run_id, run_path, repetitions, queue, go_events, parent_pid, prompts_file)
    except SystemExit:
        raise
    except BaseException as exc:
        from colobench.loadgen.recorder import error_text

        traceback.print_exc()
        queue.put(("error", name, error_text(exc)))
        log.flush()
        sys.exit(1)


def _parallelism(wl: Any, info: dict, device: Any, memory_share: float) -> int:
    """The batch size (static) or in-flight limit (closed/open loop) this worker uses."""
    from colobench.loadgen.capacity import max_parallel_requests

    wanted = wl.batch_size if wl.load_model == "static" else wl.concurrency
    if isinstance(wanted, int):
        return wanted
    # "max", or an open loop with no cap: as many as the instance's memory share holds
    total = device.info().total_memory_bytes if device is not None else None
    return max_parallel_requests(total, memory_share, info.get("weight_bytes") or 0,
                                 info.get("kv_cache_bytes_per_token"),
                                 wl.max_prompt_tokens() + wl.max_output_tokens(), wl.max_parallel)


def _work(instance: dict, run_id: str, run_path: Path, repetitions: int, queue: Any, go_events: list,
          parent_pid: int, prompts_file: str | None) -> None:
    from colobench.backends import make_backend
    from colobench.clock import now_ns
    from colobench.devices import get_device
    from colobench.loadgen import streaming
    from colobench.loadgen.recorder import Recorder
    from colobench.loadgen.static import run_static
    from colobench.plan import ResolvedInstance
    from colobench.records import RecordWriter
    from colobench.workload.arrivals import arrival_offsets_s, count_for_duration
    from colobench.workload.synthetic import build_requests, static_batches

    inst = ResolvedInstance.model_validate(instance)
    device = None
    if inst.backend != "fake":
        import torch

        torch.set_num_threads(inst.cpu_threads)
        device = get_device(inst.device)
    print(f"[colobench] worker {inst.name} pid {os.getpid()} run {run_id}: loading {inst.model} on "
          f"{inst.device} ({inst.dtype}, {inst.cpu_threads} threads)", flush=True)
    t0 = time.perf_counter()
    backend = make_backend(inst)
    info = backend.start()
    info["load_s"] = time.perf_counter() - t0
    info["pid"] = os.getpid()

    wl = inst.workload
    load = wl.load_model
    parallel = _parallelism(wl, info, device, inst.memory_share)
    info["load_model"] = load
    info["parallel"] = parallel
    pool = json.loads(Path(prompts_file).read_text()) if prompts_file else None
    if load == "open":
        count = count_for_duration(wl.rate, wl.duration_s) if wl.duration_s else wl.requests
    else:
        # a duration-bounded run cycles through a pool of requests until time is up
        count = wl.requests if not wl.duration_s else max(wl.requests, 4 * parallel)
        if count < parallel and "max" in (wl.batch_size, wl.concurrency):
            count = parallel  # "max" means a full batch (or full concurrency) at least once per repetition
            info["requests_raised_to"] = count
    measured = build_requests(count, wl.prompt_tokens, wl.output_tokens, backend.vocab_size, wl.seed, pool)
    n_warm = wl.warmup_requests if wl.warmup_requests is not None else (
        min(parallel, OPEN_LOOP_WARMUP_REQUESTS) if load == "open" else parallel)
    warmup = build_requests(n_warm, wl.prompt_tokens, wl.output_tokens, backend.vocab_size,
                            wl.seed + WARMUP_SEED_OFFSET, pool)
    max_request_tokens = max((len(r.prompt) + r.output_tokens for r in measured + warmup), default=1)
    if load != "static":
        kv_tokens = wl.kv_cache_tokens or parallel * max_request_tokens
        info["streaming"] = backend.start_streaming(parallel, max_request_tokens, kv_tokens)
    queue.put(("loaded", inst.name, info))

    writer = RecordWriter(run_path / "records" / f"{inst.name}.jsonl")
    recorder = Recorder(writer, inst.name, run_id, repetition=0, warmup=True)
    if load == "static":
        run_static(backend, static_batches(warmup, parallel, warmup=True), recorder)
    elif warmup:
        streaming.run(streaming.closed_loop(backend, iter(warmup), min(parallel, len(warmup)), recorder))
    if warmup and recorder.failed:
        raise RuntimeError(f"warm-up failed ({recorder.failed} of {len(warmup)} requests): {recorder.last_error}")

    if device is not None:
        device.reset_peak_memory()

    def progress(n: int) -> None:
        queue.put(("progress", inst.name, n))

    for rep in range(1, repetitions + 1):
        queue.put(("ready", inst.name, rep))
        _wait_for_go(go_events[rep - 1], parent_pid)
        recorder = Recorder(writer, inst.name, run_id, repetition=rep)
        deadline = now_ns() + int(wl.duration_s * 1e9) if wl.duration_s and load != "open" else None
        if load == "static":
            batches = static_batches(measured, parallel)
            source = itertools.cycle(batches) if deadline else batches
            run_static(backend, source, recorder, deadline, on_batch=progress, on_error=_free_device_memory)
        elif load == "closed":
            source = itertools.cycle(measured) if deadline else iter(measured)
            streaming.run(streaming.closed_loop(backend, source, parallel, recorder, deadline, on_done=progress))
        else:
            offsets = arrival_offsets_s(len(measured), wl.rate, wl.arrival, wl.burstiness, wl.seed).tolist()
            cap = wl.concurrency if wl.concurrency is not None else None
            streaming.run(streaming.open_loop(backend, measured, offsets, recorder,
                                              parallel if cap is not None else None, on_done=progress))
    writer.close()
    peak = device.peak_memory_bytes() if device is not None else None
    backend.stop()
    queue.put(("done", inst.name, {"peak_memory_bytes": peak}))
