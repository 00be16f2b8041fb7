"""Stopping on request: Ctrl-C (SIGINT), SIGTERM (what `timeout`, Slurm and systemd send) and
SIGHUP (a closed terminal) all mean the same thing: stop the workers, keep and summarise what
completed, write the report and the last line, and exit with 128 + the signal's number.

The first signal raises `StopRequested` (a `KeyboardInterrupt`, so every `except
KeyboardInterrupt` on the way up stops its workers as for Ctrl-C). Every later signal is only
noted: a second Ctrl-C while colobench is already stopping must not cut the summary, the report
or the last line short (kill -9 remains for abandoning everything; the workers then die with
their parent and a later `colobench report` calls the run abandoned).
"""

from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from typing import Any, Iterator

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopRequested(KeyboardInterrupt):
    """A stop signal arrived; `signum` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _State:
    received: int | None = None


state = _State()


def exit_code() -> int:
    """128 + the first signal received (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP)."""
    return 128 + (state.received or signal.SIGINT)


def _handler(signum: int, frame: Any) -> None:
    if state.received is None:
        state.received = signum
        raise StopRequested(signum)
    sys.stderr.write(f"colobench: {signal.Signals(signum).name} again: already stopping, writing what completed "
                     "(kill -9 abandons it)\n")


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Install the handlers for the duration (main thread only; elsewhere a no-op)."""
    try:
        previous = {s: signal.signal(s, _handler) for s in HANDLED}
    except ValueError:  # not the main thread
        yield
        return
    state.received = None
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
