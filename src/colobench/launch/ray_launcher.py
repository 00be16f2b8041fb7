"""Ray launcher: the instances of a group of runs as Ray actors across the devices and nodes of a cluster.

Same experiment, same run directory, same analysis as the local launcher; what changes is
where workers live. Each instance becomes an `InstanceWorker` actor placed by resource
requests (see `RayPlacement`: GPUs, a custom `NPU` resource, CPUs, node labels or a node id).
The life of one group of runs (see `plan.RunGroup` and `launch.state`):

1. create the actors and wait until Ray has placed them (or give up after the load timeout);
2. estimate each actor's clock offset to the driver from `clock_sync_rounds` round trips
   (NTP's rule: the sample with the smallest round trip, offset = remote - midpoint, error
   bound = half that round trip). An actor on the driver's kernel (its node, or another Ray
   node on the same machine: same boot id) shares its CLOCK_MONOTONIC, so its offset is exactly
   0 and the estimate is kept only as a check;
3. start one telemetry sampler actor per node, then start the workers: they load and warm up
   and report `ready` for window 0;
4. when every live worker is ready for a window, the driver picks a start time `start_lead_s`
   ahead on its clock and sends each worker that time on the worker's own clock: all start
   together to within the clock error, not within the spread of message delivery; when every
   partner of a co-located window has finished its quota, the driver tells them to stop filling;
5. poll every worker: messages go to `GroupState`, new record / GC / log lines are moved onto the
   driver's timeline and appended to the run directory as they arrive, so an actor or node
   that dies loses at most its last poll interval;
6. after the last window, estimate the offsets again (drift over the run) and write them,
   with their error, into `run.json` and the manifest (`ray.actors.<worker>.clock`).

Nothing here runs unless Ray is installed (`pip install 'colobench[ray]'`) and asked for.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import colobench
import orjson
from colobench.clock import monotonic_s, now_ns
from colobench.devices import is_accelerator, kind_of
from colobench.errors import ColobenchError
from colobench.launch.local import DEFAULT_LOAD_TIMEOUT_S, RunInterrupted, stop_reason, window_payload, worker_parts
from colobench.launch.ray_actors import InstanceWorker, NodeSampler, boot_id, physical_device, shift_lines, shift_ns
from colobench.launch.state import GroupState
from colobench.launch.worker import worker_env
from colobench.plan import ExperimentPlan, ResolvedInstance, RunGroup
from colobench.rundir import LINE_FOLDERS, RunDir, RunState
from colobench.rundir.paths import LOGS
from colobench.specs import LaunchSpec, RayPlacement

POLL_S = 0.1
TELEMETRY_POLL_S = 1.0
ACTOR_THREADS = 4  # the worker's own thread aside: polls, clock pings and start times arrive meanwhile


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ColobenchError("launch.kind ray needs Ray, which is not installed: pip install 'colobench[ray]'") from None
    return ray


@contextlib.contextmanager
def ray_session(launch: LaunchSpec, where: str = "launch.address") -> Iterator[Any]:
    """Connect to the cluster at `launch.address` (or start a private one for `local`); an
    already initialised Ray (a notebook, a test) is used as it is and left running."""
    ray = _import_ray()
    if ray.is_initialized():
        if launch.ship_source:
            raise ColobenchError("launch.ship_source: Ray is already initialised in this process; pass runtime_env="
                                 "{'py_modules': [...]} to your own ray.init instead")
        yield ray
        return
    kwargs: dict[str, Any] = {"namespace": launch.namespace, "log_to_driver": False, "logging_level": logging.ERROR}
    if launch.ship_source:  # Ray uploads local packages only for the whole job
        kwargs["runtime_env"] = {"py_modules": [str(Path(colobench.__file__).parent)]}
    address = launch.address or running_cluster(ray)
    if address == "local":
        # Ray starts workers at nice 15 by default (its daemons first); a measurement must not be
        # the lowest-priority process on the host
        os.environ.setdefault("RAY_worker_niceness", "0")
        kwargs.update(num_cpus=launch.num_cpus, include_dashboard=False,
                      object_store_memory=launch.object_store_mb * 2**20 if launch.object_store_mb else None)
        if launch.temp_dir:
            Path(launch.temp_dir).expanduser().mkdir(parents=True, exist_ok=True)
            kwargs["_temp_dir"] = str(Path(launch.temp_dir).expanduser().resolve())
    else:
        _probe(address, where)
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        hint = ("; start one with `ray start --head`, or use the address `local` (a private one-node Ray)"
                if address != "local" else "")
        raise ColobenchError(f"{where} {address}: cannot start or reach Ray ({first}){hint}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def running_cluster(ray: Any) -> str:
    """What `ray.init()` without an address would join: `RAY_ADDRESS`, else the cluster `ray start`
    recorded on this host, if it still answers; `local` (start a private one) otherwise."""
    try:
        from ray._private.services import canonicalize_bootstrap_address  # what ray.init() itself calls

        found = canonicalize_bootstrap_address(None)
    except Exception:  # no cluster recorded (Ray raises), or this Ray version moved the helper
        return "local"
    if not found:
        return "local"
    try:
        _probe(found)
    except ColobenchError:  # a stale record of a cluster that has stopped
        return "local"
    return found


def _probe(address: str, where: str = "launch.address") -> None:
    """Fail in seconds on an address where nothing listens: Ray itself retries for minutes."""
    match = re.match(r"^(?:ray://)?\[?([^\]/]+?)\]?:(\d+)/?$", address)
    if not match:
        return
    try:
        socket.create_connection((match.group(1), int(match.group(2))), timeout=3).close()
    except OSError as exc:
        raise ColobenchError(f"{where} {address}: nothing answers there ({exc.strerror or exc}); start a "
                             "cluster with `ray start --head`, or use the address `local` (a private one-node Ray)"
                             ) from None


def cluster_nodes(ray: Any) -> list[dict[str, Any]]:
    """What each node of the cluster offers, for `colobench devices --ray-address`."""
    out = []
    for n in ray.nodes():
        res = n.get("Resources") or {}
        out.append({"node_id": n.get("NodeID"), "ip": n.get("NodeManagerAddress"),
                    "hostname": n.get("NodeManagerHostname"), "alive": bool(n.get("Alive")),
                    "resources": {k: v for k, v in sorted(res.items())
                                  if not k.startswith(("node:", "object_store_memory", "memory"))},
                    "memory_bytes": res.get("memory"),
                    "labels": {k: v for k, v in (n.get("Labels") or {}).items() if k != "ray.io/node-id"}})
    return out


def actor_options(inst: ResolvedInstance, launch: LaunchSpec) -> dict[str, Any]:
    """Ray options for an instance's actor: its resource request, node constraint and environment."""
    p = inst.ray or RayPlacement()
    resource = kind_of(inst.device).ray_resource
    resources = dict(p.resources)
    if resource and resource != "GPU" and resource not in resources:  # custom resources: NPU
        resources[resource] = inst.memory_share
    runtime_env: dict[str, Any] = {"env_vars": worker_env(inst.model_dump())}  # before torch loads
    # a load-generator process (HTTP instance) is one asyncio loop: one core each
    cpus = p.num_cpus if p.num_cpus is not None else (1 if inst.backend == "openai" else inst.cpu_threads)
    opts: dict[str, Any] = {"num_cpus": cpus,
                            "max_concurrency": ACTOR_THREADS, "runtime_env": runtime_env}
    if p.num_gpus is not None:
        opts["num_gpus"] = p.num_gpus
    elif resource == "GPU":
        opts["num_gpus"] = inst.memory_share  # fractions pack co-located instances onto one card
    if resources:
        opts["resources"] = resources
    if p.node_labels:
        opts["label_selector"] = dict(p.node_labels)
    if p.node_id:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # Ray: imported only when used

        opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(p.node_id, soft=False)
    return opts


