"""One worker process: one instance, loaded once, measured window after window.

A worker serves a group of runs (`plan.RunGroup`): in the interleaved order, every solo baseline
and the co-located run of a point, repetition after repetition; in the phase-major order, one
run's repetitions. Its life (messages to the parent in brackets):

  load the model [loaded] -> warm-up requests, recorded but flagged and never counted [warmup] ->
  for each window: [ready w] -> wait for the parent's go ->
      a window it takes part in: the measured quota, a record per request as it completes
      [progress]; in a co-located window, [quota w], then the same load unmeasured until the
      parent's stop (every partner has finished its quota) -> [window w]
      a window of others: nothing (the model stays loaded, the process idle)
  -> [done]
Any exception becomes [error] with a one-line reason and a traceback in the worker's log.

Files go to the run of the current window: `runs/<run>/records/<worker>.jsonl`, `gc/`, `client/`
(the load generator's own CPU time and event-loop lag) and `logs/<worker>.log`. The worker records
raw facts only; every statistic is computed later by `colobench.analysis`.

The worker ignores Ctrl-C: the terminal sends SIGINT to the whole process group, and the parent
decides how to stop. Thread-count variables and the instance's `env` are set before torch is
imported (they are read once, at import): nothing this module imports at the top loads torch;
the backend does, in `start()`.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import resource
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import orjson

from colobench.backends import make_backend
from colobench.clock import now_ns
from colobench.devices import get_device, log_env
from colobench.errors import error_text
from colobench.loadgen.memory_fit import max_parallel_requests
from colobench.loadgen.driver import LoadDriver
from colobench.loadgen.health import Health, InstanceFailing
from colobench.records import FILLER_GRACE_NS
from colobench.secrets import ScrubbingStream, register_endpoint, register_env
from colobench.loadgen.recorder import Recorder
from colobench.plan import ResolvedInstance
from colobench.records import RecordWriter, save_probe
from colobench.rundir import RunDir, RunFolder

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
STOP_GRACE_S = FILLER_GRACE_NS / 1e9  # a worker that just finished its quota waits this long before filling
SPIN_NS = 1_000_000


def _wait_for(event: Any, parent_pid: int) -> None:
    """Wait for the parent's signal; exit if the parent has gone away."""
    while not event.wait(0.5):
        if os.getppid() != parent_pid:
            sys.exit(3)


def _until(start_ns: int) -> None:
    """Sleep until `start_ns`, spinning the last millisecond: every worker of a window starts at
    the same instant, whatever the delay of its wake-up (milliseconds on a busy host)."""
    remaining = start_ns - now_ns() - SPIN_NS
    if remaining > 0:
        time.sleep(remaining / 1e9)
    while now_ns() < start_ns:
        pass


def worker_main(instance: dict, windows: list[dict], run_dir: str, queue: Any, go_events: list, stop_events: list,
                parent_pid: int, prompts_file: str | None = None, part: tuple[int, int] = (0, 1),
                shared_start: Any = None) -> None:
    """`windows`: [{run_id, repetition, active: [instance names]}] in order; `part` = (k, n): this
    process is client process k of n for the instance (HTTP load split over processes);
    `shared_start` holds the common start time of open-loop schedules."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C and a closed terminal reach the whole group:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # colobench stops its workers itself, in order
    die_with_parent(parent_pid)
    register_endpoint(instance.get("endpoint"))
    register_env(instance.get("env"), instance.get("secret_env"))
    me = instance.get("member") or instance["name"]  # the worker's name in its group (ResolvedInstance.key)
    name = worker_key(me, part)
    runs = RunDir(run_dir)
    log = setup_process(instance, runs.run(first_run(me, windows)), name)
    try:
        _work(instance, windows, runs, queue, go_events, stop_events, parent_pid, prompts_file, part,
              shared_start)
    except SystemExit:
        raise
    except InstanceFailing as exc:  # a verdict on the instance, not a bug: its reason, no traceback
        print(f"[colobench] worker {name} stops: {exc}", flush=True)
        queue.put(("error", name, str(exc)))
        log.flush()
        sys.exit(1)
    except BaseException as exc:
        traceback.print_exc()
        queue.put(("error", name, error_text(exc)))
        log.flush()
        sys.exit(1)


PR_SET_PDEATHSIG = 1
PARENT_WATCH_S = 0.5


def die_with_parent(parent_pid: int) -> None:
    """Stop when the colobench process that started this worker is gone (kill -9, a crash): on
    Linux the kernel sends SIGKILL at once (PR_SET_PDEATHSIG); everywhere a watchdog thread checks
    the parent twice a second. Records are flushed line by line, so nothing measured is lost."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the watchdog alone

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(PARENT_WATCH_S)

    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(target=watch, name="colobench-parent-watch", daemon=True).start()


