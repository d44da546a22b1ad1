"""`harness run --dry-run`: show what a plan would send and roughly what it would cost, sending nothing."""

from __future__ import annotations

import json

import click

from harness.engine.units import generation_for, prepare_suites, replayed_generation
from harness.formatting import money
from harness.plan import Plan
from harness.providers.tokens import estimate_tokens
from harness.providers.vision import image_tokens, prompt_images, rule_for


def _shared_prefix(a: str, b: str) -> int:
    """Characters at the start of `a` that `b` begins with too."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # binary search on the first differing character: C-speed slices, not a Python loop
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def estimate_suites(plan: Plan, *, data_override: dict[str, str] | None = None) -> list[dict]:
    """Per suite: items, estimated prompt tokens, the tokens a prompt cache could serve (each prompt's
    start shared with the previous or the first prompt), the first prompt, the same per item
    `length` when the items carry one (needle suites), the images sent (width, height, detail), and the
    items of a suite of replayed requests (each keeps its own max_tokens)."""
    suites = prepare_suites(plan, data_override=data_override)
    out = []
    for p in suites:
        n_items = prompt_tokens = cached_tokens = 0
        first = None
        first_text = previous = ""
        by_length: dict[int, list[int]] = {}
        images: list[tuple[int, int, str | None]] = []  # (width, height, detail) of every image sent
        replayed = []
        for item in p.suite.items():
            if p.suite.request_field:  # each logged request keeps its own max_tokens
                replayed.append(item)
            prompt = p.builder.build(item)
            text = prompt.text
            tokens = estimate_tokens(text)
            images += [(i.width, i.height, i.detail) for i in prompt_images(prompt)]
            if prompt.tools:  # the function schemas are sent (and billed) as prompt tokens too
                tokens += estimate_tokens(json.dumps(prompt.to_json().get("tools", []), ensure_ascii=False))
            if first is None:
                first, first_text = prompt, text
            else:
                shared = max(_shared_prefix(text, previous), _shared_prefix(text, first_text))
                cached_tokens += min(tokens, estimate_tokens(text[:shared]) if shared else 0)
            previous = text
            n_items += 1
            prompt_tokens += tokens
            length = item.fields.get("length") if isinstance(item.fields, dict) else None
            if isinstance(length, int) and not isinstance(length, bool):
                row = by_length.setdefault(length, [0, 0])
                row[0] += 1
                row[1] += tokens
        out.append(
            dict(
                prepared=p,
                items=n_items,
                prompt_tokens=prompt_tokens,
                cached_tokens=cached_tokens,
                first=first,
                by_length=by_length,
                images=images,
                replayed=replayed,
            )
        )
    return out


def plan_costs(plan: Plan, per_suite: list[dict]) -> dict[str, dict]:
    """model -> requests and estimated cost (completions at max_tokens), with cache hits where priced,
    image tokens by the model family's rule, agent loops at their turn limit and token budget."""
    figures = {}
    for model in plan.models:
        requests = 0
        cost = cached_cost = 0.0
        image_total = 0
        batched = bool(model.batch)
        for s in per_suite:
            suite = s["prepared"].suite
            gen = generation_for(plan, model, suite)
            req = s["items"] * plan.samples
            prompt_tokens = s["prompt_tokens"]
            if s["images"]:
                rule = rule_for(model.api_model)
                images = sum(image_tokens(w, h, rule, d) for w, h, d in s["images"])
                prompt_tokens += images
                image_total += images * plan.samples
            if suite.agent:  # an agent loop: up to max_turns requests per item, stopped at its token budget
                turns = int(suite.agent.get("max_turns", 12))
                budget = int(suite.agent.get("token_budget", 30_000))
                requests += req * turns
                agent_cost = model.price.cost(req * budget, req * turns * gen.max_tokens, batched=batched)
                cost += agent_cost
                cached_cost += agent_cost
                continue
            requests += req
            out_tokens = req * gen.max_tokens
            if s["replayed"]:
                out_tokens = plan.samples * sum(
                    replayed_generation(plan, model, suite, item, gen).max_tokens for item in s["replayed"]
                )
            prompt = prompt_tokens * plan.samples
            cost += model.price.cost(prompt, out_tokens, batched=batched)
            # Later samples of an item repeat its whole prompt: a cache could serve all of it.
            cached = s["cached_tokens"] + (plan.samples - 1) * s["prompt_tokens"]
            cached_cost += model.price.cost(prompt, out_tokens, batched=batched, cached_tokens=cached)
        figures[model.name] = {"requests": requests, "estimated_cost_usd": cost}
        if model.price.cached_input is not None:
            figures[model.name]["estimated_cached_cost_usd"] = cached_cost
        if image_total:
            figures[model.name]["image_tokens"] = image_total
    return figures


