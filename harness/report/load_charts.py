"""Charts of the load page: figures against concurrency (or rate), all models on each; TTFT distributions."""

from __future__ import annotations

import numpy as np

from harness.report.charts import Chart, _figure, _label, _render, palette_order, style

PANELS = (  # (title, [(stat key, line style, legend suffix)], y label, scale)
    ("End-to-end latency", [("latency_p50", "-", "p50"), ("latency_p99", "--", "p99")], "seconds", 1.0),
    ("Time to first token", [("ttft_p50", "-", "p50"), ("ttft_p99", "--", "p99")], "seconds", 1.0),
    ("Output throughput", [("output_tokens_per_s", "-", "")], "tokens / s", 1.0),
    ("Error rate", [("error_rate", "-", "")], "% of requests", 100.0),
)


def _x(stats: dict) -> float | None:
    return stats.get("concurrency") if stats.get("concurrency") is not None else stats.get("rate")


def load_curves_chart(
    per_model: dict[str, list[dict]],
    models: list[str],
    closed: bool,
    slo_terms: tuple = (),
    palette: list[str] | None = None,
) -> Chart:
    """Four panels against the load level: latency p50/p99, TTFT p50/p99, output tokens/s, error rate.

    `slo_terms` (load.profile.SloTerm) are drawn as red dashed thresholds on the panel of their metric;
    `palette`: the site-wide model order that gives each model its colour on every page."""
    fig = _figure(10.0, 6.6)
    axes = fig.subplots(2, 2)
    colours = palette_order(models, palette)
    xs_all = sorted({x for stats in per_model.values() for st in stats if (x := _x(st))})
    for ax, (title, series, ylabel, scale) in zip(axes.flat, PANELS):
        keys = {key for key, _, _ in series}
        for term in slo_terms:
            if term.metric in keys:
                ax.axhline(term.limit * scale, color="#D55E00", linestyle="--", linewidth=1.3, zorder=1)
                ax.annotate(
                    f"SLO {term.metric} ≤ {term.limit * scale:g}",
                    (0, term.limit * scale),
                    xycoords=("axes fraction", "data"),
                    xytext=(4, 3),
                    textcoords="offset points",
                    fontsize=7,
                    color="#D55E00",
                )
        for model in models:
            colour, marker = style(colours.index(model))
            stats = [st for st in per_model.get(model, ()) if _x(st)]
            for key, line, suffix in series:
                pts = [(_x(st), st[key] * scale) for st in stats if st.get(key) is not None]
                if not pts:
                    continue
                x, y = zip(*pts)
                label = _label(model, 28) + (f" {suffix}" if suffix else "")
                ax.plot(x, y, linestyle=line, marker=marker, color=colour, label=label, markersize=5)
        if xs_all and max(xs_all) / max(min(xs_all), 1e-9) >= 8:
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs_all, [f"{x:g}" for x in xs_all], fontsize=7)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("concurrent users" if closed else "requests / s (offered)", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_ylim(bottom=0)
        for term in slo_terms:  # keep the threshold in view even when every model is far below it
            if term.metric in keys:
                ax.set_ylim(top=max(ax.get_ylim()[1], 1.15 * term.limit * scale))
        ax.grid(color="#e3e3e3")
        ax.tick_params(labelsize=7)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    return _render(fig, "Latency, time to first token, throughput and error rate against load, all models")


def ttft_distribution_chart(
    ttfts: dict[tuple, dict[str, list[float]]], models: list[str], closed: bool, palette: list[str] | None = None
) -> Chart:
    """Empirical CDF of TTFT per model, one panel per load level (up to six levels)."""
    levels = sorted(ttfts, key=lambda lv: (lv[0] or 0, lv[1] or 0))
    if len(levels) > 6:
        picks = np.linspace(0, len(levels) - 1, 6).round().astype(int)
        levels = [levels[i] for i in sorted(set(picks))]
    cols = min(3, max(1, len(levels)))
    rows = -(-len(levels) // cols) if levels else 1
    fig = _figure(3.4 * cols, 2.5 * rows + 0.5)
    axes = list(np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).flat)
    for ax, level in zip(axes, levels):
        for model in models:
            values = np.sort(np.asarray(ttfts[level].get(model, ()), dtype=float))
            if len(values) == 0:
                continue
            colour, _ = style(palette_order(models, palette).index(model))
            ax.step(
                values, np.arange(1, len(values) + 1) / len(values), where="post", color=colour, label=_label(model, 28)
            )
        ax.axhline(0.99, color="#999999", linewidth=0.8, linestyle=":")
        ax.set_title(f"{level[0]} users" if closed else f"{level[1]:g} req/s", fontsize=9)
        ax.set_xlabel("TTFT (s)", fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.grid(color="#e3e3e3")
        ax.tick_params(labelsize=7)
    for ax in axes[len(levels) :]:
        ax.set_visible(False)
    first = fig.axes[0]
    handles, labels = first.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    fig.suptitle("Time to first token: share of requests at or below (dotted: 99%)", fontsize=10)
    return _render(fig, "Distribution of time to first token per model at each load level")