def _request(opts: dict[str, Any]) -> dict[str, float]:
    req = {"CPU": opts.get("num_cpus") or 0, "GPU": opts.get("num_gpus") or 0, **opts.get("resources", {})}
    return {k: float(v) for k, v in req.items() if v}


def check_placeable(ray: Any, plan: ExperimentPlan, launch: LaunchSpec, source: str) -> None:
    """Every instance's request fits on at least one live node (else Ray would wait forever)."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    offers = "; ".join(", ".join(f"{k} {v:g}" for k, v in sorted(n.get("Resources", {}).items())
                                 if not k.startswith(("node:", "memory", "object_store"))) for n in nodes)
    for point in plan.points:
        for k, inst in enumerate(point.instances):
            opts = actor_options(inst, launch)
            req = _request(opts)
            labels = opts.get("label_selector", {})
            node_id = inst.ray.node_id if inst.ray else None
            fits = [n for n in nodes if all(n.get("Resources", {}).get(r, 0) >= v for r, v in req.items())
                    and all((n.get("Labels") or {}).get(key) == val for key, val in labels.items())
                    and node_id in (None, n.get("NodeID"))]
            if not fits:
                want = ", ".join(f"{r} {v:g}" for r, v in req.items())
                extra = (f" on a node labelled {labels}" if labels else "") + (f" on node {node_id}" if node_id else "")
                raise ColobenchError(f"{source}: instances[{k}] ({inst.name}) asks Ray for {want}{extra}; no node of "
                                     f"the cluster offers that (nodes: {offers or 'none'})")
    total: dict[str, float] = {}
    for n in nodes:
        for r, v in (n.get("Resources") or {}).items():
            total[r] = total.get(r, 0.0) + v
    for group in plan.groups:  # the actors of one group live at the same time
        asked: dict[str, float] = {}
        for key, (inst, _) in worker_parts(group).items():
            for r, v in _request(actor_options(inst, launch)).items():
                asked[r] = asked.get(r, 0.0) + v
        short = {r: v for r, v in asked.items() if v > total.get(r, 0.0) + 1e-9}
        if short:
            want = ", ".join(f"{r} {v:g} (the cluster has {total.get(r, 0):g})" for r, v in short.items())
            what = (f"run {group.runs[0].run_id}" if len(group.runs) == 1 else
                    f"runs {', '.join(r.run_id for r in group.runs)} (one set of actors, interleaved)")
            raise ColobenchError(f"{source}: {what} ask Ray for {want} at once; set instances' ray.num_cpus "
                                 "/ cpu_threads lower or add nodes")


def estimate_offset(ray: Any, actor: Any, rounds: int) -> dict[str, Any]:
    """The actor's clock minus the driver's, from the round trip with the smallest delay."""
    samples = []
    for _ in range(rounds):
        t0 = now_ns()
        remote = ray.get(actor.clock_ns.remote())
        t1 = now_ns()
        samples.append((t1 - t0, remote - (t0 + t1) // 2))
    rtt, offset = min(samples)
    return {"offset_ns": offset, "error_ns": rtt // 2 + 1, "rtt_min_ns": rtt,
            "rtt_median_ns": int(statistics.median(s[0] for s in samples)), "rounds": rounds}


def death_reason(exc: BaseException) -> str:
    """One line from Ray's actor-death error: the exit detail, without the troubleshooting essay."""
    text = str(exc)
    for marker in ("Worker exit detail:", "The actor is dead because", "node"):
        if marker in text:
            tail = text[text.index(marker):].removeprefix("Worker exit detail:").strip()
            tail = tail.split(" Some common causes")[0].splitlines()[0].strip()
            return f"actor died: {tail}"
    return f"actor died: {(text.strip().splitlines() or [type(exc).__name__])[0]}"


