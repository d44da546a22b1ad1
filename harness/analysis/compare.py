"""Paired comparisons of stored results: models within one run, or the same models across two runs.

Pure logic over the store; `harness compare` (compare_cli.py) prints what these functions return,
and the weekly regression check calls `compare_runs` directly.

How one comparison is made (model A against model B on one suite):
- pairing: per-item scores (the mean over an item's samples, from `summarize_run`) are matched by
  item id; only items present on both sides count (`n_paired`);
- `diff` = mean(b) - mean(a) on those items: `a` is the reference (the baseline, the earlier model of
  the plan, the old run) and `b` the other side, so every view reads it as "Δ = A − B" with A the
  compared model (or the new run) and B the reference; the report's leaderboards and A-vs-B pages
  (`leaderboard.py`) use these same comparisons. Its CI and p-value come from one method of `paired.paired_compare`
  and agree (the CI is the inverted test): exact McNemar for 0/1 scores, a sign-flip permutation test
  otherwise, and a permutation test over whole groups when the suite groups its items (C-Eval
  subject, BBH task) into at least 10 groups, unless `clusters=False`;
- every p-value of one call is corrected together (Holm by default, or Benjamini-Hochberg);
  `significant` means corrected p < alpha;
- `mde`: the smallest difference this comparison would detect with 80% power at the nominal alpha
  (McNemar form with the observed discordance; from the paired SE otherwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Iterable

from harness.analysis import paired, stats
from harness.analysis.summary import CellSummary, RunSummary, summarize_run
from harness.errors import HarnessError
from harness.store import RunInfo, Store

CORRECTIONS = ("holm", "bh")
WATCH_MIN_DIFF = 0.20  # 20 points: a difference this large gets a "watch" line even when not significant
NAN = float("nan")


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a model's result on a suite in one run."""

    model: str
    run: str
    suite_hash: str
    mean: float  # over the compared items (equal to the run summary when every item is compared)
    lo: float
    hi: float
    n: int  # items compared
    n_items: int  # items this side has in its run
    latency_p50: float  # ops columns: over this side's whole cell
    latency_p99: float
    error_rate: float
    cost_usd: float
    cost_per_correct: float


@dataclass(frozen=True)
class PairComparison:
    suite: str
    suite_hash: str  # b's hash (the same as a's unless hash_mismatch)
    a: Side
    b: Side
    n_paired: int
    diff: float  # mean(b) - mean(a) over the paired items
    diff_lo: float
    diff_hi: float
    p_value: float
    p_adjusted: float
    significant: bool
    method: str  # mcnemar-exact | permutation | cluster-permutation | empty
    discordant_a: int  # items where a scored higher than b
    discordant_b: int  # items where b scored higher than a
    mde: float
    hash_mismatch: bool = False
    note: str = ""

    @property
    def marker(self) -> str:
        """'▲' b significantly better, '▼' b significantly worse, '' otherwise."""
        if not self.significant:
            return ""
        return "▲" if self.diff > 0 else "▼"

    @property
    def is_drop(self) -> bool:
        return self.significant and self.diff < 0

    @property
    def watch(self) -> bool:
        """Worth a look though not significant after correction: the raw interval excludes 0, or the
        difference is at least WATCH_MIN_DIFF (too few items, or too many comparisons, to confirm it)."""
        if self.significant or self.diff != self.diff:
            return False
        return self.diff_lo > 0 or self.diff_hi < 0 or abs(self.diff) >= WATCH_MIN_DIFF


@dataclass(frozen=True)
class _Comparisons:
    runs: list[RunInfo]
    correction: str
    alpha: float
    comparisons: list[PairComparison]
    notes: list[str] = field(default_factory=list)

    def suites(self) -> list[str]:
        seen: list[str] = []
        for c in self.comparisons:
            if c.suite not in seen:
                seen.append(c.suite)
        return seen


@dataclass(frozen=True)
class ModelsComparison(_Comparisons):
    """Models within one run; `a` is the baseline (or the earlier model of the pair)."""

    kind: str = "models"
    baseline: str | None = None

    @property
    def regressions(self) -> list[PairComparison]:
        return []


@dataclass(frozen=True)
class RunsComparison(_Comparisons):
    """The same models across two runs; `a` is the old run, `b` the new one."""

    kind: str = "runs"

    @property
    def regressions(self) -> list[PairComparison]:
        """Significant drops (new run worse than the old one after correction)."""
        return [c for c in self.comparisons if c.is_drop]


# --------------------------------------------------------------------------- building


