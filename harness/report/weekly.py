"""The report's weekly-routine sections: the check against the previous run (regressions, drift alarms)
and the routing recommendation, on the run page and (for the plan's latest run) on the trend page.

The numbers come from `harness.analysis.checks.check_run` and `harness.analysis.recommend.recommend`, the same functions
behind `harness check` and `harness recommend`; this module only turns them into plain strings for
`_weekly.html.j2` (which escapes them). `cache` maps run id -> RunSummary for one report build, so a
run is summarized once however many pages need it.
"""

from __future__ import annotations

from pathlib import Path

from harness.analysis.summary import RunSummary, summarize_run
from harness.errors import HarnessError
from harness.formatting import money
from harness.report.pages import ci_text, pct, points, pval, run_dir, secs
from harness.store import RunInfo, Store

ALARM_LABELS = {
    "served-model": "served model differs from the one asked for",
    "served-model-changed": "served model changed since the previous run",
    "api-model": "the plan asks for another model",
    "price": "price changed",
    "suite-hash": "suite content changed",
    "availability": "error rate worse",
}


def _summary(store: Store, run_id: str, cache: dict[str, RunSummary]) -> RunSummary:
    if run_id not in cache:
        cache[run_id] = summarize_run(store, run_id)
    return cache[run_id]


def _run_href(out: Path, run_id: str | None) -> str | None:
    """Link to a run's page from a page one folder below `out` (a run page or a trend page)."""
    if run_id and (out / run_dir(run_id) / "index.html").exists():
        return f"../{run_dir(run_id)}/index.html"
    return None


def check_context(store: Store, run_id: str, cache: dict[str, RunSummary], out: Path) -> dict:
    from harness.analysis.checks import check_run, describe_watch, headline

    try:
        result = check_run(store, run_id, summaries=cache)
    except HarnessError as exc:
        return dict(error=str(exc))
    comparison = result.comparison
    return dict(
        error="",
        run=result.run_id,
        headline=headline(result),
        ok=result.ok,
        previous=result.previous_run_id,
        previous_href=_run_href(out, result.previous_run_id),
        n_comparisons=len(comparison.comparisons) if comparison else 0,
        correction={"holm": "Holm", "bh": "Benjamini-Hochberg"}[result.correction],
        alpha=f"{result.alpha:g}",
        regressions=[
            dict(
                model=c.a.model,
                suite=c.suite,
                old=pct(c.a.mean),
                new=pct(c.b.mean),
                diff=points(c.diff, c.diff_lo, c.diff_hi),
                p_adj=pval(c.p_adjusted),
                n=f"{c.n_paired:,}",
            )
            for c in result.regressions
        ],
        watch=[describe_watch(c, len(comparison.comparisons)) for c in result.watch],
        alarms=[
            dict(
                kind=a.kind,
                label=ALARM_LABELS.get(a.kind, a.kind),
                model=a.model or "—",
                suite=a.suite or "—",
                detail=a.detail,
            )
            for a in result.alarms
        ],
        notes=list(result.notes),
    )


def _cost(c, basis: str) -> str:
    if basis == "list price":
        return f"${c.price_output:g} / M out (list)" + (f", ${c.price_input:g} / M in" if c.price_input else "")
    if not getattr(c, "cost_known", True):
        return "— (no price)"
    return f"{money(1000 * c.cost_per_sample)} / 1k req" if c.cost_per_sample == c.cost_per_sample else "—"


def _short_reason(s) -> str:
    """The route's reason in one line: the decisive clause; who was not eligible is counted, not listed
    (the Routing section lists each model with its own reason)."""
    head, _, _ = s.reason.partition("; not eligible: ")
    out = sum(1 for c in s.candidates if not c.eligible)
    return head + (f"; {out} model{'s' if out != 1 else ''} not eligible" if out else "")


