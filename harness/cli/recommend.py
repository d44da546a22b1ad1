"""`harness recommend`: per suite, the cheapest model not significantly worse than the best (logic in recommend.py)."""

from __future__ import annotations

import json
import math

import click

from harness.cli.common import data_console, db_option
from harness.formatting import money, percent_value


def _points(x: float) -> str:
    return "—" if x != x else f"{100 * x:+.1f}"


def _s(x: float) -> str:
    return "—" if x != x or math.isinf(x) else f"{x:.2f}"


def cost_text(c, basis: str) -> str:
    """What the recommendation compared: measured $ per 1,000 requests (samples), or the list price."""
    if not getattr(c, "cost_known", True):
        return "— (no price)"
    if basis == "list price":
        return f"${c.price_output:g}/M out" + (f", ${c.price_input:g}/M in" if c.price_input else "") + " (list)"
    if c.cost_per_sample != c.cost_per_sample:
        return "—"
    return f"{money(1000 * c.cost_per_sample)}/1k req"


def _limit_option(name: str, what: str):
    return click.option(
        name,
        multiple=True,
        metavar="[SUITE=]VALUE",
        help=f"{what}; SUITE=VALUE sets it for one route only (repeatable) [default: the plan's routing: section].",
    )


def parse_limits(values: tuple[str, ...], option: str, *, fraction: bool = False) -> dict[str, float | None]:
    """('5', 'code-tasks=2', 'math-word=none') -> {'': 5.0, 'code-tasks': 2.0, 'math-word': None}."""
    out: dict[str, float | None] = {}
    for raw in values:
        suite, _, text = raw.rpartition("=")
        if text.strip().lower() in ("none", "off"):
            out[suite] = None
            continue
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not (value >= 0 and (not fraction or value <= 1)):
            kind = "a fraction between 0 and 1 (0.001 = 99.9% available)" if fraction else "seconds >= 0"
            raise click.BadParameter(f"{raw!r}: give {kind}, or none; SUITE=VALUE for one suite", param_hint=option)
        out[suite] = value
    return out


@click.command()
@click.argument("run_id", required=False, metavar="[RUN]")
@db_option
@click.option(
    "--margin",
    type=click.FloatRange(0, 1, max_open=True),
    default=None,
    metavar="FRACTION",
    help="Non-inferiority margin as a fraction (0.02 = 2 points) [default: the plan's "
    "noninferiority_margin, else 0.02].",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.05,
    show_default=True,
    help="One-sided significance level of the non-inferiority test.",
)
@_limit_option(
    "--max-error-rate",
    "Most failed requests a routed model may have, a fraction (default 0.001: 99.9% available; none = no limit)",
)
@_limit_option("--max-p99", "Slowest p99 latency in seconds a routed model may have (none = no limit)")
@_limit_option("--max-ttft", "Slowest p99 time to first token in seconds (a model that did not stream: its latency)")
@click.option("--all", "show_all", is_flag=True, help="Also list every model considered for each suite.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (fields in README.md).")
@click.option(
    "--export",
    "export",
    type=click.Choice(["litellm"]),
    default=None,
    help="Print the routes as a LiteLLM proxy config (YAML) on stdout: per route a model group with fallbacks.",
)
@click.option(
    "--at",
    "at_level",
    metavar="LEVEL",
    help="Join the plan's load run (`harness load`): each model's "
    "p99 latency and error rate at LEVEL concurrent users (e.g. 128) or requests/s (e.g. 5/s).",
)
@click.option("--load-run", metavar="RUN", help="With --at: this load run [default: the plan's latest finished].")
@click.option(
    "--slo",
    metavar="TERMS",
    help="With --at: recommend only models meeting this SLO at that level, e.g. 'latency_p99<=5s,error_rate<=1%%'.",
)
def recommend(
    run_id,
    db_url,
    margin,
    alpha,
    max_error_rate,
    max_p99,
    max_ttft,
    show_all,
    as_json,
    at_level=None,
    load_run=None,
    slo=None,
    export=None,
):
    """Per suite of RUN (default: the latest): the cheapest eligible model not significantly worse than the best.

    \b
    Eligible: within the route's error-rate, p99 and TTFT limits (plan `routing:`, or the options
    here). Non-inferiority against the best-scoring eligible model on the same items (one-sided
    test at --alpha, margin from the plan). Cost is the measured cost per sample on the suite (the
    plan's list price when nothing was measured, e.g. local models). Every model not chosen is
    listed with the reason: worse by more than the margin, unavailable, too slow, not measured.
    """
    from harness.analysis.recommend import recommend as do_recommend
    from harness.analysis.recommend import routing_limits, to_json
    from harness.cli.common import open_store

    store = open_store(db_url, read_only=True)
    run = store.resolve_run(run_id)
    limits = routing_limits(
        (store.run(run).plan or {}).get("routing"),
        max_error_rate=parse_limits(max_error_rate, "--max-error-rate", fraction=True),
        max_p99_s=parse_limits(max_p99, "--max-p99"),
        max_ttft_s=parse_limits(max_ttft, "--max-ttft"),
    )
    rec = do_recommend(store, run, margin=margin, alpha=alpha, limits=limits)
    load = None
    if at_level or load_run or slo:
        rec, load = _join_load(
            store,
            rec,
            at_level,
            load_run,
            slo,
            lambda excluded: do_recommend(store, run, margin=margin, alpha=alpha, limits=limits, excluded=excluded),
        )
    if export == "litellm":
        from harness.traffic.litellm import router_yaml

        click.echo(router_yaml(rec), nl=False)
        return
    if as_json:
        doc = to_json(rec)
        if load is not None:
            doc["load"] = load
            for s in doc["suites"]:
                for c in s["candidates"]:
                    c["load"] = load["models"].get(c["model"])
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False))
        return
    _print(rec, show_all)
    if load is not None:
        _print_load(rec, load)


