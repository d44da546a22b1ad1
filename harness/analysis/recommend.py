"""Routing recommendation: per suite (a workload), the cheapest eligible model not significantly worse than the best.

For each suite of a run:
- a model is *eligible* when it answered at least one request and is within the route's limits
  (`Limits`: error rate, p99 latency, p99 time to first token; from the plan's `routing:` and the
  command line). The default tier asks for 99.9% availability (error rate <= 0.001) and sets no
  latency limit. A latency limit cannot be met by a model whose latency was not measured
  (completions replayed from files); a model that did not stream is held to the TTFT limit by its
  whole latency, which is when its first token reaches the caller;
- the best model is the highest-scoring eligible one (ties: the cheaper, then the faster at p99);
- each other eligible model is tested for non-inferiority against it on the items both answered
  (paired by item id, clustered when the suite groups its items): `paired.noninferiority`, one-sided
  at `alpha`, margin from the plan (`noninferiority_margin`, default 0.02 = 2 points);
- among the non-inferior eligible models the cheapest wins (ties: higher score, then lower p99).
  Every other model carries the reason it was not chosen.

Cost is the run's measured cost per sample (US dollars spent on the suite / samples): what one
request of this workload cost with the tokens each model really used, so a model with a low
price that writes five times longer answers is not mistaken for a cheap one. When every model's
measured cost on the suite is zero (local models, or completions read from files without token
counts) the plan's list price decides instead (output price, then input price per million tokens).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from dataclasses import replace as _replace

from harness.analysis import paired
from harness.analysis.compare import json_safe, shared_items
from harness.analysis.summary import CellSummary, RunSummary, summarize_run, unpriced_models
from harness.errors import HarnessError
from harness.formatting import percent
from harness.store import RunInfo, RunModelInfo, Store

DEFAULT_MARGIN = 0.02
DEFAULT_MAX_ERROR_RATE = 0.001  # the default tier: 99.9% of requests answered
NAN = float("nan")


@dataclass(frozen=True)
class Limits:
    """What a model must meet to be routed a suite's traffic; None = no limit."""

    max_error_rate: float | None = DEFAULT_MAX_ERROR_RATE
    max_p99_s: float | None = None
    max_ttft_s: float | None = None

    def merged(self, overrides: dict) -> "Limits":
        known = {k: v for k, v in overrides.items() if k in ("max_error_rate", "max_p99_s", "max_ttft_s")}
        return Limits(**{**self.__dict__, **known})


@dataclass(frozen=True)
class RoutingLimits:
    """The default limits and per-suite (per-route) overrides."""

    default: Limits = Limits()
    routes: dict = field(default_factory=dict)  # suite -> Limits

    def for_suite(self, suite: str) -> Limits:
        return self.routes.get(suite, self.default)


def routing_limits(
    plan_routing: dict | None,
    *,
    max_error_rate: dict | None = None,
    max_p99_s: dict | None = None,
    max_ttft_s: dict | None = None,
) -> RoutingLimits:
    """Limits from the plan's `routing:` section, then the command line's, which win.

    Each command-line mapping is {suite or "": value}; "" is every suite.
    """
    plan_routing = plan_routing or {}
    default = Limits().merged(plan_routing)
    per_suite = {s: dict(v) for s, v in (plan_routing.get("routes") or {}).items()}
    for key, given in (("max_error_rate", max_error_rate), ("max_p99_s", max_p99_s), ("max_ttft_s", max_ttft_s)):
        for suite, value in (given or {}).items():
            if suite:
                per_suite.setdefault(suite, {})[key] = value
            else:
                default = default.merged({key: value})
                for overrides in per_suite.values():
                    overrides.pop(key, None)  # the command line's global limit beats the plan's per-route one
    return RoutingLimits(default, {s: default.merged(v) for s, v in per_suite.items()})


@dataclass(frozen=True)
class Candidate:
    """One model on one suite, as the recommendation weighs it."""

    model: str
    mean: float  # score over all its items (the run summary's)
    lo: float
    hi: float
    n_items: int
    n_paired: int  # items shared with the best model
    diff: float  # mean(model) - mean(best) on the shared items
    lower: float  # one-sided (1 - alpha) lower confidence bound of diff
    p_value: float  # non-inferiority p-value (H0: diff <= -margin)
    noninferior: bool
    is_best: bool
    cost_per_sample: float  # measured, US dollars
    cost_usd: float  # measured, the whole suite
    price_input: float  # plan list price, US dollars per million tokens
    price_output: float
    latency_p50: float
    latency_p99: float
    error_rate: float
    served_models: tuple[str, ...] = ()
    ttft_p99: float = NAN
    n_samples: int = 0
    errors: int = 0
    eligible: bool = True
    rejected: str = ""  # why this model was not chosen ("" for the chosen one)
    cost_known: bool = True  # False: the plan gives it no price (its cost is unknown, never "cheapest")


