"""Local launcher: one spawned worker process per instance of a group of runs, window by window.

Why processes: co-located instances in production are separate processes (separate Python
interpreters, allocators and device contexts), and only separate processes can be killed,
run out of memory or crash without taking their partner down. `spawn` (not fork) gives each
worker a clean interpreter, required for CUDA and Ascend.

The barriers are coordinated by the parent: each worker reports `ready` for window w after
loading and warming up (or finishing w-1); when every live worker is ready the parent sets go
event w and the window's instances start within microseconds of each other. In a co-located
window the parent sets stop event w once every live active worker has finished its measured
quota, which ends the others' filler. A worker that dies is dropped from the barriers, its death
recorded with the reason, and the others carry on. Records go straight from each worker to its
own JSONL files, so nothing completed is lost.

Each run's `runs/<run_id>/run.json` is written before any worker starts and rewritten as
workers load, finish windows or die.
"""

from __future__ import annotations

import errno
import multiprocessing as mp
from multiprocessing import resource_tracker
import os
import queue as queue_mod
import signal
from typing import Any, Callable

from colobench.clock import monotonic_s, now_ns
from colobench.devices.npu import VISIBLE_ENV
from colobench.errors import os_reason
from colobench.launch.state import GroupState
from colobench.launch.worker import worker_key, worker_main
from colobench.plan import ResolvedInstance, RunGroup
from colobench.rundir import RunDir, RunState
from colobench.telemetry import TelemetryRecorder, make_samplers, server_sources

POLL_S = 0.05
START_LEAD_NS = 20_000_000  # windows start this long after the go, so every process is awake and waiting
DEFAULT_LOAD_TIMEOUT_S = 1800.0

__all__ = ["DiskFull", "RunInterrupted", "is_disk_full", "run_local", "stop_reason", "window_payload", "worker_parts"]


class RunInterrupted(Exception):
    """Ctrl-C (or SIGTERM, SIGHUP) during a run: workers were stopped, what they recorded is on disk."""


class DiskFull(Exception):
    """The disk filled up during a run: workers were stopped, what was flushed is on disk."""


def is_disk_full(exc: BaseException | str | None) -> bool:
    """An OSError for a full disk or quota, or a worker's reason that quotes one."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    return isinstance(exc, str) and any(s in exc for s in ("No space left on device", "Disk quota exceeded",
                                                           "File too large"))


def stop_reason(exc: BaseException) -> str:
    """What stopped a run, for run.json: the signal's name, or "interrupted by user"."""
    signum = getattr(exc, "signum", None)
    if signum is None or signum == signal.SIGINT:
        return "interrupted by user (Ctrl-C)"
    return f"stopped by {signal.Signals(signum).name}"


def _death_reason(exitcode: int | None, reported: str | None) -> str:
    if reported:
        return reported
    if exitcode is None:
        return "unknown"
    if exitcode < 0:
        sig = signal.Signals(-exitcode)
        return f"killed by signal {-exitcode} ({sig.name})"
    return f"exited with code {exitcode}"


def worker_parts(group: RunGroup) -> dict[str, tuple[ResolvedInstance, tuple[int, int]]]:
    """Worker key -> (instance, (k, n)): one worker per instance, or n client processes."""
    return {worker_key(i.key, (k, n)): (i, (k, n)) for i in group.instances
            for n in [i.endpoint.client_processes if i.endpoint else 1] for k in range(n)}


