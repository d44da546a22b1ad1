"""The test suite's own rules: no test module imports another, fixtures live only in conftest.py, and
nothing is installed from a package registry by a test (a missing LiteLLM is a skip that says how)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support.servers import litellm_executable

TESTS = Path(__file__).resolve().parent


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_test_module_imports_another_or_conftest():
    offenders = {}
    for path in [*TESTS.glob("test_*.py"), *TESTS.glob("support/*.py"), *TESTS.glob("benchmarks/*.py")]:
        bad = {m for m in _imported_modules(path) if m.startswith("test_") or m == "conftest"}
        if bad:
            offenders[str(path.relative_to(TESTS))] = sorted(bad)
    assert offenders == {}


def test_fixtures_are_defined_only_in_conftest():
    """A test module may keep a fixture of its own (used there alone); the support package has none."""
    for path in TESTS.glob("support/*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        decorated = [
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and any("fixture" in ast.unparse(d) for d in node.decorator_list)
        ]
        assert decorated == [], f"{path.name} defines fixtures {decorated}: they belong in conftest.py"


def test_no_test_installs_from_a_package_registry():
    for path in [*TESTS.glob("test_*.py"), *TESTS.glob("support/*.py"), TESTS / "conftest.py"]:
        if path.name == "test_support.py":
            continue
        text = path.read_text(encoding="utf-8")
        for needle in ('"pip", "install"', "'pip', 'install'", '/ "pip"', "pip install -q"):
            assert needle not in text, f"{path.name} installs packages ({needle})"


def test_without_litellm_the_gateway_tests_skip_saying_how(monkeypatch, tmp_path):
    monkeypatch.delenv("HARNESS_LITELLM", raising=False)
    monkeypatch.setenv("HARNESS_LITELLM_VENV", str(tmp_path / "no-venv"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no litellm on PATH either
    with pytest.raises(
        pytest.skip.Exception, match=r"no-venv/bin/litellm does not exist .*pip install 'litellm\[proxy\]"
    ):
        litellm_executable()
    exe = tmp_path / "venv" / "bin" / "litellm"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    monkeypatch.setenv("HARNESS_LITELLM_VENV", str(tmp_path / "venv"))
    assert litellm_executable() == str(exe)