def _side(cell: CellSummary, run_id: str, keep: list[int], clusters: bool) -> Side:
    n = len(keep)
    if n == cell.n_items:
        mean, lo, hi = cell.mean, cell.lo, cell.hi
    else:  # a subset of the cell's items: re-estimate on exactly the compared items
        scores = [cell.scores[i] for i in keep]
        groups = [cell.groups[i] for i in keep]
        est = stats.mean_ci(scores, clusters=groups if clusters and any(groups) else None)
        mean, lo, hi = est.mean, est.lo, est.hi
    return Side(
        model=cell.model,
        run=run_id,
        suite_hash=cell.suite_hash,
        mean=mean,
        lo=lo,
        hi=hi,
        n=n,
        n_items=cell.n_items,
        latency_p50=cell.latency_p50,
        latency_p99=cell.latency_p99,
        error_rate=cell.error_rate,
        cost_usd=cell.cost_usd,
        cost_per_correct=cell.cost_per_correct,
    )


def shared_items(a: CellSummary, b: CellSummary) -> tuple[list[int], list[int]]:
    """The one way items are paired: by item id, in a's order; (indices into a, indices into b)."""
    b_index = {item: i for i, item in enumerate(b.item_ids)}
    a_keep = [i for i, item in enumerate(a.item_ids) if item in b_index]
    return a_keep, [b_index[a.item_ids[i]] for i in a_keep]


def pair_cells(
    a: CellSummary,
    a_run: str,
    b: CellSummary,
    b_run: str,
    *,
    alpha: float = 0.05,
    clusters: bool = True,
    note: str = "",
) -> PairComparison:
    """Compare two cells of one suite on the items they share (p_adjusted is filled in later)."""
    a_keep, b_keep = shared_items(a, b)
    a_scores = [a.scores[i] for i in a_keep]
    b_scores = [b.scores[i] for i in b_keep]
    groups = [a.groups[i] for i in a_keep]
    cmp = paired.paired_compare(b_scores, a_scores, clusters=groups if clusters and any(groups) else None)
    n = cmp.n
    if cmp.method == "mcnemar-exact":
        mde = stats.minimum_detectable_effect(n, (cmp.discordant_a + cmp.discordant_b) / n, alpha=alpha)
    elif n and not math.isnan(cmp.se):
        mde = stats.minimum_detectable_effect_sd(n, cmp.se * math.sqrt(n), alpha=alpha)
    else:
        mde = NAN
    if cmp.note:
        note = f"{note}; {cmp.note}" if note else cmp.note
    dropped = (a.n_items - n, b.n_items - n)
    if any(dropped) and n:
        extra = f"compared on the {n} items both sides have ({a.n_items} vs {b.n_items})"
        note = f"{note}; {extra}" if note else extra
    elif n == 0:
        extra = "no items in common: nothing to compare"
        note = f"{note}; {extra}" if note else extra
    return PairComparison(
        suite=b.suite,
        suite_hash=b.suite_hash,
        a=_side(a, a_run, a_keep, clusters),
        b=_side(b, b_run, b_keep, clusters),
        n_paired=n,
        diff=cmp.diff,
        diff_lo=cmp.lo,
        diff_hi=cmp.hi,
        p_value=cmp.p_value,
        p_adjusted=NAN,
        significant=False,
        method=cmp.method,
        # stats compares (first - second) = (b - a): its discordant_a counts items where b is higher.
        discordant_a=cmp.discordant_b,
        discordant_b=cmp.discordant_a,
        mde=mde,
        hash_mismatch=a.suite_hash != b.suite_hash,
        note=note,
    )


def correct(comparisons: list[PairComparison], correction: str = "holm", alpha: float = 0.05) -> list[PairComparison]:
    """Adjust all p-values together and set `significant` (corrected p < alpha)."""
    _check_settings(correction, alpha)
    adjusted = stats.adjust_pvalues([c.p_value for c in comparisons], correction)
    out = []
    for c, p in zip(comparisons, adjusted):
        significant = bool(p == p and p < alpha)
        note = c.note
        if not significant and (c.diff_lo > 0 or c.diff_hi < 0):
            # The interval agrees with the raw p-value; only the correction for many comparisons differs.
            extra = (
                f"the 95% interval excludes 0 (raw p {c.p_value:.2g}) but is not corrected for the "
                f"{len(comparisons)} comparisons: corrected p {p:.2g}"
            )
            note = f"{note}; {extra}" if note else extra
        out.append(replace(c, p_adjusted=p, significant=significant, note=note))
    return out


def _check_settings(correction: str, alpha: float) -> None:
    if correction not in CORRECTIONS:
        raise HarnessError(f"--correction {correction}: use one of {', '.join(CORRECTIONS)}")
    if not 0.0 < alpha < 1.0:
        raise HarnessError(f"--alpha {alpha}: must be between 0 and 1")