def _join_load(store, rec, at_level, load_run, slo, recompute):
    from harness.errors import HarnessError
    from harness.load.join import load_view, parse_level, recommend_under_load
    from harness.load.profile import parse_slo

    if not at_level:
        raise HarnessError("--load-run and --slo need --at LEVEL (e.g. --at 128 or --at 5/s)")
    view = load_view(store, rec.run.plan_name, load_run)
    if view is None:
        raise HarnessError(
            f"plan {rec.run.plan_name!r} has no finished load run in {store.shown_url} "
            f"(run `harness load PLAN` first, or name one with --load-run)"
        )
    return recommend_under_load(rec, view, parse_level(at_level), parse_slo(slo) if slo else None, recompute)


def _print_load(rec, load) -> None:
    from harness.load.join import level_text, sentence

    level = (load["level"]["concurrency"], load["level"]["rate"])
    click.echo(
        f"\nunder load (load run {load['load_run']}, {level_text(level)}"
        f"{', SLO ' + load['slo'] if load['slo'] else ''}):"
    )
    for model, st in sorted(load["models"].items()):
        scores = {s.suite: s.candidate(model).mean for s in rec.suites if any(c.model == model for c in s.candidates)}
        verdict = (
            ""
            if not st or "meets_slo" not in st
            else ("  meets the SLO" if st["meets_slo"] else "  misses the SLO: " + "; ".join(st["slo_failures"]))
        )
        click.echo(f"  {model}: {sentence(st, level, scores)}{verdict}")


def _print(rec, show_all: bool) -> None:
    from rich.table import Table

    console = data_console(140)
    console.print(
        f"run {rec.run.id} (plan {rec.run.plan_name}): per suite, the cheapest model not significantly "
        f"worse than the best by more than {100 * rec.margin:g} points (one-sided alpha {rec.alpha:g})"
    )
    unknown = sorted({c.model for s in rec.suites for c in s.candidates if not c.cost_known})
    if unknown:
        console.print(
            f"note: no price in the plan for {', '.join(unknown)}: cost unknown, never routed as cheapest "
            f"(add price: {{input: X, output: Y}}, or price: {{output: 0}} for a free model)"
        )
    table = Table(title="routing", title_justify="left")
    for col in ("suite", "→ model", "score % (95% CI)", "p99 s", "errors %", "cost", "best"):
        table.add_column(col, justify="left" if col in ("suite", "→ model", "best") else "right")
    for s in rec.suites:
        c = s.chosen
        if c is None:
            table.add_row(s.suite, "— (no route)", *[""] * 5)
            continue
        b = s.candidate(s.best)
        ci = (
            percent_value(c.mean)
            if c.lo != c.lo
            else f"{percent_value(c.mean)} ({percent_value(c.lo)}–{percent_value(c.hi)})"
        )
        table.add_row(
            s.suite,
            c.model,
            ci,
            _s(c.latency_p99),
            percent_value(c.error_rate),
            cost_text(c, s.cost_basis),
            "itself" if c.is_best else f"{b.model} ({percent_value(b.mean)}%, {cost_text(b, s.cost_basis)})",
        )
    console.print(table)
    for s in rec.suites:
        click.echo(f"{s.suite} → {s.model or '— (no route)'}   ({s.reason})")
        for c in s.candidates:
            if c.rejected:
                click.echo(f"    {c.model}: {c.rejected}")
    if not show_all:
        return
    for s in rec.suites:
        t = Table(title=f"{s.suite}: every model, cheapest first ({s.cost_basis})", title_justify="left")
        for col in (
            "model",
            "score % (95% CI)",
            "vs best",
            "lower bound",
            "p",
            "non-inferior",
            "cost",
            "p99 s",
            "errors %",
        ):
            t.add_column(col, justify="left" if col == "model" else "right")
        for c in s.candidates:
            ci = (
                percent_value(c.mean)
                if c.lo != c.lo
                else f"{percent_value(c.mean)} ({percent_value(c.lo)}–{percent_value(c.hi)})"
            )
            mark = "best" if c.is_best else ("yes" if c.noninferior else ("no" if c.eligible else "—"))
            name = f"→ {c.model}" if c.model == s.model else c.model
            t.add_row(
                name,
                ci,
                "" if c.is_best else _points(c.diff),
                "" if c.is_best else _points(c.lower),
                "" if c.is_best or c.p_value != c.p_value else f"{c.p_value:.3g}",
                mark,
                cost_text(c, s.cost_basis),
                _s(c.latency_p99),
                percent_value(c.error_rate),
            )
        console.print(t)