def _append_files(run_dir: RunDir, files: dict[str, bytes], offset_ns: int) -> None:
    """Streamed lines into the runs' folders (paths relative to the run directory, as the actor
    wrote them), records and GC pauses moved onto the driver's clock; whole files (quality probes)
    written as they are."""
    for rel, data in files.items():
        path = run_dir.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent.name in LINE_FOLDERS:
            with open(path, "ab") as f:
                f.write(data if path.parent.name == LOGS else shift_lines(data, -offset_ns))
        else:
            path.write_bytes(data)


def run_ray(group: RunGroup, run_dir: RunDir, launch: LaunchSpec, on_progress: Callable[[str, int], None] | None = None,
            on_event: Callable[[str, str, Any], None] | None = None, load_timeout_s: float = DEFAULT_LOAD_TIMEOUT_S,
            prompts_files: dict[str, str] | None = None, telemetry: Any = None,
            reference: Any = None) -> dict[str, RunState]:
    """Run a group's windows as Ray actors; return each run's state (also in its run.json)."""
    ray = _import_ray()
    from ray.exceptions import GetTimeoutError, RayActorError  # Ray: imported only when used

    parts = worker_parts(group)
    names = list(parts)
    rs = GroupState(group, run_dir, {k: i.key for k, (i, _) in parts.items()}, "ray", on_progress, on_event,
                    reference)
    workers = rs.workers
    try:
        driver_node = ray.get_runtime_context().get_node_id()
    except Exception:  # a Ray client driver is on no node
        driver_node = None
    info: dict[str, Any] = {"driver_node_id": driver_node, "actors": {}, "samplers": {}}
    rs.extra["ray"] = info
    windows = window_payload(group)

    Worker = ray.remote(InstanceWorker)
    actors: dict[str, Any] = {}
    for key, (inst, part) in parts.items():
        prompts = json.loads(Path(prompts_files[inst.key]).read_text()) if (prompts_files or {}).get(inst.key) else None
        actors[key] = Worker.options(**actor_options(inst, launch)).remote(inst.model_dump(), windows, prompts, part)
    samplers: dict[str, Any] = {}
    offsets: dict[str, int] = {}
    telemetry_path = run_dir.group_telemetry([r.run_id for r in group.runs])

    def kill(actor: Any) -> None:
        with contextlib.suppress(Exception):
            ray.kill(actor, no_restart=True)

    def lost(key: str, reason: str) -> None:
        rs.ended(key, reason)
        kill(actors[key])

    try:
        # 1. placement
        refs = {key: a.where.remote() for key, a in actors.items()}
        deadline = monotonic_s() + load_timeout_s
        for key, ref in refs.items():
            try:
                place = ray.get(ref, timeout=max(1.0, deadline - monotonic_s()))
            except GetTimeoutError:
                want = _request(actor_options(parts[key][0], launch))
                lost(key, f"not placed within {load_timeout_s:.0f} s (the cluster has no free {want})")
                continue
            except RayActorError as exc:
                rs.ended(key, death_reason(exc))
                continue
            workers[key]["pid"] = place["pid"]
            info["actors"][key] = dict(place)
        placed = [k for k in names if k in info["actors"]]
        labels = _node_labels([info["actors"][k] for k in placed])
        # 2. clocks, and the card each actor got
        for key in placed:
            place = info["actors"][key]
            try:
                place["clock"] = _clock(ray, actors[key], place, driver_node, launch.clock_sync_rounds)
            except RayActorError as exc:
                lost(key, death_reason(exc))
                continue
            offsets[key] = place["clock"]["applied_offset_ns"]
            place["node"] = labels[place["node_id"]].lstrip("@") or None
            device = parts[key][0].device
            place["device"] = physical_device(device, place["accelerators"]) + labels[place["node_id"]]
        for run in rs.runs.values():  # the card each instance really used, by the node's own numbering
            for inst in run["instances"]:
                used = {info["actors"][k]["device"] for k in placed if parts[k][0].key == (inst.get("member") or inst["name"])}
                if len(used) == 1 and used != {inst["device"]}:
                    inst["planned_device"], inst["device"] = inst["device"], used.pop()
        rs.extra["warnings"] = sorted({w for run in rs.runs.values() for w in _split_colocation(run["instances"])})
        rs.write()
        # 3. telemetry, one sampler per node
        if telemetry is not None and telemetry.enabled and placed:
            samplers = _start_samplers(ray, {k: (parts[k][0], info["actors"][k]) for k in rs.live()}, labels,
                                       driver_node, telemetry, launch, info["samplers"])
            rs.extra["telemetry"] = {f"{name}{v['suffix']}": status for v in info["samplers"].values()
                                     for name, status in (v.get("status") or {}).items()}
        for key in placed:
            if workers[key]["status"] == "starting":
                actors[key].start.remote()
        rs.write()

        # 4-5. barriers and streaming
        next_window, stopped = 0, set()
        started = monotonic_s()
        pending: dict[str, Any] = {}
        last_telemetry = 0.0
        while rs.live():
            tick = monotonic_s()
            for key in rs.live():
                if key not in pending:
                    pending[key] = actors[key].poll.remote()
            ready, _ = ray.wait(list(pending.values()), num_returns=len(pending), timeout=POLL_S)
            time.sleep(max(0.0, POLL_S - (monotonic_s() - tick)))  # a poll per actor per tick, not a busy loop
            ready_set = set(ready)
            for key, ref in list(pending.items()):
                if ref not in ready_set:
                    continue
                del pending[key]
                try:
                    out = ray.get(ref)
                except RayActorError as exc:
                    rs.ended(key, death_reason(exc))  # what it sent before is already on disk
                    continue
                _append_files(run_dir, out["files"], offsets.get(key, 0))
                for kind, name, payload in out["msgs"]:
                    if kind == "loaded" and isinstance(payload, dict) and isinstance(payload.get("device"), dict):
                        payload["device"]["device"] = info["actors"][key]["device"]
                        payload["ray"] = {k: info["actors"][key][k] for k in ("node_id", "ip", "accelerators")}
                        if payload.get("nice"):
                            rs.extra["warnings"].append(
                                f"{key} ran at nice {payload['nice']} (Ray's worker_niceness): other processes on "
                                "its node had priority; start the cluster with RAY_worker_niceness=0")
                    rs.handle(kind, name, payload)
                if workers[key]["status"] == "completed":
                    _final_clock(ray, actors[key], info["actors"][key], launch)
                    with contextlib.suppress(Exception):
                        ray.get(actors[key].cleanup.remote(), timeout=10)
                elif out["finished"] and workers[key]["status"] in ("starting", "loaded", "running"):
                    lost(key, "worker stopped without finishing")
            for key in rs.live():
                if workers[key]["status"] == "starting" and monotonic_s() - started > load_timeout_s:
                    lost(key, f"did not load within {load_timeout_s:.0f} s")
            for w in range(next_window):  # a co-located window's filler stops when every partner is done
                if w not in stopped and rs.co_located(w) and rs.quota_complete(w):
                    for key in rs.live():
                        actors[key].stop.remote(w)
                    stopped.add(w)
            while next_window < len(windows) and rs.barrier_complete(next_window):
                rs.opening(next_window)  # the endpoints' counters, read before the go (outside the window)
                t_go = now_ns() + int(launch.start_lead_s * 1e9)
                for key in rs.live():
                    actors[key].go_at.remote(next_window, t_go + offsets.get(key, 0))
                rs.started(next_window, t_go)
                next_window += 1
            if samplers and monotonic_s() - last_telemetry > TELEMETRY_POLL_S:
                last_telemetry = monotonic_s()
                _poll_samplers(ray, samplers, info, telemetry_path, final=False)
    except KeyboardInterrupt as exc:
        _poll_samplers(ray, samplers, info, telemetry_path, final=True)
        _clean_and_kill(ray, [*actors.values(), *samplers.values()], kill)
        rs.interrupted({}, stop_reason(exc))
        raise RunInterrupted() from None
    # 6. telemetry's last lines, then the actors go (their resources are free for the next run)
    _poll_samplers(ray, samplers, info, telemetry_path, final=True)
    _clean_and_kill(ray, [*actors.values(), *samplers.values()], kill)
    return rs.finish()


