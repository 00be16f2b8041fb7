"""Progress on stderr: a rich progress bar on a terminal, plain timestamped lines otherwise (CI,
nohup, a pipe: at least one line every `PLAIN_PROGRESS_EVERY_S`, so a log never falls silent),
and one line per probe of a capacity search."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from colobench.capacity import CapacityProgress
from colobench.text import printable

PLAIN_PROGRESS_EVERY_S = 10.0


class RichProgress:
    """Draws the API's progress callbacks as a rich progress bar on a terminal's stderr."""

    def __init__(self, console: Console):
        self.console = console
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("requests"), TimeElapsedColumn(), console=console, transient=False)
        self.tasks: dict[str, Any] = {}
        self.started = False  # drawn from the first event on, so an early error prints alone

    def __enter__(self) -> "RichProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.started:
            self.bar.stop()

    def _start(self) -> None:
        if not self.started:
            self.bar.start()
            self.started = True

    def phase(self, text: str) -> None:
        self._start()
        self.console.print(escape(text), style="dim")

    def run_started(self, run_id: str, total_requests: int | None) -> None:
        self._start()
        self.tasks[run_id] = self.bar.add_task(f"{run_id}: loading", total=total_requests)

    def requests_done(self, run_id: str, instance: str, count: int) -> None:
        self.bar.update(self.tasks[run_id], advance=count, description=run_id)

    def worker_event(self, run_id: str, kind: str, instance: str, payload: Any) -> None:
        if kind in ("died", "error"):
            self.console.print(f"[red]{escape(run_id)}: worker {escape(instance)} {kind}:[/] {escape(str(payload))}")

    def run_finished(self, run_id: str, state: dict[str, Any]) -> None:
        self.bar.update(self.tasks[run_id], description=f"{run_id}: {state['status']}")


class PlainProgress:
    """For a stderr that is not a terminal (CI, nohup, a pipe): plain lines, and one at least
    every `PLAIN_PROGRESS_EVERY_S` seconds while a run goes on, so a log never falls silent."""

    def __init__(self, stream: Any = None):
        self.stream = stream or sys.stderr
        self.lock = threading.Lock()
        self.current: dict[str, Any] | None = None
        self.done_event = threading.Event()
        self.thread = threading.Thread(target=self._tick, name="colobench-progress", daemon=True)

    def __enter__(self) -> "PlainProgress":
        self.t0 = self.last = time.monotonic()
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.done_event.set()

    def _line(self, text: str) -> None:
        with self.lock:
            self.last = time.monotonic()
            print(f"[colobench {self.last - self.t0:6.0f} s] {printable(text)}", file=self.stream, flush=True)

    def _tick(self) -> None:
        """A status line whenever nothing was said for `PLAIN_PROGRESS_EVERY_S`."""
        while not self.done_event.wait(PLAIN_PROGRESS_EVERY_S / 10):
            run = self.current
            if run is not None and time.monotonic() - self.last >= PLAIN_PROGRESS_EVERY_S:
                total = f"/{run['total']}" if run["total"] else ""
                self._line(f"{run['id']}: {run['done']}{total} requests, {time.monotonic() - run['t0']:.0f} s")

    def phase(self, text: str) -> None:
        self._line(text)

    def run_started(self, run_id: str, total_requests: int | None) -> None:
        self.current = {"id": run_id, "total": total_requests, "done": 0, "t0": time.monotonic()}
        self._line(f"{run_id}: started")

    def requests_done(self, run_id: str, instance: str, count: int) -> None:
        if self.current is not None:
            self.current["done"] += count

    def worker_event(self, run_id: str, kind: str, instance: str, payload: Any) -> None:
        if kind in ("died", "error"):
            self._line(f"{run_id}: worker {instance} {kind}: {payload}")

    def run_finished(self, run_id: str, state: dict[str, Any]) -> None:
        done = self.current["done"] if self.current else 0
        self.current = None
        self._line(f"{run_id}: {state['status']} ({done} requests)")


def progress_for(console: Console) -> Any:
    return RichProgress(console) if console.is_terminal else PlainProgress()


class CapacityLines(CapacityProgress):
    """One line per probe on stderr: what was asked, what came back, pass or fail."""

    def __init__(self, console: Console):
        self.console, self.count = console, 0

    def probe_done(self, label: str, probe: Any) -> None:
        self.count += 1
        rates = ", ".join(f"{n} {r:.3g}" for n, r in probe.rates.items())
        met = ", ".join(f"{n} {v * 100:.1f}%" for n, v in probe.attainment.items() if v is not None)
        verdict = "[green]pass[/]" if probe.passed else f"[red]fail[/] ({escape(probe.reason)})"
        extra = []
        if getattr(probe, "extensions", 0):
            extra.append(f"extended {probe.extensions}x" + (", decided by the point value" if probe.decided_by_point
                                                            else ""))
        if getattr(probe, "redos", 0):
            extra.append(f"redone {probe.redos}x: the host changed")
        if getattr(probe, "notes", None):
            extra.append("also: " + "; ".join(probe.notes))
        self.console.print(f"\\[colobench capacity] probe {self.count} {escape(label)}: {escape(rates)} req/s, SLO met "
                           f"{escape(met) or '-'}: {verdict} [{probe.wall_s:.0f} s]"
                           + (f" ({escape('; '.join(extra))})" if extra else ""))

    def note(self, text: str) -> None:
        self.console.print(f"\\[colobench capacity] {escape(text)}")
