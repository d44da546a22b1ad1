"""`harness import`, `harness pairwise`, `harness labels`: traffic in, judged and classified results out."""

from __future__ import annotations

import json

import click

from harness.cli.common import data_console, db_option, open_store


@click.command("import")
@click.argument("log", type=click.Path(dir_okay=False))
@click.option("--suite", "suite", required=True, metavar="NAME", help="Name of the suite folder to write.")
@click.option("--out", default="suites", show_default=True, metavar="DIR", help="Where the folder DIR/NAME/ goes.")
@click.option("--sample", type=click.IntRange(1), default=None, metavar="N", help="Keep a seeded sample of N items.")
@click.option(
    "--by",
    default="group",
    show_default=True,
    metavar="FIELD",
    help="Stratify the sample by group, label, model or metadata.KEY.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Which sample --sample draws.")
@click.option("--strict", is_flag=True, help="Refuse the log at its first malformed or non-UTF-8 line.")
@click.option("--force", is_flag=True, help="Replace DIR/NAME/ if it exists.")
def import_(log, suite, out, sample, by, seed, strict, force):
    """Turn a log of chat requests (OpenAI JSONL or LiteLLM payloads) into the suite folder OUT/SUITE/.

    \b
    Each line: {messages, tools?, tool_choice?, response_format?, temperature?, max_tokens?, model?,
    response?, metadata?, label?} (or {request: {...}, response: ...}), or a LiteLLM
    StandardLoggingPayload. Duplicates are dropped; a key or bearer token anywhere refuses the
    whole log, naming the line.
    """
    from harness.traffic.importer import import_log

    result = import_log(log, suite, out, sample=sample, by=by, seed=seed, strict=strict, force=force)
    click.echo(result.summary())


def _pct(x: float) -> str:
    return "—" if x is None or x != x else f"{100 * x:.1f}"


