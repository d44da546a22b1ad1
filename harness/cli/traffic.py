"""`harness import`, `harness pairwise`, `harness labels`: traffic in, judged and classified results out."""

from __future__ import annotations

import click


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
