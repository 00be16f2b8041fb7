"""Errors a user can fix. The CLI prints them as one line and exits 2, with no traceback.

Every message names where the problem is (a file, a field, a flag) and the value that was wrong,
so the user never has to read a stack to know what to change.
"""

from __future__ import annotations


class ColobenchError(Exception):
    """A problem with the user's input or environment, stated in one line."""

    exit_code = 2


class SpecError(ColobenchError):
    """A configuration that does not validate: names its source, field and value."""

    def __init__(self, source: str, field: str, message: str, value: object = None, *, show_value: bool = True):
        self.source, self.field, self.value = source, field, value
        self.message, self.show_value = message, show_value
        where = f"{source}: {field}" if field else source
        got = f" (got {value!r})" if show_value else ""
        super().__init__(f"{where}: {message}{got}")

    def with_field(self, field: str) -> "SpecError":
        """The same error naming the field differently (a flag instead of a spec path)."""
        return SpecError(self.source, field, self.message, self.value, show_value=self.show_value)


def error_text(exc: BaseException) -> str:
    """`ExcType: first line of the message`, for records and summaries."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{exc.__class__.__name__}: {text}".rstrip(": ")
