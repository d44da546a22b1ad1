"""Routing recommendation against the fake server: the cheapest model not significantly worse than the
best, with the margin from the plan, measured cost rather than list price, and p99 latency shown."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner
from scipy.stats import beta
from support.cli import invoke
from support.plans import run_plan
from support.weekly import SUITE, WeeklyResponder, item_ids, write_plan

from harness.analysis.recommend import recommend
from harness.cli import cli
from harness.errors import HarnessError
from harness.store import Store

# 'strong' answers all 40 items, 'fast' misses one, 'tiny' misses 12: by price tiny < fast < strong.
MODELS = {
    "strong": {"price": {"output": 3.0}},
    "fast": {"price": {"output": 0.25}},
    "tiny": {"price": {"output": 0.01}},
}
SUITES = [{SUITE: {"limit": 40}}]


@pytest.fixture
def weekly(fake_server):
    responder = WeeklyResponder()
    ids = item_ids(n=40)
    responder.wrong = {"fast": {ids[5]}, "tiny": set(ids[:12])}
    fake_server.state.responder = responder
    return responder


def test_picks_the_cheaper_model_that_is_not_significantly_worse(tmp_path, db_url, fake_server, weekly):
    plan = write_plan(tmp_path / "p.yaml", fake_server, MODELS, suites=SUITES, noninferiority_margin=0.15)
    run = run_plan(plan, db_url)
    rec = recommend(Store(db_url), run)
    assert rec.margin == 0.15 and rec.routes == {SUITE: "fast"}
    (s,) = rec.suites
    assert s.best == "strong" and s.model == "fast" and s.cost_basis == "measured"
    # Cheapest first: tiny (not non-inferior: 30% worse), fast (chosen), strong (the best).
    assert [c.model for c in s.candidates] == ["tiny", "fast", "strong"]
    tiny, fast, strong = s.candidates
    assert strong.is_best and strong.noninferior and not tiny.noninferior and fast.noninferior
    assert tiny.rejected == "worse than strong by more than 15 points" and fast.rejected == ""
    assert strong.rejected == "dearer than fast"
    # The exact bound by hand: fast misses 1 item of 40 that strong gets; it is right on none strong misses,
    # so its lower bound is minus the upper Clopper-Pearson bound of 1 in 40 (2.5% on each side).
    assert fast.diff == pytest.approx(-1 / 40)
    assert fast.lower == pytest.approx(-beta.ppf(0.975, 2, 39))
    assert fast.p_value < 0.05
    assert tiny.diff == pytest.approx(-12 / 40)
    # Measured cost per sample follows price x tokens; p99 latency is there to show.
    assert tiny.cost_per_sample < fast.cost_per_sample < strong.cost_per_sample
    assert fast.cost_per_sample == pytest.approx(fast.cost_usd / 40)
    assert fast.latency_p99 > 0 and fast.n_paired == 40

    # 10 points cannot be proven with one miss in 40 (it could be 13 points worse), nor 2: the best wins.
    for margin in (0.10, 0.02):
        rec2 = recommend(Store(db_url), run, margin=margin)
        assert (
            rec2.routes == {SUITE: "strong"}
            and f"may be more than {100 * margin:g} points worse" in rec2.suites[0].reason
        )


def test_default_margin_is_two_points(tmp_path, db_url, fake_server, weekly):
    weekly.wrong["fast"] = set()  # as good as strong on every item
    plan = write_plan(tmp_path / "p.yaml", fake_server, MODELS, suites=SUITES)
    run = run_plan(plan, db_url)
    rec = recommend(Store(db_url), run)
    assert rec.margin == 0.02 and rec.routes == {SUITE: "fast"}
    # A tie on score goes to the cheaper model as "best" as well.
    assert rec.suites[0].best == "fast"


def test_measured_cost_beats_list_price(tmp_path, db_url, fake_server, weekly):
    # 'wordy' has half the list price of 'terse' but writes ~20x more tokens for the same answers.
    weekly.wrong = {}
    weekly.filler = {"wordy": 400}
    plan = write_plan(
        tmp_path / "p.yaml",
        fake_server,
        {"wordy": {"price": {"output": 0.5}}, "terse": {"price": {"output": 1.0}}},
        suites=SUITES,
    )
    rec = recommend(Store(db_url), run_plan(plan, db_url))
    (s,) = rec.suites
    assert s.cost_basis == "measured" and s.model == "terse"
    assert s.candidate("wordy").price_output < s.candidate("terse").price_output
    assert s.candidate("wordy").cost_per_sample > s.candidate("terse").cost_per_sample


def test_list_price_decides_when_nothing_was_measured(tmp_path, db_url):
    # Completions read from files carry no token counts: cost 0 everywhere, so the plan price decides.
    from harness.suite import load_suite
    from harness.suite.prompt import PromptBuilder

    suite = load_suite(SUITE)
    builder = PromptBuilder(suite)
    rows = list(suite.items())[:20]
    spec = {}
    for name, price in (("pricey", 2.0), ("cheap", 0.1), ("free-but-bad", 0.0)):
        path = tmp_path / f"{name}.jsonl"
        with open(path, "w", encoding="utf-8") as fh:
            for i, item in enumerate(rows):
                good = name != "free-but-bad" or i % 2
                fh.write(
                    json.dumps({"task_id": item.id, "completion": builder.reference_response(item) if good else "-1"})
                    + "\n"
                )
        spec[name] = {"provider": "samples", "path": str(path), "price": {"output": price}}
    plan = tmp_path / "p.yaml"
    plan.write_text(yaml.safe_dump({"name": "files", "models": spec, "suites": [{SUITE: {"first": 20}}]}))
    rec = recommend(Store(db_url), run_plan(plan, db_url))
    (s,) = rec.suites
    assert s.cost_basis == "list price" and s.model == "cheap"
    assert [c.model for c in s.candidates] == ["free-but-bad", "cheap", "pricey"]


def test_cli_prints_suite_to_model_and_json(tmp_path, db_url, fake_server, weekly):
    weekly.suites = (SUITE, "zh-mcq")
    ids = item_ids("zh-mcq", n=20)
    weekly.wrong["fast"] = weekly.wrong["fast"] | set(ids[:8])  # fast and tiny are weak in Chinese
    weekly.wrong["tiny"] = weekly.wrong["tiny"] | set(ids[:10])
    plan = write_plan(
        tmp_path / "p.yaml",
        fake_server,
        MODELS,
        noninferiority_margin=0.15,
        suites=[{SUITE: {"limit": 40}}, {"zh-mcq": {"limit": 20}}],
    )
    run = run_plan(plan, db_url)
    out = invoke("recommend", "--db", db_url).output
    assert f"{SUITE} → fast" in out and "zh-mcq → strong" in out and "p99 s" in out
    full = invoke("recommend", run, "--db", db_url, "--all").output
    assert "every model, cheapest first" in full and "non-inferior" in full
    doc = json.loads(invoke("recommend", "--db", db_url, "--json").stdout)
    assert doc["run"]["run"] == run and doc["margin"] == 0.15 and doc["alpha"] == 0.05
    assert doc["routes"] == {SUITE: "fast", "zh-mcq": "strong"}
    first = doc["suites"][0]
    assert first["suite"] == SUITE and first["cost_basis"] == "measured" and first["best"] == "strong"
    chosen = [c for c in first["candidates"] if c["recommended"]]
    assert [c["model"] for c in chosen] == ["fast"] and chosen[0]["latency_p99"] > 0
    assert set(chosen[0]) >= {
        "mean",
        "lo",
        "hi",
        "diff",
        "lower",
        "p_value",
        "noninferior",
        "cost_per_sample",
        "price",
        "latency_p50",
        "latency_p99",
        "error_rate",
        "served_models",
    }
    # --margin overrides the plan; 0 keeps only models at least as good as the best.
    tight = json.loads(invoke("recommend", "--db", db_url, "--json", "--margin", "0").stdout)
    assert tight["routes"] == {SUITE: "strong", "zh-mcq": "strong"}
    bad = CliRunner().invoke(cli, ["recommend", "--db", db_url, "--margin", "1.5"])
    assert bad.exit_code == 2


def test_a_plan_margin_out_of_range_is_a_user_error(tmp_path, db_url, fake_server, weekly):
    bad = write_plan(tmp_path / "bad.yaml", fake_server, {"m": {}}, noninferiority_margin=2)
    with pytest.raises(HarnessError, match="noninferiority_margin: must be less than 1"):
        run_plan(bad, db_url)  # refused when the plan is loaded, before any request
    run = run_plan(write_plan(tmp_path / "p.yaml", fake_server, {"m": {}}), db_url)
    with pytest.raises(HarnessError, match="0.02 = 2 points"):
        recommend(Store(db_url), run, margin=2)


def test_a_model_whose_every_request_fails_is_never_routed(tmp_path, db_url, fake_server, weekly):
    # The scenario: 'broken' has the lower list price, but its key is revoked (20/20 HTTP 401).
    from dataclasses import replace

    fake_server.state.faults = replace(fake_server.state.faults, unauthorized_models=frozenset({"broken"}))
    plan = write_plan(
        tmp_path / "p.yaml",
        fake_server,
        {"healthy": {"price": {"output": 1.0}}, "broken": {"price": {"output": 0.1}}},
        suites=[{SUITE: {"limit": 20}}],
    )
    # A revoked key is fatal (issue 13): 'broken' is stopped after a few 401s and the run ends failed.
    run = run_plan(plan, db_url, status="failed")
    assert fake_server.state.status_counts["401"] >= 1
    rec = recommend(Store(db_url), run)
    (s,) = rec.suites
    assert rec.routes == {SUITE: "healthy"} and s.best == "healthy"
    broken = s.candidate("broken")
    assert broken.error_rate == 1.0 and not broken.eligible and not broken.is_best
    assert broken.rejected.startswith("unavailable: stopped after fatal errors") and "401" in broken.rejected
    out = invoke("recommend", "--db", db_url).output
    assert f"{SUITE} → healthy" in out and "broken: unavailable: stopped after fatal errors" in out
    doc = json.loads(invoke("recommend", "--db", db_url, "--json").stdout)
    cand = {c["model"]: c for c in doc["suites"][0]["candidates"]}
    assert cand["broken"]["eligible"] is False and cand["broken"]["best"] is False
    assert doc["suites"][0]["limits"]["max_error_rate"] == 0.001
    # Without any availability limit it is still no candidate: it never answered.
    loose = json.loads(invoke("recommend", "--db", db_url, "--json", "--max-error-rate", "none").stdout)
    assert loose["routes"] == {SUITE: "healthy"}


def test_latency_and_error_limits_from_the_plan_and_the_command_line(tmp_path, db_url, fake_server, weekly):
    from dataclasses import replace

    weekly.wrong = {}
    # Only 'flaky' fails (one attempt per sample): which of its requests fail does not depend on how its
    # requests interleave with steady's, so the run is the same every time.
    fake_server.state.faults = replace(
        fake_server.state.faults, error_500=0.2, seed=3, fault_models=frozenset({"flaky"})
    )
    plan = write_plan(
        tmp_path / "p.yaml",
        fake_server,
        {"flaky": {"price": {"output": 0.1}, "max_attempts": 1}, "steady": {"price": {"output": 1.0}}},
        suites=[{SUITE: {"limit": 30}}],
        routing={"max_error_rate": 0.5},
    )
    fake_server.reseed(3)
    run = run_plan(plan, db_url)
    rec = recommend(Store(db_url), run)
    flaky = rec.suites[0].candidate("flaky")
    assert 0 < flaky.error_rate < 0.5 and rec.suites[0].limits.max_error_rate == 0.5
    # The plan lets a flaky model through on availability; it is then judged on score (its failures
    # score 0) and may still lose on the margin; the command line's default tier rejects it outright.
    strict = json.loads(invoke("recommend", "--db", db_url, "--json", "--max-error-rate", "0.001").stdout)
    cand = {c["model"]: c for c in strict["suites"][0]["candidates"]}
    assert strict["routes"] == {SUITE: "steady"} and cand["flaky"]["rejected"].startswith("unavailable: error rate")
    # A p99 budget nobody meets routes nowhere, and says so; a per-route override relaxes one suite.
    none = json.loads(invoke("recommend", "--db", db_url, "--json", "--max-p99", "0").stdout)
    assert none["routes"] == {SUITE: None}
    assert all(c["rejected"].startswith(("too slow", "unavailable")) for c in none["suites"][0]["candidates"])
    relaxed = json.loads(
        invoke(
            "recommend",
            "--db",
            db_url,
            "--json",
            "--max-p99",
            "0",
            "--max-p99",
            f"{SUITE}=60",
            "--max-error-rate",
            "0.001",
        ).stdout
    )
    assert relaxed["routes"] == {SUITE: "steady"}
    bad = CliRunner().invoke(cli, ["recommend", "--db", db_url, "--max-p99", "fast"])
    assert bad.exit_code == 2 and "--max-p99" in bad.output


# --------------------------------------------------------------------------- issue 23: wrong routes, wrong reasons


def assert_reasons_true(rec) -> None:
    """Every rejection reason is true of the numbers beside it (diff, lower, margin, cost, eligibility)."""
    from harness.analysis.recommend import _cost_key

    m = rec.margin
    for s in rec.suites:
        chosen = s.chosen
        for c in s.candidates:
            r = c.rejected
            if c.model == s.model:
                assert r == "" and c.eligible and (c.noninferior or c.is_best), c
                continue
            assert r, c  # a model not chosen always says why
            if r.startswith("worse than"):
                assert c.diff < -m and c.lower < -m, c
            elif r.startswith("as good as"):
                assert c.diff >= 0 and c.lower < -m and not c.noninferior, c
            elif "may be more than" in r:
                assert -m <= c.diff < 0 and c.lower < -m and not c.noninferior, c
            elif r.startswith("dearer than"):
                other = s.candidate(r.removeprefix("dearer than "))
                assert c.cost_known and _cost_key(c, s.cost_basis) > _cost_key(other, s.cost_basis), c
            elif r.startswith("cost unknown"):
                assert not c.cost_known and c.cost_per_sample != c.cost_per_sample, c
            elif r.startswith(("unavailable", "too slow", "not measured", "misses the SLO")):
                assert not c.eligible, c
            elif r.startswith("scores "):
                assert s.model is None and not c.mean > 0, c
            else:
                assert r.startswith(("as cheap as", "tied with", "not comparable")), c
            if chosen is not None and c.eligible and (r.startswith(("worse", "as good")) or "may be more than" in r):
                # a score reason is given only where cost did not decide: the model is not dearer than the chosen
                assert _cost_key(c, s.cost_basis) <= _cost_key(chosen, s.cost_basis)


def test_an_unpriced_model_is_never_cheapest_and_is_said_so(tmp_path, db_url, fake_server, weekly):
    # The scenario: `price:` left out on one model; both answer all 20 items right.
    weekly.wrong = {}
    plan = write_plan(
        tmp_path / "p.yaml",
        fake_server,
        {"noprice": {}, "priced": {"price": {"output": 1.0}}},
        suites=[{SUITE: {"limit": 20}}],
    )
    ran = invoke("run", plan, "--db", db_url, "--no-report")
    assert "no price for noprice: cost unknown" in ran.output  # said at plan load
    rec = recommend(Store(db_url))
    (s,) = rec.suites
    assert rec.routes == {SUITE: "priced"} and s.cost_basis == "measured"
    noprice = s.candidate("noprice")
    assert not noprice.cost_known and noprice.cost_per_sample != noprice.cost_per_sample
    assert noprice.rejected.startswith("cost unknown") and "worse" not in s.candidate("priced").rejected
    assert "cost unknown (no price in the plan): noprice" in s.reason
    assert_reasons_true(rec)
    # Said at run (the summary shows — for its cost, not $0) and at recommend (text and JSON).
    shown = invoke("runs", "show", "--db", db_url).output
    assert "noprice" in shown and "$0 " not in shown
    out = invoke("recommend", "--db", db_url).output
    assert "noprice: cost unknown" in out
    doc = json.loads(invoke("recommend", "--db", db_url, "--json").stdout)
    cand = {c["model"]: c for c in doc["suites"][0]["candidates"]}
    assert cand["noprice"]["cost_known"] is False and cand["noprice"]["cost_per_sample"] is None
    # Writing `price: {output: 0}` says the model is free: then it is the cheapest, as the user said.
    free = write_plan(
        tmp_path / "free.yaml",
        fake_server,
        {"noprice": {"price": {"output": 0}}, "priced": {"price": {"output": 1.0}}},
        suites=[{SUITE: {"limit": 20}}],
        name="free",
    )
    rec2 = recommend(Store(db_url), run_plan(free, db_url))
    assert rec2.routes == {SUITE: "noprice"} and rec2.suites[0].candidate("noprice").cost_known


def test_three_ties_on_ten_items_are_rejected_for_the_true_reason(tmp_path, db_url, fake_server, weekly):
    # Three models score 100% on the same 10 items; 'sloppy' (cheapest) misses 3 of them, 'close' 1.
    ids = item_ids(n=10)
    weekly.wrong = {"sloppy": set(ids[:3]), "close": {ids[0]}}
    models = {
        "a": {"price": {"output": 0.5}},
        "b": {"price": {"output": 1.0}},
        "c": {"price": {"output": 2.0}},
        "close": {"price": {"output": 0.2}},
        "sloppy": {"price": {"output": 0.05}},
    }
    plan = write_plan(tmp_path / "p.yaml", fake_server, models, suites=[{SUITE: {"limit": 10}}])
    run = run_plan(plan, db_url)
    for margin in (0.02, 0.15, 0.5):
        rec = recommend(Store(db_url), run, margin=margin)
        assert_reasons_true(rec)
        s = rec.suites[0]
        assert s.best == "a"
        # b and c tie with the best on score: they lost on price, never "worse by more than 2 points".
        assert s.candidate("b").rejected in ("dearer than a", f"dearer than {s.model}")
        assert s.candidate("c").diff == 0 and not s.candidate("c").rejected.startswith("worse")
    tight = recommend(Store(db_url), run, margin=0.02).suites[0]
    assert tight.model == "a"
    assert tight.candidate("close").rejected.startswith("worse than a by more than 2 points")
    assert tight.candidate("close").diff == pytest.approx(-0.1)


def test_a_suite_whose_best_score_is_zero_gets_no_route(tmp_path, db_url, fake_server, weekly):
    ids = item_ids(n=10)
    weekly.wrong = {"x": set(ids), "y": set(ids)}
    plan = write_plan(
        tmp_path / "p.yaml",
        fake_server,
        {"x": {"price": {"output": 0.1}}, "y": {"price": {"output": 1.0}}},
        suites=[{SUITE: {"limit": 10}}],
    )
    rec = recommend(Store(db_url), run_plan(plan, db_url))
    (s,) = rec.suites
    assert rec.routes == {SUITE: None} and "best score is 0%" in s.reason
    assert all(c.rejected == "scores 0% on this suite" for c in s.candidates)
    assert_reasons_true(rec)
    out = invoke("recommend", "--db", db_url).output
    assert f"{SUITE} → —" in out and "best score is 0%" in out and "scores highest and is the cheapest" not in out


def _stored_load_run(store, plan: str, stages: dict[str, tuple[float, float]]) -> str:
    """A finished load run of PLAN at 32 users: model -> (error rate, p99 latency s), as `harness load` stores it."""
    from harness.store import loads as results

    run = results.start_load_run(store, plan_name=plan, plan_path="p.yaml", tag="", profile={})
    for model, (error_rate, p99) in stages.items():
        stats = {"concurrency": 32, "rate": None, "requests": 400, "latency_p99": p99, "error_rate": error_rate}
        results.save_stage(store, run, model, 0, stats, [], meets_slo=None, probe=False)
        results.save_model(store, run, model, model)
    results.finish_load_run(store, run)
    return run


def test_the_route_never_names_a_model_that_misses_the_slo(tmp_path, db_url, fake_server, weekly):
    # The scenario: three models tie on score over 10 items; the cheapest misses the SLO under load.
    from harness.load.join import load_view, recommend_under_load
    from harness.load.profile import parse_slo

    weekly.wrong = {}
    models = {"flaky": {"price": {"output": 0.1}}, "ok1": {"price": {"output": 0.5}}, "ok2": {"price": {"output": 1}}}
    plan = write_plan(tmp_path / "p.yaml", fake_server, models, suites=[{SUITE: {"limit": 10}}])
    run = run_plan(plan, db_url)
    store = Store(db_url)
    assert recommend(store, run).routes == {SUITE: "flaky"}  # without load figures, the cheapest of equals
    _stored_load_run(store, "weekly-test", {"flaky": (0.025, 0.3), "ok1": (0.0, 0.4), "ok2": (0.0, 0.45)})
    slo = "latency_p99<=0.5s,error_rate<=1%"
    doc = json.loads(invoke("recommend", "--db", db_url, "--at", "32", "--slo", slo, "--json").stdout)
    assert doc["load"]["models"]["flaky"]["meets_slo"] is False
    assert doc["routes"] == {SUITE: "ok1"} and doc["suites"][0]["best"] == "ok1"
    cand = {c["model"]: c for c in doc["suites"][0]["candidates"]}
    assert cand["flaky"]["rejected"].startswith("misses the SLO at 32 concurrent users: error_rate 0.025 > 0.01")
    assert not cand["flaky"]["eligible"] and cand["ok1"]["recommended"]
    text = invoke("recommend", "--db", db_url, "--at", "32", "--slo", slo).output
    assert f"{SUITE} → ok1" in text and "flaky: misses the SLO" in text

    view = load_view(store, "weekly-test")
    rec = recommend(store, run)
    joined, _ = recommend_under_load(
        rec, view, (32, None), parse_slo(slo), lambda ex: recommend(store, run, excluded=ex)
    )
    assert_reasons_true(joined)
    # Nobody meets a 0.1 s p99: no route, and every candidate says it misses the SLO.
    none, _ = recommend_under_load(
        rec, view, (32, None), parse_slo("latency_p99<=0.1s"), lambda ex: recommend(store, run, excluded=ex)
    )
    assert none.routes == {SUITE: None}
    assert all(c.rejected.startswith("misses the SLO") for c in none.suites[0].candidates)
    # A level the load run never measured: nobody is known to meet the SLO there.
    unmeasured, _ = recommend_under_load(
        rec, view, (64, None), parse_slo(slo), lambda ex: recommend(store, run, excluded=ex)
    )
    assert unmeasured.routes == {SUITE: None}


def test_the_run_page_star_names_the_routing_tables_best(tmp_path, db_url, fake_server, weekly):
    # A tie on score: the plan lists the dearer model first; the routing's best is the cheaper one.
    from harness.report import write_report

    weekly.wrong = {}
    models = {"dear": {"price": {"output": 2.0}}, "cheap": {"price": {"output": 0.5}}}
    run = run_plan(write_plan(tmp_path / "p.yaml", fake_server, models, suites=[{SUITE: {"limit": 10}}]), db_url)
    (s,) = recommend(Store(db_url), run).suites
    assert s.best == "cheap"
    page = write_report(Store(db_url), [run], tmp_path / "site").read_text("utf-8")
    board = page[page.index('<table class="leaderboard"') :]
    board = board[: board.index("</table>")]
    starred = board[board.rindex("<tr", 0, board.index("★ best")) :]
    assert ">cheap<" in starred[: starred.index("★ best")]
