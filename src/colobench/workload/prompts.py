"""Prompts from files and the built-in set, turned into token ids once, before the run.

Accepted files (read from local disk only):

- JSONL, one object per line with `prompt` (text) or `messages` (a chat: a list of
  `{"role", "content"}` objects). Chat prompts go through the tokenizer's chat template with the
  generation prompt added, as a serving stack would.
- ShareGPT JSON: a list of `{"conversations": [{"from": "human"|"gpt", "value": ...}, ...]}`; the
  first human turn is the prompt.
- A Hugging Face dataset saved with `Dataset.save_to_disk` (a folder of Arrow files with its
  `state.json`; read with pyarrow, no `datasets` needed, nothing downloaded): its `conversations`
  column (ShareGPT's shape), `messages` (chats), or a text column (`prompt`, `text`, `question`,
  `instruction`), the first found. A saved `DatasetDict` is one folder per split: name the split's
  folder.
- A plain `.txt` file of lines, in the style of vLLM's sonnet dataset: prompt k asks to pick
  lines from `SONNET_LINES` consecutive lines starting at line k (cycling), as vLLM's benchmark
  asks of Shakespeare's sonnets.

Tokenisation happens in the parent before anything runs (so a prompt longer than the model's
context is an error up front) and the ids are handed to the workers; the hot path never
tokenises. Random-weight presets have no tokenizer: their prompts are synthetic token ids.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from colobench.errors import SpecError

BUILTIN_CATEGORIES = ("zh_qa", "en_qa", "code", "reasoning", "long_summary")


@dataclass(frozen=True)
class TextPrompt:
    """A prompt before tokenisation: plain text or a chat."""

    text: str | None = None
    messages: tuple[dict[str, str], ...] | None = None
    category: str | None = None
    reference: str | None = None  # the data's own answer (ShareGPT's reply, a JSONL line's `output`)


def _message_list(value: Any, where: str, field: str) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise SpecError(where, field, "must be a non-empty list of {role, content} objects", show_value=False)
    for k, msg in enumerate(value):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str) or not isinstance(msg.get("content"), str):
            raise SpecError(where, f"{field}[{k}]", "each message needs string 'role' and 'content'", show_value=False)
    return tuple({"role": m["role"], "content": m["content"]} for m in value)


def read_jsonl_prompts(path: Path) -> list[TextPrompt]:
    prompts = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SpecError(where, "", f"not valid JSON ({exc.msg}); prompt files are JSONL, one object a line",
                                show_value=False) from None
            if not isinstance(obj, dict):
                raise SpecError(where, "", "each line must be a JSON object", show_value=False)
            category = obj.get("category") if isinstance(obj.get("category"), str) else None
            reference = next((obj[k] for k in ("output", "completion", "response") if isinstance(obj.get(k), str)),
                             None)
            if isinstance(obj.get("prompt"), str) and obj["prompt"]:
                prompts.append(TextPrompt(text=obj["prompt"], category=category, reference=reference))
            elif "messages" in obj:
                prompts.append(TextPrompt(messages=_message_list(obj["messages"], where, "messages"), category=category,
                                          reference=reference))
            else:
                raise SpecError(where, "", "line has neither a 'prompt' string nor a 'messages' list", show_value=False)
    return prompts


def read_sharegpt(path: Path, data: Any) -> list[TextPrompt]:
    if not isinstance(data, list):
        raise SpecError(str(path), "", "ShareGPT files are a JSON list of conversations", show_value=False)
    prompts = []
    for k, item in enumerate(data):
        turns = item.get("conversations") if isinstance(item, dict) else None
        if not isinstance(turns, list):
            raise SpecError(str(path), f"[{k}].conversations", "missing or not a list", show_value=False)
        k_first = next((j for j, t in enumerate(turns) if isinstance(t, dict) and t.get("from") in ("human", "user")),
                       None)
        first = turns[k_first] if k_first is not None else None
        if first is None or not isinstance(first.get("value"), str) or not first["value"]:
            continue  # conversations without a human turn are skipped, as in vLLM's benchmark
        reply = next((t.get("value") for t in turns[k_first + 1:] if isinstance(t, dict)
                      and t.get("from") in ("gpt", "assistant") and isinstance(t.get("value"), str)), None)
        prompts.append(TextPrompt(text=first["value"], reference=reply))
    return prompts


TEXT_COLUMNS = ("prompt", "text", "question", "instruction")
SONNET_LINES = 40  # about vLLM's default sonnet input (550 tokens) of sonnet lines
SONNET_HEADER = "Pick as many lines as you can from these poem lines:\n"


def read_lines_prompts(text: str) -> list[TextPrompt]:
    """Prompts of a text file's lines, in the style of vLLM's sonnet dataset (module docstring)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    n = min(SONNET_LINES, len(lines))
    return [TextPrompt(text=SONNET_HEADER + "\n".join(lines[(k + j) % len(lines)] for j in range(n)))
            for k in range(len(lines))]