def _clean_and_kill(ray: Any, handles: list[Any], kill: Callable[[Any], None]) -> None:
    """Each actor removes its node-local temporary folder (a killed actor runs no destructor, and
    the folders piled up under /tmp), then goes. A dead actor is skipped within the timeout."""
    with contextlib.suppress(Exception):
        refs = [a.cleanup.remote() for a in handles]
        ray.wait(refs, num_returns=len(refs), timeout=10)  # unlike get, a dead actor's error does not end the wait
    for a in handles:
        kill(a)


def _split_colocation(instances: list[dict[str, Any]]) -> list[str]:
    """Instances planned on one card that Ray placed on different cards: not co-located at all."""
    planned: dict[str, set[str]] = {}
    for inst in instances:
        if is_accelerator(inst["device"]):
            planned.setdefault(inst.get("planned_device", inst["device"]), set()).add(inst["device"])
    return [f"instances planned to share {dev} were placed on {', '.join(sorted(used))}: ask for fractions that "
            "add up to one card (ray.num_gpus) or pin them to one node" for dev, used in planned.items() if len(used) > 1]


def _same_clock(place: dict[str, Any], driver_node: str | None) -> bool:
    return place["node_id"] == driver_node or (place.get("boot_id") is not None and place["boot_id"] == boot_id())


