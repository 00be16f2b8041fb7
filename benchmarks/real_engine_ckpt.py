"""Build a tiny Llama-shaped checkpoint with a real (trained) BPE tokenizer, offline.

Used by benchmarks/real_engine.sh; runs in the vLLM venv (it needs torch, transformers and
tokenizers, which vLLM brings). Nothing is downloaded:

- the tokenizer is a byte-level BPE trained here with the `tokenizers` library on English text
  found on this machine (the docstrings of Python's own standard library), with a small vocabulary
  so that common words are often several tokens (as with a real model's rarer words);
- the model is a random-weight LlamaForCausalLM (hidden 128, 2 layers, 4 heads) saved with
  `save_pretrained` (safetensors, config.json, generation_config.json) in the same folder,
  with the tokenizer files and a chat template.

    python benchmarks/real_engine_ckpt.py OUT_DIR [--vocab 1200] [--seed 0]

Prints one JSON line: the folder, vocabulary size, parameters and the mean tokens per word of a
sample of common English words.
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
import sysconfig
from pathlib import Path

SPECIALS = ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
SAMPLE = ("the of and to in is that for it as with was on be by this are from at or an have not "
          "which but all were when we there can more one about would their what so if out time "
          "people year could them other than then now look only come over think also back after "
          "use two how our work first well way even new want because any these give day most").split()


def stdlib_text(limit_chars: int = 4_000_000) -> list[str]:
    """Docstrings of the standard library's modules, classes and functions: English prose."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out: list[str] = []
    total = 0
    for path in sorted(root.rglob("*.py")):
        if any(p in path.parts for p in ("test", "tests", "idlelib", "site-packages", "lib2to3")):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="ignore"))
        except (SyntaxError, ValueError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 40:
                    out.append(doc)
                    total += len(doc)
        if total >= limit_chars:
            break
    if total < 100_000:
        raise SystemExit(f"too little text found under {root} ({total} characters)")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--max-len", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    a.out.mkdir(parents=True, exist_ok=True)
    texts = stdlib_text()
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=a.vocab, special_tokens=SPECIALS, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    # like Llama's tokenizers: encoding a text adds <s> (a chat prompt gets it from the template)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", bos)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", additional_special_tokens=SPECIALS[3:])
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = a.max_len
    fast.save_pretrained(a.out)

    vocab = len(fast)
    torch.manual_seed(a.seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=a.hidden, intermediate_size=4 * a.hidden,
                      num_hidden_layers=a.layers, num_attention_heads=a.heads,
                      num_key_value_heads=a.kv_heads, head_dim=a.hidden // a.heads,
                      max_position_embeddings=a.max_len, tie_word_embeddings=True,
                      bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                      pad_token_id=None, rms_norm_eps=1e-6)
    cfg.dtype = "bfloat16"  # what vLLM's CPU build serves by default
    model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
    model.save_pretrained(a.out, safe_serialization=True)
    GenerationConfig(bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                     do_sample=False).save_pretrained(a.out)

    per_word = [len(fast(" " + w, add_special_tokens=False)["input_ids"]) for w in SAMPLE]
    print(json.dumps({"checkpoint": str(a.out), "vocab": vocab, "texts": len(texts),
                      "parameters": sum(p.numel() for p in model.parameters()),
                      "tokens_per_common_word": round(sum(per_word) / len(per_word), 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
