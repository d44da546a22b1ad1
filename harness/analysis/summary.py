"""Summarize a stored run per model x suite: score with 95% CI, errors, latency, tokens and cost.

The CLI table, the HTML report and `harness compare` all read these values, so every view
of a run shows the same numbers.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from harness.providers.registry import capabilities_of
from harness.providers.text_calls import OUTCOMES
from harness.records import CONTEXT_LENGTH, error_class
from harness.store import RunInfo, RunModelInfo, RunSuiteInfo, Store


@dataclass(frozen=True)
class CellSummary:
    model: str
    suite: str
    suite_hash: str
    n_samples: int
    n_items: int
    mean: float
    lo: float
    hi: float
    ci_method: str
    errors: int
    error_rate: float
    latency_p50: float
    latency_p90: float
    latency_p99: float
    ttft_p50: float
    ttft_p99: float
    tokens_per_s: float
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cost_usd: float
    cost_per_correct: float
    served_models: tuple[str, ...]
    estimated_samples: int = 0  # samples whose tokens (and so cost) were estimated: the server reported none
    length_rate: float = float("nan")  # share of answered samples cut at max_tokens (finish_reason "length")
    scores: tuple[float, ...] = field(repr=False, default=())  # per item (mean over samples), item order
    item_ids: tuple[str, ...] = field(repr=False, default=())
    groups: tuple[str, ...] = field(repr=False, default=())
    # Tool suites: samples per outcome class (call, no_call, bad_arguments, text_call, error), in that order.
    tool_outcomes: tuple[tuple[str, int], ...] = ()
    # With several samples per item: pass^k for k = 1..min samples (all k tries of a task succeed).
    pass_hat_k: tuple[tuple[int, float], ...] = ()
    # Agent suites: model turns per task (mean) and seconds per turn (answered tasks); NaN elsewhere.
    turns_per_task: float = float("nan")
    seconds_per_turn: float = float("nan")


@dataclass(frozen=True)
class ModelOps:
    """Operations view of one model over the whole run (all suites)."""

    model: str
    n_samples: int
    error_rate: float
    latency_p50: float
    latency_p99: float
    ttft_p50: float
    tokens_per_s: float
    cost_usd: float
    cost_per_correct: float
    accuracy: float
    served_models: tuple[str, ...]
    latency_p90: float = float("nan")
    ttft_p90: float = float("nan")
    ttft_p99: float = float("nan")
    errors: int = 0
    estimated_samples: int = 0
    length_rate: float = float("nan")
    failure: str = ""  # why the model was stopped (bad key, unknown model, unreachable), if it was
    batched: int = 0  # samples answered through a provider Batch API (no latency, batch price)
    batch_saved_usd: float = 0.0  # what those samples would have cost more at the online price
    prompt_tokens: int = 0
    cached_tokens: int | None = None  # of prompt_tokens, read from the server's cache; None: never reported
    cache_saved_usd: float | None = None  # what the cached tokens saved at the list price; None: no cached price
    over_window: int = 0  # samples refused as longer than the model's context window (not errors of service)

    @property
    def cached_share(self) -> float | None:
        """The share of input tokens read from the server's cache; None when the server never said."""
        if self.cached_tokens is None or not self.prompt_tokens:
            return None
        return self.cached_tokens / self.prompt_tokens


@dataclass(frozen=True)
class RunSummary:
    run: RunInfo
    models: list[RunModelInfo]
    suites: list[RunSuiteInfo]
    cells: list[CellSummary]
    ops: list[ModelOps]

    def cell(self, model: str, suite: str) -> CellSummary | None:
        for c in self.cells:
            if c.model == model and c.suite == suite:
                return c
        return None


ESTIMATE_MARK = "≈"  # before a cost that includes estimated tokens (the server reported no usage)


def estimate_mark(estimated_samples: int) -> str:
    """The prefix of a cost figure: "≈" when some of its samples' tokens were estimated."""
    return ESTIMATE_MARK if estimated_samples else ""


