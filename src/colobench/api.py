"""What the CLI and notebooks call: plan, run, summarise. Never prints.

`run_experiment(spec)` validates and checks everything first (nothing is written if the spec
cannot work), builds any preset not yet cached, writes `manifest.json`, runs each planned run
with the local launcher, and writes `summary.json`. A run directory looks like:

    manifest.json                    spec, plan, environment (written before anything runs)
    runs/<run_id>/run.json           workers: pids, load facts, outcome (rewritten as it goes)
    runs/<run_id>/records/<i>.jsonl  one line per request, appended as each completes
    runs/<run_id>/logs/<i>.log       the worker's stdout and stderr
    summary.json                     derived by `summarize(run_dir)`, re-computable any time
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from colobench import __version__
from colobench.analysis.summary import summarize_run_dir
from colobench.clock import wall_unix_s
from colobench.devices.cpu import cpu_model_name, total_memory_bytes
from colobench.errors import ColobenchError
from colobench.launch.local import RunInterrupted, run_local, write_json_atomic
from colobench.models.presets import ensure_preset, is_built
from colobench.plan import ExperimentPlan, check_plan, plan_experiment
from colobench.specs import ExperimentSpec, InstanceSpec, redact

DEFAULT_RUNS_DIR = Path("colobench-runs")


@dataclass
class ExperimentResult:
    run_dir: Path
    summary: dict[str, Any]
    interrupted: bool = False


class Progress:
    """Callbacks the API reports through; the CLI draws them, a notebook may ignore them."""

    def phase(self, text: str) -> None: ...

    def run_started(self, run_id: str, total_requests: int | None) -> None: ...

    def requests_done(self, run_id: str, instance: str, count: int) -> None: ...

    def worker_event(self, run_id: str, kind: str, instance: str, payload: Any) -> None: ...

    def run_finished(self, run_id: str, state: dict[str, Any]) -> None: ...


def auto_device() -> str:
    from colobench.devices import resolve_auto

    return resolve_auto()


def default_experiment(device: str | None = None) -> ExperimentSpec:
    """The embedded default: two instances of one random-weight Llama preset on one device,
    `tiny` on CPU and `llama-3.2-1b` on an accelerator."""
    device = device or auto_device()
    model = "tiny" if device == "cpu" else "llama-3.2-1b"
    return ExperimentSpec(name="default-colocation",
                          instances=[InstanceSpec(model=model, device=device), InstanceSpec(model=model, device=device)])


def prepare(spec: ExperimentSpec, source: str = "experiment") -> ExperimentPlan:
    """Validate against this host: resolve `auto`, check devices and model folders. Writes nothing."""
    needs_auto = any(i.device == "auto" for i in spec.instances) or any(
        v == "auto" for k, vs in spec.sweep.items() if k.endswith(".device") for v in vs)
    plan = plan_experiment(spec, auto_device=auto_device() if needs_auto else "cpu", source=source)
    check_plan(plan, source)
    return plan


def _http_get(url: str, headers: dict[str, str], timeout_s: float = 5.0) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def probe_endpoints(plan: ExperimentPlan, source: str = "experiment") -> dict[str, list[str]]:
    """Check every endpoint before anything runs: reachable, and serving the model asked for.
    Asks `/v1/models`; a server without it gets one tiny probe request instead."""
    import urllib.error
    import urllib.request

    from colobench.backends.openai_http import auth_headers, endpoint_url, request_body
    from colobench.errors import SpecError
    from colobench.workload.synthetic import Request

    served: dict[str, list[str]] = {}
    for k, inst in enumerate(plan.instances):
        if inst.backend != "openai" or inst.endpoint is None:
            continue
        cfg = inst.endpoint
        headers = auth_headers(cfg)
        url = cfg.base_url.rstrip("/") + "/models"
        try:
            status, body = _http_get(url, headers)
        except OSError as exc:
            reason = getattr(exc, "reason", exc)
            raise SpecError(source, f"instances[{k}].base_url", f"cannot reach the server ({reason})",
                            cfg.base_url) from None
        if status == 200:
            try:
                names = [m.get("id") for m in json.loads(body).get("data", [])]
            except (ValueError, AttributeError):
                names = []
            served[cfg.base_url] = names
            if names and inst.model not in names:
                raise SpecError(source, f"instances[{k}].model",
                                f"not served at {cfg.base_url} (it serves: {', '.join(map(str, names))})", inst.model)
            continue
        if status in (401, 403):
            raise SpecError(source, f"instances[{k}].api_key_env", f"the server refused the credentials (HTTP {status})",
                            cfg.api_key_env)
        # no /models: one short non-streaming request tells whether URL and model are right

        probe = request_body(cfg, inst.model, Request(0, (), 1, text="Hello"), stream=False)
        req = urllib.request.Request(endpoint_url(cfg.base_url, cfg.api), data=json.dumps(probe).encode(),
                                     headers={"Content-Type": "application/json", **headers})
        try:
            with urllib.request.urlopen(req, timeout=30):
                pass
        except urllib.error.HTTPError as exc:
            raise SpecError(source, f"instances[{k}]", f"probe request to {cfg.base_url} failed with HTTP {exc.code}",
                            show_value=False) from None
        except OSError as exc:
            raise SpecError(source, f"instances[{k}].base_url", f"cannot reach the server ({exc})", cfg.base_url) from None
    return served


def scrape_metrics(run: Any, rdir: Path, when: str) -> None:
    """Save each endpoint's Prometheus text to runs/<run>/metrics/<instance>.<when>.prom (fail-soft)."""
    for inst in run.instances:
        if inst.endpoint is None or not inst.endpoint.metrics_url:
            continue
        (rdir / "metrics").mkdir(parents=True, exist_ok=True)
        try:
            status, body = _http_get(inst.endpoint.metrics_url, {})
            text = body.decode("utf-8", "replace") if status == 200 else f"# scrape failed: HTTP {status}\n"
        except OSError as exc:
            text = f"# scrape failed: {exc}\n"
        (rdir / "metrics" / f"{inst.name}.{when}.prom").write_text(text)


