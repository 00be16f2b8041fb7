"""One worker process: one instance, loaded once, measured over every repetition of a run.

Life of a worker (messages to the parent in brackets):
  load the model [loaded] -> warm-up requests, recorded but flagged and never counted ->
  for each repetition: [ready] -> wait for the parent's go -> run the workload's load model,
  appending a record per request as it completes [progress] -> ... -> [done]
Any exception becomes [error] with a one-line reason and a traceback in the worker's log.

The worker ignores Ctrl-C: the terminal sends SIGINT to the whole process group, and the parent
decides how to stop. Thread-count variables and the instance's `env` are set before torch is
imported (they are read once, at import): nothing this module imports at the top loads torch;
the backend does, in `start()`.

The worker records raw facts only (records, GC pauses, its own CPU time and event-loop lag per
repetition under `client/`); every statistic is computed later by `colobench.analysis`.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import resource
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import orjson

from colobench import aio
from colobench.backends import make_backend
from colobench.clock import now_ns
from colobench.devices import get_device
from colobench.errors import error_text
from colobench.loadgen import streaming
from colobench.loadgen.capacity import max_parallel_requests
from colobench.loadgen.recorder import Recorder
from colobench.loadgen.static import run_static
from colobench.plan import ResolvedInstance
from colobench.records import RecordWriter, save_probe
from colobench.workload.arrivals import arrival_offsets_s, count_for_duration
from colobench.workload.synthetic import build_requests, build_text_requests, static_batches

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
WARMUP_SEED_OFFSET = 1_000_003
OPEN_LOOP_WARMUP_REQUESTS = 4


def _wait_for_go(event: Any, parent_pid: int) -> None:
    """Wait for the parent's start signal; exit if the parent has gone away."""
    while not event.wait(0.5):
        if os.getppid() != parent_pid:
            sys.exit(3)


def worker_main(instance: dict, run_id: str, run_dir: str, repetitions: int, queue: Any, go_events: list,
                parent_pid: int, prompts_file: str | None = None, part: tuple[int, int] = (0, 1),
                shared_start: Any = None) -> None:
    """`part` = (k, n): this process is client process k of n for the instance (HTTP load split
    over processes); `shared_start` holds the common start time of open-loop schedules."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    run_path = Path(run_dir)
    name = worker_key(instance["name"], part)
    log = setup_process(instance, run_path, name)
    try:
        _work(instance, run_id, run_path, repetitions, queue, go_events, parent_pid, prompts_file, part, shared_start)
    except SystemExit:
        raise
    except BaseException as exc:
        traceback.print_exc()
        queue.put(("error", name, error_text(exc)))
        log.flush()
        sys.exit(1)


def worker_env(instance: dict) -> dict[str, str]:
    """Environment a worker needs before torch loads: thread counts, then the instance's knobs."""
    env = {var: str(instance["cpu_threads"]) for var in THREAD_ENV_VARS}
    env["TOKENIZERS_PARALLELISM"] = "false"
    env.update(instance.get("env") or {})  # runtime knobs are read when torch / torch_npu load
    return env


def setup_process(instance: dict, run_path: Path, name: str) -> Any:
    """Send this process's output to `logs/<name>.log`, set its environment and pin its cores."""
    (run_path / "logs").mkdir(parents=True, exist_ok=True)
    log = open(run_path / "logs" / f"{name}.log", "a", buffering=1, encoding="utf-8")
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    os.environ.update(worker_env(instance))
    if instance.get("cpu_cores") and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, instance["cpu_cores"])
    return log


class GcPauses:
    """Python garbage-collection pauses of this worker (generation 2, or at least 1 ms), kept in
    memory and written to `gc/<worker>.jsonl` after each repetition: the diagnosis lines them up
    with slow decode steps."""

    MIN_PAUSE_NS = 1_000_000

    def __init__(self, path: Path):
        self.path, self.pending, self._start = path, [], 0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = now_ns()
            return
        duration = now_ns() - self._start
        if duration >= self.MIN_PAUSE_NS or info.get("generation") == 2:
            self.pending.append({"start_ns": self._start, "duration_ns": duration, "generation": info.get("generation"),
                                 "collected": info.get("collected")})

    def flush(self) -> None:
        if not self.pending:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as f:
            for row in self.pending:
                f.write(orjson.dumps(row) + b"\n")
        self.pending = []