def routing_context(store: Store, run_id: str, cache: dict[str, RunSummary]) -> dict:
    from harness.analysis.recommend import recommend

    try:
        rec = recommend(store, run_id, summary=_summary(store, run_id, cache))
    except HarnessError as exc:
        return dict(error=str(exc))
    from harness.analysis.checks import served_name_matches
    from harness.providers.registry import capabilities_of

    # Only a server says which model answered; an embedded model reports its file's name, not a swap.
    asked = {
        m.model: m.api_model for m in _summary(store, run_id, cache).models if capabilities_of(m.provider).served_model
    }
    rows = []
    for s in rec.suites:
        c = s.chosen
        # A routed model the server answers as another one: say so beside the route, not only in the check.
        swapped = [
            x for x in (c.served_models if c and c.model in asked else ()) if not served_name_matches(asked[c.model], x)
        ]
        b = s.candidate(s.best) if s.best else None
        per_1k = "—"
        if c is not None:
            per_1k = (
                _cost(c, s.cost_basis)
                if s.cost_basis == "list price"
                else money(1000 * c.cost_per_sample)
                if c.cost_per_sample == c.cost_per_sample
                else "— (no price)"
            )
        rows.append(
            dict(
                suite=s.suite,
                routed=c is not None,
                served_warning=f"served as {', '.join(swapped)}" if swapped else "",
                ci=ci_text(c.lo, c.hi) if c else "",
                error_rate=pct(c.error_rate) if c else "—",
                per_1k=per_1k,
                model=c.model if c else "no route",
                score=pct(c.mean) if c else "—",
                diff="" if c is None or c.is_best else points(c.diff),
                cost=_cost(c, s.cost_basis) if c else "—",
                p99=secs(c.latency_p99) if c else "—",
                best=b.model if b else "—",
                best_score=pct(b.mean) if b else "—",
                best_cost=_cost(b, s.cost_basis) if b else "—",
                reason=s.reason,
                short_reason=_short_reason(s),
                basis=s.cost_basis,
                candidates=[
                    dict(
                        model=x.model,
                        chosen=x.model == s.model,
                        score=pct(x.mean),
                        diff="" if x.is_best else points(x.diff),
                        lower="" if x.is_best else points(x.lower),
                        verdict="best"
                        if x.is_best
                        else ("—" if not x.eligible else ("yes" if x.noninferior else "no")),
                        rejected=x.rejected,
                        cost=_cost(x, s.cost_basis),
                        p99=secs(x.latency_p99),
                        errors=pct(x.error_rate),
                    )
                    for x in s.candidates
                ],
            )
        )
    d = rec.limits.default
    limits = (
        ", ".join(
            text
            for text in (
                f"errors at most {100 * d.max_error_rate:g}%" if d.max_error_rate is not None else "",
                f"p99 at most {d.max_p99_s:g} s" if d.max_p99_s is not None else "",
                f"TTFT p99 at most {d.max_ttft_s:g} s" if d.max_ttft_s is not None else "",
            )
            if text
        )
        or "none"
    )
    if rec.limits.routes:
        limits += f"; own limits for {', '.join(sorted(rec.limits.routes))}"
    return dict(
        error="", run=rec.run.id, margin=f"{100 * rec.margin:g}", alpha=f"{rec.alpha:g}", rows=rows, limits=limits
    )


def run_sections(store: Store, summary: RunSummary, cache: dict[str, RunSummary], out: Path) -> dict:
    """The check and routing sections of one run's page."""
    cache.setdefault(summary.run.id, summary)
    return dict(
        check=check_context(store, summary.run.id, cache, out), routing=routing_context(store, summary.run.id, cache)
    )


def trend_sections(store: Store, runs: list[RunInfo], cache: dict[str, RunSummary], out: Path) -> dict | None:
    """The check and routing of the plan's latest finished run (the latest run if none finished)."""
    if not runs:
        return None
    finished = [r for r in runs if r.status == "finished"]
    latest = (finished or runs)[-1]
    return dict(
        run=latest.id,
        href=_run_href(out, latest.id),
        started=latest.started_at.strftime("%Y-%m-%d %H:%M"),
        check=check_context(store, latest.id, cache, out),
        routing=routing_context(store, latest.id, cache),
    )