def read_saved_dataset(path: Path) -> list[TextPrompt]:
    """Prompts of a dataset saved with `datasets`' `save_to_disk` (see the module docstring)."""
    if (path / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in path.iterdir() if p.is_dir())
        raise SpecError(str(path), "", f"a saved DatasetDict: name one split's folder ({', '.join(splits)})",
                        show_value=False)
    try:
        import pyarrow as pa  # optional: the `parquet` extra
    except ImportError:
        raise SpecError(str(path), "", "reading a saved Hugging Face dataset needs pyarrow (pip install "
                        "'colobench[parquet]')", show_value=False) from None
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        files = [path / f["filename"] for f in state.get("_data_files", [])]
    except (OSError, ValueError, KeyError, TypeError):
        files = sorted(path.glob("*.arrow"))
    if not files:
        raise SpecError(str(path), "", "no Arrow files (not a folder written by save_to_disk?)", show_value=False)
    rows: list[dict[str, Any]] = []
    for file in files:
        try:
            with pa.OSFile(str(file)) as source:
                rows += pa.ipc.open_stream(source).read_all().to_pylist()
        except (OSError, pa.ArrowException) as exc:
            raise SpecError(str(file), "", f"not an Arrow stream ({str(exc).splitlines()[0][:120]})",
                            show_value=False) from None
    if not rows:
        return []
    columns = set(rows[0])
    if "conversations" in columns:
        return read_sharegpt(path, rows)
    if "messages" in columns:
        return [TextPrompt(messages=_message_list(r["messages"], f"{path}[{k}]", "messages"))
                for k, r in enumerate(rows) if r.get("messages")]
    column = next((c for c in TEXT_COLUMNS if c in columns), None)
    if column is None:
        raise SpecError(str(path), "", f"no prompt column: looked for conversations, messages, "
                        f"{', '.join(TEXT_COLUMNS)} (it has {', '.join(sorted(columns))})", show_value=False)
    return [TextPrompt(text=r[column]) for r in rows if isinstance(r.get(column), str) and r[column]]


def read_prompt_file(path: str | Path) -> list[TextPrompt]:
    """Prompts of a JSONL or ShareGPT JSON file, or a saved Hugging Face dataset's folder, or a
    `SpecError` naming the file and line."""
    path = Path(path).expanduser()
    if path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file()):
        prompts = read_saved_dataset(path)
        if not prompts:
            raise SpecError(str(path), "", "the dataset holds no prompts", show_value=False)
        return prompts
    if not path.is_file():
        raise SpecError(str(path), "", "prompt file not found", show_value=False)
    try:
        raw = path.read_bytes()
        if b"\x00" in raw:
            raise UnicodeDecodeError("utf-8", raw[:1], 0, 1, "NUL byte")
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError(str(path), "", "not a UTF-8 text file (a binary file?); prompt files are JSONL or ShareGPT "
                        "JSON", show_value=False) from None
    except OSError as exc:
        raise SpecError(str(path), "", f"cannot read the prompt file ({exc.strerror})", show_value=False) from None
    text_head = raw.decode("utf-8")[:4096].lstrip()
    if path.suffix.lower() == ".txt":
        prompts = read_lines_prompts(raw.decode("utf-8"))
    elif text_head.startswith("["):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SpecError(f"{path}:{exc.lineno}", "", f"not valid JSON ({exc.msg})", show_value=False) from None
        prompts = read_sharegpt(path, data)
    else:
        prompts = read_jsonl_prompts(path)
    if not prompts:
        raise SpecError(str(path), "", "prompt file holds no prompts", show_value=False)
    return prompts


def builtin_prompts(categories: list[str] | None = None) -> list[TextPrompt]:
    """The shipped prompt set, optionally only some categories."""
    unknown = sorted(set(categories or []) - set(BUILTIN_CATEGORIES))
    if unknown:
        raise SpecError("prompts", "builtin", f"unknown categories {unknown}; known: {', '.join(BUILTIN_CATEGORIES)}",
                        show_value=False)
    path = resources.files("colobench.workload").joinpath("builtin_prompts.jsonl")
    with resources.as_file(path) as real:
        prompts = read_jsonl_prompts(Path(real))
    return [p for p in prompts if not categories or p.category in categories]


