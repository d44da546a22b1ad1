"""`harness run`: execute a plan, print its summary, write its report."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import click

from harness.cli.common import db_option, echo_err, open_store, print_summary
from harness.errors import HarnessError


@click.command()
@click.argument("plan", required=False, type=click.Path(dir_okay=False))
@db_option
@click.option("--limit", type=click.IntRange(min=1), help="At most N items per suite.")
@click.option(
    "--data",
    "data",
    multiple=True,
    metavar="SUITE=PATH",
    help="Benchmark files (or hub id) for a suite, e.g. --data humaneval=HumanEval.jsonl.gz. Repeatable.",
)
@click.option("--resume", metavar="RUN_ID", help="Resume this run (default: resume the plan's unfinished run).")
@click.option("--new", is_flag=True, help="Start a new run even if the plan has an unfinished one.")
@click.option("--tag", default="", help="Label stored with the run (e.g. 'weekly').")
@click.option(
    "--max-cost", type=click.FloatRange(min=0), metavar="USD", help="Stop cleanly once the run has spent this much."
)
@click.option("--cache", is_flag=True, help="Reuse stored completions of identical requests from earlier runs.")
@click.option("--dry-run", is_flag=True, help="Show prompts, request counts and estimated cost; send nothing.")
@click.option(
    "--confirm-above",
    type=click.FloatRange(min=0),
    metavar="USD",
    help="Ask before sending anything when the estimated cost (as --dry-run shows it) exceeds this.",
)
@click.option("--yes", is_flag=True, help="With --confirm-above: do not ask.")
@click.option(
    "--out",
    "out_dir",
    default="reports",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the HTML report goes.",
)
@click.option("--no-report", is_flag=True, help="Do not write the HTML report.")
@click.option(
    "--shard",
    metavar="I/N",
    help="Run only shard I of N of the items (0-based), e.g. to split "
    "a run over machines sharing one --db: start it once, then --resume RUN_ID --shard I/N on each.",
)
@click.option(
    "--executor",
    metavar="NAME",
    default="local",
    show_default=True,
    help="A registered executor (harness.engine.executors). local: every request from this process. "
    "ray: the remaining work split into shards on a Ray "
    "cluster (pip install 'harness[ray]'), each model's concurrency/rpm/tpm shared by all of them.",
)
@click.option(
    "--address",
    metavar="auto|HOST:PORT|ray://HOST:PORT",
    help="With --executor ray: the cluster to join (auto: the one this machine belongs to). Default: "
    "start a local Ray instance. A cluster needs a PostgreSQL --db every node reaches.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    metavar="N",
    help="With --executor ray: shards, one worker each [default: the cluster's CPUs].",
)
@click.option(
    "--runtime-env",
    "runtime_env",
    type=click.Path(dir_okay=False, exists=True),
    metavar="FILE",
    help="With --executor ray: a JSON or YAML file with Ray's runtime_env for the workers (e.g. "
    "working_dir, pip). Ray records it in its job table: never put keys or passwords in it.",
)
@click.option(
    "--check",
    "check",
    is_flag=True,
    help="Then check the run against the previous run of the plan "
    "(regressions, drift alarms; as `harness check`) and post it to the plan's webhook.",
)
@click.option("--fail-on-regression", is_flag=True, help="With --check (implied): exit 1 on a significant drop.")
@click.option(
    "--batch",
    "batch",
    is_flag=True,
    help="Send every openai model's requests through the provider's "
    "Batch API (as `batch: true` on each model): cheaper, answered within 24 h, no latency measured.",
)
@click.option(
    "--batch-wait",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="How long to keep polling provider batches before exiting with the run 'waiting' (a rerun "
    "collects them). Default: until they end; with --resume: one poll.",
)
def run(
    plan,
    db_url,
    limit,
    data,
    resume,
    new,
    tag,
    max_cost,
    cache,
    dry_run,
    out_dir,
    no_report,
    shard,
    check=False,
    fail_on_regression=False,
    batch=False,
    batch_wait=None,
    executor="local",
    address=None,
    workers=None,
    runtime_env=None,
    confirm_above=None,
    yes=False,
):
    """Run PLAN (default: evals/smoke.yaml): every model on every suite, graded and stored.

    Each finished sample is committed at once; rerunning the same plan on the same database
    resumes an unfinished run without repeating any stored request. With --executor ray the
    run is split over a Ray cluster's workers; a worker that dies has its shard started again.
    """
    from harness.engine.runs import default_plan_path
    from harness.plan import load_plan, unpriced_warning, with_batch

    plan_path = Path(plan) if plan else default_plan_path()
    p = load_plan(plan_path, limit=limit)
    if unpriced_warning(p):
        echo_err(unpriced_warning(p))
    if batch:
        p = with_batch(p)
    if not no_report and not dry_run:
        from harness.report import check_out_dir

        check_out_dir(out_dir)  # before the first request, not after the run
    overrides = _parse_data_overrides(data, p)
    if dry_run:
        from harness.engine.estimate import dry_run as do_dry_run

        do_dry_run(p, data_override=overrides)
        return
    if confirm_above is not None and not yes:
        _confirm_cost(p, overrides, confirm_above)
    from harness.engine import tuning

    tuning.quiet_startup()  # the engine turns the collector back on before the first request
    from harness.engine.executors import RunOptions
    from harness.engine.progress import RunProgress
    from harness.engine.runs import execute_plan

    shard_spec = _parse_shard(shard)
    ray_options = _ray_options(executor, address, workers, runtime_env, shard_spec)
    if ray_options is not None:
        _refuse_password_in_command_line(db_url)
    store = open_store(db_url)
    started = time.perf_counter()
    # `kill`, systemd's stop and cron's end send SIGTERM: stop as Ctrl-C does, so the run is marked
    # interrupted and its lease given back, instead of dying with the run still shown as running.
    on_term = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        # Once the last request is sent, import what the summary needs (numpy, rich) on a side thread.
        options = RunOptions(
            resume=resume,
            new=new,
            tag=tag,
            max_cost=max_cost,
            use_cache=cache,
            progress=RunProgress(),
            data_override=overrides,
            shard=shard_spec,
            executor=executor,
            ray=ray_options,
            warm=("harness.analysis.summary", "harness.analysis.stats", "rich.table"),
            own_process=True,
            batch_wait=batch_wait if batch_wait is not None or not resume else 0.0,
        )
        result = execute_plan(p, store, options)
    except KeyboardInterrupt:
        echo_err("interrupted: finished samples are stored; run the same command again to resume")
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, on_term)
    elapsed = time.perf_counter() - started
    tuning.spare_exit()
    # Say how the run ended: a run that failed (a model stopped for fatal errors) did not "finish".
    verb = {"failed": "failed", "stopped": "stopped", "interrupted": "was interrupted"}.get(
        result.status, "resumed" if result.resumed else "finished"
    )
    if result.status in ("running", "waiting"):
        verb = "is incomplete (shard done)" if result.status == "running" else "is waiting for batches"
    for note in result.outcome.notes:
        echo_err(note)
    if result.status == "stopped":
        echo_err(f"stopped: spend reached --max-cost {max_cost}; rerun to continue")
    elif result.status == "interrupted":
        echo_err(
            "interrupted: this process lost the run's lease (it was silent too long) and stopped; "
            "finished samples are stored"
        )
    elif result.status == "running" and ray_options is not None:
        echo_err(f"run {result.run_id} is missing samples after every shard ended; run again to resume it")
    elif result.status == "running":
        echo_err(f"shard {shard} done; run {result.run_id} finishes when every shard has")
    elif result.status == "waiting":
        for line in result.outcome.waiting:
            echo_err(line)
        echo_err(
            f"run {result.run_id} is waiting for provider batches: rerun the same command later "
            f"(add --resume {result.run_id} for one poll) to collect them"
        )
    from harness.analysis.summary import summarize_run

    summary = summarize_run(store, result.run_id)
    print_summary(summary)
    took = f"in {elapsed:.1f} s" if verb in ("finished", "resumed") else f"after {elapsed:.1f} s"
    click.echo(f"run {result.run_id} {verb} {took}; stored in {store.shown_url}")
    if not no_report:
        from harness.report import write_report

        path = write_report(store, [result.run_id], out_dir)
        click.echo(f"report: {path}")
    failures = result.outcome.failures()
    if failures:
        for model, reason in failures.items():
            state = result.outcome.per_model[model]
            left = f"; {state.unstored} sample(s) not stored" if state.unstored else ""
            echo_err(f"model '{model}' failed: {reason}{left}; fix the cause and rerun the plan to resume")
        # 2: nothing could be reached (as a bad key or a closed port is the user's to fix); 1: some models failed.
        sys.exit(2 if not result.outcome.reached() else 1)
    if check or fail_on_regression:
        if result.status in ("running", "waiting"):
            echo_err("check skipped: the run is not complete yet")
            return
        from harness.cli.check import run_check

        code = run_check(store, result.run_id, notify=True, fail_on_regression=fail_on_regression)
        if code:
            sys.exit(code)


def _parse_shard(value):
    if not value:
        return None
    try:
        index, count = (int(x) for x in value.split("/"))
    except ValueError:
        index = count = -1
    if not 0 <= index < count:
        raise HarnessError(f"--shard {value}: give I/N with 0 <= I < N, e.g. --shard 0/4")
    return index, count


def _ray_options(executor, address, workers, runtime_env, shard):
    given = [
        name
        for name, value in (("--address", address), ("--workers", workers), ("--runtime-env", runtime_env))
        if value
    ]
    if executor != "ray":
        if given:
            raise HarnessError(f"{given[0]} goes with --executor ray")
        return None
    if shard is not None:
        raise HarnessError("--shard and --executor ray exclude each other: the Ray executor shards the run itself")
    from harness.engine.executors import RayOptions

    env = None
    if runtime_env:
        import yaml

        try:
            env = yaml.safe_load(Path(runtime_env).read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            from harness.errors import yaml_error

            raise yaml_error(f"--runtime-env {runtime_env}", exc) from None
        if not isinstance(env, dict):
            raise HarnessError(f'--runtime-env {runtime_env}: give a mapping, e.g. {{"working_dir": "."}}')
    return RayOptions(address=address, workers=workers, runtime_env=env)


def _refuse_password_in_command_line(db_url) -> None:
    """Ray records the driver's command line in its job table (and dashboard): no password there."""
    from click.core import ParameterSource

    if not db_url or click.get_current_context().get_parameter_source("db_url") != ParameterSource.COMMANDLINE:
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(db_url)
    except ArgumentError:
        return  # opening the store says what is wrong with it
    if url.password:
        raise HarnessError(
            f"--db {url.render_as_string(hide_password=True)}: with --executor ray a password on the "
            f"command line ends up in Ray's job table; export HARNESS_DB=URL instead of --db"
        )


