"""A throwaway PostgreSQL server for the store tests: initdb + pg_ctl, listening only on a unix socket in a
temporary folder, stopped and deleted at the end; skips saying what is missing without the binaries or psycopg."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

START_TIMEOUT_S = 60
PG_PORT = 5432  # only names the socket file, inside our own folder: never collides with another server


# -- the throwaway server ------------------------------------------------------------------------


def pg_bindir() -> str | None:
    """Where initdb and pg_ctl are: on PATH, else Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    if shutil.which("initdb") and shutil.which("pg_ctl"):
        return os.path.dirname(shutil.which("pg_ctl"))
    found = [d for d in glob.glob("/usr/lib/postgresql/*/bin") if os.path.exists(os.path.join(d, "initdb"))]
    found.sort(key=lambda d: int(d.split("/")[-2]) if d.split("/")[-2].isdigit() else 0)
    return found[-1] if found else None


def _server_user() -> dict:
    """subprocess arguments to run the server as: initdb refuses root, so as root use `postgres`."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        made = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if made.returncode != 0:
            pytest.skip(
                f"running as root and no 'postgres' user to run PostgreSQL as: useradd said {made.stderr.strip()[:200]}"
            )
        pw = pwd.getpwnam("postgres")
    return {"user": pw.pw_uid, "group": pw.pw_gid}


def database_url(socket_dir: str, database: str) -> str:
    return f"postgresql+psycopg://postgres@/{database}?host={socket_dir}&port={PG_PORT}"


@contextmanager
def throwaway_server():
    """A PostgreSQL server on a unix socket in a temporary folder; yields (admin engine, socket folder).
    Stopped and deleted at the end, whatever happened."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip(
            "psycopg is not installed: pip install 'psycopg[binary]' (in the test extra: pip install -e '.[test]')"
        )
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    from sqlalchemy import create_engine

    as_user = _server_user()
    root = tempfile.mkdtemp(prefix="harness-pg-", dir="/tmp" if os.path.isdir("/tmp") else None)
    if as_user:
        os.chown(root, as_user["user"], as_user["group"])
    data, log = os.path.join(root, "data"), os.path.join(root, "server.log")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}  # PGPORT, PGDATA... would redirect it
    run = dict(capture_output=True, text=True, timeout=START_TIMEOUT_S, cwd=root, env=env, **as_user)
    pg_ctl = os.path.join(bindir, "pg_ctl")
    started = False
    try:
        made = subprocess.run(
            [
                os.path.join(bindir, "initdb"),
                "-D",
                data,
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            **run,
        )
        assert made.returncode == 0, f"initdb failed: {made.stderr[-2000:]}"
        options = (
            f"-c listen_addresses='' -c unix_socket_directories={root} -c port={PG_PORT} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        start = subprocess.run(
            [pg_ctl, "-D", data, "-l", log, "-w", "-t", str(START_TIMEOUT_S), "-o", options, "start"], **run
        )
        started = True  # even a failed start may have left a server behind: always stop
        if start.returncode != 0:
            tail = Path(log).read_text(errors="replace")[-2000:] if os.path.exists(log) else ""
            pytest.fail(f"pg_ctl start failed: {start.stderr[-1000:]}\n{tail}")
        admin = create_engine(database_url(root, "postgres"), isolation_level="AUTOCOMMIT")
        try:
            yield admin, root
        finally:
            admin.dispose()
    finally:
        if started:
            subprocess.run([pg_ctl, "-D", data, "-m", "immediate", "-w", "-t", "30", "stop"], **{**run, "timeout": 40})
        shutil.rmtree(root, ignore_errors=True)


# A test that must hold on every store backend: `@on_both_databases` runs it once with `db_url` on SQLite
# and once on a throwaway PostgreSQL database (marked `postgres`, skipped saying why without the server).
on_both_databases = pytest.mark.parametrize(
    "db_url", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
