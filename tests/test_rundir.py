"""The run directory as a typed whole: run directories written by earlier versions (manifest/1,
no model behind run.json) still summarise to exactly the numbers they summarised to when they
were written, whatever moves inside colobench."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from colobench import api

FIXTURES = Path(__file__).with_name("fixtures") / "rundir_v1"
# a fake-backend sweep with an SLO, a tiny co-located pair (telemetry, gc, client rows), two
# endpoints on a fake server (metrics scrapes, two client processes, an open loop), and a run
# resumed after kill -9 of a worker (attempts/ folders)
RUN_DIRS = ("fake-sweep", "tiny-pair", "endpoint", "resume")


@pytest.mark.parametrize("name", RUN_DIRS)
def test_old_run_directories_summarise_to_the_same_numbers(name: str, tmp_path: Path):
    copy = Path(shutil.copytree(FIXTURES / name, tmp_path / name))
    written = json.loads((copy / "summary.json").read_text())
    now = api.summarize(copy, write=False).to_json()
    for data in (written, now):
        data.pop("run_dir")
        data.pop("colobench_version", None)
    assert now == written
