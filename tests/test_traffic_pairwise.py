"""Pairwise judging against the incumbent in real runs on the fake server, and its statistics against statsmodels."""

import json

import numpy as np
import pytest
import yaml
from support.judges import answer, traffic_responder
from support.judges import write_traffic_log as _log

from harness.traffic import stats


def _run(tmp_path, fake_server, db_url, monkeypatch, n, answers, judges, extra=None, batched=False):
    from harness.engine.runs import execute_plan
    from harness.plan import load_plan
    from harness.store import Store
    from harness.traffic.importer import import_log

    _log(tmp_path / "log.jsonl", n)
    import_log(tmp_path / "log.jsonl", "tickets", tmp_path / "suites")
    monkeypatch.setenv("HARNESS_SUITES_PATH", str(tmp_path / "suites"))
    fake_server.state.responder = traffic_responder(answers, judges)
    endpoint = {"provider": "openai", "base_url": fake_server.base_url, "concurrency": 8}
    plan = {
        "models": {
            m: {**endpoint, "price": {"input": 0.1, "output": 0.2}, **({"batch": True} if batched else {})}
            for m in answers
        },
        "judges": {j: {**endpoint, "price": {"input": 1.0, "output": 2.0}} for j in judges},
        "suites": ["tickets"],
        **(extra or {}),
    }
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    store = Store(db_url)
    result = execute_plan(load_plan(tmp_path / "plan.yaml"), store)
    return store, result


