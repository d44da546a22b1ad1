"""Helpers shared by the check, recommendation and schedule tests (and the weekly demo): plans of
fake-server models whose right and wrong answers are chosen item by item, week after week."""

from __future__ import annotations

from pathlib import Path

import yaml
from conftest import oracle_responder

SUITE = "math-word"


def item_ids(suite: str = SUITE, n: int | None = None) -> list[str]:
    """The ids a plan's `{suite: {limit: n}}` runs (its fair sample), in file order."""
    from harness.plan import SuiteRef
    from harness.suite import load_suite

    return [item.id for item in load_suite(SuiteRef(name=suite, limit=n)).items()]


class WeeklyResponder:
    """Answers every item right, except `wrong[model]` item ids; `filler[model]` words are prepended
    (a verbose model: same answers, more tokens)."""

    def __init__(self, suites=(SUITE,)):
        self.suites = tuple(suites)
        self.wrong: dict[str, set[str]] = {}
        self.filler: dict[str, int] = {}
        self._oracles: dict[frozenset, object] = {}

    def _oracle(self, wrong: set[str]):
        key = frozenset(wrong)
        if key not in self._oracles:
            self._oracles[key] = oracle_responder(self.suites, wrong=set(wrong))
        return self._oracles[key]

    def __call__(self, model: str, messages: list[dict]) -> str:
        text = self._oracle(self.wrong.get(model, set()))(model, messages)
        words = self.filler.get(model, 0)
        return ("Let me think about this carefully. " * (words // 6 + 1)).strip() + "\n" + text if words else text


def write_plan(path: Path, server, models: dict[str, dict], *, name: str = "weekly-test", suites=None, **extra) -> Path:
    """A plan of fake-server models: name -> extra model settings (price, model, ...)."""
    spec = {}
    for model, opts in models.items():
        spec[model] = {
            "provider": "openai",
            "base_url": server.base_url,
            "model": model,
            "concurrency": 4,
            "max_attempts": 2,
            "timeout_s": 20,
            **opts,
        }
    plan = {"name": name, "models": spec, "suites": suites or [{SUITE: {"limit": 30}}], **extra}
    path.write_text(yaml.safe_dump(plan, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def run_plan(plan_path: Path, db_url: str, *, tag: str = "", new: bool = False, status: str = "finished") -> str:
    """Run (or resume) the plan like `harness run` does; returns the run id.

    `status`: how the run must end ("failed" when a model is stopped for fatal errors, e.g. a revoked key)."""
    from harness.engine.runs import execute_plan
    from harness.plan import load_plan
    from harness.store import Store

    result = execute_plan(load_plan(plan_path), Store(db_url), tag=tag, new=new)
    assert result.status == status, result
    return result.run_id


def invoke(*args, ok_codes=(0,)):
    """Run the harness CLI in-process; the exit code must be one of ok_codes."""
    from click.testing import CliRunner

    from harness.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code in ok_codes, (result.output, result.exception)
    return result