def worker_key(name: str, part: tuple[int, int]) -> str:
    """The worker's name in messages, run.json and record files: `a`, or `a.1` for part 1 of n."""
    return name if part[1] == 1 else f"{name}.{part[0]}"


def _split(total: int, part: tuple[int, int]) -> int:
    """This part's share of `total` (concurrency) when split as evenly as possible."""
    k, n = part
    return total // n + (1 if k < total % n else 0)


async def _with_loop_monitor(coro: Any, lags_ns: list[int], interval_s: float = 0.01) -> Any:
    """Run `coro` while measuring event-loop lag: how late a 10 ms sleep wakes up. A loop that
    is late is a load generator that cannot keep up."""
    async def monitor() -> None:
        while True:
            t = now_ns()
            await asyncio.sleep(interval_s)
            lags_ns.append(max(0, now_ns() - t - int(interval_s * 1e9)))

    task = asyncio.ensure_future(monitor())
    try:
        return await coro
    finally:
        task.cancel()


def _free_memory(device: Any) -> Any:
    """After a failed batch: collect garbage and hand the allocator's cached blocks back."""
    def free() -> None:
        gc.collect()
        if device is not None:
            device.empty_cache()
    return free


def _parallelism(wl: Any, info: dict, device: Any, memory_share: float) -> int:
    """The batch size (static) or in-flight limit (closed/open loop) this worker uses."""
    wanted = wl.batch_size if wl.load_model == "static" else wl.concurrency
    if isinstance(wanted, int):
        return wanted
    # "max", or an open loop with no cap: as many as the instance's memory share holds
    total = device.info().total_memory_bytes if device is not None else None
    return max_parallel_requests(total, memory_share, info.get("weight_bytes") or 0,
                                 info.get("kv_cache_bytes_per_token"),
                                 wl.max_prompt_tokens() + wl.max_output_tokens(), wl.max_parallel)