@dataclass(frozen=True)
class SuiteRecommendation:
    suite: str
    model: str | None  # the recommended model; None when no model is eligible
    best: str | None  # the highest-scoring eligible model
    cost_basis: str  # "measured" (cost per sample) | "list price" | "none" (everything free)
    candidates: list[Candidate]  # cheapest first (by the cost basis), then by score
    reason: str
    limits: Limits = Limits()

    def candidate(self, model: str) -> Candidate:
        for c in self.candidates:
            if c.model == model:
                return c
        raise KeyError(model)

    @property
    def chosen(self) -> Candidate | None:
        return None if self.model is None else self.candidate(self.model)


@dataclass(frozen=True)
class Recommendation:
    run: RunInfo
    margin: float
    alpha: float
    suites: list[SuiteRecommendation] = field(default_factory=list)
    limits: RoutingLimits = RoutingLimits()

    @property
    def routes(self) -> dict[str, str | None]:
        """suite -> recommended model."""
        return {s.suite: s.model for s in self.suites}


def _nan_last(x: float) -> float:
    return math.inf if x != x else x


def _cost_key(c, basis: str) -> tuple:
    """Sort key of a Candidate (or its field dict) on the cost basis: lower is cheaper.

    A model without a price has an unknown cost: it sorts after every priced one, never "cheapest"."""
    get = c.get if isinstance(c, dict) else lambda k: getattr(c, k)
    if not get("cost_known"):
        return (1,)
    if basis == "measured":
        return (0, _nan_last(get("cost_per_sample")))
    if basis == "list price":
        return (0, get("price_output"), get("price_input"))
    return (0,)


def _score_key(mean: float) -> float:
    return -mean if mean == mean else math.inf


def plan_margin(run: RunInfo) -> float:
    value = (run.plan or {}).get("noninferiority_margin")
    return DEFAULT_MARGIN if value is None else float(value)


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def ineligibility(c: CellSummary, limits: Limits) -> str:
    """Why the model may not take this suite's traffic ("" when it may)."""
    if c.n_samples and c.errors >= c.n_samples:
        return f"unavailable: all {c.n_samples} requests failed"
    if limits.max_error_rate is not None and c.error_rate > limits.max_error_rate:
        return (
            f"unavailable: error rate {percent(c.error_rate, significant=3)} ({c.errors}/{c.n_samples}) above the limit "
            f"{percent(limits.max_error_rate, significant=3)}"
        )
    for limit, value, what in (
        (limits.max_p99_s, c.latency_p99, "p99 latency"),
        (limits.max_ttft_s, c.ttft_p99 if c.ttft_p99 == c.ttft_p99 else c.latency_p99, "p99 time to first token"),
    ):
        if limit is None:
            continue
        if value != value:
            return f"not measured: no {what} recorded, so the {limit:g} s limit cannot be checked"
        if value > limit:
            return f"too slow: {what} {value:.3g} s above the limit {limit:g} s"
    return ""


def inferiority_reason(x: "Candidate", best: str, margin: float) -> str:
    """Why a model was not shown non-inferior to the best, in words true of its diff and lower bound."""
    m = f"{100 * margin:g}"
    if x.lower != x.lower:
        return f"not comparable with {best}: {x.n_paired} shared items"
    if x.diff < -margin:
        return f"worse than {best} by more than {m} points"
    if x.diff >= 0:
        return (
            f"as good as {best} on the {x.n_paired} shared items ({_pts(x.diff)} points), but {x.n_paired} items "
            f"cannot show non-inferiority at a {m}-point margin (lower bound {_pts(x.lower)})"
        )
    return (
        f"{_pts(x.diff)} points against {best} on {x.n_paired} shared items; it may be more than {m} points "
        f"worse (lower bound {_pts(x.lower)})"
    )


