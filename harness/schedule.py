"""Run a plan on a schedule: a crontab entry or a systemd user timer that runs, reports and checks it.

The scheduled command (one line of POSIX sh, the same for cron and systemd):

    mkdir -p LOGDIR; exec >>LOG 2>&1; echo "== $(date): harness schedule NAME";
    cd WORKDIR && [set -a && . ENV_FILE && set +a &&]
    PYTHON -m harness run PLAN --tag TAG --db URL --out REPORTS --check --fail-on-regression --batch-wait S

- every path is absolute and PYTHON is the interpreter of the environment that installed the
  schedule, so neither cron's minimal PATH nor its working directory matters;
- WORKDIR is the directory `harness schedule` was run from (not the plan's folder): that is where
  `harness run` was being run by hand, so the plan's relative `data:` paths and a local `suites/`
  folder resolve exactly as they did then;
- `harness run` resumes the plan's unfinished run, so a run interrupted midway (machine off, killed)
  continues next time without repeating a stored request; it writes the report, then the check
  compares the run with the previous one of the plan, prints regressions and drift alarms to the
  log, posts them to the plan's webhook and exits 1 on a regression (systemd shows the unit failed);
- provider batches are polled for at most `--batch-wait` seconds (an hour by default): a provider
  whose batch is stuck must not keep the run, and its lease, past the next start; the run exits with
  its batches `waiting`, and the next start resumes it and polls them again;
- cron and systemd start without the user's shell environment: API keys come from `--env-file`, a
  file of VAR=value lines sourced at run time (the keys are never copied into the crontab).

Cron entries carry a trailing marker comment `# harness-schedule:NAME` so `list` and `remove` find them
among the user's other entries; systemd units are `harness-NAME.service` / `.timer` under
`~/.config/systemd/user/` and carry the same marker.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from harness.errors import HarnessError

MARKER = "# harness-schedule:"
_MARKER_RE = re.compile(r"#\s*harness-schedule:(\S+)\s*$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEFAULT_AT = "03:00"
DEFAULT_TAG = "scheduled"
DEFAULT_BATCH_WAIT_S = 3600.0  # a scheduled run polls stuck provider batches at most this long, then exits

# --------------------------------------------------------------------------- cron expressions

_FIELDS = (  # name, low, high
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
_MONTHS = {
    m: i
    for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)
}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_SYSTEMD_DAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


def _value(text: str, index: int, expr: str) -> int:
    name, low, high = _FIELDS[index]
    names = _MONTHS if index == 3 else _DAYS if index == 4 else {}
    t = text.lower()
    if t in names:
        return names[t]
    if not t.isdigit():
        hint = " (or jan..dec)" if index == 3 else " (or sun..sat)" if index == 4 else ""
        raise HarnessError(f"cron '{expr}': {name} '{text}' is not a number {low}-{high}{hint}")
    v = int(t)
    if not low <= v <= high:
        raise HarnessError(f"cron '{expr}': {name} {v} is out of range {low}-{high}")
    return v


def parse_cron(expr: str) -> list[set[int]]:
    """The five fields of a cron expression as the sets of values they match (day of week 7 -> 0).

    Accepts `*`, numbers, names (months, days of week), ranges `a-b`, steps `*/n` and `a-b/n`, and
    comma lists of those. Raises HarnessError naming the bad field.
    """
    fields = expr.split()
    if len(fields) != 5:
        raise HarnessError(
            f"cron '{expr}': needs 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(fields)}; e.g. '0 3 * * 1' is Mondays at 03:00"
        )
    out = []
    for index, field in enumerate(fields):
        name, low, high = _FIELDS[index]
        values: set[int] = set()
        for part in field.split(","):
            if not part:
                raise HarnessError(f"cron '{expr}': empty list entry in the {name} field")
            body, _, step_text = part.partition("/")
            step = 1
            if _:
                if not step_text.isdigit() or int(step_text) < 1:
                    raise HarnessError(
                        f"cron '{expr}': step '/{step_text}' in the {name} field must be a positive number"
                    )
                step = int(step_text)
            if body == "*":
                start, end = low, (6 if index == 4 else high)
            elif "-" in body:
                a, b = body.split("-", 1)
                start, end = _value(a, index, expr), _value(b, index, expr)
                if start > end:
                    raise HarnessError(f"cron '{expr}': range {body} in the {name} field runs backwards")
            else:
                start = end = _value(body, index, expr)
                if _:
                    raise HarnessError(f"cron '{expr}': write a step as */{step} or a-b/{step}, not {part}")
            values.update(range(start, end + 1, step))
        if index == 4:
            values = {0 if v == 7 else v for v in values}
        out.append(values)
    return out


def _is_full(values: set[int], index: int) -> bool:
    _, low, high = _FIELDS[index]
    return values == set(range(low, (6 if index == 4 else high) + 1))


def every_to_cron(every: str, at: str | None = None, day: str | None = None) -> str:
    """`daily` / `weekly` (+ `--at HH:MM`, `--day`) or a 5-field cron expression -> a validated cron expression."""
    every = (every or "").strip()
    if every.lower() in ("daily", "weekly"):
        hour, minute = parse_at(at or DEFAULT_AT)
        if every.lower() == "daily":
            if day:
                raise HarnessError("--day goes with --every weekly (a daily run runs every day)")
            return f"{minute} {hour} * * *"
        d = (day or "mon").strip().lower()[:3]
        if d not in _DAYS:
            raise HarnessError(f"--day {day}: give a day of the week, e.g. mon, tue ... sun")
        return f"{minute} {hour} * * {_DAYS[d]}"
    if at or day:
        raise HarnessError(
            f"--every '{every}': --at and --day go with daily or weekly; a cron expression "
            f"carries its own time (minute hour ...)"
        )
    if every.startswith("@"):
        raise HarnessError(f"--every {every}: use daily, weekly or a 5-field cron expression such as '0 3 * * 1'")
    if len(every.split()) == 1:
        raise HarnessError(
            f"--every {every}: use daily, weekly or a 5-field cron expression in quotes, e.g. --every '30 6 * * 1-5'"
        )
    parse_cron(every)
    return " ".join(every.split())


def parse_at(at: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", at or "")
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise HarnessError(f"--at {at}: give a time of day as HH:MM (24-hour clock), e.g. --at 03:00")
    return int(m.group(1)), int(m.group(2))


def cron_to_oncalendar(expr: str) -> str:
    """A cron expression as a systemd OnCalendar= value (`Mon *-*-* 03:00:00`)."""
    minute, hour, dom, month, dow = parse_cron(expr)
    if not _is_full(dom, 2) and not _is_full(dow, 4):
        raise HarnessError(
            f"cron '{expr}': cron runs when EITHER the day of month or the day of week matches; "
            f"a systemd timer needs both to match: restrict only one of them for --systemd"
        )

    def nums(values: set[int], index: int, width: int = 2) -> str:
        if _is_full(values, index):
            return "*"
        return ",".join(f"{v:0{width}d}" for v in sorted(values))

    days = "" if _is_full(dow, 4) else ",".join(_SYSTEMD_DAYS[d] for d in sorted(dow)) + " "
    return f"{days}*-{nums(month, 3)}-{nums(dom, 2)} {nums(hour, 1)}:{nums(minute, 0)}:00"


# --------------------------------------------------------------------------- the schedule


@dataclass(frozen=True)
class Schedule:
    name: str
    cron: str  # 5 fields
    plan_path: str  # absolute
    db_url: str  # with an absolute path for SQLite; "" when the env file sets HARNESS_DB (a URL with a password)
    workdir: str
    out_dir: str
    log_path: str
    tag: str = DEFAULT_TAG
    env_file: str | None = None
    python: str = sys.executable
    batch_wait_s: float = DEFAULT_BATCH_WAIT_S

    def argv(self) -> list[str]:
        db = ["--db", self.db_url] if self.db_url else []  # none: $HARNESS_DB from the env file
        return [
            self.python,
            "-m",
            "harness",
            "run",
            self.plan_path,
            "--tag",
            self.tag,
            *db,
            "--out",
            self.out_dir,
            "--check",
            "--fail-on-regression",
            "--batch-wait",
            f"{self.batch_wait_s:g}",
        ]

    def command(self) -> str:
        """The POSIX sh command line both cron and systemd run."""
        q = shlex.quote
        parts = [
            f"mkdir -p {q(str(Path(self.log_path).parent))}",
            f"exec >>{q(self.log_path)} 2>&1",
            f'echo "== $(date): harness schedule {self.name}"',
        ]
        run = f"cd {q(self.workdir)} && "
        if self.env_file:
            run += f"set -a && . {q(self.env_file)} && set +a && "
        if shutil.which("flock"):
            # A run that outlasts its interval must not be resumed twice at once (both would pay
            # for the same requests): the second start finds the lock taken and skips.
            lock = f"{self.log_path}.lock"
            run += f"flock -n -E 75 {q(lock)} "
        run += " ".join(q(a) for a in self.argv())
        if shutil.which("flock"):
            run += f' || {{ s=$?; [ $s -eq 75 ] && echo "skipped: the previous run of {self.name} is still going"; exit $s; }}'
        return "; ".join(parts + [run])

    def cron_line(self) -> str:
        # cron turns an unescaped % into a newline: escape it (cron removes the backslash again).
        return f"{self.cron} {self.command().replace('%', chr(92) + '%')} {MARKER}{self.name}"

    def unit_name(self) -> str:
        return f"harness-{self.name}"

    def systemd_service(self) -> str:
        return (
            f"{MARKER}{self.name}\n"
            f"[Unit]\nDescription=harness schedule {self.name}: {self.plan_path}\n\n"
            f"[Service]\nType=oneshot\nWorkingDirectory={self.workdir}\n"
            f"ExecStart=/bin/sh -c {_systemd_quote(self.command())}\n"
        )

    def systemd_timer(self) -> str:
        return (
            f"{MARKER}{self.name}\n# cron: {self.cron}\n"
            f"[Unit]\nDescription=harness schedule {self.name} ({self.cron})\n\n"
            f"[Timer]\nOnCalendar={cron_to_oncalendar(self.cron)}\nPersistent=true\n"
            f"Unit={self.unit_name()}.service\n\n"
            f"[Install]\nWantedBy=timers.target\n"
        )


def _systemd_quote(text: str) -> str:
    """One double-quoted systemd argument: `%` and `$` are systemd specifiers unless doubled."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def absolute_db_url(url: str, base: Path) -> str:
    """A SQLite URL with a relative path made absolute against `base`; other URLs unchanged."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        u = make_url(url)
    except ArgumentError as exc:
        raise HarnessError(f"--db {url!r}: not a usable SQLAlchemy URL ({exc})") from None
    if not u.drivername.startswith("sqlite"):
        return url
    db = u.database or ""
    if not db or db == ":memory:" or db.startswith("file:"):
        raise HarnessError(f"--db {url}: a scheduled run needs a database file, e.g. sqlite:///harness.db")
    path = Path(db).expanduser()
    if not path.is_absolute():
        path = (base / path).resolve()
    return u.set(database=str(path)).render_as_string(hide_password=False)


def schedule_name(text: str) -> str:
    """A schedule name from a plan name: letters, digits, `_`, `.`, `-`."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "plan"
    return name[:64]


