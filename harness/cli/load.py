"""`harness load`: each model of a plan under rising load; latency percentiles, throughput, errors."""

from __future__ import annotations

import json
import sys

import click

from harness.cli.common import db_option, echo_err, open_store
from harness.errors import HarnessError
from harness.formatting import money

CONTRACT_FIELDS = (
    "concurrency",
    "rate",
    "requests",
    "ok",
    "errors",
    "achieved_concurrency",
    "achieved_rate",
    "requests_per_s",
    "output_tokens_per_s",
    "ttft_p50",
    "ttft_p90",
    "ttft_p99",
    "latency_p50",
    "latency_p90",
    "latency_p99",
    "itl_p50",
    "itl_p99",
)


@click.command()
@click.argument("plan", type=click.Path(dir_okay=False))
@db_option
@click.option(
    "--concurrency",
    metavar="LIST",
    help="Closed loop: concurrent users per stage, e.g. 1,8,32,128,500 "
    "(default 1,8,32). Each user sends its next request when its last one ends.",
)
@click.option(
    "--rate",
    metavar="LIST",
    help="Open loop: Poisson arrivals per second per stage, e.g. 2,5,10. "
    "Requests are sent on schedule whatever the server does; a generator that falls behind says so.",
)
@click.option("--requests", type=int, help="Measured requests per stage (default 50).")
@click.option("--duration", type=float, metavar="S", help="Or: measured seconds per stage.")
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    help="Unmeasured requests first in each stage (default: one per user in closed loop, none in open loop).",
)
@click.option(
    "--ramp-up",
    type=float,
    metavar="S",
    help="Closed loop: start the users evenly over S seconds "
    "instead of all at once; about one request's latency keeps them out of step (default 0).",
)
@click.option(
    "--input-tokens",
    type=click.IntRange(min=1),
    help="Synthetic prompts of about N tokens instead of the plan's suites.",
)
@click.option(
    "--output-tokens",
    type=click.IntRange(min=1),
    help="max_tokens per request (default: each suite's; 256 with --input-tokens).",
)
@click.option(
    "--ignore-eos",
    is_flag=True,
    help="Ask the server not to stop before max_tokens (ignore_eos and "
    "min_tokens: vLLM, llama.cpp, SGLang). Hosted APIs may refuse it.",
)
@click.option("--suite", "suites", multiple=True, help="Use only these plan suites' prompts. Repeatable.")
@click.option(
    "--images",
    type=click.IntRange(min=0, max=16),
    default=0,
    help="Add N synthetic images (JPEG) to each request's last user message: vision requests have their own TTFT.",
)
@click.option("--image-size", metavar="WxH", help="Size of the --images pictures (default 1024x1024).")
@click.option(
    "--slo",
    metavar="TERMS",
    help="Judge each stage, e.g. 'ttft_p99<=2s,latency_p99<=5s,error_rate<=1%%'; "
    "a stage stops early once it cannot meet it.",
)
@click.option(
    "--search",
    is_flag=True,
    help="With --slo: find each model's highest concurrency (or rate) that "
    "meets the SLO: the listed levels, then doubling and bisection.",
)
@click.option(
    "--max-concurrency",
    type=click.IntRange(min=1),
    default=1024,
    show_default=True,
    help="Ceiling of the capacity search.",
)
@click.option("--timeout", type=float, help="Per-request timeout in seconds (default: the model's timeout_s).")
@click.option("--model", "only_models", multiple=True, help="Load only these plan models. Repeatable.")
@click.option("--tag", default="", help="Label stored with the load run.")
@click.option("--max-cost", type=click.FloatRange(min=0), metavar="USD", help="Stop once this much is spent.")
@click.option(
    "--confirm-above",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    metavar="USD",
    help="Ask before starting when the estimated cost exceeds this.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Print the stages, request counts and estimated cost; send nothing.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the Poisson schedule.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document: {models: [{model, stages}]}.")
