"""Backends: one module per engine behind the small protocol in `base`, registered by name."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from colobench.backends.base import Backend
    from colobench.plan import ResolvedInstance


def make_backend(instance: "ResolvedInstance") -> "Backend":
    """The backend an instance names, ready to `start()`."""
    if instance.backend == "fake":
        from colobench.backends.fake import FakeBackend

        return FakeBackend(instance.fake)
    if instance.backend == "transformers":
        from colobench.backends.transformers_backend import TransformersBackend
        from colobench.devices import get_device

        assert instance.model_path is not None
        return TransformersBackend(instance.model_path, get_device(instance.device), instance.dtype)
    raise ValueError(f"unknown backend {instance.backend!r}")
