"""Every path of a run directory, named once.

A run directory is the unit of truth: everything a report shows is rebuilt from its files. Its
layout (launch writes it, analysis and report read it, `--resume` and `settle_abandoned` rewrite
parts of it):

    manifest.json                      spec, plan, environment, devices, servers (before anything runs)
    prompts/<key>.json                 tokenized prompt sets the workers read
    idle_telemetry.jsonl               the accelerators before anything ran (idle power)
    host_reference.jsonl               the host reference: a fixed workload timed at the start, between
                                       repetitions and at the end (`HostReferenceSample`)
    runs/[<point>/]<run_id>/           one folder per run (`RunFolder`)
        run.json                       workers, outcome, clock anchor (rewritten as it goes)
        records/<worker>.jsonl         one line per request, appended as each completes
        logs/<worker>.log              each worker's output; logs/server-<name>.log, logs/ascend/<worker>/
        gc/<worker>.jsonl              Python GC pauses
        client/<worker>.jsonl          the load generator's own CPU and event-loop lag per repetition
        metrics/scrapes.jsonl          every /metrics scrape at a window boundary (`MetricsScrape`: when, ok or why not)
        metrics/<instance>.r<rep>.<when>.prom  the server's Prometheus text just before / just after repetition rep
        metrics/<instance>.<when>.prom the server's text around the whole group (written before per-window scrapes)
        quality/<instance>.npz         greedy outputs and log-probabilities of a variant
        telemetry.jsonl                device and host samples (an interleaved group: one file beside its runs)
        attempts/<k>/                  an unfinished attempt `--resume` moved aside (the same layout)
    summary.json, report.html          derived, rebuilt by `colobench report`
    profiles/[<point>/]<instance>.profile.json  each instance's solo profile (derived, with the summary)

A capacity search's folder (`capacity.json`, `capacity.html`, `probes/<k>-<label>/` each a run
directory, `servers/<name>.log`), a characterisation's (`characterize.json`, `runs/<label>/` each a
run directory, `profiles/`) and a profiler's (`profile.json`, `trace.json`) are named here too.
A worker's key is its instance's name, or `<name>.<k>` for client process k of an HTTP instance.
"""

from __future__ import annotations

import time
from pathlib import Path

MANIFEST = "manifest.json"
SUMMARY = "summary.json"
REPORT = "report.html"
RUN_STATE = "run.json"
TELEMETRY = "telemetry.jsonl"
ATTEMPTS = "attempts"
RECORDS, LOGS, GC, CLIENT, METRICS, QUALITY = "records", "logs", "gc", "client", "metrics", "quality"
LINE_FOLDERS = (RECORDS, GC, LOGS, CLIENT)  # appended to line by line (what Ray streams from its nodes)
PROMPTS = "prompts"
SERVER_STOP_MARK = "[colobench] stopping server"  # written to a managed server's log before its SIGTERM


def is_worker_of(key: str, name: str) -> bool:
    """Whether worker key `key` (`a`, `a.0`, `a.1`; in a group of interleaved variants `a@<point>`)
    belongs to instance `name`. Instance names hold no `@`; an interleaved variant is never an
    endpoint, so it has no client processes."""
    if key.startswith(name + "@"):
        return True
    return key == name or (key.startswith(name + ".") and key[len(name) + 1:].isdigit())


class RunFolder:
    """One run's folder (`runs/[<point>/]<run_id>/`), or an attempt kept inside one."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.root)!r})"

    @property
    def state(self) -> Path:
        return self.root / RUN_STATE

    @property
    def records_dir(self) -> Path:
        return self.root / RECORDS

    def records(self, key: str) -> Path:
        return self.records_dir / f"{key}.jsonl"

    def record_files(self) -> list[Path]:
        """Every worker's record file."""
        return sorted(self.records_dir.glob("*.jsonl")) if self.records_dir.is_dir() else []

    def instance_records(self, name: str) -> list[Path]:
        """An instance's record files: `<name>.jsonl`, or one per client process."""
        return self._own(self.records_dir, name, ".jsonl")

    @property
    def logs_dir(self) -> Path:
        return self.root / LOGS

    def log(self, key: str) -> Path:
        return self.logs_dir / f"{key}.log"

    def instance_logs(self, name: str) -> list[Path]:
        return self._own(self.logs_dir, name, ".log")

    def server_log(self, server: str) -> Path:
        return self.logs_dir / f"server-{server}.log"

    def ascend_logs(self, key: str) -> Path:
        """Where CANN writes a worker's own process logs (plog)."""
        return self.logs_dir / "ascend" / key

    def log_files(self) -> list[Path]:
        """Every file under logs/ (workers', servers', CANN's)."""
        return sorted(p for p in self.logs_dir.rglob("*") if p.is_file()) if self.logs_dir.is_dir() else []

    def gc(self, key: str) -> Path:
        return self.root / GC / f"{key}.jsonl"

    def instance_gc(self, name: str) -> list[Path]:
        return self._own(self.root / GC, name, ".jsonl")

    def client(self, key: str) -> Path:
        return self.root / CLIENT / f"{key}.jsonl"

    def metrics(self, name: str, when: str) -> Path:
        """A server's Prometheus text scraped `when` (before, after) the whole group: what run
        directories held before the per-window scrapes (read, no longer written)."""
        return self.root / METRICS / f"{name}.{when}.prom"

    @property
    def metrics_scrapes(self) -> Path:
        """One line per /metrics scrape at a window boundary (`rundir.models.MetricsScrape`)."""
        return self.root / METRICS / "scrapes.jsonl"

    def window_metrics(self, name: str, repetition: int, when: str) -> Path:
        """A server's Prometheus text scraped `when` (before, after) repetition `repetition` of this run."""
        return self.root / METRICS / f"{name}.r{repetition}.{when}.prom"

    def quality(self, name: str) -> Path:
        return self.root / QUALITY / f"{name}.npz"

    @property
    def telemetry(self) -> Path:
        """This run's samples: its own file, or the one its interleaved group wrote beside its runs
        (the runs took turns in the same processes, so they share one timeline)."""
        own = self.root / TELEMETRY
        return own if own.is_file() else self.root.parent / TELEMETRY

    @property
    def attempts_dir(self) -> Path:
        return self.root / ATTEMPTS

    def attempts(self) -> list[tuple[int, "RunFolder"]]:
        """The attempts kept aside, by number."""
        if not self.attempts_dir.is_dir():
            return []
        found = [(int(p.name), RunFolder(p)) for p in self.attempts_dir.iterdir() if p.is_dir() and p.name.isdigit()]
        return sorted(found, key=lambda kv: kv[0])

    def next_attempt(self) -> "RunFolder":
        return RunFolder(self.attempts_dir / str(max((k for k, _ in self.attempts()), default=0) + 1))

    @staticmethod
    def _own(folder: Path, name: str, suffix: str) -> list[Path]:
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.glob(f"{name}*{suffix}") if is_worker_of(p.name.removesuffix(suffix), name))


