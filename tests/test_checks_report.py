"""The check and the routing recommendation in the HTML report: on the run page and, for the plan's
latest run, on the trend page; everything that came from a server or a plan escaped."""

from __future__ import annotations

import re

import pytest
from support.plans import run_plan
from support.weekly import SUITE, WeeklyResponder, item_ids, write_plan

from harness.report import write_report
from harness.report.pages import slug
from harness.store import Store

MODELS = {"cheap": {"price": {"output": 0.25}}, "strong": {"price": {"output": 3.0}}}


def _section(html: str, anchor: str) -> str:
    """The HTML from <h2 id=anchor> to the next <h2>."""
    start = html.index(f'<h2 id="{anchor}">')
    nxt = html.find("<h2", start + 4)
    return html[start : nxt if nxt > 0 else len(html)]


def _text(fragment: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment))


@pytest.fixture
def two_weeks(tmp_path, db_url, fake_server):
    responder = WeeklyResponder()
    fake_server.state.responder = responder
    plan = write_plan(tmp_path / "p.yaml", fake_server, MODELS, name="weekly-report")
    week1 = run_plan(plan, db_url, tag="scheduled")
    responder.wrong = {"strong": set(item_ids(n=30)[:12])}
    fake_server.state.served_model = lambda m: "<script>alert(1)</script>" if m == "cheap" else m
    week2 = run_plan(plan, db_url, tag="scheduled")
    return week1, week2


def test_run_and_trend_pages_show_the_check_and_the_routing(tmp_path, db_url, two_weeks):
    week1, week2 = two_weeks
    out = tmp_path / "reports"
    index = write_report(Store(db_url), [week1, week2], out)
    assert index == out / week1 / "index.html"

    first = (out / week1 / "index.html").read_text("utf-8")
    check1 = _text(_section(first, "check"))
    assert "first run of its plan" in check1 and "No drift alarm" in check1
    assert 'href="#check"' in first and 'href="#routing"' in first

    page = (out / week2 / "index.html").read_text("utf-8")
    check = _section(page, "check")
    text = _text(check)
    assert f"(against {week1}): 1 regression, 2 alarms" in text
    assert f'href="../{week1}/index.html"' in check  # the previous run's page
    (row,) = re.findall(r'<tr class="worse">.*?</tr>', check, re.S)
    cells = _text(row).split()
    assert cells[:5] == ["strong", "▼", SUITE, "100.0%", "60.0%"] and cells[5] == "-40.0" and cells[-1] == "30"
    assert "served model differs from the one asked for" in text and "served model changed since" in text
    # A served name is text from a server: escaped, never markup.
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in check

    routing = _text(_section(page, "routing"))
    # strong dropped to 60%: cheap (100%, cheaper) is the route for math-word.
    assert f"{SUITE} cheap 100.0%" in routing and "margin" in routing and "Latency p99" in routing

    trend = (out / "trends" / f"{slug('weekly-report')}.html").read_text("utf-8")
    latest = _text(_section(trend, "latest-check"))
    assert f"run {week2} (against {week1}): 1 regression, 2 alarms" in latest
    assert f"{SUITE} cheap" in _text(_section(trend, "latest-routing"))
    assert "<script>alert" not in trend


def test_a_report_of_an_older_run_checks_that_run(tmp_path, db_url, two_weeks):
    week1, week2 = two_weeks
    out = tmp_path / "reports"
    write_report(Store(db_url), [week1], out)
    page = (out / week1 / "index.html").read_text("utf-8")
    assert "first run of its plan" in _text(_section(page, "check"))
    # The trend page always shows the plan's latest run, even when only an older run was reported.
    trend = (out / "trends" / f"{slug('weekly-report')}.html").read_text("utf-8")
    assert f"run {week2} (against {week1})" in _text(_section(trend, "latest-check"))
