"""Read an eval plan (YAML) into a typed `Plan`: which models, which suites, with which options.

The plan format is a documented contract (README "Plan files"); unknown keys are rejected so a
typo never silently changes what gets measured.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from harness.errors import HarnessError

PROVIDERS = ("openai", "llamacpp", "samples")


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    input: float = 0.0
    output: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1e6


@dataclass(frozen=True)
class ModelSpec:
    name: str
    provider: str
    model: str = ""  # the API model name; defaults to `name`
    base_url: str | None = None
    api_key_env: str | None = None
    path: str | None = None  # samples: JSONL file; llamacpp: GGUF file (default: the embedded model)
    concurrency: int = 4
    rpm: float | None = None  # requests per minute
    tpm: float | None = None  # tokens per minute
    timeout_s: float = 120.0
    max_attempts: int = 6
    stream: bool = False
    price: Price = Price()
    generation: Mapping[str, Any] = field(default_factory=dict)  # per-model overrides
    n_ctx: int = 4096  # llamacpp context window
    threads: int | None = None  # llamacpp threads

    @property
    def api_model(self) -> str:
        return self.model or self.name


@dataclass(frozen=True)
class SuiteRef:
    """A suite as the plan names it, with the plan's options for it."""

    name: str
    limit: int | None = None  # at most N items, a fair sample across the suite's groups (harness.suite)
    data: str | None = None
    fewshot: int | None = None  # number of shots; None = the suite's default
    options: Mapping[str, Any] = field(default_factory=dict)  # loader options (split, subjects, ...)
    generation: Mapping[str, Any] = field(default_factory=dict)
    first: int | None = None  # the first N items of the file instead of a sample
    sample_seed: int = 0  # which fair sample `limit` draws


