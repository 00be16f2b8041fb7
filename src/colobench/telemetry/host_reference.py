"""The host reference: a short fixed workload timed at the start of a run, between its
repetitions and at its end, so that two runs compared later can tell a change of the system from
a change of the host.

Repetitions inside one run see the same host; two runs minutes apart may not (a CPU hog, another
tenant, a frequency governor that changed, a thermal limit). The repetitions' interval cannot see
such a shift, so `colobench compare` needs a yardstick measured the same way in both runs: this
one. Each sample times, in the parent process while every worker waits at a barrier (nothing of
the run is executing):

- CPU compute: `threads` threads each hashing `HASH_MIB` MiB with SHA-256 (hashlib releases the
  GIL on large buffers, so the threads run in parallel and compete for cores as the run's workers
  do), the median of `ROUNDS` rounds, in milliseconds;
- memory copy: the same threads each copying a `COPY_MIB` MiB array `COPIES` times (numpy releases the GIL too),
  larger than a last-level cache, as bytes copied per second (GB/s);
- the host facts that move results: load average, the CPU used by processes outside the run since
  the previous sample (% of one core; over a repetition, what else ran during it) and the CPU
  frequency; once per run, the CPU model, the frequency governor and the cores this process may use.

`threads` is the number of workers the run starts, up to the cores it may use: a hog that halves
what each core gives two workers halves what the reference's two threads get. A sample costs about
0.1 s (and holds its copy buffers, `threads` x 32 MiB, for the run); `COLOBENCH_HOST_REFERENCE=0`
turns it off (the test suite does). Where an instance runs on an accelerator, `device_reference` times the device's own
matmul and copy in a short subprocess at the start and the end (the parent never opens a device).

Samples go to `host_reference.jsonl` in the run directory (`HostReferenceSample`); the summary's
`host_reference` (`analysis.host_reference`) condenses them and `compare` reads them.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import psutil

from colobench.devices.cpu import cpu_model_name
from colobench.errors import os_reason
from colobench.telemetry.host import own_trees

HASH_MIB = 16  # about 10 ms a round here: a few scheduler time slices, so a hog shows
COPY_MIB = 16  # per thread: beyond most last-level caches' share of one core
COPIES = 4  # per thread and round
ROUNDS = 5
DEVICE_TIMEOUT_S = 180.0


def host_facts() -> dict[str, Any]:
    """What the host is, once per run: CPU model, governor, cores and the ones we may use."""
    try:
        governor = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor").read_text().strip() or None
    except OSError:
        governor = None
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    return {"cpu_model": cpu_model_name(), "governor": governor, "logical_cpus": os.cpu_count(),
            "physical_cores": psutil.cpu_count(logical=False), "allowed_cpus": len(allowed),
            "hostname": platform.node(), "kernel": platform.release()}


def _parallel(threads: int, work: Callable[[int], None]) -> float:
    """Seconds for `threads` threads to each run `work(k)`, started together."""
    start = threading.Barrier(threads + 1)
    pool = [threading.Thread(target=lambda k=k: (start.wait(), work(k))) for k in range(threads)]
    for t in pool:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    return time.perf_counter() - t0


def copy_buffers(threads: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each thread's source and destination, touched (first-touch page faults are never timed);
    a `HostReference` keeps them for its run (`threads` x 2 x `COPY_MIB` MiB)."""
    n = COPY_MIB * (1 << 20) // 8
    return [(np.ones(n), np.ones(n)) for _ in range(threads)]


def time_workload(threads: int, rounds: int = ROUNDS, buffers: list[tuple[np.ndarray, np.ndarray]] | None = None
                  ) -> dict[str, float]:
    """The reference workload: median CPU round in ms and the memory copy rate in GB/s."""
    block = os.urandom(1 << 20)
    hash_rounds = []
    for _ in range(rounds):
        hash_rounds.append(_parallel(threads, lambda k: [hashlib.sha256(block).digest() for _ in range(HASH_MIB)]))
    buffers = buffers or copy_buffers(threads)
    src, dst = [b[0] for b in buffers], [b[1] for b in buffers]
    n = src[0].size
    copy_rounds = [_parallel(threads, lambda k: [np.copyto(dst[k], src[k]) for _ in range(COPIES)])
                   for _ in range(rounds)]
    copied = threads * n * 8 * COPIES
    return {"cpu_ms": statistics.median(hash_rounds) * 1e3,
            "copy_gb_s": copied / statistics.median(copy_rounds) / 1e9}


class OthersCpu:
    """CPU used by processes outside colobench's own tree (and the servers it measures) since the
    previous call, as % of one core."""

    def __init__(self, server_pids: tuple[int, ...] = ()):
        self.server_pids = server_pids
        self._known: dict[int, Any] = {}
        self.read()

    def read(self) -> float:
        ours, seen, total = own_trees(self.server_pids), set(), 0.0
        for proc in psutil.process_iter():
            if proc.pid in ours:
                continue
            seen.add(proc.pid)
            known = self._known.setdefault(proc.pid, proc)
            try:
                total += known.cpu_percent()  # 0 the first time: its interval starts
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        self._known = {pid: p for pid, p in self._known.items() if pid in seen}
        return total


class HostReference:
    """Takes samples into `path` (one JSON line each); never fails a run: a sample that cannot be
    taken or written is skipped."""

    def __init__(self, path: Path, threads: int, devices: list[str] | None = None,
                 server_pids: tuple[int, ...] = ()):
        allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.path, self.threads = Path(path), max(1, min(threads, allowed))
        self.devices = [d for d in (devices or []) if d != "cpu"]
        self.others = OthersCpu(server_pids)
        self.count = 0
        self._buffers: list[tuple[np.ndarray, np.ndarray]] | None = None
        # COLOBENCH_HOST_REFERENCE=0 turns it off (the test suite does: a sample costs ~0.1 s)
        self.enabled = os.environ.get("COLOBENCH_HOST_REFERENCE", "1") != "0"

    def sample(self, at: str, first: bool = False) -> dict[str, Any] | None:
        """One sample labelled `at` ("start", "repetition 2", "end"); `first` adds the host facts
        (and the device references, also taken at the end)."""
        if not self.enabled:
            return None
        try:
            if self._buffers is None:
                self._buffers = copy_buffers(self.threads)
            data: dict[str, Any] = {"at": at, "unix_s": time.time(), "threads": self.threads,
                                    "others_cpu_pct": self.others.read(), "load_1m": os.getloadavg()[0]}
            freq = psutil.cpu_freq()
            data["cpu_freq_mhz"] = freq.current if freq else None
            data.update(time_workload(self.threads, buffers=self._buffers))
            if first:
                data["facts"] = host_facts()
            if self.devices and (first or at == "end"):
                data["devices"] = {d: device_reference_subprocess(d) for d in self.devices}
            with self.path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(data) + "\n")
            self.count += 1
            return data
        except (OSError, ValueError, RuntimeError, psutil.Error, MemoryError):
            return None


def device_reference_subprocess(device: str, timeout_s: float = DEVICE_TIMEOUT_S) -> dict[str, Any]:
    """`colobench.devices.reference` run in a fresh interpreter (the parent never opens a device):
    its figures, or {"error": why}."""
    cmd = [sys.executable, "-m", "colobench.devices.reference", device]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout_s:.0f} s"}
    except OSError as exc:
        return {"error": os_reason(exc)}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return {"error": tail[:300]}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "no figures in its output"}
