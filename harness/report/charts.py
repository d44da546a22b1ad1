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
    ax.set_xlim(lo_x, hi_x if hi_x > lo_x else lo_x + 1)
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
        ax.annotate(_label(m, 28), (c, 100 * a), xytext=(8, 6), textcoords="offset points", fontsize=8)
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
