from pathlib import Path

import pytest

from colobench.errors import SpecError
from colobench.specs import ExperimentSpec, InstanceSpec, experiment_from_dict, load_experiment_yaml


def test_defaults_and_derived_names():
    spec = experiment_from_dict({"instances": [{"model": "tiny"}, {"model": "tiny"}, {"model": "./ckpt/Llama-3.2-1B/"}]},
                                "t")
    assert spec.instance_names() == ["tiny-1", "tiny-2", "llama-3.2-1b"]
    assert spec.repetitions == 5 and spec.order == "interleaved"
    assert spec.workload.prompt_tokens == 128 and spec.workload.warmup_requests is None


def test_instance_workload_overrides_only_given_fields():
    spec = experiment_from_dict({
        "workload": {"prompt_tokens": 64, "output_tokens": 8},
        "instances": [{"model": "tiny"}, {"model": "tiny", "workload": {"prompt_tokens": 512}}],
    }, "t")
    assert spec.workload_for(0).prompt_tokens == 64
    assert spec.workload_for(1).prompt_tokens == 512
    assert spec.workload_for(1).output_tokens == 8


def test_specs_are_frozen():
    spec = ExperimentSpec(instances=[InstanceSpec(model="tiny")])
    with pytest.raises(Exception):
        spec.repetitions = 7  # type: ignore[misc]


@pytest.mark.parametrize("data, field, fragment", [
    ({"instances": [{"model": "tiny", "colour": "red"}]}, "instances[0].colour", "unknown key"),
    ({"instances": [{"model": "tiny"}], "workload": {"prompt_tokens": -5}}, "workload.prompt_tokens", "greater than 0"),
    ({"instances": [{"model": "tiny"}], "workload": {"output_tokens": "many"}}, "workload.output_tokens", "integer"),
    ({"instances": [{"model": "tiny", "workload": {"prompt_tokens": 0}}]}, "instances[0].workload.prompt_tokens",
     "greater than 0"),
    ({"instances": [{"model": "tiny", "device": "gpu0"}]}, "instances[0].device", "device must be"),
    ({"instances": []}, "instances", "at least 1"),
    ({"instances": [{"model": "tiny", "name": "a"}, {"model": "tiny", "name": "a"}]}, "", "unique"),
    ({"workload": {}}, "instances", "required"),
])
def test_bad_values_name_field_and_value(data, field, fragment):
    with pytest.raises(SpecError) as info:
        experiment_from_dict(data, "exp.yaml")
    message = str(info.value)
    assert message.startswith("exp.yaml: ")
    assert field in message
    assert fragment in message
    assert "\n" not in message


def test_bad_value_is_quoted():
    with pytest.raises(SpecError) as info:
        experiment_from_dict({"instances": [{"model": "tiny"}], "workload": {"prompt_tokens": -5}}, "exp.yaml")
    assert "(got -5)" in str(info.value)


def test_yaml_errors(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("instances:\n  - model: tiny\n   device: cpu\n")
    with pytest.raises(SpecError) as info:
        load_experiment_yaml(bad)
    assert str(info.value).startswith(f"{bad}:3:") and "malformed YAML" in str(info.value)
    with pytest.raises(SpecError, match="not found"):
        load_experiment_yaml(tmp_path / "missing.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(SpecError, match="empty"):
        load_experiment_yaml(empty)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="mapping"):
        load_experiment_yaml(listy)


def test_example_files_validate():
    root = Path(__file__).resolve().parents[1] / "examples"
    files = sorted(root.glob("*.yaml"))
    assert files, "examples/ should hold experiment files"
    for path in files:
        spec = load_experiment_yaml(path)
        assert spec.instances
