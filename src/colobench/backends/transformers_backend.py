"""In-process Hugging Face transformers model on cpu, cuda:N or npu:N.

Static batching with exact output lengths: `min_new_tokens = max_new_tokens = N`, so the
end-of-sequence token is suppressed and every request produces exactly N tokens, as the
workload asked. Greedy decoding (no sampling cost in the step time).

Per-step timing: `generate` calls its stopping criteria once per decoding step, right after the
new tokens are appended. `_StepClock` is such a criterion that never stops anything; it
synchronises the device and reads the clock, so step i's timestamp is when token i truly
existed. (transformers' own loop already waits on the device every step to test for
end-of-sequence, so the extra synchronise costs nothing measurable.)
"""

from __future__ import annotations

from typing import Any

from colobench.clock import now_ns
from colobench.devices import Device
from colobench.workload.synthetic import Batch


def torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def weight_bytes(model: Any) -> int:
    """Bytes of parameters and buffers as stored (what a decode step must read)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    return total + sum(b.numel() * b.element_size() for b in model.buffers())


def architecture(config: Any) -> dict[str, Any]:
    """The shapes that decide decode cost: layers, KV heads, head dim, KV bytes per token."""
    heads = getattr(config, "num_attention_heads", None)
    hidden = getattr(config, "hidden_size", None)
    head_dim = getattr(config, "head_dim", None) or (hidden // heads if hidden and heads else None)
    return {
        "model_type": getattr(config, "model_type", None),
        "num_hidden_layers": getattr(config, "num_hidden_layers", None),
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "num_key_value_heads": getattr(config, "num_key_value_heads", heads),
        "head_dim": head_dim,
        "vocab_size": getattr(config, "vocab_size", None),
        "max_position_embeddings": getattr(config, "max_position_embeddings", None),
    }


class _StepClock:
    """A stopping criterion that never stops: it timestamps each decoding step after the device
    has finished it."""

    def __init__(self, synchronize):
        self.synchronize = synchronize
        self.step_ns: list[int] = []

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        self.synchronize()
        self.step_ns.append(now_ns())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


class TransformersBackend:
    def __init__(self, model_path: str, device: Device, dtype: str):
        self.model_path, self.device, self.dtype = model_path, device, dtype
        self.model: Any = None
        self.vocab_size = 0
        self._pad_id = 0

    def start(self) -> dict[str, Any]:
        import torch
        from transformers import AutoModelForCausalLM

        self.device.reset_peak_memory()
        model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=torch_dtype(self.dtype))
        self.model = model.to(self.device.torch_device()).eval()
        self.device.synchronize()
        config = self.model.config
        self.vocab_size = int(config.vocab_size)
        eos = self.model.generation_config.eos_token_id
        pad = self.model.generation_config.pad_token_id
        self._pad_id = pad if pad is not None else (eos[0] if isinstance(eos, list) else eos) or 0
        arch = architecture(config)
        dtype_bytes = torch.finfo(torch_dtype(self.dtype)).bits // 8
        kv = None
        if arch["num_hidden_layers"] and arch["num_key_value_heads"] and arch["head_dim"]:
            kv = 2 * arch["num_hidden_layers"] * arch["num_key_value_heads"] * arch["head_dim"] * dtype_bytes
        info = self.device.info()
        return {
            "backend": "transformers",
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "weight_bytes": weight_bytes(self.model),
            "dtype": self.dtype,
            "kv_cache_bytes_per_token": kv,
            "architecture": arch,
            "device": info.__dict__,
            "torch_threads": torch.get_num_threads(),
            "load_peak_memory_bytes": self.device.peak_memory_bytes(),
        }

    def generate(self, batch: Batch) -> list[int]:
        import torch
        from transformers import StoppingCriteriaList

        clock = _StepClock(self.device.synchronize)
        n = batch.output_tokens
        with torch.inference_mode():
            ids = torch.tensor(batch.prompts, dtype=torch.long).to(self.device.torch_device())
            out = self.model.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                do_sample=False, stopping_criteria=StoppingCriteriaList([clock]), pad_token_id=self._pad_id,
            )
        generated = out.shape[1] - ids.shape[1]
        if generated != n or len(clock.step_ns) != n:
            raise RuntimeError(f"asked for {n} tokens, got {generated} ({len(clock.step_ns)} timed steps)")
        return clock.step_ns

    def stop(self) -> None:
        self.model = None
