"""`harness import`: logs become suite folders; duplicates, secrets, malformed and non-UTF-8 lines each get one line."""

import json
import subprocess
import sys

import pytest
import yaml


def _line(i, **extra):
    row = {
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Question {i}"}],
        "model": "gpt-4o-mini",
        "temperature": 0.7,
        "max_tokens": 80,
        "response": {"choices": [{"message": {"role": "assistant", "content": f"Answer {i}"}}]},
        "metadata": {"route": "faq" if i % 3 else "billing"},
    }
    row.update(extra)
    return json.dumps(row)


def _write(path, lines):
    path.write_bytes(b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines))
    return path


class _Result:
    def __init__(self, proc):
        self.exit_code, self.output = proc.returncode, proc.stdout + proc.stderr


def _import(tmp_path, log, *args):
    """The real command line: exit status and the one line it prints."""
    cmd = [sys.executable, "-m", "harness", "import", str(log), "--suite", "t", "--out", str(tmp_path / "suites")]
    return _Result(subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120))


def test_a_log_becomes_a_suite_that_replays_each_request_with_its_own_settings(tmp_path):
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    log = _write(
        tmp_path / "log.jsonl",
        [
            _line(0),
            _line(0),
            _line(1, tools=tools, tool_choice="auto"),
            _line(2, response_format={"type": "json_object"}),
        ],
    )
    result = _import(tmp_path, log)
    assert result.exit_code == 0, result.output
    assert "3 items from 4 lines" in result.output and "1 duplicate" in result.output
    folder = tmp_path / "suites" / "t"
    config = yaml.safe_load((folder / "suite.yaml").read_text())
    assert config["grader"]["name"] == "pairwise" and config["request_field"] == "request"
    assert "Personal data" in (folder / "README.md").read_text()
    from harness.engine.units import generation_for, replayed_generation
    from harness.plan import parse_plan
    from harness.suite import load_suite
    from harness.suite.prompt import PromptBuilder

    suite = load_suite(str(folder))
    items = list(suite.items())
    prompt = PromptBuilder(suite).build(items[1])
    assert prompt.tools[0].name == "lookup" and prompt.tool_choice == "auto"
    assert PromptBuilder(suite).build(items[2]).response_format == {"type": "json_object"}
    assert items[0].fields["incumbent"] == "Answer 0" and items[0].group == "billing"
    plan = parse_plan({"models": {"m": {"provider": "openai", "base_url": "http://x"}}, "suites": ["t"]})
    spec = plan.models[0]
    gen = replayed_generation(plan, spec, suite, items[0], generation_for(plan, spec, suite))
    assert (gen.temperature, gen.max_tokens) == (0.7, 80)  # the request's own settings
    plan = parse_plan(
        {
            "models": {"m": {"provider": "openai", "base_url": "http://x"}},
            "suites": ["t"],
            "generation": {"temperature": 0},
        }
    )
    gen = replayed_generation(plan, spec, suite, items[0], generation_for(plan, spec, suite))
    assert (gen.temperature, gen.max_tokens) == (0.0, 80)  # unless the plan says otherwise


def test_a_key_in_a_header_refuses_the_log_naming_the_line_and_writes_nothing(tmp_path):
    secret = "sk-proj-" + "A1b2C3d4" * 5
    log = _write(
        tmp_path / "log.jsonl", [_line(0), _line(1, metadata={"headers": {"authorization": f"Bearer {secret}"}})]
    )
    result = _import(tmp_path, log)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "log.jsonl:2: refused" in lines[0] and secret not in result.output
    assert not (tmp_path / "suites" / "t").exists()


def test_malformed_and_non_utf8_lines_are_skipped_and_counted_or_refused_with_strict(tmp_path):
    log = _write(tmp_path / "log.jsonl", [_line(0), b'{"messages": [', _line(1).encode()[:-2] + b'\xff"}', _line(2)])
    result = _import(tmp_path, log)
    assert result.exit_code == 0
    assert "2 items from 4 lines" in result.output and "1 malformed" in result.output and "1 not UTF-8" in result.output
    result = _import(tmp_path, log, "--strict", "--force")
    assert result.exit_code == 2 and "log.jsonl:2: malformed log line" in result.output
    assert len(result.output.strip().splitlines()) == 1
    log = _write(tmp_path / "log2.jsonl", [_line(0), b'{"messages": "x\xff"}'])
    result = _import(tmp_path, log, "--strict", "--force")
    assert result.exit_code == 2 and "log2.jsonl:2: not valid UTF-8 (byte" in result.output