def window_payload(group: RunGroup) -> list[dict[str, Any]]:
    """The windows as workers get them: run, repetition, and the instances active in it."""
    return [{"run_id": w.run_id, "repetition": w.repetition, "active": [i.key for i in group.run(w.run_id).instances]}
            for w in group.windows]


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (it unlinks the queues' semaphores) with SIGHUP
    blocked. It ignores SIGINT and SIGTERM itself, not SIGHUP: a closed terminal (SIGHUP to the
    whole process group) killed it, and colobench's orderly stop then printed its KeyError
    tracebacks. colobench itself handles SIGHUP (`stopping`); the tracker inherits the mask."""
    if not hasattr(signal, "pthread_sigmask"):
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    # a worker killed with -9 can leave a queue's semaphore behind: the tracker unlinks it at the
    # end, as it should, and would print a UserWarning about it on colobench's stderr; the run
    # already reports the dead worker
    warnings = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [warnings, "ignore:resource_tracker:UserWarning"]))
    try:
        resource_tracker.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        if warnings is None:
            os.environ.pop("PYTHONWARNINGS", None)
        else:
            os.environ["PYTHONWARNINGS"] = warnings


def run_local(group: RunGroup, run_dir: RunDir, on_progress: Callable[[str, int], None] | None = None,
              on_event: Callable[[str, str, Any], None] | None = None,
              load_timeout_s: float = DEFAULT_LOAD_TIMEOUT_S,
              prompts_files: dict[str, str] | None = None, telemetry: Any = None,
              reference: Any = None) -> dict[str, RunState]:
    """Run a group's windows in worker processes; return each run's state (also in its run.json)."""
    ctx = mp.get_context("spawn")
    _start_resource_tracker()
    msgs = ctx.Queue()
    go, stop = [ctx.Event() for _ in group.windows], [ctx.Event() for _ in group.windows]
    shared_start = ctx.Value("q", 0)
    parts = worker_parts(group)
    state = GroupState(group, run_dir, {k: i.key for k, (i, _) in parts.items()}, "local", on_progress, on_event,
                       reference)
    workers = state.workers
    windows = window_payload(group)

    procs: dict[str, Any] = {}
    recorder = None
    try:  # from the first spawn on, any way out stops the workers (a signal while they load too)
        for key, (inst, part) in parts.items():
            p = ctx.Process(target=worker_main, name=f"colobench-{key}", daemon=True,
                            args=(inst.model_dump(), windows, str(run_dir.root), msgs, go, stop, os.getpid(),
                                  (prompts_files or {}).get(inst.key), part, shared_start))
            p.start()
            procs[key] = p
            workers[key]["pid"] = p.pid
        if telemetry is not None and telemetry.enabled:
            alive = {k: p.pid for k, p in procs.items()}
            visible = {i.device: i.env.get(VISIBLE_ENV) or os.environ.get(VISIBLE_ENV) for i in group.instances}
            recorder = TelemetryRecorder(make_samplers([i.device for i in group.instances], lambda: alive, telemetry,
                                                       server_sources(group.instances), visible),
                                         run_dir.group_telemetry([r.run_id for r in group.runs]))
            state.extra["telemetry"] = recorder.start()
        state.write()
        _loop(group, state, procs, msgs, go, stop, shared_start, load_timeout_s)
    except KeyboardInterrupt as exc:
        _stop_group(state, procs, recorder, stop_reason(exc))
        raise RunInterrupted() from None
    except OSError as exc:
        if not is_disk_full(exc):
            _stop_group(state, procs, recorder, f"colobench failed: {exc}")
            raise
        _stop_group(state, procs, recorder, f"disk full: {os_reason(exc)}", "disk_full")
        raise DiskFull(f"disk full while writing {exc.filename or 'the run directory'} ({os_reason(exc)})") from None
    except DiskFull as exc:
        _stop_group(state, procs, recorder, str(exc), "disk_full")
        raise
    except BaseException:
        _stop_group(state, procs, recorder, "colobench itself failed")
        raise
    for p in procs.values():
        p.join(10)
    if recorder is not None:
        state.extra["telemetry"] = recorder.stop()
    return state.finish()


def _stop_group(state: GroupState, procs: dict[str, Any], recorder: Any, reason: str,
                status: str = "interrupted") -> None:
    if recorder is not None:
        state.extra["telemetry"] = recorder.stop()
    _stop_all(procs)
    state.interrupted({n: p.exitcode for n, p in procs.items()}, reason, status)


def _loop(group: RunGroup, state: GroupState, procs: dict[str, Any], msgs: Any, go: list, stop: list,
          shared_start: Any, load_timeout_s: float) -> None:
    """Messages, deaths, window barriers and filler stops until no worker is live."""
    workers, n_windows = state.workers, len(group.windows)
    next_window, stopped = 0, set()
    started = monotonic_s()
    while state.live():
        try:
            state.handle(*msgs.get(timeout=POLL_S))
            _drain(msgs, state.handle)
        except queue_mod.Empty:
            pass
        # deaths: a process that exited without saying "done"
        for n in state.live():
            p = procs[n]
            if p.exitcode is not None:
                _drain(msgs, state.handle)
                if workers[n]["status"] != "completed":
                    state.ended(n, _death_reason(p.exitcode, None), p.exitcode)
                    if is_disk_full(workers[n]["reason"]):  # the others would fail the same way
                        raise DiskFull(f"disk full: {n} could not write its records")
            elif workers[n]["status"] == "starting" and monotonic_s() - started > load_timeout_s:
                p.kill()
                p.join(5)
                state.ended(n, f"did not load within {load_timeout_s:.0f} s", p.exitcode)
        # a co-located window's filler stops when every live partner has finished its quota
        for w in range(next_window):
            if w not in stopped and state.co_located(w) and state.quota_complete(w):
                stop[w].set()
                stopped.add(w)
        # barrier: start window w when every live worker is ready for it
        while next_window < n_windows and state.barrier_complete(next_window):
            state.opening(next_window)  # the endpoints' counters, read before the go (outside the window)
            t_go = now_ns()
            shared_start.value = t_go + START_LEAD_NS
            go[next_window].set()
            state.started(next_window, t_go)
            next_window += 1


def _drain(msgs: Any, handle: Callable[[str, str, Any], None]) -> None:
    while True:
        try:
            handle(*msgs.get_nowait())
        except queue_mod.Empty:
            return


def _stop_all(procs: dict[str, Any]) -> None:
    for p in procs.values():
        if p.is_alive():
            p.terminate()
    for p in procs.values():
        p.join(5)
        if p.is_alive():
            p.kill()
            p.join(5)
