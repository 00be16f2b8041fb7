"""Architecture presets: the real shapes of common models, with random weights.

Decode speed, memory and bandwidth depend on a model's shapes and dtype, not on the values of
its weights, so a random-weight model with Llama-3.2-1B's exact configuration times like
Llama-3.2-1B without anyone downloading it. A preset is built once (random init is slow: about
18 s for the 1B shape on a CPU), saved with `save_pretrained` into a cache folder, and loaded
from there afterwards like any local checkpoint (well under a second).

Prompts for presets are token ids drawn from the vocabulary: no tokenizer and no hub needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

CACHE_ENV = "COLOBENCH_CACHE"
BUILD_INFO = "colobench_preset.json"


@dataclass(frozen=True)
class Preset:
    """A model architecture to build with random weights."""

    name: str
    model_type: str  # transformers config class key: llama, qwen2, mistral
    reference: str  # the public model whose shapes this copies
    config: dict[str, Any] = field(default_factory=dict)
    save_dtype: str = "bfloat16"  # on-disk dtype; loading converts to the run's dtype

    def approx_params(self) -> int:
        """Parameter count from the shapes (embeddings, attention, MLP, norms, head)."""
        return approx_params(self.config, self.model_type)


def approx_params(c: dict[str, Any], model_type: str = "llama") -> int:
    """A decoder's parameter count from its config (Llama-family shapes: embeddings, attention,
    gated MLP, norms, head). KeyError when the config lacks a shape."""
    h, layers, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    heads = c["num_attention_heads"]
    head_dim = c.get("head_dim") or h // heads
    kv_heads = c.get("num_key_value_heads") or heads
    q = h * heads * head_dim
    kv = 2 * h * kv_heads * head_dim
    o = heads * head_dim * h
    bias = (heads + 2 * kv_heads) * head_dim if model_type == "qwen2" else 0
    mlp = 3 * h * c["intermediate_size"]
    per_layer = q + kv + o + bias + mlp + 2 * h
    head = 0 if c.get("tie_word_embeddings") else vocab * h
    return vocab * h + layers * per_layer + h + head


def kv_values_per_token(c: dict[str, Any]) -> int:
    """Key and value numbers stored per token of context, over all layers."""
    heads = c["num_attention_heads"]
    head_dim = c.get("head_dim") or c["hidden_size"] // heads
    return 2 * c["num_hidden_layers"] * (c.get("num_key_value_heads") or heads) * head_dim


_LLAMA3_ROPE = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192, "rope_theta": 500000.0}

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "tiny", "llama", "(a few-million-parameter Llama for CPU tests)",
            dict(vocab_size=32000, hidden_size=128, intermediate_size=512, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
                 tie_word_embeddings=True, bos_token_id=1, eos_token_id=2),
            save_dtype="float32",
        ),
        Preset(
            "qwen2.5-0.5b", "qwen2", "Qwen/Qwen2.5-0.5B",
            dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                 num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                 rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                 tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151643),
        ),
        Preset(
            "llama-3.2-1b", "llama", "meta-llama/Llama-3.2-1B",
            dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                 num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=131072,
                 rms_norm_eps=1e-5, rope_parameters=_LLAMA3_ROPE, tie_word_embeddings=True,
                 bos_token_id=128000, eos_token_id=128001),
        ),
        Preset(
            "llama-3.2-3b", "llama", "meta-llama/Llama-3.2-3B",
            dict(vocab_size=128256, hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
                 num_attention_heads=24, num_key_value_heads=8, head_dim=128, max_position_embeddings=131072,
                 rms_norm_eps=1e-5, rope_parameters=_LLAMA3_ROPE, tie_word_embeddings=True,
                 bos_token_id=128000, eos_token_id=128001),
        ),
        Preset(
            "mistral-7b", "mistral", "mistralai/Mistral-7B-v0.3",
            dict(vocab_size=32768, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=32768,
                 rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                 sliding_window=None, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2),
        ),
        Preset(
            "llama-3.1-8b", "llama", "meta-llama/Llama-3.1-8B",
            dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=131072,
                 rms_norm_eps=1e-5, rope_parameters={**_LLAMA3_ROPE, "factor": 8.0}, tie_word_embeddings=False,
                 bos_token_id=128000, eos_token_id=128001),
        ),
    ]
}


def default_cache_dir() -> Path:
    """`$COLOBENCH_CACHE`, else `~/.cache/colobench`."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "colobench"


def _fingerprint(preset: Preset) -> str:
    """Changes whenever the shapes or the on-disk dtype change, so a stale build is never reused."""
    blob = json.dumps({"type": preset.model_type, "config": preset.config, "dtype": preset.save_dtype}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def preset_path(name: str, cache_dir: Path | None = None) -> Path:
    preset = PRESETS[name]
    return (cache_dir or default_cache_dir()) / "presets" / f"{name}-{_fingerprint(preset)}"


def is_built(name: str, cache_dir: Path | None = None) -> bool:
    return (preset_path(name, cache_dir) / BUILD_INFO).is_file()


def build_config(preset: Preset) -> Any:
    from transformers import AutoConfig

    return AutoConfig.for_model(preset.model_type, **preset.config)


def ensure_preset(name: str, cache_dir: Path | None = None) -> Path:
    """Return the folder of a built preset, building and saving it first if needed.

    Safe when several processes ask at once: a file lock serialises builders and the folder
    appears atomically (built in a temporary folder, then renamed).
    """
    import torch
    from transformers import AutoModelForCausalLM

    preset = PRESETS[name]
    target = preset_path(name, cache_dir)
    if (target / BUILD_INFO).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / BUILD_INFO).is_file():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        try:
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(build_config(preset), dtype=getattr(torch, preset.save_dtype))
            model.generation_config.pad_token_id = preset.config.get("eos_token_id")
            model.save_pretrained(tmp)
            params = sum(p.numel() for p in model.parameters())
            del model
            (tmp / BUILD_INFO).write_text(json.dumps(
                {"preset": name, "reference": preset.reference, "parameters": params,
                 "fingerprint": _fingerprint(preset), "save_dtype": preset.save_dtype}, indent=2))
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target
