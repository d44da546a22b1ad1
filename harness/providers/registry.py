"""The provider registry: each provider registers its name, what it can do and its own plan fields.

The rest of the project asks a provider's registration (`provider_info(name).capabilities.images`),
never compares its name. Built-in providers are registered in `builtin.py`; third-party ones come
from the `harness.providers` entry-point group (an entry point names a module whose import calls
`register_provider`, or a `ProviderInfo`), loaded only when a name is not a built-in.

This module imports nothing heavy and nothing of `harness.plan` (which asks it for names and fields):
a provider's class is named as "module:attribute" and imported only when a run builds it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable

from harness.errors import HarnessError

ENTRY_POINT_GROUP = "harness.providers"

# Plan keys every provider takes (the engine applies them: pacing, retries, price, sampling).
COMMON_FIELDS = frozenset(
    {
        "name",
        "provider",
        "model",
        "concurrency",
        "rpm",
        "tpm",
        "timeout_s",
        "max_attempts",
        "price",
        "generation",
        "rate_limit_wait_s",
        "text_tool_calls",  # read calls a model writes in its text as calls (harness/providers/text_calls.py)
        "batch",  # taken by every provider, refused with one line unless it has the `batch` capability
    }
)


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do; the engine, `harness load` and the reports ask these, never its name."""

    endpoint: bool = False  # an OpenAI-compatible HTTP endpoint (base_url) `harness load` can measure
    streams: bool = False  # can stream answers (time to first token)
    tools: bool = False  # sends tool definitions and reads tool calls back
    images: bool = False  # sends image parts of messages
    batch: bool = False  # has a Batch API (`batch:` on a model)
    tokenizer: bool = False  # counts tokens with the model's own tokenizer
    usage: bool = False  # reports token usage per request (else it is estimated)
    timed: bool = True  # measures latency; False for completions replayed from a file
    served_model: bool = False  # reports which model answered (checked against the asked name)
    credentials: bool = False  # reads an API key (and header values) from the environment before a run


@dataclass(frozen=True)
class ProviderInfo:
    """One provider's registration.

    `factory`: "module:attribute", a callable `(ModelSpec) -> Provider`, imported when a run builds
    it. `fields`: the plan keys of a model this provider uses besides `COMMON_FIELDS`; any other key
    is an error naming the provider. `check(spec)`: what its fields must say together (None if fine,
    else the problem without the "file: models.NAME" prefix). `preflight`: "module:attribute", a
    callable `(ModelSpec) -> None` raising HarnessError before a run is recorded (a missing key).
    `paths`: fields holding a file path, resolved next to the plan file. `batch_api`:
    "module:attribute", a callable `(provider) -> BatchAPI` (providers/base.py), for a provider
    with the `batch` capability. `settings`: a dataclass (or TypedDict) of the provider's own plan
    keys beyond ModelSpec's, written under the model's `settings:` and validated by pydantic with
    the plan's one-line errors (give it `__pydantic_config__ = {"extra": "forbid"}` to refuse
    unknown keys); the provider reads them, defaults filled in, from `spec.settings`.
    """

    name: str
    factory: str | Callable[[Any], Any]
    capabilities: Capabilities = Capabilities()
    fields: frozenset[str] = frozenset()
    check: Callable[[Any], str | None] | None = None
    preflight: str | Callable[[Any], None] | None = None
    paths: frozenset[str] = frozenset()
    batch_api: str | Callable[[Any], Any] | None = None
    settings: type | None = None

    def build(self, spec: Any) -> Any:
        """The provider object for a model of the plan."""
        return _resolve(self.factory)(spec)

    def prepare(self, spec: Any) -> None:
        """Fail now, before a run is recorded, on what the user must fix (e.g. a missing API key)."""
        if self.preflight is not None:
            _resolve(self.preflight)(spec)

    def open_batch_api(self, provider: Any) -> Any:
        """The Batch API of a provider this registration built (a `BatchAPI`)."""
        if self.batch_api is None:
            raise HarnessError(f"provider {self.name} has no Batch API; remove batch: from the model")
        return _resolve(self.batch_api)(provider)

    def accepts(self) -> frozenset[str]:
        return COMMON_FIELDS | self.fields


_registered: dict[str, ProviderInfo] = {}
_loaded = False


def register_provider(info: ProviderInfo) -> ProviderInfo:
    """Add a provider; registering the same name twice with a different factory is an error."""
    existing = _registered.get(info.name)
    if existing is not None and existing.factory != info.factory:
        raise ValueError(f"provider name '{info.name}' is already registered ({existing.factory})")
    _registered[info.name] = info
    return info


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        importlib.import_module("harness.providers.builtin")


def provider_names() -> list[str]:
    """Every provider's name: built-ins in registration order, then plugins (not imported)."""
    _load_builtins()
    names = list(_registered)
    names += sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} - set(names))
    return names


def find_provider(name: str) -> ProviderInfo | None:
    """The registration of `name`, loading its plugin if it has one; None when nothing provides it."""
    _load_builtins()
    if name in _registered:
        return _registered[name]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name != name:
            continue
        try:
            loaded = ep.load()
        except Exception as exc:  # a broken plugin is the user's install to fix
            raise HarnessError(
                f"provider '{name}': plugin entry point '{ep.value}' failed to load "
                f"({type(exc).__name__}: {exc}); reinstall or fix that package"
            ) from exc
        if isinstance(loaded, ProviderInfo):
            register_provider(loaded)
        if name not in _registered:
            raise HarnessError(
                f"provider '{name}': plugin entry point '{ep.value}' registered no provider of that name; "
                f"it must name a ProviderInfo or a module that calls register_provider"
            )
        return _registered[name]
    return None


def provider_info(name: str) -> ProviderInfo:
    """The registration of provider `name`; a HarnessError naming the known ones if there is none."""
    info = find_provider(name)
    if info is None:
        known = ", ".join(provider_names())
        raise HarnessError(
            f"unknown provider {name!r} (known: {known}); fix the model's provider in the plan, "
            f"or install the package that provides it under the '{ENTRY_POINT_GROUP}' entry point"
        )
    return info


def capabilities_of(name: str) -> Capabilities:
    """What provider `name` can do; for a stored run whose provider is no longer installed, the defaults."""
    try:
        info = find_provider(name)
    except HarnessError:
        info = None
    return info.capabilities if info is not None else Capabilities()


def require_capability(spec: Any, capability: str, needed_for: str) -> None:
    """Refuse, in one line, a model whose provider lacks `capability` (a `Capabilities` field name),
    e.g. `require_capability(spec, "images", "suite 'chartqa' (its prompts carry images)")`."""
    if capability not in Capabilities.__dataclass_fields__:
        raise ValueError(f"no capability named {capability!r}")
    if getattr(provider_info(spec.provider).capabilities, capability):
        return
    able = [n for n in provider_names() if getattr(capabilities_of(n), capability)]
    hint = f"use a provider with it ({', '.join(able)})" if able else "no installed provider has it"
    raise HarnessError(
        f"model '{spec.name}': provider {spec.provider} has no {capability} capability, needed for {needed_for}; {hint}"
    )


def _resolve(target: str | Callable) -> Callable:
    if not isinstance(target, str):
        return target
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