def cache_and_window_notes(o: ModelOps) -> list[str]:
    """One model's prompt-cache and context-window lines, as the summary and the report show them."""
    from harness.records import money

    notes = []
    share = o.cached_share
    if share is not None:
        saving = (
            f", saving {money(o.cache_saved_usd)} at the list price"
            if o.cache_saved_usd is not None
            else " (no cached_input price in the plan: billed as input)"
        )
        notes.append(
            f"{o.model}: {share:.0%} of input tokens were cached ({o.cached_tokens:,} of {o.prompt_tokens:,}){saving}"
        )
    if o.over_window:
        notes.append(
            f"{o.model}: {o.over_window:,} sample(s) over the window: the server refused the prompt as longer "
            f"than the model's context (scored 0, not retried, not counted as errors)"
        )
    return notes


class _Acc:
    def __init__(self):
        self.scores_by_item: dict[str, list[float]] = defaultdict(list)
        self.group_by_item: dict[str, str] = {}
        self.latency: list[float] = []
        self.ttft: list[float] = []
        self.errors = 0
        self.n = 0
        self.prompt_tokens = self.completion_tokens = self.reasoning_tokens = 0
        self.cost = 0.0
        self.correct = 0.0
        self.gen_time = 0.0
        self.served: set[str] = set()
        self.suite_hash = ""
        self.estimated = 0
        self.length = 0
        self.batched = 0
        self.batched_tokens = [0, 0]  # prompt, completion tokens of batched samples
        self.batched_cost = 0.0
        self.outcomes: Counter = Counter()
        self.turns: list[int] = []  # agent tasks: model turns each took
        self.turn_seconds = 0.0
        self.cached_tokens: int | None = None  # summed over the samples whose server reported its cache
        self.over_window = 0

    @property
    def length_rate(self) -> float:
        answered = self.n - self.errors - self.over_window
        return self.length / answered if answered else float("nan")

    def add(self, r, timed: bool = True) -> None:
        """`timed`: the sample's latency was measured (a completion replayed from a file has none)."""
        self.n += 1
        self.suite_hash = r.suite_hash
        self.scores_by_item[r.item_id].append(r.score)
        self.group_by_item[r.item_id] = r.item_group
        if r.tool_outcome:
            self.outcomes[r.tool_outcome] += 1
        if r.transcript_json and not r.error:
            turns = len(json.loads(r.transcript_json).get("turns") or ())
            self.turns.append(turns)
            self.turn_seconds += r.latency_s
        if r.usage_estimated:
            self.estimated += 1
        if not r.error:
            self.length += r.finish_reason == "length"
        if r.batched:  # waited in a provider's queue: its wall time is no latency
            self.batched += 1
            self.batched_tokens[0] += r.prompt_tokens
            self.batched_tokens[1] += r.completion_tokens
            self.batched_cost += r.cost_usd
        if r.cached_tokens is not None:
            self.cached_tokens = (self.cached_tokens or 0) + r.cached_tokens
        if error_class(r.error) == CONTEXT_LENGTH:
            # Over the window: the model's limit showing (scored 0, shown apart), not the service failing.
            self.over_window += 1
        elif r.error:
            self.errors += 1
        elif timed and not r.batched:
            self.latency.append(r.latency_s)
            self.gen_time += r.latency_s
            if r.ttft_s is not None:
                self.ttft.append(r.ttft_s)
        if r.served_model:
            self.served.add(r.served_model)
        self.prompt_tokens += r.prompt_tokens
        self.completion_tokens += r.completion_tokens
        self.reasoning_tokens += r.reasoning_tokens
        self.cost += r.cost_usd
        self.correct += r.score


