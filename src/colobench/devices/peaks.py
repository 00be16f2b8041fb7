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
    memory_bandwidth_gb_s: float | None
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
    def memory_bandwidth_bytes_s(self) -> float | None:
        return self.memory_bandwidth_gb_s * 1e9 if self.memory_bandwidth_gb_s else None


NVIDIA = "NVIDIA datasheet, dense"
# pattern on the CUDA device name (case-insensitive) -> peak; the first match wins, so specific first
PEAKS: list[tuple[str, DevicePeak]] = [
    (r"H200", DevicePeak("NVIDIA H200", 4800, 989, 1979, 141, f"{NVIDIA} (H200 SXM)")),
    (r"H100.*(PCIe|PCI)", DevicePeak("NVIDIA H100 PCIe", 2000, 756, 1513, 80, f"{NVIDIA} (H100 PCIe)")),
    (r"H100.*NVL", DevicePeak("NVIDIA H100 NVL", 3900, 835, 1671, 94, f"{NVIDIA} (H100 NVL)")),
    (r"H100", DevicePeak("NVIDIA H100 SXM", 3350, 989, 1979, 80, f"{NVIDIA} (H100 SXM)")),
    (r"A100.*(80|PCIe.*80)", DevicePeak("NVIDIA A100 80GB SXM", 2039, 312, 624, 80, f"{NVIDIA} (A100 80GB SXM)")),
    (r"A100", DevicePeak("NVIDIA A100 40GB", 1555, 312, 624, 40, f"{NVIDIA} (A100 40GB)")),
    (r"L40S", DevicePeak("NVIDIA L40S", 864, 362, 733, 48, f"{NVIDIA} (L40S)")),
    (r"4090", DevicePeak("NVIDIA GeForce RTX 4090", 1008, 165, 661, 24, f"{NVIDIA} (Ada whitepaper, RTX 4090)")),
]

# Ascend chips by exact model (the name with "Ascend", spaces and underscores removed). Huawei
# publishes few per-chip figures: where none is public the figure is None (no peak, never a
# neighbour's), `devices --probe` measures the card's copy bandwidth, and a run uses that (said
# so). Memory sizes are what real npu-smi outputs print (tests/fixtures/npu_smi_real).
ASCEND_PEAKS: dict[str, DevicePeak] = {
    "910": DevicePeak("Ascend 910", 1200, 256, 512, 32,
                      "Huawei Ascend 910 launch (2019) and Hot Chips 31: 256 TFLOPS FP16, 512 TOPS INT8, "
                      "HBM 1.2 TB/s, 32 GB"),
    "910B1": DevicePeak("Ascend 910B1", None, None, None, 64,
                        "no public per-chip bandwidth or FLOP/s figure; 64 GB from npu-smi (65536 MB)"),
    "910B2": DevicePeak("Ascend 910B2", None, None, None, 64,
                        "no public per-chip bandwidth or FLOP/s figure; 64 GB from npu-smi (65536 MB)"),
    "910B3": DevicePeak("Ascend 910B3", None, None, None, 64, "no public per-chip bandwidth or FLOP/s figure; 64 GB"),
    "910B4": DevicePeak("Ascend 910B4", None, None, None, 32, "no public per-chip bandwidth or FLOP/s figure; 32 GB"),
    "910B4-1": DevicePeak("Ascend 910B4-1", None, None, None, 64,
                          "no public per-chip bandwidth or FLOP/s figure; 64 GB from npu-smi (65536 MB)"),
    "A3": DevicePeak("Ascend 910 (A3, per chip)", None, None, None, 64,
                     "no public per-chip bandwidth or FLOP/s figure; 64 GB per chip from npu-smi (65536 MB)"),
    "310": DevicePeak("Ascend 310", None, 11, 22, 8, "Huawei Ascend 310 product page: 22 TOPS INT8, 11 TFLOPS FP16; "
                      "8 GB (npu-smi: 8192 MB)"),
    "310P3": DevicePeak("Ascend 310P3 (per chip)", 204.8, 70, 140, None,
                        "Huawei Atlas 300I Pro datasheet (one 310P3): 204.8 GB/s LPDDR4X, 140 TOPS INT8, "
                        "70 TFLOPS FP16; memory as the card reports it (24 GB on 300I Pro, 48 GB a chip on 300I Duo)"),
}
ALIAS = {"910A": "910", "910PROA": "910", "910PROB": "910"}


def _ascend_model(device_name: str) -> str | None:
    """`Ascend910B3` -> `910B3`, `Ascend910_9392` -> `A3`; None when it is not an Ascend name."""
    name = re.sub(r"[\s_]", "", device_name).upper().removeprefix("ASCEND")
    if not re.match(r"^\d{3}", name):
        return None
    if re.match(r"^910(93|C)", name):  # Atlas A3: Ascend910_93xx (two chips per NPU id)
        return "A3"
    return ALIAS.get(name, name)


def lookup(device_name: str | None, memory_gb: float | None = None) -> DevicePeak | None:
    """The table entry for a device name (`NVIDIA H100 80GB HBM3`, `Ascend910B3`): CUDA names
    by pattern, Ascend names exactly (`910B4` is not `910B4-1`, a bare `910B` is ambiguous
    between an old 910 ProB and the 910B series and gets none); None for anything unknown."""
    if not device_name:
        return None
    model = _ascend_model(device_name)
    if model is not None:
        return ASCEND_PEAKS.get(model)
    for pattern, peak in PEAKS:
        if re.search(pattern, device_name, re.IGNORECASE):
            return peak
    return None


def with_overrides(peak: DevicePeak | None, device_name: str, overrides: dict | None) -> DevicePeak | None:
    """Apply `{memory_bandwidth_gb_s, bf16_tflops, int8_tops}` from the experiment's config (or a
    measured figure, whose `source` says where it came from)."""
    if not overrides:
        return peak
    base = peak or DevicePeak(device_name, None, None, None, source="")
    default_source = "experiment config" if peak is None else f"{base.source}, overridden in the experiment"
    return DevicePeak(
        name=base.name,
        memory_bandwidth_gb_s=overrides.get("memory_bandwidth_gb_s", base.memory_bandwidth_gb_s),
        bf16_tflops=overrides.get("bf16_tflops", base.bf16_tflops),
        int8_tops=overrides.get("int8_tops", base.int8_tops),
        memory_gb=base.memory_gb,
        source=overrides.get("source", default_source),
    )
