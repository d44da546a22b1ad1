"""The trend page of a plan: each run's summary cached as JSON, scores and operations across runs, drift events."""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness.analysis.summary import RunSummary, summarize_run
from harness.report import charts, weekly
from harness.report.pages import Renderer, chart_ctx, ci_text, pct, run_dir, slug, when
from harness.store import Store
from harness.store import reports as queries

CACHE_FORMAT = 2  # 2: with per-model operations, prices and served names (trend charts, drift events)


def cache_path(out: Path, run_id: str) -> Path:
    return out / "trends" / "data" / f"{run_dir(run_id)}.json"


def save_cache(out: Path, summary: RunSummary, n_samples: int) -> list[dict]:
    cells = [
        dict(model=c.model, suite=c.suite, suite_hash=c.suite_hash, mean=c.mean, lo=c.lo, hi=c.hi, n_items=c.n_items)
        for c in summary.cells
    ]
    info = {m.model: m for m in summary.models}
    ops = {
        o.model: dict(
            latency_p99=o.latency_p99,
            error_rate=o.error_rate,
            cost_per_1k=1000 * o.cost_usd / o.n_samples if o.n_samples else float("nan"),
            served=list(o.served_models),
            api_model=f"{info[o.model].provider}/{info[o.model].api_model}" if o.model in info else "",
            price=[info[o.model].price_input, info[o.model].price_output] if o.model in info else None,
        )
        for o in summary.ops
    }
    path = cache_path(out, summary.run.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(
        json.dumps(
            dict(
                format=CACHE_FORMAT,
                run_id=summary.run.id,
                status=summary.run.status,
                n_samples=n_samples,
                cells=cells,
                ops=ops,
            )
        ),
        encoding="utf-8",
    )
    os.replace(tmp, path)
    return cells


def run_data(store: Store, out: Path, run, n_samples: int) -> dict:
    """A run's per-cell scores and per-model operations: from the cache its last report left, else now."""
    path = cache_path(out, run.id)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if (
            data.get("format") == CACHE_FORMAT
            and data.get("run_id") == run.id
            and data.get("status") == run.status
            and data.get("n_samples") == n_samples
        ):
            return data
    except (OSError, ValueError, AttributeError):
        pass
    save_cache(out, summarize_run(store, run.id), n_samples)
    return json.loads(path.read_text(encoding="utf-8"))


def run_cells(store: Store, out: Path, run, n_samples: int) -> list[dict]:
    return run_data(store, out, run, n_samples)["cells"]


def drift_events(per_run: list[tuple]) -> list[tuple[int, str]]:
    """(run index, what changed) between consecutive runs of a plan: the API model asked for, the
    served model names, the price. The check's alarms say the same for one pair of runs."""
    events = []
    for i in range(1, len(per_run)):
        before, now = per_run[i - 1][1].get("ops", {}), per_run[i][1].get("ops", {})
        for model, o in now.items():
            b = before.get(model)
            if b is None:
                continue
            if b.get("api_model") != o.get("api_model"):
                events.append((i, f"{model}: API model changed"))
            if b.get("served") and o.get("served") and b.get("served") != o.get("served"):
                events.append((i, f"{model}: served model changed"))
            if b.get("price") != o.get("price"):
                events.append((i, f"{model}: price changed"))
    return events


def write_trend(
    store: Store, r: Renderer, out: Path, plan: str, cache: dict | None = None, palette: list[str] | None = None
) -> None:
    runs = store.runs(plan_name=plan)
    counts = queries.sample_counts(store, [x.id for x in runs])
    per_run = [(x, run_data(store, out, x, counts.get(x.id, 0))) for x in runs]
    labels = [x.started_at.strftime("%m-%d %H:%M") for x in runs]
    events = drift_events(per_run)
    suites: list[str] = []
    all_models: list[str] = []
    for _, data in per_run:
        for c in data["cells"]:
            if c["suite"] not in suites:
                suites.append(c["suite"])
            if c["model"] not in all_models:
                all_models.append(c["model"])
    colours = charts.palette_order(all_models, palette)
    stem = slug(plan)
    suite_ctx = []
    for suite in suites:
        models: list[str] = []
        rows, changes = [], []
        suite_events = list(events)
        series: dict[str, list[tuple]] = {}
        prev_hash, segment = None, 0
        for index, (run, data) in enumerate(per_run):
            here = {c["model"]: c for c in data["cells"] if c["suite"] == suite}
            if not here:
                continue
            suite_hash = next(iter(here.values()))["suite_hash"]
            changed = prev_hash is not None and suite_hash != prev_hash
            if changed:
                segment += 1
                changes.append(dict(run=run.id, started=when(run.started_at), old=prev_hash, new=suite_hash))
                suite_events.append((index, "suite content changed"))
            prev_hash = suite_hash
            for m in here:
                if m not in models:
                    models.append(m)
                c = here[m]
                series.setdefault(m, []).append((index, c["mean"], c["lo"], c["hi"], segment))
            href = f"../{run_dir(run.id)}/index.html" if (out / run_dir(run.id) / "index.html").exists() else None
            rows.append(
                dict(run=run.id, href=href, started=when(run.started_at), hash=suite_hash, changed=changed, here=here)
            )
        for row in rows:
            here = row.pop("here")
            row["scores"] = [
                f"{pct(here[m]['mean'])} [{ci_text(here[m]['lo'], here[m]['hi'])}]" if m in here else "—"
                for m in models
            ]
        n_runs = len({p[0] for pts in series.values() for p in pts})
        # One run is a point, not a trend: the table shows it, the chart starts with the second run.
        chart = (
            charts.trend_runs_chart(suite, [m for m in colours if m in models], series, labels, suite_events)
            if n_runs > 1
            else None
        )
        name = slug(suite)
        suite_ctx.append(
            dict(
                suite=suite,
                models=models,
                rows=rows,
                changes=changes,
                n_runs=n_runs,
                chart=chart_ctx(chart, out / "trends" / stem / f"{name}.png", f"{stem}/{name}.png"),
            )
        )
    ops_series: dict[str, list[tuple[int, dict]]] = {}
    for index, (_, data) in enumerate(per_run):
        for model, o in (data.get("ops") or {}).items():
            ops_series.setdefault(model, []).append((index, o))
    ops_chart = None
    if len(per_run) > 1 and ops_series:
        ops_chart = chart_ctx(
            charts.trend_ops_chart([m for m in colours if m in ops_series], ops_series, labels, events),
            out / "trends" / stem / "operations.png",
            f"{stem}/operations.png",
        )
    r.write(
        "trend.html.j2",
        out / "trends" / f"{stem}.html",
        root="../",
        plan=plan,
        suites=suite_ctx,
        runs=[dict(id=x.id, started=when(x.started_at)) for x in runs],
        latest=weekly.trend_sections(store, runs, {} if cache is None else cache, out),
        ops_chart=ops_chart,
        events=[dict(run=runs[i].id, started=when(runs[i].started_at), what=text) for i, text in events],
    )


# --------------------------------------------------------------------------- index and entry point
