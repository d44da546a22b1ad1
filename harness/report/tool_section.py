"""The run page's tool-call section: outcome classes per model x tool suite (a stacked bar chart and a
table with pass@1 and pass^k), shown only when the run has tool suites."""

from __future__ import annotations

from pathlib import Path

from harness.providers.text_calls import OUTCOMES

# Outcome colours: a call in Okabe-Ito blue, failures in distinct warm or grey tones.
_COLOURS = {
    "call": "#0072B2",
    "no_call": "#999999",
    "bad_arguments": "#D55E00",
    "text_call": "#E69F00",
    "error": "#CC79A7",
}


def outcome_chart(rows: list[tuple[str, dict[str, int]]]):
    """Stacked horizontal bars: the share of samples in each outcome class, one bar per model x suite."""

    from harness.report import charts

    fig = charts._figure(6.4, 1.4 + 0.45 * max(1, len(rows)))
    ax = fig.add_subplot()
    for index, (_, counts) in enumerate(rows):
        total = sum(counts.values()) or 1
        left = 0.0
        for outcome in OUTCOMES:
            share = counts.get(outcome, 0) / total
            if share:
                ax.barh(index, share, left=left, color=_COLOURS[outcome])
                left += share
    ax.set_yticks(range(len(rows)), [charts._label(label, 40) for label, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("Share of samples")
    handles = [__import__("matplotlib.patches", fromlist=["Patch"]).Patch(color=_COLOURS[o], label=o) for o in OUTCOMES]
    ax.legend(handles=handles, fontsize=7, ncols=len(OUTCOMES), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    return charts._render(fig, "Tool-call outcome classes per model and suite")


def tool_context(summary, site: Path, chart_ctx) -> dict | None:
    """Rows and chart for run.html.j2's tool section; None when no cell has tool outcomes or pass^k."""
    cells = [c for c in summary.cells if c.tool_outcomes or c.pass_hat_k]
    if not cells:
        return None
    rows = []
    for c in cells:
        counts = dict(c.tool_outcomes)
        hat = c.pass_hat_k[-1] if len(c.pass_hat_k) > 1 else None
        rows.append(
            dict(
                model=c.model,
                suite=c.suite,
                n=f"{c.n_samples:,}",
                counts=[f"{counts.get(k, 0):,}" for k in OUTCOMES],
                pass1=f"{100 * c.mean:.1f}%",
                pass_hat=f"k={hat[0]}: {100 * hat[1]:.1f}%" if hat else "—",
                turns="—" if c.turns_per_task != c.turns_per_task else f"{c.turns_per_task:.2f}",
                per_turn="—" if c.seconds_per_turn != c.seconds_per_turn else f"{c.seconds_per_turn:.2f} s",
            )
        )
    chart = None
    with_counts = [(f"{c.model} · {c.suite}", dict(c.tool_outcomes)) for c in cells if c.tool_outcomes]
    if with_counts:
        chart = chart_ctx(outcome_chart(with_counts), site / "charts" / "tool_outcomes.png", "charts/tool_outcomes.png")
    return dict(rows=rows, outcomes=OUTCOMES, chart=chart)
