"""The environment check as tables: the host, each device with its memory, driver and peak
figures (and what `--probe` measured against them), a Ray cluster's nodes, chips read from saved
npu-smi outputs, and the architecture presets. Formatting only: the figures come from
`devices.inventory`, `devices.npu_smi` and `models.presets`."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from colobench.models.presets import PRESETS, default_cache_dir, is_built


def print_devices(result: dict[str, Any], console: Console, ray_address: str | None = None,
                  probed: bool = False) -> None:
    host = result["host"]
    console.print(f"host: {escape(str(host['hostname']))}, {escape(str(host['cpu_model']))}, "
                  f"{host['logical_cores']} logical cores, {(host['memory_bytes'] or 0) / 2**30:.1f} GiB")
    console.print("versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v))
    table = Table(show_edge=False, header_style="bold")
    for col in ("device", "name", "memory", "driver", "peak bandwidth", "peak bf16", "measured copy", "measured matmul"):
        table.add_column(col)
    for row in result["devices"]:
        peak = row.get("peak") or {}
        probe = row.get("probe") or {}
        copy = (f"{probe['copy_bandwidth_bytes_s'] / 1e9:,.0f} GB/s"
                + (f" ({probe['copy_pct_of_peak']:.0f}%)" if probe.get("copy_pct_of_peak") else "")) if probe else "-"
        matmul = (f"{probe['matmul_flops'] / 1e12:,.2f} TFLOP/s {probe['matmul_dtype']}"
                  + (f" ({probe['matmul_pct_of_peak']:.0f}%)" if probe.get("matmul_pct_of_peak") else "")) if probe else "-"
        table.add_row(row["device"], escape(str(row["name"])),
                      f"{row['memory_bytes'] / 2**30:.1f} GiB" if row.get("memory_bytes") else "-",
                      escape(str(row.get("driver") or "-")),
                      f"{peak['memory_bandwidth_gb_s']:,.0f} GB/s" if peak and peak.get("memory_bandwidth_gb_s") else
                      ("no public figure" if peak else "-"),
                      f"{peak['bf16_tflops']:,.0f} TFLOP/s" if peak.get("bf16_tflops") else "-", copy, matmul)
    console.print(table)
    if result.get("ray_nodes") is not None:
        nodes = Table(show_edge=False, header_style="bold", title=f"Ray cluster at {escape(str(ray_address))}")
        for col in ("node", "ip", "host", "alive", "CPU", "GPU", "NPU", "other resources", "labels"):
            nodes.add_column(col)
        for n in result["ray_nodes"]:
            res = dict(n["resources"])
            cells = [f"{res.pop(k):g}" if k in res else "-" for k in ("CPU", "GPU", "NPU")]
            nodes.add_row(escape(str(n["node_id"])[:8]), escape(str(n["ip"])), escape(str(n["hostname"])),
                          "yes" if n["alive"] else "no", *cells,
                          escape(", ".join(f"{k} {v:g}" for k, v in res.items()) or "-"),
                          escape(", ".join(f"{k}={v}" for k, v in n["labels"].items()) or "-"))
        console.print(nodes)
    if not probed:
        console.print("add --probe to measure copy bandwidth and a large matmul on each device", style="dim")
    elif result.get("probe_cache"):
        console.print(f"probe figures kept in {escape(result['probe_cache'])}: a CPU run without a configured peak "
                      "uses the measured copy bandwidth as its peak (and says so)", style="dim")


def print_npu_smi(rows: list[dict[str, Any]], console: Console) -> None:
    """`devices --npu-smi FILE...`: what colobench reads from a real machine's npu-smi outputs."""
    table = Table(show_edge=False, header_style="bold", title="npu-smi, one row per chip", title_justify="left")
    for col in ("NPU", "chip", "logic", "name", "memory used/total MB", "AI Core %", "bandwidth %", "power W",
                "temp C", "processes (MB)"):
        table.add_column(col, justify="left" if col in ("name", "processes (MB)") else "right")

    def num(v: Any) -> str:
        return "-" if v is None else f"{v:g}"

    for r in rows:
        used = r.get("mem_used_mb", r.get("mem_used_mb_from_pct"))
        memory = (f"{r.get('memory_kind', '')} {num(used)} / {num(r.get('mem_total_mb'))}"
                  + (" (from a %)" if "mem_used_mb" not in r and used is not None else "")).strip()
        power = num(r.get("power_w")) + (" (card)" if r.get("power_is_card_level") else "")
        procs = ", ".join(f"{p['pid']} {escape(p['name'])} {p['memory_mb']}" for p in r.get("processes", []))
        table.add_row(str(r["npu_id"]), str(r["chip_id"]), num(r.get("logic_id")), escape(str(r.get("name") or "-")),
                      memory, num(r.get("aicore_pct", r.get("util_pct"))), num(r.get("hbm_bw_util_pct",
                      r.get("ddr_bw_util_pct"))), power, num(r.get("temp_c")), procs or "-")
    console.print(table)


def print_presets(console: Console) -> None:
    """The architecture presets (real shapes, random weights) and whether each is built."""
    table = Table(show_edge=False, header_style="bold")
    for col in ("preset", "shapes of", "parameters", "layers", "hidden", "heads/kv", "vocab", "built"):
        table.add_column(col)
    for p in PRESETS.values():
        c = p.config
        table.add_row(p.name, p.reference, f"{p.approx_params() / 1e6:,.1f} M", str(c["num_hidden_layers"]),
                      str(c["hidden_size"]), f"{c['num_attention_heads']}/{c['num_key_value_heads']}",
                      str(c["vocab_size"]), "yes" if is_built(p.name) else "no")
    console.print(table)
    console.print(f"cache: {escape(str(default_cache_dir()))}", style="dim")
