"""The report's traffic page (pairwise and classification) in headless Chromium: rendered, charts loaded, escaped."""

import json
import re

import yaml
from support.browser import check_page as _check_page
from support.browser import screenshot_dir as _screenshot_dir
from support.judges import answer, traffic_responder

EVIL_LABEL = "<img src=x onerror=\"document.title='PWNED'\">"


def _traffic_run(tmp_path, fake_server, db_url, monkeypatch):
    from harness.engine.runs import execute_plan
    from harness.plan import load_plan
    from harness.store import Store
    from harness.traffic.importer import import_log

    n = 24
    with open(tmp_path / "chat.jsonl", "w") as fh:
        for i in range(n):
            row = {"messages": [{"role": "user", "content": f"Ticket #{i}: summarise"}], "response": answer(i, 5)}
            fh.write(json.dumps(row) + "\n")
    labels = ["billing", "bug", EVIL_LABEL]
    with open(tmp_path / "intent.jsonl", "w") as fh:
        for i in range(n):
            row = {"messages": [{"role": "user", "content": f"Case {i}: which team?"}], "label": labels[i % 3]}
            fh.write(json.dumps(row) + "\n")
    import_log(tmp_path / "chat.jsonl", "summaries", tmp_path / "suites")
    import_log(tmp_path / "intent.jsonl", "intent", tmp_path / "suites")
    monkeypatch.setenv("HARNESS_SUITES_PATH", str(tmp_path / "suites"))
    answers = {
        "qwen3-8b": {i: answer(i, 6 if i % 2 else 5) for i in range(n)},
        "glm-4-9b": {i: answer(i, 4 if i % 3 == 0 else 5, padding=40) for i in range(n)},
    }
    chat = traffic_responder(answers, {"qwen-judge": "truthful", "gpt-judge": "position"})

    def respond(model, messages):
        text = messages[-1]["content"]
        case = re.search(r"Case (\d+)", text)
        if case:
            i = int(case.group(1))
            return labels[i % 3] if (i % 4 or model == "qwen3-8b") else "bug"
        return chat(model, messages)

    fake_server.state.responder = respond
    endpoint = {"provider": "openai", "base_url": fake_server.base_url, "price": {"input": 0.01, "output": 0.01}}
    plan = {
        "models": {m: endpoint for m in answers},
        "judges": {"qwen-judge": endpoint, "gpt-judge": endpoint},
        "suites": ["summaries", "intent"],
    }
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    store = Store(db_url)
    return store, execute_plan(load_plan(tmp_path / "plan.yaml"), store).run_id


def test_traffic_page_renders_in_chromium(browser, tmp_path, fake_server, db_url, monkeypatch):  # noqa: F811
    from harness.report import write_report

    store, run_id = _traffic_run(tmp_path, fake_server, db_url, monkeypatch)
    index = write_report(store, [run_id], tmp_path / "site")
    page = index.parent / "traffic.html"
    assert 'href="traffic.html"' in index.read_text()
    state = _check_page(browser, page)
    assert len(state["images"]) == 1 + 2  # win/tie/loss, one confusion matrix per model
    text = state["text"]
    assert "Candidates against the incumbent" in text and "Classification" in text
    assert EVIL_LABEL in text  # shown as text, never run
    assert "self-preference" in text  # qwen-judge judges qwen3-8b
    browser.screenshot(_screenshot_dir(tmp_path) / "report-traffic.png")
