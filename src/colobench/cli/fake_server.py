"""`colobench fake-server`: its options are generated from `FakeServerSettings`, the one model
of the fake server's settings (flag, help and bounds live on the fields), so the command and a
server built in a test validate alike, and a bad value is one line naming the flag."""

from __future__ import annotations

import inspect
from functools import wraps
from typing import Any, Callable, Optional, get_args

import typer
from pydantic import ValidationError

from colobench.cli.app import app
from colobench.errors import ColobenchError, SpecError
from colobench.serve.fake_openai import FakeServerSettings, serve

SOURCE = "command line"


def _flagged() -> dict[str, tuple[str, bool, str]]:
    """Field name -> (flag, negate, help) for every field that has a flag."""
    out = {}
    for name, field in FakeServerSettings.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if extra.get("flag"):
            out[name] = (str(extra["flag"]), bool(extra.get("negate")), field.description or "")
    return out


def _is_bool(name: str) -> bool:
    return FakeServerSettings.model_fields[name].annotation is bool


def _is_list(name: str) -> bool:
    annotation = FakeServerSettings.model_fields[name].annotation
    return getattr(annotation, "__origin__", None) is tuple or tuple in (getattr(annotation, "__origin__", None),
                                                                          *get_args(annotation))


def _metavar(name: str) -> str:
    annotation = FakeServerSettings.model_fields[name].annotation
    choices = [a for a in get_args(annotation) if isinstance(a, str)]
    if choices:
        return "|".join(choices)
    kinds = {annotation, *get_args(annotation)}
    return "INT" if int in kinds else "FLOAT" if float in kinds else "A,B" if _is_list(name) else "TEXT"


def with_settings_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """One option per flagged field of `FakeServerSettings`; the command receives `settings`."""
    flagged = _flagged()

    def option(name: str) -> inspect.Parameter:
        flag, negate, help_text = flagged[name]
        default = FakeServerSettings.model_fields[name].default
        if _is_bool(name):
            spec = typer.Option(False, flag, help=help_text, metavar="")
            annotation: Any = bool
        else:
            shown = ",".join(default) if isinstance(default, tuple) else default
            spec = typer.Option(None, flag, help=help_text, metavar=_metavar(name),
                                show_default=str(shown) if shown is not None else False)
            annotation = Optional[str]
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=spec, annotation=annotation)

    @wraps(func)
    def wrapper(**given: Any) -> Any:
        values: dict[str, Any] = {}
        for name, value in given.items():
            flag, negate, _ = flagged[name]
            if _is_bool(name):
                if value:
                    values[name] = not negate
            elif value is not None:
                values[name] = tuple(v for v in value.split(",") if v.strip()) if _is_list(name) else value
        try:
            settings = FakeServerSettings(**values)
        except ValidationError as exc:
            err = exc.errors()[0]
            name = str(err["loc"][0]) if err["loc"] else ""
            flag = flagged[name][0] if name in flagged else ""
            message = err["msg"].removeprefix("Value error, ")
            raise SpecError(SOURCE, flag, message, values.get(name), show_value=name in values) from None
        return func(settings=settings)

    params = [option(name) for name in flagged]
    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper


@app.command("fake-server")
@with_settings_options
def fake_server(settings: FakeServerSettings) -> None:
    """Serve a fake OpenAI-compatible API with known timing and optional faults."""
    try:
        settings.api_key()
    except ValueError as exc:
        raise SpecError(SOURCE, "--api-key-env", str(exc), show_value=False) from None
    try:
        serve(settings)
    except OSError as exc:  # the port is taken, not ours to use, or the address is not this host's
        raise ColobenchError(f"--port {settings.port}: cannot listen on {settings.host}:{settings.port} "
                             f"({exc.strerror or exc})") from None
