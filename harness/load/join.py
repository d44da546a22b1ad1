"""Join a quality run with a load run of the same plan: what each model scores, and how it holds up
at a given number of concurrent users ("at 128 users: p99 3.1 s, error rate 0.2%, 86% on math-word").

Models are matched by their plan name; a load stage is the one at exactly the asked level.
With an SLO, the recommendation per suite is re-chosen among the models that also meet it there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from harness.errors import HarnessError
from harness.load.profile import Slo
from harness.store import Store
from harness.store import loads as results


@dataclass(frozen=True)
class LoadView:
    run: results.LoadRunInfo
    stages: dict[str, list[dict]]  # model -> its stages' statistics, by rising level
    capacity: dict[str, results.StoredModel]


def load_view(store: Store, plan_name: str, load_run: str | None = None) -> LoadView | None:
    """The named load run, or the plan's latest finished one; None when the plan has none."""
    if load_run is not None:
        run = results.resolve_load_run(
            store, None if load_run == "latest" else load_run, plan_name if load_run == "latest" else None
        )
    else:
        runs = [r for r in results.load_runs(store, plan_name) if r.status == "finished"]
        if not runs:
            return None
        run = runs[-1]
    per_model: dict[str, list[dict]] = {}
    for s in results.stages(store, run.id):
        per_model.setdefault(s.model, []).append(s.stats)
    for stats in per_model.values():
        stats.sort(key=lambda st: (st.get("concurrency") or 0, st.get("rate") or 0))
    return LoadView(run, per_model, {m.model: m for m in results.models(store, run.id)})


def levels(view: LoadView) -> list[tuple]:
    """Every (concurrency, rate) some model was measured at, rising."""
    found = {(st.get("concurrency"), st.get("rate")) for stats in view.stages.values() for st in stats}
    return sorted(found, key=lambda lv: (lv[0] or 0, lv[1] or 0))


def stage_at(view: LoadView, model: str, level: tuple) -> dict | None:
    for st in view.stages.get(model, ()):
        if (st.get("concurrency"), st.get("rate")) == tuple(level):
            return st
    return None


def level_text(level: tuple) -> str:
    concurrency, rate = level
    return f"{concurrency} concurrent users" if concurrency is not None else f"{rate:g} requests/s"


def sentence(stats: dict | None, level: tuple, scores: dict[str, float]) -> str:
    """One line a person reads: at this load, this fast, this available, this good."""
    if stats is None:
        return f"not measured at {level_text(level)}"
    parts = [f"at {level_text(level)}"]
    p99 = stats.get("latency_p99")
    parts.append("p99 —" if p99 is None else f"p99 {p99:.2f} s")
    err = stats.get("error_rate")
    parts.append("error rate —" if err is None else f"error rate {100 * err:.1f}%")
    parts += [f"{100 * v:.0f}% on {suite}" for suite, v in scores.items() if v == v]
    return ", ".join(parts)


def parse_level(text: str) -> tuple:
    """`128` (concurrent users) or `5/s` (a request rate) -> (concurrency, rate)."""
    t = text.strip()
    try:
        if t.endswith("/s"):
            return (None, float(t[:-2]))
        return (int(t), None)
    except ValueError:
        raise HarnessError(f"--at {text!r}: give a concurrency (e.g. 128) or a rate (e.g. 5/s)") from None


def recommend_under_load(rec, view: LoadView, level: tuple, slo: Slo | None, recompute=None) -> tuple[object, dict]:
    """The recommendation with each candidate's figures at `level`, and those figures.

    With an SLO, a model that misses it there (or was not measured there) may not be routed to:
    `recompute(excluded)` (model -> why) chooses the best and the route again without it, so the
    best, the non-inferiority tests and the reasons all speak of the models that remain."""
    details: dict = {
        "load_run": view.run.id,
        "level": {"concurrency": level[0], "rate": level[1]},
        "slo": slo.text if slo else None,
        "models": {},
    }
    for model in {c.model for s in rec.suites for c in s.candidates}:
        st = stage_at(view, model, level)
        entry = (
            None
            if st is None
            else {
                k: st.get(k)
                for k in (
                    "requests",
                    "ttft_p50",
                    "ttft_p99",
                    "latency_p50",
                    "latency_p99",
                    "error_rate",
                    "requests_per_s",
                    "output_tokens_per_s",
                )
            }
        )
        if entry is not None and slo is not None:
            entry["slo_failures"] = slo.failures(st)
            if st.get("stopped_early"):
                entry["slo_failures"].append("the stage was stopped early")
            entry["meets_slo"] = not entry["slo_failures"]
        details["models"][model] = entry
    if slo is None:
        return rec, details
    excluded = slo_exclusions(details, level)
    if recompute is not None:
        return recompute(excluded), details
    # Without a way to recompute, only drop routes to excluded models (never route to one).
    suites = [
        s
        if s.model not in excluded
        else replace(s, model=None, reason=f"no route: {s.model} {excluded[s.model]}; rerun with the SLO")
        for s in rec.suites
    ]
    return replace(rec, suites=suites), details


def slo_exclusions(details: dict, level: tuple) -> dict[str, str]:
    """model -> why it may not take traffic under the SLO at this level ("misses the SLO ...")."""
    out = {}
    for model, entry in details["models"].items():
        if entry is None:
            out[model] = f"misses the SLO: not measured at {level_text(level)} in load run {details['load_run']}"
        elif not entry.get("meets_slo"):
            out[model] = f"misses the SLO at {level_text(level)}: " + "; ".join(entry.get("slo_failures") or ())
    return out
