"""Print tool-call outcome classes and pass^k per model and suite (after the run summary)."""

from __future__ import annotations

from harness.providers.text_calls import OUTCOMES


def print_tool_table(summary, console) -> None:
    """One row per model x tool suite: samples per outcome class, pass@1 and pass^k; nothing without tool suites."""
    from rich.table import Table

    cells = [c for c in summary.cells if c.tool_outcomes or c.pass_hat_k]
    if not cells:
        return
    table = Table(title="tool calls: outcome of each sample, and pass^k (every one of k tries succeeds)")
    for col in ("model", "suite", "n", *OUTCOMES, "pass@1 %", "pass^k %", "turns/task", "s/turn"):
        table.add_column(col, justify="left" if col in ("model", "suite") else "right")
    for c in cells:
        counts = dict(c.tool_outcomes)
        hat = f"k={c.pass_hat_k[-1][0]}: {100 * c.pass_hat_k[-1][1]:.1f}" if len(c.pass_hat_k) > 1 else "—"
        table.add_row(
            c.model,
            c.suite,
            str(c.n_samples),
            *(str(counts.get(k, 0)) for k in OUTCOMES),
            f"{100 * c.mean:.1f}",
            hat,
            "—" if c.turns_per_task != c.turns_per_task else f"{c.turns_per_task:.2f}",
            "—" if c.seconds_per_turn != c.seconds_per_turn else f"{c.seconds_per_turn:.2f}",
        )
    console.print(table)