class RunDir:
    """A run directory (see the module docstring for its layout). Takes a path or another
    `RunDir`, and is one itself (`Path(run_dir)`, `open(...)` take it)."""

    def __init__(self, root: "Path | str | RunDir"):
        self.root = Path(root)

    def __fspath__(self) -> str:
        return str(self.root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    def __str__(self) -> str:
        return str(self.root)

    @classmethod
    def new(cls, base: Path, name: str) -> "RunDir":
        """A fresh `<base>/<time>-<name>` (`-2`, `-3` when taken)."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path, k = base / f"{stamp}-{name}", 1
        while path.exists():
            k += 1
            path = base / f"{stamp}-{name}-{k}"
        return cls(path)

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY

    @property
    def report(self) -> Path:
        return self.root / REPORT

    @property
    def idle_telemetry(self) -> Path:
        return self.root / "idle_telemetry.jsonl"

    @property
    def host_reference(self) -> Path:
        return self.root / "host_reference.jsonl"

    def prompts(self, key: str) -> Path:
        return self.root / PROMPTS / f"{key}.json"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def run(self, run_id: str) -> RunFolder:
        return RunFolder(self.runs_dir / run_id)

    def group_telemetry(self, run_ids: list[str]) -> Path:
        """Where a group of runs writes its telemetry: its run's folder, or for an interleaved
        group the folder holding its runs (`runs/` or `runs/<point>/`)."""
        if len(run_ids) == 1:
            return self.run(run_ids[0]).root / TELEMETRY
        return self.run(run_ids[0]).root.parent / TELEMETRY

    def run_states(self) -> list[Path]:
        """Every run.json of the directory's runs (not of the attempts kept inside them)."""
        if not self.runs_dir.is_dir():
            return []
        return sorted(p for p in self.runs_dir.rglob(RUN_STATE) if ATTEMPTS not in p.relative_to(self.runs_dir).parts)

    def log_files(self) -> list[Path]:
        """Every log file of every run (workers', servers', CANN's), not of the attempts kept aside."""
        if not self.runs_dir.is_dir():
            return []
        return sorted(p for p in self.runs_dir.rglob("*") if p.is_file() and LOGS in (parts := p.relative_to(
            self.runs_dir).parts) and ATTEMPTS not in parts)

    def is_run_dir(self) -> bool:
        return self.manifest.is_file()

    # ---- a capacity search's folder ------------------------------------------------------------

    @property
    def capacity(self) -> Path:
        return self.root / "capacity.json"

    @property
    def capacity_html(self) -> Path:
        return self.root / "capacity.html"

    def probe(self, number: int, label: str) -> "RunDir":
        """A capacity probe: an ordinary run directory inside the search's folder."""
        return RunDir(self.root / "probes" / f"{number:03d}-{label}")

    def server_log(self, server: str) -> Path:
        """A managed server started once for a whole search."""
        return self.root / "servers" / f"{server}.log"

    def is_capacity_dir(self) -> bool:
        return self.capacity.is_file() and not self.manifest.exists()

    # ---- solo profiles, and a characterisation's folder -----------------------------------------

    @property
    def profiles_dir(self) -> Path:
        return self.root / "profiles"

    def instance_profile(self, point: str, instance: str) -> Path:
        """An instance's solo profile (`analysis.instance_profile`; not the profiler's
        `profile.json`): `profiles/[<point>/]<instance>.profile.json`."""
        return self.profiles_dir / point / f"{instance}.profile.json" if point else \
            self.profiles_dir / f"{instance}.profile.json"

    def profile_files(self) -> list[Path]:
        return sorted(self.profiles_dir.rglob("*.profile.json")) if self.profiles_dir.is_dir() else []

    @property
    def characterization(self) -> Path:
        """What `colobench characterize` found: the probes and what each achieved."""
        return self.root / "characterize.json"

    def pressure_run(self, label: str) -> "RunDir":
        """One run of a characterisation (`solo`, or `<resource>-<level>` beside a probe)."""
        return RunDir(self.root / "runs" / label)

    def probe_log(self, label: str) -> Path:
        """The stderr of the pressure probe beside run `label` of a characterisation."""
        return self.root / "runs" / f"{label}.probe.log"

    def is_characterize_dir(self) -> bool:
        return self.characterization.is_file() and not self.manifest.exists()

    # ---- a profile's folder --------------------------------------------------------------------

    @property
    def profile(self) -> Path:
        return self.root / "profile.json"

    @property
    def trace(self) -> Path:
        return self.root / "trace.json"
