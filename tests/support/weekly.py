"""Plans of fake-server models whose right and wrong answers are chosen item by item, week after week:
for the check, recommendation and schedule tests (and the weekly demo benchmark)."""

from __future__ import annotations

from pathlib import Path

from support.plans import fake_model, oracle_responder, write_plan_file

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
    spec = {
        model: {**fake_model(server, model, concurrency=4, max_attempts=2, timeout_s=20), **opts}
        for model, opts in models.items()
    }
    return write_plan_file(path, spec, suites or [{SUITE: {"limit": 30}}], name=name, **extra)
