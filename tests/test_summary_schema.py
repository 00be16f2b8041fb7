"""summary/2: one typed shape, a shipped JSON Schema every written summary validates against, and
run directories written as summary/1 still open, with every number what summary/1 held."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import jsonschema
import pytest

from colobench import api
from colobench.analysis.compat import from_v1
from colobench.analysis.model import SCHEMA, Summary
from colobench.specs import experiment_from_dict

from conftest import invoke, run_cli

FIXTURES = Path(__file__).with_name("fixtures") / "summary_v1"
V1_RUNS = ("colocated", "sweep", "endpoint")  # a co-located tiny run, a fake sweep, two endpoints on one server
SHIPPED = Path(api.__file__).with_name("analysis") / "summary.schema.json"


def _numbers(data, prefix=""):
    """Every number of a nested mapping, by its path."""
    out = {}
    if isinstance(data, dict):
        for k, v in data.items():
            out.update(_numbers(v, f"{prefix}.{k}" if prefix else k))
    elif isinstance(data, (list, tuple)) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in data):
        out.update({f"{prefix}[{i}]": v for i, v in enumerate(data)})
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        out[prefix] = data
    return out


def _v1_points(v1: dict) -> list[dict]:
    return v1.get("points") or [{"id": "", **{k: v1[k] for k in ("phases", "interference", "energy")}}]


@pytest.fixture(scope="module")
def v1_copies(tmp_path_factory) -> dict[str, Path]:
    """The summary/1 run directories, copied (report --html and friends must not write into the fixtures)."""
    root = tmp_path_factory.mktemp("v1")
    return {name: Path(shutil.copytree(FIXTURES / name, root / name)) for name in V1_RUNS}


def test_shipped_schema_is_the_generated_one():
    assert json.loads(SHIPPED.read_text()) == api.schema()
    assert api.schema()["properties"]["schema"]["default"] == SCHEMA


def test_cli_prints_the_schema(tmp_path: Path, cli_env: dict):
    proc = run_cli(["schema"], cli_env, tmp_path)
    assert proc.returncode == 0 and json.loads(proc.stdout) == api.schema()


# What the measurement issue redefined on purpose: throughputs are tokens (requests) over the
# measured time, not a mean of per-repetition rates; per-request values no longer give an
# interval (the repetitions do, and these runs have 2); and a co-located phase keeps only the
# requests made while every partner was under load; stability is the spread of the repetitions'
# means (not judged below 3 repetitions), no longer a per-request spread.
REDEFINED = ("output_throughput", "request_throughput", "validity.cv_pct", ".ci95_low", ".ci95_high")


# An endpoint's peak memory was the load generator's own; now it is the server's, else unmeasured.
REDEFINED_FOR = {"endpoint": ("peak_memory_bytes",)}


def _redefined(key: str, name: str = "") -> bool:
    return key in REDEFINED or key.endswith(REDEFINED[3:]) or key in REDEFINED_FOR.get(name, ())


@pytest.mark.parametrize("name", V1_RUNS)
def test_no_number_changes(name: str, v1_copies: dict[str, Path]):
    """Summarising a summary/1 run directory today gives every metric summary/1 held, unchanged,
    except those listed in REDEFINED; a co-located phase that had requests outside the overlap
    keeps exactly the others."""
    v1 = json.loads((FIXTURES / name / "summary.json").read_text())
    now = api.load_summary(v1_copies[name])
    compared, trimmed = 0, 0
    for p1 in _v1_points(v1):
        p2 = now.point(p1["id"]).model_dump(mode="json")
        for phase, by in p1["phases"].items():
            for instance, metrics in by.items():
                new_phase = p2["phases"][phase][instance]
                if new_phase["outside_overlap"]:
                    assert new_phase["completed"] == metrics["completed"] - new_phase["outside_overlap"]
                    trimmed += 1
                    continue
                new = _numbers(new_phase)
                for key, value in _numbers(metrics).items():
                    if _redefined(key, name):
                        continue
                    assert key in new, f"{name} {phase} {instance}: {key} is gone"
                    assert math.isclose(new[key], value, rel_tol=1e-12, abs_tol=1e-12), (name, phase, instance, key)
                    compared += 1
                totals = new_phase["total_output_tokens"] / new_phase["duration"]  # tokens over time
                assert new_phase["output_throughput"] == pytest.approx(totals)
    assert compared > 300  # the comparison covered the metrics, not a handful of keys
    assert trimmed == {"colocated": 0, "sweep": 2, "endpoint": 0}[name]


@pytest.mark.parametrize("name", V1_RUNS)
def test_v1_summary_file_converts_with_the_same_numbers(name: str, v1_copies: dict[str, Path]):
    v1 = json.loads((FIXTURES / name / "summary.json").read_text())
    converted = from_v1(v1)
    assert converted.schema_version == SCHEMA and len(converted.points) == len(_v1_points(v1))
    recomputed = api.load_summary(v1_copies[name])
    for p in converted.points:
        for phase, instance, metrics in p.rows():
            again = recomputed.point(p.id).metrics(phase, instance)
            if again.outside_overlap:
                continue
            assert metrics.completed == again.completed and metrics.p99_tpot_ms == again.p99_tpot_ms
    verdicts = [v for p in _v1_points(v1) for v in p["interference"]["verdicts"]]
    assert {(c.kind, c.verdict) for c in converted.checks} >= {(v["check"], v["verdict"]) for v in verdicts
                                                               if v["check"] != "sample_size"}
    jsonschema.validate(converted.to_json(), api.schema())


@pytest.mark.parametrize("name", V1_RUNS)
def test_v1_run_directories_open_in_report_diagnose_and_compare(name: str, v1_copies: dict[str, Path],
                                                                 tmp_path: Path, monkeypatch, capsys):
    run = v1_copies[name]
    point = ":" + json.loads((run / "summary.json").read_text())["points"][0]["id"] if name == "sweep" else ""
    monkeypatch.chdir(tmp_path)
    for args in (["report", str(run)], ["report", str(run), "--html"], ["diagnose", str(run)],
                 ["compare", f"{run}{point}", f"{run / 'summary.json'}{point}"]):
        code, out, err = invoke(args, monkeypatch, capsys)  # `colobench ARGS`, in this process
        assert code == 0 and "Traceback" not in err, (args, err)
    assert (run / "report.html").stat().st_size > 10_000


def test_every_written_summary_validates(tmp_path: Path):
    """A co-located run and a sweep (fake backend), as written to summary.json and as the API
    returns them."""
    schema = json.loads(SHIPPED.read_text())
    fake = {"model": "fake", "backend": "fake", "fake": {"ttft_ms": 1, "tpot_ms": 1}}
    for name, extra in (("pair", {}), ("sweep", {"sweep": {"batch_size": [1, 2]}})):
        spec = experiment_from_dict({"name": name, "repetitions": 1, "instances": [{**fake, "name": "a"},
                                                                                  {**fake, "name": "b"}],
                                     "workload": {"requests": 4, "output_tokens": 3}, **extra}, "t")
        result = api.run_experiment(spec, out=tmp_path / name)
        written = json.loads((tmp_path / name / "summary.json").read_text())
        jsonschema.validate(written, schema)
        assert written["schema"] == SCHEMA and Summary.model_validate(written) == result.summary
        assert len(result.summary.points) == (2 if extra else 1)
