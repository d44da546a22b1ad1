"""The grader registry: turn a response to an item into a `Grade`, by grader name.

A grader is a plain function `(response: str, item: Item, **options) -> Grade`, registered in
one line with `@register("name")`, or `@register("name", needs=Needs(...))` when it needs more
than the answer text (a sandbox, a judge model of the plan): the engine asks `needs_of(name)`,
never the grader's name. Built-ins live one family per module (exact.py: exact,
regex; numeric.py; mcq.py; code.py); third-party graders come from the `harness.graders`
entry-point group and are imported only when first asked for. Built-in names win over plugins.

Graders see only the answer text: the engine strips `<think>` blocks first, and every
built-in strips them again (`_text.answer_text`) in case one slips through.
"""

from __future__ import annotations

import importlib
import inspect
import numbers
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Callable, Mapping

from harness.errors import HarnessError
from harness.records import Grade, Item

Grader = Callable[..., Grade]

ENTRY_POINT_GROUP = "harness.graders"

# Modules holding built-in graders, imported on first use; a new family (e.g. judge) is one more name.
_BUILTIN_MODULES = (
    "exact",
    "numeric",
    "mcq",
    "code",
    "judge",
    "vision",
    "tool_calls",
    "agent_state",
    "label",
    "pairwise",
    "needle",
)


@dataclass(frozen=True)
class Needs:
    """What a grader needs besides the answer text, declared when it is registered.

    `inline`: cheap and text-only, so a run grades on its event loop instead of a thread.
    `sandbox`: runs model-written code: a run refuses, before any request, where the sandbox cannot
    isolate it, and the suite's `sandbox:` limits become the grader's options.
    `judge`: the option naming the plan model(s) (a name or a list of names) that grade; a run
    checks they are in the plan and lends the grader a `context` (graders.judge.JudgeContext).
    `whole_item`: reads the item's fields beyond its reference (tests, choices, rubric fields).
    `incumbent`: compares each answer with the incumbent's answer to the same item (logged, or the plan's
    `incumbent:` model, whose request the run then shares); the run lends it a pairwise context.
    """

    inline: bool = False
    sandbox: bool = False
    judge: str | None = None
    whole_item: bool = False
    incumbent: bool = False


# A plugin function may carry its needs as an attribute of this name (else it needs nothing).
NEEDS_ATTRIBUTE = "harness_needs"

_builtins: dict[str, Grader] = {}
_plugins: dict[str, Grader] = {}
_needs: dict[str, Needs] = {}
_builtins_loaded = False


def register(name: str, *, needs: Needs = Needs()) -> Callable[[Grader], Grader]:
    """Decorator: make `fn` the built-in grader called `name`, needing `needs`."""

    def decorate(fn: Grader) -> Grader:
        existing = _builtins.get(name)
        same = existing is not None and (existing.__module__, existing.__qualname__) == (fn.__module__, fn.__qualname__)
        if existing is not None and not same:  # a module reload re-registers the same function: fine
            raise ValueError(f"grader name '{name}' is already registered by {existing.__module__}")
        _builtins[name] = fn
        _needs[name] = needs
        return fn

    return decorate


def needs_of(name: str) -> Needs:
    """What grader `name` declared it needs (a plugin: its `harness_needs` attribute, else nothing)."""
    fn = get_grader(name)
    declared = _needs.get(name) if _builtins.get(name) is fn else None
    if declared is None:
        declared = getattr(fn, NEEDS_ATTRIBUTE, None)
    return declared if isinstance(declared, Needs) else Needs()


_reference_views: dict[str, Callable[[str], str]] = {}


def reference_view(name: str) -> Callable[[Callable[[str], str]], Callable[[str], str]]:
    """Decorator: how grader `name` reads a stored reference (e.g. the number at the end of a worked solution)."""

    def decorate(fn: Callable[[str], str]) -> Callable[[str], str]:
        _reference_views[name] = fn
        return fn

    return decorate


