"""Every shared fixture (and only fixtures): the loopback fake OpenAI server, databases (SQLite, a throwaway
PostgreSQL), headless Chromium. Helpers the tests share are in tests/support/."""

from __future__ import annotations

import secrets

import pytest
from support.fakeserver import FakeOpenAIServer, Faults, ServerState
from support.postgres import database_url, throwaway_server


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
def db_url(request, tmp_path) -> str:
    """A new empty database: SQLite in the test's folder, or PostgreSQL when a test is parametrized with
    `support.postgres.on_both_databases` (then once on each)."""
    if getattr(request, "param", "sqlite") == "postgresql":
        return request.getfixturevalue("pg_url")
    return f"sqlite:///{tmp_path / 'harness.db'}"


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server for this session (per test process); yields (admin engine, socket folder)."""
    with throwaway_server() as server:
        yield server


@pytest.fixture
def pg_url(pg_server) -> str:
    """An empty database of its own on the session's server (the server is deleted at the end)."""
    admin, socket_dir = pg_server
    name = f"harness_{secrets.token_hex(6)}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    return database_url(socket_dir, name)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium driven over WebDriver, one per test module; skips without Chromium/chromedriver."""
    from support.browser import WebDriver, find_executable

    chromium = find_executable("chromium", "chromium-browser", "google-chrome")
    chromedriver = find_executable("chromedriver")
    if not chromium or not chromedriver:
        pytest.skip("needs Chromium and chromedriver on PATH (Debian: apt-get install chromium chromium-driver)")
    tmp = tmp_path_factory.mktemp("chromium")
    driver = WebDriver(chromedriver, chromium, tmp / "profile", tmp / "chromedriver.log")
    yield driver
    driver.close()


@pytest.fixture(scope="module")
def ray_two_cpus(request):
    """A local Ray instance with two CPUs for the module's tests; the module's own functions travel by value."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]' (it is in the test extra)")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 << 20, logging_level="warning")
    ray.cloudpickle.register_pickle_by_value(request.module)
    try:
        yield
    finally:
        ray.shutdown()