def first_run(name: str, windows: list[dict]) -> str:
    """The first run instance `name` takes part in (its warm-up and its log go there)."""
    return next((w["run_id"] for w in windows if name in w["active"]), windows[0]["run_id"])


def worker_env(instance: dict, log_dir: Path | None = None) -> dict[str, str]:
    """Environment a worker needs before torch loads: thread counts, where the device runtime's
    own logs go (CANN's plog into the run directory, to be scanned), then the instance's knobs."""
    env = {var: str(instance["cpu_threads"]) for var in THREAD_ENV_VARS}
    env["TOKENIZERS_PARALLELISM"] = "false"
    env.update(log_env(instance["device"], str(log_dir) if log_dir else None, instance.get("ascend_log_level")))
    env.update(instance.get("env") or {})  # runtime knobs are read when torch / torch_npu load
    return env


def log_to(folder: RunFolder, name: str) -> Any:
    """Send this process's output (Python's and the libraries' own) to the run's `logs/<name>.log`."""
    sys.stdout.flush()
    path = folder.log(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    log = open(path, "a", buffering=1, encoding="utf-8")
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = ScrubbingStream(log)  # Python's own output (tracebacks too) without secrets
    return log


def setup_process(instance: dict, folder: RunFolder, name: str) -> Any:
    """Send this process's output to `logs/<name>.log`, set its environment and pin its cores."""
    log = log_to(folder, name)
    os.environ.update(worker_env(instance, folder.ascend_logs(name)))
    if instance.get("cpu_cores") and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, instance["cpu_cores"])
    return log


class GcPauses:
    """Python garbage-collection pauses of this worker (generation 2, or at least 1 ms), kept in
    memory and written to `<run>/gc/<worker>.jsonl` after each window: the diagnosis lines them up
    with slow decode steps."""

    MIN_PAUSE_NS = 1_000_000

    def __init__(self) -> None:
        self.pending: list[dict[str, Any]] = []
        self._start = 0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = now_ns()
            return
        duration = now_ns() - self._start
        if duration >= self.MIN_PAUSE_NS or info.get("generation") == 2:
            self.pending.append({"start_ns": self._start, "duration_ns": duration, "generation": info.get("generation"),
                                 "collected": info.get("collected")})

    def flush(self, path: Path) -> None:
        if not self.pending:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            for row in self.pending:
                f.write(orjson.dumps(row) + b"\n")
        self.pending = []


class _Files:
    """The worker's record and client files, one of each per run it takes part in."""

    def __init__(self, run_dir: RunDir, key: str):
        self.run_dir, self.key = run_dir, key
        self.open: dict[tuple[str, str], RecordWriter] = {}

    def records(self, run_id: str) -> RecordWriter:
        return self._writer(run_id, "records")

    def client(self, run_id: str) -> RecordWriter:
        return self._writer(run_id, "client")

    def _writer(self, run_id: str, kind: str) -> RecordWriter:
        if (run_id, kind) not in self.open:
            folder = self.run_dir.run(run_id)
            path = folder.records(self.key) if kind == "records" else folder.client(self.key)
            self.open[(run_id, kind)] = RecordWriter(path)
        return self.open[(run_id, kind)]

    def close(self) -> None:
        for writer in self.open.values():
            writer.close()


def worker_key(name: str, part: tuple[int, int]) -> str:
    """The worker's name in messages, run.json and record files: `a`, or `a.1` for part 1 of n."""
    return name if part[1] == 1 else f"{name}.{part[0]}"


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


def start_backend(inst: ResolvedInstance) -> tuple[Any, Any, dict[str, Any]]:
    """The instance's device (None outside this process), with its thread count, knobs and memory
    cap applied, and its backend started: (device, backend, the backend's facts with how it
    loaded and the knobs it really runs with). What a worker does before measuring, and what
    `colobench profile` does in its own process."""
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
    return device, backend, info


def _load(inst: ResolvedInstance, key: str, runs: list[str], part: tuple[int, int], prompts_file: str | None,
          shared_start: Any, first: tuple[str, int] = ("first", 0)) -> tuple[Any, Any, LoadDriver, dict[str, Any]]:
    """The backend started (`start_backend`), the load driver built: (device, backend, driver,
    facts for the `loaded` message)."""
    print(f"[colobench] worker {key} pid {os.getpid()} runs {', '.join(runs)}: loading {inst.model} on "
          f"{inst.device} ({inst.dtype}, {inst.cpu_threads} threads)", flush=True)
    device, backend, info = start_backend(inst)
    parallel = _parallelism(inst.workload, info, device, inst.memory_share)
    pool = json.loads(Path(prompts_file).read_text()) if prompts_file else None
    driver = LoadDriver(backend, inst.workload, parallel, pool, part, shared_start, name=inst.name,
                        salt=inst.prompt_salt, first=first)
    info.update(load_model=driver.load, parallel=parallel, exact_prompts=driver.exact_prompts)
    if driver.raised_to:
        info["requests_raised_to"] = driver.raised_to
    if driver.trace is not None:
        info["trace"] = driver.trace.facts(inst.workload.trace_speed)
    if part[1] > 1:
        info["part"] = list(part)
    if driver.load != "static":
        kv_tokens = inst.workload.kv_cache_tokens or driver.parallel * driver.max_request_tokens
        info["streaming"] = backend.start_streaming(driver.parallel, driver.max_request_tokens, kv_tokens)
    return device, backend, driver, info