def shown_reference(grader: str, reference: str) -> str:
    """The reference as the grader compares against it, for people to read; the stored text when it has no view."""
    _load_builtins()
    view = _reference_views.get(grader)
    if view is None or not reference:
        return reference
    try:
        return view(reference)
    except Exception:  # a reference the grader cannot read fails its samples; show it as stored
        return reference


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        for module in _BUILTIN_MODULES:
            importlib.import_module(f"{__name__}.{module}")
        _builtins_loaded = True


def _plugin_entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_graders() -> list[str]:
    """Names of every grader: built-ins and installed plugins (plugins are not imported)."""
    _load_builtins()
    return sorted(set(_builtins) | set(_plugins) | set(_plugin_entry_points()))


def get_grader(name: str) -> Grader:
    """The grader called `name`: a built-in, else a plugin from the `harness.graders` entry points."""
    _load_builtins()
    if name in _builtins:
        return _builtins[name]
    if name in _plugins:
        return _plugins[name]
    ep = _plugin_entry_points().get(name)
    if ep is None:
        known = ", ".join(available_graders())
        raise HarnessError(
            f"unknown grader '{name}' (known: {known}); fix grader.name in suite.yaml, "
            f"or install the package that provides it under the '{ENTRY_POINT_GROUP}' entry point"
        )
    try:
        loaded = ep.load()
    except Exception as exc:  # a broken plugin is the user's install to fix, not a harness bug
        raise HarnessError(
            f"grader '{name}': plugin entry point '{ep.value}' failed to load "
            f"({type(exc).__name__}: {exc}); reinstall or fix that package"
        ) from exc
    if not callable(loaded):
        raise HarnessError(
            f"grader '{name}': plugin entry point '{ep.value}' is not a function (response, item, **options) -> Grade"
        )
    _plugins[name] = loaded
    return loaded


def check_options(name: str, options: Mapping[str, Any]) -> None:
    """Raise HarnessError if `options` are not accepted by grader `name` (call when loading a suite)."""
    fn = get_grader(name)
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins/C callables: nothing to check
        return
    try:
        sig.bind("", Item(id="", fields={}), **dict(options))
    except TypeError:
        params = [
            p
            for p in sig.parameters.values()
            if p.kind is p.KEYWORD_ONLY or (p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in ("response", "item"))
        ]
        accepted = ", ".join(p.name for p in params) or "none"
        unknown = ", ".join(sorted(set(options) - {p.name for p in params})) or "?"
        raise HarnessError(
            f"grader '{name}': unknown option(s) {unknown} (accepted: {accepted}); fix grader.options in suite.yaml"
        ) from None


def grade(name: str, response: str, item: Item, options: Mapping[str, Any] | None = None) -> Grade:
    """Grade one response. A HarnessError (bad options, malformed item) propagates; any other
    exception inside the grader becomes a failed Grade that says what went wrong, so one odd
    response never stops a run."""
    options = dict(options or {})
    fn = get_grader(name)
    check_options(name, options)
    return call_grader(name, fn, response, item, options)


def call_grader(name: str, fn: Grader, response: str, item: Item, options: Mapping[str, Any]) -> Grade:
    """Call an already resolved grader with the contract of `grade` (options checked by the caller)."""
    try:
        result = fn(response if response is not None else "", item, **options)
    except HarnessError:
        raise
    except Exception as exc:
        return Grade.of(False, f"grader '{name}' failed: {type(exc).__name__}: {exc}")
    if not isinstance(result, Grade):
        return Grade.of(False, f"grader '{name}' returned {type(result).__name__}, not Grade")
    score = result.score
    # A NaN or out-of-range score would be stored as is (SQLite even turns NaN into NULL) and then
    # break every mean and interval computed over it: the grade fails instead, saying why.
    if not isinstance(score, numbers.Real) or not 0.0 <= score <= 1.0:
        return Grade.of(False, f"grader '{name}' returned score {score!r}, not a number in [0, 1]")
    return result


__all__ = [
    "Grader",
    "Needs",
    "needs_of",
    "register",
    "get_grader",
    "grade",
    "call_grader",
    "check_options",
    "available_graders",
    "ENTRY_POINT_GROUP",
]