def test_litellm_payloads_and_a_seeded_stratified_sample(tmp_path):
    rows = []
    for i in range(60):
        rows.append(
            json.dumps(
                {
                    "id": f"call-{i}",
                    "call_type": "acompletion",
                    "status": "success" if i != 5 else "failure",
                    "model": "openai/glm-4-9b",
                    "model_group": "cheap",
                    "messages": [{"role": "user", "content": f"Is message {i} spam?"}],
                    "response": {"choices": [{"message": {"role": "assistant", "content": "no"}}]},
                    "model_parameters": {"temperature": 0, "max_tokens": 5},
                    "request_tags": ["spam" if i < 45 else "intent"],
                    "metadata": {"label": "spam" if i % 4 == 0 else "ham"},
                }
            )
        )
    log = _write(tmp_path / "litellm.jsonl", rows)
    result = _import(tmp_path, log, "--sample", "20", "--by", "group", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert "1 failed calls" in result.output
    items = [json.loads(x) for x in (tmp_path / "suites" / "t" / "items.jsonl").read_text().splitlines()]
    groups = [r["group"] for r in items]
    assert len(items) == 20 and groups.count("spam") == 15 and groups.count("intent") == 5  # 44:15 of 59
    config = yaml.safe_load((tmp_path / "suites" / "t" / "suite.yaml").read_text())
    assert config["grader"] == {"name": "label", "options": {"labels": ["ham", "spam"]}}
    assert items[0]["request"]["max_tokens"] == 5
    again = _import(tmp_path, log, "--sample", "20", "--seed", "3", "--force")
    assert again.exit_code == 0
    assert [json.loads(x)["id"] for x in (tmp_path / "suites" / "t" / "items.jsonl").read_text().splitlines()] == [
        r["id"] for r in items
    ]


@pytest.mark.slow
def test_a_200_mb_log_is_streamed_in_bounded_memory(tmp_path):
    log = tmp_path / "big.jsonl"
    pad = "x" * 900
    with open(log, "w") as fh:
        for i in range(220_000):
            fh.write(_line(i, metadata={"route": f"r{i % 7}", "note": pad}) + "\n")
    assert log.stat().st_size > 200_000_000
    # VmHWM (this process's own peak RSS): getrusage's ru_maxrss survives exec, so a child of a large
    # pytest process would report its parent's size.
    script = (
        "from harness.traffic.importer import import_log; "
        f"r = import_log({str(log)!r}, 'big', {str(tmp_path / 'out')!r}, sample=1000); "
        "hwm = [x for x in open('/proc/self/status') if x.startswith('VmHWM')][0].split()[1]; "
        "print(r.written, r.distinct, hwm)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    written, distinct, peak_kb = map(int, out)
    assert (written, distinct) == (1000, 220_000)
    print(f"220,000 lines, {log.stat().st_size // 10**6} MB: peak RSS {peak_kb // 1024} MB")
    assert peak_kb < 150_000, f"peak RSS {peak_kb} kB: the import is not streaming"


def test_wrapped_records_and_what_cannot_be_replayed():
    from harness.traffic.importer import read_logged
    from harness.traffic.request import RequestError

    inner = {
        "call_type": "completion",
        "status": "success",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "model_parameters": {"temperature": 0.1, "response_format": {"type": "json_object"}},
        "response": {
            "choices": [{"message": {"content": None, "tool_calls": [{"id": "1", "function": {"name": "f"}}]}}]
        },
        "metadata": {"tags": ["route-a"]},
    }
    logged = read_logged({"standard_logging_object": inner})
    assert logged.fmt == "litellm" and logged.group == "route-a"
    assert logged.request["temperature"] == 0.1 and logged.request["response_format"] == {"type": "json_object"}
    assert '"name": "f"' in logged.answer  # an answer that only called tools is kept as its calls
    wrapped = read_logged(
        {"request": {"messages": [{"role": "user", "content": "x"}], "max_tokens": 9}, "response": "y"}
    )
    assert wrapped.request["max_tokens"] == 9 and wrapped.answer == "y"
    for bad in (
        {"messages": []},
        {"messages": [{"content": "no role"}]},
        {"messages": [{"role": "user", "content": 3}]},
    ):
        with pytest.raises(RequestError):
            read_logged(bad)