def _apply(est: dict[str, Any], same_clock: bool) -> dict[str, Any]:
    """Which offset the records get: 0 on the driver's own kernel clock, else the estimate."""
    est["applied_offset_ns"] = 0 if same_clock else est["offset_ns"]
    est["method"] = ("same kernel as the driver: one CLOCK_MONOTONIC, offset 0 exactly" if same_clock
                     else "round trips, smallest delay (NTP rule)")
    return est


def _node_labels(places: list[dict[str, Any]]) -> dict[str, str]:
    """Node id -> suffix for device names (`cuda:0@10.0.0.2`): empty when every actor is on one
    node, so a one-node run's telemetry reads exactly like a local run's; the node id's start
    where several nodes share an address (nodes started on one host)."""
    nodes = {p["node_id"]: p["ip"] for p in places}
    if len(nodes) <= 1:
        return {n: "" for n in nodes}
    ips = list(nodes.values())
    return {n: f"@{ip}" if ips.count(ip) == 1 else f"@{n[:8]}" for n, ip in nodes.items()}


def _clock(ray: Any, actor: Any, place: dict[str, Any], driver_node: str | None, rounds: int) -> dict[str, Any]:
    est = _apply(estimate_offset(ray, actor, rounds), _same_clock(place, driver_node) and not place["skew_ns"])
    if place["skew_ns"]:
        est["simulated_skew_ns"] = place["skew_ns"]
    return est


