"""Charts of the traffic page: win/tie/loss against the incumbent per candidate, and a confusion matrix."""

from __future__ import annotations

from harness.report.charts import OKABE_ITO, Chart, _figure, _label, _render


def win_tie_loss_chart(rows: list[tuple[str, int, int, int, float, float, float]]) -> Chart:
    """rows: (label, wins, ties, losses, win rate, lo, hi). Stacked shares, the win rate and its interval on top."""
    fig = _figure(9.0, 1.2 + 0.45 * len(rows))
    ax = fig.add_subplot()
    for y, (_name, w, t, loss, rate, lo, hi) in enumerate(rows):
        n = max(w + t + loss, 1)
        left = 0.0
        for share, colour, name in (
            (w / n, OKABE_ITO[2], "win"),
            (t / n, "#BBBBBB", "tie"),
            (loss / n, OKABE_ITO[3], "loss"),
        ):
            ax.barh(y, share, left=left, color=colour, label=name if y == 0 else None, height=0.6)
            left += share
        if lo == lo and hi == hi:
            ax.errorbar(rate, y, xerr=[[rate - lo], [hi - rate]], fmt="o", color="black", capsize=3, markersize=4)
    ax.axvline(0.5, color="black", linewidth=0.8, linestyle=":")
    ax.set_yticks(range(len(rows)), [_label(r[0]) for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of pairs (dot: win rate, a tie counting half, with its 95% interval)")
    ax.legend(loc="lower right", ncols=3, fontsize="small", frameon=False, bbox_to_anchor=(1, 1))
    alt = "; ".join(f"{r[0]}: {r[1]} wins, {r[2]} ties, {r[3]} losses, win rate {100 * r[4]:.1f}%" for r in rows)
    return _render(fig, "Win, tie and loss against the incumbent. " + alt)


def confusion_chart(title: str, labels: list[str], matrix: list[list[int]]) -> Chart:
    """A heat map of counts, gold labels down, predicted across; each cell shows its count."""
    k = len(labels)
    side = min(9.0, 2.2 + 0.7 * k)
    fig = _figure(side + 1.2, side)
    ax = fig.add_subplot()
    peak = max((v for row in matrix for v in row), default=0) or 1
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=peak)
    for i in range(k):
        for j in range(k):
            v = matrix[i][j]
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > peak / 2 else "black")
    ax.set_xticks(range(k), [_label(x, 18) for x in labels], rotation=30, ha="right")
    ax.set_yticks(range(k), [_label(x, 18) for x in labels])
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(_label(title, 60), fontsize="medium")
    correct = sum(matrix[i][i] for i in range(k))
    total = sum(map(sum, matrix))
    return _render(fig, f"Confusion matrix of {title}: {correct} of {total} on the diagonal (correct).")
