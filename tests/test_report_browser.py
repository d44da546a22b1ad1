"""The report in a real headless Chromium (via chromedriver): pages render cleanly, injected scripts never run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.browser import check_page, screenshot_dir
from support.report_data import EVIL_MODEL, EVIL_MODELS, EVIL_PLAN, EVIL_SUITE, XSS_COMPLETION, make_run

from harness.report import pages, write_report
from harness.store import Store

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def evil_report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser-site")
    store = Store(f"sqlite:///{tmp / 'h.db'}")
    run_id = make_run(
        store, plan_name=EVIL_PLAN, models=EVIL_MODELS, suites=("math-word", EVIL_SUITE), n_items=40, payload=True
    )
    index = write_report(store, [run_id], tmp / "site")
    store.close()
    return run_id, index, tmp / "site"


def test_report_renders_in_chromium_and_injected_scripts_do_not_run(browser, evil_report, tmp_path):
    run_id, index, out = evil_report
    shots = screenshot_dir(tmp_path)

    state = check_page(browser, index)
    assert state["leaderboards"] == 4  # 2 suites x 2 models
    assert len(state["images"]) == 3  # accuracy, cost against accuracy, latency
    assert EVIL_MODEL in state["text"] and EVIL_SUITE in state["text"]  # shown as text
    browser.screenshot(shots / "report-run.png")

    cell = out / run_id / pages.cell_folder(EVIL_MODEL, "math-word")
    state = check_page(browser, cell / "all-1.html")
    assert state["articles"] == 40
    assert XSS_COMPLETION in state["text"], "the payload is visible as text"
    browser.js("document.querySelectorAll('details').forEach(d => d.open = true)")
    assert browser.title() != "PWNED"
    browser.screenshot(shots / "report-samples.png", full_height=False)

    for page in (
        next((out / run_id / "compare").glob("*-1.html")),
        cell / "wrong-1.html",
        out / "index.html",
        out / "trends" / f"{pages.slug(EVIL_PLAN)}.html",
    ):
        state = check_page(browser, page)
        assert EVIL_MODEL in state["text"] or EVIL_PLAN in state["text"] or "evil-model" in state["text"]
    browser.screenshot(shots / "report-trend.png")
    for name in ("report-run.png", "report-samples.png", "report-trend.png"):
        assert (shots / name).read_bytes().startswith(b"\x89PNG")


def test_csp_blocks_a_script_that_slipped_into_a_page(browser, evil_report, tmp_path):
    """Defence in depth: even raw <script> markup in a report page (say, a template bug) is not run."""
    run_id, index, _ = evil_report
    page = tmp_path / "tampered.html"
    page.write_text(
        index.read_text("utf-8").replace("</body>", "<script>document.title='PWNED'</script></body>"), encoding="utf-8"
    )
    browser.get(page.as_uri())
    assert browser.title() != "PWNED"
    messages = " ".join(e.get("message", "") for e in browser.browser_log())
    assert "Content Security Policy" in messages


def _run_plan(tmp_path: Path, name: str, models: dict, suites: list, db: str, status: str = "finished") -> str:
    import yaml

    from harness.engine.runs import execute_plan
    from harness.plan import load_plan

    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "models": models, "suites": suites}))
    result = execute_plan(load_plan(path), Store(db), new=True)
    assert result.status == status
    return result.run_id


def test_one_free_replayed_model_and_a_model_that_never_answered(browser, tmp_path, fake_server):
    """The pages of the issue's cases: one model, nothing spent, one run, code and worked-solution
    references; and a model whose every request failed (HTTP 401) beside a healthy one."""
    from support.plans import oracle_responder

    from harness.suite import load_suite
    from harness.suite.prompt import PromptBuilder

    shots = screenshot_dir(tmp_path)
    db = f"sqlite:///{tmp_path / 'h.db'}"
    lines = []
    for suite_name in ("code-functions", "math-word"):
        suite = load_suite(suite_name)
        builder = PromptBuilder(suite)
        lines += [
            json.dumps({"task_id": i.id, "completion": builder.reference_response(i)}) for i in list(suite.items())[:3]
        ]
    (tmp_path / "replayed.jsonl").write_text("\n".join(lines) + "\n")
    solo = _run_plan(
        tmp_path,
        "solo",
        {"replayed": {"provider": "samples", "path": str(tmp_path / "replayed.jsonl")}},
        [{"code-functions": {"first": 3}}, {"math-word": {"first": 3}}],
        db,
    )
    index = write_report(Store(db), [solo], tmp_path / "site")
    state = check_page(browser, index)
    text = state["text"]
    assert "nothing to compare" in text and "0 comparisons" not in text
    assert "nothing was spent" in text
    assert len(state["images"]) == 1  # accuracy only: no cost chart at $0, no latency chart for untimed answers
    browser.screenshot(shots / "solo-run.png")
    trend = check_page(browser, tmp_path / "site" / "trends" / f"{pages.slug('solo')}.html")
    assert "One run so far" in trend["text"] and not trend["images"]

    site = tmp_path / "site" / solo
    code_page = site / pages.cell_folder("replayed", "code-functions") / "all-1.html"
    check_page(browser, code_page)
    blocks = browser.js("""return Array.from(document.querySelectorAll('article.sample dd pre.code'))
                           .map(p => [p.innerText, getComputedStyle(p).whiteSpace]);""")
    assert blocks and all("\n" in t and ws.startswith("pre") for t, ws in blocks)  # code keeps its lines
    browser.screenshot(shots / "solo-code-samples.png", full_height=False)
    math_page = site / pages.cell_folder("replayed", "math-word") / "all-1.html"
    check_page(browser, math_page)
    refs = browser.js("""return Array.from(document.querySelectorAll('article.sample dd'))
                         .filter(d => d.previousElementSibling.innerText == 'Reference').map(d => d.innerText);""")
    assert len(refs) == 3 and all(r.strip().lstrip("-").replace(".", "").isdigit() for r in refs), refs
    samples_text = browser.js("return document.body.innerText")
    assert "latency —" in samples_text and "0.00 s" not in samples_text

    # healthy against a revoked key: never "★ best", routed to healthy, the reason shown.
    from dataclasses import replace

    fake_server.state.responder = oracle_responder(["math-word"])
    fake_server.state.faults = replace(fake_server.state.faults, unauthorized_models=frozenset({"broken"}))
    spec = {
        name: {
            "provider": "openai",
            "base_url": fake_server.base_url,
            "model": name,
            "max_attempts": 1,
            "price": {"output": price},
        }
        for name, price in (("healthy", 1.0), ("broken", 0.1))
    }
    duel = _run_plan(
        tmp_path, "duel", spec, [{"math-word": {"limit": 10}}], db, status="failed"
    )  # a revoked key is fatal
    index = write_report(Store(db), [duel], tmp_path / "site2")
    state = check_page(browser, index)
    best = browser.js("""return Array.from(document.querySelectorAll('table.leaderboard tr.best td.name'))
                         .map(td => td.innerText);""")
    assert len(best) == 1 and best[0].startswith("healthy")
    assert "failed:" in state["text"] and "401" in state["text"]
    browser.js("document.querySelectorAll('details').forEach(d => d.open = true)")
    routing = browser.js("return document.getElementById('routing').parentElement.innerText")
    assert "unavailable: stopped after fatal errors" in routing
    browser.screenshot(shots / "duel-run.png")
