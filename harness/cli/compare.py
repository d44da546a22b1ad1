"""`harness compare`: which model wins, and is the difference real? (logic in harness/analysis/compare.py)."""

from __future__ import annotations

import json
import math
import sys

import click

from harness.cli.common import data_console, db_option
from harness.formatting import money, percent_value


def _split(values) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


@click.command()
@click.argument("runs", nargs=-1, metavar="[RUN | RUN_OLD RUN_NEW]")
@db_option
@click.option("--baseline", metavar="MODEL", help="Compare each model against this one (models in one run).")
@click.option(
    "--models",
    "--model",
    "models",
    multiple=True,
    metavar="A,B",
    help="Only these models (comma-separated or repeated).",
)
@click.option("--suite", "suites", multiple=True, metavar="SUITE", help="Only this suite (repeatable).")
@click.option(
    "--against-previous", is_flag=True, help="Compare RUN (default: the latest) with the previous run of the same plan."
)
@click.option(
    "--correction",
    type=click.Choice(["holm", "bh"]),
    default="holm",
    show_default=True,
    help="Multiple-comparison correction over every comparison shown: Holm (FWER) or Benjamini-Hochberg (FDR).",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.05,
    show_default=True,
    help="Significance level for the corrected p-values.",
)
@click.option(
    "--allow-hash-mismatch",
    is_flag=True,
    help="Across runs: compare a suite whose content changed, on the items both runs have.",
)
@click.option(
    "--no-clusters", is_flag=True, help="Treat items as independent even when the suite groups them (subject, task)."
)
@click.option(
    "--fail-on-regression", is_flag=True, help="Across runs: exit 1 when a model got significantly worse on a suite."
)
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="List every comparison and the operations, not only the significant and watch rows.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (fields in docs/json.md).")
def compare(
    runs,
    db_url,
    baseline,
    models,
    suites,
    against_previous,
    correction,
    alpha,
    allow_hash_mismatch,
    no_clusters,
    fail_on_regression,
    as_json,
    show_all=False,
):
    """Paired comparisons with corrected p-values: models within a run, or one run against another.

    \b
    harness compare [RUN]                  every pair of models in RUN (default: the latest run)
    harness compare [RUN] --baseline M     each model against M
    harness compare RUN_OLD RUN_NEW        each model in both runs against itself (new - old)
    harness compare [RUN] --against-previous   RUN against the previous run of its plan

    One sign convention: Δ = A − B, B the reference (the baseline, the model earlier in the plan,
    the old run). By default the significant rows (▲/▼: corrected p < alpha) and the "watch" rows
    (large or raw-significant, not confirmed after correction), with the corrected p-value (McNemar
    for right/wrong scores, permutation otherwise) and the minimum detectable effect; --all lists
    every comparison and the latency, error rate and cost per suite. In --json, `a` is the
    reference and `diff` = b − a (= A − B).
    """
    from harness.analysis.compare import compare_models, compare_runs, previous_run, to_json
    from harness.store import Store

    if len(runs) > 2:
        raise click.UsageError("name at most two runs: RUN, or RUN_OLD RUN_NEW")
    if against_previous and len(runs) == 2:
        raise click.UsageError("--against-previous takes at most one RUN")
    across = len(runs) == 2 or against_previous
    if across and baseline:
        raise click.UsageError(
            "--baseline compares models within one run; across runs each model is paired with itself"
        )
    if not across and fail_on_regression:
        raise click.UsageError("--fail-on-regression needs two runs: RUN_OLD RUN_NEW, or --against-previous")
    store = Store(db_url, must_exist=True)
    model_names, suite_names = _split(models), _split(suites)
    if across:
        if against_previous:
            new_id = store.resolve_run(runs[0] if runs else None)
            old_id = previous_run(store, new_id)
        else:
            old_id, new_id = runs
        result = compare_runs(
            store,
            old_id,
            new_id,
            correction=correction,
            alpha=alpha,
            allow_hash_mismatch=allow_hash_mismatch,
            models=model_names or None,
            suites=suite_names or None,
            clusters=not no_clusters,
        )
    else:
        result = compare_models(
            store,
            runs[0] if runs else None,
            baseline=baseline,
            models=model_names or None,
            suites=suite_names or None,
            correction=correction,
            alpha=alpha,
            clusters=not no_clusters,
        )
    if as_json:
        click.echo(json.dumps(to_json(result), indent=2, ensure_ascii=False, allow_nan=False))
    else:
        _print(result, show_all)
    if fail_on_regression and result.regressions:
        if as_json:
            click.echo(f"{len(result.regressions)} significant regression(s)", err=True)
        sys.exit(1)


# -- text output ----------------------------------------------------------------------------


def _est(mean: float, lo: float, hi: float) -> str:
    if mean != mean:
        return "—"
    if lo != lo or hi != hi:
        return percent_value(mean)
    return f"{percent_value(mean)} ({percent_value(lo)}–{percent_value(hi)})"


