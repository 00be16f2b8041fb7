import pytest

from conftest import flag_spec

from colobench.errors import SpecError
from colobench.plan import plan_experiment
from colobench.specs import experiment_from_dict
from colobench.sweep import expand

def test_inline_lists_become_axes_with_stable_ids():
    spec = experiment_from_dict({"name": "llama1b", "instances": [{"model": "tiny"}],
                                 "workload": {"batch_size": [1, 8]}, "scenario": ["short", "long"]}, "t")
    assert spec.sweep == {"workload.batch_size": [1, 8], "scenario": ["short", "long"]}
    points = expand(spec)
    assert [p.id for p in points] == ["llama1b-b1-short", "llama1b-b1-long", "llama1b-b8-short", "llama1b-b8-long"]
    assert points[2].axes == {"batch_size": 8, "scenario": "short"}
    assert points[3].spec.workload_for(0).batch_size == 8 and points[3].spec.workload_for(0).prompt_tokens == 4096
    assert [p.id for p in expand(spec)] == [p.id for p in points]  # same spec, same ids


def test_explicit_sweep_aliases_and_instance_axes():
    spec = experiment_from_dict({"name": "x", "instances": [{"model": "tiny"}, {"model": "tiny"}],
                                 "sweep": {"dtype": ["bfloat16", "float32"], "instances.1.workload.rate": [2.0, 4]}}, "t")
    ids = [p.id for p in expand(spec)]
    assert ids == ["x-bf16-i1rate2", "x-bf16-i1rate4", "x-fp32-i1rate2", "x-fp32-i1rate4"]
    point = expand(spec)[1]
    assert point.axes == {"dtype": "bfloat16", "rate[1]": 4}
    assert point.spec.workload_for(0).load_model == "static" and point.spec.workload_for(1).rate == 4.0
    assert all(i.dtype == "bfloat16" for i in point.spec.instances)


def test_plan_names_runs_under_points():
    spec = experiment_from_dict({"name": "t", "instances": [{"model": "tiny"}, {"model": "tiny"}],
                                 "workload": {"concurrency": [1, 4]}}, "t")
    plan = plan_experiment(spec, cpu_count=2)
    assert [r.run_id for r in plan.runs] == ["t-c1/solo-tiny-1", "t-c1/solo-tiny-2", "t-c1/colocated",
                                            "t-c4/solo-tiny-1", "t-c4/solo-tiny-2", "t-c4/colocated"]
    assert plan.runs[5].instances[0].workload.concurrency == 4 and plan.runs[5].point == "t-c4"
    assert plan.runs[2].instances[0].memory_share == 0.5


@pytest.mark.parametrize("data, fragment", [
    ({"sweep": {"colour": [1, 2]}}, "unknown sweep axis 'colour'"),
    ({"sweep": {"batch_size": []}}, "non-empty list"),
    ({"sweep": {"batch_size": [2, 2]}}, "repeats a value"),
    ({"sweep": {"scenario": ["short", "huge"]}}, "unknown scenario 'huge'"),
])
def test_bad_axes(data, fragment):
    with pytest.raises(SpecError, match=fragment):
        experiment_from_dict({"instances": [{"model": "tiny"}], **data}, "exp.yaml")


def test_a_bad_point_is_named():
    spec = experiment_from_dict({"name": "s", "instances": [{"model": "tiny"}], "workload": {"batch_size": [1, 0]}},
                                "exp.yaml")
    with pytest.raises(SpecError) as info:
        expand(spec, "exp.yaml")
    assert str(info.value).startswith("exp.yaml (sweep point s-b0): workload.batch_size")


def test_cli_lists_become_axes():
    flags = {"--batch-size": "1,2,4,8", "--scenario": "short,long", "--dtype": "bfloat16", "--output-tokens": "16"}
    spec, source = flag_spec(["tiny"], flags)
    assert source == "command line" and spec.name == "tiny"
    assert spec.sweep == {"workload.batch_size": [1, 2, 4, 8], "scenario": ["short", "long"]}
    assert spec.instances[0].dtype == "bfloat16" and spec.workload.output_tokens == 16
    assert expand(spec)[-1].id == "tiny-b8-long"
    spec, _ = flag_spec(["tiny", "tiny"], {"--request-rate": "5,10", "--max-concurrency": "max"})
    assert spec.name == "tiny-x2" and spec.sweep == {"workload.rate": [5.0, 10.0]}
    assert spec.workload.concurrency == "max"


