"""Optimization variants on CPU: quantised weights with their true storage, graph mode, runtime
knobs recorded, and the quality check against hand-built outputs. The runs that spawn workers (or
the CLI) are marked slow; the rest are unit tests of the pieces."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest

from colobench import api
from colobench.analysis.quality import compare_probes
from colobench.specs import experiment_from_dict


def test_quality_metrics_by_hand():
    ref = {"generated": np.array([[1, 2, 3, 4], [5, 6, 7, 8]]),
           "eval_logprobs": np.log(np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]))}
    var = {"generated": np.array([[1, 2, 9, 9], [5, 6, 7, 8]]),
           "eval_logprobs": np.log(np.array([[0.5, 0.5], [0.6, 0.4], [0.7, 0.3]]))}
    q = compare_probes(ref, var)
    assert q["token_agreement"] == 6 / 8
    assert (q["first_divergence_min"], q["first_divergence_mean"]) == (2, 3.0)  # rows diverge at 2 and never (4)
    assert q["top1_agreement"] == pytest.approx(1 / 3 * 2)  # positions 0 (tie, argmax 0 both) and 1 agree
    kl = [0.0, 0.9 * np.log(0.9 / 0.6) + 0.1 * np.log(0.1 / 0.4), 0.2 * np.log(0.2 / 0.7) + 0.8 * np.log(0.8 / 0.3)]
    assert q["kl_divergence"] == pytest.approx(np.mean(kl))
    assert compare_probes(ref, ref)["kl_divergence"] == 0 and compare_probes(ref, ref)["token_agreement"] == 1


def test_stored_probe_keeps_differences_of_near_uniform_distributions(tmp_path: Path):
    """A random-weight model's next-token distribution is near uniform (about -10.4 nats over 32k
    tokens); bfloat16 versus float32 moves log-probabilities by ~1e-4, below float16's 0.008
    step there. Stored and reloaded, the difference must survive: top-1 disagrees where it
    should and KL is not rounded to zero."""
    from colobench.records import load_probe, save_probe

    base = np.full((2, 32000), -np.log(32000.0), dtype=np.float32)
    ref, var = base.copy(), base.copy()
    ref[:, 7] += 3e-4  # the reference prefers token 7, the variant token 9
    var[:, 9] += 3e-4
    gen = np.zeros((1, 4), dtype=np.int64)
    save_probe(tmp_path / "r.npz", {"generated": gen, "eval_logprobs": ref})
    save_probe(tmp_path / "v.npz", {"generated": gen, "eval_logprobs": var})
    q = compare_probes(load_probe(tmp_path / "r.npz"), load_probe(tmp_path / "v.npz"))
    assert q["top1_agreement"] == 0.0
    assert q["kl_divergence"] > 0


@pytest.mark.slow
def test_int8_sweep_with_quality_and_true_weight_bytes(tmp_path: Path, cache_dir: Path):
    spec = experiment_from_dict({"name": "q", "repetitions": 1, "cache_dir": str(cache_dir),
                                 "sweep": {"quantization": ["none", "int8"]},
                                 "instances": [{"model": "tiny", "device": "cpu"}],
                                 "workload": {"requests": 3, "output_tokens": 4, "prompt_tokens": 16}}, "t")
    summary = api.run_experiment(spec, out=tmp_path / "run").summary.to_json()
    by_id = {p["id"]: p for p in summary["points"]}
    none, int8 = by_id["q-none"], by_id["q-int8"]
    assert none["phases"]["solo"]["tiny"]["quality"] is None  # the reference
    q = int8["phases"]["solo"]["tiny"]["quality"]
    assert q["reference"] == "q-none" and 0 <= q["token_agreement"] <= 1 and q["kl_divergence"] >= 0
    assert int8["phases"]["solo"]["tiny"]["token_agreement"] == q["token_agreement"]
    assert set(q["vs_reference"]) >= {"output_throughput", "peak_memory_bytes", "energy_per_token_j", "weight_bytes"}
    # true storage: tiny's linear layers in int8 (1 byte + scales) beside its float32 embedding
    fp32, i8 = none["instances"]["tiny"]["weight_bytes"], int8["instances"]["tiny"]["weight_bytes"]
    assert fp32 == 4_588_160 * 4 and int8["instances"]["tiny"]["quantization"] == "int8"
    layers = 4_588_160 - 32000 * 128 - 128 * 5  # parameters outside the embedding and the norms
    assert fp32 - 3 * layers <= i8 <= fp32 + 32000 * 128 * 2  # layers shrink 4x; lm_head gets its own int8 copy


@pytest.mark.slow
def test_reference_instance_in_one_run(tmp_path: Path, cache_dir: Path):
    spec = experiment_from_dict({"name": "ref", "repetitions": 1, "solo_baselines": False, "cache_dir": str(cache_dir),
                                 "workload": {"requests": 2, "output_tokens": 4, "prompt_tokens": 8},
                                 "instances": [{"name": "fp32", "model": "tiny", "device": "cpu"},
                                               {"name": "i8", "model": "tiny", "device": "cpu", "quantization": "int8",
                                                "reference": "fp32"}]}, "t")
    q = api.run_experiment(spec, out=tmp_path / "run").summary.point().metrics("colocated", "i8").quality
    assert q.reference == "fp32" and q.generated_tokens == 4 * 32
    with pytest.raises(Exception, match="reference 'nobody'"):
        experiment_from_dict({"instances": [{"model": "tiny", "reference": "nobody"}]}, "t")


@pytest.mark.slow
def test_graph_mode_compiles_and_reports_warmup(tmp_path: Path, cache_dir: Path):
    spec = experiment_from_dict({"name": "g", "repetitions": 1, "cache_dir": str(cache_dir),
                                 "instances": [{"model": "tiny", "device": "cpu", "graph": "compiled"}],
                                 "workload": {"requests": 2, "output_tokens": 4, "prompt_tokens": 16}}, "t")
    point = api.run_experiment(spec, out=tmp_path / "run").summary.point()
    m = point.metrics("solo", "tiny")
    assert m.completed == 2 and m.failed == 0 and point.instances["tiny"].graph == "compiled"
    assert m.warmup_s > 0  # compilation happens in the warm-up and is reported apart


@pytest.mark.slow
def test_knobs_are_applied_and_recorded(tmp_path: Path):
    spec = experiment_from_dict({"name": "k", "repetitions": 1,
                                 "instances": [{"name": "a", "model": "fake", "backend": "fake",
                                                "env": {"TASK_QUEUE_ENABLE": "2"}, "cpu_affinity": [0]}],
                                 "workload": {"requests": 2, "output_tokens": 2}}, "t")
    out = tmp_path / "run"
    api.run_experiment(spec, out=out)
    info = json.loads((out / "runs" / "solo-a" / "run.json").read_text())["workers"]["a"]["info"]
    assert info["knobs"]["env"] == {"TASK_QUEUE_ENABLE": "2"} and info["knobs"]["cpu_affinity"] == [0]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["plan"]["runs"][0]["instances"][0]["env"] == {"TASK_QUEUE_ENABLE": "2"}


def test_npu_knobs_through_a_fake_torch_npu(monkeypatch):
    from colobench.devices.npu import NpuDevice

    calls = {}
    fake = types.SimpleNamespace(npu=types.SimpleNamespace(
        set_compile_mode=lambda jit_compile: calls.setdefault("jit_compile", jit_compile),
        config=types.SimpleNamespace(allow_internal_format=True)))
    monkeypatch.setitem(__import__("sys").modules, "torch_npu", fake)
    device = NpuDevice(0)
    applied = device.apply_knobs({"npu_jit_compile": False, "npu_allow_internal_format": False, "graph": "eager"})
    assert applied == {"npu_jit_compile": False, "npu_allow_internal_format": False}
    assert calls == {"jit_compile": False} and fake.npu.config.allow_internal_format is False
    assert device.apply_knobs({"npu_jit_compile": None}) == {}  # nothing asked, nothing touched


def test_npu_knobs_refused_on_other_devices():
    from colobench.errors import SpecError
    from colobench.plan import plan_experiment

    spec = experiment_from_dict({"instances": [{"model": "tiny", "device": "cpu", "npu_jit_compile": False}]}, "t")
    with pytest.raises(SpecError, match="npu_jit_compile applies to npu devices, not cpu"):
        plan_experiment(spec)


def test_variant_flags_become_axes():
    from conftest import flag_spec

    from colobench.sweep import expand

    spec, _ = flag_spec(["tiny"], {"--quantization": "none,int8", "--graph": "compiled",
                                   "--env": ["TASK_QUEUE_ENABLE=0,2", "CPU_AFFINITY_CONF=1"], "--cpu-affinity": "auto"})
    assert spec.sweep == {"instances.*.quantization": ["none", "int8"], "instances.*.env.TASK_QUEUE_ENABLE": ["0", "2"]}
    inst = spec.instances[0]
    assert inst.graph == "compiled" and inst.env == {"CPU_AFFINITY_CONF": "1"} and inst.cpu_affinity == "auto"
    assert [p.id for p in expand(spec)][-1] == "tiny-int8-task_queue_enable2"
    spec, _ = flag_spec(["tiny"], {"--cpu-affinity": "none,auto,0-1"})
    assert spec.sweep == {"instances.*.cpu_affinity": [None, "auto", [0, 1]]}


def test_idle_gaps_on_a_synthetic_trace():
    from colobench.analysis.profile import analyse, union_us

    assert union_us([(0, 10), (5, 15), (20, 30)]) == 25
    events = [{"ph": "X", "cat": "kernel", "name": "gemm", "ts": 0, "dur": 10},
              {"ph": "X", "cat": "kernel", "name": "gemm", "ts": 30, "dur": 10},
              {"ph": "X", "cat": "kernel", "name": "softmax", "ts": 60, "dur": 40},
              {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": 0, "dur": 4},
              {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": 25, "dur": 6},
              {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 0, "dur": 100, "tid": 1, "pid": 1}]
    out = analyse(events)
    assert out["basis"] == "device kernels"
    assert out["idle"] == {"window_us": 100, "busy_us": 60, "idle_us": 40, "idle_share": 0.4}
    assert out["launch"] == {"count": 2, "total_us": 10, "mean_us": 5.0}
    assert out["top_ops"][0] == {"name": "softmax", "total_us": 40, "calls": 1, "share": 40 / 60}
    cpu_only = analyse([{"ph": "X", "cat": "cpu_op", "name": "aten::linear", "ts": 0, "dur": 10, "tid": 1, "pid": 1},
                        {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 2, "dur": 5, "tid": 1, "pid": 1},
                        {"ph": "X", "cat": "cpu_op", "name": "aten::add", "ts": 20, "dur": 10, "tid": 1, "pid": 1}])
    assert cpu_only["idle"]["idle_share"] == pytest.approx(10 / 30)  # nested aten::mm is not counted twice


@pytest.mark.slow
def test_profile_command_on_cpu(tmp_path: Path, cli_env: dict):
    from conftest import run_cli

    proc = run_cli(["profile", "-m", "tiny", "-d", "cpu", "-n", "6", "-p", "16", "-o", str(tmp_path / "prof")],
                   cli_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (tmp_path / "prof" / "trace.json").stat().st_size > 1000 and (tmp_path / "prof" / "profile.json").is_file()
    assert 0 <= result["analysis"]["idle"]["idle_share"] < 1 and result["analysis"]["top_ops"]
    trap = result["async_timing_trap"]
    assert trap["synchronized_step_ms"] > 0 and trap["device"] == "cpu"
    assert "async-timing trap" in proc.stdout and "top operators" in proc.stdout


def test_graph_mode_on_ascend_goes_through_torchair(monkeypatch):
    import sys

    from colobench.backends.transformers_backend import enable_graph_mode
    from colobench.devices.npu import NpuDevice

    calls = {}

    class FakeTorchair:
        @staticmethod
        def CompilerConfig():
            return "config"

        @staticmethod
        def get_npu_backend(compiler_config):
            calls["config"] = compiler_config
            return "eager"  # a backend torch.compile accepts, standing in for the NPU one

    monkeypatch.setitem(sys.modules, "torch_npu", types.SimpleNamespace())
    monkeypatch.setitem(sys.modules, "torchair", FakeTorchair)

    def forward(x):
        return x

    model = types.SimpleNamespace(forward=forward, generation_config=types.SimpleNamespace())
    enable_graph_mode(model, NpuDevice(0).graph_mode())
    assert calls == {"config": "config"} and model.generation_config.cache_implementation == "static"
    assert model.generation_config.disable_compile is True
    assert model.forward is not forward and callable(model.forward)  # wrapped by torch.compile, not run here


@pytest.mark.slow
def test_quality_texts_side_by_side_with_a_real_tokenizer(tmp_path: Path, tokenizer_checkpoint: Path):
    spec = experiment_from_dict({"name": "txt", "repetitions": 1, "solo_baselines": False,
                                 "workload": {"requests": 2, "output_tokens": 4, "prompt_tokens": 8},
                                 "instances": [{"name": "ref", "model": str(tokenizer_checkpoint), "device": "cpu"},
                                               {"name": "i8", "model": str(tokenizer_checkpoint), "device": "cpu",
                                                "quantization": "int8", "reference": "ref"}]}, "t")
    result = api.run_experiment(spec, out=tmp_path / "run")
    q = result.summary.point().metrics("colocated", "i8").quality
    assert len(q.texts) == 4 and all(isinstance(t.variant, str) for t in q.texts)
    page = api.write_html_report(result.run_dir).read_text()
    assert "generated text, reference against variant" in page and "token agreement" in page
