"""A stranger's suite or plan: files outside the suite, FIFOs, devices, alias bombs, deep nesting, runaway templates.

Each must end in one line and exit 2, without a traceback, within the subprocess timeout (a hang
fails the test by timing out rather than stalling the suite).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from harness.errors import HarnessError
from harness.untrusted import MAX_YAML_DEPTH, load_yaml

TESTS = Path(__file__).resolve().parent


def make_suite(tmp_path: Path, template: str = "Q: {{ q }}", **extra) -> Path:
    folder = tmp_path / "suite"
    folder.mkdir()
    config = {
        "name": "hostile",
        "version": 1,
        "data": "items.jsonl",
        "reference_field": "a",
        "template": "prompt.j2",
        "grader": {"name": "exact"},
        **extra,
    }
    (folder / "suite.yaml").write_text(yaml.safe_dump(config))
    (folder / "prompt.j2").write_text(template)
    (folder / "items.jsonl").write_text(
        "".join(json.dumps({"id": f"i{i}", "q": f"q{i}", "a": "x"}) + "\n" for i in range(3))
    )
    return folder


def make_plan(tmp_path: Path, suite: Path | dict, *, model_extra: str = "", suite_options: str = "") -> Path:
    entry = f"  - {suite}" if not suite_options else f"  - {suite}: {suite_options}"
    text = (
        "name: hostile\n"
        "models:\n"
        "  m:\n"
        "    provider: openai\n"
        "    base_url: http://127.0.0.1:9/v1\n"
        f"{model_extra}"
        "suites:\n"
        f"{entry}\n"
    )
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    return path


def harness_fails(tmp_path: Path, *args: str, expect: str) -> str:
    """Run the CLI in a subprocess: exit 2, one line on stderr naming `expect`, no traceback."""
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent)}
    proc = subprocess.run(
        [sys.executable, "-m", "harness", *args, "--db", f"sqlite:///{tmp_path / 'h.db'}"],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], proc.stderr
    return lines[0]


def dry_run(tmp_path: Path, plan: Path, expect: str) -> str:
    return harness_fails(tmp_path, "run", str(plan), "--dry-run", expect=expect)


# -- files outside the suite folder --------------------------------------------------------------


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "outside" / "secret.txt"
    path.parent.mkdir()
    path.write_text("PRIVATE KEY MATERIAL\n")
    return path


def test_a_template_symlinked_outside_the_suite_is_refused(tmp_path, secret_file):
    suite = make_suite(tmp_path)
    (suite / "prompt.j2").unlink()
    (suite / "prompt.j2").symlink_to(secret_file)
    dry_run(tmp_path, make_plan(tmp_path, suite), "outside")


def test_an_included_template_symlinked_outside_the_suite_is_refused(tmp_path, secret_file):
    suite = make_suite(tmp_path, template="{% include 'part.j2' %} {{ q }}")
    (suite / "part.j2").symlink_to(secret_file)
    dry_run(tmp_path, make_plan(tmp_path, suite), "outside")


def test_items_and_few_shots_symlinked_outside_the_suite_are_refused(tmp_path, secret_file):
    shots = secret_file.parent / "shots.jsonl"
    shots.write_text(json.dumps({"q": "secret", "a": "x"}) + "\n")
    suite = make_suite(tmp_path, fewshot={"k": 1, "data": "fewshot.jsonl", "answer_template": "prompt.j2"})
    (suite / "fewshot.jsonl").symlink_to(shots)
    dry_run(tmp_path, make_plan(tmp_path, suite), "fewshot data")

    other = tmp_path / "second"
    other.mkdir()
    suite2 = make_suite(other)
    (suite2 / "items.jsonl").unlink()
    (suite2 / "items.jsonl").symlink_to(shots)
    dry_run(other, make_plan(other, suite2), "outside")


# -- what cannot be read to the end ---------------------------------------------------------------


def test_a_fifo_as_data_is_refused_not_waited_on(tmp_path):
    suite = make_suite(tmp_path)
    fifo = tmp_path / "items.fifo"
    os.mkfifo(fifo)
    dry_run(tmp_path, make_plan(tmp_path, suite, suite_options=f"{{data: {fifo}}}"), "not a regular file")


def test_dev_zero_as_items_is_refused(tmp_path):
    suite = make_suite(tmp_path)
    dry_run(tmp_path, make_plan(tmp_path, suite, suite_options="{data: /dev/zero}"), "not a regular file")


def test_a_suite_items_file_linked_to_dev_zero_is_refused(tmp_path):
    suite = make_suite(tmp_path)
    (suite / "items.jsonl").unlink()
    (suite / "items.jsonl").symlink_to("/dev/zero")
    dry_run(tmp_path, make_plan(tmp_path, suite), "items.jsonl")


def test_a_line_without_end_is_refused_not_held_in_memory(tmp_path, monkeypatch):
    import harness.untrusted as untrusted
    from harness.suite.jsonl import read_jsonl

    monkeypatch.setattr(untrusted, "MAX_LINE_BYTES", 1024)
    path = tmp_path / "long.jsonl"
    path.write_bytes(b'{"q": "' + b"a" * 5000)

    with pytest.raises(HarnessError, match="long.jsonl:1: line longer than"):
        list(read_jsonl(path))


# -- YAML that expands or nests --------------------------------------------------------------------

BOMB = """
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_an_alias_bomb_in_a_models_extra_body_is_refused(tmp_path):
    suite = make_suite(tmp_path)
    extra = (
        "    extra_body:\n" + "\n".join("      " + line for line in textwrap.dedent(BOMB).strip().splitlines()) + "\n"
    )
    dry_run(tmp_path, make_plan(tmp_path, suite, model_extra=extra), "aliases expand")


