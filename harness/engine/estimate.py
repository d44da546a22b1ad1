"""`harness run --dry-run`: show what a plan would send and roughly what it would cost, sending nothing."""

from __future__ import annotations

import json

import click

from harness.engine.units import generation_for, prepare_suites, replayed_generation
from harness.formatting import money
from harness.plan import Plan
from harness.providers.tokens import estimate_tokens
from harness.providers.vision import image_tokens, prompt_images, rule_for


def dry_run(plan: Plan, *, data_override: dict[str, str] | None = None) -> dict:
    """Print each suite's first prompt, request counts and an estimated cost per model; return the figures.

    Tokens are estimated from the prompt text (about 4 characters a token, 1.5 for Chinese);
    completions are assumed to use their full max_tokens, so the estimate is an upper bound.
    """
    suites = prepare_suites(plan, data_override=data_override)
    per_suite = {}
    replayed: dict[str, list] = {}
    for p in suites:
        n_items = 0
        prompt_tokens = 0
        first = None
        images: list[tuple[int, int, str | None]] = []  # (width, height, detail) of every image sent
        replayed[p.suite.name] = []
        for item in p.suite.items():
            if p.suite.request_field:  # each logged request keeps its own max_tokens
                replayed[p.suite.name].append(item)
            prompt = p.builder.build(item)
            if first is None:
                first = prompt
            n_items += 1
            prompt_tokens += estimate_tokens(prompt.text)
            images += [(i.width, i.height, i.detail) for i in prompt_images(prompt)]
            if prompt.tools:  # the function schemas are sent (and billed) as prompt tokens too
                prompt_tokens += estimate_tokens(json.dumps(prompt.to_json().get("tools", []), ensure_ascii=False))
        per_suite[p.suite.name] = (n_items, prompt_tokens, first, images)
        click.echo(f"=== suite {p.suite.name}: {n_items} items x {plan.samples} samples, hash {p.hash}")
        if first is not None:
            for m in first.messages:
                click.echo(f"--- {m.role}\n{m.text}")
                for image in m.images:
                    size = f"{image.width}x{image.height}" if image.width else "size unknown"
                    click.echo(f"[image {image.source or image.url} {size} sha256 {image.sha256[:12]}]")
    figures: dict[str, dict[str, float]] = {}
    click.echo("\nrequests and estimated cost (completions at max_tokens: an upper bound)")
    for model in plan.models:
        requests = 0
        cost = 0.0
        for p in suites:
            n_items, prompt_tokens, _, images = per_suite[p.suite.name]
            if images:
                rule = rule_for(model.api_model)
                image_total = sum(image_tokens(w, h, rule, d) for w, h, d in images)
                prompt_tokens += image_total
                figures.setdefault(model.name, {}).setdefault("image_tokens", 0)
                figures[model.name]["image_tokens"] += image_total * plan.samples
            gen = generation_for(plan, model, p.suite)
            req = n_items * plan.samples
            if p.suite.agent:  # an agent loop: up to max_turns requests per item, stopped at its token budget
                turns = int(p.suite.agent.get("max_turns", 12))
                budget = int(p.suite.agent.get("token_budget", 30_000))
                requests += req * turns
                cost += model.price.cost(req * budget, req * turns * gen.max_tokens, batched=bool(model.batch))
                continue
            requests += req
            answer_tokens = req * gen.max_tokens
            if replayed.get(p.suite.name):
                answer_tokens = plan.samples * sum(
                    replayed_generation(plan, model, p.suite, item, gen).max_tokens for item in replayed[p.suite.name]
                )
            cost += model.price.cost(prompt_tokens * plan.samples, answer_tokens, batched=bool(model.batch))
        shown_images = figures.get(model.name, {}).get("image_tokens")
        figures[model.name] = {"requests": requests, "estimated_cost_usd": cost}
        if shown_images:
            figures[model.name]["image_tokens"] = shown_images
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
        click.echo(f"  {model.name:<24} {requests:>7} requests   ~{money(cost)}{how}")
        if shown_images:
            click.echo(
                f"  {'':<24} incl. ≈{shown_images:,} image tokens ({rule_for(model.api_model)} rule, "
                "estimated: the server's counts replace it)"
            )
    from harness.graders import needs_of

    pairwise = [p for p in suites if needs_of(p.suite.grader.name).incumbent]
    if pairwise and plan.judges:
        candidates = len([m for m in plan.models if m.name != plan.incumbent])
        items = sum(per_suite[p.suite.name][0] for p in pairwise) * plan.samples
        asks = items * candidates * 2  # both orders
        click.echo(
            f"  judges (pairwise, both orders): up to {asks:,} requests each ({items:,} items x {candidates} "
            f"candidates x 2), not priced here; cached verdicts are not asked again"
        )
    return figures
