"""Plan files: the documented contract parses, and every user mistake is one clear error."""

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.plan import load_plan, parse_plan

REPO = Path(__file__).resolve().parents[1]

CONTRACT = """
models:
  NAME1: {provider: openai, base_url: http://127.0.0.1:9/v1, api_key_env: VAR, model: API_MODEL_NAME, concurrency: 16}
  NAME2: {provider: llamacpp}
  NAME3: {provider: samples, path: FILE.jsonl}
suites: [SUITE_A, {SUITE_B: {limit: 20, data: PATH_OR_HUB_ID}}]
"""


def test_documented_contract_parses(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text(CONTRACT)
    plan = load_plan(path)
    assert [m.name for m in plan.models] == ["NAME1", "NAME2", "NAME3"]
    m1 = plan.models[0]
    assert (m1.provider, m1.base_url, m1.api_key_env, m1.api_model, m1.concurrency) == (
        "openai", "http://127.0.0.1:9/v1", "VAR", "API_MODEL_NAME", 16)
    assert plan.models[1].provider == "llamacpp" and plan.models[1].api_model == "NAME2"
    assert plan.models[2].path == "FILE.jsonl"
    assert [s.name for s in plan.suites] == ["SUITE_A", "SUITE_B"]
    assert plan.suites[1].limit == 20 and plan.suites[1].data == "PATH_OR_HUB_ID"
    assert plan.name == "plan"


def test_limit_from_command_line_caps_every_suite(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(CONTRACT)
    plan = load_plan(path, limit=5)
    assert [s.limit for s in plan.suites] == [5, 5]


def test_bundled_plans_parse():
    for name in ("smoke.yaml", "weekly.yaml"):
        plan = load_plan(REPO / "evals" / name)
        assert plan.models and plan.suites
    weekly = load_plan(REPO / "evals" / "weekly.yaml")
    assert {m.base_url for m in weekly.models} == {"https://global-apis.com/v1"}
    assert {m.api_key_env for m in weekly.models} == {"GLOBAL_API_KEY"}


def test_fingerprint_ignores_file_location_but_not_content(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(CONTRACT)
    b.write_text(CONTRACT.replace("concurrency: 16", "concurrency: 8"))
    assert load_plan(a).fingerprint() == parse_plan(__import__("yaml").safe_load(CONTRACT), source="x/a.yaml").fingerprint()
    assert load_plan(a).fingerprint() != load_plan(b).fingerprint()


@pytest.mark.parametrize("text, needle", [
    ("models: {a: {provider: openai}}\nsuites: [x]", "needs base_url"),
    ("models: {a: {provider: magic}}\nsuites: [x]", "unknown provider 'magic'"),
    ("models: {a: {provider: samples}}\nsuites: [x]", "needs path"),
    ("models: {a: {provider: llamacpp, concurency: 3}}\nsuites: [x]", "unknown key(s) concurency"),
    ("models: {a: {provider: llamacpp}}\nsuites: []", "'suites' must be a list"),
    ("suites: [x]", "'models' must map"),
    ("models: {a: {provider: llamacpp}}\nsuites: [{x: {limit: 0}}]", "limit must be a positive"),
    ("models: {a: {provider: llamacpp}}\nsuites: [{x: {limit: 5, first: 5}}]", "not both"),
    ("models: {a: {provider: llamacpp}}\nsuites: [{x: {first: 0}}]", "first must be a positive"),
    ("models: {a: {provider: llamacpp}}\nsuites: [x]\nrouting: {max_p99_s: fast}", "max_p99_s must be a number"),
    ("models: {a: {provider: llamacpp}}\nsuites: [x]\nrouting: {max_error_rate: 2}", "max_error_rate must be"),
    ("models: {a: {provider: llamacpp}}\nsuites: [x]\nrouting: {routes: {x: {p99: 3}}}", "unknown key(s) p99"),
    ("models: {a: {provider: llamacpp}}\nsuites: [x]\nsamples: two", "'samples' must be a whole number"),
    ("models: {a: {provider: llamacpp, price: {in: 1}}}\nsuites: [x]", "price must be"),
    ("- just\n- a list", "a plan is a YAML mapping"),
])
def test_plan_mistakes_are_named(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(HarnessError) as err:
        load_plan(path)
    assert needle in str(err.value)
    assert str(path) in str(err.value)


def test_bad_yaml_names_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("models:\n  a: {provider: llamacpp\nsuites: [x]\n")
    with pytest.raises(HarnessError, match=r"broken.yaml: invalid YAML at line \d+"):
        load_plan(path)


def test_missing_plan_file(tmp_path):
    with pytest.raises(HarnessError, match="plan file not found"):
        load_plan(tmp_path / "nope.yaml")


def test_routing_limits_are_read_and_stored(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("models: {a: {provider: llamacpp}}\nsuites: [x, {y: {first: 10}}]\n"
                    "routing: {max_error_rate: 0.01, max_p99_s: 8, routes: {x: {max_p99_s: null, max_ttft_s: 1.5}}}\n")
    plan = load_plan(path)
    assert plan.routing == {"max_error_rate": 0.01, "max_p99_s": 8.0,
                            "routes": {"x": {"max_p99_s": None, "max_ttft_s": 1.5}}}
    assert plan.suites[1].first == 10 and plan.suites[1].limit is None
    from harness.analysis.recommend import routing_limits

    limits = routing_limits(plan.routing, max_p99_s={"y": 3.0})
    assert limits.for_suite("x").max_p99_s is None and limits.for_suite("x").max_ttft_s == 1.5
    assert limits.for_suite("x").max_error_rate == 0.01 and limits.for_suite("y").max_p99_s == 3.0
    assert limits.for_suite("z").max_p99_s == 8.0
    cli_wins = routing_limits(plan.routing, max_p99_s={"": 2.0})
    assert cli_wins.for_suite("x").max_p99_s == 2.0 and cli_wins.for_suite("z").max_p99_s == 2.0
