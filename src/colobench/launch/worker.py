"""One worker process: one instance, loaded once, measured over every repetition of a run.

Life of a worker (messages to the parent in brackets):
  load the model [loaded] -> warm-up batches, recorded but flagged and never counted ->
  for each repetition: [ready] -> wait for the parent's go -> run the batches, appending a
  record per request as each batch completes [progress] -> ... -> [done]
Any exception becomes [error] with a one-line reason and a traceback in the worker's log.

The worker ignores Ctrl-C: the terminal sends SIGINT to the whole process group, and the parent
decides how to stop. Thread-count variables are set before torch is imported (they are read
once, at import), which is why this module imports nothing heavy at the top.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
MAX_CONSECUTIVE_FAILED_BATCHES = 3


def _wait_for_go(event: Any, parent_pid: int) -> None:
    """Wait for the parent's start signal; exit if the parent has gone away."""
    while not event.wait(0.5):
        if os.getppid() != parent_pid:
            sys.exit(3)


def _run_batch(backend: Any, batch: Any, inst: Any, run_id: str, repetition: int, writer: Any) -> str | None:
    """Generate one batch and append its records. Returns the error text if it failed."""
    from colobench.clock import now_ns
    from colobench.records import RequestRecord

    submit = now_ns()
    error = None
    steps: list[int] = []
    try:
        steps = backend.generate(batch)
    except Exception as exc:  # a failed batch (out of memory, say) is recorded; the run goes on
        error = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip(": ")
        _free_device_memory()
    done = steps[-1] if steps else now_ns()
    for request_id, prompt in zip(batch.request_ids, batch.prompts):
        writer.write(RequestRecord(
            instance=inst.name, run_id=run_id, repetition=repetition, request_id=request_id,
            batch_id=batch.batch_id, batch_size=len(batch.prompts), prompt_tokens=len(prompt),
            output_tokens=len(steps), submit_ns=submit, token_ns=steps, done_ns=done,
            warmup=batch.warmup, ok=error is None, error=error,
        ))
    return error


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
                parent_pid: int) -> None:
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
        _work(instance, run_id, run_path, repetitions, queue, go_events, parent_pid)
    except SystemExit:
        raise
    except BaseException as exc:
        traceback.print_exc()
        text = str(exc).splitlines()[0] if str(exc) else ""
        queue.put(("error", name, f"{exc.__class__.__name__}: {text}".rstrip(": ")))
        log.flush()
        sys.exit(1)


def _work(instance: dict, run_id: str, run_path: Path, repetitions: int, queue: Any, go_events: list,
          parent_pid: int) -> None:
    from colobench.backends import make_backend
    from colobench.plan import ResolvedInstance
    from colobench.records import RecordWriter
    from colobench.workload.synthetic import make_batches

    inst = ResolvedInstance.model_validate(instance)
    if inst.backend != "fake":
        import torch

        torch.set_num_threads(inst.cpu_threads)
    print(f"[colobench] worker {inst.name} pid {os.getpid()} run {run_id}: loading {inst.model} on "
          f"{inst.device} ({inst.dtype}, {inst.cpu_threads} threads)", flush=True)
    t0 = time.perf_counter()
    backend = make_backend(inst)
    info = backend.start()
    info["load_s"] = time.perf_counter() - t0
    info["pid"] = os.getpid()
    queue.put(("loaded", inst.name, info))

    wl = inst.workload
    writer = RecordWriter(run_path / "records" / f"{inst.name}.jsonl")
    warmup = make_batches(wl.warmup_batches * wl.batch_size, wl.batch_size, wl.prompt_tokens, wl.output_tokens,
                          backend.vocab_size, wl.seed + 1_000_003, warmup=True)
    measured = make_batches(wl.requests, wl.batch_size, wl.prompt_tokens, wl.output_tokens,
                            backend.vocab_size, wl.seed)
    for batch in warmup:
        error = _run_batch(backend, batch, inst, run_id, 0, writer)
        if error:
            raise RuntimeError(f"warm-up failed: {error}")

    from colobench.devices import get_device

    device = get_device(inst.device) if inst.backend != "fake" else None
    if device is not None:
        device.reset_peak_memory()
    for rep in range(1, repetitions + 1):
        queue.put(("ready", inst.name, rep))
        _wait_for_go(go_events[rep - 1], parent_pid)
        consecutive_failures = 0
        for batch in measured:
            error = _run_batch(backend, batch, inst, run_id, rep, writer)
            queue.put(("progress", inst.name, len(batch.prompts)))
            consecutive_failures = consecutive_failures + 1 if error else 0
            if consecutive_failures >= MAX_CONSECUTIVE_FAILED_BATCHES:
                raise RuntimeError(f"{consecutive_failures} batches failed in a row, last: {error}")
    writer.close()
    peak = device.peak_memory_bytes() if device is not None else None
    backend.stop()
    queue.put(("done", inst.name, {"peak_memory_bytes": peak}))
