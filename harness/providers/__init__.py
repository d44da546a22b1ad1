"""Providers turn a rendered prompt into a `Completion`: one module per kind of backend.

Add a provider: write a class with `async complete(request) -> Completion` and `async close()`,
then name it in `make_provider` below and in `harness.plan.PROVIDERS`.
"""

from __future__ import annotations

from harness.errors import HarnessError
from harness.plan import ModelSpec
from harness.providers.base import Provider, ProviderError, Request


def make_provider(spec: ModelSpec) -> Provider:
    """Build the provider for a model of the plan; imports each backend only when used."""
    if spec.provider == "openai":
        from harness.providers.openai_api import OpenAIProvider

        return OpenAIProvider(spec)
    if spec.provider == "llamacpp":
        from harness.providers.llamacpp import LlamaCppProvider

        return LlamaCppProvider(spec)
    if spec.provider == "samples":
        from harness.providers.samples import SamplesProvider

        return SamplesProvider(spec)
    raise HarnessError(f"model '{spec.name}': unknown provider {spec.provider!r}")


__all__ = ["Provider", "ProviderError", "Request", "make_provider"]