def check_name(name: str) -> str:
    if not _NAME_RE.match(name or ""):
        raise HarnessError(
            f"--name {name!r}: use letters, digits, '_', '.' and '-' (at most 64, starting with a letter or digit)"
        )
    return name


def build_schedule(
    plan_path: str,
    *,
    every: str,
    at: str | None = None,
    day: str | None = None,
    name: str | None = None,
    db_url: str | None = None,
    tag: str = DEFAULT_TAG,
    out_dir: str = "reports",
    log_path: str | None = None,
    env_file: str | None = None,
    workdir: str | None = None,
    python: str | None = None,
    batch_wait_s: float = DEFAULT_BATCH_WAIT_S,
) -> Schedule:
    """Validate everything (plan, timing, paths) and resolve it to absolute form."""
    from harness.plan import load_plan
    from harness.store import default_db_url

    cron = every_to_cron(every, at, day)
    plan = load_plan(plan_path)
    base = Path(workdir).expanduser().resolve() if workdir else Path.cwd().resolve()
    if not base.is_dir():
        raise HarnessError(f"--workdir {workdir}: not a directory")
    name = check_name(name) if name else schedule_name(plan.name)
    if not tag or any(c.isspace() for c in tag):
        raise HarnessError(f"--tag {tag!r}: give a label without spaces, e.g. scheduled")
    out = (base / Path(out_dir).expanduser()).resolve()
    log = (base / Path(log_path).expanduser()).resolve() if log_path else out / f"schedule-{name}.log"
    env = None
    if env_file:
        env_path = (base / Path(env_file).expanduser()).resolve()
        if not env_path.is_file():
            raise HarnessError(
                f"--env-file {env_file}: no such file (write VAR=value lines, e.g. "
                f"GLOBAL_API_KEY=..., and chmod 600 it)"
            )
        env = str(env_path)
    env_db = _env_file_value(Path(env), "HARNESS_DB") if env else None
    if env_db is not None:
        # Each run sources the env file and reads HARNESS_DB from it; a --db in the command would
        # override it, so the line has none (and two different databases named is a mistake).
        if db_url and env_db != db_url:
            raise HarnessError(
                f"--db and --env-file {env_file} (which sets HARNESS_DB) name different databases: "
                "drop --db to use the file's, or change HARNESS_DB in the file"
            )
        url = ""
    else:
        url = absolute_db_url(db_url or default_db_url(), base)
        if _has_password(url):
            # The command line lands in the crontab or a unit file (and `ps`): a password stays in the
            # env file, which the scheduled command sources and only its owner should read.
            raise HarnessError(
                "--db: the database URL holds a password, which would be written in plain text "
                "into the schedule: put HARNESS_DB=<url> in an --env-file (chmod 600) instead"
            )
    return Schedule(
        name=name,
        cron=cron,
        plan_path=str(Path(plan_path).expanduser().resolve()),
        db_url=url,
        workdir=str(base),
        out_dir=str(out),
        log_path=str(log),
        tag=tag,
        env_file=env,
        python=python or sys.executable,
        batch_wait_s=batch_wait_s,
    )


