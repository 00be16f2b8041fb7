"""Replay a recorded `telemetry.jsonl`: for tests, and to re-analyse old runs with new code."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from colobench.records import read_jsonl


def read_samples(path: Path, source: str | None = None, device: str | None = None) -> list[dict[str, Any]]:
    """The samples of a telemetry file, optionally of one source or device, in time order."""
    rows = [s for s in read_jsonl(path) if (source is None or s.get("source") == source)
            and (device is None or s.get("device") == device)]
    return sorted(rows, key=lambda s: s["t_ns"])


class ReplaySampler:
    """A sampler that yields a recorded file's samples one tick at a time (sources and devices
    as recorded), so the whole telemetry pipeline can run from a file."""

    def __init__(self, path: Path, name: str = "replay", interval_s: float = 0.0):
        self.name, self.interval_s = name, interval_s
        self._rows = read_samples(path)
        self._iter: Iterator[dict[str, Any]] | None = None

    def start(self) -> None:
        self._iter = iter(self._rows)

    def sample(self) -> list[tuple[str, dict[str, Any]]]:
        row = next(self._iter, None) if self._iter else None
        return [] if row is None else [(row["device"], row["metrics"])]

    def stop(self) -> None:
        self._iter = None

