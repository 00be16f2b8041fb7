"""Managed servers: the serving stacks (vLLM, SGLang, MindIE, llama.cpp, `transformers serve`,
`colobench fake-server`) colobench starts, watches and stops itself.

An endpoint instance that names `server: NAME` talks to a server started from the experiment's
`servers:` (`colobench.specs.servers`). Before a group of runs (`plan.RunGroup`) starts its
workers, `ServerPool.up` starts the servers its instances use (an interleaved group's solo and
co-located windows need all of them), waits until they answer, and hands back the group with each
instance's `base_url` and `server_pid` filled in. `ServerPool.down` stops them after the group,
or, with `keep_servers: true`, keeps them for the next group; `ServerPool.close` stops whatever
is left and runs on every way out (the end, a failure, Ctrl-C, SIGTERM, SIGHUP).

One server's life (`ManagedServer`):

- **start**: its command with `{port}` replaced by a free port on 127.0.0.1 (or its fixed
  `port`), in a session and process group of its own (a terminal's Ctrl-C reaches colobench,
  which then stops the server in order), with `device`'s visible-devices variable and its `env`,
  pinned to `cpu_affinity` before the program runs (its children inherit the mask), and on Linux
  sent SIGTERM by the kernel if colobench itself dies (kill -9). Its stdout and stderr, secrets
  scrubbed, go to `runs/<first run that uses it>/logs/server-<name>.log`, where the log scanner
  reads them as the log of the instance that uses it.
- **ready**: GET `http://127.0.0.1:<port><ready_path>` answers 200 (or 401 / 403: it is up and
  wants a key, which the endpoint probe then checks). A timeout or an exit first
  is one line (`ServerFailed`: the server, why, the last lines of its log) and the server is
  stopped.
- **pinned again** once ready: engines start worker processes and threads late, and some set their
  own affinity, so every thread of every process of the tree is pinned again and the mask read back.
- **stop**: SIGTERM to its process group, `STOP_GRACE_S` to finish, then SIGKILL to the group and
  to every process of its tree (a child that left the group too).

A server that dies while its group runs is not an error of colobench: its instances' requests
fail and are recorded as failed, the workers' circuit breaker ends them, and the death (exit
code, last log lines) is kept in the manifest's `servers` and shown among the summary's problems;
the experiment carries on, and the next group that needs the server starts it again.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import http.client
import os
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import uuid
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil

from colobench.clock import monotonic_s
from colobench.devices import DeviceUnavailable, check_device, visible_devices
from colobench.devices.cpu import allowed_cores, core_ranges
from colobench.errors import ColobenchError, SpecError, os_reason
from colobench.plan import ExperimentPlan, ResolvedInstance, RunGroup
from colobench.rundir import SERVER_STOP_MARK, RunDir
from colobench.secrets import register_command, register_env, scrub, scrub_data
from colobench.specs import ExperimentSpec, experiment_from_dict
from colobench.specs.servers import PORT, ServerSpec
from colobench.sweep import all_servers

STOP_GRACE_S = 10.0  # SIGTERM, then this long to shut down cleanly, then SIGKILL
KILL_WAIT_S = 5.0
POLL_S = 0.25  # readiness polls
READY_STATUS = (200, 401, 403)  # 401 / 403: up, and asking for a key (vLLM --api-key); the probe checks the key
TAIL_LINES = 3  # log lines quoted in an error or a problem
TAIL_CHARS = 160
PR_SET_PDEATHSIG = 1
TAG_ENV = "COLOBENCH_SERVER_TAG"  # in a managed server's environment: finds every process it started


class ServerFailed(ColobenchError):
    """A managed server could not be started or did not become ready; the message names it, says
    why and quotes the end of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:`port` (a port left in TIME_WAIT counts as free)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def exit_text(code: int | None) -> str:
    """`code 1`, `signal 9 (SIGKILL)`: how a server ended, from its return code."""
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return f"signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


def register_secrets(servers: list[ServerSpec]) -> None:
    """Register the secret values in servers' commands and environments (`--api-key X`,
    `--token=X`, `HF_TOKEN: X`, a shell string holding them), so the manifest, the logs and every
    message show `***` (see `colobench.secrets`)."""
    for spec in servers:
        register_env(spec.env, spec.secret_env)
        register_command(spec.full_command())


def _prctl() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # not Linux: no parent-death signal


