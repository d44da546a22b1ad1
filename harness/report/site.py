"""Build the static report site: runs index, run pages, paginated sample pages, A-vs-B pages, plan trends."""

from __future__ import annotations

import logging
import math
import os
import pickle
import secrets
import shutil
from datetime import datetime
from pathlib import Path

from harness.analysis import leaderboard as analysis
from harness.analysis.summary import RunSummary, cache_and_window_notes, estimate_mark, summarize_run
from harness.formatting import money
from harness.report import charts, long_context, pages, trend, weekly
from harness.report.pages import (
    Renderer,
    cell_folder,
    chart_ctx,
    ci_text,
    finite,
    page_of,
    pct,
    points,
    pval,
    run_dir,
    secs,
    slug,
    when,
)
from harness.report.tool_section import tool_context
from harness.report.traffic_page import write_traffic_page
from harness.store import Store
from harness.store import reports as queries

log = logging.getLogger(__name__)

COMPARE_PAGE_SIZE = 500  # disagreeing items per A-vs-B page
# Runs with at least this many samples render part of their sample pages in a second process
# while this one summarizes the run (the machine has two cores; 100k samples must take < 10 s).
PARALLEL_MIN_SAMPLES = 20_000
MAIN_SHARE = 0.15  # of the samples, rendered here; the worker, which has no summary or charts to do, takes the rest


def _duration(a: datetime | None, b: datetime | None) -> str:
    if not a or not b:
        return ""
    s = max(0, int((b - a).total_seconds()))
    if s >= 86400:
        return f"{s // 86400}d {s % 86400 // 3600:02d}h"
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


# --------------------------------------------------------------------------- one run


