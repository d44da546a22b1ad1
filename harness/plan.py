"""Read an eval plan (YAML) into a typed, validated `Plan`: which models, which suites, with which options.

The plan format is a documented contract (README "Plan files"). Every field is checked when the plan
is loaded (types, ranges, unknown keys) by pydantic, against the constraints written on the
dataclasses below, so a typo or a nonsense value is one line naming the field, never a hang or a
traceback halfway through a run. To add a plan key: add a typed field (with its `Annotated` range)
to the dataclass it belongs to; validation, unknown-key rejection and error messages follow.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml
from annotated_types import Ge, Gt, Le, Lt
from typing_extensions import Annotated, TypedDict, is_typeddict

from harness.errors import HarnessError, yaml_error
from harness.providers.registry import Capabilities, find_provider, provider_info, provider_names

# pydantic settings for every part of a plan: unknown keys are errors, NaN and infinity are not numbers.
_CHECKED = {"extra": "forbid", "allow_inf_nan": False}

PositiveInt = Annotated[int, Ge(1)]
PositiveFloat = Annotated[float, Gt(0)]
NonNegativeFloat = Annotated[float, Ge(0)]


class GenerationOptions(TypedDict, total=False):
    """Sampling settings a plan may set for all models, one model or one suite."""

    __pydantic_config__ = _CHECKED  # type: ignore[misc]  # pydantic's config of a TypedDict; mypy expects only fields
    max_tokens: PositiveInt
    temperature: Annotated[float, Ge(0), Le(2)]  # the OpenAI API's range
    top_p: Annotated[float, Ge(0), Le(1)]
    stop: str | list[str] | tuple[str, ...]  # stored as a tuple of strings once loaded
    seed: int


class RouteLimits(TypedDict, total=False):
    """`harness recommend`'s limits for one route (a suite) or for every route; null lifts a limit."""

    __pydantic_config__ = _CHECKED  # type: ignore[misc]  # pydantic's config of a TypedDict; mypy expects only fields
    max_error_rate: Annotated[float, Ge(0), Le(1)] | None  # share of failed requests; 0.001 = 99.9% available
    max_p99_s: NonNegativeFloat | None  # p99 latency, seconds
    max_ttft_s: NonNegativeFloat | None  # p99 time to first token, seconds


class Routing(RouteLimits, total=False):
    """The plan's `routing:` section: limits for every suite, and per-suite ones under `routes`."""

    routes: dict[str, RouteLimits]


@dataclass(frozen=True)
class OffPeak:
    """Hours of the day (UTC, "HH:MM-HH:MM", may pass midnight) when a provider charges `discount` less
    for online requests: DeepSeek's 16:30-00:30 UTC, for instance."""

    __pydantic_config__ = _CHECKED
    hours: str
    discount: Annotated[float, Gt(0), Lt(1)]

    def __post_init__(self) -> None:
        self.span()  # a malformed `hours` is a plan error when the plan is loaded

    def span(self) -> tuple[int, int]:
        """Start and end as minutes after midnight UTC."""
        try:
            start, end = (_minutes(part) for part in self.hours.split("-"))
        except ValueError:
            raise ValueError(f"hours {self.hours!r}: write the UTC window as HH:MM-HH:MM, e.g. 16:30-00:30") from None
        if start == end:
            raise ValueError(f"hours {self.hours!r}: the window is empty")
        return start, end

    def covers(self, at: datetime) -> bool:
        """Whether a request at `at` (aware, or naive UTC) is in the window."""
        utc = at.astimezone(timezone.utc) if at.tzinfo else at
        now = utc.hour * 60 + utc.minute
        start, end = self.span()
        return start <= now < end if start < end else (now >= start or now < end)