def test_both_orders_cancel_a_judge_that_prefers_the_first_answer(tmp_path, fake_server, db_url, monkeypatch):
    from harness.traffic.pairwise import pairwise_report

    n = 40
    # Planted: the candidate is better on a quarter, worse on a quarter, as good on half the items.
    quality = {i: 6 if i % 4 == 0 else 4 if i % 4 == 1 else 5 for i in range(n)}
    # " (c)": never the incumbent's very text, whose two orders would be one prompt (asked once, cached).
    answers = {"cand": {i: answer(i, q) + " (c)" for i, q in quality.items()}}
    store, result = _run(tmp_path, fake_server, db_url, monkeypatch, n, answers, {"posjudge": "position"})
    report = pairwise_report(store, result.run_id)
    (r,) = report.results
    assert (r.model, r.n, r.wins, r.losses, r.ties) == ("cand", n, n // 4, n // 4, n // 2)
    assert r.win_rate == pytest.approx(0.5) and r.order_flips == pytest.approx(0.5)
    assert r.win_rate_lo < 0.5 < r.win_rate_hi
    # The incumbent's answers came from the log: the candidate and the judge (twice per item) were asked.
    assert fake_server.state.requests == n + 2 * n
    assert r.judge_requests == 2 * n and r.judge_cost > 0
    # The candidate's requests went out with the logged request's own settings; the judges' with theirs.
    sent = [b for b in fake_server.state.bodies if b["model"] == "cand"]
    assert sent and all((b["temperature"], b["max_tokens"]) == (0.2, 64) for b in sent)
    judged = [b for b in fake_server.state.bodies if b["model"] == "posjudge"]
    assert judged and all(b["temperature"] == 0.0 for b in judged)


def test_length_control_moves_a_length_biased_judge_back_toward_the_truth(tmp_path, fake_server, db_url, monkeypatch):
    from harness.traffic.pairwise import pairwise_report

    n = 100
    # Planted truth: better on even items, worse on odd ones (true win rate 0.5); padding independent of it.
    answers = {"cand": {i: answer(i, 6 if i % 2 == 0 else 4, padding=100 * ((i // 2) % 5)) for i in range(n)}}
    store, result = _run(tmp_path, fake_server, db_url, monkeypatch, n, answers, {"lenjudge": "length"})
    (r,) = pairwise_report(store, result.run_id).results
    assert r.win_rate > 0.6  # the judge's taste for length inflates the raw rate
    assert abs(r.lc_win_rate - 0.5) < abs(r.win_rate - 0.5) / 2
    assert r.order_flips == 0  # this judge is consistent across orders: its bias is length, not position


def test_incumbent_model_several_candidates_bradley_terry_and_cache(tmp_path, fake_server, db_url, monkeypatch):
    from harness.traffic.pairwise import pairwise_report

    n = 30
    answers = {
        "inc": {i: answer(i, 5) for i in range(n)},
        "strong": {i: answer(i, 6 if i % 3 else 5, padding=0 if i % 3 else 2) for i in range(n)},
        "weak": {i: answer(i, 4 if i % 3 else 5, padding=0 if i % 3 else 3) for i in range(n)},
    }
    judges = {"judge-a": "truthful", "judge-b": "position"}
    store, result = _run(
        tmp_path, fake_server, db_url, monkeypatch, n, answers, judges, {"incumbent": "inc", "cache": True}
    )
    first = fake_server.state.requests
    # Each of 3 models once per item (the incumbent's answer shared with the grading), 2 judges x 2 orders x 2 candidates.
    assert first == 3 * n + 2 * 2 * 2 * n
    report = pairwise_report(store, result.run_id)
    by = {r.model: r for r in report.results}
    assert set(by) == {"strong", "weak"}  # the incumbent is the baseline, not a candidate
    assert by["strong"].win_rate > 0.5 > by["weak"].win_rate
    assert by["strong"].bt[0] > 0 > by["weak"].bt[0] and by["strong"].bt[1] < by["strong"].bt[0] < by["strong"].bt[2]
    (agree,) = report.agreement
    assert (agree.first, agree.second, agree.n) == ("judge-a", "judge-b", 2 * n)
    assert agree.agreement == pytest.approx(1.0)  # equal answers: one says TIE, the other flips to a tie
    # A new run of the same plan answers everything from the cache: no candidate, no judge request.
    from harness.engine.runs import execute_plan
    from harness.plan import load_plan

    again = execute_plan(load_plan(tmp_path / "plan.yaml"), store, new=True)
    assert fake_server.state.requests == first
    again_report = pairwise_report(store, again.run_id)
    assert [r.win_rate for r in again_report.results] == [r.win_rate for r in report.results]
    assert all(r.judge_requests == 0 and r.judge_cost == 0 for r in again_report.results)


def test_self_preference_is_flagged():
    from harness.traffic.pairwise import family

    assert family("Qwen/Qwen3-8B") == family("qwen-plus") == "qwen"
    assert family("glm-4-9b") == "glm" and family("openai/gpt-4o") == "gpt"


# --------------------------------------------------------------------------- statistics vs statsmodels


def test_win_rate_interval_matches_statsmodels_clustered_ols():
    import statsmodels.api as sm

    rng = np.random.default_rng(1)
    y = rng.choice([0.0, 0.5, 1.0], size=120, p=[0.3, 0.2, 0.5])
    clusters = np.repeat(np.arange(40), 3)
    wr = stats.win_rate(y, clusters)
    fit = sm.OLS(y, np.ones_like(y)).fit(cov_type="cluster", cov_kwds={"groups": clusters, "use_correction": False})
    g = 40
    assert wr.rate == pytest.approx(fit.params[0])
    assert wr.se == pytest.approx(fit.bse[0] * np.sqrt(g / (g - 1)), rel=1e-9)
    assert (wr.wins, wr.ties, wr.losses) == (int((y == 1).sum()), int((y == 0.5).sum()), int((y == 0).sum()))


def test_length_controlled_rate_matches_statsmodels_logistic_regression():
    import statsmodels.api as sm

    rng = np.random.default_rng(2)
    diff = rng.normal(100, 200, size=300)
    p = 1 / (1 + np.exp(-(0.2 + 0.004 * diff)))
    y = (rng.random(300) < p).astype(float)
    y[::7] = 0.5  # ties
    fit = sm.GLM(y, sm.add_constant(diff / np.std(diff)), family=sm.families.Binomial()).fit()
    expected = 1 / (1 + np.exp(-fit.params[0]))
    assert stats.length_controlled(y, diff) == pytest.approx(expected, rel=1e-7)
    b0, b1 = stats.logistic_fit(y, diff)
    ref = sm.GLM(y, sm.add_constant(diff), family=sm.families.Binomial()).fit().params
    assert (b0, b1) == pytest.approx(tuple(ref), rel=1e-6)


def test_bradley_terry_matches_statsmodels_on_the_same_design():
    import statsmodels.api as sm

    rng = np.random.default_rng(3)
    names = ["inc", "a", "b", "c"]
    truth = {"inc": 0.0, "a": 0.8, "b": -0.5, "c": 0.2}
    battles = []
    for _ in range(600):
        i, j = rng.choice(4, 2, replace=False)
        pa = 1 / (1 + np.exp(truth[names[j]] - truth[names[i]]))
        battles.append((names[i], names[j], float(rng.random() < pa)))
    fitted = stats.bradley_terry(battles, "inc")
    free = names[1:]
    X = np.array([[(a == m) - (b == m) for m in free] for a, b, _ in battles], dtype=float)
    y = np.array([s for _, _, s in battles])
    ref = sm.GLM(y, X, family=sm.families.Binomial()).fit().params
    assert [fitted[m] for m in free] == pytest.approx(list(ref), abs=1e-4)  # the ridge is 1e-6


def test_cohen_kappa_matches_statsmodels():
    from statsmodels.stats.inter_rater import cohens_kappa

    a = ["win", "tie", "loss", "win", "win", "loss", "tie", "win", "loss", "loss"]
    b = ["win", "loss", "loss", "win", "tie", "loss", "tie", "win", "win", "loss"]
    cats = ["win", "tie", "loss"]
    table = np.array([[sum(x == p and y == q for x, y in zip(a, b)) for q in cats] for p in cats])
    assert stats.cohen_kappa(a, b) == pytest.approx(cohens_kappa(table).kappa)


# --------------------------------------------------------------------------- the grader and the contract


def test_verdicts_both_orders_and_missing_incumbent():
    from harness.graders import grade
    from harness.graders.pairwise import JudgeReply, PairwiseContext, outcome, parse_choice
    from harness.records import Item

    assert parse_choice("Reasoning.\nVERDICT: B") == "B" and parse_choice("**Verdict: tie**") == "TIE"
    assert parse_choice("VERDICT: A\nVERDICT: B") is None and parse_choice("A is better") is None
    assert outcome("A", "B") == "win" and outcome("B", "A") == "loss" and outcome("A", "A") == "tie"
    assert outcome("TIE", "B") == "tie" and outcome(None, "B") is None
    seen = []

    def ask(judge, messages):
        seen.append(messages[-1].content)
        return JudgeReply("VERDICT: A", 0.001, 1)  # a judge that always prefers the first answer

    context = PairwiseContext(("j",), ask, lambda t, f: f"{f['answer_a']} | {f['answer_b']}", lambda: ("old", ""))
    g = grade("pairwise", "new", Item(id="1", fields={}), {"context": context})
    assert seen == ["new | old", "old | new"] and g.score == 0.5 and "j: tie" in g.reason
    detail = json.loads(g.extracted)
    assert detail["judges"][0]["cost"] == pytest.approx(0.002) and detail["len_candidate"] == 3
    missing = PairwiseContext(("j",), ask, lambda t, f: "", lambda: (None, "the incumbent failed: 500"))
    g = grade("pairwise", "new", Item(id="1", fields={}), {"context": missing})
    assert not g.passed and "not judged: the incumbent failed" in g.reason


def test_incumbent_must_be_a_plan_model(tmp_path):
    import subprocess
    import sys

    plan = tmp_path / "p.yaml"
    plan.write_text(
        yaml.safe_dump(
            {"models": {"a": {"provider": "openai", "base_url": "http://x"}}, "suites": ["gsm8k"], "incumbent": "b"}
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(plan), "--dry-run"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "incumbent: 'b' is not one of the plan's models" in proc.stderr


def test_pairwise_json_contract_and_human_agreement(tmp_path, fake_server, db_url, monkeypatch):
    import subprocess
    import sys

    n = 12
    answers = {"cand": {i: answer(i, 6 if i % 2 else 4) for i in range(n)}}
    store, result = _run(tmp_path, fake_server, db_url, monkeypatch, n, answers, {"judge": "truthful"})
    items = {s.item_id: s for s in store.samples(result.run_id)}
    human = tmp_path / "human.jsonl"
    # The human agrees with the judge on every item but one.
    rows = []
    for k, (item, s) in enumerate(sorted(items.items())):
        verdict = "win" if s.score == 1 else "loss"
        if k == 0:
            verdict = "tie"
        rows.append(json.dumps({"item": item, "model": "cand", "verdict": verdict}))
    human.write_text("\n".join(rows) + "\n")
    cmd = [sys.executable, "-m", "harness", "pairwise", "--db", db_url, "--json", "--human", str(human)]
    doc = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout)
    assert doc["run"] == result.run_id
    (r,) = doc["results"]
    for key in ("model", "suite", "n", "wins", "ties", "losses", "win_rate", "win_rate_lo", "win_rate_hi"):
        assert key in r
    assert "lc_win_rate" in r and "order_flips" in r
    assert (r["wins"], r["losses"], r["win_rate"]) == (n // 2, n // 2, 0.5)
    (agree,) = [a for a in doc["agreement"] if a["second"] == "human"]
    assert agree["n"] == n and agree["agreement"] == pytest.approx((n - 1) / n)


def test_a_failing_incumbent_makes_errors_not_losses(tmp_path, fake_server, db_url, monkeypatch):
    from harness.traffic.pairwise import pairwise_report

    n = 6
    fake_server.state.faults.unauthorized_models = frozenset({"inc"})  # a revoked key: the incumbent never answers
    answers = {"inc": {i: answer(i, 5) for i in range(n)}, "cand": {i: answer(i, 6) for i in range(n)}}
    store, result = _run(
        tmp_path, fake_server, db_url, monkeypatch, n, answers, {"judge": "truthful"}, {"incumbent": "inc"}
    )
    cand = [s for s in store.samples(result.run_id) if s.model == "cand"]
    assert len(cand) == n and all(s.error.startswith("pairwise: not judged: the incumbent inc failed") for s in cand)
    assert not any(b["model"] == "judge" for b in fake_server.state.bodies)  # nothing to compare: no judge asked
    (r,) = pairwise_report(store, result.run_id).results
    assert (r.n, r.errors) == (0, n)


def test_verdicts_are_cached_even_without_the_plans_cache(tmp_path, fake_server, db_url, monkeypatch):
    from harness.engine.runs import execute_plan
    from harness.plan import load_plan
    from harness.traffic.pairwise import pairwise_report

    n = 8
    answers = {"cand": {i: answer(i, 6 if i % 2 else 5) + " (c)" for i in range(n)}}
    store, result = _run(tmp_path, fake_server, db_url, monkeypatch, n, answers, {"judge": "truthful"})
    assert fake_server.state.requests == n + 2 * n
    again = execute_plan(load_plan(tmp_path / "plan.yaml"), store, new=True)
    assert fake_server.state.requests == 2 * n + 2 * n  # the candidate is asked again (no cache:), the judge is not
    first, second = pairwise_report(store, result.run_id).results[0], pairwise_report(store, again.run_id).results[0]
    assert second.win_rate == first.win_rate and second.judge_requests == 0 and second.judge_cost == 0


def test_a_batched_candidate_is_judged_when_its_batch_returns(tmp_path, fake_server, db_url, monkeypatch):
    from harness.traffic.pairwise import pairwise_report

    monkeypatch.setenv("HARNESS_BATCH_POLL_S", "0.02")
    n = 10
    answers = {"cand": {i: answer(i, 6 if i % 2 else 4) for i in range(n)}}
    store, result = _run(tmp_path, fake_server, db_url, monkeypatch, n, answers, {"judge": "truthful"}, batched=True)
    assert fake_server.state.batch.lines_answered == n  # the candidate answered through the Batch API
    (r,) = pairwise_report(store, result.run_id).results
    assert (r.n, r.wins, r.losses, r.judge_requests) == (n, n // 2, n // 2, 2 * n)  # judges asked online


def test_a_batched_incumbent_is_refused_in_one_line(tmp_path, fake_server, db_url, monkeypatch):
    from harness.errors import HarnessError

    answers = {"inc": {0: answer(0, 5)}, "cand": {0: answer(0, 6)}}
    with pytest.raises(HarnessError, match="the incumbent inc is sent through a Batch API"):
        _run(tmp_path, fake_server, db_url, monkeypatch, 1, answers, {"judge": "truthful"}, {"incumbent": "inc"}, True)


def test_a_judge_without_verdicts_gives_errors_and_its_calls_are_still_paid(tmp_path, fake_server, db_url, monkeypatch):
    from harness.traffic.pairwise import pairwise_report

    n = 5
    answers = {"cand": {i: answer(i, 6) for i in range(n)}}
    store, result = _run(tmp_path, fake_server, db_url, monkeypatch, n, answers, {"mum": "mute"})
    samples = list(store.samples(result.run_id))
    assert all(s.error.startswith("pairwise: not judged: no readable verdict") and s.score == 0 for s in samples)
    (r,) = pairwise_report(store, result.run_id).results
    assert (r.n, r.errors, r.judge_requests) == (0, n, 2 * n) and r.judge_cost > 0