def _not_chosen_reason(x: "Candidate", chosen: "Candidate", best: str, basis: str, margin: float) -> str:
    """The decisive reason a model lost to the chosen one; each clause is true of the numbers shown beside it."""
    if not x.eligible:
        return x.rejected
    mine, theirs = _cost_key(x, basis), _cost_key(chosen, basis)
    if mine > theirs:
        if not x.cost_known:
            return f"cost unknown (no price in the plan), so not routed over {chosen.model}"
        return f"dearer than {chosen.model}"
    if not x.noninferior:
        return inferiority_reason(x, best, margin)
    if x.mean < chosen.mean:
        return f"as cheap as {chosen.model}, which scores higher"
    if _nan_last(x.latency_p99) > _nan_last(chosen.latency_p99):
        return f"as cheap as {chosen.model} and no better in score; {chosen.model} is faster at p99"
    return f"tied with {chosen.model} on cost, score and p99; {chosen.model} comes first by name"


def recommend_suite(
    cells: list[CellSummary],
    prices: dict[str, RunModelInfo],
    *,
    margin: float = DEFAULT_MARGIN,
    alpha: float = 0.05,
    clusters: bool = True,
    limits: Limits = Limits(),
    unpriced: frozenset[str] = frozenset(),
    excluded: dict[str, str] | None = None,
    baseline: str | None = None,
) -> SuiteRecommendation:
    """The recommendation for one suite from its cells (one per model, at least one).

    `unpriced`: models the plan gave no price (cost unknown); `excluded`: model -> why it may not be
    routed to at all (e.g. it misses the SLO under load), on top of the route's limits. `baseline`
    (pairwise suites): scores are win rates against this incumbent, so a model is compared with 0.5
    (as good as the incumbent), not with the best, and the margin is one of win rate."""
    if not cells:
        raise ValueError("no results to recommend from")
    suite = cells[0].suite
    priced = [c for c in cells if c.model not in unpriced]
    basis = (
        "measured"
        if any(c.cost_usd > 0 for c in priced)
        else (
            "list price" if any(prices[c.model].price_output or prices[c.model].price_input for c in priced) else "none"
        )
    )

    def base(c: CellSummary) -> dict:
        info = prices[c.model]
        known = c.model not in unpriced
        return dict(
            model=c.model,
            mean=c.mean,
            lo=c.lo,
            hi=c.hi,
            n_items=c.n_items,
            cost_per_sample=c.cost_usd / c.n_samples if c.n_samples and known else NAN,
            cost_usd=c.cost_usd if known else NAN,
            price_input=info.price_input if known else NAN,
            price_output=info.price_output if known else NAN,
            latency_p50=c.latency_p50,
            latency_p99=c.latency_p99,
            error_rate=c.error_rate,
            served_models=c.served_models,
            ttft_p99=c.ttft_p99,
            n_samples=c.n_samples,
            errors=c.errors,
            cost_known=known,
        )

    fields = {c.model: base(c) for c in cells}
    why_not = {c.model: ineligibility(c, limits) or (excluded or {}).get(c.model, "") for c in cells}
    eligible = [c for c in cells if not why_not[c.model]]
    # The best: the highest-scoring eligible model, then the cheapest, then the fastest.
    best = min(
        eligible,
        key=lambda c: (_score_key(c.mean), _cost_key(fields[c.model], basis), _nan_last(c.latency_p99), c.model),
        default=None,
    )
    candidates = []
    for c in cells:
        if baseline is not None and best is not None:  # against the incumbent: win rate vs 0.5 on its own items
            groups = list(c.groups)
            own = baseline.endswith(f"incumbent {c.model}")
            ni = paired.noninferiority(
                list(c.scores),
                [0.5] * len(c.scores),
                margin=margin,
                alpha=alpha,
                clusters=groups if clusters and any(groups) else None,
            )
            candidates.append(
                Candidate(
                    **fields[c.model],
                    n_paired=c.n_items,
                    diff=0.0 if own else ni.diff,
                    lower=0.0 if own else ni.lower_bound,
                    p_value=0.0 if own else ni.p_value,
                    noninferior=own or bool(ni.noninferior),
                    is_best=c is best,
                    eligible=not why_not[c.model],
                    rejected=why_not[c.model],
                )
            )
            continue
        if c is best:
            candidates.append(
                Candidate(
                    **fields[c.model],
                    n_paired=c.n_items,
                    diff=0.0,
                    lower=0.0,
                    p_value=0.0,
                    noninferior=True,
                    is_best=True,
                )
            )
            continue
        if best is None:
            candidates.append(
                Candidate(
                    **fields[c.model],
                    n_paired=0,
                    diff=NAN,
                    lower=NAN,
                    p_value=NAN,
                    noninferior=False,
                    is_best=False,
                    eligible=False,
                    rejected=why_not[c.model],
                )
            )
            continue
        keep, best_keep = shared_items(c, best)
        mine = [c.scores[i] for i in keep]
        theirs = [best.scores[j] for j in best_keep]
        groups = [c.groups[i] for i in keep]
        ni = paired.noninferiority(
            mine, theirs, margin=margin, alpha=alpha, clusters=groups if clusters and any(groups) else None
        )
        candidates.append(
            Candidate(
                **fields[c.model],
                n_paired=len(keep),
                diff=ni.diff,
                lower=ni.lower_bound,
                p_value=ni.p_value,
                noninferior=bool(ni.noninferior),
                is_best=False,
                eligible=not why_not[c.model],
                rejected=why_not[c.model],
            )
        )
    candidates.sort(key=lambda x: (_cost_key(x, basis), _score_key(x.mean), _nan_last(x.latency_p99), x.model))
    unknown = [x.model for x in candidates if not x.cost_known]
    unknown_note = f"; cost unknown (no price in the plan): {', '.join(unknown)}" if unknown else ""
    if best is not None and not best.mean > 0:
        # Nothing answered right: the cheapest of equals would be a route to a model that is always wrong.
        out = [
            x if not x.eligible else _replace(x, rejected=f"scores {percent(x.mean, significant=3)} on this suite")
            for x in candidates
        ]
        return SuiteRecommendation(
            suite=suite,
            model=None,
            best=None,
            cost_basis=basis,
            candidates=out,
            reason=f"no route: the best score is 0% (no eligible model answered an item right); "
            f"check the suite's grader and prompt before routing its traffic{unknown_note}",
            limits=limits,
        )
    chosen = next((x for x in candidates if x.eligible and x.noninferior), None)
    if chosen is None:
        return SuiteRecommendation(
            suite=suite,
            model=None,
            best=None,
            cost_basis=basis,
            candidates=candidates,
            reason="no model meets the route's limits",
            limits=limits,
        )
    out = []
    for x in candidates:
        if x is not chosen and baseline is not None and x.eligible and not x.noninferior:
            why = f"may lose to {baseline}: win rate possibly below {50 - 100 * margin:g}%"
        else:
            why = "" if x is chosen else _not_chosen_reason(x, chosen, best.model, basis, margin)
        out.append(x if x.rejected == why else _replace(x, rejected=why))
    if baseline is not None:
        reason = (
            f"{chosen.model} is the incumbent and no cheaper model is shown not to lose to it"
            if baseline.endswith(f"incumbent {chosen.model}")
            else f"{chosen.model} is the cheapest model whose win rate against {baseline} is not "
            f"below {50 - 100 * margin:g}% (one-sided alpha {alpha:g})"
        )
    elif chosen.is_best:
        cheaper = [x for x in out if _cost_key(x, basis) < _cost_key(chosen, basis)]
        if not chosen.cost_known:
            reason = f"{chosen.model} scores highest; its cost is unknown (no price in the plan)"
        elif not cheaper or basis == "none":
            reason = f"{chosen.model} scores highest and is the cheapest"
        else:
            reason = (
                f"{chosen.model} scores highest; every cheaper model is ineligible or may be more than "
                f"{100 * margin:g} points worse"
            )
    else:
        reason = (
            f"{chosen.model} is the cheapest model not significantly worse than {best.model} "
            f"by more than {100 * margin:g} points"
        )
    reason += unknown_note
    rejected = [x for x in out if not x.eligible]
    if rejected:
        reason += "; not eligible: " + ", ".join(f"{x.model} ({x.rejected})" for x in rejected)
    return SuiteRecommendation(
        suite=suite, model=chosen.model, best=best.model, cost_basis=basis, candidates=out, reason=reason, limits=limits
    )