def _diff(x: float) -> str:
    return "—" if x != x else f"{100 * x:+.1f}"


def _p(p: float) -> str:
    if p != p:
        return "—"
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def _num(x: float, fmt: str) -> str:
    return "—" if x != x or math.isinf(x) else format(x, fmt)


def _print(result, show_all: bool = False) -> None:
    """Compact by default: the significant and the "watch" rows in one table that fits a terminal;
    `--all` adds every other comparison and the operations per suite. Δ = A − B throughout."""
    from rich.table import Table
    from rich.text import Text

    console = data_console(100)
    across = result.kind == "runs"
    n = len(result.comparisons)
    name = {"holm": "Holm", "bh": "Benjamini-Hochberg"}[result.correction]
    if across:
        old, new = result.runs
        names = list(dict.fromkeys(c.a.model for c in result.comparisons))
        console.print(
            f"run {new.id} against {old.id} (plan {new.plan_name}): {', '.join(names)}; Δ = A − B = new − old, per model"
        )
    else:
        run = result.runs[0]
        ref = f"B = {result.baseline}" if result.baseline else "B = the model earlier in the plan"
        names = list(dict.fromkeys(m for c in result.comparisons for m in (c.a.model, c.b.model)))
        console.print(f"models in run {run.id} (plan {run.plan_name}): {', '.join(names)}; Δ = A − B, {ref}")
    console.print(
        f"{n} comparison{'s' if n != 1 else ''}, p-values {name}-corrected together; ▲/▼ = corrected p < "
        f"{result.alpha:g}; watch = not significant but the raw interval excludes 0 or |Δ| >= 20 points. "
        f"Percent and points, 95% CI."
    )
    shown = [c for c in result.comparisons if show_all or c.significant or c.watch]
    hidden = n - len(shown)
    if shown:
        table = Table(title=None if show_all else "significant and watch", title_justify="left")
        heads = ("suite", "model", "old %", "new %") if across else ("suite", "A", "B", "A %", "B %")
        for col in (*heads, "Δ A − B (95% CI)", "p adj", "", "MDE", "n"):
            names = col in ("suite", "model", "A", "B")
            table.add_column(col, justify="left" if names else "right", no_wrap=not names, overflow="fold")
        for c in shown:
            names = (c.a.model,) if across else (c.b.model, c.a.model)
            sides = (c.a, c.b) if across else (c.b, c.a)
            diff = (
                _diff(c.diff)
                if c.diff_lo != c.diff_lo
                else f"{_diff(c.diff)} ({_diff(c.diff_lo)} to {_diff(c.diff_hi)})"
            )
            table.add_row(
                c.suite,
                *names,
                *(_est(s.mean, s.lo, s.hi) if show_all else percent_value(s.mean) for s in sides),
                diff,
                _p(c.p_adjusted),
                c.marker or ("watch" if c.watch else ""),
                percent_value(c.mde),
                str(c.n_paired),
            )
        console.print(table)
    if hidden:
        console.print(
            f"{hidden} other comparison{'s' if hidden != 1 else ''}: not significant, small (--all lists them)"
        )
    if show_all:
        _print_ops(result, console, across)
    # A note shared by many comparisons is printed once, with how many it concerns.
    notes: dict[str, list[str]] = {}
    for c in result.comparisons:
        for part in filter(None, (x.strip() for x in c.note.split(";"))):
            who = c.a.model if across else f"{c.b.model} vs {c.a.model}"
            notes.setdefault(part, []).append(f"{who} on {c.suite}")
    for text, where in notes.items():
        console.print(f"note: {text} ({where[0] if len(where) == 1 else f'{len(where)} comparisons'})")
    for note in result.notes:
        console.print(f"note: {note}")
    if across:
        if result.regressions:
            for c in result.regressions:
                console.print(
                    Text.assemble(
                        ("REGRESSION", "bold red"),
                        f": {c.a.model} on {c.suite}: "
                        f"{percent_value(c.a.mean)}% -> {percent_value(c.b.mean)}% ({_diff(c.diff)} points, "
                        f"corrected p {_p(c.p_adjusted)})",
                    )
                )
        else:
            console.print("no significant regression")


def _print_ops(result, console, across: bool) -> None:
    from rich.table import Table

    ops = Table(title="operations", title_justify="left")
    for col in ("suite", "model", "run", "p50 s", "p99 s", "errors %", "cost", "per correct"):
        ops.add_column(col, justify="left" if col in ("suite", "model", "run") else "right")
    seen = set()
    for c in result.comparisons:
        for s in (c.a, c.b):
            if (c.suite, s.model, s.run) in seen:
                continue
            seen.add((c.suite, s.model, s.run))
            ops.add_row(
                c.suite,
                s.model,
                s.run,
                _num(s.latency_p50, ".2f"),
                _num(s.latency_p99, ".2f"),
                percent_value(s.error_rate),
                money(s.cost_usd),
                money(s.cost_per_correct),
            )
    console.print(ops)