def dry_run(plan: Plan, *, data_override: dict[str, str] | None = None) -> dict:
    """Print each suite's first prompt, request counts and an estimated cost per model; return the figures.

    Tokens are estimated from the prompt text (about 4 characters a token, 1.5 for Chinese);
    completions are assumed to use their full max_tokens, so the estimate is an upper bound.
    """
    per_suite = estimate_suites(plan, data_override=data_override)
    for s in per_suite:
        p, first = s["prepared"], s["first"]
        click.echo(f"=== suite {p.suite.name}: {s['items']} items x {plan.samples} samples, hash {p.hash}")
        if first is not None:
            for m in first.messages:
                text = (
                    m.text
                    if len(m.text) <= 4000
                    else m.text[:2000] + f"\n[... {len(m.text) - 4000:,} characters ...]\n" + m.text[-2000:]
                )
                click.echo(f"--- {m.role}\n{text}")
                for image in m.images:
                    size = f"{image.width}x{image.height}" if image.width else "size unknown"
                    click.echo(f"[image {image.source or image.url} {size} sha256 {image.sha256[:12]}]")
    figures = plan_costs(plan, per_suite)
    click.echo("\nrequests and estimated cost (completions at max_tokens: an upper bound)")
    for model in plan.models:
        requests = figures[model.name]["requests"]
        cost = figures[model.name]["estimated_cost_usd"]
        how = ""
        if model.batch:
            from harness.engine.batch import limits_for

            limits = limits_for(model)
            # Batches by request count only: the byte limit (100-200 MB) rarely binds for prompts.
            figures[model.name]["batches"] = -(-requests // limits.max_requests)
            how = (
                f"   batched: at least {figures[model.name]['batches']} batch(es) of <= {limits.max_requests:,} "
                f"requests ({limits.provider} limits), at the batch price"
            )
        elif model.price.off_peak is not None:
            off = model.price.off_peak
            off_cost = cost * (1 - off.discount)
            figures[model.name]["estimated_off_peak_cost_usd"] = off_cost
            how = f" at the list price; ~{money(off_cost)} off-peak ({off.hours} UTC, {off.discount:.0%} off)"
        if "estimated_cached_cost_usd" in figures[model.name]:
            how += (
                f"; ~{money(figures[model.name]['estimated_cached_cost_usd'])} if the server caches the prompts' "
                f"shared starts (cached input at ${model.price.cached_input:g}/M)"
            )
        click.echo(f"  {model.name:<24} {requests:>7} requests   ~{money(cost)}{how}")
        shown_images = figures[model.name].get("image_tokens")
        if shown_images:
            click.echo(
                f"  {'':<24} incl. ≈{shown_images:,} image tokens ({rule_for(model.api_model)} rule, "
                "estimated: the server's counts replace it)"
            )
    _print_judges(plan, per_suite)
    _print_lengths(plan, per_suite)
    return figures


def _print_judges(plan: Plan, per_suite: list[dict]) -> None:
    """How many judge requests pairwise suites may make (both orders per candidate and item)."""
    from harness.graders import needs_of

    pairwise = [s for s in per_suite if needs_of(s["prepared"].suite.grader.name).incumbent]
    if pairwise and plan.judges:
        candidates = len([m for m in plan.models if m.name != plan.incumbent])
        items = sum(s["items"] for s in pairwise) * plan.samples
        asks = items * candidates * 2  # both orders
        click.echo(
            f"  judges (pairwise, both orders): up to {asks:,} requests each ({items:,} items x {candidates} "
            f"candidates x 2), not priced here; cached verdicts are not asked again"
        )


def _print_lengths(plan: Plan, per_suite: list[dict]) -> None:
    """Suites whose items carry a `length` (needle suites): tokens and cost per length and model."""
    for s in per_suite:
        if not s["by_length"]:
            continue
        suite = s["prepared"].suite
        click.echo(f"\nsuite {suite.name} by prompt length (estimated tokens; completions at max_tokens)")
        for length in sorted(s["by_length"]):
            n, tokens = s["by_length"][length]
            costs = []
            for model in plan.models:
                gen = generation_for(plan, model, suite)
                c = model.price.cost(
                    tokens * plan.samples, n * plan.samples * gen.max_tokens, batched=bool(model.batch)
                )
                costs.append(f"{model.name} ~{money(c)}")
            click.echo(
                f"  {length:>9,} tokens: {n:>4} items, ~{tokens * plan.samples:,} input tokens   " + ", ".join(costs)
            )
