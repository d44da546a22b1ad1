"""`harness schedule`: install, list and remove scheduled runs of a plan (logic in harness/schedule.py)."""

from __future__ import annotations

import json

import click

from harness.errors import HarnessError


class _ScheduleGroup(click.Group):
    """`harness schedule PLAN ...` is short for `harness schedule add PLAN ...`."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["add", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_ScheduleGroup)
def schedule():
    """Run a plan every day or week: a crontab entry (or a systemd user timer) that runs it with a tag,
    writes the report and checks the run against the previous one.

    \b
    harness schedule PLAN --every weekly|daily|"CRON" [--at HH:MM] [--print | --systemd]
    harness schedule list
    harness schedule remove NAME
    """


@schedule.command("add")
@click.argument("plan", type=click.Path(dir_okay=False))
@click.option(
    "--every",
    required=True,
    metavar="weekly|daily|CRON",
    help="'weekly' (Mondays, see --day), 'daily', or a 5-field cron expression in quotes, e.g. '30 6 * * 1-5'.",
)
@click.option(
    "--at", "at", metavar="HH:MM", help="Time of day for daily/weekly (24-hour, local time) [default: 03:00]."
)
@click.option("--day", metavar="DAY", help="Day of the week for weekly: mon..sun [default: mon].")
@click.option("--name", metavar="NAME", help="Name of the schedule [default: the plan's name].")
@click.option("--tag", default="scheduled", show_default=True, help="Tag stored with each scheduled run.")
@click.option(
    "--db",
    "db_url",
    default=None,
    metavar="URL",
    help="Database of the runs (a relative SQLite path is made absolute) [default: HARNESS_DB from "
    "--env-file, read at each run; else $HARNESS_DB or sqlite:///harness.db].",
)
@click.option(
    "--out",
    "out_dir",
    default="reports",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the reports go (made absolute).",
)
@click.option(
    "--log",
    "log_path",
    type=click.Path(dir_okay=False),
    help="Log of the scheduled runs [default: OUT/schedule-NAME.log].",
)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False),
    help="File of VAR=value lines (API keys) sourced before each run: cron and systemd do not see "
    "your shell's environment.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False),
    help="Directory the run starts in [default: the current one], where relative paths resolve.",
)
@click.option(
    "--print", "print_only", is_flag=True, help="Print the crontab line (or unit files) instead of installing."
)
@click.option("--systemd", is_flag=True, help="Write a systemd user timer instead of a crontab entry.")
@click.option(
    "--batch-wait",
    "batch_wait",
    type=click.FloatRange(min=0),
    default=3600.0,
    show_default=True,
    metavar="SECONDS",
    help="Longest each run polls provider batches before exiting with them 'waiting' (the next run collects them).",
)
def add(plan, every, at, day, name, tag, db_url, out_dir, log_path, env_file, workdir, print_only, systemd, batch_wait):
    """Schedule PLAN: install a crontab entry (or systemd user timer) that runs it, reports and checks it.

    \b
    The entry runs, from the current directory:
      python -m harness run PLAN --tag scheduled --db URL --out DIR --check --fail-on-regression --batch-wait S
    An interrupted run resumes at the next one; the check's regressions and alarms go to the log
    and to the plan's webhook.
    """
    from harness import schedule as sch

    s = sch.build_schedule(
        plan,
        every=every,
        at=at,
        day=day,
        name=name,
        db_url=db_url,
        tag=tag,
        out_dir=out_dir,
        log_path=log_path,
        env_file=env_file,
        workdir=workdir,
        batch_wait_s=batch_wait,
    )
    warnings = sch.env_file_warnings(s)
    notes = sch.off_peak_notes(s)
    if print_only:
        if systemd:
            click.echo(f"# {sch.systemd_dir() / (s.unit_name() + '.service')}")
            click.echo(s.systemd_service())
            click.echo(f"# {sch.systemd_dir() / (s.unit_name() + '.timer')}")
            click.echo(s.systemd_timer())
        else:
            click.echo(s.cron_line())
    elif systemd:
        service, timer = sch.install_systemd(s)
        click.echo(f"wrote {service}\nwrote {timer}")
        click.echo(f"schedule '{s.name}': {s.cron} ({sch.cron_to_oncalendar(s.cron)}); log: {s.log_path}")
        click.echo(
            f"enable it with:\n  systemctl --user daemon-reload && systemctl --user enable --now {s.unit_name()}.timer"
        )
        click.echo("  (and `loginctl enable-linger $USER` to run it while you are logged out)")
    else:
        replaced = sch.install_cron(s)
        click.echo(f"{'replaced' if replaced else 'installed'} crontab entry '{s.name}': {s.cron}; log: {s.log_path}")
        click.echo(f"  {s.cron_line()}")
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    for n in notes:
        click.echo(f"note: {n}", err=True)


@schedule.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(as_json):
    """List the installed schedules (crontab entries and systemd user timers)."""
    from harness import schedule as sch

    entries = sch.list_schedules()
    if as_json:
        click.echo(json.dumps([e.__dict__ for e in entries], indent=2))
        return
    if not entries:
        click.echo("no harness schedules" + ("" if sch.crontab_available() else " (no crontab command here)"))
    for e in entries:
        click.echo(f"{e.name:<20} {e.kind:<8} {e.when:<16} {e.plan}")


@schedule.command("remove")
@click.argument("name")
def remove(name):
    """Remove the schedule NAME (its crontab entry and/or systemd user timer)."""
    from harness import schedule as sch

    found = False
    if sch.crontab_available() and sch.remove_cron(name):
        found = True
        click.echo(f"removed crontab entry '{name}'")
    removed = sch.remove_systemd(name)
    if removed:
        found = True
        for path in removed:
            click.echo(f"removed {path}")
        click.echo(f"stop it with:\n  systemctl --user stop harness-{name}.timer; systemctl --user daemon-reload")
    if not found:
        raise HarnessError(f"no schedule named '{name}' (see `harness schedule list`)")