def _parse_data_overrides(values, plan) -> dict[str, str]:
    out = {}
    names = [s.name for s in plan.suites]
    for value in values:
        if "=" in value:
            suite, path = value.split("=", 1)
        elif len(names) == 1:
            suite, path = names[0], value
        else:
            raise HarnessError(f"--data {value}: name the suite, e.g. --data {names[0]}={value}")
        if suite not in names:
            raise HarnessError(f"--data {value}: the plan has no suite '{suite}' (its suites: {', '.join(names)})")
        out[suite] = path
    return out


def _confirm_cost(plan, overrides, limit: float) -> None:
    """Ask before an expensive run (long prompts add up), as `harness load` does; refuse without a terminal."""
    from harness.engine.estimate import estimate_suites, plan_costs

    figures = plan_costs(plan, estimate_suites(plan, data_override=overrides))
    total = sum(f["estimated_cost_usd"] for f in figures.values())
    if total <= limit:
        return
    if not sys.stdin.isatty():
        raise HarnessError(
            f"estimated cost ${total:.2f} exceeds --confirm-above ${limit:g}; pass --yes to run without asking "
            f"(or --max-cost USD to cap it; --dry-run shows the estimate per model and length)"
        )
    click.confirm(f"The run may cost up to ${total:.2f} (see --dry-run). Run it?", abort=True, err=True)
