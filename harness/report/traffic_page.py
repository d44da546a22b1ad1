"""The run's traffic page: candidates against the incumbent (pairwise) and classification results."""

from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessError
from harness.records import money
from harness.store import Store


def _pct(x: float) -> str:
    return "—" if x is None or x != x else f"{100 * x:.1f}%"


def write_traffic_page(store: Store, renderer, site: Path, run_id: str, chart_ctx) -> str | None:
    """Write traffic.html for a run with pairwise or label suites; its href, or None when there is none."""
    from harness.report import traffic_charts
    from harness.traffic.labels import label_results
    from harness.traffic.pairwise import pairwise_report

    graders = {s.grader for s in store.run_suites(run_id)}
    if not graders & {"pairwise", "label"}:
        return None
    pairwise = None
    if "pairwise" in graders:
        try:
            report = pairwise_report(store, run_id)
        except HarnessError:
            report = None
        if report is not None and report.results:
            rows = [
                dict(
                    model=r.model,
                    suite=r.suite,
                    n=r.n,
                    wtl=f"{r.wins} / {r.ties} / {r.losses}",
                    win=_pct(r.win_rate),
                    ci=f"{_pct(r.win_rate_lo)} – {_pct(r.win_rate_hi)}",
                    lc=_pct(r.lc_win_rate),
                    flips=_pct(r.order_flips),
                    bt="—" if r.bt is None else f"{r.bt[0]:+.2f} [{r.bt[1]:+.2f}, {r.bt[2]:+.2f}]",
                    unjudged=r.unjudged + r.errors,
                    cost=money(r.judge_cost),
                )
                for r in report.results
            ]
            chart = traffic_charts.win_tie_loss_chart(
                [
                    (f"{r.model} ({r.suite})", r.wins, r.ties, r.losses, r.win_rate, r.win_rate_lo, r.win_rate_hi)
                    for r in report.results
                ]
            )
            pairwise = dict(
                incumbent=report.incumbent,
                rows=rows,
                chart=chart_ctx(chart, site / "charts" / "pairwise.png", "charts/pairwise.png"),
                judge_costs=[(j, money(c)) for j, c in sorted(report.judge_costs.items())],
                judge_total=money(sum(report.judge_costs.values())),
                agreement=[
                    dict(
                        suite=a.suite,
                        first=a.first,
                        second=a.second,
                        n=a.n,
                        agree=_pct(a.agreement),
                        kappa="—" if a.kappa != a.kappa else f"{a.kappa:.2f}",
                    )
                    for a in report.agreement
                ],
                warnings=report.warnings,
            )
    classes = []
    if "label" in graders:
        _, results = label_results(store, run_id)
        for i, r in enumerate(results):
            m = r.metrics
            chart = traffic_charts.confusion_chart(
                f"{r.model} on {r.suite}", list(m.labels), [list(row) for row in m.matrix]
            )
            classes.append(
                dict(
                    model=r.model,
                    suite=r.suite,
                    n=m.n,
                    accuracy=_pct(m.accuracy),
                    macro_f1=_pct(m.macro_f1),
                    json="—" if not r.json_requests else f"{r.json_valid} / {r.json_requests}",
                    errors=r.errors,
                    cost=("≈" if r.cost_estimated else "") + money(r.cost_per_1000),
                    per_class=[
                        dict(
                            label=c,
                            precision=_pct(m.precision[c]),
                            recall=_pct(m.recall[c]),
                            f1=_pct(m.f1[c]),
                            support=m.support[c],
                        )
                        for c in m.precision
                    ],
                    labels=list(m.labels),
                    matrix=[dict(label=lab, counts=list(row)) for lab, row in zip(m.labels, m.matrix)],
                    chart=chart_ctx(chart, site / "charts" / f"confusion-{i}.png", f"charts/confusion-{i}.png"),
                )
            )
    run = store.run(run_id)
    renderer.write(
        "traffic.html.j2",
        site / "traffic.html",
        root="../",
        run=dict(id=run.id, plan=run.plan_name),
        pairwise=pairwise,
        classes=classes,
    )
    return "traffic.html"
