"""The host reference of a run, condensed, and how far the host moved between two runs.

A run times a fixed workload (CPU compute, memory copy, and an accelerator's own matmul and copy)
at its start, between its repetitions and at its end (`telemetry.host_reference`). Here:

- `host_reference(samples)` condenses those samples for the summary: each figure's distribution
  over the samples (one sample per repetition boundary, so its interval is of the same kind as
  the repetitions'), the host facts, what else ran (`others_cpu_pct`), each device's figures.
- `host_shift(a, b)` says whether the host of run B ran slower or faster than run A's beyond the
  reference's own noise: the compute slowdown (B's time over A's) and the memory slowdown (A's
  copy rate over B's), each with a 95% interval from the samples (`distribution.welch`), moved
  when the interval lies beyond the tolerance, as `compare` judges a metric; a device's figures
  (two samples per run, no interval) moved when they differ by more than `DEVICE_TOLERANCE`.
- `HostShift.band(share)` is the range of slowdowns the shift can explain for a metric of an
  instance that spends `share` of its time on the host CPU (a CPU-bound worker 1.0, a worker
  that sleeps on a device or a server 0.05): `exp(share * log(slowdown))`, between 1 and that.
  `compare` calls a difference inside that band (widened by its tolerance) "host shift", not
  better or worse, and one beyond it better or worse "beyond the host shift".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from colobench.analysis.distribution import Distribution, welch
from colobench.analysis.model import HostReference
from colobench.rundir import HostReferenceSample

DEVICE_TOLERANCE = 0.10  # two samples per run, no interval: a device moved only beyond this
# the facts a sentence names when they differ between two runs: another host, another governor
HOST_FACTS = ("hostname", "cpu_model", "governor", "logical_cpus", "allowed_cpus", "kernel")


def host_reference(samples: list[HostReferenceSample]) -> HostReference | None:
    """The summary's view of a run's host reference samples (None when there are none)."""
    if not samples:
        return None
    threads = samples[0].threads
    same = [s for s in samples if s.threads == threads]
    facts = next((s.facts for s in samples if s.facts), None) or {}
    devices: dict[str, dict[str, Any]] = {}
    for s in samples:
        for device, figures in (s.devices or {}).items():
            entry = devices.setdefault(device, {"samples": 0})
            if "error" in figures:
                entry["error"] = str(figures["error"])
                continue
            entry["samples"] += 1
            for key in ("matmul_tflops", "copy_gb_s"):
                if isinstance(figures.get(key), (int, float)) and figures[key] > 0:
                    entry.setdefault(f"{key}_values", []).append(float(figures[key]))
    for entry in devices.values():
        for key in ("matmul_tflops", "copy_gb_s"):
            values = entry.pop(f"{key}_values", [])
            entry[key] = sum(values) / len(values) if values else None
    others = [s.others_cpu_pct for s in samples[1:] if s.others_cpu_pct is not None]  # the first has no interval
    loads = [s.load_1m for s in samples if s.load_1m is not None]
    return HostReference(
        threads=threads, samples=len(same), cpu_ms=Distribution.of_repetitions([s.cpu_ms for s in same]),
        copy_gb_s=Distribution.of_repetitions([s.copy_gb_s for s in same]),
        others_cpu_pct_max=max(others) if others else None, others_cpu_pct_mean=sum(others) / len(others) if others else None,
        load_1m_max=max(loads) if loads else None, facts=facts, devices=devices,
        timeline=[{"at": s.at, "cpu_ms": s.cpu_ms, "copy_gb_s": s.copy_gb_s, "others_cpu_pct": s.others_cpu_pct}
                  for s in samples])


def pooled(refs: list[HostReference]) -> HostReference | None:
    """Several runs' references as one side of a comparison: every sample of every run."""
    refs = [r for r in refs if r is not None]
    if not refs or len({r.threads for r in refs}) > 1:
        return None
    if len(refs) == 1:
        return refs[0]
    timeline = [t for r in refs for t in r.timeline]
    return refs[0].model_copy(update={
        "samples": sum(r.samples for r in refs), "timeline": timeline,
        "cpu_ms": Distribution.of_repetitions([t["cpu_ms"] for t in timeline]),
        "copy_gb_s": Distribution.of_repetitions([t["copy_gb_s"] for t in timeline])})


