"""Tool environments: deterministic, stateful Python classes that execute the calls of an agent loop.

An environment is trusted code (never the model's): registered by name with `@register("name")`, or
by a plugin under the `harness.environments` entry point group, like graders. The engine's agent loop
(harness/engine/agent.py) offers its tools, executes the calls the model makes, and hands its final
state to the grader. A class implements:

- `__init__(self, state)`: start from a copy of the task's initial state (plain JSON data);
- `tools()`: the functions offered, as `ToolDefinition`s;
- `call(name, arguments)`: run one call, returning JSON-able data; raise `ToolError` for a refusal
  the model should see (unknown order, not allowed), which is returned to it as `{"error": ...}`;
- `snapshot()`: the state now, as plain JSON data (what the grader compares).
"""

from __future__ import annotations

import copy
import importlib
from importlib.metadata import entry_points
from typing import Any, Callable, Mapping

from harness.errors import HarnessError
from harness.records import ToolDefinition

ENTRY_POINT_GROUP = "harness.environments"
_BUILTIN_MODULES = ("orders",)

_builtins: dict[str, type] = {}
_loaded = False


class ToolError(Exception):
    """A call the environment refuses; the model sees the message as the call's result."""


class ToolEnvironment:
    """A base for environments whose tools are methods listed in TOOLS (name -> JSON schema of parameters)."""

    TOOLS: Mapping[str, tuple[str, Mapping[str, Any]]] = {}  # name -> (description, parameters schema)

    def __init__(self, state: Mapping[str, Any]):
        self.state = copy.deepcopy(dict(state))

    def tools(self) -> tuple[ToolDefinition, ...]:
        return tuple(ToolDefinition(name, desc, params) for name, (desc, params) in self.TOOLS.items())

    def call(self, name: str, arguments: Mapping[str, Any]) -> Any:
        if name not in self.TOOLS:
            raise ToolError(f"unknown function {name!r}")
        schema = self.TOOLS[name][1]
        missing = [p for p in schema.get("required", ()) if p not in arguments]
        if missing:
            raise ToolError(f"missing argument(s): {', '.join(missing)}")
        unknown = sorted(set(arguments) - set(schema.get("properties", {})))
        if unknown:
            raise ToolError(f"unknown argument(s): {', '.join(unknown)}")
        return getattr(self, name)(**arguments)

    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy(self.state)


def register(name: str) -> Callable[[type], type]:
    """Decorator: make a class the built-in environment called `name`."""

    def decorate(cls: type) -> type:
        _builtins[name] = cls
        return cls

    return decorate


def get_environment(name: str) -> type:
    """The environment class called `name`: a built-in, else a plugin from the entry points."""
    global _loaded
    if not _loaded:
        for module in _BUILTIN_MODULES:
            importlib.import_module(f"{__name__}.{module}")
        _loaded = True
    if name in _builtins:
        return _builtins[name]
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name not in found:
        known = ", ".join(sorted(set(_builtins) | set(found)))
        raise HarnessError(
            f"unknown tool environment '{name}' (known: {known}); fix agent.environment in suite.yaml, "
            f"or install the package that provides it under the '{ENTRY_POINT_GROUP}' entry point"
        )
    try:
        cls = found[name].load()
    except Exception as exc:  # a broken plugin is its package's to fix
        raise HarnessError(f"tool environment '{name}': plugin failed to load ({type(exc).__name__}: {exc})") from exc
    _builtins[name] = cls
    return cls