def _child_setup(cores: list[int] | None) -> Callable[[], None]:
    """What runs in the server's process between fork and exec: ask the kernel for SIGTERM when
    colobench's starting thread dies (kill -9 of colobench leaves no server), and pin the cores
    every later child inherits. Everything it needs is looked up before the fork."""
    prctl, parent = _prctl(), os.getpid()
    setaffinity = getattr(os, "sched_setaffinity", None)

    def setup() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # colobench died before the request took effect
            os._exit(1)
        if cores and setaffinity is not None:
            try:
                setaffinity(0, cores)
            except OSError:
                pass  # pin() says what the server really got
    return setup


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return False
    except ProcessLookupError:
        return True
    except PermissionError:
        return False


class ManagedServer:
    """One serving process: start, wait until ready, pin, watch, stop. `pid` is the command's own
    process (the leader of its process group, whose tree the telemetry samples)."""

    def __init__(self, spec: ServerSpec, log_path: Path, port: int | None = None):
        self.spec, self.name, self.log_path = spec, spec.name, Path(log_path)
        self.port = port or spec.port or free_port()
        self.command = [part.replace(PORT, str(self.port)) for part in spec.full_command()]
        self.proc: subprocess.Popen | None = None
        self.ready_s: float | None = None
        self.pinned: list[int] | None = None  # the leader's cores, read back
        self.stopped = False  # colobench stopped it (it did not exit by itself)
        self.tag = f"{os.getpid()}-{self.name}-{uuid.uuid4().hex[:12]}"  # see TAG_ENV
        self._started = 0.0
        self._tail: collections.deque[str] = collections.deque(maxlen=50)
        self._log: Any = None
        self._pump: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def exit_code(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def environment(self) -> dict[str, str]:
        """colobench's environment, the device's visible-devices variable, then the spec's `env`,
        and this start's tag (`TAG_ENV`): every process the server starts inherits it."""
        env = dict(os.environ)
        env[TAG_ENV] = self.tag
        if self.spec.device:
            env.update(visible_devices(self.spec.device))
        env.update(self.spec.env)
        return env

    def start(self) -> None:
        """Start the command in its own process group, its output copied (scrubbed) to the log."""
        if self.spec.port is not None and not port_free(self.port):  # else readiness would ask someone else
            raise ServerFailed(f"server {self.name}: port {self.port} on 127.0.0.1 is in use by another process")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self._write(f"[colobench] server {self.name} on port {self.port}: "
                    f"{' '.join(shlex.quote(p) for p in self.command)}\n")
        try:
            self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, env=self.environment(), start_new_session=True,
                                         preexec_fn=_child_setup(self.spec.cpu_affinity))
        except (OSError, subprocess.SubprocessError) as exc:
            self._close_log()
            reason = os_reason(exc) if isinstance(exc, OSError) else str(exc)
            raise ServerFailed(scrub(f"server {self.name}: cannot start {self.command[0]!r} ({reason})")) from None
        self._started = monotonic_s()
        self._pump = threading.Thread(target=self._copy_output, name=f"colobench-server-{self.name}", daemon=True)
        self._pump.start()
        self.pin()

    def _write(self, text: str) -> None:
        try:
            self._log.write(scrub(text).encode("utf-8", "replace"))
            self._log.flush()
        except (OSError, ValueError, AttributeError):
            pass  # a full disk or a closed log: the server keeps running, its tail is kept in memory

    def _copy_output(self) -> None:
        for raw in iter(self.proc.stdout.readline, b""):
            text = raw.decode("utf-8", "replace")
            self._write(text)
            line = text.rstrip("\r\n").split("\r")[-1].strip()  # a progress bar's last state
            if line:
                self._tail.append(scrub(line))

    def log_tail(self, lines: int = TAIL_LINES, wait: bool = True) -> str:
        """The last non-empty lines of its output, each shortened, as one line (`wait`: after what
        it printed before exiting has been read)."""
        if self._pump is not None and wait:
            self._pump.join(2.0)
        tail = list(self._tail)[-lines:]
        return " | ".join(t if len(t) <= TAIL_CHARS else t[:TAIL_CHARS - 3] + "..." for t in tail) or "(empty)"

    def wait_ready(self) -> float:
        """Poll GET `ready_path` until it answers 200 (or 401 / 403); return seconds from start. On a
        timeout or an exit first, stop it and raise `ServerFailed`."""
        url = f"http://127.0.0.1:{self.port}{self.spec.ready_path}"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1: never a proxy
        deadline = self._started + self.spec.ready_timeout_s
        last = "no answer"
        while True:
            if not self.alive():
                self._fail(f"exited with {exit_text(self.exit_code)} before it was ready")
            try:
                with opener.open(url, timeout=max(0.5, min(5.0, deadline - monotonic_s()))) as resp:
                    status = resp.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except (OSError, http.client.HTTPException) as exc:
                status, last = None, str(getattr(exc, "reason", None) or exc.__class__.__name__)
            if status in READY_STATUS and self.alive():  # not alive: another process answered on its port
                break
            if status is not None:
                last = f"HTTP {status}"
            if monotonic_s() >= deadline:
                self._fail(f"not ready after {self.spec.ready_timeout_s:g} s (GET {self.spec.ready_path}: {last})")
            time.sleep(POLL_S)
        self.ready_s = monotonic_s() - self._started
        self.pin()
        return self.ready_s

    def _fail(self, reason: str) -> None:
        """Stop it and raise. A server still running (a ready timeout) is quoted from before
        colobench stopped it: what it says after a SIGTERM is the signal's traceback, not why it
        was slow."""
        running = self.alive()
        if running:
            time.sleep(POLL_S)  # the output pump catches up with what was printed last
        before = self.log_tail(wait=not running)
        self.stop()
        said = "last log lines before colobench stopped it" if running else "last log lines"
        raise ServerFailed(scrub(f"server {self.name}: {reason}; {said}: {before} (log: {self.log_path})"))

    def pin(self) -> list[int] | None:
        """Pin every thread of every process of its tree to `cpu_affinity`; return the leader's
        cores as the kernel reports them (None when not pinned, or where that is not supported)."""
        cores = self.spec.cpu_affinity
        setaffinity = getattr(os, "sched_setaffinity", None)
        if not cores or self.proc is None or setaffinity is None:
            return None
        try:
            root = psutil.Process(self.proc.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return self.pinned
        for proc in tree:
            try:
                for thread in proc.threads():
                    setaffinity(thread.id, cores)
            except (psutil.Error, OSError):
                continue  # gone meanwhile
        try:
            self.pinned = sorted(os.sched_getaffinity(root.pid))
        except OSError:
            pass
        return self.pinned

    def _tree(self) -> list[psutil.Process]:
        """The server's processes: its tree, and every process that carries its tag in its
        environment (`TAG_ENV`), which finds a grandchild that left the tree (a daemon that forked
        twice and called setsid is reparented to init, outside the server's group and session)."""
        procs: dict[int, psutil.Process] = {}
        try:
            root = psutil.Process(self.proc.pid)
            procs = {p.pid: p for p in [root, *root.children(recursive=True)]}
        except psutil.Error:
            pass
        for proc in psutil.process_iter():
            if proc.pid in procs or proc.pid == os.getpid():
                continue
            try:
                if proc.environ().get(TAG_ENV) == self.tag:
                    procs[proc.pid] = proc
            except (psutil.Error, OSError):
                continue  # gone, a zombie, or another user's
        return list(procs.values())

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM to its process group, `grace_s` to exit, then SIGKILL to the group and its tree;
        return its exit code. A signal to colobench meanwhile cuts the grace short (SIGKILL now)."""
        if self.proc is None:
            return None
        try:
            if self.proc.poll() is None:
                self.stopped = True
                self._write(f"{SERVER_STOP_MARK} {self.name} (SIGTERM): what follows is its shutdown\n")
            self._terminate(grace_s)
        except KeyboardInterrupt:
            self._kill(self._tree())
            raise
        finally:
            self._close_log()
        return self.proc.returncode

    def _terminate(self, grace_s: float) -> None:
        pgid, tree = self.proc.pid, self._tree()
        _signal_group(pgid, signal.SIGTERM)
        deadline = monotonic_s() + grace_s
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        for proc in tree:  # the ones outside its group (a daemon in its own session) get the SIGTERM too
            try:
                if os.getpgid(proc.pid) != pgid:
                    proc.terminate()
            except (psutil.Error, OSError):
                pass
        _, left = psutil.wait_procs(tree, timeout=max(0.0, deadline - monotonic_s()))
        if self.proc.poll() is None or left or not _group_gone(pgid):
            self._kill([*tree, *left])

    def _kill(self, tree: list[psutil.Process]) -> None:
        _signal_group(self.proc.pid, signal.SIGKILL)
        for proc in tree:  # a child that made its own process group
            try:
                proc.kill()
            except psutil.Error:
                pass
        try:
            self.proc.wait(timeout=KILL_WAIT_S)
        except subprocess.TimeoutExpired:
            pass
        psutil.wait_procs(tree, timeout=KILL_WAIT_S)

    def _close_log(self) -> None:
        if self._pump is not None:
            self._pump.join(2.0)
        if self._log is not None:
            try:
                self._log.close()
            except OSError:
                pass

    def facts(self, run_dir: Path | None = None) -> dict[str, Any]:
        """What the manifest records of this start."""
        log = self.log_path
        if run_dir is not None and log.is_relative_to(run_dir):
            log = log.relative_to(run_dir)
        return scrub_data({
            "name": self.name, "command": self.command, "port": self.port, "pid": self.pid,
            "device": self.spec.device, "visible_devices": visible_devices(self.spec.device) if self.spec.device else {},
            "cpu_affinity": self.spec.cpu_affinity, "pinned_cores": self.pinned, "log": str(log),
            "ready_s": None if self.ready_s is None else round(self.ready_s, 3),
            "exit_code": self.exit_code, "stopped_by_colobench": self.stopped})


@dataclass
class _Start:
    server: ManagedServer
    runs: list[str] = field(default_factory=list)
    problem: str | None = None


def servers_of(group: RunGroup) -> list[str]:
    """The managed servers a group's instances use, in order."""
    return list(dict.fromkeys(i.server for i in group.instances if i.server))


def bind(group: RunGroup, servers: dict[str, ManagedServer]) -> RunGroup:
    """The group with each managed instance's URLs on its server's port and `server_pid` set."""
    def one(inst: ResolvedInstance) -> ResolvedInstance:
        srv = servers.get(inst.server) if inst.server else None
        if srv is None or inst.endpoint is None:
            return inst
        port, ep = str(srv.port), inst.endpoint
        return inst.model_copy(update={"endpoint": ep.model_copy(update={
            "base_url": ep.base_url.replace(PORT, port),
            "metrics_url": ep.metrics_url.replace(PORT, port) if ep.metrics_url else None,
            "server_pid": srv.pid})})
    runs = [r.model_copy(update={"instances": [one(i) for i in r.instances]}) for r in group.runs]
    return group.model_copy(update={"runs": runs})


class ServerPool:
    """The experiment's managed servers across its groups of runs, and a record of every start."""

    def __init__(self, servers: list[ServerSpec], keep: bool, run_dir: RunDir,
                 say: Callable[[str], None] | None = None):
        self.specs = {s.name: s for s in servers}
        self.keep, self.run_dir = keep, run_dir
        self.say = say or (lambda text: None)
        self.running: dict[str, _Start] = {}
        self.starts: list[_Start] = []
        self.interrupted = False  # a stop signal arrived while `close` stopped the servers

    def up(self, group: RunGroup, label: str) -> RunGroup:
        """Start (or keep) the servers the group needs; return the group bound to them."""
        for name in servers_of(group):
            start = self.running.get(name)
            if start is not None and not start.server.alive():
                self._died(start, f"before {label}")
                start = None
            if start is None:
                start = self._start(name, group)
            start.runs += [r.run_id for r in group.runs if any(i.server == name for i in r.instances)]
        return bind(group, {n: s.server for n, s in self.running.items()})

    def _start(self, name: str, group: RunGroup) -> _Start:
        first = next(r.run_id for r in group.runs if any(i.server == name for i in r.instances))
        srv = ManagedServer(self.specs[name], self.run_dir.run(first).server_log(name))
        start = _Start(srv)
        self.starts.append(start)
        self.running[name] = start  # from here on, `close` stops it (a signal while it loads too)
        self.say(f"server {name}: starting on port {srv.port} (log: {srv.facts(self.run_dir.root)['log']})")
        try:
            srv.start()
            ready = srv.wait_ready()
        except ServerFailed as exc:  # stopped already
            start.problem = str(exc).removeprefix(f"server {name}: ")
            self.running.pop(name, None)
            raise
        cores = f", cores {core_ranges(srv.pinned)}" if srv.pinned else ""
        self.say(f"server {name}: ready after {ready:.1f} s (pid {srv.pid}, port {srv.port}{cores})")
        return start

    def _died(self, start: _Start, when: str) -> None:
        srv = start.server
        code = srv.exit_code
        srv.stop()  # what is left of its tree, and its log
        start.problem = f"exited with {exit_text(code)} {when}; last log lines: {srv.log_tail()}"
        self.say(f"server {srv.name}: {start.problem}")
        self.running.pop(srv.name, None)

    def down(self, group: RunGroup, label: str) -> None:
        """After a group: note a server that died during it; stop them all unless they are kept."""
        for name in servers_of(group):
            start = self.running.get(name)
            if start is not None and not start.server.alive():
                self._died(start, f"during {label}")
        if not self.keep:
            self.close()

    def close(self) -> None:
        """Stop every server still running (the last first). A stop signal meanwhile only cuts
        the grace period short; `interrupted` says it came."""
        for name, start in reversed(list(self.running.items())):
            if not start.server.alive():
                self._died(start, "before colobench stopped it")
                continue
            self.say(f"server {name}: stopping")
            try:
                start.server.stop()
            except KeyboardInterrupt:
                self.interrupted = True
            self.running.pop(name, None)

    def manifest(self) -> list[dict[str, Any]]:
        """Every start so far: name, command (scrubbed), port, pid, cores, log, ready_s, exit code,
        the runs it served, and what went wrong (`problem`, shown among the summary's problems)."""
        return [{**s.server.facts(self.run_dir.root), "runs": s.runs, "problem": s.problem} for s in self.starts]


def check_servers(spec: ExperimentSpec, plan: ExperimentPlan, source: str = "experiment") -> None:
    """Before anything runs or is written: every server an instance uses can be started here (its
    program found, its device present, its cores ours, its fixed port free), and the secrets of
    every server command are registered."""
    servers = all_servers(spec)
    register_secrets(servers)
    used = {i.server for i in plan.instances if i.server}
    if used and spec.launch.kind == "ray" and spec.launch.address != "local":
        raise SpecError(source, "servers", "managed servers listen on 127.0.0.1 of this host, where Ray actors on "
                        "other nodes cannot reach them: use the local launcher (or launch.address: local)",
                        show_value=False)
    allowed = allowed_cores()
    names = [s.name for s in spec.servers]
    for server in servers:
        if server.name not in used:
            continue
        # a server a sweep changed is `<name>.<point id>`: its field is its base's
        k = next(k for k, n in enumerate(names) if server.name == n or server.name.startswith(f"{n}."))
        field_ = f"servers[{k}]"
        if shutil.which(server.command[0]) is None:
            raise SpecError(source, f"{field_}.command", "no such program (not on PATH, or not executable)",
                            server.command[0])
        if server.device:
            try:
                check_device(server.device)
            except DeviceUnavailable as exc:
                raise SpecError(source, f"{field_}.device", f"device not available: {exc}", server.device) from None
        missing = [c for c in server.cpu_affinity or [] if c not in allowed]
        if missing:
            raise SpecError(source, f"{field_}.cpu_affinity", f"core(s) {', '.join(map(str, missing))} not available "
                            f"here (colobench may use {core_ranges(allowed)})", server.cpu_affinity)
        if server.port is not None and server.port < 1024 and hasattr(os, "geteuid") and os.geteuid() != 0:
            raise SpecError(source, f"{field_}.port", "a privileged port (below 1024): only root may listen there; "
                            "drop port to get a free one", server.port)
        if server.port is not None and not port_free(server.port):
            raise SpecError(source, f"{field_}.port", "in use on 127.0.0.1 by another process", server.port)


@contextlib.contextmanager
def servers_for(spec: ExperimentSpec, run_dir: RunDir, source: str,
                say: Callable[[str], None]) -> Iterator[ExperimentSpec]:
    """The experiment with its managed servers (`servers:`, instances naming `server:`) started
    once for many runs (a capacity search's probes), each instance pointed at its server's URL
    and pid; stopped on every way out. Their logs are `<run_dir>/servers/<name>.log`."""
    used = {i.server for i in spec.instances if i.server}
    if not used:
        yield spec
        return
    started: dict[str, ManagedServer] = {}
    try:
        for server in spec.servers:
            if server.name in used:
                managed = ManagedServer(server, run_dir.server_log(server.name))
                started[server.name] = managed
                managed.start()
                ready_s = managed.wait_ready()
                say(f"server {server.name} ready on port {managed.port} (pid {managed.pid}) in {ready_s:.1f} s")
        data = spec.model_dump(mode="json", exclude_none=True)
        for inst in data["instances"]:
            if inst.get("server") in started:
                managed = started[inst.pop("server")]
                inst.update(base_url=managed.base_url, server_pid=managed.pid)
        data["servers"] = [s for s in data.get("servers", []) if s["name"] not in started]
        yield experiment_from_dict(data, source)
    finally:
        for managed in started.values():
            managed.stop()
