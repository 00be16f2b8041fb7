"""The bookkeeping every launcher shares: one run's `run.json` and its workers' lives.

A launcher (local processes, Ray actors) starts workers and relays their messages here:
`loaded` (model facts), `ready` k (waiting at the barrier of repetition k), `progress`,
`warmup`, `client` (the load generator's self-measurement), `error` (one-line reason), `done`.
`RunState` turns them into worker statuses, decides when a repetition's barrier is complete,
and rewrites `run.json` atomically whenever something a reader would want has changed, so a
run directory is readable (and a crashed run diagnosable) at every moment.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from colobench.clock import wall_unix_s
from colobench.plan import RunSpec
from colobench.specs import redact

LIVE = ("starting", "loaded", "running")


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


class RunState:
    """Status of each worker of one run, the barrier, and `run.json`."""

    def __init__(self, run: RunSpec, run_dir: Path, names: list[str], launcher: str,
                 on_progress: Callable[[str, int], None] | None = None,
                 on_event: Callable[[str, str, Any], None] | None = None):
        self.names, self.on_progress, self.on_event = names, on_progress, on_event
        self.path = run_dir / "run.json"
        self.state: dict[str, Any] = {
            "run_id": run.run_id, "point": run.point, "phase": run.phase, "repetitions": run.repetitions,
            "instances": [redact(i.model_dump()) for i in run.instances], "launcher": launcher, "status": "starting",
            "started_unix_s": wall_unix_s(), "repetition_start_ns": [],
            "workers": {n: {"status": "starting", "pid": None, "reason": None, "exitcode": None, "info": None}
                        for n in names},
        }
        self.workers: dict[str, dict[str, Any]] = self.state["workers"]
        self.ready: dict[int, set[str]] = {k: set() for k in range(1, run.repetitions + 1)}
        self.errors: dict[str, str] = {}
        self.write()

    def write(self) -> None:
        write_json_atomic(self.path, self.state)

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
        elif kind == "progress" and self.on_progress:
            self.on_progress(name, payload)
        elif kind == "error":
            self.errors[name] = payload
        elif kind == "warmup":
            w["warmup_s"] = payload.get("warmup_s")
        elif kind == "client":
            w.setdefault("client", []).append(payload)
        elif kind == "done":
            w["status"] = "completed"
            w["peak_memory_bytes"] = payload.get("peak_memory_bytes")
            self.write()
        if self.on_event:
            self.on_event(kind, name, payload)

    def barrier_complete(self, rep: int) -> bool:
        """Every live worker is waiting at repetition `rep`'s barrier."""
        live = self.live()
        return bool(live) and set(live) <= self.ready[rep]

    def started(self, rep_start_ns: int) -> None:
        for n in self.live():
            self.workers[n]["status"] = "running"
        self.state["repetition_start_ns"].append(rep_start_ns)
        self.write()

    def ended(self, name: str, reason: str, exitcode: int | None = None) -> None:
        """Worker `name` stopped without finishing: `failed` if it reported an error, else `died`."""
        status = "failed" if name in self.errors else "died"
        self.workers[name].update(status=status, exitcode=exitcode, reason=self.errors.get(name) or reason)
        self.write()
        if self.on_event:
            self.on_event("died", name, self.workers[name]["reason"])

    def interrupted(self, exitcodes: dict[str, int | None]) -> None:
        for n in self.names:
            if self.workers[n]["status"] not in ("completed", "failed", "died"):
                self.workers[n].update(status="interrupted", reason="interrupted by user", exitcode=exitcodes.get(n))
        self.state["status"] = "interrupted"
        self.state["ended_unix_s"] = wall_unix_s()
        self.write()

    def finish(self) -> dict[str, Any]:
        bad = [n for n in self.names if self.workers[n]["status"] != "completed"]
        self.state["status"] = "completed" if not bad else ("failed" if len(bad) == len(self.names) else "partial")
        self.state["ended_unix_s"] = wall_unix_s()
        self.write()
        return self.state