def _start_samplers(ray: Any, placed: dict[str, tuple[ResolvedInstance, dict[str, Any]]], labels: dict[str, str],
                    driver_node: str | None, telemetry: Any, launch: LaunchSpec, meta: dict[str, Any]) -> dict[str, Any]:
    """One `NodeSampler` per node that runs workers: its cards and its workers' processes."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # Ray: imported only when used

    Sampler = ray.remote(NodeSampler)
    by_node: dict[str, list[str]] = {}
    for key, (_, place) in placed.items():
        by_node.setdefault(place["node_id"], []).append(key)
    samplers = {}
    for node, keys in by_node.items():
        devices = sorted({physical_device(placed[k][0].device, placed[k][1]["accelerators"]) for k in keys})
        pids = {k: placed[k][1]["pid"] for k in keys}
        s = Sampler.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
                            ).remote(devices, pids, telemetry.model_dump())
        meta[node] = {"suffix": labels[node], "devices": devices}
        try:
            meta[node]["clock"] = _apply(estimate_offset(ray, s, launch.clock_sync_rounds),
                                         _same_clock(ray.get(s.where.remote()), driver_node))
            meta[node]["status"] = ray.get(s.start.remote())
        except Exception as exc:  # no telemetry from this node; the run goes on
            meta[node]["error"] = death_reason(exc)
            continue
        samplers[node] = s
    return samplers


def _final_clock(ray: Any, actor: Any, place: dict[str, Any], launch: LaunchSpec) -> None:
    """Estimate the offset again after the run: the drift says how far the start estimate held."""
    try:
        end = estimate_offset(ray, actor, launch.clock_sync_rounds)
    except Exception:
        return
    clock = place["clock"]
    clock["end_offset_ns"], clock["end_error_ns"] = end["offset_ns"], end["error_ns"]
    clock["drift_ns"] = end["offset_ns"] - clock["offset_ns"]


def _poll_samplers(ray: Any, samplers: dict[str, Any], info: dict[str, Any], path: Path, final: bool) -> None:
    for node, s in samplers.items():
        meta = info["samplers"][node]
        try:
            if final:
                out = ray.get(s.stop.remote(), timeout=30)
                data = out["lines"]
            else:
                data = ray.get(s.poll.remote(), timeout=30)
        except Exception as exc:  # a dead node's sampler: what came before is kept
            meta["error"] = death_reason(exc)
            continue
        if not data:
            continue
        offset, suffix = meta["clock"]["applied_offset_ns"], meta["suffix"]
        if offset or suffix:  # a one-node run's samples are written as they came
            rows = []
            for line in data.splitlines():
                if line.strip():
                    row = shift_ns(orjson.loads(line), -offset)
                    row["device"] += suffix
                    rows.append(orjson.dumps(row) + b"\n")
            data = b"".join(rows)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            f.write(data)