@click.command()
@click.argument("run_id", required=False, metavar="[RUN]")
@db_option
@click.option("--human", type=click.Path(dir_okay=False), help="JSONL of {item, model, verdict: win|tie|loss}.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def pairwise(run_id, db_url, human, as_json):
    """Candidates against the incumbent on RUN's pairwise suites: win/tie/loss, intervals, length control.

    \b
    win % counts a tie as half; the 95% interval is clustered by item (judges and orders of one item
    are not independent). LC % is the win rate at zero length difference (a logistic regression of
    the verdict on the difference in characters). flips % is the share of pairs whose verdict
    changed when the answers swapped places (those count as ties). BT is the Bradley-Terry strength
    against the incumbent (0) with a bootstrap interval, when there are several candidates.
    """
    from harness.records import money
    from harness.traffic.pairwise import pairwise_report

    report = pairwise_report(open_store(db_url, read_only=True), run_id, human=human)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    from rich.table import Table

    console = data_console(110)
    table = Table(title=f"run {report.run}: candidates vs {report.incumbent}")
    for col in (
        "model",
        "suite",
        "pairs",
        "W/T/L",
        "win %",
        "95% CI",
        "LC %",
        "flips %",
        "BT",
        "unjudged",
        "judge cost",
    ):
        table.add_column(col, justify="left" if col in ("model", "suite") else "right")
    for r in report.results:
        bt = "—" if r.bt is None else f"{r.bt[0]:+.2f} [{r.bt[1]:+.2f}, {r.bt[2]:+.2f}]"
        table.add_row(
            r.model,
            r.suite,
            str(r.n),
            f"{r.wins}/{r.ties}/{r.losses}",
            _pct(r.win_rate),
            f"{_pct(r.win_rate_lo)}–{_pct(r.win_rate_hi)}",
            _pct(r.lc_win_rate),
            _pct(r.order_flips),
            bt,
            str(r.unjudged + r.errors),
            money(r.judge_cost),
        )
    console.print(table)
    if report.judge_costs:
        costs = ", ".join(f"{j} {money(c)}" for j, c in sorted(report.judge_costs.items()))
        console.print(f"judging cost: {money(sum(report.judge_costs.values()))} ({costs}; cached verdicts cost $0)")
    for a in report.agreement:
        console.print(
            f"agreement {a.suite}: {a.first} vs {a.second}: {_pct(a.agreement)}% of {a.n} pairs, kappa {a.kappa:.2f}"
            if a.kappa == a.kappa
            else f"agreement {a.suite}: {a.first} vs {a.second}: {_pct(a.agreement)}% of {a.n} pairs, kappa —"
        )
    for w in report.warnings:
        console.print(f"warning: {w}")


@click.command()
@click.argument("run_id", required=False, metavar="[RUN]")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--against", "against", metavar="RUN", help="Compare macro-F1 with this earlier run.")
@click.option("--against-previous", is_flag=True, help="Compare macro-F1 with the previous finished run of the plan.")
@click.option("--fail-on-regression", is_flag=True, help="With a comparison: exit 1 when macro-F1 dropped for sure.")
def labels(run_id, db_url, as_json, against, against_previous, fail_on_regression):
    """Classification on RUN's label suites: macro-F1, per-class precision/recall, confusion matrix, cost per 1,000.

    
    With --against RUN or --against-previous: each model's macro-F1 before and after on the items both
    runs classified, the difference with a 95% paired bootstrap interval (items resampled together);
    a regression is a difference whose whole interval is below zero.
    """
    from harness.records import money
    from harness.traffic.labels import label_results, to_json

    store = open_store(db_url, read_only=True)
    if against or against_previous:
        _compare_labels(store, run_id, against, as_json, fail_on_regression)
        return
    run, results = label_results(store, run_id)
    if as_json:
        click.echo(json.dumps(to_json(run, results), indent=2))
        return
    from rich.table import Table

    console = data_console(100)
    table = Table(title=f"run {run}: classification")
    for col in ("model", "suite", "n", "accuracy %", "macro-F1 %", "JSON valid", "errors", "cost / 1k"):
        table.add_column(col, justify="left" if col in ("model", "suite") else "right")
    for r in results:
        m = r.metrics
        table.add_row(
            r.model,
            r.suite,
            str(m.n),
            _pct(m.accuracy),
            _pct(m.macro_f1),
            f"{r.json_valid}/{r.json_requests}" if r.json_requests else "—",
            str(r.errors),
            ("≈" if r.cost_estimated else "") + money(r.cost_per_1000),
        )
    console.print(table)
    for r in results:
        m = r.metrics
        matrix = Table(title=f"{r.model} on {r.suite}: gold (rows) x predicted (columns)")
        matrix.add_column("gold \\ predicted")
        for label in m.labels:
            matrix.add_column(label, justify="right")
        matrix.add_column("precision %", justify="right")
        matrix.add_column("recall %", justify="right")
        for label, row in zip(m.labels, m.matrix):
            matrix.add_row(
                label,
                *(str(v) for v in row),
                _pct(m.precision.get(label, float("nan"))),
                _pct(m.recall.get(label, float("nan"))),
            )
        console.print(matrix)


def _compare_labels(store, run_id, against, as_json, fail_on_regression) -> None:
    import sys

    from harness.analysis.checks import find_previous
    from harness.analysis.compare import json_safe
    from harness.errors import HarnessError
    from harness.traffic.labels import compare_f1

    new = store.resolve_run(run_id)
    if against:
        old = store.resolve_run(against)
    else:
        previous = find_previous(store, new)
        if previous is None:
            raise HarnessError(f"run {new} has no earlier finished run of its plan to compare with (use --against RUN)")
        old = previous.id
    changes = compare_f1(store, old, new)
    if as_json:
        doc = {"old": old, "new": new, "results": [c.__dict__ for c in changes]}
        click.echo(json.dumps(json_safe(doc), indent=2))
    else:
        from rich.table import Table

        console = data_console(100)
        table = Table(title=f"macro-F1: run {old} -> {new}")
        for col in ("model", "suite", "items", "before %", "after %", "diff (95% CI)", ""):
            table.add_column(col, justify="left" if col in ("model", "suite", "") else "right")
        for c in changes:
            diff = "—" if c.diff != c.diff else f"{100 * c.diff:+.1f} ({100 * c.lo:+.1f} to {100 * c.hi:+.1f})"
            mark = "▼ regression" if c.regression else c.note
            table.add_row(c.model, c.suite, str(c.n), _pct(c.old), _pct(c.new), diff, mark)
        console.print(table)
    if fail_on_regression and any(c.regression for c in changes):
        sys.exit(1)
