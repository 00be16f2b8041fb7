"""Text from outside is printed as text: control characters escaped at the one output layer,
secrets masked in every form they take (see `colobench.text`, `colobench.secrets`)."""

from __future__ import annotations

import io
import json

from rich.console import Console
from rich.table import Table
from rich.text import Text

from colobench.cli.app import SafeConsole
from colobench.secrets import register, register_command, register_env, scrub, scrub_data
from colobench.text import header_value_error, printable


def test_printable_escapes_control_characters():
    assert printable("a\x1b[31mred\x07") == "a\\x1b[31mred\\x07"
    assert printable("two\nlines") == "two\\x0alines"
    assert printable("two\nlines", one_line=False) == "two\nlines"
    assert printable("bidi \u202e txt") == "bidi \\u202e txt"
    assert printable("x" * 10, limit=5) == "xxxx…"


def test_the_console_never_lets_escapes_through():
    """A table cell, a plain message and a `Text` holding ESC reach the terminal as `\\x1b`, while
    the console's own styles still render on a terminal."""
    for terminal in (False, True):
        buf = io.StringIO()
        console = SafeConsole(file=buf, force_terminal=terminal, width=120)
        table = Table()
        table.add_column("model \x1b]2;title\x07")
        table.add_row("\x1b[2Jcleared")
        console.print(table)
        console.print("[red]error:[/] served \x1b[31mevil")
        console.print(Text("text \x1bobject"))
        out = buf.getvalue()
        raw = out.replace("\x1b[31m", "").replace("\x1b[0m", "").replace("\x1b[1m", "").replace("\x1b[3m", "")
        assert "\\x1b]2;title" in out and "\x07" not in out and "\\x1b[2Jcleared" in out and "\\x1bobject" in out
        if not terminal:
            assert "\x1b" not in out
        else:
            assert "\x1b]2" not in raw and "\x1b[2J" not in raw  # only rich's own styles are escapes
    assert not issubclass(Console, SafeConsole)


def test_header_values():
    assert header_value_error("Bearer sk-123\tx") is None
    assert "control character" in header_value_error("a\r\nb")
    assert "Latin-1" in header_value_error("\u20ac")


def test_secrets_from_shell_strings_env_and_numbers_in_every_encoding():
    register_command(["sh", "-c", "exec vllm serve m --api-key sk-shellsecret1 --port 1"])
    register_command(["server", "--token=tok-equals-77", "HF_TOKEN=hf_inlinevalue9"])
    register_env({"HF_TOKEN": "hf_fromenv1234", "MY_API_KEY": "24681357", "PLAIN": "notsecret"}, ["OTHER"])
    register_env({"OTHER": "listed-value"}, ["OTHER"])
    register('quo"te\\key\u00e9')
    text = "sk-shellsecret1 tok-equals-77 hf_inlinevalue9 hf_fromenv1234 24681357 listed-value notsecret"
    assert scrub(text) == "*** *** *** *** *** *** notsecret"
    encoded = json.dumps({"k": 'quo"te\\key\u00e9'}) + repr('quo"te\\key\u00e9') + json.dumps('quo"te\\key\u00e9',
                                                                                           ensure_ascii=False)
    assert "quo" not in scrub(encoded)
    assert scrub_data({"key": 24681357, "count": 8192}) == {"key": "***", "count": 8192}