@dataclass(frozen=True)
class Plan:
    name: str
    models: tuple[ModelSpec, ...]
    suites: tuple[SuiteRef, ...]
    path: str = ""
    samples: int = 1  # completions per item (pass@k)
    seed: int = 0
    generation: Mapping[str, Any] = field(default_factory=dict)
    cache: bool = False  # reuse identical requests across runs
    noninferiority_margin: float = 0.02
    webhook: str | None = None
    judges: tuple[ModelSpec, ...] = ()  # models that only grade (the `judge` grader), never answer
    routing: Mapping[str, Any] = field(default_factory=dict)  # `harness recommend` limits (see parse_routing)

    def fingerprint(self) -> str:
        """Identifies the plan's content (not its file name): a rerun of the same plan resumes."""
        blob = json.dumps(plan_to_dict(self), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def model(self, name: str) -> ModelSpec:
        for m in (*self.models, *self.judges):
            if m.name == name:
                return m
        raise HarnessError(f"plan {self.path or self.name}: no model named '{name}'")


_MODEL_KEYS = {f.name for f in fields(ModelSpec)} - {"name"}
_SUITE_KEYS = {"limit", "data", "fewshot", "options", "generation", "first", "sample_seed"}
_PLAN_KEYS = {"name", "models", "judges", "suites", "samples", "seed", "generation", "cache",
              "noninferiority_margin", "webhook", "limit", "description", "routing"}
_GENERATION_KEYS = {"max_tokens", "temperature", "top_p", "stop", "seed"}


def load_plan(path: str | Path, *, limit: int | None = None) -> Plan:
    """Load and validate a plan file; `limit` (from --limit) caps items per suite."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"plan file not found: {path} (give a path to a YAML plan, e.g. evals/smoke.yaml)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise HarnessError(f"{path}: invalid YAML{where}: {problem}") from None
    return parse_plan(raw, source=str(path), limit=limit)


def parse_plan(raw: Any, *, source: str = "<plan>", limit: int | None = None) -> Plan:
    if not isinstance(raw, dict):
        raise HarnessError(f"{source}: a plan is a YAML mapping with 'models' and 'suites'")
    _reject_unknown(raw, _PLAN_KEYS, source)
    models_raw = raw.get("models")
    if not isinstance(models_raw, dict) or not models_raw:
        raise HarnessError(f"{source}: 'models' must map model names to settings, e.g. models: {{local: {{provider: llamacpp}}}}")
    models = tuple(_parse_model(str(name), spec, source) for name, spec in models_raw.items())
    judges_raw = raw.get("judges") or {}
    if not isinstance(judges_raw, dict):
        raise HarnessError(f"{source}: 'judges' must map judge names to model settings, like 'models'")
    judges = tuple(_parse_model(str(name), spec, source) for name, spec in judges_raw.items())
    clash = {m.name for m in models} & {j.name for j in judges}
    if clash:
        raise HarnessError(f"{source}: {', '.join(sorted(clash))} is both a model and a judge; rename one")
    suites_raw = raw.get("suites")
    if not isinstance(suites_raw, list) or not suites_raw:
        raise HarnessError(f"{source}: 'suites' must be a list of suite names, e.g. suites: [math-word, zh-mcq]")
    plan_limit = limit if limit is not None else _opt_int(raw, "limit", source)
    suites = tuple(_parse_suite(entry, source, plan_limit) for entry in suites_raw)
    names = [s.name for s in suites]
    if len(set(names)) != len(names):
        raise HarnessError(f"{source}: a suite is listed twice in 'suites'")
    samples = _opt_int(raw, "samples", source) or 1
    if samples < 1:
        raise HarnessError(f"{source}: 'samples' must be at least 1")
    return Plan(
        name=str(raw.get("name") or Path(source).stem),
        models=models,
        suites=suites,
        path=source,
        samples=samples,
        seed=_opt_int(raw, "seed", source) or 0,
        generation=_parse_generation(raw.get("generation"), f"{source}: generation"),
        cache=bool(raw.get("cache", False)),
        noninferiority_margin=float(raw.get("noninferiority_margin", 0.02)),
        webhook=raw.get("webhook"),
        judges=judges,
        routing=parse_routing(raw.get("routing"), f"{source}: routing"),
    )


def _parse_model(name: str, spec: Any, source: str) -> ModelSpec:
    where = f"{source}: model '{name}'"
    if not isinstance(spec, dict):
        raise HarnessError(f"{where}: settings must be a mapping, e.g. {{provider: openai, model: ...}}")
    _reject_unknown(spec, _MODEL_KEYS, where)
    provider = spec.get("provider")
    if provider not in PROVIDERS:
        raise HarnessError(f"{where}: unknown provider {provider!r} (use one of: {', '.join(PROVIDERS)})")
    if provider == "openai" and not spec.get("base_url"):
        raise HarnessError(f"{where}: provider openai needs base_url (the server's OpenAI-compatible /v1 URL)")
    if provider == "samples" and not spec.get("path"):
        raise HarnessError(f"{where}: provider samples needs path (a JSONL file with task_id and completion)")
    kwargs = {k: v for k, v in spec.items() if k not in ("price", "generation")}
    price = spec.get("price") or {}
    if not isinstance(price, dict) or set(price) - {"input", "output"}:
        raise HarnessError(f"{where}: price must be {{input: USD_PER_M_TOKENS, output: USD_PER_M_TOKENS}}")
    try:
        model = ModelSpec(
            name=name,
            price=Price(float(price.get("input", 0)), float(price.get("output", 0))),
            generation=_parse_generation(spec.get("generation"), f"{where}: generation"),
            **kwargs,
        )
    except (TypeError, ValueError) as exc:
        raise HarnessError(f"{where}: {exc}") from None
    if int(model.concurrency) < 1:
        raise HarnessError(f"{where}: concurrency must be at least 1")
    if model.path and provider in ("samples", "llamacpp"):
        base = Path(source).parent
        p = Path(model.path).expanduser()
        if not p.is_absolute() and not p.exists() and (base / p).exists():
            object.__setattr__(model, "path", str(base / p))
    return model


def _parse_suite(entry: Any, source: str, plan_limit: int | None) -> SuiteRef:
    if isinstance(entry, str):
        return SuiteRef(name=entry, limit=plan_limit)
    if isinstance(entry, dict) and len(entry) == 1:
        (name, opts), = entry.items()
        where = f"{source}: suite '{name}'"
        opts = opts or {}
        if not isinstance(opts, dict):
            raise HarnessError(f"{where}: options must be a mapping, e.g. {{limit: 20}}")
        _reject_unknown(opts, _SUITE_KEYS, where)
        suite_limit = opts.get("limit")
        if suite_limit is not None and (not isinstance(suite_limit, int) or suite_limit < 1):
            raise HarnessError(f"{where}: limit must be a positive whole number")
        lim = min(x for x in (suite_limit, plan_limit) if x is not None) if (suite_limit or plan_limit) else None
        first, sample_seed = opts.get("first"), opts.get("sample_seed", 0)
        if first is not None and (not isinstance(first, int) or isinstance(first, bool) or first < 1):
            raise HarnessError(f"{where}: first must be a positive whole number (the first N items of the file)")
        if first is not None and suite_limit is not None:
            raise HarnessError(f"{where}: give limit (a fair sample of N items) or first (the first N items), not both")
        if not isinstance(sample_seed, int) or isinstance(sample_seed, bool):
            raise HarnessError(f"{where}: sample_seed must be a whole number (which sample limit draws)")
        fewshot = opts.get("fewshot")
        if fewshot is not None and (not isinstance(fewshot, int) or fewshot < 0):
            raise HarnessError(f"{where}: fewshot must be a whole number of examples (0 allowed)")
        return SuiteRef(
            name=str(name),
            limit=lim,
            data=None if opts.get("data") is None else str(opts["data"]),
            fewshot=fewshot,
            options=dict(opts.get("options") or {}),
            generation=_parse_generation(opts.get("generation"), f"{where}: generation"),
            first=first,
            sample_seed=sample_seed,
        )
    raise HarnessError(f"{source}: each entry of 'suites' is a name or {{NAME: {{limit: N, data: PATH}}}}, got {entry!r}")


def _parse_generation(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise HarnessError(f"{where}: must be a mapping of {', '.join(sorted(_GENERATION_KEYS))}")
    _reject_unknown(raw, _GENERATION_KEYS, where)
    out = dict(raw)
    if "stop" in out:
        out["stop"] = tuple([out["stop"]] if isinstance(out["stop"], str) else out["stop"] or ())
    return out


ROUTING_LIMITS = {"max_error_rate": "a fraction of requests, 0.001 = 99.9% available",
                  "max_p99_s": "seconds", "max_ttft_s": "seconds to the first token, p99"}


def parse_routing(raw: Any, where: str) -> dict[str, Any]:
    """`routing: {max_error_rate, max_p99_s, max_ttft_s, routes: {SUITE: {same keys}}}`, checked."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise HarnessError(f"{where}: must be a mapping of {', '.join(ROUTING_LIMITS)} and routes")
    _reject_unknown(raw, set(ROUTING_LIMITS) | {"routes"}, where)
    out: dict[str, Any] = _parse_limits(raw, where)
    routes = raw.get("routes") or {}
    if not isinstance(routes, dict):
        raise HarnessError(f"{where}: routes must map suite names to limits, e.g. routes: {{math-word: {{max_p99_s: 30}}}}")
    for suite, limits in routes.items():
        if not isinstance(limits, dict):
            raise HarnessError(f"{where}: routes: {suite}: must be a mapping of {', '.join(ROUTING_LIMITS)}")
        _reject_unknown(limits, set(ROUTING_LIMITS), f"{where}: routes: {suite}")
    out["routes"] = {str(suite): _parse_limits(limits, f"{where}: routes: {suite}") for suite, limits in routes.items()}
    return out


def _parse_limits(raw: Mapping[str, Any], where: str) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key, unit in ROUTING_LIMITS.items():
        if key not in raw:
            continue
        value = raw[key]
        ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
                               and (key != "max_error_rate" or value <= 1))
        if not ok:
            raise HarnessError(f"{where}: {key} must be a number >= 0 ({unit}) or null for no limit, got {value!r}")
        out[key] = None if value is None else float(value)
    return out


def _opt_int(raw: Mapping[str, Any], key: str, source: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise HarnessError(f"{source}: '{key}' must be a whole number, got {value!r}")
    return value


def _reject_unknown(raw: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(map(str, raw)) - known)
    if unknown:
        raise HarnessError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The plan as plain data, for storing with a run. Holds env-variable names, never key values."""
    from dataclasses import asdict

    data = asdict(plan)
    data.pop("path", None)
    return data
