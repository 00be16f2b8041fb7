"""In-process Hugging Face transformers model on cpu, cuda:N or npu:N.

Static batching with exact output lengths: `min_new_tokens = max_new_tokens = N`, so the
end-of-sequence token is suppressed and every request produces exactly N tokens, as the
workload asked. Greedy decoding (no sampling cost in the step time). Prompts of different
lengths in one batch are left-padded with an attention mask, as any static-batching server
does; the batch runs to its longest output and shorter requests finish at their own step.

Streaming (closed and open loop) uses transformers' continuous-batching manager: a background
thread schedules requests into a paged KV cache and decodes them together; requests join and
leave between steps. Its KV cache is sized explicitly (`kv_cache_tokens`), never from free
memory, so two co-located workers cannot each grab most of the RAM. Token timestamps are the
manager's own, taken in its thread when a step's tokens reach the host.

Per-step timing: `generate` calls its stopping criteria once per decoding step, right after the
new tokens are appended. `_StepClock` is such a criterion that never stops anything; it
synchronises the device and reads the clock, so step i's timestamp is when token i truly
existed. (transformers' own loop already waits on the device every step to test for
end-of-sequence, so the extra synchronise costs nothing measurable.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np

from colobench.backends.base import Completion
from colobench.clock import now_ns
from colobench.devices import Device, GraphMode, kind_of
from colobench.workload.synthetic import Batch, Request, token_id_range

STREAM_PAGE_TOKENS = 64
STREAM_MIN_BATCH_TOKENS = 256


def torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def weight_bytes(model: Any) -> int:
    """Bytes of the model's tensors as stored (what a decode step must read). Quantised weights
    are tensor subclasses holding int8/int4 data and scales: they are opened up
    (`__tensor_flatten__`) and their inner tensors counted, because library footprint helpers
    count some of them at their dequantised size. Tied tensors are counted once."""
    seen: set[tuple[int, int, Any]] = set()
    total = 0

    def visit(t: Any) -> None:
        nonlocal total
        if hasattr(t, "__tensor_flatten__"):
            names, _ = t.__tensor_flatten__()
            for name in names:
                visit(getattr(t, name))
            return
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), t.dtype)
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()

    for tensor in model.state_dict(keep_vars=True).values():
        visit(tensor.data if hasattr(tensor, "data") and not hasattr(tensor, "__tensor_flatten__") else tensor)
    return total


def quantize_weights(model: Any, method: str) -> None:
    """Weight-only int8 / int4 through optimum-quanto (CPU and CUDA)."""
    try:
        from optimum.quanto import freeze, qint4, qint8, quantize
    except ImportError:
        raise RuntimeError("quantization needs optimum-quanto (pip install optimum-quanto)") from None
    quantize(model, weights={"int8": qint8, "int4": qint4}[method])
    freeze(model)


def enable_graph_mode(model: Any, graph: GraphMode) -> None:
    """Static KV cache + torch.compile of the forward pass, as the device says: transformers' own
    compile hook with the device's mode (CUDA graphs on NVIDIA with `reduce-overhead`, Inductor on
    CPU), or the device's own torch.compile backend (torchair on Ascend, through the CANN graph
    engine) applied here."""
    import torch
    from transformers import CompileConfig

    model.generation_config.cache_implementation = "static"
    if graph.backend is not None:
        model.forward = torch.compile(model.forward, backend=graph.backend, dynamic=False)
        model.generation_config.disable_compile = True  # compiled here, not again by generate
        return
    config = CompileConfig(fullgraph=False, mode=graph.mode)
    config._compile_all_devices = graph.compile_all_devices
    model.generation_config.compile_config = config


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
    def __init__(self, model_path: str, device: Device, dtype: str, quantization: str = "none", graph: str = "eager",
                 attn_implementation: str | None = None):
        self.model_path, self.device, self.dtype = model_path, device, dtype
        self.quantization, self.graph, self.attn_implementation = quantization, graph, attn_implementation
        self.model: Any = None
        self.vocab_size = 0
        self._pad_id = 0

    def start(self) -> dict[str, Any]:
        import torch
        from transformers import AutoModelForCausalLM

        self.device.reset_peak_memory()
        extra = {"attn_implementation": self.attn_implementation} if self.attn_implementation else {}
        model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=torch_dtype(self.dtype), **extra)
        self.model = model.to(self.device.torch_device()).eval()
        self._parameters = sum(p.numel() for p in self.model.parameters())  # before quantisation unties weights
        if self.quantization != "none":
            unsupported = kind_of(self.device.kind).weight_quantization
            if unsupported:
                raise RuntimeError(unsupported)
            quantize_weights(self.model, self.quantization)
        if self.graph == "compiled":
            enable_graph_mode(self.model, self.device.graph_mode())
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
            "parameters": self._parameters,
            "weight_bytes": weight_bytes(self.model),
            "dtype": self.dtype,
            "quantization": self.quantization,
            "graph": self.graph,
            "attn_implementation": getattr(self.model.config, "_attn_implementation", None),
            "kv_cache_bytes_per_token": kv,
            "architecture": arch,
            "device": info.__dict__,
            "torch_threads": torch.get_num_threads(),
            "load_peak_memory_bytes": self.device.peak_memory_bytes(),
        }

    def generate(self, batch: Batch) -> list[Completion]:
        import torch
        from transformers import StoppingCriteriaList

        clock = _StepClock(self.device.synchronize)
        n = batch.output_tokens
        longest = max(len(p) for p in batch.prompts)
        ids = torch.full((len(batch.prompts), longest), self._pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, prompt in enumerate(batch.prompts):  # left padding: every prompt ends at the last column
            ids[row, longest - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
            mask[row, longest - len(prompt):] = 1
        with torch.inference_mode():
            dev = self.device.torch_device()
            ids, mask = ids.to(dev), mask.to(dev)
            out = self.model.generate(
                ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                do_sample=False, stopping_criteria=StoppingCriteriaList([clock]), pad_token_id=self._pad_id,
            )
        generated = out.shape[1] - ids.shape[1]
        if generated != n or len(clock.step_ns) != n:
            raise RuntimeError(f"asked for {n} tokens, got {generated} ({len(clock.step_ns)} timed steps)")
        # request i of the batch owns the first `output_tokens` steps
        return [Completion.of_steps(clock.step_ns[:r.output_tokens]) for r in batch.requests]

    def memory_stats(self) -> dict[str, int] | None:
        return self.device.memory_stats()

    def quality_probe(self, prompts: int = 4, new_tokens: int = 32, eval_tokens: int = 64,
                      seed: int = 1234) -> dict[str, Any]:
        """Greedy outputs for fixed prompts, and next-token log-probabilities over a fixed text:
        what the quality check compares between variants (same seed, same ids, every variant)."""
        import torch

        low, high = token_id_range(self.vocab_size)
        rng = np.random.default_rng(seed)
        dev = self.device.torch_device()
        with torch.inference_mode():
            ids = torch.tensor(rng.integers(low, high, size=(prompts, 32)), dtype=torch.long).to(dev)
            out = self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                      min_new_tokens=new_tokens, do_sample=False, pad_token_id=self._pad_id)
            text = torch.tensor(rng.integers(low, high, size=(1, eval_tokens)), dtype=torch.long).to(dev)
            logits = self.model(text).logits[0].float()
            logprobs = torch.log_softmax(logits, dim=-1)
        generated = out[:, ids.shape[1]:].cpu().numpy()
        probe = {"generated": generated, "eval_logprobs": logprobs.cpu().numpy()}
        tokenizer = self._tokenizer()
        if tokenizer is not None:  # a real checkpoint: the text, for the report's side-by-side view
            probe["texts"] = np.array([tokenizer.decode(row, skip_special_tokens=True) for row in generated])
        return probe

    def _tokenizer(self) -> Any:
        if not (Path(self.model_path) / "tokenizer_config.json").is_file():
            return None
        try:
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(self.model_path)
        except Exception:
            return None

    def start_streaming(self, max_concurrency: int, max_request_tokens: int, kv_cache_tokens: int) -> dict[str, Any]:
        from transformers import GenerationConfig
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        page = STREAM_PAGE_TOKENS
        # whole pages per request, plus one spare page per request for partially filled pages
        num_blocks = -(-kv_cache_tokens // page) + max_concurrency
        max_batch_tokens = max(STREAM_MIN_BATCH_TOKENS, min(max_request_tokens + max_concurrency, 8192))
        config = ContinuousBatchingConfig(
            page_size=page, num_blocks=num_blocks, max_batch_tokens=max_batch_tokens,
            max_requests_per_batch=max_concurrency, allow_block_sharing=False,
        )
        generation = GenerationConfig(do_sample=False, eos_token_id=-1, max_new_tokens=max_request_tokens)
        self._manager = self.model.init_continuous_batching(generation_config=generation,
                                                            continuous_batching_config=config)
        self._manager.start()
        self._stream_ids = 0
        return {"engine": "transformers-continuous-batching", "kv_cache_tokens": num_blocks * page,
                "page_tokens": page, "max_batch_tokens": max_batch_tokens, "max_concurrency": max_concurrency}

    async def request(self, request: Request) -> Completion:
        results: asyncio.Queue = asyncio.Queue()
        self._stream_ids += 1
        rid = f"r{request.request_id}-{self._stream_ids}"
        self._manager.register_result_handler(rid, results.put_nowait)
        added = self._manager.add_request(list(request.prompt), request_id=rid, max_new_tokens=request.output_tokens,
                                          streaming=True, record_timestamps=True, eos_token_id=-1)
        if added is None:
            return Completion.failed("RuntimeError: continuous-batching manager refused the request (stopped or "
                                     "queue full)")
        while True:
            result = await results.get()
            if result.error:
                return Completion.failed(f"RuntimeError: generation failed: {result.error}")
            if result.is_finished():
                # the manager's perf_counter seconds -> the records' ns clock
                return Completion.of_steps([int(t * 1e9) for t in result.timestamps or []])

    def stop_streaming(self) -> None:
        manager, self._manager = getattr(self, "_manager", None), None
        if manager is not None:
            manager.stop(block=True, timeout=60)
            manager.destroy()

    def stop(self) -> None:
        self.stop_streaming()
        self.model = None
