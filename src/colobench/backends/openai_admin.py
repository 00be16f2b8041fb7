"""An OpenAI-compatible server's side doors, used before and after a run (never on the hot path):

- `check_endpoint`: is the server there, does it serve the model asked for, does it take the
  credentials? `/v1/models` answers all three; a server without it gets one tiny non-streaming
  probe request instead.
- `check_instances`: the same for every endpoint instance of an experiment before anything runs
  (its key's variable set too), or for the instances of a managed server once it answers, each
  problem one line naming the instance's field.
- `fetch_metrics`: the Prometheus text of its `/metrics`, or why there is none; the launcher keeps
  it at every window boundary so the summary can set the server's own counters of each window
  beside the client's.

Plain `urllib`: two requests per window do not justify a client library's start-up.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.request
from typing import Any

from colobench.backends.openai_http import auth_headers, endpoint_url, request_body, without_userinfo
from colobench.errors import SpecError
from colobench.secrets import register_endpoint
from colobench.text import header_value_error, printable
from colobench.workload.synthetic import Request


class EndpointProblem(Exception):
    """What is wrong with an endpoint: the instance field to blame, a sentence, the value."""

    def __init__(self, field: str, message: str, value: Any = None, show_value: bool = True):
        super().__init__(message)
        self.field, self.message, self.value, self.show_value = field, message, value, show_value


class NotHttp(OSError):
    """The peer answered, but not in HTTP (an SSH banner, a database, a TLS-only port)."""


def _not_http(exc: http.client.HTTPException) -> NotHttp:
    said = printable(str(exc).strip(), limit=60)
    return NotHttp(f"it does not speak HTTP: {exc.__class__.__name__}" + (f" {said}" if said else ""))


def http_get(url: str, headers: dict[str, str], timeout_s: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of one GET; raises OSError (`NotHttp` for a peer that is not an HTTP server)."""
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except http.client.HTTPException as exc:  # BadStatusLine, IncompleteRead, LineTooLong...
        raise _not_http(exc) from None


def check_endpoint(config: Any, model: str) -> list[str]:
    """The model names the server lists ([] when it lists none); raises `EndpointProblem`."""
    headers = auth_headers(config)
    try:
        status, body = http_get(without_userinfo(config.base_url).rstrip("/") + "/models", headers)
    except OSError as exc:
        raise EndpointProblem("base_url", f"cannot reach the server ({printable(str(getattr(exc, 'reason', exc)))})",
                              config.base_url) from None
    if status == 200:
        try:
            names = [m.get("id") for m in json.loads(body).get("data", [])]
        except (ValueError, AttributeError):
            names = []
        if names and model not in names:
            served = printable(", ".join(map(str, names)), limit=200)
            raise EndpointProblem("model", f"not served at {config.base_url} (it serves: {served})", model)
        return names
    if status in (401, 403):
        raise EndpointProblem("api_key_env", f"the server refused the credentials (HTTP {status})", config.api_key_env)
    # no /models: one short non-streaming request tells whether URL and model are right
    probe = request_body(config, model, Request(0, (), 1, text="Hello"), stream=False)
    req = urllib.request.Request(endpoint_url(config.base_url, config.api), data=json.dumps(probe).encode(),
                                 headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=30):
            pass
    except urllib.error.HTTPError as exc:
        raise EndpointProblem("", f"probe request to {config.base_url} failed with HTTP {exc.code}",
                              show_value=False) from None
    except http.client.HTTPException as exc:
        raise EndpointProblem("base_url", f"cannot reach the server ({_not_http(exc)})", config.base_url) from None
    except OSError as exc:
        raise EndpointProblem("base_url", f"cannot reach the server ({printable(str(exc))})", config.base_url) from None
    return []


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def check_instances(instances: list[Any], fields: list[str], source: str, managed: bool = False) -> None:
    """Check each endpoint instance (`fields[k]` names instance k in errors: `instances[0]`):
    its key's variable set, reachable, serving the model, taking the key. Registers each
    endpoint's secrets first, so no message shows them. Without `managed`, instances of a managed
    server only have their key's variable checked (their server is not up yet); with it, only
    those are checked, against their running server."""
    for inst, where in zip(instances, fields):
        if inst.endpoint is None:
            continue
        register_endpoint(inst.endpoint)
        key_env = inst.endpoint.api_key_env
        if not managed and key_env and not os.environ.get(key_env):
            raise SpecError(source, f"{where}.api_key_env", f"environment variable {key_env} is not set (it should hold "
                            "the API key)", show_value=False)
        problem = header_value_error(os.environ.get(key_env) or "") if key_env else None
        if problem:
            raise SpecError(source, f"{where}.api_key_env", f"the API key in {key_env} {problem}", show_value=False)
        pid = inst.endpoint.server_pid
        if not managed and pid is not None and not _pid_exists(pid):
            raise SpecError(source, f"{where}.server_pid", "no such process on this host", pid)
        if (inst.server is not None) != managed:
            continue
        try:
            check_endpoint(inst.endpoint, inst.model)
        except EndpointProblem as exc:
            field = {"base_url": "server"}.get(exc.field, exc.field) if managed else exc.field
            raise SpecError(source, where + (f".{field}" if field else ""), exc.message, exc.value,
                            show_value=exc.show_value) from None


METRICS_TIMEOUT_S = 3.0


def fetch_metrics(url: str, timeout_s: float = METRICS_TIMEOUT_S) -> tuple[str | None, str | None]:
    """(the Prometheus text at `url`, None), or (None, why there is none): never raises."""
    try:
        status, body = http_get(url, {}, timeout_s)
    except OSError as exc:
        return None, f"cannot reach {without_userinfo(url)} ({printable(str(getattr(exc, 'reason', exc)))})"
    if status != 200:
        return None, f"{without_userinfo(url)} answered HTTP {status}"
    return body.decode("utf-8", "replace"), None