def _prompt_key(model_path: str, prompts: Any) -> str:
    import hashlib

    blob = json.dumps([model_path, prompts.model_dump()], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def tokenize_prompts(plan: ExperimentPlan, source: str = "experiment") -> dict[str, list[list[int]]]:
    """Token ids of every text prompt source in the plan, keyed by (checkpoint, source); checks
    each prompt plus its output against the model's context. Raises SpecError; writes nothing."""
    from colobench.errors import SpecError
    from colobench.plan import _max_context
    from colobench.workload.prompts import builtin_prompts, read_prompt_file, tokenize

    out: dict[str, list[Any]] = {}
    for inst in plan.instances:
        src = inst.workload.prompts
        if src is not None and inst.backend == "openai":
            key = _prompt_key(inst.model, src)
            if key not in out:  # endpoints take text; the server tokenizes
                texts = read_prompt_file(src.file) if src.file else builtin_prompts(
                    None if src.builtin == "all" else list(src.builtin))
                out[key] = [{"text": t.text} if t.text is not None else {"messages": list(t.messages)} for t in texts]
            if inst.endpoint.api == "completions" and any("messages" in p for p in out[key]):
                raise SpecError(src.file or "built-in prompts", "", f"chat prompts (messages) need api: chat for "
                                f"{inst.name}", show_value=False)
            continue
        if src is None or inst.backend != "transformers" or not inst.model_path:
            continue
        key = _prompt_key(inst.model_path, src)
        where = src.file or "built-in prompts"
        if key not in out:
            from transformers import AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(inst.model_path)
            except Exception as exc:
                raise SpecError(source, f"{inst.name}.model", f"cannot load a tokenizer for text prompts "
                                f"({exc.__class__.__name__})", inst.model) from None
            texts = read_prompt_file(src.file) if src.file else builtin_prompts(
                None if src.builtin == "all" else list(src.builtin))
            try:
                out[key] = tokenize(texts, tokenizer)
            except Exception as exc:
                raise SpecError(where, "", f"cannot tokenize with {inst.model}'s tokenizer: "
                                f"{str(exc).splitlines()[0]}", show_value=False) from None
        context = _max_context(inst)
        longest = max(len(p) for p in out[key])
        if context and longest + inst.workload.max_output_tokens() > context:
            raise SpecError(where, "", f"a prompt of {longest} tokens plus {inst.workload.max_output_tokens()} "
                            f"output tokens exceeds {inst.name}'s context of {context} tokens", show_value=False)
    return out


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
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
        "versions": {"colobench": __version__, **{k: _version(k) for k in ("torch", "transformers", "torch_npu",
                                                                           "numpy", "pydantic")}},
        "git_commit": _git_commit(),
    }


