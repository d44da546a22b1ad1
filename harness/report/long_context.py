"""The run page's long-context section: per model a length × depth heatmap (cells over the window marked
as such), the effective length with its interval, and TTFT and cost against prompt length."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from harness.analysis import long_context as lc
from harness.records import CONTEXT_LENGTH, error_class, money
from harness.report import charts
from harness.store import Store
from harness.suite.needle import LONG_CONTEXT_FAMILY


def needle_rows(store: Store, summary) -> dict:
    """model -> suite -> [(length, depth, item score, over the window)] and the samples' (length, prompt
    tokens, TTFT, cost, estimated) for the long-context suites' items that carry numeric `length` and `depth`."""
    rows: dict = defaultdict(lambda: defaultdict(list))
    points: dict = defaultdict(list)
    # Only long-context suites are read again (a 100k-sample run of other suites pays nothing here).
    wanted = [s for s in summary.suites if s.family == LONG_CONTEXT_FAMILY or s.grader == "needle"]
    fields_by_hash = {s.suite_hash: store.item_fields(s.suite_hash) for s in wanted}
    per_item: dict = defaultdict(list)
    for suite in wanted:
        for s in store.samples(summary.run.id, suite=suite.suite):
            if s.suite_hash not in fields_by_hash:  # samples stored under another content of the suite
                fields_by_hash[s.suite_hash] = store.item_fields(s.suite_hash)
            _file_sample(s, fields_by_hash[s.suite_hash], per_item, points)
    for (model, suite, _), samples in per_item.items():
        length, depth = samples[0][0], samples[0][1]
        refused = all(x[3] for x in samples)
        score = sum(x[2] for x in samples) / len(samples)
        rows[model][suite].append((length, depth, score, refused))
    return {"rows": rows, "points": points}


def _file_sample(s, fields: dict, per_item: dict, points: dict) -> None:
    """File one sample under its item (length, depth, score, over the window) and its request's figures."""
    f = fields.get(s.item_id) or {}
    if not (_number(f.get("length")) and _number(f.get("depth"))):
        return
    refused = error_class(s.error) == CONTEXT_LENGTH
    per_item[(s.model, s.suite, s.item_id)].append((int(f["length"]), float(f["depth"]), s.score, refused))
    if not s.error and not s.batched:
        points[s.model].append((int(f["length"]), s.prompt_tokens, s.ttft_s, s.cost_usd, s.usage_estimated))


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _tokens(n: int) -> str:
    return f"{n // 1024}k" if n % 1024 == 0 and n >= 1024 else f"{n:,}"


def section(store: Store, summary, site: Path, chart_ctx) -> dict | None:
    """The template's `long_context` value, or None when the run has no length/depth items."""
    data = needle_rows(store, summary)
    if not data["rows"]:
        return None
    models = [m.model for m in summary.models]
    out = []
    for model, suites in data["rows"].items():
        for suite, rows in suites.items():
            cells = lc.grid(rows)
            eff = lc.effective_length(rows)
            i = len(out)
            chart = chart_ctx(
                heatmap(model, suite, cells), site / "charts" / f"needle-{i}.png", f"charts/needle-{i}.png"
            )
            over = sum(c.over_window for c in cells)
            out.append(
                dict(
                    model=model,
                    suite=suite,
                    chart=chart,
                    effective=_effective_text(eff),
                    by_length=[
                        dict(length=_tokens(length), score=f"{100 * m:.0f}%") for length, m in eff.by_length.items()
                    ],
                    over_window=over,
                )
            )
    points = {m: p for m, p in data["points"].items() if p}
    ttft = {m: [(t, f) for _, t, f, _, _ in p if f is not None] for m, p in points.items()}
    cost = {m: [(t, c) for _, t, _, c, _ in p] for m, p in points.items()}
    estimated = any(e for p in points.values() for *_, e in p)
    figures = {}
    if any(ttft.values()):
        figures["ttft"] = chart_ctx(
            scatter(ttft, models, "TTFT (s)", "Time to first token against prompt length"),
            site / "charts" / "ttft_by_length.png",
            "charts/ttft_by_length.png",
        )
    if any(c for v in cost.values() for _, c in v):
        figures["cost"] = chart_ctx(
            scatter(cost, models, "cost per request (US$)", "Cost per request against prompt length"),
            site / "charts" / "cost_by_length.png",
            "charts/cost_by_length.png",
        )
    per_length = []
    for m, p in points.items():
        by: dict[int, list] = defaultdict(list)
        for length, tokens, t, c, e in p:
            by[length].append((tokens, t, c, e))
        for length in sorted(by):
            got = by[length]
            ts = sorted(t for _, t, _, _ in got if t is not None)
            mark = "≈" if any(e for *_, e in got) else ""
            per_length.append(
                dict(
                    model=m,
                    length=_tokens(length),
                    n=len(got),
                    tokens=f"{sum(x[0] for x in got) / len(got):,.0f}",
                    ttft=f"{ts[len(ts) // 2]:.2f} s" if ts else "—",
                    cost=mark + money(sum(x[2] for x in got) / len(got)),
                )
            )
    return dict(
        grids=out, figures=figures, per_length=per_length, drop=f"{100 * lc.DEFAULT_DROP:.0f}", estimated=estimated
    )


