"""Cached input, priced: both usage forms read, the stored cost split at the cached price (checked by hand),
what the summary, report, export and `harness check` show, and an older database given the new column."""

from __future__ import annotations

import json
import sqlite3

import pytest
import yaml
from click.testing import CliRunner

from harness.analysis.checks import check_run
from harness.analysis.summary import cache_and_window_notes, summarize_run
from harness.cli import cli
from harness.engine.runs import execute_plan
from harness.plan import load_plan, parse_plan, plan_to_dict
from harness.providers.openai_body import read_usage
from harness.store import Store

PRICE = {"input": 2.0, "output": 8.0, "cached_input": 0.5}


def price_of(price: dict):
    plan = {"models": {"m": {"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "price": price}}}
    return parse_plan({**plan, "suites": ["math-word"]}).models[0].price


@pytest.mark.parametrize(
    "usage, prompt, cached",
    [
        ({"prompt_tokens": 1000, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 640}}, 1000, 640),
        ({"prompt_tokens": 1000, "completion_tokens": 5, "prompt_cache_hit_tokens": 640}, 1000, 640),
        # DeepSeek's split without a total: the prompt is hits plus misses.
        ({"completion_tokens": 5, "prompt_cache_hit_tokens": 640, "prompt_cache_miss_tokens": 360}, 1000, 640),
        ({"prompt_tokens": 1000, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 0}}, 1000, 0),
        ({"prompt_tokens": 1000, "completion_tokens": 5, "prompt_cache_hit_tokens": 0}, 1000, 0),
        ({"prompt_tokens": 1000, "completion_tokens": 5}, 1000, None),  # not reported: unknown, not 0
        ({"prompt_tokens": 1000, "completion_tokens": 5, "prompt_tokens_details": None}, 1000, None),
        ({"prompt_tokens": 1000, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": "x"}}, 1000, None),
        ({"prompt_tokens": 100, "completion_tokens": 5, "prompt_cache_hit_tokens": 900}, 100, 100),  # clamped
    ],
)
def test_both_usage_forms_are_read_and_unreported_stays_unknown(usage, prompt, cached):
    counts = read_usage(usage, ["some prompt"], "answer", "")
    assert (counts.prompt_tokens, counts.cached_tokens, counts.estimated) == (prompt, cached, False)


def test_the_cost_formula_by_hand():
    price = price_of(PRICE)
    # (1000 - 600)·2 + 600·0.5 + 100·8 = 800 + 300 + 800 = 1900 per million
    assert price.cost(1000, 100, cached_tokens=600) == pytest.approx(1900 / 1e6)
    assert price.cost(1000, 100, cached_tokens=None) == pytest.approx((2000 + 800) / 1e6)
    assert price.cost(1000, 100, cached_tokens=0) == pytest.approx((2000 + 800) / 1e6)
    # Batched at half price: every rate halves, the cached one too: (400·1 + 600·0.25 + 100·4) = 950.
    batched = price_of({**PRICE, "batch_discount": 0.5})
    assert batched.cost(1000, 100, batched=True, cached_tokens=600) == pytest.approx(950 / 1e6)
    # No cached price: cache hits are billed as input (the server's cache saved nothing on the bill).
    plain = price_of({"input": 2.0, "output": 8.0})
    assert plain.cost(1000, 100, cached_tokens=600) == pytest.approx(2800 / 1e6)
    # A plan without the key keeps its fingerprint (no cached_input in the stored plan).
    bare = parse_plan({"models": {"x": {"provider": "openai", "base_url": "http://h/v1"}}, "suites": ["s"]})
    assert "cached_input" not in plan_to_dict(bare)["models"][0]["price"]


def fewshot_plan(tmp_path, server, name: str, price: dict, *, stream: bool = False):
    path = tmp_path / f"{name}.yaml"
    model = {"provider": "openai", "base_url": server.base_url, "model": "m", "price": price, "concurrency": 1}
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "suites": [{"math-word": {"limit": 6, "fewshot": 3}}],
                "models": {"m": {**model, "stream": stream}},
                "generation": {"max_tokens": 16},
            }
        )
    )
    return path


