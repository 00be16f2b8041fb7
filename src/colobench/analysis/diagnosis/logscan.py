"""Logs scanned by a table of rules: what inference engineers grep for by hand, kept as findings.

Every worker's stdout and stderr land in `runs/<run>/logs/<worker>.log` (a managed server's in
`server-<name>.log`, read as the log of the instance it serves); on Ascend the CANN
process logs (plog) of each worker land under `runs/<run>/logs/ascend/<worker>/`, because the
worker points `ASCEND_PROCESS_LOG_PATH` there (`ASCEND_GLOBAL_LOG_LEVEL` is the instance knob
`ascend_log_level`). Each rule is a regular expression, a cause, a severity and a remedy. The
built-in rules follow error-code families rather than single messages: CANN's `EZ` (inner
errors: AI Core / vector exceptions), `EL0004` (device memory allocation), `EL0005` and
"Resource busy", `EI` (HCCL communication and timeouts), `EE` / `EH` / `ERR0` (runtime and
framework errors), the runtime result codes of `aclrtSynchronizeStream` failures (5070xx), and
on NVIDIA CUDA out of memory, CUDA errors and NCCL timeouts; thermal and throttling messages; the
serving engines' own (vLLM and SGLang, in a managed server's log: preemption and retraction, a
full KV cache, out of memory, too many open files, a dead engine); and the transformers warnings
that change results (no attention mask, weights left uninitialised).

A match is a finding with its count, the first and last lines, and, when a line carries a
timestamp (CANN's `2025-10-11-15:09:34.713.335`, ISO, glog's `E0928 07:22:40.736`), its first and
last occurrence on the records' clock (through the run's clock anchor: a wall time and the
monotonic time taken together). Users add rules in YAML (`log_rules:` in the experiment, or
`colobench diagnose RUN_DIR --log-rules FILE`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from colobench.analysis.model import Finding, Subject, Window
from colobench.errors import SpecError
from colobench.rundir import SERVER_STOP_MARK, ClockAnchor, PlannedRun, RunFolder

MAX_EVIDENCE_LINES = 5
MAX_LOG_BYTES = 50 * 2**20  # a runaway log is scanned up to this much (its head and tail)


@dataclass(frozen=True)
class LogRule:
    name: str
    pattern: str
    cause: str
    severity: str = "medium"
    remedy: str = ""

    def regex(self) -> re.Pattern[str]:
        return re.compile(self.pattern, re.IGNORECASE)


# a line that only mentions a failure as a possibility is advice, not the failure: vLLM warns at
# start "This can cause fd limit errors like `OSError: [Errno 24] Too many open files`"
ADVICE = re.compile(r"\b(can|could|may|might) (cause|lead to|result in)\b|\blike `", re.IGNORECASE)


RULES: list[LogRule] = [
    LogRule("ascend_resource_busy", r"Resource[ _]busy|\bEL0005\b",
            "an NPU resource was busy: another process holds the device or a stream (co-located instances "
            "contending, or a leftover process)", "high",
            "check `npu-smi info` for other processes on the card; give each instance its own NPU, or fewer "
            "concurrent streams"),
    LogRule("ascend_out_of_memory", r"NPU out of memory|\bEL0004\b|Failed to allocate memory|runtime result = 207001",
            "device memory could not be allocated on the NPU", "high",
            "lower batch or concurrency (the KV cache), cap each instance's memory_fraction, or quantise the weights; "
            "PYTORCH_NPU_ALLOC_CONF=expandable_segments:True against fragmentation"),
    LogRule("ascend_kernel_error", r"\bEZ9\d{3}\b|\bEZ\d{4}\b|core exception|Kernel task happen error",
            "an AI Core or vector kernel failed on the device (CANN inner error)", "high",
            "re-run with ASCEND_GLOBAL_LOG_LEVEL=1 (ascend_log_level: info) and ASCEND_LAUNCH_BLOCKING=1 to "
            "find the operator; check the CANN / torch_npu versions match"),
    LogRule("ascend_stream_timeout", r"aicore timeout|\b50701[14]\b|\b507048\b|SynchronizeStreamWithTimeout|"
            r"SynchronizeDeviceWithTimeout",
            "a stream or device synchronisation timed out on the NPU (a hung kernel or a starved stream)", "high",
            "look for a kernel error just before it; co-located instances starving each other's streams show up "
            "as Resource busy too"),
    LogRule("ascend_sync_failed", r"aclrtSynchronizeStream\S* failed|rtEventQueryStatus execute failed|"
            r"NPU function error:.*Synchroniz",
            "a synchronisation with the NPU failed (the error before it is the cause)", "high",
            "read the preceding CANN error code (EZ/EL/EI) in the same log"),
    LogRule("ascend_communication", r"\bEI\d{4}\b|HCCL watchdog|Notify register times out|Communication_Error",
            "collective communication (HCCL) failed or timed out", "high",
            "check that every rank reached the collective (a crashed or slow rank), the network (hccn_tool) and "
            "HCCL_CONNECT_TIMEOUT"),
    LogRule("ascend_runtime_error", r"\bE[EH]\d{4}\b|\bERR0\d{4}\b|PTA call acl api failed|DIST internal error",
            "the Ascend runtime or torch_npu reported an error", "medium",
            "the code (EE/EH/ERR) names the failing layer: read the line and the one before it"),
    LogRule("npu_smi_driver", r"dcmi[^\n]*-80(05|20)|dcmi module initialize failed",
            "npu-smi could not reach the driver (a container without the device mounted, or a busy driver)",
            "low", "mount /dev/davinci*, /dev/davinci_manager, /dev/hisi_hdc and the driver into the container"),
    LogRule("cuda_out_of_memory", r"CUDA out of memory|CUDA error: out of memory|torch\.OutOfMemoryError",
            "device memory could not be allocated on the GPU", "high",
            "lower batch or concurrency, cap memory_fraction, quantise; PYTORCH_CUDA_ALLOC_CONF="
            "expandable_segments:True against fragmentation"),
    LogRule("cuda_error", r"CUDA error: (?!out of memory)|device-side assert|CUBLAS_STATUS_\w+|cudaError\w*",
            "a CUDA kernel or library call failed", "high",
            "re-run with CUDA_LAUNCH_BLOCKING=1 to find the failing kernel"),
    LogRule("nccl_timeout", r"NCCL[^\n]*(time ?out|timed out)|Watchdog caught collective operation timeout",
            "a collective (NCCL) timed out", "high", "find the rank that did not reach the collective"),
    LogRule("thermal_throttling", r"thermal|throttl|over[- ]?temperature|overheat",
            "the device reported thermal limits or throttling", "medium",
            "check cooling and power limits; runs at different clocks are not comparable"),
    # serving engines (a managed server's log is its instance's): vLLM and SGLang
    LogRule("engine_preemption", r"Sequence group \S+ is preempted|\bis preempted by PreemptionMode|"
            r"\bpreempted\b.*\bKV cache|KV cache pool is full\. Retract requests",
            "the serving engine preempted (vLLM) or retracted (SGLang) running requests: its KV cache ran out, and "
            "they are recomputed later, which costs latency", "medium",
            "give the KV cache more memory (vLLM --gpu-memory-utilization, SGLang --mem-fraction-static), or "
            "admit fewer requests at once (--max-num-seqs, lower concurrency) or shorter contexts"),
    LogRule("engine_kv_cache_full", r"No available blocks|\bout of blocks\b|KV cache is full|"
            r"not enough (free )?(KV cache|blocks) (space )?to|Cannot allocate KV cache",
            "the serving engine ran out of KV-cache blocks for the requests it had admitted", "medium",
            "a larger KV cache (more memory for it, a smaller max model length), or fewer concurrent requests"),
    LogRule("engine_out_of_memory", r"No available memory for the cache blocks|"
            r"larger than the available KV cache memory|Not enough memory\. Please try to increase "
            r"--mem-fraction-static|DefaultCPUAllocator: can't allocate memory|Out of memory: Killed process|"
            r"\boom-kill\b",
            "the serving engine ran out of memory (no room left for its KV cache, or the host killed it)", "high",
            "a smaller model or max model length, a lower memory share for a co-located partner, or more memory for "
            "this engine (vLLM --gpu-memory-utilization / --kv-cache-memory, SGLang --mem-fraction-static)"),
    LogRule("too_many_open_files", r"Too many open files|\[Errno 24\]",
            "a process ran out of file descriptors (each connection, each stream holds one)", "high",
            "raise the limit (ulimit -n 65536, LimitNOFILE in systemd) for the server and colobench, or lower the "
            "concurrency"),
    LogRule("engine_dead", r"\b(Async)?EngineDeadError\b|Engine loop has died|Engine loop is not running|"
            r"Background loop has errored|EngineCore (encountered an issue|failed to start)|"
            r"Scheduler hit an exception|Received sigquit from a child process",
            "the serving engine died: the HTTP server may still answer, but every request fails until it is "
            "restarted", "high",
            "read the engine's first error above this line (out of memory, a kernel error); restart the server and "
            "rerun with --resume"),
    LogRule("transformers_results", r"attention mask (and the pad token id )?(is|are) not set|"
            r"Some weights of .* were not initialized|Setting `pad_token_id` to `eos_token_id`",
            "transformers warned about something that changes the outputs (no attention mask, or weights left "
            "uninitialised)", "low",
            "for random-weight presets this is expected; for a real checkpoint, check it loaded completely"),
]

_TIMESTAMPS = [  # (pattern, how to read it)
    (re.compile(r"(\d{4})-(\d{2})-(\d{2})-(\d{2}):(\d{2}):(\d{2})\.(\d{3})\.(\d{3})"), "cann"),
    (re.compile(r"(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,6}))?"), "iso"),
    (re.compile(r"\b[EWIF](\d{2})(\d{2}) (\d{2}):(\d{2}):(\d{2})\.(\d{1,9})"), "glog"),
]


def line_time(line: str, year: int) -> float | None:
    """The wall time (unix seconds, the host's local time) a log line carries, if any."""
    for regex, kind in _TIMESTAMPS:
        m = regex.search(line)
        if not m:
            continue
        g = [int(x) if x else 0 for x in m.groups()]
        try:
            if kind == "cann":
                base = time.mktime((g[0], g[1], g[2], g[3], g[4], g[5], 0, 0, -1))
                return base + g[6] / 1e3 + g[7] / 1e6
            if kind == "iso":
                frac = m.group(7) or ""
                return time.mktime((g[0], g[1], g[2], g[3], g[4], g[5], 0, 0, -1)) + (int(frac) / 10 ** len(frac)
                                                                                       if frac else 0.0)
            frac = m.group(6)
            return time.mktime((year, g[0], g[1], g[2], g[3], g[4], 0, 0, -1)) + int(frac) / 10 ** len(frac)
        except (OverflowError, ValueError):
            return None
    return None


def _read(path: Path) -> list[str]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        if size <= MAX_LOG_BYTES:
            data = f.read()
        else:
            head = f.read(MAX_LOG_BYTES // 2)
            f.seek(size - MAX_LOG_BYTES // 2)
            data = head + b"\n" + f.read()
    return data.decode("utf-8", "replace").splitlines()


def worker_of(path: Path, logs: Path, names: list[str], servers: dict[str, str] | None = None) -> str | None:
    """The instance a log belongs to: `<worker>.log`, `ascend/<worker>/...` (CANN's plog), or
    `server-<server>.log` (a managed server's output: the instance it serves, by `servers`)."""
    rel = path.relative_to(logs).parts
    key = rel[1] if rel[0] == "ascend" and len(rel) > 1 else path.stem
    if len(rel) == 1 and key.startswith("server-") and key.removeprefix("server-") in (servers or {}):
        return (servers or {})[key.removeprefix("server-")]
    return next((n for n in sorted(names, key=len, reverse=True) if key == n or key.startswith(n + ".")), None)


def scan_run(folder: RunFolder, run: PlannedRun, point: str, anchor: ClockAnchor | None, origin_ns: int,
             rules: list[LogRule]) -> list[Finding]:
    """One finding per (rule, instance) that matched in the run's logs."""
    files = folder.log_files()
    if not files:
        return []
    names = [i.name for i in run.instances]
    serving: dict[str, list[str]] = {}  # managed server -> the run's instances it serves
    for i in run.instances:
        if i.server:
            serving.setdefault(i.server, []).append(i.name)
    servers = {s: n[0] for s, n in serving.items() if len(n) == 1}  # a shared server's log: no one instance's
    year = time.localtime(anchor.unix_s).tm_year if anchor else time.localtime().tm_year
    compiled = [(rule, rule.regex()) for rule in rules]
    hits: dict[tuple[str, str], dict[str, Any]] = {}
    for path in files:
        instance = worker_of(path, folder.logs_dir, names, servers)
        try:
            lines = _read(path)
        except OSError:
            continue
        for number, line in enumerate(lines, start=1):
            if line.startswith(SERVER_STOP_MARK):
                break  # colobench stopped this server: what it logs from here on is its shutdown
            if ADVICE.search(line):
                continue
            for rule, regex in compiled:
                if not regex.search(line):
                    continue
                hit = hits.setdefault((rule.name, instance or ""), {"rule": rule, "count": 0, "lines": [],
                                                                      "times": [], "files": set()})
                hit["count"] += 1
                hit["files"].add(str(path.relative_to(folder.root)))
                if len(hit["lines"]) < MAX_EVIDENCE_LINES:
                    hit["lines"].append(f"{path.name}:{number}: {line.strip()[:300]}")
                t = line_time(line, year)
                if t is not None:
                    hit["times"].append(t)
    out = []
    for (_, instance), hit in hits.items():
        rule: LogRule = hit["rule"]
        windows = []
        first = last = None
        if hit["times"] and anchor:
            first = _mono(min(hit["times"]), anchor)
            last = _mono(max(hit["times"]), anchor)
            windows = [Window(run_id=run.run_id, start_ns=first, end_ns=max(last, first),
                              start_s=round((first - origin_ns) / 1e9, 3), end_s=round((max(last, first) - origin_ns) / 1e9, 3))]
        subject = Subject(point=point, instance=instance or None, phase=run.phase)
        where = f" ({instance})" if instance else ""
        out.append(Finding(
            kind=f"log:{rule.name}", severity=rule.severity if rule.severity in ("high", "medium", "low") else "medium",
            subjects=[subject], point=point, recommendation=rule.remedy, score=float(hit["count"]),
            title=f"logs{where}: {rule.cause}: {hit['count']} line(s) in {run.run_id}",
            evidence={"rule": rule.name, "pattern": rule.pattern, "count": hit["count"],
                      "files": sorted(hit["files"]), "lines": hit["lines"],
                      "first_s": windows[0].start_s if windows else None,
                      "last_s": windows[0].end_s if windows else None},
            windows=windows))
    return out


def _mono(unix_s: float, anchor: ClockAnchor) -> int:
    """A wall time on the records' monotonic clock, through the run's anchor."""
    return int(anchor.mono_ns + (unix_s - anchor.unix_s) * 1e9)


def rules_from(data: Any, source: str) -> list[LogRule]:
    """User rules from plain data (a YAML list of {name, pattern, cause, severity, remedy})."""
    if not isinstance(data, list):
        raise SpecError(source, "log_rules", "expected a list of rules", show_value=False)
    out = []
    for k, item in enumerate(data):
        if not isinstance(item, dict) or not item.get("pattern") or not item.get("cause"):
            raise SpecError(source, f"log_rules[{k}]", "each rule needs a pattern and a cause", show_value=False)
        try:
            re.compile(str(item["pattern"]))
        except re.error as exc:
            raise SpecError(source, f"log_rules[{k}].pattern", f"not a regular expression ({exc})",
                            item["pattern"]) from None
        severity = str(item.get("severity", "medium"))
        if severity not in ("high", "medium", "low"):
            raise SpecError(source, f"log_rules[{k}].severity", "must be high, medium or low", severity)
        out.append(LogRule(str(item.get("name") or f"user_{k}"), str(item["pattern"]), str(item["cause"]), severity,
                           str(item.get("remedy") or "")))
    return out