@pytest.mark.parametrize("flag, text, fragment", [
    ("--batch-size", "1,x", "--batch-size: 'x' is not an integer"),
    ("--rate", "0", "--rate: Input should be greater than 0"),
    ("--concurrency", "0", "--concurrency: must be greater than 0"),
    ("--rate", "fast", "--rate: 'fast' is not a number"),
])
def test_cli_bad_lists(flag, text, fragment):
    with pytest.raises(SpecError) as info:
        flag_spec(["tiny"], {flag: text})
    assert fragment in str(info.value)


def test_point_ids_use_the_short_flags():
    """An id part is the knob's short flag and the value (-r requests, -n output tokens), so an id
    reads like the command line that made it."""
    spec, _ = flag_spec(["tiny"], {"--requests": "8,16", "--output-tokens": "32", "--prompt-tokens": "64,128"})
    assert [p.id for p in expand(spec)] == ["tiny-r8-p64", "tiny-r8-p128", "tiny-r16-p64", "tiny-r16-p128"]
    spec, _ = flag_spec(["tiny"], {"--rate": "2,4", "--duration": "5,10"})
    assert [p.id for p in expand(spec)][:2] == ["tiny-rate2-dur5", "tiny-rate2-dur10"]


@pytest.mark.parametrize("data, axis, ids", [
    ({"instances": [{"model": "tiny", "device": "npu:0", "npu_jit_compile": [True, False]}]},
     "instances.0.npu_jit_compile", ["s-i0jit1", "s-i0jit0"]),
    ({"instances": [{"model": "tiny", "npu_allow_internal_format": [True, False]}]},
     "instances.0.npu_allow_internal_format", ["s-i0nz1", "s-i0nz0"]),
    ({"instances": [{"model": "tiny"}], "sweep": {"cpu_affinity": [None, "auto", [0, 1]]}},
     "instances.*.cpu_affinity", ["s-nopin", "s-pinauto", "s-pin0.1"]),
    ({"instances": [{"model": "tiny", "env": {"TASK_QUEUE_ENABLE": ["0", "2"]}}]},
     "instances.0.env.TASK_QUEUE_ENABLE", ["s-i0task_queue_enable0", "s-i0task_queue_enable2"]),
    ({"instances": [{"model": "tiny"}], "workload": {"prompts": [{"file": "a.jsonl"}, {"builtin": ["code"]}]}},
     "workload.prompts", ["s-prompts-a", "s-builtin-code"]),
])
def test_every_variant_axis_sweeps(data, axis, ids):
    """Every knob the README calls a variant axis takes a list: Ascend switches, CPU affinity,
    environment variables and prompt sets included."""
    spec = experiment_from_dict({"name": "s", **data}, "exp.yaml")
    assert axis in spec.sweep
    assert [p.id for p in expand(spec)] == ids


def test_out_of_range_instance_axis_is_one_line():
    spec = experiment_from_dict({"name": "s", "instances": [{"model": "tiny"}],
                                 "sweep": {"instances.5.workload.rate": [1, 2]}}, "exp.yaml")
    with pytest.raises(SpecError, match="only 1 instances"):
        expand(spec, "exp.yaml")