def recommend(
    store: Store,
    run_id: str | None = None,
    *,
    margin: float | None = None,
    alpha: float = 0.05,
    clusters: bool = True,
    summary: RunSummary | None = None,
    limits: RoutingLimits | None = None,
    excluded: dict[str, str] | None = None,
) -> Recommendation:
    """Per suite of RUN (default: the latest), the cheapest eligible model not significantly worse than the best.

    `margin` defaults to the plan's `noninferiority_margin` (0.02 = 2 points when the plan has none);
    `limits` to the plan's `routing:` section (99.9% availability, no latency limit, when it has none);
    `excluded`: model -> why it may not be routed to at all (the SLO under load it misses).
    """
    summary = summary or summarize_run(store, store.resolve_run(run_id))
    run = summary.run
    margin = plan_margin(run) if margin is None else float(margin)
    if not 0.0 <= margin < 1.0:
        raise HarnessError(
            f"non-inferiority margin {margin:g}: give a fraction of a point scale, 0 <= margin < 1 (0.02 = 2 points)"
        )
    if not 0.0 < alpha < 0.5:
        raise HarnessError(f"--alpha {alpha}: a one-sided level must be between 0 and 0.5 (0.05 usual)")
    limits = limits or routing_limits((run.plan or {}).get("routing"))
    prices = {m.model: m for m in summary.models}
    out = []
    # A model stopped for fatal errors (bad key, unknown model, unreachable) stored no samples: it is
    # still a model the user asked about, shown as unavailable with the server's reason.
    stopped = store.model_failures(run.id)
    graders = {s.suite: s.grader for s in store.run_suites(run.id)}
    named = (run.plan or {}).get("incumbent")
    incumbent = f"the incumbent {named}" if named else "the logged incumbent"
    for s in summary.suites:
        cells = [c for c in summary.cells if c.suite == s.suite and c.n_items]
        if cells:
            rec = recommend_suite(
                cells,
                prices,
                margin=margin,
                alpha=alpha,
                clusters=clusters,
                limits=limits.for_suite(s.suite),
                unpriced=unpriced_models(run),
                excluded=excluded,
                baseline=incumbent if graders.get(s.suite) == "pairwise" else None,
            )
            out.append(_with_stopped_models(rec, stopped, prices))
    return Recommendation(run=run, margin=margin, alpha=alpha, suites=out, limits=limits)


