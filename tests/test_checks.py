"""The check after a scheduled run, against the fake server: exactly the regressions that happened,
drift alarms for a swapped served model, a changed price, a changed suite and worse availability,
and the webhook POST (to a loopback listener)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from scipy.stats import binomtest
from support.cli import invoke
from support.plans import run_plan
from support.weekly import SUITE, WeeklyResponder, item_ids, write_plan

from harness.analysis.checks import (
    Alarm,
    check_run,
    find_previous,
    notify,
    post_webhook,
    resolve_webhook,
    served_name_matches,
    to_json,
    webhook_payload,
)
from harness.analysis.compare import compare_runs
from harness.store import Store

MODELS = {
    "fast": {"price": {"output": 0.25}},
    "strong": {"price": {"output": 3.0}},
    "tiny": {"price": {"output": 0.01}},
}


@pytest.fixture
def weekly(fake_server):
    responder = WeeklyResponder()
    fake_server.state.responder = responder
    return responder


# -- regressions -------------------------------------------------------------------------------


def test_a_drop_of_one_model_is_exactly_the_regression_reported(tmp_path, db_url, fake_server, weekly):
    ids = item_ids(n=30)
    weekly.wrong = {"fast": set(ids[:2]), "tiny": set(ids[:10])}
    plan = write_plan(tmp_path / "p.yaml", fake_server, MODELS)
    week1 = run_plan(plan, db_url, tag="scheduled")
    first = check_run(Store(db_url), week1)
    assert first.previous is None and first.regressions == [] and first.alarms == [] and first.ok
    assert any("first run of plan" in n for n in first.notes)

    # Week 2: 'strong' now misses 12 items it answered before; the others answer exactly as before.
    weekly.wrong["strong"] = set(ids[10:22])
    week2 = run_plan(plan, db_url, tag="scheduled")
    assert week2 != week1
    result = check_run(Store(db_url), week2)
    assert result.previous_run_id == week1 and result.alarms == []
    (reg,) = result.regressions
    assert (reg.a.model, reg.suite, reg.a.run, reg.b.run) == ("strong", SUITE, week1, week2)
    assert reg.diff == pytest.approx(-12 / 30) and (reg.discordant_a, reg.discordant_b) == (12, 0)
    # Three comparisons (one per model), Holm: the smallest p-value times 3.
    assert len(result.comparison.comparisons) == 3
    assert reg.p_adjusted == pytest.approx(min(1.0, 3 * binomtest(12, 12, 0.5).pvalue))
    doc = to_json(result)
    assert doc["ok"] is False and doc["previous"]["run"] == week1 and doc["alarms"] == []
    assert [(r["a"]["model"], r["suite"]) for r in doc["regressions"]] == [("strong", SUITE)]
    json.dumps(doc, allow_nan=False)  # strict JSON

    # The very comparisons `harness compare OLD NEW` makes.
    assert result.comparison.comparisons == compare_runs(Store(db_url), week1, week2).comparisons
    out = invoke("check", "--db", db_url, ok_codes=(0,)).output
    assert "REGRESSION strong on math-word: 100.0% -> 60.0%" in out and "ALARM" not in out
    invoke("check", "--db", db_url, "--fail-on-regression", ok_codes=(1,))
    invoke("check", week1, "--db", db_url, "--fail-on-regression", ok_codes=(0,))  # the first run: nothing to fail
    as_json = json.loads(invoke("check", "--db", db_url, "--json", "--fail-on-regression", ok_codes=(1,)).stdout)
    assert [r["a"]["model"] for r in as_json["regressions"]] == ["strong"]
    # Against an explicit run, and by plan name.
    assert json.loads(invoke("check", "--db", db_url, "--json", "--plan", "weekly-test").stdout)["run"]["run"] == week2
    same = json.loads(invoke("check", week2, "--against", week1, "--db", db_url, "--json").stdout)
    assert same["previous"]["run"] == week1


def test_run_with_check_exits_1_on_a_regression(tmp_path, db_url, fake_server, weekly):
    plan = write_plan(tmp_path / "p.yaml", fake_server, {"m": {}})
    invoke("run", plan, "--db", db_url, "--no-report", "--tag", "scheduled", "--check", "--fail-on-regression")
    weekly.wrong["m"] = set(item_ids(n=30)[:15])
    result = invoke(
        "run", plan, "--db", db_url, "--no-report", "--tag", "scheduled", "--fail-on-regression", ok_codes=(1,)
    )
    assert "REGRESSION m on math-word" in result.output
    # An improvement is not a regression.
    weekly.wrong["m"] = set()
    result = invoke("run", plan, "--db", db_url, "--no-report", "--check", "--fail-on-regression")
    assert "no regression, no alarm" in result.output


# -- drift alarms --------------------------------------------------------------------------------


def test_served_name_rule():
    assert served_name_matches("qwen3-32b", "qwen3-32b")
    assert served_name_matches("qwen3-32b", "Qwen/Qwen3-32B")
    assert served_name_matches("qwen3-32b", "qwen3-32b-2025-04-28")
    assert served_name_matches("deepseek-v4-flash", "deepseek-v4-flash-0528")
    assert served_name_matches("glm-5", "glm-5:latest")
    assert served_name_matches("kimi-k2.5", "moonshotai/kimi-k2.5-v2")
    assert served_name_matches("m", "")  # nothing reported: nothing to judge
    assert not served_name_matches("glm-5", "glm-5-air")
    assert not served_name_matches("glm-5", "glm-4-9b")
    assert not served_name_matches("qwen3-32b", "qwen3-8b")
    assert not served_name_matches("qwen3", "qwen3.5-397b")
    assert not served_name_matches("deepseek-r1", "deepseek-r1-distill-qwen-7b")


def test_a_changed_served_model_name_raises_drift_alarms(tmp_path, db_url, fake_server, weekly):
    plan = write_plan(tmp_path / "p.yaml", fake_server, MODELS)
    # Week 1: the gateway answers 'strong' with a dated name: that matches the asked name, no alarm.
    fake_server.state.served_model = lambda m: "strong-2025-04-28" if m == "strong" else m
    week1 = run_plan(plan, db_url)
    assert check_run(Store(db_url), week1).alarms == []
    # Week 2: 'fast' is silently served by another model.
    fake_server.state.served_model = lambda m: {"strong": "strong-2025-04-28", "fast": "fast-lite"}.get(m, m)
    week2 = run_plan(plan, db_url)
    result = check_run(Store(db_url), week2)
    assert result.regressions == []
    assert [(a.kind, a.model) for a in result.alarms] == [("served-model", "fast"), ("served-model-changed", "fast")]
    asked, changed = result.alarms
    assert "asked for 'fast'" in asked.detail and "'fast-lite' on 30 of 30 samples" in asked.detail
    assert "'fast'" in changed.detail and "'fast-lite'" in changed.detail and week1 in changed.detail
    out = invoke("check", "--db", db_url, "--fail-on-regression").output  # alarms alone do not fail the build
    assert "ALARM served-model: fast:" in out and "ALARM served-model-changed: fast:" in out
    invoke("check", "--db", db_url, "--fail-on-alarm", ok_codes=(1,))
    # A version bump that still matches the asked name is a change from the previous run all the same.
    fake_server.state.served_model = lambda m: {"strong": "strong-2025-09-01", "fast": "fast-lite"}.get(m, m)
    week3 = run_plan(plan, db_url)
    kinds = [(a.kind, a.model) for a in check_run(Store(db_url), week3).alarms]
    assert kinds == [("served-model", "fast"), ("served-model-changed", "strong")]


def test_a_wrong_served_name_alarms_on_the_first_run_too(tmp_path, db_url, fake_server, weekly):
    plan = write_plan(tmp_path / "p.yaml", fake_server, {"qwen3-32b": {}})
    fake_server.state.served_model = lambda m: "qwen3-8b"
    run = run_plan(plan, db_url)
    result = check_run(Store(db_url), run)
    assert result.previous is None
    assert result.alarms == [
        Alarm(
            "served-model", "qwen3-32b", "", "asked for 'qwen3-32b', the server reported 'qwen3-8b' on 30 of 30 samples"
        )
    ]


def test_price_api_model_and_suite_changes_raise_alarms(tmp_path, db_url, fake_server, weekly):
    suites = [{SUITE: {"limit": 30}}, {"zh-mcq": {"limit": 20}}]
    weekly.suites = (SUITE, "zh-mcq")
    write_plan(tmp_path / "p.yaml", fake_server, {"a": {"price": {"output": 0.25}}, "b": {}}, suites=suites)
    run_plan(tmp_path / "p.yaml", db_url)
    # Week 2: a's price changed, b is a different API model, math-word uses other few-shot examples.
    weekly.wrong = {"a": set(item_ids(n=30)[:12])}
    suites2 = [{SUITE: {"limit": 30, "fewshot": 1}}, {"zh-mcq": {"limit": 20}}]
    write_plan(
        tmp_path / "p.yaml", fake_server, {"a": {"price": {"output": 0.30}}, "b": {"model": "b-2"}}, suites=suites2
    )
    week2 = run_plan(tmp_path / "p.yaml", db_url)
    result = check_run(Store(db_url), week2)
    kinds = [(a.kind, a.model, a.suite) for a in result.alarms]
    assert kinds == [("api-model", "b", ""), ("price", "a", ""), ("suite-hash", "", SUITE)]
    assert "$0/$0.25 to $0/$0.3" in result.alarms[1].detail
    # Only a on zh-mcq is compared: b changed model, math-word changed content (where a dropped).
    assert [(c.a.model, c.suite) for c in result.comparison.comparisons] == [("a", "zh-mcq")]
    assert result.regressions == []


def test_worse_availability_raises_an_alarm(tmp_path, db_url, fake_server, weekly):
    plan = write_plan(tmp_path / "p.yaml", fake_server, {"m": {"max_attempts": 1}}, suites=[{SUITE: {"limit": 40}}])
    run_plan(plan, db_url)
    fake_server.state.faults.error_500 = 0.5
    week2 = run_plan(plan, db_url)
    result = check_run(Store(db_url), week2)
    availability = [a for a in result.alarms if a.kind == "availability"]
    assert [a.model for a in availability] == ["m"]
    assert "error rate 0.0% (0/40)" in availability[0].detail and "Fisher" in availability[0].detail
    # Failed requests count as wrong answers, so the score dropped too.
    assert [c.a.model for c in result.regressions] == ["m"]
    # Back to normal: errors fell, no availability alarm.
    fake_server.state.faults.error_500 = 0.0
    week3 = run_plan(plan, db_url)
    assert [a for a in check_run(Store(db_url), week3).alarms if a.kind == "availability"] == []


# -- which run is "previous" ---------------------------------------------------------------------


def test_previous_is_the_last_finished_run_of_the_plan_with_the_same_tag(tmp_path, db_url, fake_server, weekly):
    plan = write_plan(tmp_path / "p.yaml", fake_server, {"m": {}})
    store = Store(db_url)
    scheduled1 = run_plan(plan, db_url, tag="scheduled")
    adhoc = run_plan(plan, db_url, tag="")
    stopped = run_plan(plan, db_url, tag="scheduled")
    store.mark_run(stopped, "stopped")
    other_plan = run_plan(
        write_plan(tmp_path / "q.yaml", fake_server, {"m": {}}, name="other"), db_url, tag="scheduled"
    )
    scheduled2 = run_plan(plan, db_url, tag="scheduled", new=True)
    assert find_previous(store, scheduled2).id == scheduled1  # not the ad-hoc, stopped or other plan's run
    assert find_previous(store, adhoc).id == scheduled1  # no earlier untagged run: any tag
    assert find_previous(store, scheduled1) is None
    assert find_previous(store, other_plan) is None
    result = check_run(store, scheduled2)
    assert result.previous_run_id == scheduled1


# -- webhook -------------------------------------------------------------------------------------


class _Listener:
    """A loopback HTTP listener recording POSTed JSON bodies; answers with `status`."""

    def __init__(self, status: int = 200):
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                listener.bodies.append(json.loads(self.rfile.read(length)))
                listener.headers.append(dict(self.headers))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/SECRET-TOKEN"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_webhook_receives_the_check_as_json(tmp_path, db_url, fake_server, weekly, monkeypatch):
    with _Listener() as hook:
        plan = write_plan(tmp_path / "p.yaml", fake_server, {"m": {}}, webhook=hook.url)
        run_plan(plan, db_url)
        weekly.wrong["m"] = set(item_ids(n=30)[:15])
        fake_server.state.served_model = lambda m: "m-turbo"
        # `harness run --check` posts to the plan's webhook; the URL (a secret) is not printed.
        result = invoke("run", plan, "--db", db_url, "--no-report", "--check", "--fail-on-regression", ok_codes=(1,))
        assert "webhook: posted to http://127.0.0.1:" in result.output and "SECRET-TOKEN" not in result.output
        (body,) = hook.bodies
        assert body["ok"] is False and body["run"]["plan"] == "weekly-test"
        assert [r["a"]["model"] for r in body["regressions"]] == ["m"]
        assert [a["kind"] for a in body["alarms"]] == ["served-model", "served-model-changed"]
        assert body["text"].startswith("harness check: plan weekly-test") and "REGRESSION m" in body["text"]
        assert hook.headers[0]["Content-Type"].startswith("application/json")
        # `harness check` posts only when asked to.
        invoke("check", "--db", db_url)
        assert len(hook.bodies) == 1
        invoke("check", "--db", db_url, "--notify")
        assert len(hook.bodies) == 2


def test_webhook_url_from_a_variable_and_failures_never_crash(tmp_path, db_url, fake_server, weekly, monkeypatch):
    with _Listener(status=500) as failing:
        result = post_webhook(failing.url, {"x": 1})
        assert not result.ok and result.status == 500 and "HTTP 500" in result.error
        assert "SECRET" not in result.target
    # Nothing listens there any more: a connection error comes back, no exception.
    down = post_webhook(failing.url, {"x": 1}, timeout=2)
    assert not down.ok and down.status is None and "cannot reach it" in down.error
    assert not post_webhook("file:///etc/passwd", {"x": 1}).ok
    assert not post_webhook("not a url", {"x": 1}).ok
    monkeypatch.setenv("HOOK_URL", "http://127.0.0.1:9/x")
    assert resolve_webhook("$HOOK_URL") == ("http://127.0.0.1:9/x", "")
    assert resolve_webhook("${HOOK_URL}") == ("http://127.0.0.1:9/x", "")
    monkeypatch.delenv("HOOK_URL")
    assert resolve_webhook("$HOOK_URL")[0] is None and "HOOK_URL is not set" in resolve_webhook("$HOOK_URL")[1]
    assert resolve_webhook(None) == (None, "")
    # Through the CLI: a webhook that fails is a warning; the exit status is the check's.
    with _Listener() as hook:
        monkeypatch.setenv("HOOK_URL", hook.url)
        plan = write_plan(tmp_path / "p.yaml", fake_server, {"m": {}}, webhook="$HOOK_URL")
        run = run_plan(plan, db_url)
        sent = notify(check_run(Store(db_url), run))
        assert sent.ok and len(hook.bodies) == 1
        assert hook.bodies[0] == json.loads(json.dumps(webhook_payload(check_run(Store(db_url), run))))
    result = invoke("check", "--db", db_url, "--notify")  # the listener is gone
    assert "warning: webhook http://127.0.0.1:" in result.output and "not delivered" in result.output


def test_a_model_that_never_answered_raises_an_alarm_on_its_first_run(tmp_path, db_url, fake_server, weekly):
    # The issue: a 100%-401 model and "no regression, no alarm".
    from dataclasses import replace

    fake_server.state.faults = replace(fake_server.state.faults, unauthorized_models=frozenset({"broken"}))
    plan = write_plan(tmp_path / "p.yaml", fake_server, {"healthy": {}, "broken": {}}, suites=[{SUITE: {"limit": 8}}])
    # A revoked key is fatal (issue 13): the model is stopped after a few 401s, the run ends failed.
    result = check_run(Store(db_url), run_plan(plan, db_url, status="failed"))
    assert result.previous is None and not result.ok
    assert [(a.kind, a.model) for a in result.alarms] == [("unavailable", "broken")]
    assert "stopped after fatal errors" in result.alarms[0].detail and "401" in result.alarms[0].detail
    out = invoke("check", "--db", db_url, "--fail-on-alarm", ok_codes=(1,)).output
    assert "unavailable" in out and "broken" in out


def test_a_large_drop_that_is_not_significant_gets_a_watch_line(tmp_path, db_url, fake_server, weekly):
    # The scenario: 9 models x 2 suites = 18 comparisons; one model drops 100% -> 20% on 10 items.
    weekly.suites = (SUITE, "zh-mcq")
    models = {f"m{i}": {} for i in range(9)}
    suites = [{SUITE: {"limit": 10}}, {"zh-mcq": {"limit": 10}}]
    plan = write_plan(tmp_path / "p.yaml", fake_server, models, suites=suites)
    run_plan(plan, db_url)
    weekly.wrong = {"m3": set(item_ids(n=10)[:8])}
    week2 = run_plan(plan, db_url)
    out = invoke("check", "--db", db_url).output
    assert "1 to watch" in out and "WATCH" in out, out  # today: silence
    result = check_run(Store(db_url), week2)
    assert result.regressions == [] and len(result.comparison.comparisons) == 18
    (w,) = result.watch
    assert (w.a.model, w.suite) == ("m3", SUITE) and w.diff == pytest.approx(-0.8)
    assert w.p_value == pytest.approx(binomtest(8, 8, 0.5).pvalue) and w.p_adjusted > 0.05
    line = next(x for x in out.splitlines() if x.strip().startswith("WATCH"))
    assert "m3 on math-word: 100.0% -> 20.0% (-80.0 points" in line and "over 18 comparisons" in line
    assert f"is {100 * w.mde:.0f} points" in line and w.mde > 0.5
    doc = json.loads(invoke("check", "--db", db_url, "--json").stdout)
    assert [x["a"]["model"] for x in doc["watch"]] == ["m3"] and doc["watch"][0]["mde"] == pytest.approx(w.mde)
    # A small non-significant wobble is no watch line.
    weekly.wrong = {"m3": set(item_ids(n=10)[:7])}
    assert check_run(Store(db_url), run_plan(plan, db_url)).watch == []
