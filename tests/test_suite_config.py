"""suite.yaml is validated like a plan: unknown keys, missing or mistyped fields are one line naming the
file and the field, and `harness suites ...` exits with status 2 without a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.suite import list_suites, load_suite

BASE = "name: tiny\nfamily: reasoning\ntemplate: prompt.j2\nreference_field: a\ngrader: {name: exact}\n"


def make_suite(tmp_path: Path, config: str) -> Path:
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "suite.yaml").write_text(config)
    (folder / "prompt.j2").write_text("{{ q }}")
    (folder / "items.jsonl").write_text('{"q": "hi", "a": "1"}\n')
    return folder


@pytest.mark.parametrize(
    "config, needle",
    [
        (BASE + "grader_options: {}\n", "unknown key(s) grader_options (known: agent, data, description,"),
        (BASE.replace("template: prompt.j2\n", ""), "template: is required"),
        (BASE.replace("grader: {name: exact}\n", ""), "grader: is required"),
        (BASE.replace("template: prompt.j2", "template: [prompt.j2]"), "template: must be a valid string, got"),
        (BASE + "fewshot: {k: -1}\n", "fewshot.k: must be greater than or equal to 0, got -1"),
        (BASE + "fewshot: {k: 2, shots: 3}\n", "fewshot: unknown key(s) shots (known: answer_template, data, k,"),
        (BASE + "options: [a, b]\n", "options: must be a valid dictionary, got ['a', 'b']"),
        (BASE.replace("{name: exact}", "{name: exact, option: {}}"), "grader: unknown key(s) option"),
        (BASE + "generation: {temperature: hot}\n", "generation.temperature: must be a valid number, got 'hot'"),
        (BASE.replace("{name: exact}", "3"), "grader: must be a grader's name or {name: NAME, options: {...}}, got 3"),
        ("- a list\n", "a suite.yaml is a YAML mapping"),
    ],
)
def test_a_bad_suite_yaml_is_one_line_naming_the_file_and_the_field(tmp_path, config, needle):
    folder = make_suite(tmp_path, config)
    with pytest.raises(HarnessError) as err:
        load_suite(str(folder))
    message = str(err.value)
    assert message.startswith(f"{folder / 'suite.yaml'}: ") and needle in message, message
    assert "\n" not in message


def test_the_cli_exits_2_with_one_line(tmp_path):
    folder = make_suite(tmp_path, BASE + "sandbox: 3\n")
    harness = Path(sys.executable).with_name("harness")
    proc = subprocess.run([str(harness), "suites", "show", str(folder)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "suite.yaml: sandbox: must be a valid dictionary, got 3" in lines[0], proc.stderr


def test_every_bundled_suite_and_the_lax_forms_are_accepted(tmp_path):
    for name in list_suites():
        assert load_suite(name).template
    lax = (
        BASE.replace("{name: exact}", "exact") + "version: 1\nloader: null\nfewshot:\ndescription: >\n  two\n  lines\n"
    )
    suite = load_suite(str(make_suite(tmp_path, lax)))
    assert suite.grader.name == "exact" and suite.fewshot.k == 0 and suite.description == "two lines"
