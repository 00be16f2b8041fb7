"""Backends: one module per engine behind the small protocol in `base`, registered by name.

Adding an engine is one module and one line in `BACKENDS`. A backend takes resolved settings
(plain values and a `Device`), never a spec or a plan: `colobench.plan` decides what each
instance's settings are (`ResolvedInstance.backend_settings`).
"""

from __future__ import annotations

from typing import Any, Callable

from colobench.backends.base import Backend, Completion
from colobench.backends.fake import FakeBackend
from colobench.backends.openai_http import OpenAIBackend
from colobench.backends.transformers_backend import TransformersBackend

BACKENDS: dict[str, Callable[..., Backend]] = {
    "transformers": TransformersBackend,
    "fake": FakeBackend,
    "openai": OpenAIBackend,
}

__all__ = ["BACKENDS", "Backend", "Completion", "make_backend"]


def make_backend(kind: str, **settings: Any) -> Backend:
    """The backend `kind` with its settings, ready to `start()`."""
    return BACKENDS[kind](**settings)
