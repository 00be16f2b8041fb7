"""`colobench devices` (the environment check), `presets` and `schema`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from colobench import api
from colobench.cli.app import app, stdout
from colobench.devices.npu_smi import chip_rows, kind_of_output
from colobench.errors import ColobenchError, os_reason
from colobench.report.devices import print_devices, print_npu_smi, print_presets

@app.command()
def devices(
    probe: bool = typer.Option(False, "--probe", help="measure copy bandwidth and a large matmul on each device"),
    json_out: bool = typer.Option(False, "--json", help="print the result as JSON"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address",
                                              help="also list the nodes of this Ray cluster (auto, host:port, local)"),
    npu_smi: list[Path] = typer.Option([], "--npu-smi", metavar="FILE",
                                       help="parse saved npu-smi outputs (info, -t usages/common/power/..., -m) of one "
                                       "host and print one row per chip; repeat for several files"),
) -> None:
    """The environment check: devices, drivers and versions, memory, peak figures (and measured)."""
    if npu_smi:
        _print_npu_smi(npu_smi, json_out)
        return
    result = api.list_devices(probe=probe)
    if ray_address:
        result["ray_nodes"] = api.ray_cluster(ray_address)
    if json_out:
        print(api.dump_json_line(result))
        return
    print_devices(result, stdout(), ray_address, probe)
    print(api.dump_json_line(result))


def _print_npu_smi(files: list[Path], json_out: bool) -> None:
    """`devices --npu-smi FILE...`: what colobench reads from a real machine's npu-smi outputs."""
    texts = []
    for path in files:
        try:
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
        except OSError as exc:
            raise ColobenchError(f"--npu-smi {path}: cannot read ({os_reason(exc)})") from None
        if kind_of_output(texts[-1]) == "unknown":
            raise ColobenchError(f"--npu-smi {path}: not an npu-smi output colobench knows (info table, -t report or -m)")
    rows = chip_rows(texts)
    if json_out:
        print(api.dump_json_line(rows))
        return
    print_npu_smi(rows, stdout())


@app.command()
def presets() -> None:
    """List the architecture presets (real shapes, random weights)."""
    print_presets(stdout())


@app.command()
def schema() -> None:
    """Print the JSON Schema of summary.json (colobench.summary/2), generated from its models."""
    print(json.dumps(api.schema(), indent=2))
