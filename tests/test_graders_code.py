"""`code`: extracting the program from real-looking replies, running it in the sandbox, HumanEval and MBPP."""

from __future__ import annotations

import ast
import concurrent.futures
import gzip
import json
import textwrap
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.graders import grade
from harness.graders.code import build_program, extract_code
from harness.records import Item

# The grader parses model code to find its parts; code.py silences the parser's warnings about it
# (e.g. MBPP's "\w" in plain strings), but pytest resets warning filters per test.
pytestmark = pytest.mark.filterwarnings("ignore:invalid escape sequence")

SHARED = Path(__file__).resolve().parents[2] / "shared"
HUMANEVAL = SHARED / "datasets" / "humaneval" / "HumanEval.jsonl.gz"
MBPP = SHARED / "datasets" / "mbpp" / "mbpp.jsonl"

# A HumanEval-style task written for these tests (not from any dataset).
PROMPT = '''from typing import List


def running_max(values: List[int]) -> List[int]:
    """Return the running maximum of values.
    >>> running_max([1, 3, 2, 5])
    [1, 3, 3, 5]
    """
'''
TEST = """

def check(candidate):
    assert candidate([]) == []
    assert candidate([1, 3, 2, 5]) == [1, 3, 3, 5]
    assert candidate([-2, -5, -1]) == [-2, -2, -1]
    assert candidate([7]) == [7]
"""
TASK = Item(id="t/running_max", fields={"prompt": PROMPT, "test": TEST, "entry_point": "running_max"})

# A prompt with a helper defined above the entry point, as some HumanEval prompts have.
HELPER_PROMPT = '''

def is_vowel(ch: str) -> bool:
    return ch.lower() in "aeiou"


def count_vowels(text: str) -> int:
    """Count the vowels in text, using is_vowel.
    >>> count_vowels("Banana")
    3
    """
'''
HELPER_TEST = """

def check(candidate):
    assert candidate("Banana") == 3
    assert candidate("") == 0
    assert candidate("xyz") == 0
    assert candidate("AEIOU") == 5
"""
HELPER_TASK = Item(
    id="t/count_vowels", fields={"prompt": HELPER_PROMPT, "test": HELPER_TEST, "entry_point": "count_vowels"}
)

FENCE = "```"

