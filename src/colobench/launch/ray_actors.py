"""The two kinds of Ray actor the Ray launcher creates: one per instance, one sampler per node.

These are plain classes; `colobench.launch.ray_launcher` wraps them with `ray.remote` at run
time, so importing this module never imports Ray. Each actor is its own process on its node.

`InstanceWorker` runs the same worker code as the local launcher (`worker._work`) in a thread,
writing records, GC pauses and its log into a private folder on its node; the driver polls it
and receives messages plus every new complete line of those files, and writes them into the
run directory. A node's clock is not the driver's: the worker answers `clock_ns()` pings so the
driver can estimate the offset, and the driver puts every timestamp on its own timeline.

`COLOBENCH_SIMULATED_CLOCK_SKEW_NS` (an instance `env` entry) makes an actor behave as if its
node's clock were that far ahead: every timestamp it reports (pings, records, GC pauses) and
every start time it is given are shifted. It exists to test the offset correction on one host,
and is recorded in the manifest whenever it is used.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import socket
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import orjson
from colobench.clock import now_ns
from colobench.devices import kind_of
from colobench.errors import error_text
from colobench.launch.worker import _work, first_run, setup_process, worker_key
from colobench.rundir import LINE_FOLDERS, RunDir
from colobench.rundir.paths import LOGS, PROMPTS, TELEMETRY
from colobench.specs import TelemetrySpec
from colobench.telemetry import TelemetryRecorder, make_samplers

SKEW_ENV = "COLOBENCH_SIMULATED_CLOCK_SKEW_NS"
NS_FIELDS = ("submit_ns", "scheduled_ns", "done_ns", "start_ns", "t_ns")


def shift_ns(row: dict[str, Any], delta_ns: int) -> dict[str, Any]:
    """Add `delta_ns` to every timestamp of a record, GC pause or telemetry sample."""
    for key in NS_FIELDS:
        if row.get(key) is not None:
            row[key] += delta_ns
    if row.get("token_ns"):
        row["token_ns"] = [t + delta_ns for t in row["token_ns"]]
    return row


def shift_lines(data: bytes, delta_ns: int) -> bytes:
    """`shift_ns` over JSON lines."""
    if not delta_ns:
        return data
    return b"".join(orjson.dumps(shift_ns(orjson.loads(line), delta_ns)) + b"\n"
                    for line in data.splitlines() if line.strip())


def boot_id() -> str | None:
    """The running kernel's boot id: processes that share it share one CLOCK_MONOTONIC (two Ray
    nodes started on one machine, or containers on one host, included)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def where() -> dict[str, Any]:
    """Which node and accelerators this actor got."""
    import ray

    ctx = ray.get_runtime_context()
    try:
        accelerators = {k: [str(i) for i in v] for k, v in ctx.get_accelerator_ids().items() if v}
    except Exception:  # older Ray: GPUs only
        accelerators = {"GPU": [str(i) for i in ray.get_gpu_ids()]}
    return {"node_id": ctx.get_node_id(), "ip": ray.util.get_node_ip_address(), "hostname": socket.gethostname(),
            "pid": os.getpid(), "boot_id": boot_id(), "accelerators": accelerators,
            "skew_ns": int(os.environ.get(SKEW_ENV, "0") or 0),
            "colobench": str(Path(__file__).resolve().parents[1])}  # which copy runs there (ship_source)


def local_device(device: str, accelerators: dict[str, list[str]]) -> str:
    """The device as this actor sees it: Ray narrows the kind's visible-devices variable
    (CUDA_VISIBLE_DEVICES, ASCEND_RT_VISIBLE_DEVICES) to the cards it assigned, so the first
    assigned card is index 0 here."""
    kind = kind_of(device)
    return f"{kind.name}:0" if kind.ray_resource and accelerators.get(kind.ray_resource) else device


def physical_device(device: str, accelerators: dict[str, list[str]]) -> str:
    """The card the node's tools see: the id Ray assigned (for NPUs the runtime's logic id, which
    Ray puts in ASCEND_RT_VISIBLE_DEVICES; the node's sampler places it on its NPU id and chip
    with `npu-smi info -m`, like the local launcher)."""
    kind = kind_of(device)
    ids = accelerators.get(kind.ray_resource or "", [])
    return f"{kind.name}:{ids[0]}" if ids else device


class _StartTime:
    """What `multiprocessing.Value` is to the local launcher: the common start of open-loop schedules."""

    value = 0


class _StartAt:
    """A barrier event that opens at a time: `set_at(t)` arrives early (the driver's lead), and
    the worker's own `wait` sleeps until `t`, finishing with a short spin, so the start does not
    depend on another thread waking up in time (which costs milliseconds under the GIL)."""

    SPIN_NS = 1_000_000

    def __init__(self) -> None:
        self.event, self.t_ns = threading.Event(), 0

    def set_at(self, t_ns: int) -> None:
        self.t_ns = t_ns
        self.event.set()

    def wait(self, timeout: float | None = None) -> bool:
        if not self.event.wait(timeout):
            return False
        remaining = self.t_ns - now_ns() - self.SPIN_NS
        if remaining > 0:
            time.sleep(remaining / 1e9)
        while now_ns() < self.t_ns:
            pass
        return True


