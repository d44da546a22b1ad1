"""Shared fixtures: the loopback fake OpenAI server, temporary databases, the shared datasets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))  # so tests can `import fakeserver`

from fakeserver import Faults, FakeOpenAIServer, ServerState  # noqa: E402

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
    from harness.suite.prompt import PromptBuilder
    from harness.suite import load_suite

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
