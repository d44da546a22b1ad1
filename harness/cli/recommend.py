"""`harness recommend`: per suite, the cheapest model not significantly worse than the best (logic in recommend.py)."""

from __future__ import annotations

import json
import math

import click

from harness.cli.common import data_console, db_option


def _pct(x: float) -> str:
    return "—" if x is None or x != x else f"{100 * x:.1f}"


def _points(x: float) -> str:
    return "—" if x != x else f"{100 * x:+.1f}"


def _s(x: float) -> str:
    return "—" if x != x or math.isinf(x) else f"{x:.2f}"


def money(x: float) -> str:
    """US dollars with three significant digits, never in exponent notation."""
    if x != x:
        return "—"
    if x == 0:
        return "$0"
    decimals = max(2, 2 - math.floor(math.log10(abs(x))))
    return f"${x:.{decimals}f}"


def cost_text(c, basis: str) -> str:
    """What the recommendation compared: measured $ per 1000 samples, or the list price."""
    if basis == "list price":
        return f"${c.price_output:g}/M out" + (f", ${c.price_input:g}/M in" if c.price_input else "") + " (list)"
    if c.cost_per_sample != c.cost_per_sample:
        return "—"
    return f"{money(1000 * c.cost_per_sample)}/1k"


@click.command()
@click.argument("run_id", required=False, metavar="[RUN]")
@db_option
@click.option("--margin", type=click.FloatRange(0, 1, max_open=True), default=None, metavar="FRACTION",
              help="Non-inferiority margin as a fraction (0.02 = 2 points) [default: the plan's "
                   "noninferiority_margin, else 0.02].")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05,
              show_default=True, help="One-sided significance level of the non-inferiority test.")
@click.option("--all", "show_all", is_flag=True, help="Also list every model considered for each suite.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (fields in README.md).")
def recommend(run_id, db_url, margin, alpha, show_all, as_json):
    """Per suite of RUN (default: the latest): the cheapest model not significantly worse than the best.

    \b
    Non-inferiority against the best-scoring model on the same items (one-sided test at --alpha,
    margin from the plan). Cost is the measured cost per sample on the suite (the plan's list
    price when nothing was measured, e.g. local models); p99 latency is shown beside.
    """
    from harness.analysis.recommend import recommend as do_recommend, to_json
    from harness.store import Store

    rec = do_recommend(Store(db_url), run_id, margin=margin, alpha=alpha)
    if as_json:
        click.echo(json.dumps(to_json(rec), indent=2, ensure_ascii=False, allow_nan=False))
        return
    _print(rec, show_all)


def _print(rec, show_all: bool) -> None:
    from rich.table import Table

    console = data_console(140)
    console.print(f"run {rec.run.id} (plan {rec.run.plan_name}): per suite, the cheapest model not significantly "
                  f"worse than the best by more than {100 * rec.margin:g} points (one-sided alpha {rec.alpha:g})")
    table = Table(title="routing", title_justify="left")
    for col in ("suite", "→ model", "score %", "vs best", "cost", "p99 s", "best", "best %", "best cost"):
        table.add_column(col, justify="left" if col in ("suite", "→ model", "best") else "right")
    for s in rec.suites:
        c, b = s.chosen, s.candidate(s.best)
        table.add_row(s.suite, c.model, _pct(c.mean), "" if c.is_best else _points(c.diff),
                      cost_text(c, s.cost_basis), _s(c.latency_p99), b.model, _pct(b.mean),
                      cost_text(b, s.cost_basis))
    console.print(table)
    for s in rec.suites:
        click.echo(f"{s.suite} → {s.model}   ({s.reason})")
    if not show_all:
        return
    for s in rec.suites:
        t = Table(title=f"{s.suite}: every model, cheapest first ({s.cost_basis})", title_justify="left")
        for col in ("model", "score % (95% CI)", "vs best", "lower bound", "p", "non-inferior", "cost", "p99 s",
                    "errors %"):
            t.add_column(col, justify="left" if col == "model" else "right")
        for c in s.candidates:
            ci = _pct(c.mean) if c.lo != c.lo else f"{_pct(c.mean)} ({_pct(c.lo)}–{_pct(c.hi)})"
            mark = "best" if c.is_best else ("yes" if c.noninferior else "no")
            name = f"→ {c.model}" if c.model == s.model else c.model
            t.add_row(name, ci, "" if c.is_best else _points(c.diff), "" if c.is_best else _points(c.lower),
                      "" if c.is_best or c.p_value != c.p_value else f"{c.p_value:.3g}", mark,
                      cost_text(c, s.cost_basis), _s(c.latency_p99), _pct(c.error_rate))
        console.print(t)
