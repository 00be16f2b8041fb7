from pathlib import Path

import pytest

from colobench.errors import SpecError
from colobench.models.presets import PRESETS, ensure_preset, is_built, preset_path
from colobench.plan import check_plan, plan_experiment
from colobench.specs import experiment_from_dict


def test_preset_parameter_counts_match_the_real_models():
    # published parameter counts of the models whose shapes the presets copy
    assert PRESETS["llama-3.2-1b"].approx_params() == 1_235_814_400
    assert PRESETS["qwen2.5-0.5b"].approx_params() == 494_032_768
    assert PRESETS["llama-3.2-3b"].approx_params() == 3_212_749_824
    assert PRESETS["mistral-7b"].approx_params() == 7_248_023_552
    assert PRESETS["llama-3.1-8b"].approx_params() == 8_030_261_248
    assert 1e6 < PRESETS["tiny"].approx_params() < 10e6


def test_build_once_then_reuse(cache_dir: Path):
    path = ensure_preset("tiny", cache_dir)
    assert is_built("tiny", cache_dir) and (path / "config.json").is_file()
    stamp = (path / "config.json").stat().st_mtime_ns
    assert ensure_preset("tiny", cache_dir) == path
    assert (path / "config.json").stat().st_mtime_ns == stamp
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path)
    assert sum(p.numel() for p in model.parameters()) == PRESETS["tiny"].approx_params()


def test_plan_splits_cores_and_names_runs(tmp_path: Path):
    spec = experiment_from_dict({"instances": [{"model": "tiny"}, {"model": "tiny", "cpu_threads": 3}],
                                 "cache_dir": str(tmp_path)}, "t")
    plan = plan_experiment(spec, auto_device="cpu", cpu_count=8)
    assert [r.run_id for r in plan.runs] == ["solo-tiny-1", "solo-tiny-2", "colocated"]
    assert [i.cpu_threads for i in plan.instances] == [4, 3]
    assert plan.instances[0].dtype == "float32" and plan.instances[0].device == "cpu"
    assert plan.instances[0].model_path == str(preset_path("tiny", tmp_path))
    assert plan.runs[0].instances[0].cpu_threads == plan.runs[2].instances[0].cpu_threads  # same as co-located


def test_plan_auto_device_and_dtype():
    spec = experiment_from_dict({"instances": [{"model": "llama-3.2-1b"}, {"model": "tiny", "device": "npu"}]}, "t")
    plan = plan_experiment(spec, auto_device="cuda:0", cpu_count=2)
    assert [(i.device, i.dtype) for i in plan.instances] == [("cuda:0", "bfloat16"), ("npu:0", "float16")]
    assert [i.cpu_threads for i in plan.instances] == [1, 1]


def test_single_instance_is_one_solo_run():
    plan = plan_experiment(experiment_from_dict({"instances": [{"model": "tiny"}]}, "t"))
    assert [r.run_id for r in plan.runs] == ["solo-tiny"]


@pytest.mark.parametrize("instance, field, fragment", [
    ({"model": "./no/such/ckpt"}, "instances[0].model", "no such checkpoint folder"),
    ({"model": "tiny", "device": "cuda:7"}, "instances[0].device", "device not available"),
    ({"model": "tiny", "device": "npu:0"}, "instances[0].device", "device not available"),
    ({"model": "tiny", "workload": {"prompt_tokens": 8000, "output_tokens": 500}}, "instances[0].workload",
     "exceed the model's context of 8192"),
])
def test_preflight_errors(instance, field, fragment):
    import torch

    if "cuda" in instance.get("device", "") and torch.cuda.device_count() > 7:
        pytest.skip("host has 8 GPUs")
    plan = plan_experiment(experiment_from_dict({"instances": [instance]}, "x.yaml"))
    with pytest.raises(SpecError) as info:
        check_plan(plan, "x.yaml")
    assert str(info.value).startswith(f"x.yaml: {field}: ") and fragment in str(info.value)


def test_checkpoint_without_config(tmp_path: Path):
    plan = plan_experiment(experiment_from_dict({"instances": [{"model": str(tmp_path)}]}, "t"))
    with pytest.raises(SpecError, match="no config.json"):
        check_plan(plan, "t")


def test_memory_fractions_split_a_card():
    def shares(*instances):
        spec = experiment_from_dict({"instances": list(instances)}, "exp.yaml")
        return [i.memory_share for i in plan_experiment(spec, cpu_count=4).points[0].instances]

    assert shares({"model": "tiny", "device": "cuda:0"}, {"model": "tiny", "device": "cuda:0"}) == [0.5, 0.5]
    # a 7B next to a 1B: the big one takes 0.7, the rest is left to the other instances on that card
    assert shares({"model": "tiny", "device": "cuda:0", "memory_fraction": 0.7}, {"model": "tiny", "device": "cuda:0"},
                  {"model": "tiny", "device": "cuda:1"}) == [0.7, pytest.approx(0.3), 1.0]
    assert shares({"model": "tiny", "device": "npu:0", "memory_fraction": 0.4}) == [0.4]  # a cap when alone too
    with pytest.raises(SpecError, match=r"instances on cuda:0 ask for memory_fraction 1.2 in all \(at most 1\)"):
        shares({"model": "tiny", "device": "cuda:0", "memory_fraction": 0.7},
               {"model": "tiny", "device": "cuda:0", "memory_fraction": 0.5})
    with pytest.raises(SpecError, match=r"instances\[1\] on cuda:0 has no memory left"):
        shares({"model": "tiny", "device": "cuda:0", "memory_fraction": 1.0}, {"model": "tiny", "device": "cuda:0"})
