"""Classification workloads: the label grader in a real run, macro-F1 and the confusion matrix, JSON validity, cost."""

import json
import re

import numpy as np
import pytest
import yaml

from harness.graders import grade
from harness.records import Item


def test_label_grader_plain_and_json():
    item = Item(id="1", fields={"request": {"response_format": {"type": "json_object"}}}, reference="spam")
    options = {"labels": ["spam", "ham"]}
    assert grade("label", '{"label": "SPAM"}', item, options).passed
    g = grade("label", "spam, surely", item, options)
    assert not g.passed and g.reason.startswith("json invalid")
    plain = Item(id="2", fields={"request": {}}, reference="ham")
    assert grade("label", "**Ham.**", plain, options).passed
    g = grade("label", "maybe", plain, options)
    assert not g.passed and "not one of the labels" in g.reason and g.extracted == ""


def _macro_f1(gold, pred, labels):
    """Independent: F1 per class from counts, averaged."""
    f1s = []
    for c in labels:
        tp = sum(g == c and p == c for g, p in zip(gold, pred))
        fp = sum(g != c and p == c for g, p in zip(gold, pred))
        fn = sum(g == c and p != c for g, p in zip(gold, pred))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(f1s))


def test_a_classification_run_gives_macro_f1_confusion_json_validity_and_cost(
    tmp_path, fake_server, db_url, monkeypatch
):
    from harness.engine.runs import execute_plan
    from harness.plan import load_plan
    from harness.store import Store
    from harness.traffic.importer import import_log
    from harness.traffic.labels import label_results

    labels = ["billing", "bug", "other"]
    gold = {i: labels[i % 3] for i in range(60)}
    with open(tmp_path / "log.jsonl", "w") as fh:
        for i in range(60):
            row = {
                "messages": [{"role": "user", "content": f"Ticket {i}: classify"}],
                "max_tokens": 20,
                "label": gold[i],
                "metadata": {"route": "intent"},
            }
            if i % 2:
                row["response_format"] = {"type": "json_object"}
            fh.write(json.dumps(row) + "\n")
    import_log(tmp_path / "log.jsonl", "intent", tmp_path / "suites")
    monkeypatch.setenv("HARNESS_SUITES_PATH", str(tmp_path / "suites"))
    said = {}

    def respond(model, messages):
        i = int(re.search(r"Ticket (\d+)", messages[-1]["content"]).group(1))
        wants_json = i % 2 == 1
        label = gold[i] if i % 5 else ("bug" if gold[i] != "bug" else "billing")  # every 5th wrong
        if i % 7 == 3:
            said[i] = None
            return "I think it is a billing thing" if not wants_json else "{label: billing"  # no label / bad JSON
        said[i] = label
        return json.dumps({"label": label}) if wants_json else label

    fake_server.state.responder = respond
    plan = {
        "models": {
            "cheap": {"provider": "openai", "base_url": fake_server.base_url, "price": {"input": 0.01, "output": 0.01}}
        },
        "suites": ["intent"],
    }
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    store = Store(db_url)
    execute_plan(load_plan(tmp_path / "plan.yaml"), store)
    _, (r,) = label_results(store)
    pred = [said[i] or "(other)" for i in range(60)]
    truth = [gold[i] for i in range(60)]
    assert r.metrics.macro_f1 == pytest.approx(_macro_f1(truth, pred, labels))
    assert r.metrics.accuracy == pytest.approx(np.mean([p == g for p, g in zip(pred, truth)]))
    assert r.metrics.labels == ("billing", "bug", "other", "(other)")
    assert sum(map(sum, r.metrics.matrix)) == 60
    bad_json = sum(1 for i in range(60) if i % 2 == 1 and i % 7 == 3)
    assert (r.json_requests, r.json_valid) == (30, 30 - bad_json)
    assert r.cost_per_1000 > 0 and r.errors == 0


def test_macro_f1_across_runs_flags_a_drop(tmp_path, fake_server, db_url, monkeypatch):
    import subprocess
    import sys

    from harness.engine.runs import execute_plan
    from harness.plan import load_plan
    from harness.store import Store
    from harness.traffic.importer import import_log

    labels = ["a", "b", "c"]
    with open(tmp_path / "log.jsonl", "w") as fh:
        for i in range(90):
            fh.write(
                json.dumps({"messages": [{"role": "user", "content": f"Ticket {i}"}], "label": labels[i % 3]}) + "\n"
            )
    import_log(tmp_path / "log.jsonl", "cls", tmp_path / "suites")
    monkeypatch.setenv("HARNESS_SUITES_PATH", str(tmp_path / "suites"))
    wrong_every = {"k": 10}

    def respond(model, messages):
        i = int(re.search(r"Ticket (\d+)", messages[-1]["content"]).group(1))
        return labels[(i + (i % wrong_every["k"] == 0)) % 3]

    fake_server.state.responder = respond
    plan = {"models": {"m": {"provider": "openai", "base_url": fake_server.base_url}}, "suites": ["cls"]}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    store = Store(db_url)
    execute_plan(load_plan(tmp_path / "plan.yaml"), store)
    execute_plan(load_plan(tmp_path / "plan.yaml"), store, new=True)  # the same answers: no regression
    cmd = [sys.executable, "-m", "harness", "labels", "--db", db_url, "--against-previous", "--fail-on-regression"]
    same = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=120)
    assert same.returncode == 0, same.stderr
    (change,) = json.loads(same.stdout)["results"]
    assert change["diff"] == 0 and not change["regression"] and change["n"] == 90
    wrong_every["k"] = 2  # half the answers wrong now
    execute_plan(load_plan(tmp_path / "plan.yaml"), store, new=True)
    worse = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert worse.returncode == 1 and "▼ regression" in worse.stdout