def _pass_hat_ks(acc: _Acc) -> tuple[tuple[int, float], ...]:
    """pass^k for k = 1..the fewest samples any item has (a sample passes when its score is 1)."""
    from harness.analysis.tools import pass_hat_k

    runs = list(acc.scores_by_item.values())
    ns = [len(v) for v in runs]
    cs = [sum(1 for x in v if x >= 1.0) for v in runs]
    return tuple((k, pass_hat_k(ns, cs, k)) for k in range(1, min(ns) + 1))


def unpriced_models(run: RunInfo) -> frozenset[str]:
    """Models the run's plan gave no `price:`: their cost is unknown (NaN, shown "—"), not zero."""
    return frozenset(str(m.get("name")) for m in (run.plan or {}).get("models") or () if m.get("priced") is False)


def summarize_run(store: Store, run_id: str | None = None) -> RunSummary:
    from harness.analysis import stats

    run = store.run(run_id)
    unknown_cost = unpriced_models(run)
    cells_acc: dict[tuple[str, str], _Acc] = defaultdict(_Acc)
    model_acc: dict[str, _Acc] = defaultdict(_Acc)
    models = store.run_models(run.id)
    # Completions replayed from files were never timed: their latency, TTFT and speed are unknown ("—").
    untimed = {m.model for m in models if not capabilities_of(m.provider).timed}
    for r in store.samples(run.id):
        timed = r.model not in untimed
        cells_acc[(r.model, r.suite)].add(r, timed)
        model_acc[r.model].add(r, timed)
    suites = store.run_suites(run.id)
    cells = []
    for m in models:
        for s in suites:
            acc = cells_acc.get((m.model, s.suite))
            if acc is None:
                continue
            item_ids = tuple(acc.scores_by_item)
            multi = any(len(v) > 1 for v in acc.scores_by_item.values())
            if multi:
                # Several samples per item: every sample counts, clustered by item.
                flat = [x for i in item_ids for x in acc.scores_by_item[i]]
                clusters = [i for i in item_ids for _ in acc.scores_by_item[i]]
                est = stats.mean_ci(flat, clusters=clusters)
            else:
                flat = [acc.scores_by_item[i][0] for i in item_ids]
                groups = [acc.group_by_item[i] for i in item_ids]
                est = stats.mean_ci(flat, clusters=groups if any(groups) else None)
            per_item = tuple(sum(v) / len(v) for v in (acc.scores_by_item[i] for i in item_ids))
            lat = stats.percentiles(acc.latency, (50, 90, 99))
            ttft = stats.percentiles(acc.ttft, (50, 99))
            cells.append(
                CellSummary(
                    model=m.model,
                    suite=s.suite,
                    suite_hash=acc.suite_hash,
                    n_samples=acc.n,
                    n_items=len(item_ids),
                    mean=est.mean,
                    lo=est.lo,
                    hi=est.hi,
                    ci_method=est.method,
                    errors=acc.errors,
                    error_rate=acc.errors / acc.n if acc.n else float("nan"),
                    latency_p50=lat[50],
                    latency_p90=lat[90],
                    latency_p99=lat[99],
                    ttft_p50=ttft[50],
                    ttft_p99=ttft[99],
                    tokens_per_s=acc.completion_tokens / acc.gen_time if acc.gen_time else float("nan"),
                    prompt_tokens=acc.prompt_tokens,
                    completion_tokens=acc.completion_tokens,
                    reasoning_tokens=acc.reasoning_tokens,
                    cost_usd=float("nan") if m.model in unknown_cost else acc.cost,
                    cost_per_correct=(
                        acc.cost / acc.correct if acc.correct and m.model not in unknown_cost else float("nan")
                    ),
                    served_models=tuple(sorted(acc.served)),
                    estimated_samples=acc.estimated,
                    length_rate=acc.length_rate,
                    scores=per_item,
                    item_ids=item_ids,
                    groups=tuple(acc.group_by_item[i] for i in item_ids),
                    tool_outcomes=tuple((k, acc.outcomes[k]) for k in OUTCOMES if acc.outcomes[k]),
                    pass_hat_k=_pass_hat_ks(acc) if multi else (),
                    turns_per_task=sum(acc.turns) / len(acc.turns) if acc.turns else float("nan"),
                    seconds_per_turn=acc.turn_seconds / sum(acc.turns) if sum(acc.turns) else float("nan"),
                )
            )
    ops = []
    failures = store.model_failures(run.id)
    for m in models:
        acc = model_acc.get(m.model)
        if acc is None:
            if m.model in failures:  # stopped before any sample was stored: still a row, with its reason
                acc = _Acc()
            else:
                continue
        lat = stats.percentiles(acc.latency, (50, 90, 99))
        ttft = stats.percentiles(acc.ttft, (50, 90, 99))
        ops.append(
            ModelOps(
                model=m.model,
                n_samples=acc.n,
                error_rate=acc.errors / acc.n if acc.n else float("nan"),
                latency_p50=lat[50],
                latency_p99=lat[99],
                ttft_p50=ttft[50],
                tokens_per_s=acc.completion_tokens / acc.gen_time if acc.gen_time else float("nan"),
                cost_usd=float("nan") if m.model in unknown_cost else acc.cost,
                cost_per_correct=(
                    acc.cost / acc.correct if acc.correct and m.model not in unknown_cost else float("nan")
                ),
                accuracy=acc.correct / acc.n if acc.n else float("nan"),
                served_models=tuple(sorted(acc.served)),
                latency_p90=lat[90],
                ttft_p90=ttft[90],
                ttft_p99=ttft[99],
                errors=acc.errors,
                estimated_samples=acc.estimated,
                length_rate=acc.length_rate,
                failure=failures.get(m.model, ""),
                batched=acc.batched,
                batch_saved_usd=max(
                    0.0,
                    (acc.batched_tokens[0] * m.price_input + acc.batched_tokens[1] * m.price_output) / 1e6
                    - acc.batched_cost,
                ),
                prompt_tokens=acc.prompt_tokens,
                cached_tokens=acc.cached_tokens,
                cache_saved_usd=(
                    None
                    if m.price_cached_input is None or acc.cached_tokens is None
                    else acc.cached_tokens * (m.price_input - m.price_cached_input) / 1e6
                ),
                over_window=acc.over_window,
            )
        )
    return RunSummary(run, models, suites, cells, ops)