def tokenize(prompts: list[TextPrompt], tokenizer: Any) -> list[list[int]]:
    """Token ids of each prompt: plain text encoded as is, chats through the chat template."""
    out = []
    for p in prompts:
        if p.messages is not None:
            ids = tokenizer.apply_chat_template(list(p.messages), add_generation_prompt=True, tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            out.append([int(t) for t in ids])
        else:
            out.append([int(t) for t in tokenizer.encode(p.text)])
    return out


@dataclass(frozen=True)
class PromptJob:
    """One instance's prompt set to prepare before a run: tokenised with its checkpoint's
    tokenizer, or kept as text for a server (`tokenizer` None; it tokenises)."""

    key: str  # the set's id: the same source and tokenizer share one set
    source: Any  # a PromptSource: `file` or `builtin`
    instance: str
    model: str  # as the user wrote it, for error messages
    tokenizer: str | None
    chat_api: bool = True  # text sets: chat prompts (messages) allowed
    context_tokens: int | None = None
    max_output_tokens: int = 0


def prompt_set_key(tokenizer_or_model: str, source: Any) -> str:
    blob = json.dumps([tokenizer_or_model, source.model_dump()], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _texts(source: Any) -> list[TextPrompt]:
    if source.file:
        return read_prompt_file(source.file)
    return builtin_prompts(None if source.builtin == "all" else list(source.builtin))


def _kept(entries: list[dict[str, Any]], texts: list[TextPrompt], src: Any, where: str,
          count: Any) -> list[dict[str, Any]]:
    """The entries with their data output lengths (`output: data`, counted with `count`) and the
    source's length filters applied; a SpecError when nothing is left."""
    out = []
    for entry, text in zip(entries, texts):
        prompt_len = len(entry["ids"]) if "ids" in entry else count(text.text or " ".join(
            m["content"] for m in text.messages or ()))
        if src.output == "data":
            if not text.reference:
                continue  # no answer to take a length from
            entry = {**entry, "output_tokens": max(1, count(text.reference))}
        if src.min_prompt_tokens and prompt_len < src.min_prompt_tokens:
            continue
        if src.max_prompt_tokens and prompt_len > src.max_prompt_tokens:
            continue
        if src.max_output_tokens and entry.get("output_tokens", 0) > src.max_output_tokens:
            continue
        out.append(entry)
    if not out:
        raise SpecError(where, "", "no prompt is left after the length filters" + (
            " (output: data keeps only prompts with an answer)" if src.output == "data" else ""), show_value=False)
    return out


def _filtered(src: Any) -> bool:
    return src.output == "data" or any((src.min_prompt_tokens, src.max_prompt_tokens, src.max_output_tokens))


def prepare_prompt_sets(jobs: list[PromptJob], source: str = "experiment") -> dict[str, list[Any]]:
    """Every prompt set of the jobs, keyed by `PromptJob.key`: `{"ids"}` entries (token ids), or
    `{"text"}` / `{"messages"}` entries for servers; each with its `category` when the source
    names one (the built-in set, files whose lines carry `category`). Checks each prompt plus its output against the model's
    context. Raises SpecError naming the file (or the instance); writes nothing."""
    out: dict[str, list[Any]] = {}
    for job in jobs:
        where = job.source.file or "built-in prompts"
        if job.tokenizer is None:
            if job.key not in out:
                texts = _texts(job.source)
                out[job.key] = [{**({"text": t.text} if t.text is not None else {"messages": list(t.messages)}),
                                 **({"category": t.category} if t.category else {})} for t in texts]
                if _filtered(job.source):  # no tokenizer here: lengths in words (the server counts tokens)
                    out[job.key] = _kept(out[job.key], texts, job.source, where, lambda s: len(s.split()))
            if not job.chat_api and any("messages" in p for p in out[job.key]):
                raise SpecError(where, "", f"chat prompts (messages) need api: chat for {job.instance}",
                                show_value=False)
            continue
        if job.key not in out:
            from transformers import AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(job.tokenizer)
            except Exception as exc:
                raise SpecError(source, f"{job.instance}.model", f"cannot load a tokenizer for text prompts "
                                f"({exc.__class__.__name__})", job.model) from None
            try:
                texts = _texts(job.source)
                out[job.key] = [{"ids": ids, **({"category": t.category} if t.category else {})}
                                for t, ids in zip(texts, tokenize(texts, tokenizer))]
                if _filtered(job.source):
                    out[job.key] = _kept(out[job.key], texts, job.source, where,
                                         lambda s: len(tokenizer.encode(s, add_special_tokens=False)))
            except SpecError:
                raise
            except Exception as exc:
                raise SpecError(where, "", f"cannot tokenize with {job.model}'s tokenizer: "
                                f"{str(exc).splitlines()[0]}", show_value=False) from None
        longest = max(len(p["ids"]) + p.get("output_tokens", job.max_output_tokens) for p in out[job.key]) \
            - job.max_output_tokens
        if job.context_tokens and longest + job.max_output_tokens > job.context_tokens:
            raise SpecError(where, "", f"a prompt of {longest} tokens plus {job.max_output_tokens} output tokens "
                            f"exceeds {job.instance}'s context of {job.context_tokens} tokens", show_value=False)
    return out
