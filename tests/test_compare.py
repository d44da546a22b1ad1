"""`harness compare` end to end: real runs of `samples` models whose right and wrong answers are chosen
item by item, so every discordant count is known and each p-value is checked against an independent
computation (scipy's binomial test, statsmodels' corrections, brute-force permutation enumeration)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from scipy.stats import binomtest
from statsmodels.stats.multitest import multipletests
from support.cli import invoke
from support.postgres import on_both_databases

from harness.analysis.compare import compare_models, compare_runs, previous_run, to_json
from harness.cli import cli
from harness.engine.runs import execute_plan
from harness.errors import HarnessError
from harness.plan import load_plan
from harness.store import Store
from harness.suite import load_suite
from harness.suite.prompt import PromptBuilder

_ITEMS: dict[str, list] = {}


def items(suite: str) -> list:
    """[(item, right answer, wrong answer)] of a bundled suite, in file order."""
    if suite not in _ITEMS:
        s = load_suite(suite)
        builder = PromptBuilder(s)
        out = []
        for item in s.items():
            right = builder.reference_response(item)
            if suite == "zh-mcq":
                gold = item.reference.strip()
                wrong = "答案：" + next(x for x in "ABCD" if x != gold)
            else:
                wrong = "-987654321"
            out.append((item, right, wrong))
        _ITEMS[suite] = out
    return _ITEMS[suite]


def make_run(
    tmp_path,
    db_url,
    models: dict,
    suite: str = "math-word",
    *,
    limit: int | None = None,
    samples: int = 1,
    plan_name: str = "cmp",
    fewshot: int | None = None,
    tag: str = "",
) -> str:
    """Run a plan of `samples` models on one suite; returns the run id.

    models: name -> a set of item indexes answered right (every sample), or a function
    (item index, sample index) -> bool.
    """
    rows = items(suite)[:limit] if limit else items(suite)
    spec = {}
    for name, right in models.items():
        ok = right if callable(right) else (lambda i, k, right=right: i in right)
        path = tmp_path / f"{plan_name}-{name}-{suite}-{len(list(tmp_path.iterdir()))}.jsonl"
        with open(path, "w", encoding="utf-8") as fh:
            for i, (item, good, bad) in enumerate(rows):
                for k in range(samples):
                    fh.write(
                        json.dumps({"task_id": item.id, "completion": good if ok(i, k) else bad}, ensure_ascii=False)
                        + "\n"
                    )
        spec[name] = {"provider": "samples", "path": str(path)}
    suite_ref: dict = {}
    if limit:
        suite_ref["first"] = limit  # the rows above: the head of the file
    if fewshot is not None:
        suite_ref["fewshot"] = fewshot
    plan = {
        "name": plan_name,
        "models": spec,
        "suites": [{suite: suite_ref} if suite_ref else suite],
        "samples": samples,
    }
    plan_path = tmp_path / f"{plan_name}.yaml"
    plan_path.write_text(yaml.safe_dump(plan, allow_unicode=True, sort_keys=False))
    result = execute_plan(load_plan(plan_path), Store(db_url), new=True, tag=tag)
    assert result.status == "finished"
    return result.run_id


def compare_json(db_url, *args, ok_codes=(0,)) -> dict:
    return json.loads(invoke("compare", "--db", db_url, "--json", *args, ok_codes=ok_codes).stdout)


# -- known discordant counts -> exact McNemar ------------------------------------------------

# On 30 math-word items: a right on 0..24, b right on 9..26 plus nothing else. Discordant:
# a right & b wrong on items 0..8 (9), b right & a wrong on 25, 26 (2).
A_RIGHT = set(range(25))
B_RIGHT = set(range(9, 27))
C_RIGHT = set(range(3, 30))  # a third model: the tests count its discordances from the sets


def test_two_models_report_exactly_the_mcnemar_p_value(tmp_path, db_url):
    run = make_run(tmp_path, db_url, {"a": A_RIGHT, "b": B_RIGHT}, limit=30)
    doc = compare_json(db_url, run)
    assert doc["kind"] == "models" and doc["runs"][0]["run"] == run
    assert doc["correction"] == "holm" and doc["alpha"] == 0.05 and doc["regressions"] == []
    (c,) = doc["comparisons"]
    assert c["suite"] == "math-word" and c["method"] == "mcnemar-exact"
    assert (c["a"]["model"], c["b"]["model"]) == ("a", "b")
    assert (c["discordant_a"], c["discordant_b"]) == (9, 2)
    expected = binomtest(9, 11, 0.5).pvalue
    assert c["p_value"] == pytest.approx(expected, abs=1e-12)
    assert c["p_adjusted"] == pytest.approx(expected, abs=1e-12)  # one comparison: nothing to correct
    assert c["significant"] is False and expected > 0.05 and c["marker"] == ""
    assert c["n_paired"] == 30 and c["a"]["n"] == 30 and c["b"]["n"] == 30
    assert c["a"]["mean"] == pytest.approx(25 / 30) and c["b"]["mean"] == pytest.approx(18 / 30)
    assert c["diff"] == pytest.approx(18 / 30 - 25 / 30)
    assert c["diff_lo"] < c["diff"] < c["diff_hi"]
    assert c["a"]["lo"] < c["a"]["mean"] < c["a"]["hi"]
    # MDE with the observed discordance 11/30 (normal approximation to McNemar, 80% power).
    from scipy.stats import norm

    assert c["mde"] == pytest.approx((norm.ppf(0.975) + norm.ppf(0.8)) * np.sqrt(11 / 30 / 30), abs=1e-12)
    for key in ("latency_p50", "latency_p99", "error_rate", "cost_usd", "cost_per_correct", "suite_hash"):
        assert key in c["a"] and key in c["b"]
    assert c["a"]["error_rate"] == 0.0 and c["suite_hash"] == c["a"]["suite_hash"]


def test_every_pair_is_corrected_together(tmp_path, db_url):
    sets = {"a": A_RIGHT, "b": B_RIGHT, "c": C_RIGHT}
    make_run(tmp_path, db_url, sets, limit=30)
    raw = []
    for x, y in (("a", "b"), ("a", "c"), ("b", "c")):
        x_only, y_only = len(sets[x] - sets[y]), len(sets[y] - sets[x])
        raw.append((x, y, x_only, y_only, binomtest(x_only, x_only + y_only, 0.5).pvalue))
    for correction, sm_method in (("holm", "holm"), ("bh", "fdr_bh")):
        doc = compare_json(db_url, "--correction", correction)
        assert doc["correction"] == correction
        got = [(c["a"]["model"], c["b"]["model"], c["discordant_a"], c["discordant_b"]) for c in doc["comparisons"]]
        assert got == [r[:4] for r in raw]
        adjusted = multipletests([r[4] for r in raw], method=sm_method)[1]
        for c, (_, _, _, _, p), adj in zip(doc["comparisons"], raw, adjusted):
            assert c["p_value"] == pytest.approx(p, abs=1e-12)
            assert c["p_adjusted"] == pytest.approx(adj, abs=1e-12)
            assert c["significant"] is bool(adj < 0.05)


def test_grouped_suite_permutes_whole_groups_unless_told_not_to(tmp_path, db_url):
    rows = items("zh-mcq")
    # a right everywhere; b wrong on the first 2 items of each subject and on 3 more of the first.
    seen: dict[str, int] = {}
    b_right = set()
    for i, (item, _, _) in enumerate(rows):
        k = seen.get(item.group, 0)
        seen[item.group] = k + 1
        if not (k < 2 or (item.group == rows[0][0].group and k < 5)):
            b_right.add(i)
    run = make_run(tmp_path, db_url, {"a": set(range(len(rows))), "b": b_right}, suite="zh-mcq")
    doc = compare_json(db_url, run)
    (c,) = doc["comparisons"]
    n_subjects = len({item.group for item, _, _ in rows})
    assert (c["discordant_a"], c["discordant_b"]) == (len(rows) - len(b_right), 0)
    if n_subjects < 10:
        # The bundled zh-mcq has a handful of subjects: too few to permute whole groups, and it says so.
        assert c["method"] == "mcnemar-exact" and f"{n_subjects} groups are too few" in c["note"]
    else:
        assert c["method"] == "cluster-permutation"
        # Independent reference: enumerate every sign pattern of the per-subject sums of (b - a).
        sums: dict[str, float] = {}
        for i, (item, _, _) in enumerate(rows):
            sums[item.group] = sums.get(item.group, 0.0) + ((i in b_right) - 1.0)
        values = np.array(list(sums.values()))
        observed = abs(values.sum())
        hits = sum(
            abs(np.dot(signs, values)) >= observed - 1e-9 for signs in itertools.product((1, -1), repeat=len(values))
        )
        assert c["p_value"] == pytest.approx(hits / 2 ** len(values), abs=1e-12)
    # Treating items as independent: the exact McNemar test again.
    (c2,) = compare_json(db_url, run, "--no-clusters")["comparisons"]
    assert c2["method"] == "mcnemar-exact"
    assert c2["p_value"] == pytest.approx(binomtest(0, len(rows) - len(b_right), 0.5).pvalue, abs=1e-12)


def test_several_samples_per_item_compare_per_item_means_by_permutation(tmp_path, db_url):
    # 12 items, 2 samples each. a: both samples right on 0..9; b: one sample right on 0..5,
    # both right on 6..11. Per-item mean differences (b - a): -0.5 x6, 0 x4, +1 x2.
    a = lambda i, k: i < 10  # noqa: E731
    b = lambda i, k: (i < 6 and k == 0) or i >= 6  # noqa: E731
    run = make_run(tmp_path, db_url, {"a": a, "b": b}, limit=12, samples=2)
    (c,) = compare_json(db_url, run)["comparisons"]
    assert c["method"] == "permutation" and c["n_paired"] == 12
    d = np.array([-0.5] * 6 + [0.0] * 4 + [1.0] * 2)
    assert c["diff"] == pytest.approx(d.mean())
    nz = d[d != 0]
    hits = sum(abs(np.dot(s, nz)) >= abs(nz.sum()) - 1e-9 for s in itertools.product((1, -1), repeat=nz.size))
    assert c["p_value"] == pytest.approx(hits / 2**nz.size, abs=1e-12)
    assert (c["discordant_a"], c["discordant_b"]) == (6, 2)
    assert c["mde"] == pytest.approx((1.959963984540054 + 0.8416212335729143) * d.std(ddof=1) / np.sqrt(12), rel=1e-9)


# -- baseline mode ------------------------------------------------------------------------


def test_baseline_mode_compares_each_model_against_the_baseline(tmp_path, db_url):
    sets = {"a": A_RIGHT, "b": B_RIGHT, "c": C_RIGHT}
    make_run(tmp_path, db_url, sets, limit=30)
    doc = compare_json(db_url, "--baseline", "b")
    assert doc["baseline"] == "b"
    pairs = [(c["a"]["model"], c["b"]["model"]) for c in doc["comparisons"]]
    assert pairs == [("b", "a"), ("b", "c")]
    raw = [binomtest(len(sets["b"] - sets[m]), len(sets["b"] ^ sets[m]), 0.5).pvalue for m in ("a", "c")]
    adjusted = multipletests(raw, method="holm")[1]
    for c, m, p, adj in zip(doc["comparisons"], ("a", "c"), raw, adjusted):
        assert c["diff"] == pytest.approx((len(sets[m]) - len(sets["b"])) / 30)
        assert c["p_value"] == pytest.approx(p, abs=1e-12) and c["p_adjusted"] == pytest.approx(adj, abs=1e-12)
    only = compare_json(db_url, "--baseline", "b", "--models", "c")
    assert [(c["a"]["model"], c["b"]["model"]) for c in only["comparisons"]] == [("b", "c")]
    assert only["comparisons"][0]["p_adjusted"] == pytest.approx(only["comparisons"][0]["p_value"])
    two = compare_json(db_url, "--models", "a,c")
    assert [(c["a"]["model"], c["b"]["model"]) for c in two["comparisons"]] == [("a", "c")]
    # Text output: the table names the models and the significance marker.
    text = invoke("compare", "--db", db_url, "--baseline", "b", "--all").stdout
    assert "math-word" in text and "Holm" in text and "p adj" in text and "per correct" in text
    bad = CliRunner().invoke(cli, ["compare", "--db", db_url, "--baseline", "nope"])
    assert isinstance(bad.exception, HarnessError) and "no model 'nope'" in str(bad.exception)


def test_single_model_run_points_to_run_comparisons(tmp_path, db_url):
    make_run(tmp_path, db_url, {"solo": A_RIGHT}, limit=30)
    with pytest.raises(HarnessError, match="only one model.*compare two runs"):
        compare_models(Store(db_url))


# -- runs across time -------------------------------------------------------------------------


@on_both_databases
def test_regression_across_runs_is_detected_and_fails_the_check(tmp_path, db_url):
    everything = set(range(40))
    old = make_run(tmp_path, db_url, {"m": everything, "steady": everything}, limit=40)
    new = make_run(tmp_path, db_url, {"m": everything - set(range(10)), "steady": everything}, limit=40)
    store = Store(db_url)
    result = compare_runs(store, old, new)
    assert result.kind == "runs" and [r.id for r in result.runs] == [old, new]
    assert [c.a.model for c in result.comparisons] == ["m", "steady"]
    (reg,) = result.regressions
    assert reg.a.model == "m" and reg.a.run == old and reg.b.run == new
    assert reg.diff == pytest.approx(-10 / 40) and reg.marker == "▼"
    assert reg.p_value == pytest.approx(binomtest(0, 10, 0.5).pvalue, abs=1e-12)
    # 'steady' has no discordance: p = 1, MDE not identified (null in JSON).
    steady = result.comparisons[1]
    assert steady.p_value == 1.0 and not steady.significant
    doc = to_json(result)
    assert doc["comparisons"][1]["mde"] is None and len(doc["regressions"]) == 1

    res = CliRunner().invoke(cli, ["compare", "--db", db_url, old, new, "--fail-on-regression", "--json"])
    assert res.exit_code == 1, res.output
    parsed = json.loads(res.stdout)
    assert parsed["kind"] == "runs" and [r["run"] for r in parsed["runs"]] == [old, new]
    assert parsed["regressions"][0]["a"]["model"] == "m" and parsed["regressions"][0]["diff"] == pytest.approx(-0.25)
    res = CliRunner().invoke(cli, ["compare", "--db", db_url, "--against-previous", "--fail-on-regression"])
    assert res.exit_code == 1 and "REGRESSION" in res.stdout and "▼" in res.stdout
    # Without the flag the same regression is reported but the exit status stays 0.
    assert invoke("compare", "--db", db_url, old, new).exit_code == 0
    # A later run with the same answers: no drop, the check passes.
    newer = make_run(tmp_path, db_url, {"m": everything - set(range(10)), "steady": everything}, limit=40)
    assert previous_run(store, newer) == new and previous_run(store) == new
    res = invoke("compare", "--db", db_url, "--against-previous", "--fail-on-regression")
    assert "no significant regression" in res.stdout
    # An improvement is significant but is not a regression.
    doc = compare_json(db_url, new, old, "--fail-on-regression")
    assert doc["regressions"] == [] and doc["comparisons"][0]["marker"] == "▲"
    assert any("started after" in n for n in doc["notes"])


def test_previous_run_is_of_the_same_plan(tmp_path, db_url):
    first = make_run(tmp_path, db_url, {"m": A_RIGHT}, limit=30, plan_name="weekly")
    make_run(tmp_path, db_url, {"m": A_RIGHT}, limit=30, plan_name="other")
    second = make_run(tmp_path, db_url, {"m": A_RIGHT}, limit=30, plan_name="weekly")
    assert previous_run(Store(db_url), second) == first
    with pytest.raises(HarnessError, match="first run of plan 'weekly'"):
        previous_run(Store(db_url), first)


def test_changed_suite_content_is_refused_unless_allowed(tmp_path, db_url):
    old = make_run(tmp_path, db_url, {"m": set(range(20))}, limit=20)  # math-word, 3 shots (default)
    new = make_run(tmp_path, db_url, {"m": set(range(5, 30))}, limit=30, fewshot=0)  # other prompt: new hash
    with pytest.raises(HarnessError, match="--allow-hash-mismatch"):
        compare_runs(Store(db_url), old, new)
    # Through the real entry point: one line on stderr, exit status 2.
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "compare", "--db", db_url, old, new],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: suite content differs") and "math-word" in proc.stderr
    assert "Traceback" not in proc.stderr
    doc = compare_json(db_url, old, new, "--allow-hash-mismatch")
    (c,) = doc["comparisons"]
    assert c["hash_mismatch"] is True and c["a"]["suite_hash"] != c["b"]["suite_hash"] == c["suite_hash"]
    assert c["n_paired"] == 20 and c["a"]["n_items"] == 20 and c["b"]["n_items"] == 30
    assert "suite hash differs" in c["note"] and "20 items" in c["note"]
    # Only the shared 20 items count: b is right on 5..19 there.
    assert c["b"]["n"] == 20 and c["b"]["mean"] == pytest.approx(15 / 20)
    assert (c["discordant_a"], c["discordant_b"]) == (5, 0)
    assert c["p_value"] == pytest.approx(binomtest(5, 5, 0.5).pvalue, abs=1e-12)


def test_usage_errors(tmp_path, db_url):
    run = make_run(tmp_path, db_url, {"a": A_RIGHT, "b": B_RIGHT}, limit=30)
    for args in (
        ["--fail-on-regression"],
        [run, run, run],
        ["--baseline", "a", run, run],
        ["--correction", "bonferroni"],
        ["--alpha", "1.5"],
    ):
        res = CliRunner().invoke(cli, ["compare", "--db", db_url, *args])
        assert res.exit_code == 2, (args, res.output)
    with pytest.raises(HarnessError, match="no suite 'gsm8k'"):
        compare_models(Store(db_url), run, suites=["gsm8k"])
    with pytest.raises(HarnessError, match="both runs"):
        compare_runs(Store(db_url), run, run[:-1])


def test_nan_values_are_json_null(tmp_path, db_url):
    run = make_run(tmp_path, db_url, {"none": set(), "all": set(range(10))}, limit=10)
    doc = compare_json(db_url, run)
    (c,) = doc["comparisons"]
    assert c["a"]["cost_per_correct"] is None and c["b"]["cost_per_correct"] == 0.0
    assert c["significant"] is True and c["marker"] == "▲"


# -- runs list / show / export ------------------------------------------------------------


EXPORT_FIELDS = [
    "run",
    "model",
    "suite",
    "suite_hash",
    "item_id",
    "sample_index",
    "prompt",
    "completion",
    "extracted",
    "reference",
    "score",
    "passed",
    "grade_reason",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "latency_s",
    "ttft_s",
    "cost_usd",
    "served_model",
    "error",
    "batched",
    "finish_reason",
    "usage_estimated",
    "tool_calls",
    "cached_tokens",
    "tool_outcome",
    "transcript",
    "item",
]


def test_runs_list_show_and_export(tmp_path, db_url):
    import csv
    import io

    run = make_run(tmp_path, db_url, {"a": {0, 1, 2}, "b": {3}}, limit=5, tag="weekly")
    listed = json.loads(invoke("runs", "list", "--db", db_url, "--json").stdout)
    assert listed == [
        {
            "run": run,
            "plan": "cmp",
            "tag": "weekly",
            "status": "finished",
            "started": listed[0]["started"],
            "samples": 10,
        }
    ]
    assert run in invoke("runs", "list", "--db", db_url).stdout
    shown = invoke("runs", "show", run[:-1], "--db", db_url).stdout
    assert run in shown and "model a" in shown and "model b" in shown and "suite math-word" in shown
    # JSONL: one object per sample with every documented field; the run is named by a prefix.
    lines = invoke("export", run[:-1], "--db", db_url, "--format", "jsonl").stdout.splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 10 and all(list(r) == EXPORT_FIELDS for r in rows)
    assert {(r["model"], r["item_id"]) for r in rows} == {(m, f"math-word/{i}") for m in "ab" for i in range(5)}
    assert all(r["run"] == run and r["sample_index"] == 0 for r in rows)
    assert sorted(r["item_id"] for r in rows if r["model"] == "a" and r["score"] == 1.0) == [
        "math-word/0",
        "math-word/1",
        "math-word/2",
    ]
    wrong = next(r for r in rows if r["model"] == "b" and r["item_id"] == "math-word/0")
    assert wrong["completion"] == "-987654321" and wrong["passed"] is False and wrong["error"] == ""
    # Replayed completions were never timed: no latency rather than 0 s.
    assert all(r["latency_s"] is None and r["ttft_s"] is None for r in rows)
    assert wrong["extracted"] == "-987654321" and wrong["reference"].lstrip("-").isdigit()
    # CSV: the same rows under a header.
    text = invoke("export", run, "--db", db_url, "--format", "csv").stdout
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == EXPORT_FIELDS
    csv_rows = list(reader)
    assert len(csv_rows) == 10 and csv_rows[0]["run"] == run
    out = tmp_path / "export.csv"
    res = invoke("export", "--db", db_url, "--format", "csv", "--out", str(out))
    assert "wrote 10 rows" in res.stderr and out.read_text(encoding="utf-8") == text


def test_compact_default_shows_significant_and_watch_rows_with_a_minus_b(tmp_path, db_url):
    sets = {"a": A_RIGHT, "b": B_RIGHT, "c": C_RIGHT, "d": set(range(29))}
    make_run(tmp_path, db_url, sets, limit=30)
    doc = compare_json(db_url)
    from harness.analysis.compare import WATCH_MIN_DIFF

    keep = [
        c
        for c in doc["comparisons"]
        if c["significant"] or c["diff_lo"] > 0 or c["diff_hi"] < 0 or abs(c["diff"]) >= WATCH_MIN_DIFF
    ]
    assert 0 < len(keep) < len(doc["comparisons"])
    text = invoke("compare", "--db", db_url).stdout
    rows = [line for line in text.splitlines() if line.startswith("│ math-word")]
    assert len(rows) == len(keep)
    assert f"{len(doc['comparisons']) - len(keep)} other comparisons" in text and "--all" in text
    # A − B, B the model earlier in the plan: the JSON's diff (b − a, a the reference) with the names swapped.
    for c, line in zip(keep, rows):
        cells = [x.strip() for x in line.strip("│").split("│")]
        assert cells[1:3] == [c["b"]["model"], c["a"]["model"]]
        assert cells[5].startswith(f"{100 * c['diff']:+.1f}")
    assert max(len(line) for line in text.splitlines() if line.startswith(("│", "┃", "┏", "└"))) <= 100
    full = invoke("compare", "--db", db_url, "--all").stdout
    assert len([x for x in full.splitlines() if x.startswith("│ math-word")]) >= len(doc["comparisons"])
