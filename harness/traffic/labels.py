"""Classification results of a run, read from the store: per model and `label` suite, macro-F1, per-class
precision/recall, the confusion matrix, JSON validity (when the requests asked for JSON) and cost per 1,000."""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import HarnessError
from harness.graders.label import JSON_INVALID, JSON_VALID
from harness.store import Store
from harness.traffic import stats

NAN = float("nan")


@dataclass(frozen=True)
class LabelResult:
    model: str
    suite: str
    metrics: stats.Classification
    errors: int  # requests that failed: not classified, not in the matrix
    json_requests: int  # answers that had to be JSON
    json_valid: int
    cost_usd: float
    cost_per_1000: float
    cost_estimated: bool  # some token counts were estimated (cost marked ≈)
    answers: dict | None = None  # item id -> (gold, predicted or None), for comparisons across runs
    suite_hash: str = ""


def label_results(store: Store, run_id: str | None = None) -> tuple[str, list[LabelResult]]:
    run_id = store.resolve_run(run_id)
    suites = [s for s in store.run_suites(run_id) if s.grader == "label"]
    if not suites:
        raise HarnessError(f"run {run_id} has no classification suite (grader: label); nothing to show")
    out = []
    for info in suites:
        gold_of = {item: ref for item, (_, ref) in store.prompts(info.suite_hash).items()}
        rows: dict[str, dict] = {}
        for s in store.samples(run_id, suite=info.suite):
            acc = rows.setdefault(
                s.model,
                {
                    "gold": [],
                    "pred": [],
                    "items": {},
                    "errors": 0,
                    "json": 0,
                    "valid": 0,
                    "cost": 0.0,
                    "est": False,
                    "n": 0,
                },
            )
            acc["n"] += 1
            acc["cost"] += s.cost_usd
            acc["est"] |= bool(s.usage_estimated)
            if s.error:
                acc["errors"] += 1
                continue
            if s.grade_reason.startswith((JSON_VALID, JSON_INVALID)):
                acc["json"] += 1
                acc["valid"] += s.grade_reason.startswith(JSON_VALID)
            gold = gold_of.get(s.item_id, "")
            acc["gold"].append(str(gold))
            acc["pred"].append(s.extracted or None)
            if s.sample_index == 0:
                acc["items"][s.item_id] = (str(gold), s.extracted or None)
        for model, acc in sorted(rows.items()):
            labels = sorted(set(acc["gold"]))
            out.append(
                LabelResult(
                    model=model,
                    suite=info.suite,
                    metrics=stats.classification(acc["gold"], acc["pred"], labels),
                    errors=acc["errors"],
                    json_requests=acc["json"],
                    json_valid=acc["valid"],
                    cost_usd=acc["cost"],
                    cost_per_1000=1000 * acc["cost"] / acc["n"] if acc["n"] else float("nan"),
                    cost_estimated=acc["est"],
                    answers=acc["items"],
                    suite_hash=info.suite_hash,
                )
            )
    return run_id, out


def to_json(run_id: str, results: list[LabelResult]) -> dict:
    from harness.analysis.compare import json_safe

    return json_safe(
        {
            "run": run_id,
            "results": [
                {
                    "model": r.model,
                    "suite": r.suite,
                    "n": r.metrics.n,
                    "accuracy": r.metrics.accuracy,
                    "macro_f1": r.metrics.macro_f1,
                    "per_class": {
                        c: {
                            "precision": r.metrics.precision[c],
                            "recall": r.metrics.recall[c],
                            "f1": r.metrics.f1[c],
                            "support": r.metrics.support[c],
                        }
                        for c in r.metrics.precision
                    },
                    "confusion": {"labels": list(r.metrics.labels), "matrix": [list(x) for x in r.metrics.matrix]},
                    "errors": r.errors,
                    "json_requests": r.json_requests,
                    "json_valid": r.json_valid,
                    "cost_usd": r.cost_usd,
                    "cost_per_1000": r.cost_per_1000,
                    "cost_estimated": r.cost_estimated,
                }
                for r in results
            ],
        }
    )


@dataclass(frozen=True)
class F1Change:
    model: str
    suite: str
    n: int  # items both runs classified
    old: float
    new: float
    diff: float
    lo: float
    hi: float
    regression: bool  # the whole interval below zero
    note: str = ""


def _macro(pairs: list[tuple[str, str | None]], labels: list[str]) -> float:
    return stats.classification([g for g, _ in pairs], [p for _, p in pairs], labels).macro_f1


def compare_f1(
    store: Store, old_run: str, new_run: str, *, n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> list[F1Change]:
    """Per model and label suite of both runs: macro-F1 before and after on the items both classified,
    with a paired bootstrap interval of the difference (items resampled together in both runs)."""
    import numpy as np

    _, before = label_results(store, old_run)
    _, after = label_results(store, new_run)
    old_by = {(r.model, r.suite): r for r in before}
    out = []
    for r in after:
        o = old_by.get((r.model, r.suite))
        if o is None:
            continue
        if o.suite_hash != r.suite_hash:
            out.append(F1Change(r.model, r.suite, 0, NAN, NAN, NAN, NAN, NAN, False, "suite content changed"))
            continue
        items = sorted(set(o.answers) & set(r.answers))
        labels = sorted({o.answers[i][0] for i in items})
        a = [o.answers[i] for i in items]
        b = [r.answers[i] for i in items]
        if len(items) < 2:
            out.append(F1Change(r.model, r.suite, len(items), NAN, NAN, NAN, NAN, NAN, False, "too few shared items"))
            continue
        old_f1, new_f1 = _macro(a, labels), _macro(b, labels)
        rng = np.random.default_rng(seed)
        diffs = []
        for _ in range(n_resamples):
            pick = rng.integers(0, len(items), len(items))
            diffs.append(_macro([b[i] for i in pick], labels) - _macro([a[i] for i in pick], labels))
        tail = (1 - confidence) / 2 * 100
        lo, hi = float(np.percentile(diffs, tail)), float(np.percentile(diffs, 100 - tail))
        out.append(F1Change(r.model, r.suite, len(items), old_f1, new_f1, new_f1 - old_f1, lo, hi, hi < 0))
    return out
