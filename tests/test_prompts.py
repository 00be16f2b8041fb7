import json
from pathlib import Path

import pytest

from colobench.errors import SpecError
from colobench.workload.prompts import BUILTIN_CATEGORIES, builtin_prompts, read_prompt_file, tokenize


def test_jsonl_prompts_and_messages(tmp_path: Path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "hello there"}\n\n{"messages": [{"role": "user", "content": "hi"}]}\n')
    prompts = read_prompt_file(f)
    assert prompts[0].text == "hello there" and prompts[1].messages == ({"role": "user", "content": "hi"},)


def test_sharegpt(tmp_path: Path):
    f = tmp_path / "sg.json"
    f.write_text(json.dumps([
        {"conversations": [{"from": "human", "value": "first question"}, {"from": "gpt", "value": "answer"}]},
        {"conversations": [{"from": "gpt", "value": "no human turn"}]},
        {"conversations": [{"from": "human", "value": "second"}]},
    ]))
    assert [p.text for p in read_prompt_file(f)] == ["first question", "second"]


@pytest.mark.parametrize("content, fragment, line", [
    ("", "holds no prompts", None),
    ('{"prompt": "ok"}\nnot json at all\n', "not valid JSON", 2),
    ('{"prompt": "ok"}\n{"text": "wrong field"}\n', "neither a 'prompt' string nor a 'messages' list", 2),
    ('{"prompt": "ok"}\n{"prompt": "ok"}\n{"messages": [{"role": "user"}]}\n', "'role' and 'content'", 3),
    ('[1, 2]', "conversations", None),
])
def test_prompt_file_errors_name_the_line(tmp_path: Path, content, fragment, line):
    f = tmp_path / "bad.jsonl"
    f.write_text(content)
    with pytest.raises(SpecError) as info:
        read_prompt_file(f)
    message = str(info.value)
    assert fragment in message
    assert message.startswith(f"{f}:{line}:" if line else f"{f}")


def test_missing_prompt_file(tmp_path: Path):
    with pytest.raises(SpecError, match="prompt file not found"):
        read_prompt_file(tmp_path / "nope.jsonl")


def test_builtin_set_covers_the_categories():
    prompts = builtin_prompts()
    assert {p.category for p in prompts} == set(BUILTIN_CATEGORIES)
    assert any(p.messages for p in prompts) and any(p.text for p in prompts)
    assert all(p.category == "code" for p in builtin_prompts(["code"]))
    with pytest.raises(SpecError, match="unknown categories"):
        builtin_prompts(["poetry"])


def test_tokenize_text_and_chat(tokenizer_checkpoint: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_checkpoint)
    prompts = builtin_prompts(["en_qa"])
    ids = tokenize(prompts, tok)
    assert len(ids) == len(prompts) and all(ids) and all(isinstance(t, int) for t in ids[0])
    chat = next(k for k, p in enumerate(prompts) if p.messages)
    expected = tok.apply_chat_template(list(prompts[chat].messages), add_generation_prompt=True, tokenize=False)
    assert tok.decode(ids[chat]) == expected and expected.endswith("<|assistant|>")


def _save_to_disk(folder, columns: dict) -> None:
    """What `datasets.Dataset.save_to_disk` writes, made with pyarrow: an Arrow stream and state.json."""
    import json

    import pyarrow as pa

    folder.mkdir()
    table = pa.table(columns)
    with pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    (folder / "dataset_info.json").write_text("{}")


def test_a_saved_hugging_face_dataset(tmp_path):
    pytest.importorskip("pyarrow")
    from colobench.workload.prompts import read_prompt_file

    _save_to_disk(tmp_path / "sharegpt", {"conversations": [
        [{"from": "human", "value": "What is a KV cache?"}, {"from": "gpt", "value": "Keys and values."}],
        [{"from": "gpt", "value": "no human turn: skipped"}]]})
    assert [p.text for p in read_prompt_file(tmp_path / "sharegpt")] == ["What is a KV cache?"]
    _save_to_disk(tmp_path / "chats", {"messages": [[{"role": "user", "content": "hi"}]]})
    assert read_prompt_file(tmp_path / "chats")[0].messages == ({"role": "user", "content": "hi"},)
    _save_to_disk(tmp_path / "alpaca", {"instruction": ["Sort these numbers", ""], "output": ["1 2 3", "x"]})
    assert [p.text for p in read_prompt_file(tmp_path / "alpaca")] == ["Sort these numbers"]
    _save_to_disk(tmp_path / "odd", {"label": [1, 2]})
    with pytest.raises(SpecError, match=r"no prompt column: .* \(it has label\)"):
        read_prompt_file(tmp_path / "odd")
    (tmp_path / "dd").mkdir()
    (tmp_path / "dd" / "dataset_dict.json").write_text('{"splits": ["train", "test"]}')
    (tmp_path / "dd" / "train").mkdir()
    (tmp_path / "dd" / "test").mkdir()
    with pytest.raises(SpecError, match=r"a saved DatasetDict: name one split's folder \(test, train\)"):
        read_prompt_file(tmp_path / "dd")


def test_output_lengths_from_the_data_and_length_filters(tmp_path):
    """`prompts: {file, output: data}` takes each request's output length from its reference answer
    (ShareGPT's reply, a JSONL line's `output`), and the length filters leave prompts out."""
    from colobench.specs.models import PromptSource
    from colobench.workload.prompts import PromptJob, prepare_prompt_sets
    from colobench.workload.synthetic import build_requests

    path = tmp_path / "share.json"
    path.write_text(json.dumps([
        {"conversations": [{"from": "human", "value": "one two three"}, {"from": "gpt", "value": "a b c d e"}]},
        {"conversations": [{"from": "human", "value": "short"}, {"from": "gpt", "value": "x"}]},
        {"conversations": [{"from": "human", "value": "no reply here"}]},
        {"conversations": [{"from": "human", "value": "w " * 40}, {"from": "gpt", "value": "y y"}]}]))
    src = PromptSource(file=str(path), output="data", min_prompt_tokens=2, max_prompt_tokens=20)
    (entries,) = prepare_prompt_sets([PromptJob("k", src, "a", "m", None)]).values()
    # words here (no tokenizer: the server counts tokens); "short" is too short, the 40-word one too
    # long, the one without a reply has no length to take
    assert entries == [{"text": "one two three", "output_tokens": 5}]
    requests = build_requests(3, 8, 64, 32000, 0, [{"ids": [5, 6, 7], "output_tokens": 5}, {"ids": [8, 9]}])
    assert sorted(r.output_tokens for r in requests) in ([5, 5, 64], [5, 64, 64])  # the pool cycles
    with pytest.raises(SpecError, match="no prompt is left after the length filters"):
        prepare_prompt_sets([PromptJob("k", PromptSource(file=str(path), min_prompt_tokens=100, output="data"), "a",
                                       "m", None)])


def test_a_text_file_of_lines_in_the_sonnet_style(tmp_path):
    from colobench.workload.prompts import SONNET_HEADER, SONNET_LINES

    path = tmp_path / "sonnet.txt"
    lines = [f"line {k} of the poem" for k in range(SONNET_LINES + 5)]
    path.write_text("\n".join(lines) + "\n\n")
    prompts = read_prompt_file(path)
    assert len(prompts) == len(lines) and prompts[0].text.startswith(SONNET_HEADER)
    assert prompts[0].text.count("\n") == SONNET_LINES and "line 44 of the poem\nline 0 of the poem" in prompts[6].text  # cycling
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(SpecError, match="prompt file holds no prompts"):
        read_prompt_file(empty)
