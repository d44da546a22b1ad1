"""The report's load page (one per load run) and the run page's "under load" section joining the
plan's latest load run with the run's scores."""

from __future__ import annotations

from pathlib import Path

from harness.load import join
from harness.report.pages import Renderer, chart_ctx, pct, run_dir, secs
from harness.store import Store
from harness.store import loads as results

STAGE_COLUMNS = (
    ("requests", "Requests", "int"),
    ("ok", "OK", "int"),
    ("error_rate", "Errors", "pct"),
    ("rate_limited_rate", "429", "pct"),
    ("achieved_concurrency", "Achieved users", "num"),
    ("achieved_rate", "Achieved req/s", "num"),
    ("requests_per_s", "Done req/s", "num"),
    ("output_tokens_per_s", "Out tok/s", "num"),
    ("ttft_p50", "TTFT p50", "s"),
    ("ttft_p90", "p90", "s"),
    ("ttft_p99", "p99", "s"),
    ("itl_p50", "ITL p50", "s"),
    ("itl_p99", "p99", "s"),
    ("tpot_p50", "TPOT p50", "s"),
    ("latency_p50", "Latency p50", "s"),
    ("latency_p90", "p90", "s"),
    ("latency_p99", "p99", "s"),
    ("goodput", "Goodput", "pct"),
)


def load_href(load_run_id: str) -> str:
    return f"load/{run_dir(load_run_id)}.html"