def _write_run(
    store: Store, r: Renderer, out: Path, run_id: str, cache: dict | None = None, palette: list[str] | None = None
) -> RunSummary:
    """Build the run's folder next to the old one and swap it in: no stale pages, no half-written site."""
    name = run_dir(run_id)
    for stale in out.glob(f".{name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out / f".{name}.tmp-{secrets.token_hex(4)}"
    tmp.mkdir(parents=True)
    try:
        summary = _build_run(store, r, tmp, run_id, cache, palette)
        final = out / name
        old = None
        if final.exists():
            old = out / f".{name}.tmp-old-{secrets.token_hex(4)}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    trend.save_cache(out, summary, store.count_samples(run_id))
    return summary


def _worker_url(store: Store) -> str | None:
    """The URL a worker process can open for the same data, or None (in-memory SQLite)."""
    return None if store.in_memory else store.url


def _split(counts: dict, total: int) -> tuple[list, list]:
    """Cells for this process (the first MAIN_SHARE of the samples) and for a worker (the rest)."""
    cells = list(counts)
    if total < PARALLEL_MIN_SAMPLES or (os.cpu_count() or 1) < 2 or len(cells) < 2:
        return cells, []
    main, done = [], 0
    for cell in cells:
        if done >= MAIN_SHARE * total and main:
            break
        main.append(cell)
        done += counts[cell][0]
    return main, cells[len(main) :]


class _SamplePages:
    """Renders every cell's sample pages: a share in a worker process (started at once, so it runs
    while this process summarizes the run and draws charts), the rest here in render_here()."""

    def __init__(self, store: Store, run_id: str, max_id: int, counts: dict, site: Path):
        from harness.report.worker import Worker

        self.store, self.run_id, self.max_id, self.counts, self.site = store, run_id, max_id, counts, site
        total = sum(v[0] for v in counts.values())
        self.main_cells, self.worker_cells = _split(counts, total)
        self.worker = None
        url = _worker_url(store) if self.worker_cells else None
        if url is not None:
            try:
                self.worker = Worker(
                    url, run_id, max_id, self.worker_cells, site, {c: counts[c] for c in self.worker_cells}
                )
            except OSError as exc:  # no subprocesses here: do it all in this one
                log.warning("report: no worker process (%s); rendering serially", exc)
        if self.worker is None:
            self.main_cells, self.worker_cells = self.main_cells + self.worker_cells, []

    def kill(self) -> None:
        if self.worker is not None:
            self.worker.kill()

    def render_here(self):
        """Render this process's share, collect the worker's; returns (located, references, latencies)."""
        parts = [pages.render_cells(self.store, self.run_id, self.max_id, self.main_cells, self.site, self.counts)]
        if self.worker is not None:
            try:
                parts.append(self.worker.result())
            except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as exc:
                log.warning("report: %s; rendering its pages here", exc)
                parts.append(
                    pages.render_cells(self.store, self.run_id, self.max_id, self.worker_cells, self.site, self.counts)
                )
        located, references, latencies = {}, {}, {}
        for part in parts:
            located.update(part["located"])
            references.update(part["references"])
            for model, values in part["latencies"].items():
                latencies.setdefault(model, []).append(values)
        return located, references, {m: [x for arr in v for x in arr] for m, v in latencies.items()}


def _build_run(
    store: Store, r: Renderer, site: Path, run_id: str, cache: dict | None = None, palette: list[str] | None = None
) -> RunSummary:
    max_id = queries.max_sample_id(store, run_id)
    counts = queries.cell_counts(store, run_id, max_id)
    sample_pages = _SamplePages(store, run_id, max_id, counts, site)
    try:
        summary = summarize_run(store, run_id)
        run = summary.run
        models = [m.model for m in summary.models]
        suite_names = [s.suite for s in summary.suites]
        for model, suite in counts:  # samples of a model or suite the run did not register still show
            if model not in models:
                models.append(model)
            if suite not in suite_names:
                suite_names.append(suite)
        cells = {(c.model, c.suite): c for c in summary.cells}
        colours = charts.palette_order(models, palette)  # one colour per model on every page
        boards = analysis.leaderboards(summary, prefer=_routing_bests(store, summary))
        pair_list = analysis.pairs(summary)

        # ---- charts from the summary
        values = {(c.model, c.suite): (c.mean, c.lo, c.hi) for c in summary.cells if c.n_items}
        worse = {(row.cell.model, row.cell.suite) for rows in boards.values() for row in rows if row.worse}
        run_charts = {"accuracy": None, "cost": None, "latency": None}
        if values:
            run_charts["accuracy"] = chart_ctx(
                charts.accuracy_chart(suite_names, colours, values, worse),
                site / "charts" / "accuracy.png",
                "charts/accuracy.png",
            )
        # Cost against score per suite (a workload each, never pooled); nothing when nothing was spent.
        per_suite = {
            s: [
                (c.model, 1000 * c.cost_usd / c.n_samples if c.n_samples else float("nan"), c.mean)
                for c in summary.cells
                if c.suite == s and c.n_items
            ]
            for s in suite_names
        }
        run_charts["cost"] = chart_ctx(
            charts.suite_cost_score_chart(per_suite, colours),
            site / "charts" / "cost_accuracy.png",  # the name it always had: links to it keep working
            "charts/cost_accuracy.png",
        )
        # ---- the samples (this process's share; then the worker's results)
        located, references, latencies = sample_pages.render_here()
    except BaseException:
        sample_pages.kill()
        raise
    if any(latencies.values()):
        run_charts["latency"] = chart_ctx(
            charts.latency_chart(latencies, colours), site / "charts" / "latency.png", "charts/latency.png"
        )

    folders = {key: cell_folder(*key) for key in counts}
    links: dict[tuple[str, str, str], tuple[str | None, str]] = {}

    def locate(model: str, suite: str, item: str) -> tuple[str | None, str]:
        """Link (from compare/) to the item's first sample of this model, and that sample's answer."""
        key = (model, suite, item)
        if key not in links:
            hit = located.get((model, suite), {}).get(item)
            if hit is None:
                links[key] = (None, "—")
            else:
                page = page_of(hit[0], counts[(model, suite)][0])
                links[key] = (f"../{folders[(model, suite)]}/all-{page}.html#s{hit[0]}", hit[1])
        return links[key]

    # ---- A vs B pages
    pair_rows = []
    for a, b, per_suite in pair_list:
        stem = f"{slug(a)}__{slug(b)}"
        _write_compare(r, site / "compare", stem, run.id, a, b, per_suite, references, locate)
        pair_rows.append(
            dict(
                a=a,
                b=b,
                href=f"compare/{stem}-1.html",
                n=f"{sum(ps.comparison.n_paired for ps in per_suite):,}",
                a_better=f"{sum(ps.a_better for ps in per_suite):,}",
                b_better=f"{sum(ps.b_better for ps in per_suite):,}",
                disagree=sum(len(ps.disagree) for ps in per_suite),
            )
        )

    # ---- the run page
    info = {s.suite: s for s in summary.suites}
    board_ctx = []
    for suite in suite_names:
        rows = boards.get(suite)
        if not rows:
            continue
        s = info.get(suite)
        board_ctx.append(
            dict(
                suite=suite,
                family=s.family if s else "",
                grader=s.grader if s else "",
                n_items=f"{rows[0].cell.n_items:,}",
                hash=rows[0].cell.suite_hash,
                rows=[_board_row(row, cell_folder(row.cell.model, suite)) for row in rows],
            )
        )
    matrix = []
    for model in models:
        row_cells = []
        for suite in suite_names:
            if (model, suite) not in counts:
                row_cells.append(None)
                continue
            n_all, n_right, _ = counts[(model, suite)]
            folder = cell_folder(model, suite)
            cell = cells.get((model, suite))
            row_cells.append(
                dict(
                    score=pct(cell.mean) if cell else "—",
                    all=f"{folder}/all-1.html",
                    right=f"{folder}/right-1.html",
                    wrong=f"{folder}/wrong-1.html",
                    n_all=f"{n_all:,}",
                    n_right=f"{n_right:,}",
                    n_wrong=f"{n_all - n_right:,}",
                )
            )
        matrix.append(dict(model=model, cells=row_cells))
    ops = [
        dict(
            model=o.model,
            samples=f"{o.n_samples:,}",
            accuracy=pct(o.accuracy),
            error_rate=pct(o.error_rate),
            p50=secs(o.latency_p50),
            p99=secs(o.latency_p99),
            ttft=secs(o.ttft_p50),
            tps=f"{o.tokens_per_s:,.1f}" if finite(o.tokens_per_s) else "—",
            cost=estimate_mark(o.estimated_samples) + money(o.cost_usd),
            length=pct(o.length_rate),
            cpc=estimate_mark(o.estimated_samples) + money(o.cost_per_correct),
            served=list(o.served_models),
            failure=o.failure,
            batched=f"{o.batched:,}" if o.batched else "—",
            saved=money(o.batch_saved_usd) if o.batched else "—",
        )
        for o in summary.ops
    ]
    cell_ops = [
        dict(
            model=c.model,
            suite=c.suite,
            samples=f"{c.n_samples:,}",
            errors=f"{c.errors:,} ({pct(c.error_rate)})",
            p50=secs(c.latency_p50),
            p90=secs(c.latency_p90),
            p99=secs(c.latency_p99),
            ttft50=secs(c.ttft_p50),
            ttft99=secs(c.ttft_p99),
            tps=f"{c.tokens_per_s:,.1f}" if finite(c.tokens_per_s) else "—",
            tokens=f"{c.prompt_tokens:,} / {c.completion_tokens:,} / {c.reasoning_tokens:,}",
            cost=estimate_mark(c.estimated_samples) + money(c.cost_usd),
            cpc=estimate_mark(c.estimated_samples) + money(c.cost_per_correct),
        )
        for c in summary.cells
    ]
    run_ctx = dict(
        id=run.id,
        plan=run.plan_name,
        tag=run.tag,
        status=run.status,
        started=when(run.started_at),
        finished=when(run.finished_at),
        samples=f"{sum(v[0] for v in counts.values()):,}",
        trend_href=f"../trends/{slug(run.plan_name)}.html",
    )
    r.write(
        "run.html.j2",
        site / "index.html",
        root="../",
        run=run_ctx,
        charts=run_charts,
        boards=board_ctx,
        n_comparisons=analysis.n_comparisons(boards),
        alpha=analysis.ALPHA,
        ops=ops,
        ops_notes=[n for o in summary.ops for n in cache_and_window_notes(o)],
        cell_ops=cell_ops,
        suite_names=suite_names,
        matrix=matrix,
        pairs=pair_rows,
        page_size=pages.PAGE_SIZE,
        suites=summary.suites,
        models=summary.models,
        weekly=weekly.run_sections(store, summary, {} if cache is None else cache, site.parent),
        load=_under_load(store, summary),
        tools=tool_context(summary, site, chart_ctx),
        traffic_href=write_traffic_page(store, r, site, run.id, chart_ctx),
        long_context=long_context.section(store, summary, site, chart_ctx),
    )
    return summary


def _routing_bests(store: Store, summary: RunSummary) -> dict[str, str]:
    """suite -> the model the Routing section calls best: the leaderboard's ★ goes to it on a tie."""
    from harness.analysis.recommend import recommend
    from harness.errors import HarnessError

    try:
        rec = recommend(store, summary.run.id, summary=summary)
    except HarnessError:
        return {}
    return {s.suite: s.best for s in rec.suites if s.best}


def _under_load(store: Store, summary: RunSummary) -> dict | None:
    """The join with the plan's latest load run; its load page is written by build_site."""
    from harness.report.load_page import under_load_section

    scores: dict[str, dict[str, float]] = {m.model: {} for m in summary.models}
    for c in summary.cells:
        scores.setdefault(c.model, {})[c.suite] = c.mean
    section = under_load_section(store, summary.run.plan_name, scores)
    if section is not None:
        section["href"] = "../" + section["href"]
    return section


def _board_row(row: analysis.BoardRow, folder: str) -> dict:
    c = row.cell
    if row.best:
        mark, title = "best", ""
    elif c.n_samples and c.errors >= c.n_samples:
        mark, title = "unavailable", f"all {c.n_samples} requests failed: no score was measured"
    else:
        mark = "worse" if row.worse else ("tie" if finite(row.p_adj) else "")
        title = (
            f"vs best on {row.n_paired} shared items: Δ {points(row.diff, row.lo, row.hi)} pts; "
            f"raw p = {row.p:.3g} ({row.method}); Holm-adjusted p = {row.p_adj:.3g}"
            if finite(row.p_adj)
            else "no shared items with the best model"
        )
    return dict(
        rank=row.rank,
        model=c.model,
        score=pct(c.mean),
        ci=ci_text(c.lo, c.hi),
        value=f"{c.mean:.4f}" if finite(c.mean) else "0",
        diff="" if row.best else points(row.diff, row.lo, row.hi),
        p_adj="" if row.best else pval(row.p_adj),
        p_title=title,
        mark=mark,
        n_items=f"{c.n_items:,}",
        samples=f"{c.n_samples:,}",
        href=f"{folder}/all-1.html",
        href_wrong=f"{folder}/wrong-1.html",
    )


def _write_compare(
    r: Renderer, folder: Path, stem: str, run_id: str, a: str, b: str, per_suite, references: dict, locate
) -> None:
    """One A-vs-B page set: per-suite comparison, then every disagreeing item (paginated)."""
    stats_rows = []
    flat = []
    for ps in per_suite:
        cmp = ps.comparison
        stats_rows.append(
            dict(
                suite=ps.suite,
                n=f"{cmp.n_paired:,}",
                a_score=pct(cmp.b.mean),
                b_score=pct(cmp.a.mean),
                diff=points(cmp.diff, cmp.diff_lo, cmp.diff_hi),
                p=pval(cmp.p_adjusted),
                p_raw=pval(cmp.p_value),
                method=cmp.method,
                a_better=f"{ps.a_better:,}",
                b_better=f"{ps.b_better:,}",
            )
        )
        a_scores = dict(zip(ps.a.item_ids, ps.a.scores))
        b_scores = dict(zip(ps.b.item_ids, ps.b.scores))
        groups = dict(zip(ps.a.item_ids, ps.a.groups)) if ps.a.groups else {}
        for item in ps.disagree:
            flat.append((ps.suite, item, groups.get(item, ""), a_scores[item], b_scores[item]))
    n_pages = max(1, math.ceil(len(flat) / COMPARE_PAGE_SIZE))
    for page in range(1, n_pages + 1):
        chunk = flat[(page - 1) * COMPARE_PAGE_SIZE : page * COMPARE_PAGE_SIZE]
        sections: list[tuple[str, list]] = []
        for suite, item, group, sa, sb in chunk:
            if not sections or sections[-1][0] != suite:
                sections.append((suite, []))
            a_href, a_answer = locate(a, suite, item)
            b_href, b_answer = locate(b, suite, item)
            # a tuple, unpacked in the template (see compare.html.j2)
            sections[-1][1].append(
                (
                    item,
                    group,
                    f"{sa:.3g}",
                    a_answer,
                    a_href,
                    f"{sb:.3g}",
                    b_answer,
                    b_href,
                    references.get((suite, item), ""),
                )
            )
        r.write(
            "compare.html.j2",
            folder / f"{stem}-{page}.html",
            root="../../",
            run_href="../index.html",
            run_id=run_id,
            a=a,
            b=b,
            stats=stats_rows,
            sections=sections,
            page=page,
            pages=n_pages,
            stem=stem,
            rows_total=f"{len(flat):,}",
            page_size=COMPARE_PAGE_SIZE,
            method_note=(
                "exact McNemar for pass/fail scores, sign-flip permutation otherwise, whole groups flipped "
                "when items are grouped; the same comparisons as `harness compare`"
            ),
        )


INDEX_CHECKS = 20  # the newest runs whose check (regressions, alarms, watch) the index shows


def _check_counts(store: Store, run_id: str, cache: dict) -> dict | None:
    """Regressions, alarms and watch lines of a run's check against its previous run (None: no check)."""
    from harness.analysis.checks import check_run
    from harness.errors import HarnessError

    try:
        result = check_run(store, run_id, summaries=cache)
    except HarnessError:
        return None
    return dict(regressions=len(result.regressions), alarms=len(result.alarms), watch=len(result.watch))


def _write_index(store: Store, r: Renderer, out: Path, cache: dict | None = None) -> None:
    from harness.store import loads as results

    cache = {} if cache is None else cache
    runs = queries.runs_overview(store)
    rows, plans = [], {}
    for i, x in enumerate(runs):
        d = run_dir(x["id"])
        check = _check_counts(store, x["id"], cache) if i < INDEX_CHECKS and x["status"] == "finished" else None
        rows.append(
            dict(
                id=x["id"],
                href=f"{d}/index.html" if (out / d / "index.html").exists() else None,
                plan=x["plan"],
                tag=x["tag"],
                status=x["status"],
                started=when(x["started"]),
                duration=_duration(x["started"], x["finished"]),
                models=x["models"],
                suites=x["suites"],
                samples=f"{x['samples']:,}",
                check=check,
            )
        )
        plans[x["plan"]] = plans.get(x["plan"], 0) + 1
    plan_rows = []
    for plan in sorted(plans):
        page = f"trends/{slug(plan)}.html"
        # The answer first: the route of the plan's latest finished run (the latest run if none finished).
        latest = next((x for x in runs if x["plan"] == plan and x["status"] == "finished"), None)
        latest = latest or next(x for x in runs if x["plan"] == plan)
        route = weekly.routing_context(store, latest["id"], cache)
        d = run_dir(latest["id"])
        plan_rows.append(
            dict(
                name=plan,
                runs=plans[plan],
                href=page if (out / page).exists() else None,
                latest=latest["id"],
                latest_href=f"{d}/index.html" if (out / d / "index.html").exists() else None,
                latest_started=when(latest["started"]),
                route=route,
            )
        )
    load_rows = []
    for lr in reversed(results.load_runs(store)):
        page = f"load/{run_dir(lr.id)}.html"
        load_rows.append(
            dict(
                id=lr.id,
                href=page if (out / page).exists() else None,
                plan=lr.plan_name,
                tag=lr.tag,
                status=lr.status,
                started=when(lr.started_at),
                models=[m.model for m in results.models(store, lr.id)],
                slo=((lr.profile or {}).get("slo") or {}).get("text")
                if isinstance((lr.profile or {}).get("slo"), dict)
                else None,
            )
        )
    r.write("index.html.j2", out / "index.html", root="", runs=rows, plans=plan_rows, load_runs=load_rows)


def model_palette(store: Store) -> list[str]:
    """Every model of the database by first appearance (oldest run first): the colour order of every
    chart, so a model keeps its colour across pages and later reports (a new model gets the next one)."""
    order: list[str] = []
    for x in reversed(queries.runs_overview(store)):
        order += [m for m in x["models"] if m not in order]
    return order


def build_site(store: Store, run_ids: list[str] | None, out_dir: str | Path) -> Path:
    from harness.report import MARKER

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("A harness HTML report: `harness report --out` may write here again.\n", encoding="utf-8")
    ids = [store.resolve_run(x) for x in run_ids] if run_ids else [store.resolve_run(None)]
    ids = list(dict.fromkeys(ids))
    r = Renderer()
    palette = model_palette(store)
    plans: list[str] = []
    cache: dict = {}  # run id -> RunSummary, shared by the check and routing sections (report/weekly.py)
    for run_id in ids:
        summary = _write_run(store, r, out, run_id, cache, palette)
        if summary.run.plan_name not in plans:
            plans.append(summary.run.plan_name)
    for plan in plans:
        trend.write_trend(store, r, out, plan, cache, palette)
        from harness.report.load_page import write_plan_load_pages

        write_plan_load_pages(store, r, out, plan, palette)
    _write_index(store, r, out, cache)
    return out / run_dir(ids[0]) / "index.html"