def _minutes(text: str) -> int:
    hours, minutes = text.strip().split(":")
    if not (len(hours) == 2 and len(minutes) == 2 and 0 <= int(hours) < 24 and 0 <= int(minutes) < 60):
        raise ValueError(text)
    return int(hours) * 60 + int(minutes)


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens; batched requests at explicit batch prices, else at a discount."""

    __pydantic_config__ = _CHECKED
    input: NonNegativeFloat = 0.0
    output: NonNegativeFloat = 0.0
    batch_discount: Annotated[float, Ge(0), Lt(1)] | None = None  # fraction off when batched (0.5 = half price)
    batch_input: NonNegativeFloat | None = None
    batch_output: NonNegativeFloat | None = None
    off_peak: OffPeak | None = None  # online requests in these hours pay less (no batch API needed)
    # Input tokens the server read from its prompt cache (a repeated prefix); None: billed as `input`.
    cached_input: NonNegativeFloat | None = None

    def batch_rates(self) -> tuple[float, float]:
        """What a batched request pays per million input and output tokens."""
        keep = 1.0 - (self.batch_discount or 0.0)
        rate_in = self.input * keep if self.batch_input is None else self.batch_input
        rate_out = self.output * keep if self.batch_output is None else self.batch_output
        return rate_in, rate_out

    def cached_rate(self, batched: bool = False) -> float:
        """What a cache-hit input token pays per million: `cached_input`, scaled as the input price is
        when batched (a batch discount applies to cached tokens too); `input`'s rate when not set."""
        if self.cached_input is None:
            return self.batch_rates()[0] if batched else self.input
        if not batched:
            return self.cached_input
        rate_in = self.batch_rates()[0]
        return self.cached_input * (rate_in / self.input) if self.input else min(self.cached_input, rate_in)

    def cost(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        batched: bool = False,
        at: datetime | None = None,
        cached_tokens: int | None = None,
    ) -> float:
        """The price of one request: (prompt - cached)·input + cached·cached_input + completion·output, per
        million; `at`: when it was answered (off-peak hours apply to online requests)."""
        rate_in, rate_out = self.batch_rates() if batched else (self.input, self.output)
        rate_cached = self.cached_rate(batched)
        if not batched and at is not None and self.off_peak is not None and self.off_peak.covers(at):
            keep = 1 - self.off_peak.discount
            rate_in, rate_out, rate_cached = rate_in * keep, rate_out * keep, rate_cached * keep
        cached = min(max(cached_tokens or 0, 0), prompt_tokens)
        return ((prompt_tokens - cached) * rate_in + cached * rate_cached + completion_tokens * rate_out) / 1e6


@dataclass(frozen=True)
class BatchSettings:
    """`batch:` on a model: send its requests through the provider's Batch API (see engine/batch.py).

    Limits left at None take the documented default of the provider the base_url points at."""

    __pydantic_config__ = _CHECKED
    max_requests: PositiveInt | None = None  # requests per batch file
    max_bytes: PositiveInt | None = None  # bytes per batch file
    window: str = "24h"  # completion_window
    retry: Literal["batch", "online"] = "batch"  # where failed or expired lines go next
    max_rounds: PositiveInt = 3  # batches a request may be in before it is stored as an error
    endpoint: str | None = None  # each line's `url`; default: the base_url's last path part + /chat/completions


@dataclass(frozen=True)
class ModelSpec:
    __pydantic_config__ = _CHECKED
    name: str
    provider: str  # a registered provider (harness.providers.registry), checked before the rest
    model: str = ""  # the API model name; defaults to `name`
    base_url: str | None = None
    api_key_env: str | None = None
    path: str | None = None  # samples: JSONL file; llamacpp: GGUF file (default: the embedded model)
    concurrency: PositiveInt = 4
    rpm: PositiveFloat | None = None  # requests per minute
    tpm: PositiveFloat | None = None  # tokens per minute
    timeout_s: PositiveFloat = 120.0
    max_attempts: PositiveInt = 6
    stream: bool = False
    price: Price = Price()
    generation: GenerationOptions = field(default_factory=GenerationOptions)  # per-model overrides
    n_ctx: PositiveInt = 4096  # llamacpp context window
    threads: PositiveInt | None = None  # llamacpp threads
    extra_body: dict[str, Any] = field(default_factory=dict)  # openai: merged into each request's JSON
    extra_headers: dict[str, str] = field(default_factory=dict)  # openai: "$VAR" values read at run time
    rate_limit_wait_s: NonNegativeFloat = 600.0  # how long one sample may wait out 429s before it fails
    batch: BatchSettings | None = None  # None: online requests; `batch: true` means the default settings
    settings: dict[str, Any] = field(
        default_factory=dict
    )  # a plugin provider's own keys (its registration checks them)
    # Tool suites: read calls this model writes in its text (a server whose tool parser misses them) as calls.
    text_tool_calls: Literal["hermes", "qwen_xml", "json"] | None = None
    # False when a server model (base_url) has no `price:`: its cost is unknown (not zero), never "cheapest".
    priced: bool = True

    @property
    def api_model(self) -> str:
        return self.model or self.name

    @property
    def capabilities(self) -> Capabilities:
        """What this model's provider can do (its registration's capabilities)."""
        return provider_info(self.provider).capabilities