def _work(instance: dict, windows: list[dict], run_dir: RunDir, queue: Any, go_events: list, stop_events: list,
          parent_pid: int, prompts_file: str | None, part: tuple[int, int], shared_start: Any) -> None:
    inst = ResolvedInstance.model_validate(instance)
    me = inst.key  # `name`, or `name@point` in a group of interleaved variants
    key = worker_key(me, part)
    runs = list(dict.fromkeys(w["run_id"] for w in windows if me in w["active"]))
    first = next(((w["run_id"], w["repetition"]) for w in windows if me in w["active"]), ("first", 0))
    device, backend, driver, info = _load(inst, key, runs, part, prompts_file, shared_start, first)
    queue.put(("loaded", key, info))

    files = _Files(run_dir, key)
    gc_pauses = GcPauses()
    current = first_run(me, windows)
    recorder = Recorder(files.records(current), inst.name, current, repetition=0, warmup=True)
    warm_start = time.perf_counter()
    driver.warmup(recorder)
    # compilation happens during warm-up: reported apart, never counted in latency
    n_warm = len(driver.warmup_requests)
    queue.put(("warmup", key, {"warmup_s": time.perf_counter() - warm_start, "warmup_requests": n_warm}))
    if n_warm and recorder.failed == n_warm:  # some failures are the server's; all of them are ours
        raise RuntimeError(f"warm-up failed ({recorder.failed} of {n_warm} requests): {recorder.last_error}")

    def progress(n: int) -> None:
        queue.put(("progress", key, n))

    free = _free_memory(device)
    health = Health(endpoint=inst.backend == "openai")
    for w, window in enumerate(windows):
        if me in window["active"]:  # new prompts for every window, made before it starts
            driver.new_window(window["run_id"], window["repetition"])
        queue.put(("ready", key, w))
        _wait_for(go_events[w], parent_pid)
        if shared_start is not None and shared_start.value:
            _until(shared_start.value)  # the window's common start, a little after the go
        if me not in window["active"]:
            continue  # another instance's solo window: stay loaded, stay idle
        run_id, rep = window["run_id"], window["repetition"]
        if run_id != current:
            log_to(run_dir.run(run_id), key)
            print(f"[colobench] worker {key} pid {os.getpid()} (loaded in {current}) now measures {run_id}", flush=True)
            current = run_id
        if device is not None:
            device.reset_peak_memory()
        lags: list[int] = []
        usage0, wall0 = resource.getrusage(resource.RUSAGE_SELF), now_ns()
        driver.measured(Recorder(files.records(run_id), inst.name, run_id, repetition=rep, health=health), progress, lags,
                        free)
        usage1, wall1 = resource.getrusage(resource.RUSAGE_SELF), now_ns()
        if health.tripped:  # the server went away (or every batch fails): stop this instance, with the reason
            raise InstanceFailing(health.tripped)
        if len(window["active"]) > 1:  # co-located: keep the load on until every partner is done
            queue.put(("quota", key, w))
            stop_events[w].wait(STOP_GRACE_S)
            driver.filler(Recorder(files.records(run_id), inst.name, run_id, repetition=rep, load_only=True),
                          stop_events[w].is_set, [], free)
        cpu_s = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
        client = {"repetition": rep, "cpu_s": cpu_s, "wall_s": (wall1 - wall0) / 1e9}
        files.client(run_id).write_row({**client, "loop_lag_ns": lags})
        gc_pauses.flush(run_dir.run(run_id).gc(key))
        queue.put(("window", key, {"window": w, "run_id": run_id, **client,
                                   "peak_memory_bytes": device.peak_memory_bytes() if device is not None else None,
                                   "memory": backend.memory_stats()}))
    files.close()
    probe = backend.quality_probe() if inst.quality_probe and part[0] == 0 else None
    if probe is not None:
        for run_id in runs:
            save_probe(run_dir.run(run_id).quality(inst.name), probe)
    backend.stop()
    queue.put(("done", key, {}))