# Replies in the styles chat and completion models send (written for these tests).
PASSING_REPLIES = {
    "gpt_prose_around_fence": f"""Here's the implementation:

{FENCE}python
from typing import List


def running_max(values: List[int]) -> List[int]:
    result = []
    current = None
    for v in values:
        current = v if current is None else max(current, v)
        result.append(current)
    return result
{FENCE}

This works by keeping track of the largest value seen so far and appending it at each step.
The time complexity is O(n).""",
    "qwen_main_guard_demo": f"""To solve this problem, we iterate once over the list.

{FENCE}python
from typing import List

def running_max(values: List[int]) -> List[int]:
    \"\"\"Return the running maximum of values.\"\"\"
    out: List[int] = []
    for v in values:
        out.append(v if not out else max(out[-1], v))
    return out


if __name__ == "__main__":
    print(running_max([1, 3, 2, 5]))  # [1, 3, 3, 5]
    import sys
    sys.exit(1)
{FENCE}

### Explanation
- `out[-1]` always holds the maximum so far.""",
    "deepseek_think_then_code_without_imports": f"""<think>
The user wants a running max. Maybe def running_max(values): return values? No, that is wrong.
</think>

We can use `itertools.accumulate` with `max`:

{FENCE}python
def running_max(values: List[int]) -> List[int]:
    return list(accumulate(values, max))
{FENCE}

Wait, that needs an import. The complete solution:

{FENCE}python
from itertools import accumulate


def running_max(values: List[int]) -> List[int]:
    return list(accumulate(values, max))
{FENCE}""",
    "several_blocks_pick_the_defining_one": f"""First install nothing, then run:

{FENCE}bash
python solution.py
{FENCE}

Usage:

{FENCE}python
print(running_max([3, 1, 4]))
{FENCE}

Implementation:

{FENCE}python
def running_max(values):
    best, out = float("-inf"), []
    for v in values:
        best = max(best, v)
        out.append(best)
    return out
{FENCE}""",
    "revised_version_last_wins": f"""Here is a first attempt:

{FENCE}python
def running_max(values):
    return sorted(values)
{FENCE}

Actually that is wrong: sorting loses the order. Here is the corrected version:

{FENCE}python
def running_max(values):
    out = []
    for v in values:
        out.append(max(out[-1], v) if out else v)
    return out
{FENCE}""",
    "example_calls_and_asserts_at_bottom": f"""{FENCE}python
from typing import List

def running_max(values: List[int]) -> List[int]:
    out = []
    for v in values:
        out.append(max(out[-1], v) if out else v)
    return out

# Example usage
result = running_max([1, 3, 2, 5])
print(result)
assert running_max([1, 2]) == [2, 2]  # the model's own (wrong) example must not count
for case in ([1], [2, 1]):
    print(case, running_max(case))
nums = list(map(int, input().split()))
print(running_max(nums))
{FENCE}""",
    "helpers_and_constants_in_block": f"""{FENCE}python
import math

NEG_INF = -math.inf


def _step(best: int, value: int) -> int:
    return value if best == NEG_INF else max(best, value)


def running_max(values):
    out, best = [], NEG_INF
    for v in values:
        best = _step(best, v)
        out.append(best)
    return out
{FENCE}""",
    "unfenced_full_function_with_prose": """Sure! Here is the function:

from typing import List

def running_max(values: List[int]) -> List[int]:
    out = []
    for v in values:
        out.append(max(out[-1], v) if out else v)
    return out

Explanation: we keep the maximum so far.
Note: the input list is not modified.""",
    "bare_body_completion": """    out = []
    for v in values:
        out.append(max(out[-1], v) if out else v)
    return out
""",
    "bare_body_first_line_unindented": """out = []
    for v in values:
        out.append(max(out[-1], v) if out else v)
    return out
""",
    "bare_body_all_at_column_0": """out = []
for v in values:
    out.append(max(out[-1], v) if out else v)
return out
""",
    "bare_body_with_tabs": "\tout = []\n\tfor v in values:\n\t\tout.append(max(out[-1], v) if out else v)\n\treturn out\n",
    "body_in_a_fence": f"""{FENCE}python
    out = []
    for v in values:
        out.append(max(out[-1], v) if out else v)
    return out
{FENCE}""",
    "completion_continues_with_main_and_demo": """    out = []
    for v in values:
        out.append(max(out[-1], v) if out else v)
    return out


def main():
    print(running_max([1, 2, 3]))


main()
""",
    "prompt_echoed_then_body": PROMPT
    + """    out = []
    for v in values:
        out.append(max(out[-1], v) if out else v)
    return out
""",
    "unclosed_fence_cut_by_max_tokens": f"""Here you go:

{FENCE}py
def running_max(values):
    out = []
    for v in values:
        out.append(max(out[-1], v) if out else v)
    return out
""",
    "whole_block_indented_in_a_list_item": f"""1. Implement the function:

    {FENCE}python
    def running_max(values):
        out = []
        for v in values:
            out.append(max(out[-1], v) if out else v)
        return out
    {FENCE}
""",
    "tilde_fence_and_capitalised_tag": """~~~Python
def running_max(values):
    import itertools
    return list(itertools.accumulate(values, max))
~~~""",
    "doctest_run_at_bottom": f"""{FENCE}python
def running_max(values):
    out = []
    for v in values:
        out.append(max(out[-1], v) if out else v)
    return out

import doctest
doctest.testmod()
{FENCE}""",
}

FAILING_REPLIES = {
    "wrong_algorithm": f"{FENCE}python\ndef running_max(values):\n    return sorted(values)\n{FENCE}",
    "renamed_function": f"{FENCE}python\ndef prefix_max(values):\n    import itertools\n    return list(itertools.accumulate(values, max))\n{FENCE}",
    "not_implemented": "    raise NotImplementedError\n",
    "prose_only": "I am sorry, but I cannot help with that.",
    "syntax_error": f"{FENCE}python\ndef running_max(values)\n    return values\n{FENCE}",
    "think_only_unclosed": "<think>\ndef running_max(values):\n    import itertools\n    return list(itertools.accumulate(values, max))\n",
}


def _sandbox():
    return pytest.importorskip("harness.graders.sandbox", reason="harness.graders.sandbox is not importable yet")


# --- extraction (no sandbox needed) ----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PASSING_REPLIES))
def test_extracted_program_compiles_and_defines_the_entry_point_once(name):
    program = build_program(PASSING_REPLIES[name], PROMPT, "running_max")
    tree = ast.parse(program)
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "running_max"]
    assert len(defs) == 1, program
    body = defs[0].body
    assert not (len(body) == 1 and isinstance(body[0], ast.Expr)), "only the prompt's docstring made it in"
    assert "__main__" not in program and "print(" not in program.split("def running_max")[0]
    assert "input(" not in program and "assert " not in program


