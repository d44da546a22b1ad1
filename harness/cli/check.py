"""`harness check`: regressions and drift alarms of a run against the previous one (logic in harness/checks.py)."""

from __future__ import annotations

import json
import sys

import click

from harness.cli.common import db_option


@click.command()
@click.argument("run_id", required=False, metavar="[RUN]")
@db_option
@click.option(
    "--against",
    "against",
    metavar="RUN",
    help="Compare with this run instead of the previous finished run of the same plan.",
)
@click.option("--plan", "plan_name", metavar="NAME", help="Check the latest run of this plan (instead of RUN).")
@click.option(
    "--correction",
    type=click.Choice(["holm", "bh"]),
    default="holm",
    show_default=True,
    help="Multiple-comparison correction over every model x suite comparison.",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.05,
    show_default=True,
    help="Significance level (corrected p-values; availability test).",
)
@click.option("--fail-on-regression", is_flag=True, help="Exit 1 when a model got significantly worse on a suite.")
@click.option("--fail-on-alarm", is_flag=True, help="Exit 1 when there is a drift alarm.")
@click.option("--notify", is_flag=True, help="Also POST the result to the webhook named in the run's plan.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (fields in README.md).")
@click.option(
    "--load",
    "load",
    is_flag=True,
    help="Check a load run (`harness load`) instead: per model and "
    "stage, is p99 latency or TTFT significantly worse than in the previous load run of the plan? "
    "(bootstrap interval of the difference of p99s; RUN and --against name load runs)",
)
def check(
    run_id,
    db_url,
    against,
    plan_name,
    correction,
    alpha,
    fail_on_regression,
    fail_on_alarm,
    notify,
    as_json,
    load=False,
):
    """Check RUN (default: the latest) against the previous finished run of its plan.

    \b
    Lists the significant drops per model and suite (paired tests, corrected together) and drift
    alarms: a served model name that differs from the one asked for or from the previous run's,
    a changed API model, a changed price, a changed suite, a worse error rate.
    The first run of a plan has nothing to compare with: only its served names are checked.
    """
    from harness.store import Store

    if run_id and plan_name:
        raise click.UsageError("name a RUN or --plan, not both")
    store = Store(db_url, must_exist=True)
    if load:
        sys.exit(_check_load(store, run_id, against, plan_name, alpha, as_json, fail_on_regression, fail_on_alarm))
    if plan_name:
        from harness.errors import HarnessError

        runs = store.runs(plan_name)
        if not runs:
            raise HarnessError(f"no runs of plan '{plan_name}' in {store.shown_url} (see `harness runs list`)")
        run_id = runs[-1].id
    code = run_check(
        store,
        run_id,
        against=against,
        correction=correction,
        alpha=alpha,
        as_json=as_json,
        notify=notify,
        fail_on_regression=fail_on_regression,
        fail_on_alarm=fail_on_alarm,
    )
    if code:
        sys.exit(code)


def run_check(
    store,
    run_id,
    *,
    against=None,
    correction="holm",
    alpha=0.05,
    as_json=False,
    notify=False,
    fail_on_regression=False,
    fail_on_alarm=False,
) -> int:
    """Check a run, print the result, post it to the plan's webhook if asked; returns the exit status.

    `harness check` and `harness run --check` both print through here.
    """
    from harness.analysis import checks

    result = checks.check_run(store, run_id, previous=against, correction=correction, alpha=alpha)
    if as_json:
        click.echo(json.dumps(checks.to_json(result), indent=2, ensure_ascii=False, allow_nan=False))
    else:
        click.echo(checks.format_text(result))
    if notify:
        sent = checks.notify(result)
        if sent is not None:
            if sent.ok:
                click.echo(f"webhook: posted to {sent.target} (HTTP {sent.status})", err=True)
            else:
                where = f" {sent.target}" if sent.target else ""
                click.echo(f"warning: webhook{where} not delivered: {sent.error}", err=True)
    code = 0
    if fail_on_regression and result.regressions:
        code = 1
    if fail_on_alarm and result.alarms:
        code = 1
    return code


def _check_load(store, run_id, against, plan_name, alpha, as_json, fail_on_regression, fail_on_alarm=False) -> int:
    from harness.load.check import check_load, format_text, to_json

    result = check_load(store, run_id, against=against, alpha=alpha, plan_name=plan_name)
    if as_json:
        click.echo(json.dumps(to_json(result), indent=2, ensure_ascii=False, allow_nan=False))
    else:
        click.echo(format_text(result))
    # An unavailable model is an alarm: it fails --fail-on-regression too, as a p99 test cannot see it.
    return (
        1 if (fail_on_regression and (result.regressions or result.alarms)) or (fail_on_alarm and result.alarms) else 0
    )