def test_variant_points_are_interleaved_per_repetition():
    """Sweep points that differ only in a variant axis (dtype here) run in one group: every
    variant's workers loaded together (`name@point`), each repetition runs every variant, their
    order rotating; a workload axis (batch size) still separates groups; --order phase-major
    keeps one run at a time."""
    data = {"name": "v", "instances": [{"model": "fake", "backend": "fake"}, {"model": "fake", "backend": "fake"}],
            "workload": {"requests": 4, "batch_size": [2, 4]}, "repetitions": 3,
            "sweep": {"dtype": ["float32", "bfloat16"]}}
    plan = plan_experiment(experiment_from_dict(data, "v"), cpu_count=2)
    assert len(plan.groups) == 2
    group = plan.groups[0]
    assert group.points == ["v-fp32-b2", "v-bf16-b2"]
    assert [i.key for i in group.instances] == ["fake-1@v-fp32-b2", "fake-2@v-fp32-b2", "fake-1@v-bf16-b2",
                                                 "fake-2@v-bf16-b2"]
    order = [(w.run_id.split("/")[0], w.repetition) for w in group.windows if w.run_id.endswith("colocated")]
    assert order == [("v-fp32-b2", 1), ("v-bf16-b2", 1), ("v-bf16-b2", 2), ("v-fp32-b2", 2), ("v-fp32-b2", 3),
                     ("v-bf16-b2", 3)]
    assert all(i.workload.batch_size == 2 for i in group.instances)
    major = plan_experiment(experiment_from_dict({**data, "order": "phase-major"}, "v"), cpu_count=2)
    assert all(len(g.runs) == 1 and len(g.windows) == 3 for g in major.groups) and len(major.groups) == 12
    # a workload axis alone: one group per point, as before
    alone = plan_experiment(experiment_from_dict({**data, "sweep": {}}, "v"), cpu_count=2)
    assert [g.points for g in alone.groups] == [["v-b2"], ["v-b4"]]
    assert all(i.member is None for g in alone.groups for i in g.instances)
    # accelerators: the memory share is divided among the variants loaded together
    from colobench.plan import RunSpec, ResolvedInstance, interleave_variants

    def runs(point: str) -> list[RunSpec]:
        inst = ResolvedInstance(name="m", model="tiny", preset="tiny", model_path="/x", backend="transformers",
                                device="cuda:0", dtype="bfloat16", cpu_threads=1, memory_share=0.5,
                                workload=group.instances[0].workload)
        return [RunSpec(run_id=f"{point}/solo-m", point=point, phase="solo", instances=[inst], repetitions=2)]

    (cuda,) = interleave_variants([runs("p1"), runs("p2")])
    assert [i.memory_share for i in cuda.instances] == [0.25, 0.25]


def test_interleaved_variants_run_end_to_end(tmp_path, cli_env):
    from colobench import api
    from colobench.rundir import read_run_state

    spec = experiment_from_dict({
        "name": "v", "repetitions": 3, "workload": {"requests": 4, "batch_size": 2, "output_tokens": 3},
        "instances": [{"name": "a", "model": "fake", "backend": "fake", "fake": {"ttft_ms": 1, "tpot_ms": 1}},
                      {"name": "b", "model": "fake", "backend": "fake", "fake": {"ttft_ms": 1, "tpot_ms": 1}}],
        "sweep": {"instances.0.env.FOO": ["1", "2"]}}, "v")
    result = api.run_experiment(spec, out=tmp_path / "v")
    points = {p.id: p for p in result.summary.points}
    assert set(points) == {"v-i0foo1", "v-i0foo2"} and points["v-i0foo1"].paired_with == ["v-i0foo2"]
    for p in points.values():
        for phase, name, mt in p.rows():
            # co-located: only requests with the partner under load count (overlap), up to 12
            assert mt.repetitions == 3 and (mt.completed == 12 if phase == "solo" else 0 < mt.completed <= 12)
    state = read_run_state(tmp_path / "v" / "runs" / "v-i0foo2" / "colocated" / "run.json")
    assert set(state.workers) == {"a@v-i0foo2", "b@v-i0foo2"} and state.status == "completed"
    assert (tmp_path / "v" / "runs" / "v-i0foo2" / "solo-a" / "records" / "a@v-i0foo2.jsonl").is_file()
    # compare of the two points of this run: paired by repetition, no host shift to read
    import json

    from conftest import run_cli

    proc = run_cli(["compare", f"{tmp_path / 'v'}:v-i0foo1", f"{tmp_path / 'v'}:v-i0foo2", "--json"], cli_env, tmp_path)
    out = json.loads(proc.stdout)
    assert out["paired"] is True and out["host_shifts"] == []
    judged = [r for r in out["rows"] if r["intervals"][0] is not None]
    assert judged and all(r["p_values"] == [None] for r in judged)
    assert any("interleaved in one run" in s for s in out["overall"])
