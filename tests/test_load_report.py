"""The load page and the run page's "under load" join, rendered in headless Chromium: charts load,
model names a server or plan supplied stay text, no script runs."""

from __future__ import annotations

import pytest
from support.browser import check_page, screenshot_dir
from support.report_data import EVIL_MODEL, LOAD_PLAN, make_load_run, make_run

from harness.report import write_report
from harness.store import Store

pytestmark = pytest.mark.browser

MODELS = {"fast-model": (0.82, 0.2, 0.6, 0.5), EVIL_MODEL: (0.64, 0.05, 0.1, 0.3)}


def test_load_page_and_joined_run_page_render_in_chromium(browser, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'h.db'}")
    run_id = make_run(store, plan_name=LOAD_PLAN, models=MODELS, suites=("math-word",), n_items=30)
    load_id = make_load_run(store)
    index = write_report(store, [run_id], tmp_path / "site")
    store.close()
    shots = screenshot_dir(tmp_path)

    state = check_page(browser, index)
    assert "Under load" in state["text"] and EVIL_MODEL in state["text"]
    assert "at 128 concurrent users, p99" in state["text"] and "on math-word" in state["text"]
    browser.js("document.getElementById('load').scrollIntoView()")
    browser.screenshot(shots / "report-run-under-load.png")

    page = tmp_path / "site" / "load" / f"{load_id}.html"
    state = check_page(browser, page)
    assert len(state["images"]) == 2  # the curves against load, the TTFT distributions
    assert EVIL_MODEL in state["text"] and "Capacity under the SLO: 32 concurrent users" in state["text"]
    browser.screenshot(shots / "report-load.png")
    for name in ("report-run-under-load.png", "report-load.png"):
        assert (shots / name).read_bytes().startswith(b"\x89PNG")