def _effective_text(eff: lc.EffectiveLength) -> str:
    if eff.value is None:
        return "none: not even the shortest length was recalled"
    # An end of None: in some resamples not even the shortest length held up.
    lo = "none" if eff.lo is None else _tokens(eff.lo)
    hi = "none" if eff.hi is None else _tokens(eff.hi)
    return f"{_tokens(eff.value)} tokens (95% interval {lo} – {hi}; short-context score {100 * eff.baseline:.0f}%)"


def heatmap(model: str, suite: str, cells: list[lc.Cell]) -> charts.Chart:
    """Score by length (rows) and depth (columns); a hatched grey cell is over the model's window."""
    from matplotlib.patches import Rectangle

    lengths = sorted({c.length for c in cells})
    depths = sorted({c.depth for c in cells})
    fig = charts._figure(max(3.6, 1.6 + 0.62 * len(depths)), 1.2 + 0.42 * len(lengths))
    ax = fig.add_subplot()
    cmap = _cmap()
    for c in cells:
        x, y = depths.index(c.depth), lengths.index(c.length)
        if math.isnan(c.mean):
            ax.add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, facecolor="#d9d9d9", hatch="///", edgecolor="#999999"))
            ax.text(x, y, "over the\nwindow", ha="center", va="center", fontsize=6.5, color="#333333")
            continue
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, facecolor=cmap(c.mean), edgecolor="white"))
        label = f"{100 * c.mean:.0f}" + ("*" if c.over_window else "")
        ax.text(x, y, label, ha="center", va="center", fontsize=8, color="white" if c.mean < 0.55 else "#111111")
    measured = {(c.length, c.depth) for c in cells}
    for y, length in enumerate(lengths):
        for x, depth in enumerate(depths):
            if (length, depth) not in measured:  # no sample stored (a run stopped early, or --limit)
                ax.text(x, y, "—", ha="center", va="center", fontsize=9, color="#777777")
    ax.set_xlim(-0.5, len(depths) - 0.5)
    ax.set_ylim(-0.5, len(lengths) - 0.5)
    ax.set_xticks(range(len(depths)), [f"{d:g}%" for d in depths], fontsize=8)
    ax.set_yticks(range(len(lengths)), [_tokens(n) for n in lengths], fontsize=8)
    ax.set_xlabel("needle depth (% of the document before it)", fontsize=8)
    ax.set_ylabel("prompt tokens")
    ax.set_title(charts._label(f"{model} · {suite}", 60), fontsize=9)
    alt = f"{model} on {suite}: recall (%) by prompt length and needle depth; grey cells are over the window"
    return charts._render(fig, alt)


def _cmap():
    from matplotlib import colormaps

    return colormaps["viridis"]


def scatter(points: dict[str, list[tuple[int, float]]], models: list[str], ylabel: str, title: str) -> charts.Chart:
    fig = charts._figure(7.5, 3.6)
    ax = fig.add_subplot()
    for m, pts in points.items():
        if not pts:
            continue
        colour, marker = charts.style(models.index(m) if m in models else len(models))
        xs, ys = zip(*sorted(pts))
        ax.plot(xs, ys, marker=marker, color=colour, linestyle="none", markersize=5, alpha=0.8, label=charts._label(m))
    ax.set_xlabel("prompt tokens")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return charts._render(fig, f"{title}, one point per answered request, one colour per model")