def _pick(names: Iterable[str] | None, available: list[str], what: str, where: str) -> list[str]:
    """The requested names in `available` order (all when none requested); unknown names fail."""
    wanted = [n for n in (names or []) if n]
    if not wanted:
        return list(available)
    unknown = [n for n in wanted if n not in available]
    if unknown:
        raise HarnessError(
            f"{where} has no {what} {', '.join(repr(u) for u in unknown)} "
            f"(its {what}s: {', '.join(available) or 'none'})"
        )
    return [n for n in available if n in wanted]


def compare_models(
    store: Store,
    run_id: str | None = None,
    *,
    baseline: str | None = None,
    models: Iterable[str] | None = None,
    suites: Iterable[str] | None = None,
    correction: str = "holm",
    alpha: float = 0.05,
    clusters: bool = True,
    summary: RunSummary | None = None,
) -> ModelsComparison:
    """Compare the models of one run (default: the latest): every pair, or each against `baseline`."""
    _check_settings(correction, alpha)
    summary = summary or summarize_run(store, store.resolve_run(run_id))
    run = summary.run
    where = f"run {run.id}"
    model_names = _pick(models, [m.model for m in summary.models], "model", where)
    suite_names = _pick(suites, [s.suite for s in summary.suites], "suite", where)
    if baseline is not None:
        if baseline not in [m.model for m in summary.models]:
            _pick([baseline], [m.model for m in summary.models], "model", where)
        pairs = [(baseline, m) for m in model_names if m != baseline]
    else:
        pairs = [(x, y) for i, x in enumerate(model_names) for y in model_names[i + 1 :]]
    if not pairs:
        raise HarnessError(
            f"{where} has {'only one model' if len(model_names) < 2 else 'no pair of models'} to compare "
            f"({', '.join(model_names)}); compare two runs instead: `harness compare OLD_RUN NEW_RUN` "
            f"or `harness compare --against-previous`"
        )
    comparisons, notes = [], []
    for suite in suite_names:
        for a_name, b_name in pairs:
            a, b = summary.cell(a_name, suite), summary.cell(b_name, suite)
            if a is None or b is None:
                missing = ", ".join(n for n, c in ((a_name, a), (b_name, b)) if c is None)
                notes.append(f"{suite}: skipped {a_name} vs {b_name}: no results for {missing}")
                continue
            comparisons.append(pair_cells(a, run.id, b, run.id, alpha=alpha, clusters=clusters))
    if not comparisons:
        raise HarnessError(f"{where}: nothing to compare ({'; '.join(notes) or 'no results'})")
    return ModelsComparison(
        runs=[run],
        correction=correction,
        alpha=alpha,
        comparisons=correct(comparisons, correction, alpha),
        notes=notes,
        baseline=baseline,
    )


