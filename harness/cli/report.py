"""`harness report` (HTML) and `harness export` (JSONL/CSV): a stored run, written out."""

from __future__ import annotations

import sys

import click

from harness.cli.common import db_option, echo_err, open_store


@click.command()
@click.argument("runs", nargs=-1)
@db_option
@click.option(
    "--out",
    "out_dir",
    default="reports",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder of the site: new, empty, or an earlier report's.",
)
@click.option(
    "--load",
    "load_run",
    is_flag=False,
    flag_value="latest",
    default=None,
    metavar="[LOAD_RUN]",
    help="Write only the load page of this load run (`harness load`; default: the latest) and print its "
    "path. Run pages always link the plan's latest load run.",
)
def report(runs, db_url, out_dir, load_run=None):
    """Write the HTML report of RUNS (default: the latest run) and print its path.

    OUT must be new, empty, or the folder of an earlier report: a folder holding anything else
    (`--out /`, a home or project folder) is refused, so a report never writes among your files.
    """
    from harness.report import check_out_dir, write_report

    check_out_dir(out_dir)
    store = open_store(db_url, read_only=True)
    if load_run:
        from pathlib import Path

        from harness.report.load_page import write_load_page
        from harness.report.pages import Renderer
        from harness.store.loads import resolve_load_run

        info = resolve_load_run(store, None if load_run == "latest" else load_run)
        click.echo(f"report: {write_load_page(store, Renderer(), Path(out_dir), info.id)}")
        return
    ids = [store.resolve_run(r) for r in runs] or [store.resolve_run(None)]
    path = write_report(store, ids, out_dir)
    click.echo(f"report: {path}")


@click.command()
@click.argument("run_id", required=False)
@db_option
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Write to a file instead of stdout.")
@click.option(
    "--summary",
    is_flag=True,
    help="One row per model x suite (score and CI, errors, p99, cost per 1,000 requests) instead of per sample.",
)
def export(run_id, db_url, fmt, out_path, summary=False):
    """Export one row per sample of RUN (default: the latest) as JSONL or CSV; --summary: per model x suite."""
    from harness.report.export import export_run, export_summary

    store = open_store(db_url, read_only=True)
    rid = store.resolve_run(run_id)
    write = export_summary if summary else export_run
    if out_path:
        with open(out_path, "w", encoding="utf-8", newline="") as fh:
            n = write(store, rid, fmt, fh)
        echo_err(f"wrote {n} rows to {out_path}")
    else:
        write(store, rid, fmt, sys.stdout)
