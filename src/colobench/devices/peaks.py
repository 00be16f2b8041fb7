"""Peak figures of common accelerators: the ceilings every measured number is compared with.

Decode reads every weight (and the KV cache) once per step, so its speed limit is memory
bandwidth: tokens/s <= bandwidth / bytes per step. Prefill is a large matmul, limited by dense
FLOPs. Figures are the vendors' datasheet values (dense, no sparsity), rounded; a card in a
lower power or clock configuration runs below them, which is why `colobench devices --probe`
measures the real copy bandwidth and matmul rate. Any figure can be overridden per device in the
experiment (`telemetry: {peaks: {npu:0: {memory_bandwidth_gb_s: 1600}}}`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class DevicePeak:
    name: str
    memory_bandwidth_gb_s: float
    bf16_tflops: float | None  # dense FP16/BF16 tensor throughput
    int8_tops: float | None
    memory_gb: float | None = None
    source: str = "vendor datasheet (dense)"

    def peak_flops(self, dtype: str) -> float | None:
        """FLOP/s for a dtype; None where the table has no figure (fp32 on accelerators)."""
        if dtype in ("bfloat16", "float16") and self.bf16_tflops:
            return self.bf16_tflops * 1e12
        if dtype == "int8" and self.int8_tops:
            return self.int8_tops * 1e12
        return None

    @property
    def memory_bandwidth_bytes_s(self) -> float:
        return self.memory_bandwidth_gb_s * 1e9


# pattern on the device name (case-insensitive) -> peak; the first match wins, so specific first
PEAKS: list[tuple[str, DevicePeak]] = [
    (r"H200", DevicePeak("NVIDIA H200", 4800, 989, 1979, 141)),
    (r"H100.*(PCIe|PCI)", DevicePeak("NVIDIA H100 PCIe", 2000, 756, 1513, 80)),
    (r"H100.*NVL", DevicePeak("NVIDIA H100 NVL", 3900, 835, 1671, 94)),
    (r"H100", DevicePeak("NVIDIA H100 SXM", 3350, 989, 1979, 80)),
    (r"A100.*(80|PCIe.*80)", DevicePeak("NVIDIA A100 80GB SXM", 2039, 312, 624, 80)),
    (r"A100", DevicePeak("NVIDIA A100 40GB", 1555, 312, 624, 40)),
    (r"L40S", DevicePeak("NVIDIA L40S", 864, 362, 733, 48)),
    (r"4090", DevicePeak("NVIDIA GeForce RTX 4090", 1008, 165, 661, 24)),
    (r"910B1", DevicePeak("Ascend 910B1", 1600, 414, 828, 64)),
    (r"910B2", DevicePeak("Ascend 910B2", 1600, 376, 752, 64)),
    (r"910B3", DevicePeak("Ascend 910B3", 1600, 313, 626, 64)),
    (r"910B4", DevicePeak("Ascend 910B4", 800, 280, 560, 32)),
    (r"910B", DevicePeak("Ascend 910B", 1600, 313, 626, 64)),
    (r"910", DevicePeak("Ascend 910 (A)", 1200, 256, 512, 32)),
    (r"300I.*Duo|310P", DevicePeak("Ascend 310P / Atlas 300I Duo (per chip)", 204, 70, 140, 48)),
]


def lookup(device_name: str | None) -> DevicePeak | None:
    """The table entry for a device name (`NVIDIA H100 80GB HBM3`, `Ascend910B3`), if any."""
    if not device_name:
        return None
    for pattern, peak in PEAKS:
        if re.search(pattern, device_name, re.IGNORECASE):
            return peak
    return None


def with_overrides(peak: DevicePeak | None, device_name: str, overrides: dict | None) -> DevicePeak | None:
    """Apply `{memory_bandwidth_gb_s, bf16_tflops, int8_tops}` from the experiment's config (or a
    measured figure, whose `source` says where it came from)."""
    if not overrides:
        return peak
    base = peak or DevicePeak(device_name, 0.0, None, None, source="")
    default_source = "experiment config" if peak is None else f"{base.source}, overridden in the experiment"
    return DevicePeak(
        name=base.name,
        memory_bandwidth_gb_s=overrides.get("memory_bandwidth_gb_s", base.memory_bandwidth_gb_s),
        bf16_tflops=overrides.get("bf16_tflops", base.bf16_tflops),
        int8_tops=overrides.get("int8_tops", base.int8_tops),
        memory_gb=base.memory_gb,
        source=overrides.get("source", default_source),
    )