def compare_runs(
    store: Store,
    old_run_id: str,
    new_run_id: str,
    *,
    correction: str = "holm",
    alpha: float = 0.05,
    allow_hash_mismatch: bool = False,
    models: Iterable[str] | None = None,
    suites: Iterable[str] | None = None,
    clusters: bool = True,
) -> RunsComparison:
    """Compare each model shared by two runs with itself, suite by suite (diff = new - old).

    A suite whose content hash differs between the runs (items, templates or grader settings
    changed) is refused with a HarnessError unless `allow_hash_mismatch`; then it is compared on
    the item ids both runs have, and the comparison says so.
    """
    _check_settings(correction, alpha)
    old_id, new_id = store.resolve_run(old_run_id), store.resolve_run(new_run_id)
    if old_id == new_id:
        raise HarnessError(f"both runs are {old_id}: name two different runs")
    old, new = summarize_run(store, old_id), summarize_run(store, new_id)
    notes: list[str] = []
    if old.run.started_at > new.run.started_at:
        notes.append(f"run {old_id} started after {new_id}: differences read as {new_id} minus {old_id}")
    new_models = [m.model for m in new.models]
    shared_models = [m.model for m in old.models if m.model in new_models]
    if not shared_models:
        raise HarnessError(
            f"runs {old_id} and {new_id} have no model in common "
            f"({', '.join(m.model for m in old.models)} vs {', '.join(new_models)})"
        )
    model_names = _pick(models, shared_models, "model", f"runs {old_id} and {new_id} (in common)")
    new_suites = [s.suite for s in new.suites]
    shared_suites = [s.suite for s in old.suites if s.suite in new_suites]
    if not shared_suites:
        raise HarnessError(f"runs {old_id} and {new_id} have no suite in common")
    suite_names = _pick(suites, shared_suites, "suite", f"runs {old_id} and {new_id} (in common)")
    old_info = {m.model: m for m in old.models}
    for m in new.models:
        before = old_info.get(m.model)
        if m.model in model_names and before and (before.provider, before.api_model) != (m.provider, m.api_model):
            notes.append(
                f"model {m.model}: {before.provider}/{before.api_model} in {old_id}, "
                f"{m.provider}/{m.api_model} in {new_id}"
            )

    cells = []
    mismatched: dict[str, tuple[str, str]] = {}
    for suite in suite_names:
        for model in model_names:
            a, b = old.cell(model, suite), new.cell(model, suite)
            if a is None or b is None:
                notes.append(
                    f"{suite}: skipped {model}: no results in "
                    f"{' and '.join(r for r, c in ((old_id, a), (new_id, b)) if c is None)}"
                )
                continue
            if a.suite_hash != b.suite_hash:
                mismatched[suite] = (a.suite_hash, b.suite_hash)
            cells.append((suite, a, b))
    if mismatched and not allow_hash_mismatch:
        detail = "; ".join(f"{s}: {h[0]} in {old_id}, {h[1]} in {new_id}" for s, h in mismatched.items())
        raise HarnessError(
            f"suite content differs between the runs ({detail}): its items, templates or grader settings "
            f"changed, so scores are not comparable. Pass --allow-hash-mismatch to compare anyway on the "
            f"items both runs have, or --suite to leave those suites out"
        )
    comparisons = []
    for suite, a, b in cells:
        note = ""
        if suite in mismatched:
            note = f"suite hash differs ({a.suite_hash} -> {b.suite_hash}), compared anyway (--allow-hash-mismatch)"
        comparisons.append(pair_cells(a, old_id, b, new_id, alpha=alpha, clusters=clusters, note=note))
    if not comparisons:
        raise HarnessError(f"runs {old_id} and {new_id}: nothing to compare ({'; '.join(notes)})")
    return RunsComparison(
        runs=[old.run, new.run],
        correction=correction,
        alpha=alpha,
        comparisons=correct(comparisons, correction, alpha),
        notes=notes,
    )


def previous_run(store: Store, run_id: str | None = None) -> str:
    """The run of the same plan (by name) that started just before RUN (default: the latest run)."""
    rid = store.resolve_run(run_id)
    current = store.run(rid)
    earlier = [
        r
        for r in store.runs(current.plan_name)
        if r.id != rid and (r.started_at, r.id) < (current.started_at, current.id)
    ]
    if not earlier:
        raise HarnessError(f"run {rid} is the first run of plan '{current.plan_name}': no previous run to compare with")
    return earlier[-1].id


# --------------------------------------------------------------------------- JSON


def json_safe(x):
    """NaN / inf -> None, recursively, so a document is strict JSON (every --json output uses this)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def _side_dict(s: Side) -> dict:
    return {
        "model": s.model,
        "run": s.run,
        "suite_hash": s.suite_hash,
        "mean": s.mean,
        "lo": s.lo,
        "hi": s.hi,
        "n": s.n,
        "n_items": s.n_items,
        "latency_p50": s.latency_p50,
        "latency_p99": s.latency_p99,
        "error_rate": s.error_rate,
        "cost_usd": s.cost_usd,
        "cost_per_correct": s.cost_per_correct,
    }


def comparison_dict(c: PairComparison) -> dict:
    return {
        "suite": c.suite,
        "suite_hash": c.suite_hash,
        "a": _side_dict(c.a),
        "b": _side_dict(c.b),
        "n_paired": c.n_paired,
        "diff": c.diff,
        "diff_lo": c.diff_lo,
        "diff_hi": c.diff_hi,
        "p_value": c.p_value,
        "p_adjusted": c.p_adjusted,
        "significant": c.significant,
        "marker": c.marker,
        "method": c.method,
        "discordant_a": c.discordant_a,
        "discordant_b": c.discordant_b,
        "mde": c.mde,
        "hash_mismatch": c.hash_mismatch,
        "note": c.note,
    }


def to_json(result: ModelsComparison | RunsComparison) -> dict:
    """The `harness compare --json` document (fields documented in README.md)."""
    doc = {
        "kind": result.kind,
        "runs": [
            {
                "run": r.id,
                "plan": r.plan_name,
                "tag": r.tag,
                "status": r.status,
                "started": r.started_at.isoformat(timespec="seconds"),
            }
            for r in result.runs
        ],
        "correction": result.correction,
        "alpha": result.alpha,
        "baseline": getattr(result, "baseline", None),
        "comparisons": [comparison_dict(c) for c in result.comparisons],
        "regressions": [comparison_dict(c) for c in result.regressions],
        "notes": list(result.notes),
    }
    return json_safe(doc)