def build_presets(plan: ExperimentPlan, progress: Progress) -> None:
    cache = Path(plan.cache_dir)
    for name in sorted({i.preset for i in plan.instances if i.preset}):
        if not is_built(name, cache):
            progress.phase(f"building preset {name} (random weights, once; cached in {cache})")
            t0 = time.perf_counter()
            ensure_preset(name, cache)
            progress.phase(f"built preset {name} in {time.perf_counter() - t0:.1f} s")


def new_run_dir(name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = DEFAULT_RUNS_DIR / f"{stamp}-{name}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path


def _run_finished(run_dir: Path) -> bool:
    state_file = run_dir / "run.json"
    if not state_file.is_file():
        return False
    try:
        return json.loads(state_file.read_text()).get("status") == "completed"
    except ValueError:
        return False


def _check_resumable(run_dir: Path, spec: ExperimentSpec) -> dict[str, Any]:
    manifest_file = run_dir / "manifest.json"
    if not manifest_file.is_file():
        raise ColobenchError(f"--resume {run_dir}: no manifest.json there; nothing to resume")
    manifest = json.loads(manifest_file.read_text())
    before = json.loads(json.dumps(manifest.get("experiment"), default=str))
    now = json.loads(json.dumps(redact(spec.model_dump()), default=str))
    if before != now:
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        raise ColobenchError(f"--resume {run_dir}: the experiment differs from the one that run started "
                             f"(changed: {', '.join(changed)}); use another --out")
    return manifest


def spec_from_run_dir(run_dir: Path) -> ExperimentSpec:
    """The experiment a run directory was started with (for `--resume` without a spec)."""
    manifest_file = Path(run_dir) / "manifest.json"
    if not manifest_file.is_file():
        raise ColobenchError(f"--resume {run_dir}: no manifest.json there; nothing to resume")
    return ExperimentSpec.model_validate(json.loads(manifest_file.read_text())["experiment"])


def run_experiment(spec: ExperimentSpec, out: Path | None = None, progress: Progress | None = None,
                   source: str = "experiment", command: list[str] | None = None,
                   resume: bool = False) -> ExperimentResult:
    """Run every planned run of `spec`; on Ctrl-C stop, summarise what completed, and return with
    `interrupted=True`. With `resume`, runs already completed in `out` are kept and skipped."""
    progress = progress or Progress()
    plan = prepare(spec, source)
    prompt_sets = tokenize_prompts(plan, source)
    probe_endpoints(plan, source)
    with contextlib.ExitStack() as stack:
        launcher = run_local
        if spec.launch.kind == "ray":
            from colobench.launch import ray_launcher

            progress.phase(f"connecting to Ray ({spec.launch.address})")
            ray = stack.enter_context(ray_launcher.ray_session(spec.launch))
            ray_launcher.check_placeable(ray, plan, spec.launch, source)
            launcher = functools.partial(ray_launcher.run_ray, launch=spec.launch)
        return _run_plan(spec, plan, prompt_sets, launcher, out, progress, command, resume)


def _run_plan(spec: ExperimentSpec, plan: ExperimentPlan, prompt_sets: dict[str, list[list[int]]], launcher: Any,
              out: Path | None, progress: Progress, command: list[str] | None, resume: bool) -> ExperimentResult:
    import shutil

    run_dir = Path(out) if out else new_run_dir(spec.name)
    previous = None
    if resume:
        if out is None:
            raise ColobenchError("--resume needs --out: the run directory to resume")
        previous = _check_resumable(run_dir, spec)
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise ColobenchError(f"--out {run_dir}: folder exists and is not empty; choose another or add --resume")
    build_presets(plan, progress)
    run_dir.mkdir(parents=True, exist_ok=True)
    prompt_files = {}
    for key, ids in prompt_sets.items():
        (run_dir / "prompts").mkdir(exist_ok=True)
        (run_dir / "prompts" / f"{key}.json").write_text(json.dumps(ids))
        prompt_files[key] = str((run_dir / "prompts" / f"{key}.json").resolve())
    manifest = {
        "schema": "colobench.manifest/1",
        "colobench_version": __version__,
        "created_unix_s": wall_unix_s(),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
        "experiment": redact(spec.model_dump()),
        "plan": redact(plan.model_dump()),
        "environment": environment(),
        "devices": {},
        "telemetry": {},
    }
    if previous is not None:
        manifest["created_utc"] = previous.get("created_utc")
        manifest["resumed_utc"] = [*previous.get("resumed_utc", []), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())]
        manifest["devices"] = previous.get("devices", {})
    write_json_atomic(run_dir / "manifest.json", manifest)
    interrupted = False
    try:
        idle_power(plan, spec, run_dir, manifest, progress)
        for run in plan.runs:
            rdir = run_dir / "runs" / run.run_id
            if resume and _run_finished(rdir):
                progress.phase(f"{run.run_id}: already completed, skipped")
                continue
            if rdir.exists():
                shutil.rmtree(rdir)  # an unfinished run is redone from scratch
            counts = [_expected_requests(i.workload) for i in run.instances]
            total = None if None in counts else sum(counts) * run.repetitions
            progress.run_started(run.run_id, total)
            files = {i.name: prompt_files[_prompt_key(i.model_path or i.model, i.workload.prompts)]
                     for i in run.instances if i.workload.prompts is not None and (i.model_path or i.endpoint)}

            def on_event(kind: str, name: str, payload: Any, run_id: str = run.run_id) -> None:
                if kind == "loaded" and isinstance(payload, dict) and payload.get("device"):
                    dev = payload["device"]
                    if dev.get("device") not in manifest["devices"]:
                        manifest["devices"][dev["device"]] = dev
                        write_json_atomic(run_dir / "manifest.json", manifest)
                progress.worker_event(run_id, kind, name, payload)

            scrape_metrics(run, rdir, "before")
            state = launcher(run, rdir,
                              on_progress=lambda name, n, rid=run.run_id: progress.requests_done(rid, name, n),
                              on_event=on_event, prompts_files=files, telemetry=spec.telemetry)
            scrape_metrics(run, rdir, "after")
            if state.get("telemetry"):
                manifest["telemetry"][run.run_id] = state["telemetry"]
            if state.get("ray"):  # where each actor ran and its clock offset, with the estimate's error
                manifest.setdefault("ray", {})[run.run_id] = state["ray"]
            write_json_atomic(run_dir / "manifest.json", manifest)
            progress.run_finished(run.run_id, state)
    except (RunInterrupted, KeyboardInterrupt):
        interrupted = True
    summary = summarize(run_dir)
    return ExperimentResult(run_dir, summary, interrupted)


