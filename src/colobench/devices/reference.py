"""A device's own reference workload: a fixed bf16 matmul and a fixed copy on the device, timed.

The host reference (`telemetry.host_reference`) tells whether the host moved between two runs;
this tells whether the accelerator did (a different clock, a thermal or power cap, another tenant
on the card). It runs in a short subprocess at the start and the end of a run, never in the
parent (which does not open devices) and never inside a measured window:

    python -m colobench.devices.reference cuda:0   ->   {"matmul_tflops": ..., "copy_gb_s": ...}

Both figures are the median of `ROUNDS` timed rounds after a warm-up, synchronised through the
`devices` layer, so the same code runs on CUDA, Ascend (torch_npu) and, for tests, the CPU.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any

from colobench.devices import get_device

MATMUL_N = 2048
COPY_MIB = 256
ROUNDS = 5


def device_reference(device: str, matmul_n: int = MATMUL_N, copy_mib: int = COPY_MIB,
                     rounds: int = ROUNDS) -> dict[str, Any]:
    """Time `rounds` rounds of an n x n bf16 matmul (x4) and a `copy_mib` MiB device copy."""
    import torch

    dev = get_device(device)
    where = dev.torch_device()
    a = torch.randn(matmul_n, matmul_n, device=where, dtype=torch.bfloat16)
    b = torch.randn(matmul_n, matmul_n, device=where, dtype=torch.bfloat16)
    src = torch.ones(copy_mib * (1 << 20) // 2, device=where, dtype=torch.bfloat16)
    dst = torch.empty_like(src)

    def timed(work: Any) -> float:
        work()  # warm-up: kernels chosen, memory touched
        dev.synchronize()
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            work()
            dev.synchronize()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    matmul_s = timed(lambda: [torch.matmul(a, b) for _ in range(4)])
    copy_s = timed(lambda: dst.copy_(src))
    return {"device": device, "matmul_tflops": 4 * 2 * matmul_n ** 3 / matmul_s / 1e12,
            "copy_gb_s": src.numel() * src.element_size() / copy_s / 1e9}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m colobench.devices.reference DEVICE", file=sys.stderr)
        return 2
    print(json.dumps(device_reference(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
