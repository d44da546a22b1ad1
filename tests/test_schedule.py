"""`harness schedule`: the crontab line (printed, installed and removed with a fake `crontab` under a
temporary HOME — the real user's crontab is never touched), systemd user units, validation with exit
status 2, and the scheduled command itself run the way cron runs it: it runs, reports, checks, and
resumes an interrupted run."""

from __future__ import annotations

import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.cli import invoke
from support.weekly import WeeklyResponder, item_ids, write_plan

from harness import schedule as sch
from harness.cli import cli, main
from harness.errors import HarnessError

FAKE_CRONTAB = """#!/bin/sh
# A stand-in for crontab(1): the table lives in $HOME/crontab.txt.
f="$HOME/crontab.txt"
case "$1" in
  -l) if [ -f "$f" ]; then cat "$f"; else echo "no crontab for $(id -un)" >&2; exit 1; fi ;;
  -) cat > "$f" ;;
  *) echo "usage: crontab [-l | -]" >&2; exit 2 ;;
esac
"""


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A temporary HOME with a fake crontab first on PATH; the working directory is HOME/work."""
    home = tmp_path / "home"
    (home / "bin").mkdir(parents=True)
    crontab = home / "bin" / "crontab"
    crontab.write_text(FAKE_CRONTAB)
    crontab.chmod(0o755)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("HARNESS_DB", raising=False)
    monkeypatch.setenv("PATH", f"{home / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    work = home / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return home


@pytest.fixture
def plan(tmp_path):
    plans = tmp_path / "plans"
    plans.mkdir()
    path = plans / "nightly.yaml"
    path.write_text(
        "name: nightly\nmodels:\n  m: {provider: openai, base_url: 'http://127.0.0.1:9/v1', "
        "api_key_env: NIGHTLY_KEY}\nsuites: [math-word]\n"
    )
    return path


def harness_main(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run `harness ARGS` in-process through main() (so user errors exit 2 as from the shell)."""
    monkeypatch.setattr(sys, "argv", ["harness", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_user_error(monkeypatch, capsys, args, *needles):
    code, _, err = harness_main(monkeypatch, capsys, *args)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]


# -- the crontab line ------------------------------------------------------------------------------


def test_print_shows_an_absolute_line_with_a_marker(home, plan, capsys):
    line = invoke("schedule", plan, "--every", "weekly", "--at", "04:30", "--print").stdout.strip()
    work = home / "work"
    assert line.startswith("30 4 * * 1 ")
    assert line.endswith(" # harness-schedule:nightly")
    command = line.split(None, 5)[5]
    assert command.startswith(f"mkdir -p {work / 'reports'}; exec >>{work / 'reports' / 'schedule-nightly.log'} 2>&1; ")
    assert f"cd {work} && " in command
    run = shlex.split(command.split(" && ", 1)[1].split(" #", 1)[0].split(" || ", 1)[0])
    if run[0] == "flock":  # overlapping runs are skipped where util-linux's flock exists
        assert run[1:3] == ["-n", "-E"] and run[4] == f"{work / 'reports' / 'schedule-nightly.log'}.lock"
        run = run[5:]
    assert run == [
        sys.executable,
        "-m",
        "harness",
        "run",
        str(plan),
        "--tag",
        "scheduled",
        "--db",
        f"sqlite:///{work / 'harness.db'}",
        "--out",
        str(work / "reports"),
        "--check",
        "--fail-on-regression",
        "--batch-wait",
        "3600",
    ]
    assert Path(sys.executable).is_absolute()
    assert not (home / "crontab.txt").exists()  # --print installs nothing


def test_every_and_at(home, plan):
    def cron(*args):
        return invoke("schedule", plan, "--print", *args).stdout.split(None, 5)[:5]

    assert cron("--every", "daily") == ["0", "3", "*", "*", "*"]
    assert cron("--every", "daily", "--at", "23:05") == ["5", "23", "*", "*", "*"]
    assert cron("--every", "weekly", "--day", "sun", "--at", "7:00") == ["0", "7", "*", "*", "0"]
    assert cron("--every", "*/15 9-17 * * mon-fri") == ["*/15", "9-17", "*", "*", "mon-fri"]


def test_install_list_and_remove_with_a_fake_crontab(home, plan, tmp_path):
    table = home / "crontab.txt"
    table.write_text("MAILTO=me@example.com\n15 1 * * * /usr/bin/backup # mine\n")
    env = tmp_path / "keys.env"
    env.write_text("NIGHTLY_KEY=sk-test\n")
    env.chmod(0o600)
    out = invoke("schedule", plan, "--every", "daily", "--env-file", env).output
    assert "installed crontab entry 'nightly'" in out and "warning" not in out
    lines = table.read_text().splitlines()
    assert lines[:2] == ["MAILTO=me@example.com", "15 1 * * * /usr/bin/backup # mine"]
    assert len(lines) == 3 and lines[2].endswith("# harness-schedule:nightly")
    assert f"set -a && . {env} && set +a && " in lines[2] and "sk-test" not in lines[2]
    assert (home / "work" / "reports").is_dir()  # the log's folder exists before the first run
    # Installing the same name again replaces the entry; another name adds one.
    assert "replaced crontab entry 'nightly'" in invoke("schedule", plan, "--every", "weekly").output
    invoke("schedule", plan, "--every", "0 6 * * *", "--name", "early")
    lines = table.read_text().splitlines()
    assert len(lines) == 4 and lines[2].startswith("0 3 * * 1 ") and lines[3].startswith("0 6 * * * ")
    listed = invoke("schedule", "list").output.splitlines()
    assert [line.split()[:2] for line in listed] == [["nightly", "cron"], ["early", "cron"]]
    assert str(plan) in listed[0]
    import json

    doc = json.loads(invoke("schedule", "list", "--json").stdout)
    assert [(e["name"], e["when"], e["plan"]) for e in doc] == [
        ("nightly", "0 3 * * 1", str(plan)),
        ("early", "0 6 * * *", str(plan)),
    ]
    assert "removed crontab entry 'nightly'" in invoke("schedule", "remove", "nightly").output
    assert table.read_text().splitlines() == ["MAILTO=me@example.com", "15 1 * * * /usr/bin/backup # mine", lines[3]]
    invoke("schedule", "remove", "early")
    assert table.read_text().splitlines() == ["MAILTO=me@example.com", "15 1 * * * /usr/bin/backup # mine"]
    assert "no harness schedules" in invoke("schedule", "list").output


def test_warns_when_the_scheduled_run_would_miss_its_api_key(home, plan, tmp_path):
    result = CliRunner().invoke(cli, ["schedule", str(plan), "--every", "daily", "--print"])
    assert result.exit_code == 0 and "NIGHTLY_KEY" in result.output and "--env-file" in result.output
    env = tmp_path / "other.env"
    env.write_text("OTHER=1\n")
    env.chmod(0o644)
    result = CliRunner().invoke(cli, ["schedule", str(plan), "--every", "daily", "--print", "--env-file", str(env)])
    assert "does not set NIGHTLY_KEY" in result.output and "chmod 600" in result.output


def test_a_database_password_never_goes_into_the_schedule(home, plan, tmp_path, monkeypatch, capsys):
    url = "postgresql+psycopg://evals:s3cret-pw@db.internal/evals"
    assert_user_error(
        monkeypatch,
        capsys,
        ["schedule", plan, "--every", "daily", "--print", "--db", url],
        "holds a password",
        "HARNESS_DB",
    )
    env = tmp_path / "harness.env"
    env.write_text(f"NIGHTLY_KEY=k\nHARNESS_DB={url}\n")
    env.chmod(0o600)
    out = invoke("schedule", plan, "--every", "daily", "--print", "--db", url, "--env-file", env).output
    assert "s3cret-pw" not in out and "--db" not in out and str(env) in out


def test_user_errors_exit_2_with_one_line(home, plan, monkeypatch, capsys):
    base = ["schedule", plan, "--print"]
    assert_user_error(monkeypatch, capsys, base + ["--every", "monthly"], "--every monthly", "daily, weekly")
    assert_user_error(monkeypatch, capsys, base + ["--every", "@weekly"], "5-field cron")
    assert_user_error(monkeypatch, capsys, base + ["--every", "daily", "--at", "25:00"], "--at 25:00", "HH:MM")
    assert_user_error(monkeypatch, capsys, base + ["--every", "daily", "--at", "3pm"], "--at 3pm")
    assert_user_error(monkeypatch, capsys, base + ["--every", "0 3 * *"], "needs 5 fields", "got 4")
    assert_user_error(monkeypatch, capsys, base + ["--every", "61 3 * * *"], "minute 61", "0-59")
    assert_user_error(monkeypatch, capsys, base + ["--every", "0 3 * * funday"], "day of week 'funday'")
    assert_user_error(monkeypatch, capsys, base + ["--every", "0 9-5 * * *"], "runs backwards")
    assert_user_error(monkeypatch, capsys, base + ["--every", "*/0 * * * *"], "step")
    assert_user_error(monkeypatch, capsys, base + ["--every", "0 3 * * 1", "--at", "04:00"], "--at and --day")
    assert_user_error(monkeypatch, capsys, base + ["--every", "daily", "--day", "mon"], "--day goes with")
    assert_user_error(monkeypatch, capsys, base + ["--every", "daily", "--name", "my schedule"], "--name")
    assert_user_error(monkeypatch, capsys, base + ["--every", "daily", "--env-file", "nope.env"], "--env-file")
    assert_user_error(monkeypatch, capsys, base + ["--every", "daily", "--db", "sqlite://"], "database file")
    assert_user_error(monkeypatch, capsys, ["schedule", "missing.yaml", "--every", "daily"], "plan file not found")
    assert_user_error(monkeypatch, capsys, ["schedule", "remove", "nothing-here"], "no schedule named")
    code, _, err = harness_main(monkeypatch, capsys, "schedule", plan)  # --every is required
    assert code == 2 and "--every" in err


def test_without_a_crontab_command_it_says_what_to_do(home, plan, monkeypatch, capsys):
    empty = home / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert_user_error(
        monkeypatch, capsys, ["schedule", plan, "--every", "daily"], "no `crontab` command", "--systemd", "--print"
    )
    code, out, _ = harness_main(monkeypatch, capsys, "schedule", plan, "--every", "daily", "--print")
    assert code == 0 and out.startswith("0 3 * * * ")


# -- systemd -------------------------------------------------------------------------------------------


def _systemd_unquote(arg: str) -> str:
    assert arg[0] == arg[-1] == '"'
    out, i, body = [], 0, arg[1:-1]
    while i < len(body):
        two = body[i : i + 2]
        if two in ('\\"', "\\\\", "$$", "%%"):
            out.append(two[1])
            i += 2
        else:
            assert body[i] not in '"$%', body  # a lone specifier would be expanded by systemd
            out.append(body[i])
            i += 1
    return "".join(out)


def test_systemd_user_timer_written_listed_and_removed(home, plan):
    out = invoke("schedule", plan, "--every", "weekly", "--at", "06:15", "--systemd").output
    units = home / ".config" / "systemd" / "user"
    service, timer = units / "harness-nightly.service", units / "harness-nightly.timer"
    assert f"wrote {service}" in out and f"wrote {timer}" in out
    assert "systemctl --user daemon-reload && systemctl --user enable --now harness-nightly.timer" in out
    timer_text = timer.read_text()
    assert "OnCalendar=Mon *-*-* 06:15:00" in timer_text and "Persistent=true" in timer_text
    assert "WantedBy=timers.target" in timer_text
    service_text = service.read_text()
    assert "Type=oneshot" in service_text and f"WorkingDirectory={home / 'work'}" in service_text
    exec_start = next(line for line in service_text.splitlines() if line.startswith("ExecStart="))
    assert exec_start.startswith("ExecStart=/bin/sh -c ")
    s = sch.build_schedule(str(plan), every="weekly", at="06:15")
    assert _systemd_unquote(exec_start[len("ExecStart=/bin/sh -c ") :]) == s.command()
    assert not (home / "crontab.txt").exists()
    listed = invoke("schedule", "list").output
    assert "nightly" in listed and "systemd" in listed and "15 6 * * 1" in listed
    # An enabled timer leaves a link behind: remove takes it too.
    wants = units / "timers.target.wants"
    wants.mkdir()
    (wants / "harness-nightly.timer").symlink_to(timer)
    out = invoke("schedule", "remove", "nightly").output
    assert "systemctl --user stop harness-nightly.timer" in out
    assert not service.exists() and not timer.exists() and not (wants / "harness-nightly.timer").is_symlink()


def test_print_systemd_writes_nothing(home, plan):
    out = invoke("schedule", plan, "--every", "daily", "--systemd", "--print").stdout
    assert "OnCalendar=*-*-* 03:00:00" in out and "ExecStart=/bin/sh -c" in out
    assert not (home / ".config").exists()


@pytest.mark.parametrize(
    "cron, calendar",
    [
        ("0 3 * * 1", "Mon *-*-* 03:00:00"),
        ("0 3 * * *", "*-*-* 03:00:00"),
        ("30 6 * * 1-5", "Mon,Tue,Wed,Thu,Fri *-*-* 06:30:00"),
        ("0 0 1 * *", "*-*-01 00:00:00"),
        ("*/20 8-9 * jan,jul 0", "Sun *-01,07-* 08,09:00,20,40:00"),
        ("0 12 * * 7", "Sun *-*-* 12:00:00"),
        ("0 1 * * 5-7", "Sun,Fri,Sat *-*-* 01:00:00"),
    ],
)
def test_cron_to_oncalendar(cron, calendar):
    assert sch.cron_to_oncalendar(cron) == calendar
    analyze = shutil.which("systemd-analyze")
    if analyze:  # systemd's own parser accepts it
        proc = subprocess.run([analyze, "calendar", calendar], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr


def test_cron_semantics_systemd_cannot_express_are_refused():
    with pytest.raises(HarnessError, match="EITHER the day of month or the day of week"):
        sch.cron_to_oncalendar("0 3 1 * 1")


def test_parse_cron_values():
    minute, hour, dom, month, dow = sch.parse_cron("*/15 9-17/4 1,15 jan-mar sun,7")
    assert minute == {0, 15, 30, 45} and hour == {9, 13, 17} and dom == {1, 15}
    assert month == {1, 2, 3} and dow == {0}


# -- the scheduled command, run as cron runs it ----------------------------------------------------------


def _run_like_cron(line: str, home: Path) -> subprocess.CompletedProcess:
    """Run a crontab line's command as cron does: /bin/sh -c, a minimal environment, % unescaped."""
    command = line.split(None, 5)[5].replace("\\%", "%")
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "SHELL": "/bin/sh"}
    return subprocess.run(["/bin/sh", "-c", command], cwd="/", env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_the_scheduled_command_runs_reports_checks_and_resumes(home, tmp_path, fake_server):
    fake_server.state.responder = WeeklyResponder()
    (tmp_path / "plans").mkdir()
    models = {"a": {"price": {"output": 0.25}}, "b": {"price": {"output": 1.0}}}
    plan = write_plan(
        tmp_path / "plans" / "wk.yaml", fake_server, models, name="wk", suites=[{"math-word": {"limit": 12}}]
    )
    line = invoke("schedule", plan, "--every", "weekly", "--print").stdout.strip()
    work = home / "work"
    proc = _run_like_cron(line, home)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""  # everything went to the log
    log = (work / "reports" / "schedule-wk.log").read_text()
    assert "harness schedule wk" in log and "harness check: plan wk" in log and "first run of its plan" in log
    db = work / "harness.db"
    with sqlite3.connect(db) as con:
        runs = con.execute("select id, status, tag from runs").fetchall()
    assert [(s, t) for _, s, t in runs] == [("finished", "scheduled")]
    run_id = runs[0][0]
    assert (work / "reports" / run_id / "index.html").is_file()
    assert fake_server.state.requests == 24

    # The machine went down midway through the next run: it is 'running' with 5 samples missing.
    with sqlite3.connect(db) as con:
        con.execute("update runs set status = 'running', finished_at = null where id = ?", (run_id,))
        con.execute(
            "delete from samples where id in (select id from samples where run_id = ? order by id desc limit 5)",
            (run_id,),
        )
    proc = _run_like_cron(line, home)
    assert proc.returncode == 0
    with sqlite3.connect(db) as con:
        runs = con.execute("select id, status from runs").fetchall()
        n = con.execute("select count(*) from samples where run_id = ?", (run_id,)).fetchone()[0]
    assert runs == [(run_id, "finished")] and n == 24  # resumed: the same run, completed
    assert fake_server.state.requests == 24 + 5  # only the missing requests were sent
    log = (work / "reports" / "schedule-wk.log").read_text()
    assert f"run {run_id} resumed" in log

    # A week later 'b' answers every item wrong: the scheduled command fails and logs why. (Every item, so
    # the test holds whichever harness install the cron line's python imports.)
    fake_server.state.responder.wrong = {"b": set(item_ids())}
    proc = _run_like_cron(line, home)
    assert proc.returncode == 1
    log = (work / "reports" / "schedule-wk.log").read_text()
    assert f"(against {run_id}): 1 regression" in log and "REGRESSION b on math-word" in log


def test_a_database_named_in_the_env_file_is_the_one_the_scheduled_run_writes(
    home, tmp_path, fake_server, monkeypatch, capsys
):
    fake_server.state.responder = WeeklyResponder()
    (tmp_path / "plans").mkdir()
    plan = write_plan(
        tmp_path / "plans" / "envdb.yaml", fake_server, {"a": {}}, name="envdb", suites=[{"math-word": {"limit": 2}}]
    )
    wanted = tmp_path / "from-env-file.db"
    env = tmp_path / "harness.env"
    env.write_text(f"export HARNESS_DB='sqlite:///{wanted}'  # the team's database\n")
    env.chmod(0o600)
    line = invoke("schedule", plan, "--every", "daily", "--print", "--env-file", env).stdout.strip()
    assert "--db" not in line and str(env) in line
    # A --db naming another database than the file's is a contradiction, not a silent override.
    assert_user_error(
        monkeypatch,
        capsys,
        [
            "schedule",
            plan,
            "--every",
            "daily",
            "--print",
            "--env-file",
            env,
            "--db",
            f"sqlite:///{tmp_path / 'other.db'}",
        ],
        "name different databases",
        "HARNESS_DB",
    )
    same = invoke("schedule", plan, "--every", "daily", "--print", "--env-file", env, "--db", f"sqlite:///{wanted}")
    assert "--db" not in same.stdout
    proc = _run_like_cron(line, home)
    assert proc.returncode == 0, (home / "work" / "reports" / "schedule-envdb.log").read_text()[-2000:]
    with sqlite3.connect(wanted) as con:
        assert con.execute("select status from runs").fetchall() == [("finished",)]
    assert not (home / "work" / "harness.db").exists()
