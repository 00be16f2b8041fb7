"""The sampler contract and the background thread that runs samplers during a run.

The recorder runs in the parent process (so no worker pays for it), wakes every sampler at its
own interval against absolute deadlines, stamps each sample with `clock.now_ns()` (the clock of
the request records) and appends it to `telemetry.jsonl`, flushed. A sampler that cannot start
(no driver, no permission, no tool) is reported once with the reason and the run goes on; one
that fails while sampling is dropped with the reason.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Protocol

import orjson

from colobench.clock import now_ns


class SamplerUnavailable(Exception):
    """The sampler cannot run here; the message says why."""


class Sampler(Protocol):
    name: str
    interval_s: float

    def start(self) -> None:
        """Open the library or check the tool; raise SamplerUnavailable with the reason."""

    def sample(self) -> list[tuple[str, dict[str, Any]]]:
        """(device, metrics) pairs for this instant."""

    def stop(self) -> None:
        """Release the library."""


class TelemetryRecorder:
    """Runs samplers in a daemon thread until `stop()`; writes `path` (JSONL)."""

    def __init__(self, samplers: list[Sampler], path: Path):
        self.samplers, self.path = samplers, path
        self.status: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_as: dict[int, str] = {}  # a sampler's name when it started (a fallback may rename it)
        self.samples_written = 0

    def start(self) -> dict[str, str]:
        live = []
        for sampler in self.samplers:
            try:
                sampler.start()
                self.status[sampler.name] = "ok"
                self._started_as[id(sampler)] = sampler.name
                live.append(sampler)
            except SamplerUnavailable as exc:
                self.status[sampler.name] = f"unavailable: {exc}"
            except Exception as exc:  # a broken driver must not break the run
                self.status[sampler.name] = f"unavailable: {exc.__class__.__name__}: {exc}"
        self.samplers = live
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if live:
            self._thread = threading.Thread(target=self._loop, name="colobench-telemetry", daemon=True)
            self._thread.start()
        return dict(self.status)

    def _loop(self) -> None:
        try:
            self._sample_until_stopped()
        except OSError as exc:  # the disk filled up: telemetry stops, the run decides what to do
            for sampler in self.samplers:
                self.status[sampler.name] = f"stopped: cannot write {self.path.name} ({exc.strerror or exc})"
            self.samplers = []

    def _sample_until_stopped(self) -> None:
        next_due = {s.name: time.monotonic() for s in self.samplers}
        with open(self.path, "ab") as out:
            while not self._stop.is_set() and self.samplers:
                now = time.monotonic()
                for sampler in list(self.samplers):
                    if now < next_due[sampler.name]:
                        continue
                    next_due[sampler.name] += sampler.interval_s
                    if next_due[sampler.name] < now:  # fell behind (slow tool): skip, do not burst
                        next_due[sampler.name] = now + sampler.interval_s
                    try:
                        rows = sampler.sample()
                    except Exception as exc:
                        self.status[sampler.name] = f"stopped: {exc.__class__.__name__}: {exc}"
                        self.samplers.remove(sampler)
                        continue
                    t = now_ns()
                    for device, metrics in rows:
                        out.write(orjson.dumps({"t_ns": t, "source": sampler.name, "device": device,
                                                "metrics": metrics}) + b"\n")
                        self.samples_written += 1
                    out.flush()
                if self.samplers:
                    wait = min(next_due[s.name] for s in self.samplers) - time.monotonic()
                    self._stop.wait(max(0.0, wait))

    def stop(self) -> dict[str, str]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        for sampler in self.samplers:
            note = getattr(sampler, "note", None)
            if note:  # a sampler that handed over to another: said under the name it started with
                self.status[self._started_as.get(id(sampler), sampler.name)] = f"switched: {note}"
                self.status[sampler.name] = "ok"
            try:
                sampler.stop()
            except Exception:
                pass
        return dict(self.status)