def _with_stopped_models(
    rec: SuiteRecommendation, stopped: dict[str, str], prices: dict[str, RunModelInfo]
) -> SuiteRecommendation:
    present = {c.model for c in rec.candidates}
    extra = []
    for model, reason in sorted(stopped.items()):
        if model in present or model not in prices:
            continue
        info = prices[model]
        extra.append(
            Candidate(
                model=model,
                mean=NAN,
                lo=NAN,
                hi=NAN,
                n_items=0,
                n_paired=0,
                diff=NAN,
                lower=NAN,
                p_value=NAN,
                noninferior=False,
                is_best=False,
                cost_per_sample=NAN,
                cost_usd=0.0,
                price_input=info.price_input,
                price_output=info.price_output,
                latency_p50=NAN,
                latency_p99=NAN,
                error_rate=1.0,
                eligible=False,
                rejected=f"unavailable: stopped after fatal errors ({reason})",
            )
        )
    if not extra:
        return rec
    reason = (
        rec.reason
        + ("; not eligible: " if "not eligible:" not in rec.reason else ", ")
        + ", ".join(f"{x.model} ({x.rejected})" for x in extra)
    )
    return _replace(rec, candidates=[*rec.candidates, *extra], reason=reason)


# --------------------------------------------------------------------------- JSON


def to_json(rec: Recommendation) -> dict:
    """The `harness recommend --json` document (fields in README.md)."""
    r = rec.run
    return json_safe(
        {
            "run": {
                "run": r.id,
                "plan": r.plan_name,
                "tag": r.tag,
                "status": r.status,
                "started": r.started_at.isoformat(timespec="seconds"),
            },
            "margin": rec.margin,
            "alpha": rec.alpha,
            "routes": rec.routes,
            "suites": [
                {
                    "suite": s.suite,
                    "model": s.model,
                    "best": s.best,
                    "cost_basis": s.cost_basis,
                    "reason": s.reason,
                    "limits": dict(s.limits.__dict__),
                    "candidates": [
                        {
                            "model": c.model,
                            "mean": c.mean,
                            "lo": c.lo,
                            "hi": c.hi,
                            "n_items": c.n_items,
                            "n_paired": c.n_paired,
                            "diff": c.diff,
                            "lower": c.lower,
                            "p_value": c.p_value,
                            "noninferior": c.noninferior,
                            "best": c.is_best,
                            "recommended": c.model == s.model,
                            "cost_per_sample": c.cost_per_sample,
                            "cost_usd": c.cost_usd,
                            "price": {"input": c.price_input, "output": c.price_output},
                            "latency_p50": c.latency_p50,
                            "latency_p99": c.latency_p99,
                            "error_rate": c.error_rate,
                            "served_models": list(c.served_models),
                            "ttft_p99": c.ttft_p99,
                            "eligible": c.eligible,
                            "rejected": c.rejected,
                            "cost_known": c.cost_known,
                        }
                        for c in s.candidates
                    ],
                }
                for s in rec.suites
            ],
        }
    )