def _has_password(url: str) -> bool:
    from sqlalchemy.engine import make_url

    return bool(make_url(url).password)


def _env_file_sets(path: Path, variable: str) -> bool:
    return _env_file_value(path, variable) is not None


def _env_file_value(path: Path, variable: str) -> str | None:
    """The value an env file gives `variable` (its last assignment, shell quotes removed), or None."""
    text = path.read_text(encoding="utf-8", errors="replace")
    found = re.findall(rf"^\s*(?:export\s+)?{re.escape(variable)}=(.*)$", text, re.M)
    if not found:
        return None
    try:
        words = shlex.split(found[-1], comments=True)
    except ValueError:  # unbalanced quotes: the shell will complain at run time; compare it as written
        return found[-1].strip()
    return words[0] if words else ""


def key_variables(plan_path: str) -> list[str]:
    """The environment variables the plan reads its API keys from."""
    from harness.plan import load_plan

    plan = load_plan(plan_path)
    return sorted({m.api_key_env for m in plan.models if m.api_key_env})


def env_file_warnings(schedule: Schedule) -> list[str]:
    """What will go wrong at run time that can be seen now: keys the scheduled run will not have."""
    notes = []
    wanted = key_variables(schedule.plan_path)
    if schedule.env_file is None:
        if wanted:
            notes.append(
                f"the plan reads {', '.join(wanted)} from the environment, which cron and systemd do not "
                f"pass on: give --env-file FILE with {wanted[0]}=... lines"
            )
        return notes
    path = Path(schedule.env_file)
    missing = [v for v in wanted if not _env_file_sets(path, v)]
    if missing:
        notes.append(f"--env-file {path} does not set {', '.join(missing)}, which the plan needs")
    if path.stat().st_mode & 0o077:
        notes.append(f"--env-file {path} can be read by other users: chmod 600 {shlex.quote(str(path))}")
    return notes