class _FileTail:
    """New complete lines of files since the last call (a torn last line waits for the next)."""

    def __init__(self, root: Path):
        self.root, self.offsets = root, {}

    def lines(self, rel: str) -> bytes:
        path = self.root / rel
        if not path.is_file():
            return b""
        with open(path, "rb") as f:
            f.seek(self.offsets.get(rel, 0))
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offsets[rel] = self.offsets.get(rel, 0) + end
        return data[:end]

    def _files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file())

    def new_lines(self) -> dict[str, bytes]:
        """Every file of the streamed folders (`<run>/records/`, `gc/`, `logs/`, `client/`, or a
        top-level one) that has new lines, by its path under the root."""
        out = {}
        for path in self._files():
            if path.parent.name in LINE_FOLDERS:
                rel = str(path.relative_to(self.root))
                data = self.lines(rel)
                if data:
                    out[rel] = data
        return out

    def whole_files(self) -> dict[str, bytes]:
        """Files written once at the end (quality probes)."""
        return {str(p.relative_to(self.root)): p.read_bytes() for p in self._files()
                if p.parent.name not in (*LINE_FOLDERS, PROMPTS)}


class InstanceWorker:
    """One instance (or one client process of an HTTP instance) as a Ray actor."""

    def __init__(self, instance: dict, windows: list[dict], prompts: list | None, part: tuple[int, int]):
        self.placement = where()
        self.skew_ns = self.placement["skew_ns"]
        self.key = worker_key(instance.get("member") or instance["name"], tuple(part))
        self.dir = Path(tempfile.mkdtemp(prefix="colobench-actor-"))
        self.run_dir = RunDir(self.dir)  # the run directory's layout on this node, streamed to the driver's
        self.instance = dict(instance, device=local_device(instance["device"], self.placement["accelerators"]))
        self.windows, self.part = windows, tuple(part)
        self.prompts_file = None
        if prompts is not None:
            path = self.run_dir.prompts("prompts")
            path.parent.mkdir()
            path.write_bytes(orjson.dumps(prompts))
            self.prompts_file = str(path)
        setup_process(self.instance, self.run_dir.run(first_run(instance.get("member") or instance["name"], windows)),
                      self.key)
        self.msgs: queue.Queue = queue.Queue()
        self.go = [_StartAt() for _ in windows]
        self.stop_events = [threading.Event() for _ in windows]
        self.start_time = _StartTime()
        self.tail = _FileTail(self.dir)
        self.finished = False
        self.thread: threading.Thread | None = None

    def where(self) -> dict[str, Any]:
        return self.placement

    def clock_ns(self) -> int:
        return now_ns() + self.skew_ns

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name=f"colobench-{self.key}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            # Ray runs workers at nice 15 unless the cluster was started with RAY_worker_niceness=0;
            # this thread (and the torch threads it starts) measures, so it asks for normal priority
            # (on Linux, per thread); where that is refused, the niceness is reported with the load facts
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, 0, 0)
            _work(self.instance, self.windows, self.run_dir, self.msgs, self.go, self.stop_events, os.getppid(),
                  self.prompts_file, self.part, self.start_time)
        except BaseException as exc:  # reported to the driver with the reason; traceback in the log
            traceback.print_exc()
            self.msgs.put(("error", self.key, error_text(exc)))
        finally:
            self.finished = True

    def go_at(self, window: int, start_ns: int) -> None:
        """Start window `window` when this node's clock reads `start_ns` (in this actor's clock)."""
        t = start_ns - self.skew_ns
        self.start_time.value = t  # open-loop schedules start here too
        self.go[window].set_at(t)

    def stop(self, window: int) -> None:
        """Every partner has finished its quota of co-located window `window`: end the filler."""
        self.stop_events[window].set()

    def poll(self) -> dict[str, Any]:
        """Messages since the last poll, then every new complete line of the worker's files
        (read after the messages, so a `done` comes with everything written before it)."""
        finished = self.finished
        msgs = []
        while True:
            try:
                msgs.append(self.msgs.get_nowait())
            except queue.Empty:
                break
        files = self.tail.new_lines()
        if self.skew_ns:
            files = {rel: data if Path(rel).parent.name == LOGS else shift_lines(data, self.skew_ns)
                     for rel, data in files.items()}
        if finished or any(kind in ("done", "error") for kind, *_ in msgs):
            files.update(self.tail.whole_files())
        return {"msgs": msgs, "files": files, "finished": finished}

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class NodeSampler:
    """Telemetry of one node (host, and its NVIDIA or Ascend cards) into a private file the
    driver polls; the same samplers the local launcher runs in its parent process."""

    def __init__(self, devices: list[str], pids: dict[str, int], telemetry: dict):
        self.dir = Path(tempfile.mkdtemp(prefix="colobench-sampler-"))
        spec = TelemetrySpec.model_validate(telemetry)
        self.recorder = TelemetryRecorder(make_samplers(devices, lambda: pids, spec), self.dir / TELEMETRY)
        self.tail = _FileTail(self.dir)

    def where(self) -> dict[str, Any]:
        return where()

    def clock_ns(self) -> int:
        return now_ns()

    def start(self) -> dict[str, str]:
        return self.recorder.start()

    def poll(self) -> bytes:
        return self.tail.lines(TELEMETRY)

    def stop(self) -> dict[str, Any]:
        status = self.recorder.stop()
        return {"status": status, "lines": self.poll()}

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