@dataclass
class HostShift:
    """How run B's host compared with run A's: slowdowns (> 1: B slower) with their intervals."""

    compute: float | None = None
    compute_interval: tuple[float, float] | None = None
    memory: float | None = None
    memory_interval: tuple[float, float] | None = None
    devices: dict[str, float] = field(default_factory=dict)  # device -> slowdown of its own reference
    moved: dict[str, bool] = field(default_factory=dict)  # compute, memory, <device>: beyond its noise
    unavailable: str | None = None  # why there is no shift to judge (not recorded, not comparable)
    facts: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # host facts that differ: (A's, B's)

    @property
    def shifted(self) -> bool:
        return any(self.moved.values())

    def band(self, share: float, device: str | None = None) -> tuple[float, float]:
        """The slowdowns (as logs, > 0: slower in B) this shift explains for a metric of an
        instance spending `share` (0-1) of its time on the host CPU, on `device`."""
        logs = [0.0]
        for key, value in (("compute", self.compute), ("memory", self.memory)):
            if self.moved.get(key) and value:
                logs.append(share * math.log(value))
        if device in self.devices and self.moved.get(device):
            logs.append(math.log(self.devices[device]))
        return min(logs), max(logs)

    def to_dict(self) -> dict[str, Any]:
        return {"compute": self.compute, "compute_interval": self.compute_interval, "memory": self.memory,
                "memory_interval": self.memory_interval, "devices": self.devices, "moved": self.moved,
                "shifted": self.shifted, "unavailable": self.unavailable,
                "facts_differ": {k: list(v) for k, v in self.facts.items()}}

    def sentence(self, name: str = "B") -> str:
        """'the host ran 18% slower in B (compute 1.18x [1.12, 1.25]; memory copy 1.02x [...])';
        from 1.5x on, 'the host ran 2.18x slower in B (...)'."""
        if self.unavailable:
            return f"host reference: {self.unavailable}"
        parts = []
        for label, key, value, interval in (("compute", "compute", self.compute, self.compute_interval),
                                            ("memory copy", "memory", self.memory, self.memory_interval)):
            if value is not None:
                parts.append(f"{label} {value:.2f}x" + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else ""))
        parts += [f"{device} {value:.2f}x" for device, value in self.devices.items()]
        parts += [f"{key} {a} -> {b}" for key, (a, b) in self.facts.items()]
        detail = "; ".join(parts)
        if not self.shifted:
            return f"host reference unchanged within its noise ({detail})"
        worst = max((v for k, v in self._moved_values()), key=lambda v: abs(math.log(v)))
        way, factor = ("slower", worst) if worst > 1 else ("faster", 1 / worst)
        amount = f"{factor:.2f}x" if factor >= 1.5 else f"{(factor - 1) * 100:.0f}%"
        return f"the host ran {amount} {way} in {name} ({detail})"

    def _moved_values(self) -> list[tuple[str, float]]:
        values = {"compute": self.compute, "memory": self.memory, **self.devices}
        return [(k, v) for k, v in values.items() if self.moved.get(k) and v]


def _beyond(interval: tuple[float, float] | None, tolerance: float) -> bool:
    return interval is not None and (interval[0] > 1 + tolerance or interval[1] < 1 - tolerance)


def host_shift(a: HostReference | None, b: HostReference | None, tolerance: float) -> HostShift:
    """B's host against A's. Without a reference on either side, or with references taken with a
    different number of threads, the shift is `unavailable` (and says why)."""
    if a is None or b is None:
        which = "either run" if a is None and b is None else ("the first run" if a is None else "the second run")
        return HostShift(unavailable=f"not recorded in {which} (older than the host reference, or none was taken)")
    if a.threads != b.threads:
        return HostShift(unavailable=f"not comparable ({a.threads} threads against {b.threads}: runs with different "
                         "numbers of workers)")
    shift = HostShift(facts={k: (a.facts.get(k), b.facts.get(k)) for k in HOST_FACTS
                             if k in a.facts and k in b.facts and a.facts[k] != b.facts[k]})
    cmp = welch(a.cpu_ms, b.cpu_ms)  # B's time over A's: > 1 is slower
    if a.cpu_ms.mean and b.cpu_ms.mean:
        shift.compute = b.cpu_ms.mean / a.cpu_ms.mean
    if cmp:
        shift.compute_interval = (cmp.low, cmp.high)
    cmp = welch(b.copy_gb_s, a.copy_gb_s)  # A's rate over B's: > 1 is slower
    if a.copy_gb_s.mean and b.copy_gb_s.mean:
        shift.memory = a.copy_gb_s.mean / b.copy_gb_s.mean
    if cmp:
        shift.memory_interval = (cmp.low, cmp.high)
    shift.moved = {"compute": _beyond(shift.compute_interval, tolerance),
                   "memory": _beyond(shift.memory_interval, tolerance)}
    for device, fa in a.devices.items():
        fb = b.devices.get(device) or {}
        ratios = [fa[k] / fb[k] for k in ("matmul_tflops", "copy_gb_s") if fa.get(k) and fb.get(k)]
        if ratios:
            worst = max(ratios, key=lambda r: abs(math.log(r)))
            shift.devices[device] = worst
            shift.moved[device] = abs(math.log(worst)) > math.log(1 + DEVICE_TOLERANCE)
    return shift
