"""Pressure kernels on an accelerator: a co-runner of known, adjustable demand on one resource.

`colobench characterize` runs an instance alone, then beside each of these at a few levels, and
reads its sensitivity curve (slowdown against pressure), as Bubble-Up does for CPU services. Each
kernel is a duty cycle over `PERIOD_S`: it works for `level x PERIOD_S`, synchronised through the
`devices` layer so the time is the device's and not the launch queue's, then sleeps the rest:

- `device_time`: a loop of small matmuls (a time-slice hog: many short kernels, little memory);
- `compute`: large bf16 matmuls (tensor cores / cube units busy);
- `memory_bandwidth`: a streaming copy of `COPY_MIB` MiB (HBM busy, little compute).

What it achieved is measured, not assumed: the share of wall time it worked (`duty`) and, for the
copy, the bytes per second it moved, so a curve's x is the pressure the instance really had beside
it. The same code runs on CUDA, Ascend (torch_npu) and, for tests, the CPU.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from colobench.devices import get_device

PERIOD_S = 0.02
KERNELS = ("device_time", "compute", "memory_bandwidth")
COPY_MIB = 256
MATMUL_N = {"device_time": 256, "compute": 4096}


class DevicePressure:
    """One kernel at one level on `device`, in a background thread until `stop()`."""

    def __init__(self, device: str, resource: str, level: float, copy_mib: int = COPY_MIB,
                 matmul_n: dict[str, int] | None = None):
        if resource not in KERNELS:
            raise ValueError(f"no device pressure kernel for {resource!r} (known: {', '.join(KERNELS)})")
        if not 0 <= level <= 1:
            raise ValueError(f"a device pressure level is a duty cycle in [0, 1], not {level}")
        self.device, self.resource, self.level = device, resource, level
        self.copy_mib, self.matmul_n = copy_mib, {**MATMUL_N, **(matmul_n or {})}
        self.busy_s = self.wall_s = 0.0
        self.bytes_moved = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: str | None = None

    def start(self) -> None:
        import torch

        dev = get_device(self.device)
        where = dev.torch_device()
        if self.resource == "memory_bandwidth":
            src = torch.ones(self.copy_mib * (1 << 20) // 2, device=where, dtype=torch.bfloat16)
            dst = torch.empty_like(src)
            nbytes = 2 * src.numel() * src.element_size()  # read and write

            def work() -> None:
                dst.copy_(src)
                self.bytes_moved += nbytes
        else:
            n = self.matmul_n[self.resource]
            a = torch.randn(n, n, device=where, dtype=torch.bfloat16)
            b = torch.randn(n, n, device=where, dtype=torch.bfloat16)

            def work() -> None:
                torch.matmul(a, b)
        work()
        dev.synchronize()  # warm-up outside the measured duty
        self._thread = threading.Thread(target=self._loop, args=(work, dev.synchronize), daemon=True)
        self._thread.start()

    def _loop(self, work: Any, sync: Any) -> None:
        t_start = time.perf_counter()
        try:
            while not self._stop.is_set():
                period_start = time.perf_counter()
                deadline = period_start + self.level * PERIOD_S
                while self.level > 0 and time.perf_counter() < deadline:
                    work()
                    sync()
                worked = time.perf_counter() - period_start
                self.busy_s += worked
                rest = PERIOD_S - worked
                if rest > 0:
                    self._stop.wait(rest)
        except Exception as exc:  # a device error ends the probe; it is reported, not raised in a thread
            self._error = f"{type(exc).__name__}: {exc}"
        self.wall_s = time.perf_counter() - t_start

    def stop(self) -> dict[str, Any]:
        """Stop and report what was achieved: duty (share of wall time working) and GB/s moved."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        out: dict[str, Any] = {"duty": self.busy_s / self.wall_s if self.wall_s else 0.0}
        if self.resource == "memory_bandwidth":
            out["gb_s"] = self.bytes_moved / self.wall_s / 1e9 if self.wall_s else 0.0
        if self._error:
            out["error"] = self._error
        return out