def _work(instance: dict, run_id: str, run_path: Path, repetitions: int, queue: Any, go_events: list,
          parent_pid: int, prompts_file: str | None, part: tuple[int, int], shared_start: Any) -> None:
    inst = ResolvedInstance.model_validate(instance)
    key = worker_key(inst.name, part)
    device = get_device(inst.device) if inst.in_process else None
    applied: dict[str, Any] = {}
    if device is not None:
        import torch  # after setup_process: the thread-count variables are read at import

        torch.set_num_threads(inst.cpu_threads)
        applied = device.apply_knobs(inst.knob_values())
        # instances sharing a card each get their share of its memory (their solo runs too, so
        # solo and co-located runs have the same budget)
        if inst.memory_share < 1 and device.cap_memory(inst.memory_share):
            applied["memory_cap_fraction"] = inst.memory_share
    print(f"[colobench] worker {key} pid {os.getpid()} run {run_id}: loading {inst.model} on "
          f"{inst.device} ({inst.dtype}, {inst.cpu_threads} threads)", flush=True)
    t0 = time.perf_counter()
    backend = make_backend(inst.backend, **inst.backend_settings(device))
    info = backend.start()
    info["load_s"] = time.perf_counter() - t0
    info["pid"] = os.getpid()
    info["nice"] = os.getpriority(os.PRIO_PROCESS, 0)  # this thread's: a niced worker measures the scheduler
    # every knob as declared, then what the process really has (environment, cores) and what the device applied
    info["knobs"] = {**inst.knob_values(), "env": {k: os.environ.get(k) for k in inst.env},
                     "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                     "memory_cap_fraction": None, **applied}

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
    n_warm = wl.warmup_requests if wl.warmup_requests is not None else (
        min(parallel, OPEN_LOOP_WARMUP_REQUESTS) if load == "open" else parallel)
    if not backend.vocab_size:  # a server takes text and tokenises it
        measured = build_text_requests(count, wl.prompt_tokens, wl.output_tokens, wl.seed, pool)
        warmup = build_text_requests(n_warm, wl.prompt_tokens, wl.output_tokens, wl.seed + WARMUP_SEED_OFFSET, pool)
    else:
        measured = build_requests(count, wl.prompt_tokens, wl.output_tokens, backend.vocab_size, wl.seed, pool)
        warmup = build_requests(n_warm, wl.prompt_tokens, wl.output_tokens, backend.vocab_size,
                                wl.seed + WARMUP_SEED_OFFSET, pool)
    if part[1] > 1:  # client process k of n: every n-th request of the one schedule, its share of slots
        measured, warmup = measured[part[0]::part[1]], warmup[part[0]::part[1]]
        parallel = max(1, _split(parallel, part))
        info["part"] = list(part)
    max_request_tokens = max((r.prompt_len + r.output_tokens for r in measured + warmup), default=1)
    if load != "static":
        kv_tokens = wl.kv_cache_tokens or parallel * max_request_tokens
        info["streaming"] = backend.start_streaming(parallel, max_request_tokens, kv_tokens)
    queue.put(("loaded", key, info))

    writer = RecordWriter(run_path / "records" / f"{key}.jsonl")
    client_log = RecordWriter(run_path / "client" / f"{key}.jsonl")
    gc_pauses = GcPauses(run_path / "gc" / f"{key}.jsonl")
    recorder = Recorder(writer, inst.name, run_id, repetition=0, warmup=True)
    warm_start = time.perf_counter()
    if load == "static":
        run_static(backend, static_batches(warmup, parallel, warmup=True), recorder)
    elif warmup:
        aio.run(streaming.closed_loop(backend, iter(warmup), min(parallel, len(warmup)), recorder))
    # compilation happens during warm-up: reported apart, never counted in latency
    queue.put(("warmup", key, {"warmup_s": time.perf_counter() - warm_start}))
    if warmup and recorder.failed == len(warmup):  # some failures are the server's; all of them are ours
        raise RuntimeError(f"warm-up failed ({recorder.failed} of {len(warmup)} requests): {recorder.last_error}")

    if device is not None:
        device.reset_peak_memory()

    def progress(n: int) -> None:
        queue.put(("progress", key, n))

    if load == "open":  # one schedule for all client processes; this one takes every n-th arrival
        offsets = arrival_offsets_s(count, wl.rate, wl.arrival, wl.burstiness, wl.seed).tolist()[part[0]::part[1]]
    batches = static_batches(measured, parallel) if load == "static" else []
    for rep in range(1, repetitions + 1):
        queue.put(("ready", key, rep))
        _wait_for_go(go_events[rep - 1], parent_pid)
        recorder = Recorder(writer, inst.name, run_id, repetition=rep)
        usage0, wall0 = resource.getrusage(resource.RUSAGE_SELF), now_ns()
        lags: list[int] = []
        deadline = now_ns() + int(wl.duration_s * 1e9) if wl.duration_s and load != "open" else None
        if load == "static":
            source = itertools.cycle(batches) if deadline else batches
            run_static(backend, source, recorder, deadline, on_batch=progress,
                       on_error=_free_memory(device))
        elif load == "closed":
            source = itertools.cycle(measured) if deadline else iter(measured)
            aio.run(_with_loop_monitor(
                streaming.closed_loop(backend, source, parallel, recorder, deadline, on_done=progress), lags))
        else:
            cap = parallel if wl.concurrency is not None else None
            start = shared_start.value if shared_start is not None and shared_start.value else None
            aio.run(_with_loop_monitor(
                streaming.open_loop(backend, measured, offsets, recorder, cap, on_done=progress, start_ns=start), lags))
        usage1, wall1 = resource.getrusage(resource.RUSAGE_SELF), now_ns()
        cpu_s = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
        wall_s = (wall1 - wall0) / 1e9
        gc_pauses.flush()
        client = {"repetition": rep, "cpu_s": cpu_s, "wall_s": wall_s}
        client_log.write_row({**client, "loop_lag_ns": lags})
        queue.put(("client", key, client))
    writer.close()
    client_log.close()
    peak = device.peak_memory_bytes() if device is not None else None
    probe = backend.quality_probe() if inst.quality_probe and part[0] == 0 else None
    if probe is not None:
        save_probe(run_path / "quality" / f"{inst.name}.npz", probe)
    backend.stop()
    queue.put(("done", key, {"peak_memory_bytes": peak}))
