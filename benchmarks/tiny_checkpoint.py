"""A tiny Llama-shaped checkpoint with a real tokenizer, built here with no download: the `tiny`
preset's random weights (colobench's own, real Llama shapes) and a byte-level BPE tokenizer of
280 tokens trained on the docstrings of Python's standard library, with a chat template. A
vocabulary that small splits common English words into two or three tokens, as the tokenizer of
the field report behind `benchmarks/real_engine.sh` did (2.7 tokens a word).

    .venv/bin/python benchmarks/tiny_checkpoint.py OUT_FOLDER
"""

from __future__ import annotations

import ast
import shutil
import sys
import sysconfig
from pathlib import Path

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
VOCAB = 280  # the 256 bytes, 3 specials and ~20 merges: common words of two or three tokens


def corpus(limit_files: int = 400) -> list[str]:
    """Docstrings of the standard library's modules: English prose on any machine with Python."""
    texts = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:limit_files]:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    texts.append(doc)
    return texts


def build(out: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from colobench.models.presets import ensure_preset

    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(ensure_preset("tiny", Path.home() / ".cache" / "colobench"), out)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    words = "the of and to in is was for that on as with by at from".split()
    per_word = sum(len(fast.encode(" " + w, add_special_tokens=False)) for w in words) / len(words)
    print(f"{out}: tiny Llama weights, BPE tokenizer of {VOCAB} tokens ({per_word:.1f} tokens per common word)")
    return out


if __name__ == "__main__":
    build(Path(sys.argv[1] if len(sys.argv) > 1 else "tiny-real-tokenizer"))
