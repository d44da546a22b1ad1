"""Plan files: the documented contract parses, and every user mistake is one clear error."""

from pathlib import Path

import pytest
import yaml

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
        "openai",
        "http://127.0.0.1:9/v1",
        "VAR",
        "API_MODEL_NAME",
        16,
    )
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
    assert (
        load_plan(a).fingerprint()
        == parse_plan(__import__("yaml").safe_load(CONTRACT), source="x/a.yaml").fingerprint()
    )
    assert load_plan(a).fingerprint() != load_plan(b).fingerprint()


def test_bad_yaml_names_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("models:\n  a: {provider: llamacpp\nsuites: [x]\n")
    with pytest.raises(HarnessError, match=r"broken.yaml: invalid YAML at line \d+"):
        load_plan(path)


def test_missing_plan_file(tmp_path):
    with pytest.raises(HarnessError, match="plan file not found"):
        load_plan(tmp_path / "nope.yaml")


# Every value the red-team pass found hanging a run, crashing it or reaching the API unchecked.
@pytest.mark.parametrize(
    "text, needle",
    [
        (
            "models: {a: {provider: llamacpp, concurrency: lots}}\nsuites: [x]",
            "models.a.concurrency: must be a valid integer, got 'lots'",
        ),
        (
            "models: {a: {provider: llamacpp, timeout_s: soon}}\nsuites: [x]",
            "models.a.timeout_s: must be a valid number, got 'soon'",
        ),
        ("models: {a: {provider: llamacpp, rpm: -10}}\nsuites: [x]", "models.a.rpm: must be greater than 0, got -10"),
        ("models: {a: {provider: llamacpp, tpm: -5}}\nsuites: [x]", "models.a.tpm: must be greater than 0, got -5"),
        ("models: {a: {provider: llamacpp, tpm: 0}}\nsuites: [x]", "models.a.tpm: must be greater than 0"),
        (
            "models: {a: {provider: llamacpp}}\nsuites: [x]\nlimit: -5",
            "limit: must be greater than or equal to 1, got -5",
        ),
        ("models: {a: {provider: llamacpp, timeout_s: -1}}\nsuites: [x]", "models.a.timeout_s: must be greater than 0"),
        (
            "models: {a: {provider: llamacpp, price: {input: -1}}}\nsuites: [x]",
            "models.a.price.input: must be greater than or equal to 0",
        ),
        (
            "models: {a: {provider: llamacpp, price: {output: .nan}}}\nsuites: [x]",
            "models.a.price.output: must be a finite number",
        ),
        (
            "models: {a: {provider: llamacpp, max_attempts: 0}}\nsuites: [x]",
            "models.a.max_attempts: must be greater than or equal to 1",
        ),
        (
            "models: {a: {provider: llamacpp, concurrency: 0}}\nsuites: [x]",
            "models.a.concurrency: must be greater than or equal to 1",
        ),
        (
            "models: {a: {provider: llamacpp}}\njudges: {j: {provider: llamacpp, rpm: -1}}\nsuites: [x]",
            "judges.j.rpm: must be greater than 0",
        ),
        ("models: {a: {provider: llamacpp}}\nsuites: [x]\nsamples: 0", "samples: must be greater than or equal to 1"),
        (
            "models: {a: {provider: llamacpp}}\nsuites: [x]\nnoninferiority_margin: 2",
            "noninferiority_margin: must be less than 1",
        ),
        ("models: {a: {provider: llamacpp}}\nsuites: [x]\ncache: maybe", "cache: must be a valid boolean"),
        ("models: {a: {provider: llamacpp}}\nsuites: [x]\nwebhook: 3", "webhook: must be a valid string"),
        (
            "models: {a: {provider: llamacpp}}\nsuites: [{x: {fewshot: -1}}]",
            "suites.x.fewshot: must be greater than or equal to 0",
        ),
        (
            "models: {a: {provider: llamacpp}}\nsuites: [{x: {options: [1]}}]",
            "suites.x.options: must be a valid dictionary",
        ),
        # generation parameters, at each of the three levels
        (
            "models: {a: {provider: llamacpp}}\ngeneration: {temperature: hot}\nsuites: [x]",
            "generation.temperature: must be a valid number, got 'hot'",
        ),
        (
            "models: {a: {provider: llamacpp}}\ngeneration: {temperature: 3}\nsuites: [x]",
            "generation.temperature: must be less than or equal to 2",
        ),
        (
            "models: {a: {provider: llamacpp, generation: {max_tokens: 0}}}\nsuites: [x]",
            "models.a.generation.max_tokens: must be greater than or equal to 1",
        ),
        (
            "models: {a: {provider: llamacpp, generation: {max_tokens: 1.5}}}\nsuites: [x]",
            "models.a.generation.max_tokens: must be a valid integer",
        ),
        (
            "models: {a: {provider: llamacpp}}\nsuites: [{x: {generation: {top_p: 1.5}}}]",
            "suites.x.generation.top_p: must be less than or equal to 1",
        ),
        (
            "models: {a: {provider: llamacpp}}\nsuites: [{x: {generation: {stop: 42}}}]",
            "suites.x.generation.stop: must be a string or a list of strings, got 42",
        ),
        (
            "models: {a: {provider: llamacpp}}\ngeneration: {stop: [ok, 7]}\nsuites: [x]",
            "generation.stop: must be a string or a list of strings",
        ),
        (
            "models: {a: {provider: llamacpp}}\ngeneration: {seed: x}\nsuites: [x]",
            "generation.seed: must be a valid integer",
        ),
        (
            "models: {a: {provider: llamacpp}}\ngeneration: {temprature: 1}\nsuites: [x]",
            "generation: unknown key(s) temprature",
        ),
        # unknown keys at every level, and keys the file's structure already gives
        ("models: {a: {provider: llamacpp}}\nsuites: [x]\nlimt: 3", "unknown key(s) limt (known: cache, description"),
        ("models: {a: {provider: llamacpp}}\nsuites: [{x: {limt: 3}}]", "suites.x: unknown key(s) limt"),
        ("models: {a: {provider: llamacpp, name: b}}\nsuites: [x]", "models.a: unknown key(s) name"),
        ("models: {a: {provider: llamacpp}}\nsuites: [x]\npath: elsewhere.yaml", "unknown key(s) path"),
        # structure, and what one field alone cannot say
        ("models: {a: {provider: openai}}\nsuites: [x]", "needs base_url"),
        (
            "models: {a: {provider: magic}}\nsuites: [x]",
            "models.a.provider: must be 'openai', 'llamacpp' or 'samples', got 'magic'",
        ),
        ("models: {a: {provider: samples}}\nsuites: [x]", "needs path"),
        ("models: {a: {provider: llamacpp, concurency: 3}}\nsuites: [x]", "unknown key(s) concurency"),
        ("models: {a: {provider: llamacpp}}\nsuites: []", "suites: must be a list"),
        ("suites: [x]", "models: must map"),
        (
            "models: {a: {provider: llamacpp}}\nsuites: [{x: {limit: 0}}]",
            "suites.x.limit: must be greater than or equal to 1",
        ),
        ("models: {a: {provider: llamacpp}}\nsuites: [x]\nsamples: two", "samples: must be a valid integer, got 'two'"),
        (
            "models: {a: {provider: llamacpp, price: {in: 1}}}\nsuites: [x]",
            "models.a.price: unknown key(s) in (known: batch_discount, batch_input, batch_output, cached_input, input, off_peak, output)",
        ),
        ("- just\n- a list", "a plan is a YAML mapping"),
        (
            "models: {a: {provider: openai, base_url: 'ftp://h/v1'}}\nsuites: [x]",
            "models.a.base_url: must be an http:// or https:// URL",
        ),
        # a fair sample or the head of the file; routing limits
        (
            "models: {a: {provider: llamacpp}}\nsuites: [{x: {limit: 5, first: 5}}]",
            "suites.x: give limit (a fair sample of N items) or first",
        ),
        (
            "models: {a: {provider: llamacpp}}\nsuites: [{x: {first: 0}}]",
            "suites.x.first: must be greater than or equal to 1",
        ),
        (
            "models: {a: {provider: llamacpp}}\nsuites: [x]\nrouting: {max_p99_s: fast}",
            "routing.max_p99_s: must be a valid number, got 'fast'",
        ),
        (
            "models: {a: {provider: llamacpp}}\nsuites: [x]\nrouting: {max_error_rate: 2}",
            "routing.max_error_rate: must be less than or equal to 1",
        ),
        ("models: {a: {provider: llamacpp}}\nsuites: [x]\nrouting: {routes: {x: {p99: 3}}}", "unknown key(s) p99"),
    ],
)
def test_every_bad_value_is_one_line_naming_the_field(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(HarnessError) as err:
        load_plan(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert needle in message


def _every_field(owner):
    from dataclasses import fields as dc_fields

    return [f.name for f in dc_fields(owner)]


@pytest.mark.parametrize(
    "field",
    # Fields the plan file implies (name: the mapping key; priced: whether `price:` is written) are not keys.
    [f for f in _every_field(__import__("harness.plan").plan.ModelSpec) if f not in ("name", "priced")],
)
def test_every_model_field_is_type_checked(tmp_path, field):
    # A nested list is the wrong type for every field: each must be refused by name.
    spec = {"provider": "openai", "base_url": "http://127.0.0.1:9/v1", field: [["x"]]}
    with pytest.raises(HarnessError, match=rf"^p.yaml: models\.a\.{field}: "):
        parse_plan({"models": {"a": spec}, "suites": ["x"]}, source="p.yaml")


@pytest.mark.parametrize(
    "field",
    [f for f in _every_field(__import__("harness.plan").plan.Plan) if f not in ("path", "models", "suites")]
    + ["limit", "description"],
)
def test_every_plan_field_is_type_checked(field):
    raw = {"models": {"a": {"provider": "llamacpp"}}, "suites": ["x"], field: [["x"]]}
    with pytest.raises(HarnessError, match=rf"^p.yaml: {field}"):
        parse_plan(raw, source="p.yaml")


def test_api_key_pasted_into_api_key_env_is_refused_without_echoing_it():
    secret = "sk-live-0123456789abcdef"
    raw = {
        "models": {"a": {"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key_env": secret}},
        "suites": ["x"],
    }
    with pytest.raises(HarnessError) as err:
        parse_plan(raw, source="p.yaml")
    assert "models.a.api_key_env: must be the NAME" in str(err.value) and secret not in str(err.value)


def test_valid_values_are_normalised(tmp_path):
    raw = {
        "models": {
            "a": {
                "provider": "llamacpp",
                "timeout_s": 30,
                "price": {"input": 1},
                "rpm": 60,
                "generation": {"stop": "###", "temperature": 0},
            }
        },
        "generation": {"stop": ["a", "b"]},
        "suites": [{"x": {"limit": 10}}, "y"],
        "limit": 3,
    }
    plan = parse_plan(raw, source="p.yaml")
    model = plan.models[0]
    assert model.timeout_s == 30.0 and model.price.input == 1.0 and model.rpm == 60.0
    assert model.generation == {"stop": ("###",), "temperature": 0.0}
    assert plan.generation == {"stop": ("a", "b")}
    assert [s.limit for s in plan.suites] == [3, 3]


def test_importing_the_plan_module_does_not_load_pydantic():
    # harness --help and every command that never reads a plan must not pay for the validator.
    import subprocess
    import sys

    code = "import sys, harness.plan; print('pydantic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_plan_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"models: {a: {provider: llamacpp}}\n# caf\xe9\nsuites: [x]\n")
    with pytest.raises(HarnessError, match=r"latin1.yaml: line 2 is not valid UTF-8"):
        load_plan(path)


def test_routing_limits_are_read_and_stored(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "models: {a: {provider: llamacpp}}\nsuites: [x, {y: {first: 10}}]\n"
        "routing: {max_error_rate: 0.01, max_p99_s: 8, routes: {x: {max_p99_s: null, max_ttft_s: 1.5}}}\n"
    )
    plan = load_plan(path)
    assert plan.routing == {
        "max_error_rate": 0.01,
        "max_p99_s": 8.0,
        "routes": {"x": {"max_p99_s": None, "max_ttft_s": 1.5}},
    }
    assert plan.suites[1].first == 10 and plan.suites[1].limit is None
    from harness.analysis.recommend import routing_limits

    limits = routing_limits(plan.routing, max_p99_s={"y": 3.0})
    assert limits.for_suite("x").max_p99_s is None and limits.for_suite("x").max_ttft_s == 1.5
    assert limits.for_suite("x").max_error_rate == 0.01 and limits.for_suite("y").max_p99_s == 3.0
    assert limits.for_suite("z").max_p99_s == 8.0
    cli_wins = routing_limits(plan.routing, max_p99_s={"": 2.0})
    assert cli_wins.for_suite("x").max_p99_s == 2.0 and cli_wins.for_suite("z").max_p99_s == 2.0


def test_an_empty_mapping_key_is_the_same_as_leaving_it_out():
    raw = yaml.safe_load(
        "models:\n  a:\n    provider: llamacpp\n    price:\n    generation:\n"
        "generation:\nsuites:\n  - x:\n      options:\n      generation:\n"
    )
    plan = parse_plan(raw, source="p.yaml")
    assert plan.generation == {} and plan.models[0].generation == {} and plan.models[0].price.input == 0.0
    assert plan.suites[0].options == {} and plan.suites[0].generation == {}


def test_a_model_without_price_has_an_unknown_cost_and_cannot_claim_one(tmp_path):
    from harness.plan import plan_to_dict, unpriced_warning

    base = {"provider": "openai", "base_url": "http://127.0.0.1:9/v1"}
    plan = parse_plan({"models": {"a": base, "b": {**base, "price": {"output": 0}}}, "suites": ["x"]}, source="p.yaml")
    assert [m.priced for m in plan.models] == [False, True]
    assert unpriced_warning(plan).startswith("warning: no price for a: cost unknown")
    assert [m.get("priced", True) for m in plan_to_dict(plan)["models"]] == [False, True]
    # One model compares no costs: no warning; `priced:` is not a key a user writes.
    assert unpriced_warning(parse_plan({"models": {"a": base}, "suites": ["x"]})) == ""
    with pytest.raises(HarnessError, match="unknown key"):
        parse_plan({"models": {"a": {**base, "priced": True}}, "suites": ["x"]}, source="p.yaml")