def idle_power(plan: ExperimentPlan, spec: ExperimentSpec, run_dir: Path, manifest: dict[str, Any],
               progress: Progress) -> None:
    """Sample the accelerators for `telemetry.idle_s` before anything runs: the idle power that
    energy per token should be read against."""
    devices = sorted({i.device for i in plan.instances if i.device.startswith(("cuda", "npu"))})
    if not devices or not spec.telemetry.enabled or spec.telemetry.idle_s <= 0:
        return
    from colobench.telemetry import TelemetryRecorder, make_samplers

    progress.phase(f"measuring idle power of {', '.join(devices)} for {spec.telemetry.idle_s:g} s")
    recorder = TelemetryRecorder(make_samplers(devices, dict, spec.telemetry)[1:], run_dir / "idle_telemetry.jsonl")
    manifest["telemetry"]["idle"] = recorder.start()
    time.sleep(spec.telemetry.idle_s)
    recorder.stop()


def _expected_requests(wl: Any) -> int | None:
    """Requests one repetition will send, for the progress bar (None when bounded by time)."""
    if wl.duration_s:
        return round(wl.rate * wl.duration_s) if wl.load_model == "open" else None
    if "max" in (wl.batch_size, wl.concurrency):
        return None  # the worker resolves "max" from device memory and may raise the count
    return wl.requests


