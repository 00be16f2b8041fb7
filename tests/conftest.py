"""Shared fixtures: a private preset cache per test session, and helpers to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """Presets built once per test session, away from the user's cache."""
    path = tmp_path_factory.mktemp("preset-cache")
    return path


@pytest.fixture
def cli_env(cache_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["COLOBENCH_CACHE"] = str(cache_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "colobench", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="session")
def tokenizer_checkpoint(tmp_path_factory, cache_dir: Path) -> Path:
    """A local HF checkpoint: the tiny preset's random Llama weights plus a small byte-level BPE
    tokenizer trained here with the `tokenizers` library, and a chat template."""
    import shutil

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from colobench.models.presets import ensure_preset

    path = tmp_path_factory.mktemp("checkpoints") / "tiny-chat"
    shutil.copytree(ensure_preset("tiny", cache_dir), path)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = ["The quick brown fox jumps over the lazy dog.", "What are the main differences between a CPU and a GPU?",
              "Write a Python function that returns the k most frequent words.", "请简要介绍一下长江的地理特点。",
              "Summarise the following text in three sentences."] * 20
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)
    return path