def _cell(value, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "pct":
        return pct(value)
    if kind == "s":
        return secs(value)
    return f"{value:,.1f}"


# What a reader of the load page needs first (the rest is one click away): speed, errors, goodput, verdict.
KEY_COLUMNS = ("requests", "requests_per_s", "ttft_p99", "latency_p50", "latency_p99", "error_rate", "goodput")


def write_load_page(store: Store, r: Renderer, out: Path, load_run_id: str, palette: list[str] | None = None) -> Path:
    from harness.report.load_charts import load_curves_chart, ttft_distribution_chart

    run = results.resolve_load_run(store, load_run_id)
    stored = results.stages(store, run.id)
    capacity = {m.model: m for m in results.models(store, run.id)}
    models: list[str] = []
    for s in stored:
        if s.model not in models:
            models.append(s.model)
    per_model = {
        m: sorted(
            [s.stats for s in stored if s.model == m], key=lambda st: (st.get("concurrency") or 0, st.get("rate") or 0)
        )
        for m in models
    }
    closed = any(s.stats.get("concurrency") is not None for s in stored)
    ttfts: dict[tuple, dict[str, list[float]]] = {}
    for s in stored:
        level = (s.stats.get("concurrency"), s.stats.get("rate"))
        values = [row["ttft"] for row in results.stage_requests(store, s.id) if not row["error"] and row["ttft"]]
        ttfts.setdefault(level, {})[s.model] = values
    name = run_dir(run.id)
    profile = run.profile or {}
    slo = (profile.get("slo") or {}).get("text") if isinstance(profile.get("slo"), dict) else None
    slo_terms = ()
    if slo:
        from harness.errors import HarnessError
        from harness.load.profile import parse_slo

        try:
            slo_terms = parse_slo(slo).terms
        except HarnessError:  # stored by an older version in another form: no threshold line
            slo_terms = ()
    charts = []
    if stored:
        charts.append(
            chart_ctx(
                load_curves_chart(per_model, models, closed, slo_terms, palette),
                out / "load" / name / "curves.png",
                f"{name}/curves.png",
            )
        )
        if any(v for d in ttfts.values() for v in d.values()):
            charts.append(
                chart_ctx(
                    ttft_distribution_chart(ttfts, models, closed, palette),
                    out / "load" / name / "ttft.png",
                    f"{name}/ttft.png",
                )
            )
    tables = []
    for m in models:
        rows = []
        for st in per_model[m]:
            users = st.get("concurrency")
            level = f"{st.get('rate'):g}/s" if users is None else f"{users} user" + ("" if users == 1 else "s")
            notes = []
            if st.get("probe"):
                notes.append("search probe")
            if st.get("stopped_early"):
                notes.append(f"stopped early: {st['stopped_early']}")
            if st.get("generator_behind"):
                notes.append("generator behind: offered load below target")
            if st.get("slo_failures"):
                notes.append("; ".join(st["slo_failures"]))
            verdict = (
                "—"
                if st.get("meets_slo") is None and not st.get("slo_failures")
                else ("✓ meets" if st.get("meets_slo") else "✗ misses")
            )
            rows.append(
                dict(
                    level=level,
                    cells=[_cell(st.get(k), kind) for k, _, kind in STAGE_COLUMNS],
                    key=[_cell(st.get(k), kind) for k, _, kind in STAGE_COLUMNS if k in KEY_COLUMNS],
                    verdict=verdict,
                    notes=", ".join(notes),
                    meets=st.get("meets_slo"),
                )
            )
        cap = capacity.get(m)
        cap_text = ""
        if cap is not None and (cap.capacity_concurrency is not None or cap.capacity_rate is not None):
            cap_text = (
                f"{cap.capacity_concurrency} concurrent users"
                if cap.capacity_concurrency is not None
                else f"{cap.capacity_rate:g} requests/s"
            )
        tables.append(dict(model=m, rows=rows, capacity=cap_text, note=cap.note if cap else ""))
    workload = profile.get("workload") or {}
    page = out / load_href(run.id)
    r.write(
        "load.html.j2",
        page,
        root="../",
        run=dict(
            id=run.id,
            plan=run.plan_name,
            tag=run.tag,
            status=run.status,
            started=run.started_at.strftime("%Y-%m-%d %H:%M"),
        ),
        slo=slo,
        workload=workload,
        columns=[c[1] for c in STAGE_COLUMNS],
        key_columns=[
            {"ttft_p99": "TTFT p99", "latency_p99": "Latency p99", "requests_per_s": "Done req/s"}.get(k, c)
            for k, c, _ in STAGE_COLUMNS
            if k in KEY_COLUMNS
        ],
        tables=tables,
        charts=charts,
        closed=closed,
    )
    return page


def under_load_section(store: Store, plan_name: str, scores: dict[str, dict[str, float]]) -> dict | None:
    """The run page's join with the plan's latest finished load run; None when the plan has none."""
    view = join.load_view(store, plan_name)
    if view is None:
        return None
    levels = join.levels(view)
    models = list(scores) + [m for m in view.stages if m not in scores]
    rows = []
    for m in models:
        cells = []
        for level in levels:
            st = join.stage_at(view, m, level)
            cells.append("—" if st is None else f"p99 {secs(st.get('latency_p99'))} · err {pct(st.get('error_rate'))}")
        measured = [lv for lv in levels if join.stage_at(view, m, lv) is not None]
        headline = (
            join.sentence(join.stage_at(view, m, measured[-1]), measured[-1], scores.get(m, {}))
            if measured
            else "no load measured for this model"
        )
        cap = view.capacity.get(m)
        capacity = ""
        if cap is not None and cap.capacity_concurrency is not None:
            capacity = f"{cap.capacity_concurrency} users"
        elif cap is not None and cap.capacity_rate is not None:
            capacity = f"{cap.capacity_rate:g}/s"
        rows.append(dict(model=m, cells=cells, headline=headline, capacity=capacity))
    short = [(f"{c} user" + ("" if c == 1 else "s")) if c is not None else f"{r:g} req/s" for c, r in levels]
    return dict(
        run=view.run.id,
        href=load_href(view.run.id),
        levels=short,
        rows=rows,
        started=view.run.started_at.strftime("%Y-%m-%d %H:%M"),
    )


def write_plan_load_pages(
    store: Store, r: Renderer, out: Path, plan_name: str, palette: list[str] | None = None
) -> Path | None:
    """The load page of the plan's latest finished load run (the one the run page links to)."""
    view = join.load_view(store, plan_name)
    return None if view is None else write_load_page(store, r, out, view.run.id, palette)
