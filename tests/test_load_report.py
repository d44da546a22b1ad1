"""The load page and the run page's "under load" join, rendered in headless Chromium: charts load,
model names a server or plan supplied stay text, no script runs."""

from __future__ import annotations

import random

import test_report_browser
from test_report_browser import _check_page, _screenshot_dir
from test_report_data import EVIL_MODEL, make_run

from harness.load.requests import RequestResult
from harness.load.stats import StageTarget, stage_stats
from harness.report import write_report
from harness.store import Store
from harness.store import loads as results

PLAN = "load-join"
browser = test_report_browser.browser  # the module's Chromium fixture, shared here

MODELS = {"fast-model": (0.82, 0.2, 0.6, 0.5), EVIL_MODEL: (0.64, 0.05, 0.1, 0.3)}


def _stage(model_speed: float, users: int, rng: random.Random) -> list[RequestResult]:
    """Requests of a server whose TTFT grows once more than 32 users share it."""
    out = []
    queue = max(0.0, users / 32 - 1)
    for i in range(120):
        ttft = model_speed * (1 + queue) * rng.uniform(0.8, 1.3)
        latency = ttft + 0.02 * 50 * rng.uniform(0.9, 1.1)
        error = "429" if rng.random() < 0.002 * users / 8 else ""
        out.append(
            RequestResult(
                sent_at=i * latency / users,
                latency=None if error else latency,
                ttft=None if error else ttft,
                output_tokens=None if error else 50,
                input_tokens=None if error else 200,
                itl=[] if error else [0.02] * 49,
                error=error,
                elapsed=latency,
            )
        )
    return out


def make_load_run(store: Store) -> str:
    rng = random.Random(4)
    run_id = results.start_load_run(
        store, plan_name=PLAN, plan_path="evals/load.yaml", tag="", profile={"slo": {"text": "latency_p99<=3s"}}
    )
    for model, speed in (("fast-model", 0.3), (EVIL_MODEL, 0.8)):
        for index, users in enumerate((1, 8, 32, 128)):
            rs = _stage(speed, users, rng)
            stats = stage_stats(rs, StageTarget(users, None))
            results.save_stage(store, run_id, model, index, stats, rs, meets_slo=None, probe=False)
        results.save_model(store, run_id, model, model, capacity_concurrency=32 if speed < 0.5 else 8)
    results.finish_load_run(store, run_id)
    return run_id


def test_load_page_and_joined_run_page_render_in_chromium(browser, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'h.db'}")
    run_id = make_run(store, plan_name=PLAN, models=MODELS, suites=("math-word",), n_items=30)
    load_id = make_load_run(store)
    index = write_report(store, [run_id], tmp_path / "site")
    store.close()
    shots = _screenshot_dir(tmp_path)

    state = _check_page(browser, index)
    assert "Under load" in state["text"] and EVIL_MODEL in state["text"]
    assert "at 128 concurrent users, p99" in state["text"] and "on math-word" in state["text"]
    browser.js("document.getElementById('load').scrollIntoView()")
    browser.screenshot(shots / "report-run-under-load.png")

    page = tmp_path / "site" / "load" / f"{load_id}.html"
    state = _check_page(browser, page)
    assert len(state["images"]) == 2  # the curves against load, the TTFT distributions
    assert EVIL_MODEL in state["text"] and "Capacity under the SLO: 32 concurrent users" in state["text"]
    browser.screenshot(shots / "report-load.png")
    for name in ("report-run-under-load.png", "report-load.png"):
        assert (shots / name).read_bytes().startswith(b"\x89PNG")
