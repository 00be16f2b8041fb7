"""Text that came from outside (a served model's name, a server's error body, a log line, a
prompt) made safe to print: control characters shown as escapes, never sent to the terminal.

A server that answers `{"id": "\x1b]2;owned\x07"}` must not retitle, recolour or clear the user's
terminal: every console colobench prints to renders strings through `printable` (see
`colobench.cli.app.SafeConsole`), one place instead of one escape per message. Newlines and tabs
stay (tables and multi-line messages need them) unless `one_line` is asked for.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_CONTROL_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, limit: int | None = None, one_line: bool = True) -> str:
    """`text` with control characters (ESC, BEL, CR, bidi overrides...) written as `\\xNN`
    escapes; with `one_line` newlines and tabs too; cut to `limit` characters with an ellipsis."""
    text = (_CONTROL_ONE_LINE if one_line else _CONTROL).sub(_escape, text)
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    return text


def has_control(text: str) -> bool:
    return bool(_CONTROL.search(text))


def header_value_error(value: str) -> str | None:
    """Why `value` cannot be sent as an HTTP header value (None when it can): CR or LF would inject
    headers, other control characters are refused by clients, and HTTP/1.1 carries Latin-1."""
    if re.search(r"[\x00-\x08\x0a-\x1f\x7f]", value):  # a tab is allowed
        return "holds a control character (CR, LF or another): it would inject into the request"
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return "holds characters outside Latin-1, which HTTP headers cannot carry"
    return None
