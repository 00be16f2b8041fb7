"""The run directory: its paths (`RunDir`, `RunFolder`), the typed models of what it holds
(`Manifest`, `RunState`, `WorkerState`, `WorkerInfo`, `ServerEntry`) and its life (made, resumed,
attempts kept aside, abandoned runs settled). Launch writes through it, analysis and report read
through it; no other module names a file of a run directory."""

from colobench.rundir.lifecycle import (DEFAULT_RUNS_DIR, LOCK_NAME, ManifestFile, folder_lock, keep_attempt, make_run_dir, new_manifest,
                                        open_run_dir, process_gone, process_start, remove_if_empty, resumed_manifest,
                                        run_finished, settle_abandoned, spec_from_run_dir, unfinished_runs,
                                        write_json_atomic, write_prompts)
from colobench.rundir.models import (ENDED, LIVE, WORST_FIRST, ClientWindow, ClockAnchor, HostReferenceSample,
                                     InstanceEntry, Manifest, MetricsScrape, PlanEntry, PlannedRun, PointEntry, RunState, ServerEntry,
                                     WorkerInfo, WorkerState, read_host_reference, read_manifest, read_run_state,
                                     read_scrapes)
from colobench.rundir.paths import LINE_FOLDERS, SERVER_STOP_MARK, RunDir, RunFolder, is_worker_of

__all__ = ["DEFAULT_RUNS_DIR", "LOCK_NAME", "folder_lock", "ENDED", "LIVE", "LINE_FOLDERS", "WORST_FIRST", "ClientWindow", "ClockAnchor",
           "HostReferenceSample", "InstanceEntry", "Manifest", "ManifestFile", "MetricsScrape", "PlanEntry", "PlannedRun", "PointEntry",
           "RunDir", "RunFolder", "SERVER_STOP_MARK", "RunState", "ServerEntry", "WorkerInfo", "WorkerState", "is_worker_of",
           "keep_attempt", "make_run_dir", "new_manifest", "open_run_dir", "process_gone", "process_start",
           "read_host_reference", "read_manifest", "read_run_state", "read_scrapes",
           "remove_if_empty", "resumed_manifest", "run_finished", "settle_abandoned", "spec_from_run_dir",
           "unfinished_runs", "write_json_atomic", "write_prompts"]
