"""The environment check: this host, the software versions, every device with its memory and its
peak figures, and (with `probe`) measured copy bandwidth and matmul rate against those peaks.

`environment()` is what the manifest records before a run; it never initialises an accelerator
(the parent process must hold no device context on the card under test), so the devices
themselves are named by the workers as they load. `inventory()` is `colobench devices`, a
separate command that may touch every card.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from colobench import __version__
from colobench.devices import get_device, present, versions
from colobench.devices.cpu import cpu_model_name, total_memory_bytes
from colobench.devices.peaks import lookup
from colobench.devices.probe import probe as run_probe

PACKAGES = ("torch", "transformers", "torch_npu", "numpy", "pydantic")


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, Any]:
    """Host facts for the manifest. Never initialises an accelerator (workers report devices)."""
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model_name(),
        "logical_cores": os.cpu_count(),
        "memory_bytes": total_memory_bytes(),
        "load_average_1_5_15": load,
        "versions": {"colobench": __version__, **{k: _package_version(k) for k in PACKAGES}},
        "git_commit": _git_commit(),
    }


PROBE_CACHE = "probe.json"


def save_probe(rows: list[dict[str, Any]], cache_dir: Path) -> Path:
    """Keep this host's measured figures (`colobench devices --probe`) in the cache: a CPU has no
    datasheet peak, so its measured copy bandwidth becomes the peak MBU is judged against."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / PROBE_CACHE
    data = {"hostname": socket.gethostname(), "cpu_model": cpu_model_name(),
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "devices": {r["device"]: r["probe"] for r in rows if r.get("probe")}}
    path.write_text(json.dumps(data, indent=2))
    return path


def measured_peaks(cache_dir: Path) -> dict[str, dict[str, Any]]:
    """Peak figures from this host's cached probe, for devices with no published bandwidth (the
    CPU, most Ascend chips): `{device: {memory_bandwidth_gb_s, source}}`; {} without a probe."""
    path = cache_dir / PROBE_CACHE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if data.get("hostname") != socket.gethostname() or data.get("cpu_model") != cpu_model_name():
        return {}
    return {device: {"memory_bandwidth_gb_s": row["copy_bandwidth_bytes_s"] / 1e9,
                     "source": f"measured copy bandwidth (colobench devices --probe, {data.get('date')})"}
            for device, row in (data.get("devices") or {}).items()
            if isinstance(row, dict) and row.get("copy_bandwidth_bytes_s")}


def inventory(probe: bool = False, cache_dir: Path | None = None) -> dict[str, Any]:
    """Host, versions, and one row per device (name, memory, driver, peak, measured figures)."""
    env = environment()
    rows = []
    for device in present():
        info = get_device(device).info()
        peak = lookup(info.name) if info.kind != "cpu" else None
        row: dict[str, Any] = {"device": device, "name": info.name, "memory_bytes": info.total_memory_bytes,
                               "driver": info.driver, "extra": info.extra, "peak": peak.__dict__ if peak else None}
        if probe:
            measured = run_probe(device)
            if peak:
                bw = peak.memory_bandwidth_bytes_s
                measured["copy_pct_of_peak"] = 100 * measured["copy_bandwidth_bytes_s"] / bw if bw else None
                flops = peak.peak_flops(measured["matmul_dtype"])
                measured["matmul_pct_of_peak"] = 100 * measured["matmul_flops"] / flops if flops else None
            row["probe"] = measured
        rows.append(row)
    out = {"host": {k: env[k] for k in ("hostname", "cpu_model", "logical_cores", "memory_bytes", "platform")},
           "versions": {**env["versions"], **versions()}, "devices": rows}
    if probe and cache_dir is not None:
        out["probe_cache"] = str(save_probe(rows, cache_dir))
    return out
