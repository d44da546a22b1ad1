"""The command line as a user meets it: one-line errors with exit code 2, and the read commands."""

import json
from pathlib import Path

import pytest
import yaml
from support.cli import assert_clean_error, harness
from support.plans import oracle_responder

REPO = Path(__file__).resolve().parents[1]


def test_help_explains_commands():
    proc = harness("--help")
    assert proc.returncode == 0
    for cmd in ("run", "report", "runs", "suites", "grade", "export"):
        assert cmd in proc.stdout
    run_help = harness("run", "--help").stdout
    assert "--db" in run_help and "--limit" in run_help and "--dry-run" in run_help


def test_missing_plan(tmp_path):
    assert_clean_error(harness("run", "nope.yaml", cwd=tmp_path), "plan file not found", "nope.yaml")


def test_bad_yaml(tmp_path):
    (tmp_path / "p.yaml").write_text("models: [unclosed\n")
    assert_clean_error(harness("run", "p.yaml", cwd=tmp_path), "p.yaml", "invalid YAML")


def test_unknown_suite(tmp_path):
    (tmp_path / "p.yaml").write_text("models: {m: {provider: llamacpp}}\nsuites: [no-such-suite]\n")
    assert_clean_error(
        harness("run", "p.yaml", "--db", f"sqlite:///{tmp_path}/h.db", cwd=tmp_path), "unknown suite 'no-such-suite'"
    )


def test_unknown_provider(tmp_path):
    (tmp_path / "p.yaml").write_text("models: {m: {provider: bedrock}}\nsuites: [math-word]\n")
    assert_clean_error(harness("run", "p.yaml", cwd=tmp_path), "models.m.provider", "got 'bedrock'")


def test_missing_api_key_variable(tmp_path):
    (tmp_path / "p.yaml").write_text(
        "models: {m: {provider: openai, base_url: 'http://127.0.0.1:9/v1', api_key_env: HARNESS_NO_SUCH_KEY}}\n"
        "suites: [math-word]\n"
    )
    assert_clean_error(
        harness("run", "p.yaml", "--db", f"sqlite:///{tmp_path}/h.db", cwd=tmp_path), "HARNESS_NO_SUCH_KEY is not set"
    )


def test_unknown_run_and_empty_db(tmp_path):
    missing = tmp_path / "missing.db"
    # Reading commands never create a database file where there was none.
    for args in (["runs", "show"], ["runs", "list"], ["report"], ["export"], ["compare"], ["check"], ["recommend"]):
        assert_clean_error(harness(*args, "--db", f"sqlite:///{missing}"), "no database at")
        assert not missing.exists(), args
    from harness.store import Store

    Store(f"sqlite:///{tmp_path}/empty.db").close()  # tables, no runs
    assert_clean_error(harness("runs", "show", "--db", f"sqlite:///{tmp_path}/empty.db"), "no runs in")
    assert_clean_error(harness("report", "nope", "--db", f"sqlite:///{tmp_path}/empty.db"), "no run 'nope'")


def test_grade_unknown_suite(tmp_path):
    (tmp_path / "s.jsonl").write_text('{"task_id": "x", "completion": "y"}\n')
    assert_clean_error(harness("grade", "nope", "--samples", str(tmp_path / "s.jsonl")), "unknown suite")


