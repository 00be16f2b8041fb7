"""Secrets are scrubbed by value, wherever text leaves the process.

An endpoint's credentials reach colobench three ways: the key read from the variable
`api_key_env` names, header values (those listed under `secret_headers`, and any whose name
looks like a credential: auth, key, token, secret, cookie, password, credential, signature,
session), and a password inside a URL (`http://user:PASSWORD@host/v1`). A server can echo any
of them back (a 401 body quoting the Authorization header), and from there it would reach a
record's error text, a log, run.json, the summary, the report and the console. Redacting by
header name misses all of that, so every process registers the secret *values* it holds and
`scrub` replaces each of them, and every URL password, with `***` in every string written to
disk or printed: records' error texts, worker logs, JSON files, report.html, console lines.

Values shorter than `MIN_SECRET_CHARS` are not registered (masking "a" everywhere would destroy
the output, and no real credential is that short).
"""

from __future__ import annotations

import os
import re
from typing import Any, TextIO
from urllib.parse import urlsplit

MASK = "***"
MIN_SECRET_CHARS = 4
CREDENTIAL_NAME = re.compile(r"auth|key|token|secret|cookie|passw|credential|sig|session", re.IGNORECASE)
URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<password>[^@/\s]+)@", re.IGNORECASE)

_values: set[str] = set()


def register(*values: str | None) -> None:
    """Remember secret values of this process, to be scrubbed from everything it writes."""
    for value in values:
        if isinstance(value, str) and len(value.strip()) >= MIN_SECRET_CHARS:
            _values.add(value.strip())


def url_password(url: str | None) -> str | None:
    try:
        return urlsplit(url).password if url else None
    except ValueError:
        return None


def register_endpoint(endpoint: Any) -> None:
    """The secrets of one endpoint config: its key, its credential headers, its URL password."""
    if endpoint is None:
        return
    get = endpoint.get if isinstance(endpoint, dict) else (lambda k, d=None: getattr(endpoint, k, d))
    key_env = get("api_key_env")
    if key_env:
        register(os.environ.get(key_env))
    listed = {h.lower() for h in (get("secret_headers") or [])}
    for name, value in (get("headers") or {}).items():
        if name.lower() in listed or CREDENTIAL_NAME.search(name):
            register(str(value))
    for url in (get("base_url"), get("metrics_url")):
        register(url_password(url))


def scrub(text: str) -> str:
    """`text` with every registered secret and every URL password replaced by `***`."""
    if not text:
        return text
    if "://" in text and "@" in text:
        text = URL_PASSWORD.sub(lambda m: m.group("head") + MASK + "@", text)
    for value in sorted(_values, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return text


def scrub_data(data: Any) -> Any:
    """A copy of plain data (dicts, lists, strings) with every string scrubbed."""
    if isinstance(data, str):
        return scrub(data)
    if isinstance(data, dict):
        return {k: scrub_data(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [scrub_data(v) for v in data]
    return data


class ScrubbingStream:
    """A text stream that scrubs what is written to it (a worker's log, the console)."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(scrub(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
