"""A suite of sums and plans of one fake-server model sent through the Batch API (the batch tests, its benchmark)."""

from __future__ import annotations

import json

import yaml

N_ITEMS = 500
WRONG_EVERY = 7  # the responder answers every 7th item wrongly, so scores are not all 1
PRICE = {"input": 2.0, "output": 8.0}


def write_suite(tmp_path, n=N_ITEMS):
    """A suite of n sums (written here, no dataset), graded by the numeric grader."""
    folder = tmp_path / "sums"
    folder.mkdir(exist_ok=True)
    (folder / "suite.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "sums",
                "family": "math",
                "version": 1,
                "data": "items.jsonl",
                "reference_field": "answer",
                "template": "prompt.j2",
                "grader": {"name": "numeric"},
                "generation": {"max_tokens": 16},
            }
        )
    )
    (folder / "prompt.j2").write_text("What is {{ a }} + {{ b }}?")
    with open(folder / "items.jsonl", "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"sum/{i}", "a": i, "b": 3 * i, "answer": str(4 * i)}) + "\n")
    return str(folder)


def sums_responder(model, messages):
    text = messages[-1]["content"]
    a, b = (int(x) for x in text.removeprefix("What is ").rstrip("?").split(" + "))
    return f"The answer is {a + b + (1 if a % WRONG_EVERY == 0 else 0)}."


def write_plan(tmp_path, server, *, batch=True, price=None, name="p", n=N_ITEMS, **model_extra):
    model = {
        "provider": "openai",
        "base_url": server.base_url,
        "model": "fake-batch",
        "concurrency": 16,
        "max_attempts": 3,
        "price": price or {**PRICE, "batch_discount": 0.5},
        **model_extra,
    }
    if batch is not None:
        model["batch"] = batch
    plan = {"name": name, "models": {"m": model}, "suites": [write_suite(tmp_path, n)]}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path
