"""What every command shares: the --db option, opening the store, error lines and the summary tables."""

from __future__ import annotations

import click

from harness.formatting import money, percent_value

DB_HELP = "SQLAlchemy database URL [default: $HARNESS_DB or sqlite:///harness.db]"


def db_option(f):
    return click.option("--db", "db_url", envvar="HARNESS_DB", default=None, metavar="URL", help=DB_HELP)(f)


def open_store(db_url, *, read_only: bool = False):
    """The store; a reading command (`read_only`) never creates a database file that was not there."""
    from harness.store import Store

    return Store(db_url, must_exist=read_only)


def data_console(min_width: int):
    """A rich console that prints text as given: model, suite, plan and run names come from plans,
    suite folders and servers, so "m[/bold]" or ":smile:" in one is shown literally, not parsed.
    At least `min_width` wide on a terminal; unbounded when the output is piped, so a script or a
    file gets every cell whole (no `smollm2…`, no `0.0000…`)."""
    from rich.console import Console

    probe = Console()
    width = 100_000 if not probe.is_terminal else max(min_width, probe.width)
    return Console(width=width, markup=False, emoji=False)


def echo_err(msg: str) -> None:
    """Print a message on stderr, without any credential a server may have echoed into it."""
    from harness.errors import redact

    click.echo(redact(msg), err=True)


def fmt_s(x: float) -> str:
    return "—" if x != x else f"{x:.2f}"


def print_summary(summary) -> None:
    from rich.table import Table

    from harness.analysis.summary import ESTIMATE_MARK, cache_and_window_notes, estimate_mark

    table = Table(title=f"run {summary.run.id} ({summary.run.plan_name})")
    for col in ("model", "suite", "n", "score %", "95% CI", "errors", "p50 s", "p99 s", "tok/s", "cost"):
        table.add_column(col, justify="left" if col in ("model", "suite") else "right")
    for c in summary.cells:
        table.add_row(
            c.model,
            c.suite,
            str(c.n_samples),
            percent_value(c.mean),
            f"{percent_value(c.lo)}–{percent_value(c.hi)}",
            str(c.errors),
            fmt_s(c.latency_p50),
            fmt_s(c.latency_p99),
            "—" if c.tokens_per_s != c.tokens_per_s else f"{c.tokens_per_s:.1f}",
            f"{estimate_mark(c.estimated_samples)}{money(c.cost_usd)}",
        )
    console = data_console(100)
    console.print(table)
    ops = Table(title="per model: latency and time to first token (s), errors, cost")
    for col in (
        "model",
        "n",
        "error %",
        "length %",
        "p50",
        "p90",
        "p99",
        "TTFT p50",
        "TTFT p90",
        "TTFT p99",
        "cost",
        "per correct",
    ):
        ops.add_column(col, justify="left" if col == "model" else "right")
    for o in summary.ops:
        mark = estimate_mark(o.estimated_samples)
        per_correct = money(o.cost_per_correct)
        ops.add_row(
            o.model,
            str(o.n_samples),
            percent_value(o.error_rate),
            percent_value(o.length_rate),
            fmt_s(o.latency_p50),
            fmt_s(o.latency_p90),
            fmt_s(o.latency_p99),
            fmt_s(o.ttft_p50),
            fmt_s(o.ttft_p90),
            fmt_s(o.ttft_p99),
            f"{mark}{money(o.cost_usd)}",
            per_correct if per_correct == "—" else f"{mark}{per_correct}",
        )
    console.print(ops)
    from harness.cli.tool_summary import print_tool_table

    print_tool_table(summary, console)
    if any(o.estimated_samples for o in summary.ops):
        console.print(
            f"{ESTIMATE_MARK} the server reported no token usage for some samples: their tokens and "
            f"cost are estimated from the text (about 4 characters a token; one per Chinese character)",
            markup=False,
            highlight=False,
        )
    for o in summary.ops:
        for line in cache_and_window_notes(o):
            console.print(line, markup=False, highlight=False)
        if o.batched:
            console.print(
                f"{o.model}: {o.batched} samples through the provider's Batch API (no latency), "
                f"{money(o.batch_saved_usd)} saved against the online price"
            )