@dataclass(frozen=True)
class SuiteRef:
    """A suite as the plan names it, with the plan's options for it."""

    __pydantic_config__ = _CHECKED
    name: str
    limit: PositiveInt | None = None  # at most N items: a fair sample across the suite's groups (harness.suite)
    data: str | None = None
    fewshot: Annotated[int, Ge(0)] | None = None  # number of shots; None = the suite's default
    options: dict[str, Any] = field(default_factory=dict)  # loader options (split, subjects, ...)
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    first: PositiveInt | None = None  # the first N items of the file instead of a sample
    sample_seed: int = 0  # which fair sample `limit` draws
    images: dict[str, Any] = field(default_factory=dict)  # image settings over the suite's (remote, max_edge, ...)


@dataclass(frozen=True)
class Plan:
    __pydantic_config__ = _CHECKED
    name: str
    models: tuple[ModelSpec, ...]
    suites: tuple[SuiteRef, ...]
    path: str = ""
    samples: PositiveInt = 1  # completions per item (pass@k)
    seed: int = 0
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    cache: bool = False  # reuse identical requests across runs
    noninferiority_margin: Annotated[float, Ge(0), Lt(1)] = 0.02
    webhook: str | None = None
    judges: tuple[ModelSpec, ...] = ()  # models that only grade (the `judge` grader), never answer
    routing: Routing = field(default_factory=Routing)  # `harness recommend`'s error-rate and latency limits
    incumbent: str | None = None  # the model whose answers are the pairwise baseline (traffic suites)

    def fingerprint(self) -> str:
        """Identifies the plan's content (not its file name): a rerun of the same plan resumes."""
        blob = json.dumps(plan_to_dict(self), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def model(self, name: str) -> ModelSpec:
        for m in (*self.models, *self.judges):
            if m.name == name:
                return m
        raise HarnessError(f"plan {self.path or self.name}: no model named '{name}'")


class _PlanOnlyKeys(TypedDict, total=False):
    """Plan-file keys that are not `Plan` fields: `limit` is applied to each suite, `description` is for people."""

    __pydantic_config__ = _CHECKED  # type: ignore[misc]  # pydantic's config of a TypedDict; mypy expects only fields
    limit: PositiveInt
    description: str


class _PlanFile(TypedDict):
    __pydantic_config__ = _CHECKED  # type: ignore[misc]  # pydantic's config of a TypedDict; mypy expects only fields
    plan: Plan
    extra: _PlanOnlyKeys


# Fields filled from the file's structure (a mapping key, the file name), never written as keys.
_IMPLIED = {Plan: {"path"}, ModelSpec: {"name", "priced"}, SuiteRef: {"name"}}
# What to write, for fields whose type alone does not say it.
_EXPECTED = {"stop": "a string or a list of strings"}


def load_plan(path: str | Path, *, limit: int | None = None) -> Plan:
    """Load and validate a plan file; `limit` (from --limit) caps items per suite."""
    path = Path(path)
    if not path.exists():
        raise HarnessError(f"plan file not found: {path} (give a path to a YAML plan, e.g. evals/smoke.yaml)")
    from harness.untrusted import load_yaml, read_text  # bounded reads and YAML without alias bombs

    try:
        raw = load_yaml(read_text(path, "plan file"), str(path))
    except yaml.YAMLError as exc:
        raise yaml_error(str(path), exc) from None
    return parse_plan(raw, source=str(path), limit=limit)


def parse_plan(raw: Any, *, source: str = "<plan>", limit: int | None = None) -> Plan:
    """Validate a plan already read from YAML; `source` names it in error messages."""
    if not isinstance(raw, dict):
        raise HarnessError(f"{source}: a plan is a YAML mapping with 'models' and 'suites'")
    models = _named_entries(
        raw.get("models"),
        "models",
        source,
        "models: must map model names to settings, e.g. models: {local: {provider: llamacpp}}",
    )
    judges = _named_entries(
        raw.get("judges") or {}, "judges", source, "judges: must map judge names to model settings, like models"
    )
    suites = _suite_entries(raw.get("suites"), source)
    plan_keys = _unset_empty({k: v for k, v in raw.items() if k not in _PlanOnlyKeys.__annotations__})
    _reject_implied(plan_keys, Plan, source, ())
    document = {
        "plan": {
            **plan_keys,
            "name": raw.get("name") or Path(source).stem,
            "path": source,
            "models": tuple(models),
            "suites": tuple(suites),
            "judges": tuple(judges),
        },
        "extra": {k: v for k, v in raw.items() if k in _PlanOnlyKeys.__annotations__},
    }
    names = {
        "models": [m["name"] for m in models],
        "judges": [j["name"] for j in judges],
        "suites": [s["name"] for s in suites],
    }
    from pydantic import ValidationError

    try:
        checked = _plan_validator().validate_python(document)
    except ValidationError as exc:
        raise HarnessError(_describe_error(exc, source, names)) from None
    for group, entries in (("models", models), ("judges", judges)):
        for entry in entries:
            _check_provider_fields(entry, source, (group, entry["name"]))
    plan: Plan = checked["plan"]
    plan = replace(
        plan,
        models=tuple(_checked_settings(m, source, "models") for m in plan.models),
        judges=tuple(_checked_settings(m, source, "judges") for m in plan.judges),
    )
    _check_relations(plan, source)
    plan_limit = limit if limit is not None else checked["extra"].get("limit")
    if plan_limit is not None:
        suites_capped = tuple(replace(s, limit=min(plan_limit, s.limit or plan_limit)) for s in plan.suites)
        plan = replace(plan, suites=suites_capped)
    return replace(plan, models=tuple(_resolve_path(m, source) for m in plan.models))


def check_generation(raw: Any, source: str) -> dict[str, Any]:
    """Validate a `generation:` mapping written outside a plan (a suite.yaml) by the plan's rules."""
    if raw is None:
        return {}
    from pydantic import ValidationError

    try:
        checked = _generation_validator().validate_python(raw)
    except ValidationError as exc:
        raise HarnessError(_describe_error(exc, source, {}, GenerationOptions, ("generation",))) from None
    _stop_as_tuple(checked)
    return checked


@cache
def _generation_validator():
    from pydantic import TypeAdapter

    return TypeAdapter(GenerationOptions)


@cache
def _plan_validator():
    # Built on first use: importing pydantic and compiling the schema is most of a plan's load time,
    # which `harness --help` and the commands that never read a plan should not pay.
    from pydantic import TypeAdapter

    return TypeAdapter(_PlanFile)


def _named_entries(raw: Any, key: str, source: str, shape: str) -> list[dict[str, Any]]:
    """`{NAME: {settings}}` as a list of settings carrying their name (the order of the file)."""
    if not isinstance(raw, dict) or (key == "models" and not raw):
        raise HarnessError(f"{source}: {shape}")
    entries = []
    for name, spec in raw.items():
        if not isinstance(spec, dict):
            raise HarnessError(
                f"{source}: {key}.{name}: settings must be a mapping, e.g. {{provider: openai, model: ...}}"
            )
        _reject_implied(spec, ModelSpec, source, (key, str(name)))
        if isinstance(spec.get("batch"), bool):  # `batch: true` = the default settings, `false` = online
            spec = {**spec, "batch": {} if spec["batch"] else None}
        spec = _unset_empty(spec)
        # A model behind a server (base_url) without `price:` has an unknown cost; a local model or
        # completions read from files cost nothing to call, so they stay priced at zero.
        unknown = "price" not in spec and bool(spec.get("base_url"))
        entries.append({**spec, "name": str(name), **({"priced": False} if unknown else {})})
    return entries


def _suite_entries(raw: Any, source: str) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise HarnessError(f"{source}: suites: must be a list of suite names, e.g. suites: [math-word, zh-mcq]")
    entries = []
    for entry in raw:
        if isinstance(entry, str):
            entries.append({"name": entry})
            continue
        if not (isinstance(entry, dict) and len(entry) == 1):
            raise HarnessError(
                f"{source}: suites: each entry is a name or {{NAME: {{limit: N, data: PATH}}}}, got {entry!r}"
            )
        ((name, opts),) = entry.items()
        opts = opts or {}
        if not isinstance(opts, dict):
            raise HarnessError(f"{source}: suites.{name}: options must be a mapping, e.g. {{limit: 20}}")
        _reject_implied(opts, SuiteRef, source, ("suites", str(name)))
        entries.append({**_unset_empty(opts), "name": str(name)})
    names = [e["name"] for e in entries]
    if len(set(names)) != len(names):
        raise HarnessError(f"{source}: suites: a suite is listed twice")
    return entries


def _unset_empty(raw: dict) -> dict:
    """`generation:` (or `price:`, `options:`) with nothing after it in YAML is null: the same as leaving it out."""
    return {k: v for k, v in raw.items() if not (v is None and k in ("generation", "price", "options"))}


def _reject_implied(raw: dict, owner: type, source: str, where: tuple[str, ...]) -> None:
    implied = sorted(set(map(str, raw)) & _IMPLIED[owner])
    if implied:
        prefix = f"{_dotted(where)}: " if where else ""
        raise HarnessError(
            f"{source}: {prefix}unknown key(s) {', '.join(implied)} (known: {', '.join(sorted(_known_keys(owner)))})"
        )


def _check_provider_fields(raw: dict, source: str, where: tuple[str, ...]) -> None:
    """A registered provider, and only the keys it uses (its registration lists them)."""
    name = raw.get("provider")
    if not isinstance(name, str):
        return  # missing or not text: pydantic says so in its own words
    info = find_provider(name)
    if info is None:
        names = [repr(n) for n in provider_names()]
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        raise HarnessError(f"{source}: {_dotted(where)}.provider: must be {listed}, got {name!r}")
    accepted = info.accepts() | ({"settings"} if info.settings is not None else set())
    foreign = sorted(set(map(str, raw)) - accepted - _IMPLIED[ModelSpec])
    if foreign:
        known = ", ".join(sorted(accepted - _IMPLIED[ModelSpec]))
        raise HarnessError(
            f"{source}: {_dotted(where)}: unknown key(s) {', '.join(foreign)} for provider {name} (known: {known})"
        )


def _checked_settings(model: ModelSpec, source: str, group: str) -> ModelSpec:
    """A provider's own `settings:` validated by its registration's type (defaults filled in), one line on error."""
    kind = provider_info(model.provider).settings
    if kind is None:
        return model
    from pydantic import TypeAdapter, ValidationError

    try:
        value: Any = TypeAdapter(kind).validate_python(model.settings)
    except ValidationError as exc:
        raise HarnessError(_describe_error(exc, source, {}, kind, (group, model.name, "settings"))) from None
    if is_dataclass(value) and not isinstance(value, type):
        from dataclasses import asdict

        value = asdict(value)
    return replace(model, settings=dict(value))


def _check_relations(plan: Plan, source: str) -> None:
    """What one field alone cannot say: a provider's required settings, names used twice."""
    for group, specs in (("models", plan.models), ("judges", plan.judges)):
        for m in specs:
            where = f"{source}: {group}.{m.name}"
            info = provider_info(m.provider)
            problem = info.check(m) if info.check is not None else None
            if problem:
                raise HarnessError(f"{where}: {problem}")
            if m.base_url and not m.base_url.startswith(("http://", "https://")):
                raise HarnessError(f"{where}.base_url: must be an http:// or https:// URL, got {m.base_url!r}")
            if m.batch and not info.capabilities.batch:
                with_batch_api = [n for n in provider_names() if provider_info(n).capabilities.batch]
                raise HarnessError(
                    f"{where}.batch: needs provider {' or '.join(with_batch_api)} (a server with a Batch API)"
                )
            if m.api_key_env is not None and not m.api_key_env.isidentifier():
                # Not echoed: a value that is not a variable name may be the key itself.
                raise HarnessError(
                    f"{where}.api_key_env: must be the NAME of the environment variable "
                    "that holds the key (letters, digits, _), not the key itself"
                )
    for s in plan.suites:
        if s.limit is not None and s.first is not None:
            raise HarnessError(
                f"{source}: suites.{s.name}: give limit (a fair sample of N items) or first "
                f"(the first N items of the file), not both"
            )
    if plan.incumbent is not None and plan.incumbent not in {m.name for m in plan.models}:
        raise HarnessError(
            f"{source}: incumbent: {plan.incumbent!r} is not one of the plan's models "
            f"({', '.join(m.name for m in plan.models)}); name the model whose answers are the baseline"
        )
    clash = {m.name for m in plan.models} & {j.name for j in plan.judges}
    if clash:
        raise HarnessError(f"{source}: {', '.join(sorted(clash))} is both a model and a judge; rename one")
    for gen in (
        plan.generation,
        *(m.generation for m in (*plan.models, *plan.judges)),
        *(s.generation for s in plan.suites),
    ):
        _stop_as_tuple(gen)


def _stop_as_tuple(gen: GenerationOptions) -> None:
    """`stop: "###"` is one stop sequence, not three."""
    if "stop" in gen:
        stop = gen["stop"]
        gen["stop"] = (stop,) if isinstance(stop, str) else tuple(stop)


def _resolve_path(model: ModelSpec, source: str) -> ModelSpec:
    """A relative `path` that exists next to the plan (and not in the working directory) means that file."""
    if model.path and "path" in provider_info(model.provider).paths:
        base = Path(source).parent
        p = Path(model.path).expanduser()
        if not p.is_absolute() and not p.exists() and (base / p).exists():
            return replace(model, path=str(base / p))
    return model


def _describe_error(
    exc: Any, source: str, names: dict[str, list[str]], root: Any = None, prefix: tuple[str, ...] = ()
) -> str:
    """pydantic's first error as one line: the plan file, the field's path, what is wrong, what was given."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    root = root or _PlanFile
    where, owner, leaf, branch = _locate(first["loc"], names, root)
    where = prefix + where
    # A value that fits no branch of a union fails once per branch: count fields, not branches.
    others = len({prefix + _locate(e["loc"], names, root)[0] for e in errors} - {where})
    more = f" (and {others} more problem(s))" if others else ""
    if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        known = ", ".join(sorted(_known_keys(owner)))
        head = f"{_dotted(where[:-1])}: " if len(where) > 1 else ""
        return f"{source}: {head}unknown key(s) {where[-1]} (known: {known}){more}"
    message = f"must be {_EXPECTED[leaf]}" if branch and leaf in _EXPECTED else first["msg"]
    message = message.replace("Input should be", "must be").replace("Field required", "is required")
    message = message.split(", unable to parse")[0]
    if first["type"] == "value_error":  # our own check (a __post_init__): its message names the value
        return f"{source}: {_dotted(where)}: {message.removeprefix('Value error, ')}{more}"
    given = repr(first.get("input"))
    given = given if len(given) <= 60 else given[:57] + "..."
    shown = "" if first["type"] == "missing" else f", got {given}"
    return f"{source}: {_dotted(where)}: {message}{shown}{more}"


def _locate(loc: tuple, names: dict[str, list[str]], root: Any) -> tuple[tuple[str, ...], Any, str, bool]:
    """Map pydantic's location to the plan's own path: names for list indices, no internal wrapper.

    Also returns the dataclass or mapping type holding the last key, the last field's name, and
    whether pydantic's location went on past that field (into the branches of a union type).
    """
    rest = list(loc)
    owner: Any = root
    shown: list[str] = []
    leaf = ""
    while rest:
        key = rest.pop(0)
        hints = get_type_hints(owner)
        if key not in hints:
            shown.append(str(key))
            break
        if owner is not _PlanFile:
            shown.append(str(key))
        leaf = str(key)
        target = _strip(hints[key])
        if get_origin(target) is tuple and rest:
            index = rest.pop(0)
            entries = names.get(leaf, [])
            shown.append(entries[index] if isinstance(index, int) and index < len(entries) else str(index))
            target = _strip(get_args(target)[0])
        if get_origin(target) is dict and rest:  # {NAME: settings} (routing.routes): the name, then the settings
            shown.append(str(rest.pop(0)))
            target = _strip(get_args(target)[1])
        if not (is_dataclass(target) or is_typeddict(target)):
            break
        owner = target
    return tuple(shown), owner, leaf, bool(rest)


def _strip(hint: Any) -> Any:
    """`X | None` -> X, so the walk can descend into optional dataclasses."""
    args = [a for a in get_args(hint) if a is not type(None)]
    if get_origin(hint) is not None and len(args) == 1 and get_origin(hint) is not tuple:
        return args[0]
    return hint


def _known_keys(owner: Any) -> set[str]:
    if owner is _PlanFile or owner is Plan:
        return (_field_names(Plan) | set(_PlanOnlyKeys.__annotations__)) - _IMPLIED[Plan]
    return _field_names(owner) - _IMPLIED.get(owner, set())


def _field_names(owner: Any) -> set[str]:
    if is_dataclass(owner):
        return {f.name for f in fields(owner)}
    return set(owner.__annotations__) - {"__pydantic_config__"}


def _dotted(parts: tuple[str, ...]) -> str:
    return ".".join(parts)


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The plan as plain data, for storing with a run. Holds env-variable names, never key values."""
    from dataclasses import asdict

    data = asdict(plan)
    data.pop("path", None)
    # Settings left unset are left out, so a plan that uses no batch keys keeps the fingerprint
    # it had before they existed (its unfinished run still resumes).
    for model in (*data["models"], *data["judges"]):
        if model.get("batch") is None:
            model.pop("batch", None)
        if model.get("priced", True):
            model.pop("priced", None)
        for key in ("batch_discount", "batch_input", "batch_output", "off_peak", "cached_input"):
            if model["price"].get(key) is None:
                model["price"].pop(key, None)
    for model in (*data["models"], *data["judges"]):
        # A header value written in the plan may be a credential: keep $VAR names, never values.
        headers = {
            k: v if v.startswith("$") else "(set in the plan)" for k, v in (model.get("extra_headers") or {}).items()
        }
        model["extra_headers"] = headers
        # Left out at their defaults, like the batch keys: a plan that uses none keeps its fingerprint.
        for key, default in (
            ("extra_body", {}),
            ("extra_headers", {}),
            ("rate_limit_wait_s", 600.0),
            ("settings", {}),
            ("text_tool_calls", None),
        ):
            if model.get(key) == default:
                model.pop(key, None)
    for suite in data["suites"]:  # likewise: a plan without image settings keeps its fingerprint
        if not suite.get("images"):
            suite.pop("images", None)
    return data


def unpriced_warning(plan: Plan) -> str:
    """One line naming the models without a `price:` whose cost is compared with others' ("" when none).

    A plan of one model compares no costs, so it is not warned about."""
    names = [m.name for m in plan.models if not m.priced]
    if not names or len(plan.models) < 2:
        return ""
    return (
        f"warning: no price for {', '.join(names)}: cost unknown, shown as —, never routed as cheapest; "
        f"add price: {{input: X, output: Y}} ($ per million tokens), or price: {{output: 0}} for a free model"
    )


def with_batch(plan: Plan) -> Plan:
    """`harness run --batch`: every answering model whose provider has a Batch API, through it."""
    models = tuple(
        replace(m, batch=m.batch or BatchSettings()) if provider_info(m.provider).capabilities.batch else m
        for m in plan.models
    )
    return replace(plan, models=models)
