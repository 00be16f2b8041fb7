"""Errors a user can fix. The CLI prints them as one line and exits 2, with no traceback.

Every message names where the problem is (a file, a field, a flag) and the value that was wrong,
so the user never has to read a stack to know what to change.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


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
    if getattr(exc, "plain", False):  # a verdict whose message is the whole reason (`endpoint_down: ...`)
        return text
    return f"{exc.__class__.__name__}: {text}".rstrip(": ")


def os_reason(exc: OSError) -> str:
    """An OSError's reason without its path: "Not a directory", "No space left on device"."""
    return exc.strerror or exc.__class__.__name__


def check_dir_target(path: Path, what: str) -> None:
    """Refuse, before anything is written, a folder that cannot be made or written: a file in
    the way (at the path or above it), no permission, a read-only filesystem."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ColobenchError(f"{what} {path}: is a file, not a folder")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ColobenchError(f"{what} {path}: {probe} is a file, so no folder can be made below it")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise ColobenchError(f"{what} {path}: {probe} is not writable")
    try:
        if os.statvfs(probe).f_flag & os.ST_RDONLY:
            raise ColobenchError(f"{what} {path}: {probe} is on a read-only filesystem")
    except OSError:
        pass


def make_dir(path: Path, what: str) -> None:
    """mkdir -p, every failure one line naming the flag and the path."""
    check_dir_target(path, what)
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ColobenchError(f"{what} {path}: cannot create the folder ({os_reason(exc)})") from None


@contextmanager
def writing(what: str, path: Path | str) -> Iterator[None]:
    """Around a user-named output file: an OSError becomes one line naming the flag and the path."""
    target = Path(path)
    if target.is_dir():
        raise ColobenchError(f"{what} {path}: is a folder, not a file")
    try:
        yield
    except OSError as exc:
        raise ColobenchError(f"{what} {path}: cannot write ({os_reason(exc)})") from None


def check_file_target(path: Path | str | None, what: str) -> None:
    """Refuse, before any work, an output file that cannot be written: a folder at the path, a
    missing or unwritable folder above it."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise ColobenchError(f"{what} {path}: is a folder, not a file")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise ColobenchError(f"{what} {path}: no folder {parent} to write it in")
    if not os.access(parent, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise ColobenchError(f"{what} {path}: not writable")
