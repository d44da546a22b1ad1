"""Off-peak prices (DeepSeek discounts online requests in fixed UTC hours): the plan's `price.off_peak`,
each sample priced by when it was answered, the dry-run estimate, and `harness schedule`'s hint."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from click.testing import CliRunner

from harness import schedule as sch
from harness.cli import cli
from harness.engine.runs import execute_plan
from harness.errors import HarnessError
from harness.plan import load_plan, parse_plan, plan_to_dict
from harness.store import Store

DEEPSEEK = {"input": 0.28, "output": 0.42, "off_peak": {"hours": "16:30-00:30", "discount": 0.5}}


def price_of(price: dict):
    return (
        parse_plan(
            {
                "models": {"ds": {"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "price": price}},
                "suites": ["math-word"],
            }
        )
        .models[0]
        .price
    )


def utc(hour: int, minute: int) -> datetime:
    return datetime(2026, 12, 1, hour, minute, tzinfo=timezone.utc)


def test_the_window_may_pass_midnight_and_prices_only_online_requests():
    price = price_of(DEEPSEEK)
    inside = [utc(16, 30), utc(23, 59), utc(0, 0), utc(0, 29)]
    outside = [utc(16, 29), utc(0, 30), utc(12, 0)]
    assert all(price.off_peak.covers(t) for t in inside) and not any(price.off_peak.covers(t) for t in outside)
    assert price.cost(1_000_000, 1_000_000, at=utc(17, 0)) == pytest.approx((0.28 + 0.42) / 2)
    assert price.cost(1_000_000, 1_000_000, at=utc(9, 0)) == pytest.approx(0.28 + 0.42)
    assert price.cost(1_000_000, 1_000_000) == pytest.approx(0.28 + 0.42)  # no time: the list price
    # A time in another zone is converted: 01:00 in Beijing is 17:00 UTC.
    assert price.off_peak.covers(datetime(2026, 12, 2, 1, 0, tzinfo=timezone(timedelta(hours=8))))
    batched = price_of({**DEEPSEEK, "batch_discount": 0.5})
    assert batched.cost(1_000_000, 0, batched=True, at=utc(17, 0)) == pytest.approx(0.14)  # no double discount
    assert (
        "off_peak"
        not in plan_to_dict(
            parse_plan({"models": {"x": {"provider": "openai", "base_url": "http://h/v1"}}, "suites": ["s"]})
        )["models"][0]["price"]
    )


@pytest.mark.parametrize(
    "off_peak, needle",
    [
        (
            {"hours": "25:00-01:00", "discount": 0.5},
            "price.off_peak: hours '25:00-01:00': write the UTC window as HH:MM-HH:MM",
        ),
        ({"hours": "16:30", "discount": 0.5}, "hours '16:30'"),
        ({"hours": "10:00-10:00", "discount": 0.5}, "the window is empty"),
        ({"hours": "16:30-00:30", "discount": 1.0}, "price.off_peak.discount: must be less than 1"),
        ({"hours": "16:30-00:30"}, "price.off_peak.discount: is required"),
        ({"hours": "16:30-00:30", "discount": 0.5, "tz": "UTC"}, "unknown key(s) tz"),
    ],
)
def test_a_bad_window_is_one_line_naming_the_field(off_peak, needle):
    with pytest.raises(HarnessError) as caught:
        price_of({"input": 1.0, "off_peak": off_peak})
    message = str(caught.value)
    assert needle in message and "\n" not in message and "Value error" not in message


def write_plan(tmp_path, server, name: str, price: dict):
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "suites": [{"math-word": {"limit": 6}}],
                "models": {
                    "ds": {"provider": "openai", "base_url": server.base_url, "model": "deepseek-chat", "price": price}
                },
            }
        )
    )
    return path


def window_around(now: datetime, hours: int) -> str:
    """An off-peak window `hours` from now, two hours long (hours=0: now is inside it)."""
    start, end = now + timedelta(hours=hours - 1), now + timedelta(hours=hours + 1)
    return f"{start:%H:%M}-{end:%H:%M}"


def test_samples_answered_in_the_window_cost_less(tmp_path, fake_server, db_url):
    store = Store(db_url)
    now = datetime.now(timezone.utc)
    costs = {}
    for name, price in (
        ("list", {"input": 1.0, "output": 2.0}),
        ("inside", {"input": 1.0, "output": 2.0, "off_peak": {"hours": window_around(now, 0), "discount": 0.75}}),
        ("outside", {"input": 1.0, "output": 2.0, "off_peak": {"hours": window_around(now, 6), "discount": 0.75}}),
    ):
        result = execute_plan(load_plan(write_plan(tmp_path, fake_server, name, price)), store)
        samples = list(store.samples(result.run_id))
        assert len(samples) == 6 and all(s.cost_usd > 0 for s in samples)
        costs[name] = sum(s.cost_usd for s in samples)
    assert costs["inside"] == pytest.approx(costs["list"] / 4) and costs["outside"] == pytest.approx(costs["list"])


def test_dry_run_shows_the_off_peak_estimate(tmp_path, fake_server, db_url):
    plan = write_plan(tmp_path, fake_server, "dry", DEEPSEEK)
    out = CliRunner().invoke(cli, ["run", str(plan), "--dry-run", "--db", db_url])
    assert out.exit_code == 0, out.output
    line = next(ln for ln in out.output.splitlines() if ln.strip().startswith("ds "))
    listed, off = (float(part.split("~$")[1].split()[0]) for part in line.split(";"))
    assert off == pytest.approx(listed / 2, rel=1e-2) and "off-peak (16:30-00:30 UTC, 50% off)" in line
    assert fake_server.state.requests == 0


@pytest.fixture
def beijing():
    """Local time is Beijing's (UTC+8, no daylight saving) while the test runs."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Shanghai"
    time.tzset()
    yield
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


def test_schedule_suggests_a_start_inside_the_window(tmp_path, fake_server, beijing):
    plan = write_plan(tmp_path, fake_server, "weekly", DEEPSEEK)
    # 09:00 in Beijing is 01:00 UTC, just after the window: start at 16:30 UTC = 00:30 Beijing instead.
    early = sch.build_schedule(str(plan), every="daily", at="09:00", db_url="sqlite:///h.db", workdir=str(tmp_path))
    (note,) = sch.off_peak_notes(early)
    assert "model 'ds' is 50% cheaper 16:30-00:30 UTC" in note and "09:00 local time (01:00 UTC)" in note
    assert note.endswith("--at 00:30 starts in the window")
    # 03:00 in Beijing is 19:00 UTC: inside, nothing to say; nor for a cron with several starts a day.
    assert (
        sch.off_peak_notes(
            sch.build_schedule(str(plan), every="daily", at="03:00", db_url="sqlite:///h.db", workdir=str(tmp_path))
        )
        == []
    )
    assert (
        sch.off_peak_notes(
            sch.build_schedule(str(plan), every="0 */6 * * *", db_url="sqlite:///h.db", workdir=str(tmp_path))
        )
        == []
    )
    out = CliRunner().invoke(
        cli, ["schedule", str(plan), "--every", "weekly", "--at", "09:00", "--print", "--db", "sqlite:///h.db"]
    )
    assert out.exit_code == 0 and "note: model 'ds' is 50% cheaper" in out.output