@pytest.mark.parametrize("form, stream", [("openai", False), ("deepseek", False), ("openai", True)])
def test_a_fewshot_run_stores_cached_tokens_and_costs_them_at_the_cached_price(
    tmp_path, fake_server, db_url, form, stream
):
    fake_server.state.faults.prompt_cache = form
    store = Store(db_url)
    result = execute_plan(load_plan(fewshot_plan(tmp_path, fake_server, "fewshot", PRICE, stream=stream)), store)
    samples = list(store.samples(result.run_id))
    assert len(samples) == 6
    # The first request found nothing cached; the shared few-shot prefix is a hit on every later one.
    assert sorted(s.cached_tokens for s in samples)[0] == 0 and sum(s.cached_tokens > 0 for s in samples) >= 5
    for s in samples:
        assert 0 <= s.cached_tokens < s.prompt_tokens and not s.usage_estimated
        by_hand = ((s.prompt_tokens - s.cached_tokens) * 2.0 + s.cached_tokens * 0.5 + s.completion_tokens * 8.0) / 1e6
        assert s.cost_usd == pytest.approx(by_hand)
    ops = summarize_run(store, result.run_id).ops[0]
    cached, prompt = sum(s.cached_tokens for s in samples), sum(s.prompt_tokens for s in samples)
    assert (ops.cached_tokens, ops.prompt_tokens) == (cached, prompt)
    assert ops.cache_saved_usd == pytest.approx(cached * 1.5 / 1e6)
    (note,) = cache_and_window_notes(ops)
    assert f"{cached / prompt:.0%} of input tokens were cached" in note and "saving $" in note


def test_with_and_without_cache_hits_and_what_every_view_shows(tmp_path, fake_server, db_url, capsys):
    store = Store(db_url)
    plan = fewshot_plan(tmp_path, fake_server, "weekly", PRICE)
    cold = execute_plan(load_plan(plan), store)  # this server reports no cache: cached tokens unknown
    fake_server.state.faults.prompt_cache = "deepseek"
    warm = execute_plan(load_plan(plan), store, new=True)
    cold_samples, warm_samples = list(store.samples(cold.run_id)), list(store.samples(warm.run_id))
    assert all(s.cached_tokens is None for s in cold_samples)
    cold_cost, warm_cost = sum(s.cost_usd for s in cold_samples), sum(s.cost_usd for s in warm_samples)
    assert warm_cost < cold_cost
    print(f"few-shot run: ${cold_cost:.6f} without cache hits, ${warm_cost:.6f} with them")
    assert summarize_run(store, cold.run_id).ops[0].cached_tokens is None
    assert cache_and_window_notes(summarize_run(store, cold.run_id).ops[0]) == []
    runner = CliRunner()
    shown = runner.invoke(cli, ["runs", "show", warm.run_id, "--db", db_url])
    assert shown.exit_code == 0 and "of input tokens were cached" in shown.output, shown.output
    out = runner.invoke(cli, ["export", warm.run_id, "--format", "jsonl", "--db", db_url])
    rows = [json.loads(line) for line in out.output.splitlines() if line.strip()]
    assert [r["cached_tokens"] for r in rows] == [s.cached_tokens for s in warm_samples]
    cold_rows = runner.invoke(cli, ["export", cold.run_id, "--format", "jsonl", "--db", db_url]).output
    assert all(json.loads(line)["cached_tokens"] is None for line in cold_rows.splitlines() if line.strip())
    report = tmp_path / "report"
    made = runner.invoke(cli, ["report", warm.run_id, "--out", str(report), "--db", db_url])
    assert made.exit_code == 0, made.output
    page = "".join(p.read_text() for p in report.rglob("*.html"))
    assert "of input tokens were cached" in page


def test_check_alarms_when_the_cached_price_changes(tmp_path, fake_server, db_url):
    store = Store(db_url)
    execute_plan(load_plan(fewshot_plan(tmp_path, fake_server, "p", PRICE)), store)
    second = execute_plan(load_plan(fewshot_plan(tmp_path, fake_server, "p", {**PRICE, "cached_input": 0.2})), store)
    alarms = [a for a in check_run(store, second.run_id).alarms if a.kind == "price"]
    assert len(alarms) == 1 and "cached-input price per million tokens changed from $0.5 to $0.2" in alarms[0].detail


def test_an_older_database_gets_the_cached_price_column(tmp_path):
    db = tmp_path / "old.db"
    Store(f"sqlite:///{db}").close()
    con = sqlite3.connect(db)
    con.execute("ALTER TABLE run_models DROP COLUMN price_cached_input")
    con.commit()
    con.close()
    from sqlalchemy import inspect

    store = Store(f"sqlite:///{db}")
    assert "price_cached_input" in {c["name"] for c in inspect(store.engine).get_columns("run_models")}


def test_dry_run_shows_the_estimate_with_cache_hits(tmp_path, fake_server, db_url):
    plan = fewshot_plan(tmp_path, fake_server, "dry", PRICE)
    out = CliRunner().invoke(cli, ["run", str(plan), "--dry-run", "--db", db_url])
    assert out.exit_code == 0, out.output
    line = next(ln for ln in out.output.splitlines() if ln.strip().startswith("m "))
    listed, cached = (float(part.split("~$")[1].split()[0]) for part in line.split(";"))
    # Six 3-shot prompts share their shots: five of them could be mostly cache hits at a quarter of the price.
    assert cached < 0.75 * listed and "if the server caches the prompts' shared starts" in line
    assert fake_server.state.requests == 0
