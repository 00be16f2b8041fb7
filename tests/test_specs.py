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


def test_a_derived_name_never_takes_an_explicit_one():
    """Three instances declared, three measured: `fake-model-1` given and two `fake-model` derived
    used to merge two of them."""
    spec = experiment_from_dict({"instances": [{"model": "fake-model", "backend": "fake"},
                                               {"model": "fake-model", "backend": "fake"},
                                               {"model": "fake-model", "backend": "fake", "name": "fake-model-1"}]}, "t")
    names = spec.instance_names()
    assert len(set(names)) == 3 and names[2] == "fake-model-1"
    spec = experiment_from_dict({"instances": [{"model": "tiny"}, {"model": "x", "name": "tiny"}]}, "t")
    assert spec.instance_names() == ["tiny-1", "tiny"]


def test_sweep_points_with_the_same_id_keep_their_own():
    from colobench.sweep import expand

    env = experiment_from_dict({"instances": [{"model": "tiny", "env": {"X": ["a b", "ab"]}}]}, "t")
    ids = [p.id for p in expand(env)]
    assert len(set(ids)) == 2 and ids[1] == ids[0] + "-2"
    folders = experiment_from_dict({"instances": [{"model": "tiny"}],
                                    "sweep": {"instances.*.model": ["/a/tiny", "/b/tiny"]}}, "t")
    assert [p.id for p in expand(folders)] == ["colocation-tiny", "colocation-tiny-2"]
    assert [p.id for p in expand(folders)] == [p.id for p in expand(folders)]  # stable: --resume finds them


def test_urls_and_headers_are_checked_where_they_are_given():
    from colobench.specs.models import checked_headers, checked_http_url

    assert checked_http_url("http://[::1]:8000/v1", "base_url") == "http://[::1]:8000/v1"
    assert checked_http_url("http://127.0.0.1:{port}/v1", "base_url")  # a managed server's, before its port
    for bad, fragment in [("http://h:abc/v1", "not a valid URL"), ("http://[::1/v1", "Invalid IPv6"),
                          ("ftp://h/v1", "must start with http"), ("http://h/v1\n", "control character"),
                          ("http://h:0/v1", "port 0")]:
        with pytest.raises(ValueError, match=fragment):
            checked_http_url(bad, "base_url")
    assert checked_headers({"X-Key": 12345678}) == {"X-Key": "12345678"}
    for bad, fragment in [({"X-A": "a\r\nB: c"}, "control character"), ({"X-A": "\u20ac"}, "Latin-1"),
                          ({"X A": "b"}, "not an HTTP header name")]:
        with pytest.raises(ValueError, match=fragment) as err:
            checked_headers(bad)
        assert "\u20ac" not in str(err.value) and "B: c" not in str(err.value)  # never the value itself