def off_peak_notes(schedule: Schedule, now: datetime | None = None) -> list[str]:
    """For each model with off-peak prices (DeepSeek's hours) that the schedule starts outside of,
    the `--at` (local time) that would start the run inside its window."""
    from harness.plan import load_plan

    minutes, hours = parse_cron(schedule.cron)[:2]
    if len(minutes) != 1 or len(hours) != 1:
        return []  # several start times a day: no one start to judge
    local = (now or datetime.now()).astimezone()
    start = local.replace(hour=next(iter(hours)), minute=next(iter(minutes)), second=0, microsecond=0)
    notes = []
    for model in load_plan(schedule.plan_path).models:
        off = model.price.off_peak
        if off is None or model.batch or off.covers(start):
            continue
        begin = start.astimezone(timezone.utc).replace(hour=off.span()[0] // 60, minute=off.span()[0] % 60)
        at = begin.astimezone(local.tzinfo).strftime("%H:%M")
        notes.append(
            f"model '{model.name}' is {off.discount:.0%} cheaper {off.hours} UTC (off-peak); this schedule "
            f"starts at {start:%H:%M} local time ({start.astimezone(timezone.utc):%H:%M} UTC), outside it: "
            f"--at {at} starts in the window"
        )
    return notes


# --------------------------------------------------------------------------- crontab


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str  # cron | systemd
    when: str  # the cron expression
    plan: str
    where: str  # "crontab" or the timer file


def crontab_available() -> bool:
    return shutil.which("crontab") is not None


def _crontab(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("crontab")
    if exe is None:
        raise HarnessError(
            "no `crontab` command on this machine: use --systemd for a systemd user timer, or "
            "--print to see the line and install it yourself"
        )
    return subprocess.run([exe, *args], input=stdin, capture_output=True, text=True, timeout=30)


def read_crontab() -> str:
    proc = _crontab("-l")
    if proc.returncode != 0:
        if "no crontab" in (proc.stderr or "").lower():
            return ""
        raise HarnessError(f"crontab -l failed: {(proc.stderr or proc.stdout).strip() or proc.returncode}")
    return proc.stdout


def write_crontab(text: str) -> None:
    proc = _crontab("-", stdin=text)
    if proc.returncode != 0:
        raise HarnessError(f"crontab - failed: {(proc.stderr or proc.stdout).strip() or proc.returncode}")


def _entry_name(line: str) -> str | None:
    if line.lstrip().startswith("#"):
        return None  # a commented-out line is not a live entry
    m = _MARKER_RE.search(line)
    return m.group(1) if m else None


def _plan_of(command: str) -> str:
    m = re.search(r"-m harness run ('[^']*'|\S+)", command)
    if not m:
        return ""
    try:
        return shlex.split(m.group(1))[0]
    except ValueError:
        return m.group(1)


def install_cron(schedule: Schedule) -> bool:
    """Add the entry to the user's crontab (replacing one of the same name); True if it replaced one."""
    current = read_crontab()
    lines = current.splitlines()
    kept = [line for line in lines if _entry_name(line) != schedule.name]
    kept.append(schedule.cron_line())
    write_crontab("\n".join(kept) + "\n")
    Path(schedule.log_path).parent.mkdir(parents=True, exist_ok=True)
    return len(kept) - 1 != len(lines)


def cron_entries() -> list[Entry]:
    out = []
    for line in read_crontab().splitlines():
        name = _entry_name(line)
        if name:
            when = " ".join(line.split()[:5])
            out.append(Entry(name, "cron", when, _plan_of(line), "crontab"))
    return out


def remove_cron(name: str) -> bool:
    current = read_crontab()
    lines = current.splitlines()
    kept = [line for line in lines if _entry_name(line) != name]
    if len(kept) == len(lines):
        return False
    write_crontab("\n".join(kept) + ("\n" if kept else ""))
    return True


# --------------------------------------------------------------------------- systemd


def systemd_dir() -> Path:
    """~/.config/systemd/user ($XDG_CONFIG_HOME when set, else $HOME/.config)."""
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path(os.environ.get("HOME") or Path.home()) / ".config")
    return Path(config) / "systemd" / "user"


def install_systemd(schedule: Schedule) -> tuple[Path, Path]:
    timer_text = schedule.systemd_timer()  # validates the calendar before anything is written
    d = systemd_dir()
    d.mkdir(parents=True, exist_ok=True)
    service = d / f"{schedule.unit_name()}.service"
    timer = d / f"{schedule.unit_name()}.timer"
    service.write_text(schedule.systemd_service(), encoding="utf-8")
    timer.write_text(timer_text, encoding="utf-8")
    Path(schedule.log_path).parent.mkdir(parents=True, exist_ok=True)
    return service, timer


def systemd_entries() -> list[Entry]:
    d = systemd_dir()
    out = []
    if not d.is_dir():
        return out
    for timer in sorted(d.glob("harness-*.timer")):
        text = timer.read_text(encoding="utf-8", errors="replace")
        m = re.search(r"^#\s*harness-schedule:(\S+)", text, re.M)
        if not m:
            continue
        cron = re.search(r"^# cron: (.+)$", text, re.M)
        service = timer.with_suffix(".service")
        plan = _plan_of(service.read_text(encoding="utf-8", errors="replace")) if service.is_file() else ""
        out.append(Entry(m.group(1), "systemd", cron.group(1).strip() if cron else "", plan, str(timer)))
    return out


def remove_systemd(name: str) -> list[Path]:
    """Delete this schedule's unit files (only files carrying its marker) and its enable link."""
    d = systemd_dir()
    removed = []
    for path in (d / f"harness-{name}.timer", d / f"harness-{name}.service"):
        if path.is_file() and f"{MARKER}{name}" in path.read_text(encoding="utf-8", errors="replace").splitlines():
            path.unlink()
            removed.append(path)
    link = d / "timers.target.wants" / f"harness-{name}.timer"
    if removed and (link.is_symlink() or link.exists()):
        link.unlink()
        removed.append(link)
    return removed


def list_schedules() -> list[Entry]:
    entries = cron_entries() if crontab_available() else []
    return entries + systemd_entries()
