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

Values come from every source a spec has (`register_spec`): endpoint keys, headers and URL
passwords; environment variables of workers and servers named like a credential (`HF_TOKEN`,
`OPENAI_API_KEY`) or listed in `secret_env`; a managed server's command, option by option
(`--api-key X`, `--hf-token=X`) and inside a shell string (`sh -c '... --api-key sk-...'`), and
anything shaped like a well-known key (`sk-...`, `hf_...`). Numbers count (a numeric key in YAML
reads as an int). Each value is registered with the forms it takes once written: JSON-escaped,
`repr`-escaped and backslash-escaped, so a key with a quote or a non-ASCII character is masked in
every file, not only where it appears verbatim.

Values shorter than `MIN_SECRET_CHARS` are not registered (masking "a" everywhere would destroy
the output, and no real credential is that short).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from typing import Any, TextIO
from urllib.parse import urlsplit

MASK = "***"
MIN_SECRET_CHARS = 4
CREDENTIAL_NAME = re.compile(r"auth|key|token|secret|cookie|passw|credential|sig|session", re.IGNORECASE)
URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<password>[^@/\s]+)@", re.IGNORECASE)

_values: set[str] = set()


# option and variable names whose value is a secret (`--api-key X`, `--hf-token=X`, HF_TOKEN):
# names ending so, not merely containing it (`--tokenizer PATH`, `--max-num-batched-tokens`)
SECRET_NAME = re.compile(r"(key|token|secret|passw(or)?d|credentials?)$", re.IGNORECASE)
KEY_SHAPE = re.compile(r"\b(sk-[A-Za-z0-9_-]{8,}|hf_[A-Za-z0-9]{8,}|ghp_[A-Za-z0-9]{8,}|xox[bp]-[A-Za-z0-9-]{8,})")


def register(*values: Any) -> None:
    """Remember secret values of this process (text or numbers), with their escaped forms, to be
    scrubbed from everything it writes."""
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            continue
        text = str(value).strip()
        if len(text) < MIN_SECRET_CHARS:
            continue
        for form in (text, json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1], repr(text)[1:-1],
                     text.encode("unicode_escape").decode("ascii")):
            if len(form) >= MIN_SECRET_CHARS:
                _values.add(form)


def register_env(env: dict[str, Any] | None, listed: list[str] | None = None) -> None:
    """Secret values of an environment: variables named like a credential, or listed."""
    names = {n.upper() for n in listed or []}
    for name, value in (env or {}).items():
        if SECRET_NAME.search(name) or name.upper() in names:
            register(value)


def register_command(command: list[str]) -> None:
    """Secret values in a command line: `--api-key X`, `--token=X`, `HF_TOKEN=X`, and the same
    inside an element that is a shell string (`sh -c '... --api-key X'`), and key-shaped words."""
    for part in command:
        for found in KEY_SHAPE.findall(part):
            register(found)
    words = list(command)
    for part in command:
        if any(ch.isspace() for ch in part):
            try:
                words += shlex.split(part)
            except ValueError:
                words += part.split()
    for k, word in enumerate(words):
        option, eq, value = word.partition("=")
        if option.startswith("-") and SECRET_NAME.search(option.lstrip("-")):
            register(value if eq else (words[k + 1] if k + 1 < len(words) else None))
        elif eq and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", option) and SECRET_NAME.search(option):
            register(value)


def register_spec(spec: Any) -> None:
    """Every secret an experiment holds (see the module's docstring), before anything is written."""
    for inst in getattr(spec, "instances", []):
        register_env(getattr(inst, "env", None), getattr(inst, "secret_env", None))
        register_endpoint(inst.endpoint_config() if hasattr(inst, "endpoint_config") else None)
    for server in getattr(spec, "servers", []):
        register_env(server.env, getattr(server, "secret_env", None))
        register_command(server.command)


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
    """A copy of plain data (dicts, lists, strings) with every string scrubbed, and every number
    that is a registered secret (a numeric key) replaced by `***`."""
    if isinstance(data, str):
        return scrub(data)
    if isinstance(data, (int, float)) and not isinstance(data, bool) and _values and str(data) in _values:
        return MASK
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
