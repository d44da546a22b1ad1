"""Shared fixtures: the loopback fake OpenAI server, temporary databases (SQLite, a throwaway PostgreSQL), the shared datasets."""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))  # so tests can `import fakeserver`

from fakeserver import FakeOpenAIServer, Faults, ServerState  # noqa: E402

SHARED_DATASETS = REPO.parent / "shared" / "datasets"


def shared_dataset(name: str) -> Path:
    """Path to a real benchmark in ../shared/datasets, or skip the test saying why."""
    path = SHARED_DATASETS / name
    if not path.exists():
        pytest.skip(f"../shared/datasets/{name} is absent: the real benchmark files are not available here")
    return path


@pytest.fixture
def fake_server():
    """Start a fake OpenAI-compatible server on 127.0.0.1 (random port); yields the server."""
    server = FakeOpenAIServer(ServerState(faults=Faults()))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'harness.db'}"


def oracle_responder(suite_names, wrong: set[str] | None = None, fallback: str = "I do not know."):
    """A responder answering every item of the named bundled suites with its reference response.

    `wrong` lists item ids to answer with the fallback instead, so a test knows the exact score.
    """
    from harness.suite import load_suite
    from harness.suite.prompt import PromptBuilder

    answers = {}
    for name in suite_names:
        suite = load_suite(name)
        builder = PromptBuilder(suite)
        for item in suite.items():
            prompt = builder.build(item)
            last = prompt.messages[-1].content
            answers[last] = fallback if wrong and item.id in wrong else builder.reference_response(item)

    def respond(model, messages):
        return answers.get(messages[-1]["content"], fallback)

    return respond


START_TIMEOUT_S = 60
PG_PORT = 5432  # only names the socket file, inside our own folder: never collides with another server


# -- the throwaway server ------------------------------------------------------------------------


def _pg_bindir() -> str | None:
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


def _url(socket_dir: str, database: str) -> str:
    return f"postgresql+psycopg://postgres@/{database}?host={socket_dir}&port={PG_PORT}"


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server for this session on a unix socket in a temporary folder; yields
    (admin engine, socket folder). Stopped and deleted at the end, whatever happened."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip(
            "psycopg is not installed: pip install 'psycopg[binary]' (in the test extra: pip install -e '.[test]')"
        )
    bindir = _pg_bindir()
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
        admin = create_engine(_url(root, "postgres"), isolation_level="AUTOCOMMIT")
        try:
            yield admin, root
        finally:
            admin.dispose()
    finally:
        if started:
            subprocess.run([pg_ctl, "-D", data, "-m", "immediate", "-w", "-t", "30", "stop"], **{**run, "timeout": 40})
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server) -> str:
    """An empty database of its own on the session's server (the server is deleted at the end)."""
    admin, socket_dir = pg_server
    name = f"harness_{secrets.token_hex(6)}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    return _url(socket_dir, name)
