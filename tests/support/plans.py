"""Plans and suites written by tests: a plan file from models and suites, a synthetic echo suite, and
responders for the fake server that answer bundled suites right (or wrong, item by item)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml


def write_plan_file(path: Path, models: dict[str, dict], suites: list, *, name: str | None = None, **extra) -> Path:
    """A plan file: `models` maps names to settings, `suites` is the plan's list; extra plan keys as given."""
    plan = {"name": name or path.stem, "models": models, "suites": suites, **extra}
    path.write_text(yaml.safe_dump(plan, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def fake_model(server, model: str, **settings) -> dict:
    """Settings of a model answered by the fake OpenAI server `server`."""
    return {"provider": "openai", "base_url": server.base_url, "model": model, **settings}


def run_plan(plan_path: Path, db_url: str, *, tag: str = "", new: bool = False, status: str = "finished") -> str:
    """Run (or resume) the plan like `harness run` does; returns the run id.

    `status`: how the run must end ("failed" when a model is stopped for fatal errors, e.g. a revoked key)."""
    from harness.engine.runs import execute_plan
    from harness.plan import load_plan
    from harness.store import Store

    result = execute_plan(load_plan(plan_path), Store(db_url), tag=tag, new=new)
    assert result.status == status, result
    return result.run_id


def echo_suite(root: Path, n: int, name: str = "echo") -> Path:
    """A suite of n items whose prompt ends with its answer: the echo responder answers it right."""
    folder = root / "suites" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "suite.yaml").write_text(
        f"name: {name}\ndescription: synthetic\nfamily: reasoning\nversion: 1\ndata: items.jsonl\nid_field: id\n"
        'reference_field: answer\nreference_response: "{{ answer }}"\ntemplate: prompt.j2\n'
        "grader: {name: exact}\ngeneration: {max_tokens: 16, temperature: 0.0}\n"
    )
    (folder / "prompt.j2").write_text("Item {{ id }}. Repeat the last line.\n{{ answer }}\n")
    with open(folder / "items.jsonl", "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"q{i}", "answer": f"word-{i}"}) + "\n")
    return root / "suites"


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
