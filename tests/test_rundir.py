"""The run directory as a typed whole: run directories written by earlier versions (manifest/1,
no model behind run.json) still summarise to exactly the numbers they summarised to when they
were written, whatever moves inside colobench."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from colobench import api
from colobench.analysis.registry import METRICS

FIXTURES = Path(__file__).with_name("fixtures") / "rundir_v1"
# a fake-backend sweep with an SLO, a tiny co-located pair (telemetry, gc, client rows), two
# endpoints on a fake server (metrics scrapes, two client processes, an open loop), and a run
# resumed after kill -9 of a worker (attempts/ folders)
RUN_DIRS = ("fake-sweep", "tiny-pair", "endpoint", "resume")
# fields the summary gained since these directories were written, which they have nothing for
# (their value is None): the server's per-window evidence (their scrapes spanned whole groups)
NEW_FIELDS = (".server", "host_reference", ".paired_with", ".trace", ".by_step", ".by_turn", "profiles", ".server_cpu_cores")  # keys a newer colobench adds: None for an older directory


def _leaves(data, prefix=""):
    """Every leaf of nested JSON data by its path (lists of scalars kept whole)."""
    if isinstance(data, dict) and data:
        out = {}
        for k, v in data.items():
            out.update(_leaves(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(data, list) and data and any(isinstance(v, (dict, list)) for v in data):
        out = {}
        for k, v in enumerate(data):
            out.update(_leaves(v, f"{prefix}[{k}]"))
        return out
    return {prefix: data}


@pytest.mark.parametrize("name", RUN_DIRS)
def test_old_run_directories_summarise_to_the_same_numbers(name: str, tmp_path: Path):
    """Every value the summary held when the directory was written is still there, unchanged;
    the only new keys are the statistics of metrics the registry gained since (computed from the
    old records: a summary is always rebuilt from them)."""
    copy = Path(shutil.copytree(FIXTURES / name, tmp_path / name))
    written = _leaves(json.loads((copy / "summary.json").read_text()))
    now = _leaves(api.summarize(copy, write=False).to_json())
    for data in (written, now):
        data.pop("run_dir")
        data.pop("colobench_version", None)
    assert {k: now.get(k, "missing") for k in written} == written
    stems = [f"_{m.name}_" for m in METRICS] + [f".{m.distribution_key}" for m in METRICS]
    stems.append(".interference.predicted.")  # derived from the solo phases: computed for old directories too
    new = sorted(k for k in set(now) - set(written) if not any(stem in k for stem in stems))
    added = [k for k in new if k.endswith(NEW_FIELDS)]
    assert all(now[k] in (None, [], {}) for k in added), added  # nothing (empty) for an older directory
    assert not set(new) - set(added), new[:10]


def test_a_folder_lock_refuses_a_second_writer_and_outlives_no_holder(tmp_path: Path):
    """One writer at a time, the holder's pid in the refusal; a holder killed with -9 leaves no
    stale lock (the kernel's flock is released with it)."""
    import signal
    import subprocess
    import sys

    from colobench.errors import ColobenchError
    from colobench.rundir import LOCK_NAME, folder_lock

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from colobench.rundir import folder_lock\n"
        "with folder_lock(Path(sys.argv[1])):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(120)\n"), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ColobenchError, match=f"another colobench \\(pid {holder.pid}\\) is writing this folder"):
            with folder_lock(tmp_path):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    assert (tmp_path / LOCK_NAME).exists()  # left behind by kill -9, and taken over as it is
    with folder_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(__import__("os").getpid())
    assert not (tmp_path / LOCK_NAME).exists()