def load(
    plan,
    db_url,
    concurrency,
    rate,
    requests,
    duration,
    warmup,
    ramp_up,
    input_tokens,
    output_tokens,
    ignore_eos,
    suites,
    images,
    image_size,
    slo,
    search,
    max_concurrency,
    timeout,
    only_models,
    tag,
    max_cost,
    confirm_above,
    yes,
    dry_run,
    seed,
    as_json,
):
    """Load-test each OpenAI-compatible model of PLAN: a profile of stages of rising load.

    Per request (streamed): time to first token, inter-token latency, time per output token,
    end-to-end latency, tokens, and the error class (429, 5xx, timeout, connection, incomplete
    stream). Per stage: p50/p90/p95/p99 of each, throughput, error and 429 rates, goodput under
    the SLO, and the concurrency or rate actually achieved. Times are taken by the kernel as bytes
    arrive, so a busy load generator does not read as a slow model. Results are stored with the
    runs (`harness report` shows a load page; `harness check --load` tests p99 regressions).

    \b
    Examples:
      harness load evals/weekly.yaml --concurrency 1,8,32,128 --requests 100
      harness load evals/weekly.yaml --rate 2,5,10 --duration 60 --input-tokens 500 --output-tokens 500
      harness load evals/weekly.yaml --slo 'ttft_p99<=2s,error_rate<=1%' --search --json
    """
    import dataclasses

    from harness.load.images import parse_image_size
    from harness.load.profile import LoadProfile, Workload, build_stages, parse_slo
    from harness.load.runner import estimate, loadable, run_load
    from harness.plan import load_plan

    p = load_plan(plan)
    if only_models:
        unknown = sorted(set(only_models) - {m.name for m in p.models})
        if unknown:
            raise HarnessError(
                f"--model {', '.join(unknown)}: not in plan {plan} (its models: {', '.join(m.name for m in p.models)})"
            )
        p = dataclasses.replace(p, models=tuple(m for m in p.models if m.name in only_models))
    if suites:
        unknown = sorted(set(suites) - {s.name for s in p.suites})
        if unknown:
            raise HarnessError(f"--suite {', '.join(unknown)}: not in plan {plan}")
    if search and not slo:
        raise HarnessError("--search needs --slo (the objective a level must meet)")
    if timeout is not None:
        if timeout <= 0:
            raise HarnessError("--timeout must be positive")
        p = dataclasses.replace(p, models=tuple(dataclasses.replace(m, timeout_s=timeout) for m in p.models))
    stages = build_stages(
        concurrency=concurrency, rate=rate, requests=requests, duration=duration, warmup=warmup, ramp_up=ramp_up
    )
    profile = LoadProfile(
        stages=stages,
        workload=Workload(input_tokens, output_tokens, ignore_eos, tuple(suites), images, parse_image_size(image_size)),
        slo=parse_slo(slo) if slo else None,
        search=search,
        max_concurrency=max_concurrency,
        seed=seed,
    )
    models, _notes = loadable(p)
    figures = estimate(p, profile, models)
    total = sum(f["estimated_cost_usd"] for f in figures.values())
    if dry_run:
        _print_dry_run(stages, figures, total, as_json)
        return
    if total > confirm_above and not yes:
        if not sys.stdin.isatty():
            raise HarnessError(
                f"estimated cost ${total:.2f} exceeds --confirm-above ${confirm_above:g}; "
                f"pass --yes to run without asking (or --max-cost USD to cap it)"
            )
        click.confirm(f"The profile may cost up to ${total:.2f}. Run it?", abort=True, err=True)
    store = open_store(db_url)
    say = echo_err if as_json else click.echo
    try:
        run_id, outcomes = run_load(p, profile, store, tag=tag, max_cost=max_cost, say=say)
    except KeyboardInterrupt:
        echo_err("interrupted: finished stages are stored")
        sys.exit(130)
    doc = {"load_run": run_id, "slo": slo, "models": []}
    for o in outcomes:
        entry = {"model": o.model, "stages": [_stage_doc(st) for st in o.stages]}
        if o.capacity is not None:
            entry["capacity"] = {
                "concurrency" if profile.stages[0].concurrency is not None else "rate": o.capacity.best,
                "first_failure": o.capacity.first_failure,
                "note": o.capacity.note,
            }
        if o.notes:
            entry["notes"] = o.notes
        doc["models"].append(entry)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    for entry in doc["models"]:
        if "capacity" in entry:
            cap = entry["capacity"]
            level = next(iter(cap.values()))
            click.echo(
                f"{entry['model']}: capacity under the SLO: {'none' if level is None else f'{level:g}'}"
                f"{' (' + cap['note'] + ')' if cap['note'] else ''}"
            )
    click.echo(f"load run {run_id}; stored in {store.shown_url}")


def _stage_doc(stats: dict) -> dict:
    """The contract's fields first, then everything else the stage measured."""
    doc = {k: stats.get(k) for k in CONTRACT_FIELDS}
    doc.update({k: v for k, v in stats.items() if k not in doc})
    return doc


def _print_dry_run(stages, figures: dict, total: float, as_json: bool) -> None:
    from harness.load.runner import requests_in_stage

    if as_json:
        click.echo(
            json.dumps(
                {"stages": [dataclasses_dict(s) for s in stages], "models": figures, "estimated_cost_usd": total},
                indent=2,
            )
        )
        return
    click.echo("stages (per model):")
    for s in stages:
        held = f"{s.requests} requests" if s.requests is not None else f"{s.duration_s:g} s"
        click.echo(f"  {s.label:<12} {held} after {s.warmup} warm-up  (~{requests_in_stage(s)} requests)")
    click.echo("requests and estimated cost (completions at max_tokens: an upper bound)")
    for name, f in figures.items():
        search = (
            f" + up to {f['search_requests_at_most']} in the capacity search" if f["search_requests_at_most"] else ""
        )
        price = "" if f["priced"] else " (no price in the plan)"
        click.echo(
            f"  {name:<24} {f['requests']:>7} requests{search}, ~{f['input_tokens_per_request']:.0f} input "
            f"and <= {f['max_tokens']:.0f} output tokens each   ~{money(f['estimated_cost_usd'])}{price}"
        )
    click.echo(f"total ~{money(total)}")


def dataclasses_dict(stage) -> dict:
    import dataclasses

    return dataclasses.asdict(stage)
