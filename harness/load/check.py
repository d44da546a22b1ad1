"""`harness check --load`: did a model's p99 latency (or TTFT) get significantly worse at a stage?

Each model's stage is compared with the same model at the same concurrency (or rate) in the
previous finished load run of the plan. The test fits percentiles: a bootstrap interval of
p99(new) - p99(old) from the stored per-request times. A regression is an interval whose lower
end lies above `margin` (default 5%) of the old p99: significant, and large enough to matter (a
server with steady latencies gives so narrow an interval that a 1 ms wobble would otherwise
count). The intervals are Bonferroni-widened over every comparison made, so the chance of any
false alarm in one check stays at most alpha.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.load.stats import p99_change
from harness.store import Store
from harness.store import loads as results

METRICS = ("latency", "ttft")


@dataclass(frozen=True)
class StageComparison:
    model: str
    concurrency: int | None
    rate: float | None
    metric: str  # latency | ttft
    old: float
    new: float
    diff: float
    lo: float
    hi: float
    n_old: int
    n_new: int
    regression: bool


@dataclass
class LoadCheck:
    run: results.LoadRunInfo
    previous: results.LoadRunInfo | None
    alpha: float
    comparisons: list[StageComparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # A stage in which no request was answered, or a newer load run that failed: the model is not
    # slower but unavailable, which no p99 comparison can show (there are no times to compare).
    alarms: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[StageComparison]:
        return [c for c in self.comparisons if c.regression]


def _level(stats: dict) -> tuple:
    return (stats.get("concurrency"), stats.get("rate"))


def check_load(
    store: Store,
    run_id: str | None,
    *,
    against: str | None = None,
    alpha: float = 0.05,
    plan_name: str | None = None,
    margin: float = 0.05,
) -> LoadCheck:
    run = results.resolve_load_run(store, run_id, plan_name)
    alarms = _availability_alarms(store, run, latest=run_id is None)
    if against:
        previous = results.resolve_load_run(store, against)
    else:
        earlier = [
            r
            for r in results.load_runs(store, run.plan_name)
            if r.status == "finished" and (r.started_at, r.id) < (run.started_at, run.id)
        ]
        previous = earlier[-1] if earlier else None
    check = LoadCheck(run, previous, alpha, alarms=alarms)
    if previous is None:
        check.notes.append(f"no earlier finished load run of plan {run.plan_name!r}: nothing to compare")
        return check
    old_stages = {(s.model, _level(s.stats)): s for s in results.stages(store, previous.id)}
    pairs = []
    for s in results.stages(store, run.id):
        old = old_stages.get((s.model, _level(s.stats)))
        if old is None:
            continue
        pairs.append((s, old))
    if not pairs:
        check.notes.append(f"load runs {previous.id} and {run.id} share no (model, stage) to compare")
        return check
    confidence = 1 - alpha / (len(pairs) * len(METRICS))
    for new, old in pairs:
        new_rows = results.stage_requests(store, new.id)
        old_rows = results.stage_requests(store, old.id)
        for metric in METRICS:
            a = [r[metric] for r in old_rows if not r["error"] and r[metric] is not None]
            b = [r[metric] for r in new_rows if not r["error"] and r[metric] is not None]
            change = p99_change(a, b, confidence=confidence)
            if change is None:
                check.notes.append(
                    f"{new.model} {_label(new.stats)}: too few requests for a {metric} p99 test "
                    f"({len(a)} and {len(b)}; 20 each needed)"
                )
                continue
            check.comparisons.append(
                StageComparison(
                    new.model,
                    new.stats.get("concurrency"),
                    new.stats.get("rate"),
                    metric,
                    change.old,
                    change.new,
                    change.diff,
                    change.lo,
                    change.hi,
                    len(a),
                    len(b),
                    change.significant and change.lo > margin * change.old,
                )
            )
    return check


def _availability_alarms(store: Store, run: results.LoadRunInfo, *, latest: bool) -> list[str]:
    alarms = []
    if latest:
        newer = [r for r in results.load_runs(store, run.plan_name) if (r.started_at, r.id) > (run.started_at, run.id)]
        for r in newer:
            if r.status == "failed":
                why = "; ".join(m.note for m in results.models(store, r.id) if m.note) or "no stage completed"
                alarms.append(f"load run {r.id} (newer than {run.id}) failed: {why}")
    for s in results.stages(store, run.id):
        if s.stats.get("requests") and not s.stats.get("ok"):
            kinds = ", ".join(f"{k} {v}" for k, v in (s.stats.get("errors_by_kind") or {}).items())
            alarms.append(
                f"{s.model} {_label(s.stats)}: every one of {s.stats['requests']} requests failed ({kinds or 'errors'})"
            )
    return alarms


def _label(stats: dict) -> str:
    return f"c={stats['concurrency']}" if stats.get("concurrency") is not None else f"rate={stats.get('rate'):g}/s"


def to_json(check: LoadCheck) -> dict:
    def info(r):
        return (
            None
            if r is None
            else {
                "run": r.id,
                "plan": r.plan_name,
                "tag": r.tag,
                "status": r.status,
                "started": r.started_at.isoformat(),
            }
        )

    rows = [c.__dict__ | {"metric": f"{c.metric}_p99"} for c in check.comparisons]
    return {
        "run": info(check.run),
        "previous": info(check.previous),
        "alpha": check.alpha,
        "method": "bootstrap percentile interval of p99(new) - p99(old), Bonferroni over comparisons; "
        "a regression when its lower end exceeds 5% of the old p99",
        "ok": not check.regressions and not check.alarms,
        "alarms": check.alarms,
        "comparisons": rows,
        "regressions": [r for r in rows if r["regression"]],
        "notes": check.notes,
    }


def format_text(check: LoadCheck) -> str:
    shown = [f"ALARM: {a}" for a in check.alarms]
    if check.previous is None:
        return "\n".join(shown + check.notes)
    lines = [
        f"load run {check.run.id} against {check.previous.id} (plan {check.run.plan_name}): "
        f"{len(check.regressions)} p99 regression(s) in {len(check.comparisons)} comparisons"
    ]
    for c in check.comparisons:
        level = f"c={c.concurrency}" if c.concurrency is not None else f"rate={c.rate:g}/s"
        mark = "▼ slower" if c.regression else ""
        lines.append(
            f"  {c.model:<20} {level:<12} {c.metric + '_p99':<12} {c.old:.3f}s -> {c.new:.3f}s  "
            f"diff {c.diff:+.3f}s [{c.lo:+.3f}, {c.hi:+.3f}]  {mark}"
        )
    lines += [f"note: {n}" for n in check.notes]
    return "\n".join(shown + lines)
