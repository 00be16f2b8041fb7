"""Backends: one module per engine behind the small protocol in `base`, registered by name.

Adding an engine is one module and one line in `BACKENDS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from colobench.backends.base import Backend
    from colobench.plan import ResolvedInstance


def _fake(instance: "ResolvedInstance") -> "Backend":
    from colobench.backends.fake import FakeBackend

    return FakeBackend(instance.fake)


def _transformers(instance: "ResolvedInstance") -> "Backend":
    from colobench.backends.transformers_backend import TransformersBackend
    from colobench.devices import get_device

    assert instance.model_path is not None
    return TransformersBackend(instance.model_path, get_device(instance.device), instance.dtype,
                               instance.quantization, instance.graph)


def _openai(instance: "ResolvedInstance") -> "Backend":
    from colobench.backends.openai_http import OpenAIBackend

    return OpenAIBackend(instance.model, instance.endpoint, instance.tokenizer)


BACKENDS: dict[str, Callable[["ResolvedInstance"], "Backend"]] = {
    "transformers": _transformers,
    "fake": _fake,
    "openai": _openai,
}


def make_backend(instance: "ResolvedInstance") -> "Backend":
    """The backend an instance names, ready to `start()`."""
    return BACKENDS[instance.backend](instance)