def test_run_then_read_commands(tmp_path, fake_server):
    fake_server.state.responder = oracle_responder(["math-word", "zh-mcq"], wrong={"math-word/0"})
    plan = {
        "name": "cli-test",
        "models": {"m": {"provider": "openai", "base_url": fake_server.base_url, "price": {"output": 1.0}}},
        "suites": [{"math-word": {"first": 3}}, {"zh-mcq": {"limit": 2}}],
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plan))
    db = f"sqlite:///{tmp_path}/h.db"
    proc = harness("run", "p.yaml", "--db", db, "--out", str(tmp_path / "reports"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "math-word" in proc.stdout and "66.7" in proc.stdout  # 2 of 3 right
    report_line = [line for line in proc.stdout.splitlines() if line.startswith("report: ")]
    assert report_line and Path(report_line[0].split(": ", 1)[1]).is_file()

    listing = json.loads(harness("runs", "list", "--db", db, "--json").stdout)
    assert len(listing) == 1 and listing[0]["samples"] == 5 and listing[0]["status"] == "finished"
    shown = harness("runs", "show", "--db", db)
    assert shown.returncode == 0 and "zh-mcq" in shown.stdout

    rows = [json.loads(line) for line in harness("export", "--db", db).stdout.splitlines()]
    assert len(rows) == 5 and {r["suite"] for r in rows} == {"math-word", "zh-mcq"}
    assert {
        "run",
        "model",
        "suite",
        "item_id",
        "sample_index",
        "completion",
        "score",
        "prompt_tokens",
        "completion_tokens",
        "latency_s",
        "cost_usd",
        "error",
    } <= set(rows[0])
    csv_text = harness("export", listing[0]["run"][:15], "--format", "csv", "--db", db).stdout
    import csv
    import io

    csv_rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert csv_text.startswith("run,model,suite") and len(csv_rows) == 5
    assert {r["completion"] for r in csv_rows} == {r["completion"] for r in rows}
    # Each row carries its prompt, the answer the grader read and what it compared it with.
    from harness.graders.numeric import reference_number
    from harness.suite import load_suite

    gold = {i.id: reference_number(i) for i in load_suite("math-word").items()}
    math_rows = [r for r in rows if r["suite"] == "math-word"]
    assert all(r["prompt"] and r["prompt"][-1]["role"] == "user" for r in rows)
    assert all(float(r["reference"]) == gold[r["item_id"]] and "<<" not in r["reference"] for r in math_rows)
    assert {r["extracted"] for r in math_rows} >= {r["reference"] for r in math_rows if r["passed"]}
    assert all(json.loads(c["prompt"]) == r["prompt"] for c, r in zip(csv_rows, rows))


def test_dry_run_sends_nothing(tmp_path, fake_server):
    plan = {
        "models": {
            "m": {"provider": "openai", "base_url": fake_server.base_url, "price": {"input": 1.0, "output": 2.0}}
        },
        "suites": [{"math-word": {"limit": 3}}],
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plan))
    proc = harness("run", "p.yaml", "--dry-run", "--db", f"sqlite:///{tmp_path}/h.db", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "3 items" in proc.stdout and "requests" in proc.stdout and "$" in proc.stdout
    assert fake_server.state.requests == 0
    assert not (tmp_path / "h.db").exists()


def test_suites_list_show_validate():
    listing = harness("suites", "list")
    assert listing.returncode == 0
    for name in ("code-functions", "code-tasks", "math-word", "zh-mcq", "en-reasoning", "humaneval", "ceval"):
        assert name in listing.stdout
    shown = harness("suites", "show", "zh-mcq")
    assert shown.returncode == 0 and "hash:" in shown.stdout and "--- user" in shown.stdout
    valid = harness("suites", "validate", "en-reasoning")
    assert valid.returncode == 0 and "100.0%" in valid.stdout


def test_grade_samples_file_writes_results_and_pass_at_k(tmp_path):
    from harness.suite import load_suite
    from harness.suite.prompt import PromptBuilder

    suite = load_suite("code-functions")
    builder = PromptBuilder(suite)
    items = list(suite.items())[:3]
    rows = []
    for i, item in enumerate(items):
        good = builder.reference_response(item)
        rows += [
            {"task_id": item.id, "completion": good, "extra": i},
            {"task_id": item.id, "completion": good if i == 0 else "    return None\n", "extra": i},
        ]
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = harness("grade", "code-functions", "--samples", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    # per task (n=2): c = 2, 1, 1 -> pass@1 = (1 + .5 + .5)/3, pass@2 = 1
    assert summary["pass_at_k"]["1"] == pytest.approx(2 / 3)
    assert summary["pass_at_k"]["2"] == pytest.approx(1.0)
    results = [json.loads(line) for line in Path(f"{path}_results.jsonl").read_text().splitlines()]
    assert len(results) == 6 and all("passed" in r and "result" in r and "extra" in r for r in results)
    assert [r["passed"] for r in results] == [True, True, True, False, True, False]


def test_piped_tables_keep_names_and_numbers_whole(tmp_path):
    # A replayed model with a long name: piped output (a script, a file) shows every cell whole,
    # and its latency, never measured, as "—" rather than 0.
    from harness.suite import load_suite
    from harness.suite.prompt import PromptBuilder

    suite = load_suite("math-word")
    builder = PromptBuilder(suite)
    name = "smollm2-135m-instruct-q8_0-replayed-from-last-week"
    path = tmp_path / "s.jsonl"
    path.write_text(
        "".join(
            json.dumps({"task_id": i.id, "completion": builder.reference_response(i)}) + "\n"
            for i in list(suite.items())[:4]
        )
    )
    plan = {
        "name": "piped",
        "models": {name: {"provider": "samples", "path": str(path)}},
        "suites": [{"math-word": {"first": 4}}],
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plan))
    db = f"sqlite:///{tmp_path}/h.db"
    assert harness("run", "p.yaml", "--db", db, "--no-report", cwd=tmp_path).returncode == 0
    shown = harness("runs", "show", "--db", db).stdout
    assert name in shown and "…" not in shown
    row = next(line for line in shown.splitlines() if name in line and "math-word" in line)
    assert "0.00" not in row.split("│")[7] and "—" in row  # p50 s: not measured


# Names come from plans, suite folders and servers: rich markup or emoji codes in one are shown as written.
MARKUP_NAMES = ("m[/bold]", "[red]x:smile:[/]", "[link=file:///etc/passwd]y")


def test_markup_in_names_is_printed_literally_by_every_table(tmp_path, fake_server):
    from support.cli import invoke

    fake_server.state.responder = oracle_responder(["math-word"], wrong={"math-word/1"})
    models = {
        name: {"provider": "openai", "base_url": fake_server.base_url, "model": "fake", "price": {"output": 1}}
        for name in MARKUP_NAMES
    }
    (tmp_path / "p.yaml").write_text(
        yaml.safe_dump({"name": "[b]plan", "models": models, "suites": [{"math-word": {"limit": 3}}]})
    )
    db = f"sqlite:///{tmp_path}/h.db"
    outputs = [
        invoke("run", tmp_path / "p.yaml", "--db", db, "--out", tmp_path / "reports").output,
        invoke("runs", "show", "--db", db).output,
        invoke("compare", "--db", db).output,
        invoke("recommend", "--db", db, "--all").output,
    ]
    for output in outputs:
        for name in MARKUP_NAMES:
            assert name in output.replace("\n", ""), output
    assert "[b]plan" in outputs[0]


def test_markup_in_names_is_printed_literally_by_the_progress_bars():
    import io

    from rich.console import Console

    from harness.engine.progress import RunProgress

    class State:
        total, done, correct, errors, cost = 2, 1, 1, 0, 0.0

    out = io.StringIO()
    progress = RunProgress(console=Console(file=out, force_terminal=True, width=120, color_system=None))
    progress.start({name: State() for name in MARKUP_NAMES})
    progress.stop()
    for name in MARKUP_NAMES:
        assert name in out.getvalue()


def test_run_refuses_a_report_folder_holding_other_files_before_any_request(tmp_path, fake_server):
    (tmp_path / "p.yaml").write_text(
        yaml.safe_dump(
            {
                "models": {"m": {"provider": "openai", "base_url": fake_server.base_url}},
                "suites": [{"math-word": {"limit": 2}}],
            }
        )
    )
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / ".bashrc").write_text("# mine\n")
    for command in (["run", "p.yaml"], ["report"]):
        proc = harness(*command, "--db", f"sqlite:///{tmp_path}/h.db", "--out", str(tmp_path / "home"), cwd=tmp_path)
        assert_clean_error(proc, "--out", "holds other files (.bashrc)")
    assert fake_server.state.requests == 0 and [p.name for p in (tmp_path / "home").iterdir()] == [".bashrc"]


def test_a_suite_name_typo_suggests_the_nearest_name(tmp_path):
    (tmp_path / "p.yaml").write_text("models: {m: {provider: llamacpp}}\nsuites: [math-wrod]\n")
    assert_clean_error(
        harness("run", "p.yaml", "--db", f"sqlite:///{tmp_path}/h.db", cwd=tmp_path),
        "unknown suite 'math-wrod': did you mean 'math-word'?",
    )


def test_a_yaml_syntax_error_is_one_line_with_line_and_column(tmp_path):
    (tmp_path / "p.yaml").write_text("name: x\nmodels:\n  m: {provider: llamacpp\nsuites: [math-word]\n")
    assert_clean_error(harness("run", "p.yaml", cwd=tmp_path), "p.yaml: invalid YAML at line 4, column")
    # The same in a user's own suite.yaml, found through ./suites; and `suites list` calls it theirs.
    mine = tmp_path / "suites" / "intent"
    mine.mkdir(parents=True)
    (mine / "suite.yaml").write_text("family: classification\ngrader: {name: exact\ntemplate: prompt.j2\n")
    (tmp_path / "p2.yaml").write_text("models: {m: {provider: llamacpp}}\nsuites: [intent]\n")
    proc = harness("run", "p2.yaml", "--db", f"sqlite:///{tmp_path}/h.db", cwd=tmp_path)
    assert_clean_error(proc, "suite.yaml: invalid YAML at line 3, column")
    (mine / "suite.yaml").write_text("family: classification\ngrader: exact\ntemplate: prompt.j2\n")
    (mine / "prompt.j2").write_text("{{ text }}\n")
    (mine / "items.jsonl").write_text('{"id": "1", "text": "hi", "reference": "greet"}\n')
    listing = harness("suites", "list", cwd=tmp_path).stdout
    line = next(x for x in listing.splitlines() if x.startswith("intent"))
    assert "yours:" in line and "bundled" not in line
    assert "bundled" in next(x for x in listing.splitlines() if x.startswith("math-word"))


def test_a_failed_run_says_failed(tmp_path, fake_server):
    from dataclasses import replace

    fake_server.state.faults = replace(fake_server.state.faults, unauthorized_models=frozenset({"m"}))
    plan = {
        "models": {"m": {"provider": "openai", "base_url": fake_server.base_url, "price": {"output": 1.0}}},
        "suites": [{"math-word": {"limit": 3}}],
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plan))
    proc = harness("run", "p.yaml", "--db", f"sqlite:///{tmp_path}/h.db", "--no-report", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert " failed after " in proc.stdout and " finished in " not in proc.stdout


def test_runs_show_json_and_the_summary_export(tmp_path, fake_server):
    import csv
    import io

    fake_server.state.responder = oracle_responder(["math-word"], wrong={"math-word/0"})
    plan = {
        "name": "dash",
        "models": {
            "m": {"provider": "openai", "base_url": fake_server.base_url, "price": {"output": 1.0}},
            "n": {"provider": "openai", "base_url": fake_server.base_url},  # no price: cost unknown
        },
        "suites": [{"math-word": {"first": 4}}],
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plan))
    db = f"sqlite:///{tmp_path}/h.db"
    ran = harness("run", "p.yaml", "--db", db, "--no-report", cwd=tmp_path)
    assert ran.returncode == 0 and "no price for n: cost unknown" in ran.stderr
    doc = json.loads(harness("runs", "show", "--db", db, "--json").stdout)
    assert doc["plan"] == "dash" and doc["status"] == "finished" and doc["samples"] == 8
    models = {m["model"]: m for m in doc["models"]}
    assert models["m"]["price"] == {"input": 0.0, "output": 1.0} and models["n"]["price"] is None
    cells = {c["model"]: c for c in doc["cells"]}
    assert cells["m"]["score"] == 0.75 and cells["m"]["n_items"] == 4 and cells["m"]["cost_usd"] > 0
    assert cells["n"]["cost_usd"] is None and cells["n"]["cost_known"] is False
    assert cells["m"]["cost_per_1k_requests"] == pytest.approx(1000 * cells["m"]["cost_usd"] / 4)
    rows = [json.loads(x) for x in harness("export", "--summary", "--db", db).stdout.splitlines()]
    assert rows == doc["cells"]
    table = list(csv.DictReader(io.StringIO(harness("export", "--summary", "--format", "csv", "--db", db).stdout)))
    assert [r["model"] for r in table] == ["m", "n"] and table[1]["cost_usd"] == "" and table[0]["score"] == "0.75"
    # Per sample, the unpriced model's cost is null too, never 0.
    samples = [json.loads(x) for x in harness("export", "--db", db).stdout.splitlines()]
    assert {r["cost_usd"] for r in samples if r["model"] == "n"} == {None}