def test_an_alias_bomb_under_a_suites_options_is_refused(tmp_path):
    suite = make_suite(tmp_path)
    config = (suite / "suite.yaml").read_text() + "options:\n" + textwrap.indent(textwrap.dedent(BOMB), "  ")
    (suite / "suite.yaml").write_text(config)
    dry_run(tmp_path, make_plan(tmp_path, suite), "aliases expand")


def test_a_deeply_nested_plan_is_one_line(tmp_path):
    suite = make_suite(tmp_path)
    deep = "[" * 5000 + "]" * 5000
    extra = f"    extra_body: {{x: {deep}}}\n"
    dry_run(tmp_path, make_plan(tmp_path, suite, model_extra=extra), "nested")


def test_yaml_aliases_that_stay_small_are_fine():
    doc = load_yaml("base: &b {temperature: 0}\nm1: *b\nm2: *b\n", "t.yaml")
    assert doc == {"base": {"temperature": 0}, "m1": {"temperature": 0}, "m2": {"temperature": 0}}
    with pytest.raises(HarnessError, match="nested more than"):
        load_yaml("x: " + "[" * (MAX_YAML_DEPTH + 5) + "]" * (MAX_YAML_DEPTH + 5), "t.yaml")


# -- templates that spin or grow -------------------------------------------------------------------


@pytest.mark.parametrize(
    "template, expect",
    [
        ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{{ q }}", "took over"),
        ("{% set r = range(100000) %}{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}{{ q }}", "took over"),
        ("{{ 'a' * 10**11 }}{{ q }}", "over"),
        ("{% for i in range(100000) %}{{ 'abcdefghij' * 1000 }}{% endfor %}", "output over"),
        ("{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "over"),
        ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "template"),
    ],
    ids=["nested-range", "stored-range", "huge-repeat", "huge-output", "doubling", "recursion"],
)
def test_a_runaway_template_stops_with_one_line(tmp_path, template, expect):
    suite = make_suite(tmp_path, template=template)
    dry_run(tmp_path, make_plan(tmp_path, suite), expect)
