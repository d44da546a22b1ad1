"""A recommendation as a LiteLLM proxy config: one model group per route, led by the recommended model.

Per route (suite) with a recommendation: the group `ROUTE` is the recommended model; each fallback
is a group `ROUTE--MODEL` named under `router_settings.fallbacks`, in the order the evidence
supports: the next cheapest models shown not to be worse (non-inferior, eligible), then the best
scoring. Keys are `os.environ/VAR` references to the variable the plan names, never values (the
proxy's own master key is `os.environ/LITELLM_MASTER_KEY`);
rpm/tpm come from the plan. A comment block above each group gives the evidence.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from harness.analysis.recommend import Recommendation, SuiteRecommendation
from harness.records import money


def _num(x: float, pct: bool = False) -> str:
    if x is None or x != x or math.isinf(x):
        return "—"
    return f"{100 * x:.1f}%" if pct else f"{x:.3g}"


def fallback_order(s: SuiteRecommendation) -> list[str]:
    """After the recommended model: cheaper-first non-inferior eligible models, then the best, no repeats."""
    chosen = s.model
    order = [c.model for c in s.candidates if c.eligible and c.noninferior and c.model != chosen]
    if s.best and s.best != chosen and s.best not in order:
        order.append(s.best)
    return order


def _params(spec: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {"model": f"openai/{spec.get('model') or spec['name']}"}
    if spec.get("base_url"):
        params["api_base"] = spec["base_url"]
    if spec.get("api_key_env"):
        params["api_key"] = f"os.environ/{spec['api_key_env']}"
    for key in ("rpm", "tpm"):
        if spec.get(key):
            params[key] = int(spec[key])
    return params


def router_yaml(rec: Recommendation) -> str:
    """The config text (YAML with the evidence as comments); routes without a recommended model are left out."""
    plan = rec.run.plan or {}
    specs = {m["name"]: m for m in plan.get("models") or []}
    lines = [
        f"# LiteLLM router config from harness run {rec.run.id} (plan {rec.run.plan_name}),",
        f"# non-inferiority margin {100 * rec.margin:g} points, one-sided alpha {rec.alpha:g}.",
        "# Keys are read by LiteLLM from the environment variables named below; none is written here.",
    ]
    model_list: list[dict[str, Any]] = []
    fallbacks: list[dict[str, list[str]]] = []
    skipped = []
    for s in rec.suites:
        if s.model is None or s.model not in specs or specs[s.model].get("provider") != "openai":
            skipped.append(s.suite)
            continue
        order = [m for m in fallback_order(s) if m in specs and specs[m].get("provider") == "openai"]
        lines.append("#")
        lines.append(f"# route {s.suite} -> {s.model}: {s.reason}")
        for c in s.candidates:
            if c.model not in (s.model, *order):
                continue
            lines.append(
                f"#   {c.model}: score {_num(c.mean, True)} (95% CI {_num(c.lo, True)}-{_num(c.hi, True)}), "
                f"difference {_num(c.diff, True)} (one-sided lower bound {_num(c.lower, True)}), "
                f"p99 {_num(c.latency_p99)} s, errors {_num(c.error_rate, True)}, "
                f"cost per 1,000 requests {money(1000 * c.cost_per_sample)}"
            )
        model_list.append({"model_name": s.suite, "litellm_params": _params(specs[s.model])})
        groups = []
        for m in order:
            group = f"{s.suite}--{m}"
            model_list.append({"model_name": group, "litellm_params": _params(specs[m])})
            groups.append(group)
        if groups:
            fallbacks.append({s.suite: groups})
    if skipped:
        lines.append(f"# no route for: {', '.join(skipped)} (no eligible model, or not an openai endpoint)")
    config: dict[str, Any] = {
        "model_list": model_list,
        "router_settings": {"fallbacks": fallbacks},
        # The key your clients present to the proxy: LiteLLM refuses to start without one.
        "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
    }
    return "\n".join(lines) + "\n" + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
