"""The one clock every record uses.

`time.perf_counter_ns()` is CLOCK_MONOTONIC on Linux: one system-wide clock, so timestamps
taken in different worker processes on the same host are directly comparable, never jump
with NTP adjustments, and are integers (no float rounding at nanosecond scale). Wall-clock
time is kept apart, labelled `*_unix_s`, and only for humans.
"""

from __future__ import annotations

import time

now_ns = time.perf_counter_ns


def monotonic_s() -> float:
    """Seconds on the monotonic clock: for durations and deadlines (never jumps with NTP)."""
    return time.perf_counter_ns() / 1e9


def wall_unix_s() -> float:
    """Wall-clock seconds since the epoch: for labels in manifests, never for durations."""
    return time.time()