def test_full_function_gets_the_prompt_imports_but_not_its_bare_signature():
    program = build_program(PASSING_REPLIES["deepseek_think_then_code_without_imports"], PROMPT, "running_max")
    assert program.startswith("from typing import List\n")
    assert program.count("def running_max") == 1
    assert "accumulate" in program
    assert "Maybe def running_max" not in program  # the think block is never read


def test_body_variants_are_indented_under_the_prompt():
    for name in ("bare_body_first_line_unindented", "bare_body_all_at_column_0", "bare_body_with_tabs"):
        program = build_program(PASSING_REPLIES[name], PROMPT, "running_max")
        assert program.startswith(PROMPT)
        assert "\n    out = []\n" in program
        assert "\t" not in program


def test_demo_code_is_dropped_but_setup_code_kept():
    code = textwrap.dedent("""
        import sys
        sys.setrecursionlimit(10000)
        CACHE = {}

        def f(n):
            return n

        print(f(3))
        x = f(4)
        if __name__ == "__main__":
            f(5)
    """)
    program = build_program(code, "", "f")
    assert "sys.setrecursionlimit(10000)" in program and "CACHE = {}" in program
    assert "print(" not in program and "x = f(4)" not in program and "__main__" not in program


def test_choose_block_prefers_python_and_the_defining_block():
    reply = f"{FENCE}text\ndef running_max(x): pass\n{FENCE}\n{FENCE}python\nprint(1)\n{FENCE}\n"
    assert extract_code(reply, "running_max") == "print(1)\n"
    reply = f"{FENCE}\nuntagged = 1\n{FENCE}\n{FENCE}python\ntagged = 2\n{FENCE}\n"
    assert extract_code(reply, "running_max") == "tagged = 2\n"


def test_missing_fields_and_bad_options_are_user_errors():
    _sandbox()
    with pytest.raises(HarnessError, match="needs field 'entry_point'"):
        grade("code", "pass", Item(id="x", fields={"prompt": "", "test": ""}), {})
    with pytest.raises(HarnessError, match="unknown style"):
        grade("code", "pass", TASK, {"style": "leetcode"})
    with pytest.raises(HarnessError, match="unknown sandbox limit"):
        grade("code", "pass", TASK, {"cpu_seconds": 3})


# --- running in the sandbox ------------------------------------------------------------------


def _grade_all(replies: dict[str, str], task: Item, options: dict | None = None) -> dict:
    with concurrent.futures.ThreadPoolExecutor(max(1, len(replies))) as pool:
        futures = {name: pool.submit(grade, "code", reply, task, options or {}) for name, reply in replies.items()}
        return {name: f.result() for name, f in futures.items()}


def test_realistic_replies_pass():
    _sandbox()
    results = _grade_all(PASSING_REPLIES, TASK)
    failed = {name: (g.reason, g.extracted) for name, g in results.items() if not g.passed}
    assert not failed


def test_wrong_or_missing_code_fails():
    _sandbox()
    results = _grade_all(FAILING_REPLIES, TASK)
    assert not [name for name, g in results.items() if g.passed]
    assert "NotImplementedError" in results["not_implemented"].reason
    assert results["prose_only"].reason
    assert results["think_only_unclosed"].reason.startswith("empty response")


def test_grade_reports_the_program_it_ran():
    _sandbox()
    result = grade("code", PASSING_REPLIES["bare_body_completion"], TASK, {})
    assert result.passed and result.score == 1.0
    assert result.extracted.startswith(PROMPT)


def test_helper_from_the_prompt_is_available_to_a_full_function():
    _sandbox()
    reply = f"""Here is a solution that reuses the helper:

{FENCE}python
def count_vowels(text: str) -> int:
    return sum(1 for ch in text if is_vowel(ch))
{FENCE}
"""
    result = grade("code", reply, HELPER_TASK, {})
    assert result.passed, result.reason
    assert "def is_vowel" in result.extracted


def test_timeout_option_limits_wall_time():
    _sandbox()
    reply = "    while True:\n        pass\n"
    result = grade("code", reply, TASK, {"timeout": 1})
    assert not result.passed
    assert "time" in result.reason.lower()


