"""The report in a real headless Chromium (via chromedriver): pages render cleanly, injected scripts never run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.browser import WebDriver, check_page, screenshot_dir
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


# The issue-23 layout: the answer visible without scrolling, nothing that matters behind a horizontal scroll.
WIDE_MODELS = {
    "deepseek-v4-flash-2025-preview": (0.84, 0.07, 0.28, 0.9),
    "qwen3-8b-instruct": (0.70, 0.01, 0.01, 0.4),
    "glm-5-air-0711": (0.88, 0.6, 1.92, 1.6),
    "kimi-k2.5-thinking": (0.90, 0.6, 3.0, 3.0),
}


def _load_run(store: Store, plan: str, models: list[str]) -> str:
    """A stored load run of `plan`: every model at 1, 8 and 32 users, the slowest one missing the SLO."""
    from harness.report.load_page import STAGE_COLUMNS
    from harness.store import loads as results

    run = results.start_load_run(
        store,
        plan_name=plan,
        plan_path=f"evals/{plan}.yaml",
        tag="",
        profile={"slo": {"text": "latency_p99<=5s,error_rate<=1%"}},
    )
    for i, model in enumerate(models):
        for level in (1, 8, 32):
            stats = {key: 0.1 * (i + 1) * level**0.5 for key, _, _ in STAGE_COLUMNS}
            stats.update(concurrency=level, rate=None, requests=200, ok=199, error_rate=0.005 * i, goodput=0.98)
            failures = [
                f"{key} {stats[key]:.4g} > {limit:g}"
                for key, limit in (("latency_p99", 5), ("error_rate", 0.01))
                if stats[key] > limit
            ]
            misses = bool(failures)
            stats.update(meets_slo=not misses, slo_failures=failures)
            results.save_stage(store, run, model, level, stats, [], meets_slo=not misses, probe=False)
        results.save_model(store, run, model, model)
    results.finish_load_run(store, run)
    return run


def _layout(browser: WebDriver, page: Path) -> dict:
    check_page(browser, page)
    return browser.js("""
        const scrolls = Array.from(document.querySelectorAll('.scroll'))
          .filter(el => el.offsetParent !== null && !el.closest('details:not([open])'))
          .filter(el => el.scrollWidth > el.clientWidth + 1)
          .map(el => el.querySelector('table') ? el.querySelector('table').className || 'table' : 'div');
        const route = document.querySelector('table.route');
        const header = name => Array.from(document.querySelectorAll('th')).find(th => th.innerText.trim() == name);
        const right = name => { const th = header(name); return th ? th.getBoundingClientRect().right : null; };
        return {
          width: window.innerWidth, height: window.innerHeight, cut: scrolls,
          route_bottom: route ? route.getBoundingClientRect().bottom : null,
          route_rows: route ? route.querySelectorAll('tbody tr').length : 0,
          served_right: right('Served as'), p99_right: right('Latency p99'), goodput_right: right('Goodput'),
          slo_right: right('SLO'),
        };""")


def test_the_route_first_and_no_column_that_matters_cut_off_at_1400_px(browser, tmp_path):
    from datetime import datetime, timedelta

    shots = screenshot_dir(tmp_path)
    store = Store(f"sqlite:///{tmp_path / 'h.db'}")
    suites = ("math-word", "zh-mcq", "en-reasoning")
    start = datetime(2026, 11, 2, 6, 0)
    runs = [
        make_run(store, plan_name="gateway", models=WIDE_MODELS, suites=suites, n_items=40, seed=w, started_at=t)
        for w, t in enumerate((start, start + timedelta(days=7), start + timedelta(days=7, minutes=1)))
    ]
    load = _load_run(store, "gateway", list(WIDE_MODELS))
    index = write_report(store, runs, tmp_path / "site")
    store.close()
    browser.cmd("POST", "/window/rect", {"width": 1400, "height": 1000})
    site = tmp_path / "site"
    try:
        pages_ = {
            "run": index,
            "index": site / "index.html",
            "trend": site / "trends" / f"{pages.slug('gateway')}.html",
            "load": site / "load" / f"{load}.html",
        }
        seen = {}
        for name, page in pages_.items():
            seen[name] = _layout(browser, page)
            browser.screenshot(shots / f"route-{name}-1400.png", full_height=False)
        for name in ("run", "index", "trend"):
            got = seen[name]
            assert got["route_rows"] == len(suites), name
            assert got["route_bottom"] <= got["height"], f"{name}: the route is below the fold: {got}"
        for name, got in seen.items():
            assert got["cut"] == [], f"{name}: tables behind a horizontal scroll: {got['cut']}"
        assert seen["run"]["served_right"] <= seen["run"]["width"]
        for column in ("p99_right", "goodput_right", "slo_right"):
            assert seen["load"][column] is not None and seen["load"][column] <= seen["load"]["width"], seen["load"]
    finally:
        browser.cmd("POST", "/window/rect", {"width": 1280, "height": 1600})
