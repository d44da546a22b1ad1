"""`harness runs list|show`: the stored runs."""

from __future__ import annotations

import json

import click

from harness.cli.common import db_option, open_store, print_summary


@click.group()
def runs():
    """List and inspect stored runs."""


@runs.command("list")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def runs_list(db_url, as_json):
    """List the runs in the database, oldest first."""
    store = open_store(db_url, read_only=True)
    rows = []
    for r in store.runs():
        rows.append(
            {
                "run": r.id,
                "plan": r.plan_name,
                "tag": r.tag,
                "status": r.status,
                "started": r.started_at.isoformat(timespec="seconds"),
                "samples": store.count_samples(r.id),
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no runs in {store.shown_url}")
    for row in rows:
        click.echo(
            f"{row['run']}  {row['started']}  {row['status']:<11}  {row['samples']:>6} samples  "
            f"{row['plan']}{'  [' + row['tag'] + ']' if row['tag'] else ''}"
        )


@runs.command("show")
@click.argument("run_id", required=False)
@db_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document: the run, its models and suites, and a row per model x suite.",
)
def runs_show(run_id, db_url, as_json=False):
    """Show one run (default: the latest): its models, suites and summary table."""
    from harness.analysis.summary import summarize_run, unpriced_models

    store = open_store(db_url, read_only=True)
    summary = summarize_run(store, store.resolve_run(run_id))
    r = summary.run
    unknown = unpriced_models(r)
    if as_json:
        click.echo(json.dumps(_show_doc(store, summary, unknown), indent=2, ensure_ascii=False, allow_nan=False))
        return
    click.echo(
        f"run {r.id}  plan {r.plan_name} ({r.plan_path})  status {r.status}  started {r.started_at:%Y-%m-%d %H:%M}"
    )
    for m in summary.models:
        price = (
            "no price: cost unknown"
            if m.model in unknown
            else f"${m.price_input:g}/${m.price_output:g} per M tokens in/out"
        )
        click.echo(f"  model {m.model}: {m.provider} {m.api_model} {m.base_url}  {price}")
    for s in summary.suites:
        click.echo(f"  suite {s.suite}: {s.items} items, hash {s.suite_hash}, grader {s.grader}")
    from harness.store.batches import list_batches

    for b in list_batches(store, r.id):
        click.echo(
            f"  batch {b.label}  model {b.model}  round {b.round}  {b.state}"
            f"{' (collected)' if b.collected else ''}  {b.n_completed} done, {b.n_failed} failed "
            f"of {b.n_requests}  input {b.input_file_id or '—'}{'  ' + b.error if b.error else ''}"
        )
    print_summary(summary)


def _show_doc(store, summary, unknown) -> dict:
    """`runs show --json`: what the text shows, as data (NaN as null)."""
    from harness.analysis.compare import json_safe
    from harness.analysis.summary import summary_rows

    r = summary.run
    return json_safe(
        {
            "run": r.id,
            "plan": r.plan_name,
            "plan_path": r.plan_path,
            "tag": r.tag,
            "status": r.status,
            "started": r.started_at.isoformat(timespec="seconds"),
            "finished": r.finished_at.isoformat(timespec="seconds") if r.finished_at else None,
            "samples": store.count_samples(r.id),
            "models": [
                {
                    "model": m.model,
                    "provider": m.provider,
                    "api_model": m.api_model,
                    "base_url": m.base_url,
                    "price": None if m.model in unknown else {"input": m.price_input, "output": m.price_output},
                    "failure": store.model_failures(r.id).get(m.model),
                }
                for m in summary.models
            ],
            "suites": [
                {"suite": s.suite, "items": s.items, "suite_hash": s.suite_hash, "grader": s.grader}
                for s in summary.suites
            ],
            "cells": summary_rows(summary),
        }
    )
