"""Measure a device before trusting it: copy bandwidth and a large matmul rate.

A node whose card runs far below its datasheet (power capped, throttled, a PCIe link trained
at a lower width, a misconfigured NUMA binding on the host) makes every later number look like
a software problem. Two quick measurements catch that: a device-to-device copy (bytes read plus
written per second, the ceiling of decode) and a large bf16 matmul (the ceiling of prefill).
Both are timed after warm-up with the device synchronised, best of several repetitions; the
matmul runs in the widest 16-bit type the chip has (`probe_dtype`: no bfloat16 on Ascend 310P).
"""

from __future__ import annotations

import time
from typing import Any

from colobench.devices import get_device


def _best_time_s(fn: Any, sync: Any, repeats: int = 5) -> float:
    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def probe_dtype(kind: str, name: str | None) -> str:
    """The matmul dtype a device supports best: float32 on a CPU; float16 on Ascend 310 and 310P
    (no bfloat16 there) and on CUDA cards without bfloat16; bfloat16 elsewhere."""
    if kind == "cpu":
        return "float32"
    if kind == "npu" and name and "310" in name:
        return "float16"
    if kind == "cuda":
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16"


def probe(device: str) -> dict[str, Any]:
    """Copy bandwidth (bytes/s) and matmul rate (FLOP/s) measured on `device`."""
    import torch

    dev = get_device(device)
    target = dev.torch_device()
    accelerator = dev.kind != "cpu"
    copy_bytes = (1 << 30) if accelerator else (256 << 20)
    src = torch.empty(copy_bytes // 4, dtype=torch.float32, device=target).fill_(1.0)
    dst = torch.empty_like(src)
    copy_s = _best_time_s(lambda: dst.copy_(src), dev.synchronize)
    n = 8192 if accelerator else 1024
    dtype = getattr(torch, probe_dtype(dev.kind, dev.info().name if accelerator else None))
    a = torch.randn(n, n, dtype=dtype, device=target)
    b = torch.randn(n, n, dtype=dtype, device=target)
    mm_s = _best_time_s(lambda: a @ b, dev.synchronize, repeats=3 if not accelerator else 10)
    return {"device": device, "copy_bandwidth_bytes_s": 2 * copy_bytes / copy_s, "copy_bytes": copy_bytes,
            "matmul_flops": 2 * n ** 3 / mm_s, "matmul_size": n, "matmul_dtype": str(dtype).replace("torch.", "")}
