"""The bookkeeping every launcher shares: a group of runs, its workers' lives, the barriers of its
windows, and one `run.json` per run.

A launcher (local processes, Ray actors) starts one worker per instance of the group and relays
their messages here: `loaded` (model facts), `warmup`, `ready` w (waiting at window w's barrier),
`progress`, `quota` w (finished its measured quota of a co-located window), `window` w (done with
it: its own CPU time, peak memory), `error` (one-line reason), `done`. `GroupState` turns them into
worker statuses, says when a window may start (every live worker is ready) and when a co-located
window's filler may stop (every live active worker has finished its quota), scrapes each
endpoint's `/metrics` at the windows' boundaries (`opening` just before a go, and once every live
worker of a window reported it done: `launch.scrapes`), and rewrites each
run's `run.json` atomically whenever something a reader would want has changed, so a run
directory is readable (and a crashed run diagnosable) at every moment.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from colobench.clock import now_ns, wall_unix_s
from colobench.launch.scrapes import WindowScrapes
from colobench.plan import RunGroup
from colobench.rundir import ENDED, LIVE, RunDir, RunState, process_start, write_json_atomic
from colobench.specs import redact


class GroupState:
    """Status of each worker of a group of runs, the window barriers, and every run's `run.json`."""

    def __init__(self, group: RunGroup, run_dir: RunDir, workers: dict[str, str], launcher: str,
                 on_progress: Callable[[str, int], None] | None = None,
                 on_event: Callable[[str, str, Any], None] | None = None, reference: Any = None):
        """`workers`: worker key -> instance name (several keys per instance: client processes);
        `reference`: the run's `HostReference`, sampled between repetitions."""
        self.group, self.run_dir, self.instance_of = group, run_dir, workers
        self.reference = reference
        self.names = list(workers)
        self.on_progress, self.on_event = on_progress, on_event
        self.active = [{k for k, name in workers.items() if name in {i.key for i in group.run(w.run_id).instances}}
                       for w in group.windows]
        self.workers: dict[str, dict[str, Any]] = {
            k: {"status": "starting", "pid": None, "reason": None, "exitcode": None, "info": None} for k in workers}
        self.ready: list[set[str]] = [set() for _ in group.windows]
        self.quota: list[set[str]] = [set() for _ in group.windows]
        self.windows_done: dict[str, list[dict[str, Any]]] = {k: [] for k in workers}
        self.errors: dict[str, str] = {}
        self.started_unix_s = wall_unix_s()
        self.extra: dict[str, Any] = {}  # launcher facts written into every run.json (telemetry, ray, warnings)
        self.status = "starting"
        self.stop_reason: str | None = None
        self.runs: dict[str, dict[str, Any]] = {
            r.run_id: {"run_id": r.run_id, "point": r.point, "phase": r.phase, "repetitions": r.repetitions,
                       "instances": [redact(i.model_dump()) for i in r.instances], "launcher": launcher,
                       "order": "interleaved" if len(group.runs) > 1 else "phase-major",
                       "group": [x.run_id for x in group.runs], "status": "starting",
                       "started_unix_s": self.started_unix_s, "repetition_start_ns": [],
                       # who writes this run: a reader that finds it "running" with this process gone
                       # knows it was abandoned (kill -9 of colobench itself)
                       "colobench_pid": os.getpid(), "colobench_started_unix_s": process_start(),
                       # a wall time and the records' clock read together: log lines' times map onto it
                       "clock_anchor": {"unix_s": time.time(), "mono_ns": now_ns()}}
            for r in group.runs}
        for r in group.runs:
            run_dir.run(r.run_id).root.mkdir(parents=True, exist_ok=True)
        self.scrapes = WindowScrapes(group, run_dir)
        self.write()

    # ---- what a reader sees ---------------------------------------------------------------------

    def _keys(self, run_id: str) -> list[str]:
        names = {i.key for i in self.group.run(run_id).instances}
        return [k for k in self.names if self.instance_of[k] in names]

    def _worker_in_run(self, key: str, run_id: str) -> dict[str, Any]:
        """A worker as one run sees it: completed once every window of this run is done, whatever
        happened to it later in another run of the group."""
        w = self.workers[key]
        done = [d for d in self.windows_done[key] if d["run_id"] == run_id]
        mine = sum(1 for i, win in enumerate(self.group.windows) if win.run_id == run_id and key in self.active[i])
        entry = {k: v for k, v in w.items()}
        if done and len(done) == mine:
            entry.update(status="completed", reason=None, exitcode=None)
        elif w["status"] == "completed":
            entry["status"] = "completed"
        peaks = [d["peak_memory_bytes"] for d in done if d.get("peak_memory_bytes") is not None]
        entry["peak_memory_bytes"] = max(peaks) if peaks else None
        allocator = [d["memory"] for d in done if d.get("memory")]
        if allocator:  # the allocator at its peak (over the run's windows) and at the end (the last window)
            entry["memory"] = {"max_reserved_bytes": max(m["max_reserved_bytes"] for m in allocator),
                               "max_allocated_bytes": max(m["max_allocated_bytes"] for m in allocator),
                               "reserved_bytes": allocator[-1]["reserved_bytes"],
                               "allocated_bytes": allocator[-1]["allocated_bytes"]}
        entry["client"] = [{k: d[k] for k in ("repetition", "cpu_s", "wall_s")} for d in done]
        return entry

    def run_state(self, run_id: str) -> RunState:
        return RunState.model_validate(self._run_state(run_id))

    def _run_state(self, run_id: str) -> dict[str, Any]:
        state = dict(self.runs[run_id])
        state.update(self.extra)
        state["workers"] = {k: self._worker_in_run(k, run_id) for k in self._keys(run_id)}
        statuses = [w["status"] for w in state["workers"].values()]
        if self.status in ("starting", "running"):
            state["status"] = "completed" if statuses and all(s == "completed" for s in statuses) else self.status
        elif self.status in ("interrupted", "disk_full") and not all(s == "completed" for s in statuses):
            state["status"] = self.status
            state["stop_reason"] = self.stop_reason
        else:
            bad = [s for s in statuses if s != "completed"]
            state["status"] = "completed" if not bad else ("failed" if len(bad) == len(statuses) else "partial")
        return state

    def write(self) -> None:
        for run_id in self.runs:
            write_json_atomic(self.run_dir.run(run_id).state, self.run_state(run_id))

    # ---- messages and barriers ------------------------------------------------------------------

    def live(self) -> list[str]:
        return [n for n in self.names if self.workers[n]["status"] in LIVE]

    def handle(self, kind: str, name: str, payload: Any) -> None:
        """One message from worker `name`."""
        w = self.workers[name]
        if kind == "loaded":
            w["status"], w["info"] = "loaded", payload
            self.write()
        elif kind == "ready":
            self.ready[payload].add(name)
        elif kind == "quota":
            self.quota[payload].add(name)
        elif kind == "progress" and self.on_progress:
            self.on_progress(name, payload)
        elif kind == "error":
            self.errors[name] = payload
        elif kind == "warmup":
            w["warmup_s"], w["warmup_requests"] = payload.get("warmup_s"), payload.get("warmup_requests")
        elif kind == "window":
            self.windows_done[name].append(payload)
            self.write()
            w = payload.get("window") if isinstance(payload, dict) else None
            if isinstance(w, int) and self.window_complete(w):
                self.scrapes.after(w)
        elif kind == "done":
            w["status"] = "completed"
            self.write()
        if self.on_event:
            self.on_event(kind, name, payload)

    def barrier_complete(self, w: int) -> bool:
        """Every live worker is waiting at window `w`'s barrier."""
        live = self.live()
        return bool(live) and set(live) <= self.ready[w]

    def window_complete(self, w: int) -> bool:
        """Every live worker active in window `w` has reported it done (its requests completed)."""
        return all(any(d.get("window") == w for d in self.windows_done[k]) for k in set(self.live()) & self.active[w])

    def opening(self, w: int) -> None:
        """Window `w` is about to start (its barrier is complete): its endpoints' counters are read
        now, before the go, so the scrape never falls inside the window; at the first window of a
        repetition after the first, the host reference is timed (every worker waits at the barrier)."""
        self.scrapes.before(w)
        windows = self.group.windows
        if self.reference is not None and w > 0 and windows[w].repetition != windows[w - 1].repetition:
            self.reference.sample(f"repetition {windows[w].repetition}")

    def quota_complete(self, w: int) -> bool:
        """Every live worker active in window `w` has finished its measured quota (the filler of
        the others may stop)."""
        return set(self.live()) & self.active[w] <= self.quota[w]

    def co_located(self, w: int) -> bool:
        return len(self.group.run(self.group.windows[w].run_id).instances) > 1

    def started(self, w: int, start_ns: int) -> None:
        self.status = "running"
        for n in self.live():
            self.workers[n]["status"] = "running"
        self.runs[self.group.windows[w].run_id]["repetition_start_ns"].append(start_ns)
        self.write()

    def ended(self, name: str, reason: str, exitcode: int | None = None) -> None:
        """Worker `name` stopped without finishing: `failed` if it reported an error, else `died`."""
        status = "failed" if name in self.errors else "died"
        self.workers[name].update(status=status, exitcode=exitcode, reason=self.errors.get(name) or reason)
        self.write()
        if self.on_event:
            self.on_event("died", name, self.workers[name]["reason"])

    def interrupted(self, exitcodes: dict[str, int | None], reason: str = "interrupted by user",
                    status: str = "interrupted") -> None:
        """The group was stopped (a signal, a full disk): every live worker ended with `reason`."""
        for n in self.names:
            if self.workers[n]["status"] not in ENDED:
                self.workers[n].update(status="interrupted", reason=reason, exitcode=exitcodes.get(n))
        self.status, self.stop_reason = status, reason
        try:
            self._end()
        except OSError:
            pass  # the disk may be full: the caller reports it; run.json keeps its last good state

    def finish(self) -> dict[str, RunState]:
        """Every run's final state, written to its run.json and returned by run id."""
        self.scrapes.close_all()  # a window whose workers died before reporting it: its `after` now
        self.status = "finished"
        self._end()
        return {run_id: self.run_state(run_id) for run_id in self.runs}

    def _end(self) -> None:
        for run in self.runs.values():
            run["ended_unix_s"] = wall_unix_s()
        self.write()
