"""Matplotlib charts for the report as PNG bytes (Agg, imported lazily: other commands start fast)."""

from __future__ import annotations

import io
import sys
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta

from harness.formatting import finite

# Okabe & Ito (2008) colour-blind-safe palette, most distinguishable first; markers add a second cue.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442", "#000000")
MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*")
DPI = 110


@dataclass(frozen=True)
class Chart:
    png: bytes
    width: int  # pixels
    height: int
    alt: str


def style(i: int) -> tuple[str, str]:
    """Colour and marker of the i-th model (cycles markers after the palette runs out)."""
    return OKABE_ITO[i % len(OKABE_ITO)], MARKERS[(i // len(OKABE_ITO) + i) % len(MARKERS)]


def palette_order(models: list[str], palette: list[str] | None) -> list[str]:
    """The model order that decides colours: the site-wide one (every model of the database by first
    appearance, so a model keeps its colour on every page and in later reports), then any other."""
    order = list(palette or [])
    return order + [m for m in models if m not in order]


def _place_labels(fig, groups: list[tuple]) -> None:
    """Move annotations that overlap a point or a label placed earlier to the first free spot around
    their point. groups: [(axes, [annotation, ...])]; the figure is laid out once for all of them."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.transforms import Bbox

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.canvas.draw()  # lay the figure out first: overlaps are judged where the labels will be drawn
    renderer = fig.canvas.get_renderer()
    spots = ((8, 6), (8, -14), (-8, 6), (-8, -14), (8, 18), (8, -26), (-8, 18), (-8, -26))
    for ax, labels in groups:
        # The markers themselves are taken: no label is placed over a point.
        placed = []
        for ann in labels:
            x, y = ax.transData.transform(ann.xy)
            placed.append(Bbox.from_extents(x - 6, y - 6, x + 6, y + 6))
        for ann in labels:
            for dx, dy in spots:
                ann.set_position((dx, dy))
                ann.set_horizontalalignment("left" if dx > 0 else "right")
                box = ann.get_window_extent(renderer)
                if not any(box.overlaps(other) for other in placed):
                    break
            placed.append(ann.get_window_extent(renderer))


def _label(text: str, limit: int = 42) -> str:
    """Model/suite names as plain text: no mathtext, bounded length."""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def _figure(width_in: float, height_in: float):
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # never touch the backend of a caller that already runs pyplot
    from matplotlib.figure import Figure  # the OO API: no global figure state, no GUI

    return Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")


def _render(fig, alt: str) -> Chart:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # missing glyphs (e.g. CJK model names) draw as boxes
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    w, h = fig.get_size_inches()
    return Chart(buf.getvalue(), int(round(w * DPI)), int(round(h * DPI)), alt)


def accuracy_chart(suites: list[str], models: list[str], values: dict, worse: set) -> Chart:
    """Dot plot: score with 95% CI per model (colour/marker) per suite (row group).

    values: (model, suite) -> (mean, lo, hi) in [0, 1]; worse: (model, suite) pairs to mark hollow
    (significantly worse than the suite's best)."""
    rows = [(s, [m for m in models if (m, s) in values]) for s in suites]
    rows = [(s, ms) for s, ms in rows if ms]
    n_rows = sum(len(ms) for _, ms in rows)
    fig = _figure(9.0, 1.3 + 0.26 * n_rows + 0.35 * len(rows))
    ax = fig.add_subplot()
    y, ticks, ticklabels = 0.0, [], []
    lows, highs = [], []
    seen = set()
    for si, (suite, ms) in enumerate(rows):
        start = y
        for m in ms:
            mean, lo, hi = values[(m, suite)]
            colour, marker = style(models.index(m))
            hollow = (m, suite) in worse
            if finite(lo) and finite(hi):
                ax.errorbar(
                    [100 * mean],
                    [y],
                    xerr=[[100 * (mean - lo)], [100 * (hi - mean)]],
                    fmt="none",
                    ecolor=colour,
                    elinewidth=2,
                    capsize=3,
                )
                lows.append(100 * lo)
                highs.append(100 * hi)
            ax.plot(
                [100 * mean],
                [y],
                marker=marker,
                markersize=7,
                color=colour,
                markerfacecolor="white" if hollow else colour,
                markeredgewidth=1.6,
                linestyle="none",
                label=_label(m, 32) if m not in seen else None,
            )
            seen.add(m)
            ax.annotate(
                f"{100 * mean:.1f}",
                (100 * (hi if finite(hi) else mean), y),
                xytext=(5, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
                color="#333333",
            )
            lows.append(100 * mean)
            highs.append(100 * mean)
            y += 1
        ticks.append((start + y - 1) / 2)
        ticklabels.append(_label(suite, 28))
        if si % 2 == 0:
            ax.axhspan(start - 0.5, y - 0.5, color="#f2f4f7", zorder=0)
        y += 0.6
    ax.set_yticks(ticks, ticklabels)
    ax.invert_yaxis()
    lo_x = max(0.0, min(lows, default=0.0) - 5)
    hi_x = min(100.0, max(highs, default=100.0) + 6)
    hi_x = hi_x if hi_x > lo_x else lo_x + 1
    # Room right of the highest value for its label, inside the axes: no label under the legend.
    ax.set_xlim(lo_x, hi_x + 0.09 * (hi_x - lo_x))
    ax.set_xticks([t for t in ax.get_xticks() if lo_x <= t <= 100])
    ax.set_xlabel("Accuracy (%), 95% CI")
    ax.set_ylabel("Suite")
    ax.grid(axis="x", color="#dddddd")
    ax.set_axisbelow(True)
    ax.set_title("Accuracy per model per suite (hollow: significantly worse than the best)", fontsize=10)
    if seen:
        ax.legend(
            loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False, title="Model", title_fontsize=9
        )
    return _render(fig, "Accuracy with 95% confidence interval per model and suite")


def cost_accuracy_chart(points: list[tuple[str, float, float]], models: list[str], front: list[bool]) -> Chart:
    """Scatter of total cost (USD) against accuracy (%) per model, Pareto front joined and ringed."""
    fig = _figure(6.4, 4.4)
    ax = fig.add_subplot()
    pts = [(m, c, a, f) for (m, c, a), f in zip(points, front) if finite(c) and finite(a)]
    labels = []
    for m, c, a, on_front in pts:
        colour, marker = style(models.index(m))
        ax.plot([c], [100 * a], marker=marker, markersize=9, color=colour, linestyle="none", zorder=3)
        if on_front:
            ax.plot(
                [c],
                [100 * a],
                marker="o",
                markersize=17,
                markerfacecolor="none",
                markeredgecolor="#222222",
                markeredgewidth=1.2,
                linestyle="none",
                zorder=2,
            )
        labels.append(ax.annotate(_label(m, 28), (c, 100 * a), xytext=(8, 6), textcoords="offset points", fontsize=8))
    fr = sorted((c, 100 * a) for m, c, a, f in pts if f)
    if fr:
        ax.plot(
            [p[0] for p in fr],
            [p[1] for p in fr],
            linestyle="--",
            color="#222222",
            linewidth=1.2,
            drawstyle="steps-post",
            zorder=1,
            label="Pareto front (cheapest for its accuracy)",
        )
        ax.legend(loc="lower right", fontsize=8, frameon=False)
    costs = [p[1] for p in pts]
    if costs and min(costs) > 0 and max(costs) / min(costs) > 50:
        ax.set_xscale("log")
        ax.set_xlabel("Total cost of the run (USD, log scale)")
    else:
        ax.set_xlabel("Total cost of the run (USD)")
    ax.margins(x=0.25, y=0.2)
    accs = [100 * p[2] for p in pts]
    if accs and max(accs) - min(accs) < 10:  # one model, or models close together: a readable 20-point window
        mid = (max(accs) + min(accs)) / 2
        low = min(max(0.0, mid - 10), 80.0)
        ax.set_ylim(low, low + 20 if low + 20 <= 100 else 100)
    if costs and len(set(costs)) == 1 and costs[0] > 0:  # a single cost: from nothing to twice it
        ax.set_xlim(0, 2 * costs[0])
    ax.set_ylabel("Accuracy over all samples (%)")
    ax.grid(color="#e3e3e3")
    ax.set_title("Cost against accuracy per model", fontsize=10)
    _place_labels(fig, [(ax, labels)])
    return _render(fig, "Total cost against accuracy per model, Pareto front marked")


def latency_chart(latencies: dict[str, list[float]], models: list[str]) -> Chart:
    """Box plot of request latency per model (box 25–75%, whiskers 1–99%, p50 and p99 marked)."""
    import numpy as np

    names = [m for m in models if len(latencies.get(m, ())) > 0]
    fig = _figure(6.4, 1.5 + 0.55 * max(1, len(names)))
    ax = fig.add_subplot()
    data = [np.asarray(latencies[m], dtype=float) for m in names]
    if data:
        box_args = dict(
            whis=(1, 99),
            showfliers=False,
            patch_artist=True,
            widths=0.55,
            medianprops={"color": "#000000", "linewidth": 1.6},
        )
        try:
            bp = ax.boxplot(data, orientation="horizontal", **box_args)  # matplotlib >= 3.10
        except TypeError:
            bp = ax.boxplot(data, vert=False, **box_args)
        labels = []
        for i, (box, m) in enumerate(zip(bp["boxes"], names)):
            colour, _ = style(models.index(m))
            box.set_facecolor(colour)
            box.set_alpha(0.75)
            p50, p99 = np.percentile(data[i], [50, 99])
            ax.plot([p99], [i + 1], marker="|", markersize=14, color="#000000", linestyle="none")
            labels.append(f"{_label(m, 28)}\np50 {p50:.2f} s · p99 {p99:.2f} s")
        ax.set_yticks(range(1, len(names) + 1), labels, fontsize=8)
        ax.invert_yaxis()
        lo = min(float(np.percentile(d, 1)) for d in data)
        hi = max(float(np.percentile(d, 99)) for d in data)
        if lo > 0 and hi / lo > 30:
            ax.set_xscale("log")
        ax.margins(x=0.15)
    ax.set_xlabel("Latency per request (s)" + (", log scale" if ax.get_xscale() == "log" else ""))
    ax.grid(axis="x", color="#e3e3e3")
    ax.set_title("Latency distribution per model (box 25–75%, whiskers 1–99%, | p99)", fontsize=10)
    return _render(fig, "Request latency distribution per model")


def trend_chart(suite: str, models: list[str], series: dict[str, list[tuple]], changes: list[datetime]) -> Chart:
    """Score over time per model with 95% CI bands for one suite.

    series: model -> [(started_at, mean, lo, hi, segment)], segment numbering the suite-hash
    versions; lines and bands break between segments. changes: dates where the hash changed."""
    from matplotlib import dates as mdates

    fig = _figure(9.0, 4.2)
    ax = fig.add_subplot()
    for m in models:
        pts = series.get(m) or []
        if not pts:
            continue
        colour, marker = style(models.index(m))
        labelled = False
        for seg in sorted({p[4] for p in pts}):
            part = [p for p in pts if p[4] == seg]
            xs = [p[0] for p in part]
            ax.plot(
                xs,
                [100 * p[1] for p in part],
                marker=marker,
                color=colour,
                linewidth=1.8,
                markersize=6,
                label=None if labelled else _label(m),
            )
            labelled = True
            band = [p for p in part if finite(p[2]) and finite(p[3])]
            if len(band) > 1:
                ax.fill_between(
                    [p[0] for p in band],
                    [100 * p[2] for p in band],
                    [100 * p[3] for p in band],
                    color=colour,
                    alpha=0.18,
                    linewidth=0,
                )
            elif band:  # a lone point has no band to draw: show its interval as an error bar
                p = band[0]
                ax.errorbar(
                    [p[0]],
                    [100 * p[1]],
                    yerr=[[100 * (p[1] - p[2])], [100 * (p[3] - p[1])]],
                    fmt="none",
                    ecolor=colour,
                    elinewidth=1.5,
                    capsize=4,
                    alpha=0.7,
                )
    for when in changes:
        ax.axvline(when, color="#555555", linestyle=":", linewidth=1.4)
        ax.annotate(
            "suite changed",
            (when, 1),
            xycoords=("data", "axes fraction"),
            xytext=(3, -12),
            textcoords="offset points",
            fontsize=8,
            color="#555555",
        )
    when = [p[0] for pts in series.values() for p in pts]
    span = (max(when) - min(when)).days if when else 0
    if when and span < 2:  # one day of runs: show a week around it rather than years
        ax.set_xlim(min(when) - timedelta(days=3), max(when) + timedelta(days=3))
    if 10 <= span <= 400:  # scheduled runs: one tick a week (or every few weeks), on Mondays
        ax.xaxis.set_major_locator(mdates.WeekdayLocator(byweekday=mdates.MO, interval=max(1, span // 70)))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b\n%Y" if span > 180 else "%d %b"))
    else:
        locator = mdates.AutoDateLocator(minticks=3, maxticks=10)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.margins(x=0.05 if span >= 2 else 0, y=0.12)
    ax.set_xlabel("Run start (UTC)")
    ax.set_ylabel("Accuracy (%), 95% CI band")
    ax.grid(color="#e3e3e3")
    ax.set_title(f"{_label(suite, 60)}: score per model across runs", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(
            loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False, title="Model", title_fontsize=9
        )
    return _render(fig, f"Score of each model on {suite} across runs with 95% confidence bands")


def suite_cost_score_chart(points: dict[str, list[tuple[str, float, float]]], palette: list[str]) -> Chart | None:
    """Cost per 1,000 requests against score, one panel per suite (no pooling across workloads).

    points: suite -> [(model, cost per 1,000 requests in USD, score in [0, 1])]; models without a known
    cost are left out (they are listed under the chart). Each panel's Pareto front is dashed."""
    panels = {s: [p for p in pts if finite(p[1]) and finite(p[2])] for s, pts in points.items()}
    panels = {s: pts for s, pts in panels.items() if pts and any(p[1] > 0 for p in pts)}
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig = _figure(3.9 * cols + 0.4, 3.1 * rows + 0.6)
    axes = list(fig.subplots(rows, cols, squeeze=False).flat)
    models = palette_order([m for pts in panels.values() for m, _, _ in pts], palette)
    groups = []
    for ax, (suite, pts) in zip(axes, panels.items()):
        labels = []
        groups.append((ax, labels))
        for m, cost, score in pts:
            colour, marker = style(models.index(m))
            ax.plot([cost], [100 * score], marker=marker, markersize=8, color=colour, linestyle="none", zorder=3)
            labels.append(
                ax.annotate(_label(m, 22), (cost, 100 * score), xytext=(8, 6), textcoords="offset points", fontsize=7)
            )
        front = []
        for _, cost, score in pts:
            if not any(c2 <= cost and s2 >= score and (c2 < cost or s2 > score) for _, c2, s2 in pts):
                front.append((cost, 100 * score))
        front.sort()
        if len(front) > 1:
            ax.plot(*zip(*front), linestyle="--", color="#222222", linewidth=1, drawstyle="steps-post", zorder=1)
        costs = [p[1] for p in pts]
        if min(costs) > 0 and max(costs) / min(costs) > 50:
            ax.set_xscale("log")
        ax.margins(x=0.3, y=0.25)
        ax.set_title(_label(suite, 40), fontsize=9)
        ax.set_xlabel("$ per 1,000 requests" + (" (log)" if ax.get_xscale() == "log" else ""), fontsize=8)
        ax.set_ylabel("score (%)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(color="#e3e3e3")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    _place_labels(fig, groups)
    fig.suptitle("Cost against score per suite (dashed: cheapest for its score)", fontsize=10)
    return _render(fig, "Cost per 1,000 requests against score, one panel per suite")


def _run_axis(ax, labels: list[str], events: list[tuple[int, str]]) -> None:
    """Runs spaced evenly by run (two runs a minute apart stay apart), drift events as dotted lines."""
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlim(-0.4, len(labels) - 0.6 if len(labels) > 1 else 0.4)
    for x, _text in events:
        ax.axvline(x - 0.5, color="#8a5a00", linestyle=":", linewidth=1.3, zorder=1)
    if events:
        # One label per run with events, stacked from the top so labels do not collide.
        by_run: dict[int, list[str]] = {}
        for x, text in events:
            by_run.setdefault(x, []).append(text)
        for x, texts in by_run.items():
            if not any(texts):
                continue
            ax.annotate(
                "\n".join(_label(t, 48) for t in texts[:4]) + ("\n…" if len(texts) > 4 else ""),
                (x - 0.5, 1),
                xycoords=("data", "axes fraction"),
                xytext=(3, -4),
                textcoords="offset points",
                va="top",
                fontsize=7,
                color="#8a5a00",
            )


def trend_runs_chart(
    suite: str, models: list[str], series: dict[str, list[tuple]], labels: list[str], events: list[tuple[int, str]]
) -> Chart:
    """Score per model across runs for one suite, x = run (evenly spaced), 95% CI as error bars.

    series: model -> [(run index, mean, lo, hi, segment)]; lines break between suite versions
    (segments). events: (run index, text) drift events (suite, API model, served model or price changed)."""
    fig = _figure(9.0, 4.0)
    ax = fig.add_subplot()
    for m in models:
        pts = series.get(m) or []
        if not pts:
            continue
        colour, marker = style(models.index(m))
        labelled = False
        for seg in sorted({p[4] for p in pts}):
            part = [p for p in pts if p[4] == seg]
            ax.plot(
                [p[0] for p in part],
                [100 * p[1] for p in part],
                marker=marker,
                color=colour,
                linewidth=1.8,
                markersize=6,
                label=None if labelled else _label(m),
            )
            labelled = True
            band = [p for p in part if finite(p[2]) and finite(p[3])]
            if band:
                ax.errorbar(
                    [p[0] for p in band],
                    [100 * p[1] for p in band],
                    yerr=[[100 * (p[1] - p[2]) for p in band], [100 * (p[3] - p[1]) for p in band]],
                    fmt="none",
                    ecolor=colour,
                    elinewidth=1.2,
                    capsize=3,
                    alpha=0.6,
                )
    _run_axis(ax, labels, events)
    ax.set_ylim(-2, 112)  # room above 100% for the drift labels, none of them on a marker
    ax.set_yticks(range(0, 101, 20))
    ax.set_xlabel("Run (evenly spaced; start time UTC)")
    ax.set_ylabel("Score (%), 95% CI")
    ax.grid(color="#e3e3e3")
    ax.set_title(f"{_label(suite, 60)}: score per model across runs", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(
            loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False, title="Model", title_fontsize=9
        )
    return _render(fig, f"Score of each model on {suite} across runs, with drift events")


OPS_PANELS = (  # (key, title, y label, scale)
    ("latency_p99", "Latency p99", "seconds", 1.0),
    ("error_rate", "Error rate", "% of requests", 100.0),
    ("cost_per_1k", "Cost per 1,000 requests", "US dollars", 1.0),
)


def trend_ops_chart(
    models: list[str], series: dict[str, list[tuple[int, dict]]], labels: list[str], events: list[tuple[int, str]]
) -> Chart:
    """p99 latency, error rate and cost per 1,000 requests per model across runs (all suites of a run)."""
    fig = _figure(9.0, 7.2)
    axes = fig.subplots(3, 1, sharex=True)
    for ax, (key, title, ylabel, scale) in zip(axes, OPS_PANELS):
        for m in models:
            pts = [(x, ops[key] * scale) for x, ops in series.get(m, ()) if finite(ops.get(key))]
            if not pts:
                continue
            colour, marker = style(models.index(m))
            ax.plot(*zip(*pts), marker=marker, color=colour, linewidth=1.6, markersize=5, label=_label(m))
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_ylim(bottom=0)
        ax.grid(color="#e3e3e3")
        ax.tick_params(labelsize=7)
    for ax in axes:
        _run_axis(ax, labels, events if ax is axes[0] else [(x, "") for x, _ in events])
    axes[-1].set_xlabel("Run (evenly spaced; start time UTC)")
    handles, names = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="outside right upper", fontsize=8, frameon=False, title="Model")
    fig.suptitle("Operations per model across runs (dotted: drift events)", fontsize=10)
    return _render(fig, "Latency p99, error rate and cost per 1,000 requests per model across runs")