SUMMARY_COLUMNS = (
    "run",
    "plan",
    "tag",
    "status",
    "started",
    "model",
    "suite",
    "suite_hash",
    "n_items",
    "n_samples",
    "score",
    "score_lo",
    "score_hi",
    "errors",
    "error_rate",
    "latency_p50",
    "latency_p99",
    "ttft_p99",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "cost_per_1k_requests",
    "cost_known",
    "served_models",
)


def summary_rows(summary: RunSummary) -> list[dict]:
    """One row per model x suite (the `harness export --summary` rows, for dashboards); NaN = unknown."""
    r = summary.run
    unknown = unpriced_models(r)
    rows = []
    for c in summary.cells:
        rows.append(
            {
                "run": r.id,
                "plan": r.plan_name,
                "tag": r.tag,
                "status": r.status,
                "started": r.started_at.isoformat(timespec="seconds"),
                "model": c.model,
                "suite": c.suite,
                "suite_hash": c.suite_hash,
                "n_items": c.n_items,
                "n_samples": c.n_samples,
                "score": c.mean,
                "score_lo": c.lo,
                "score_hi": c.hi,
                "errors": c.errors,
                "error_rate": c.error_rate,
                "latency_p50": c.latency_p50,
                "latency_p99": c.latency_p99,
                "ttft_p99": c.ttft_p99,
                "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens,
                "cost_usd": c.cost_usd,
                "cost_per_1k_requests": 1000 * c.cost_usd / c.n_samples if c.n_samples else float("nan"),
                "cost_known": c.model not in unknown,
                "served_models": list(c.served_models),
            }
        )
    return rows
