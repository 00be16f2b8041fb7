"""Local launcher: one spawned worker process per instance, started together at a barrier.

Why processes: co-located instances in production are separate processes (separate Python
interpreters, allocators and device contexts), and only separate processes can be killed,
run out of memory or crash without taking their partner down. `spawn` (not fork) gives each
worker a clean interpreter, required for CUDA and Ascend.

The barrier is coordinated by the parent: each worker reports `ready` for repetition k after
loading and warming up (or finishing k-1); when every live worker is ready the parent sets
event k and they all start within microseconds of each other. A worker that dies is dropped
from the barrier, its death recorded with the reason, and the others carry on. Records go
straight from each worker to its own JSONL file, so nothing completed is lost.

`runs/<run_id>/run.json` is written before any worker starts and rewritten as workers load,
finish or die; its `workers` entries hold pids, load facts and outcomes.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import signal
from pathlib import Path
from typing import Any, Callable

from colobench.clock import monotonic_s, now_ns
from colobench.launch.state import RunState, write_json_atomic
from colobench.launch.worker import worker_key, worker_main
from colobench.plan import RunSpec
from colobench.telemetry import TelemetryRecorder, make_samplers

POLL_S = 0.05
START_LEAD_NS = 20_000_000  # open-loop schedules start this long after the go, so every process is awake
DEFAULT_LOAD_TIMEOUT_S = 1800.0

__all__ = ["RunInterrupted", "run_local", "write_json_atomic", "worker_parts"]


class RunInterrupted(Exception):
    """Ctrl-C during a run: workers were stopped, what they recorded is on disk."""


def _death_reason(exitcode: int | None, reported: str | None) -> str:
    if reported:
        return reported
    if exitcode is None:
        return "unknown"
    if exitcode < 0:
        sig = signal.Signals(-exitcode).name
        hint = " (out-of-memory killer or kill -9)" if sig == "SIGKILL" else ""
        return f"killed by {sig}{hint}"
    return f"exited with code {exitcode}"


def worker_parts(run: RunSpec) -> dict[str, tuple[Any, tuple[int, int]]]:
    """Worker name -> (instance, (k, n)): one worker per instance, or n client processes."""
    return {worker_key(i.name, (k, n)): (i, (k, n)) for i in run.instances
            for n in [i.endpoint.client_processes if i.endpoint else 1] for k in range(n)}


def run_local(run: RunSpec, run_dir: Path, on_progress: Callable[[str, int], None] | None = None,
              on_event: Callable[[str, str, Any], None] | None = None,
              load_timeout_s: float = DEFAULT_LOAD_TIMEOUT_S,
              prompts_files: dict[str, str] | None = None, telemetry: Any = None) -> dict[str, Any]:
    """Run `run` in worker processes; return the run record (also written to run.json)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "records").mkdir(exist_ok=True)
    ctx = mp.get_context("spawn")
    msgs = ctx.Queue()
    go = [ctx.Event() for _ in range(run.repetitions)]
    shared_start = ctx.Value("q", 0)
    parts = worker_parts(run)
    names = list(parts)
    rs = RunState(run, run_dir, names, "local", on_progress, on_event)
    workers = rs.workers

    procs: dict[str, Any] = {}
    for key, (inst, part) in parts.items():
        p = ctx.Process(target=worker_main, name=f"colobench-{key}", daemon=True,
                        args=(inst.model_dump(), run.run_id, str(run_dir), run.repetitions, msgs, go, os.getpid(),
                              (prompts_files or {}).get(inst.name), part, shared_start))
        p.start()
        procs[key] = p
        workers[key]["pid"] = p.pid
    rs.state["status"] = "running"
    recorder = None
    if telemetry is not None and telemetry.enabled:
        alive = {k: p.pid for k, p in procs.items()}
        recorder = TelemetryRecorder(make_samplers([i.device for i in run.instances], lambda: alive, telemetry),
                                     run_dir / "telemetry.jsonl")
        rs.state["telemetry"] = recorder.start()
    rs.write()

    next_rep = 1
    started = monotonic_s()
    try:
        while rs.live():
            try:
                rs.handle(*msgs.get(timeout=POLL_S))
                _drain(msgs, rs.handle)
            except queue_mod.Empty:
                pass
            # deaths: a process that exited without saying "done"
            for n in rs.live():
                p = procs[n]
                if p.exitcode is not None:
                    _drain(msgs, rs.handle)
                    if workers[n]["status"] != "completed":
                        rs.ended(n, _death_reason(p.exitcode, None), p.exitcode)
                elif workers[n]["status"] == "starting" and monotonic_s() - started > load_timeout_s:
                    p.kill()
                    p.join(5)
                    rs.ended(n, f"did not load within {load_timeout_s:.0f} s", p.exitcode)
            # barrier: start repetition k when every live worker is ready for it
            while next_rep <= run.repetitions and rs.barrier_complete(next_rep):
                t_go = now_ns()
                shared_start.value = t_go + START_LEAD_NS
                go[next_rep - 1].set()
                rs.started(t_go)
                next_rep += 1
    except KeyboardInterrupt:
        if recorder is not None:
            rs.state["telemetry"] = recorder.stop()
        _stop_all(procs)
        rs.interrupted({n: p.exitcode for n, p in procs.items()})
        raise RunInterrupted() from None
    for p in procs.values():
        p.join(10)
    if recorder is not None:
        rs.state["telemetry"] = recorder.stop()
    return rs.finish()


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