def test_an_oversized_reply_gets_a_verdict_of_its_own():
    # A 70 MB reply once came back as "sandbox zygote died": it is the reply's fault, and says so.
    _sandbox()
    huge = f"{FENCE}python\ndef running_max(values):\n    return values\n" + "# padding\n" * (7 << 20) + FENCE
    result = grade("code", huge, TASK, {})
    assert not result.passed
    assert result.reason.startswith("response too large to run") and "zygote" not in result.reason
    assert grade("code", PASSING_REPLIES["bare_body_completion"], TASK, {}).passed  # and the sandbox still works


MBPP_TASK = Item(
    id="t/mbpp",
    fields={
        "text": "Write a function to add the digits of a non-negative integer.",
        "test_setup_code": "import math",
        "test_list": [
            "assert digit_sum(0) == 0",
            "assert digit_sum(123) == 6",
            "assert math.isclose(digit_sum(99), 18)",
        ],
    },
)


def test_mbpp_style_chat_reply_with_its_own_asserts():
    _sandbox()
    reply = """```python
def digit_sum(n):
    return sum(int(d) for d in str(n))

assert digit_sum(5) == 6   # a wrong example of the model's own: dropped, not run
print(digit_sum(123))
```"""
    assert grade("code", reply, MBPP_TASK, {"style": "mbpp"}).passed
    wrong = "```python\ndef digit_sum(n):\n    return n % 10\n```"
    assert not grade("code", wrong, MBPP_TASK, {"style": "mbpp"}).passed


# --- the real HumanEval and MBPP files -------------------------------------------------------


def _humaneval() -> list[dict]:
    if not HUMANEVAL.is_file():
        pytest.skip(f"HumanEval data not found at {HUMANEVAL} (expected ../shared next to the repo)")
    with gzip.open(HUMANEVAL, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _humaneval_grades(rows: list[dict], make_reply) -> dict[str, object]:
    with concurrent.futures.ThreadPoolExecutor(len(rows)) as pool:
        futures = {
            row["task_id"]: pool.submit(grade, "code", make_reply(row), Item(id=row["task_id"], fields=row), {})
            for row in rows
        }
        return {task_id: f.result() for task_id, f in futures.items()}


def test_humaneval_canonical_solutions_pass():
    _sandbox()
    rows = _humaneval()
    assert len(rows) == 164
    results = _humaneval_grades(rows, lambda row: row["canonical_solution"])
    assert sum(g.passed for g in results.values()) == 164, {t: g.reason for t, g in results.items() if not g.passed}


def test_humaneval_not_implemented_bodies_fail():
    _sandbox()
    results = _humaneval_grades(_humaneval(), lambda row: "    raise NotImplementedError\n")
    assert sum(g.passed for g in results.values()) == 0


def _chat_wrapped(row: dict) -> str:
    """The canonical solution as a chat model would send it: the whole function in a fence,
    without the prompt's imports, a demo under a main guard, prose around."""
    lines = row["prompt"].split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(f"def {row['entry_point']}("))
    function = "\n".join(lines[start:]) + row["canonical_solution"]
    return (
        f"Here's the implementation:\n\n{FENCE}python\n{function}\n\n"
        f'if __name__ == "__main__":\n    import doctest\n    doctest.testmod()\n{FENCE}\n\n'
        "This works by following the specification step by step."
    )


def test_humaneval_canonical_solutions_pass_in_chat_and_dedented_forms():
    _sandbox()
    rows = _humaneval()
    for make in (_chat_wrapped, lambda row: textwrap.dedent(row["canonical_solution"])):
        results = _humaneval_grades(rows, make)
        assert sum(g.passed for g in results.values()) == 164, {t: g.reason for t, g in results.items() if not g.passed}


def test_mbpp_test_split_reference_code_passes():
    _sandbox()
    if not MBPP.is_file():
        pytest.skip(f"MBPP data not found at {MBPP} (expected ../shared next to the repo)")
    rows = [json.loads(line) for line in MBPP.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [row for row in rows if 11 <= row["task_id"] <= 510]
    assert len(rows) == 500
    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        futures = {
            row["task_id"]: pool.submit(
                grade, "code", row["code"], Item(id=f"mbpp/{row['task_id']}", fields=row), {"style": "mbpp"}
            )
            for row in rows
        }
        results = {task_id: f.result() for task_id, f in futures.items()}
    failed = {t: g.reason for t, g in results.items() if not g.passed}
    assert not failed