def summarize(run_dir: Path | str, write: bool = True) -> dict[str, Any]:
    """Recompute the summary from a run directory's files (and write `summary.json`)."""
    run_dir = Path(run_dir)
    if not (run_dir / "manifest.json").is_file():
        raise ColobenchError(f"{run_dir}: not a colobench run directory (no manifest.json)")
    try:
        summary = summarize_run_dir(run_dir)
    except (KeyError, ValueError, TypeError) as exc:
        raise ColobenchError(f"{run_dir}: cannot read run directory ({exc.__class__.__name__}: {exc})") from None
    summary["run_dir"] = str(run_dir)
    if write:
        write_json_atomic(run_dir / "summary.json", summary)
    return summary


def write_html_report(run_dir: Path | str, summary: dict[str, Any] | None = None) -> Path | None:
    """Write `report.html` into the run directory (None, and nothing written, without plotly)."""
    run_dir = Path(run_dir)
    import importlib.util

    if importlib.util.find_spec("plotly") is None:
        return None
    from colobench.report.html import write_report

    summary = summary if summary is not None else load_summary(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return write_report(run_dir, summary, manifest)


def load_summary(run_dir: Path | str) -> dict[str, Any]:
    """The summary of a run directory, recomputed from its records."""
    return summarize(run_dir, write=False)


def ray_cluster(address: str) -> list[dict[str, Any]]:
    """The nodes of the Ray cluster at `address` and what each offers (CPUs, GPUs, NPUs, labels)."""
    from colobench.launch.ray_launcher import cluster_nodes, ray_session
    from colobench.specs import LaunchSpec

    with ray_session(LaunchSpec(kind="ray", address=address), where="--ray-address") as ray:
        return cluster_nodes(ray)


def list_devices(probe: bool = False) -> dict[str, Any]:
    """The environment check: host, versions, every visible device with its memory and peak
    figures, and (with `probe`) measured copy bandwidth and matmul rate against those peaks."""
    import torch

    from colobench.devices import DeviceUnavailable, check_device, get_device
    from colobench.devices.peaks import lookup

    env = environment()
    versions = dict(env["versions"])
    versions["cuda_runtime"] = torch.version.cuda
    devices = ["cpu"]
    try:
        check_device("cuda:0")
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    except DeviceUnavailable:
        pass
    try:
        check_device("npu:0")
        devices += [f"npu:{i}" for i in range(torch.npu.device_count())]
        import torch_npu

        versions["cann"] = getattr(getattr(torch_npu, "version", None), "cann", None)
    except (DeviceUnavailable, AttributeError, ImportError):
        pass
    try:
        import pynvml

        pynvml.nvmlInit()
        versions["nvidia_driver"] = pynvml.nvmlSystemGetDriverVersion()
    except Exception:
        pass
    rows = []
    for device in devices:
        info = get_device(device).info()
        peak = lookup(info.name) if device != "cpu" else None
        row: dict[str, Any] = {"device": device, "name": info.name, "memory_bytes": info.total_memory_bytes,
                               "driver": info.driver, "extra": info.extra,
                               "peak": peak.__dict__ if peak else None}
        if probe:
            from colobench.devices.probe import probe as run_probe

            measured = run_probe(device)
            if peak:
                measured["copy_pct_of_peak"] = 100 * measured["copy_bandwidth_bytes_s"] / peak.memory_bandwidth_bytes_s
                flops = peak.peak_flops("bfloat16")
                measured["matmul_pct_of_peak"] = 100 * measured["matmul_flops"] / flops if flops else None
            row["probe"] = measured
        rows.append(row)
    return {"host": {k: env[k] for k in ("hostname", "cpu_model", "logical_cores", "memory_bytes", "platform")},
            "versions": versions, "devices": rows}


def profile(spec: ExperimentSpec, out: Path, source: str = "command line") -> dict[str, Any]:
    """Run `colobench profile` for the spec's first instance (see `colobench.profiling`)."""
    from colobench.profiling import run_profile

    plan = prepare(spec, source)
    build_presets(plan, Progress())
    return run_profile(plan, Path(out))


def validity_table(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Every instance-phase's validity verdict, with its point."""
    points = summary.get("points") or [{"id": "", "phases": summary.get("phases", {})}]
    return [{"point": p["id"], "phase": phase, "instance": name, "validity": mt.get("validity")}
            for p in points for phase, by_name in (p.get("phases") or {}).items() for name, mt in by_name.items()]


def dump_json_line(summary: dict[str, Any]) -> str:
    return json.dumps(summary, separators=(",", ":"), default=str)
