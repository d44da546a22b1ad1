"""Providers turn a rendered prompt into a `Completion`: one module per kind of backend.

Add a provider: a module with a class taking the model's `ModelSpec`, with `async complete(request)
-> Completion` and `async close()`, and one `register_provider(ProviderInfo(...))` naming it, its
capabilities and its own plan fields (see registry.py; built-ins register in builtin.py, plugins
through the `harness.providers` entry-point group).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.providers.base import Provider, ProviderError, Request
from harness.providers.registry import Capabilities, ProviderInfo, provider_info, register_provider

if TYPE_CHECKING:
    from harness.plan import ModelSpec


def make_provider(spec: ModelSpec) -> Provider:
    """Build the provider for a model of the plan; imports its backend only when used."""
    return provider_info(spec.provider).build(spec)


__all__ = [
    "Capabilities",
    "Provider",
    "ProviderError",
    "ProviderInfo",
    "Request",
    "make_provider",
    "provider_info",
    "register_provider",
]
