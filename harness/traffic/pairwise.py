"""Pairwise results of a run, read from the store: win/tie/loss against the incumbent per candidate and suite,
length-controlled win rate, Bradley-Terry strengths, judge agreement, judge cost and self-preference warnings."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from harness.errors import HarnessError
from harness.graders.pairwise import MARK, OUTCOME_SCORE
from harness.store import Store
from harness.traffic import stats

LOGGED_INCUMBENT = "incumbent (logged)"


@dataclass(frozen=True)
class PairwiseResult:
    model: str
    suite: str
    n: int  # pairs judged (item x judge, each in both orders)
    wins: int
    ties: int
    losses: int
    win_rate: float
    win_rate_lo: float
    win_rate_hi: float
    lc_win_rate: float
    order_flips: float
    items: int  # items with at least one verdict
    unjudged: int  # samples without any verdict (the incumbent's answer missing, no readable verdict)
    errors: int  # samples whose own request failed
    judge_cost: float
    judge_requests: int
    bt: tuple[float, float, float] | None = None  # Bradley-Terry strength vs the incumbent (0), and interval


@dataclass(frozen=True)
class Agreement:
    suite: str
    first: str
    second: str  # a judge, or "human"
    n: int
    agreement: float
    kappa: float


@dataclass
class PairwiseReport:
    run: str
    incumbent: str
    results: list[PairwiseResult] = field(default_factory=list)
    agreement: list[Agreement] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    judge_costs: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        from harness.analysis.compare import json_safe

        keys = ("model", "suite", "n", "wins", "ties", "losses", "win_rate", "win_rate_lo", "win_rate_hi")
        return json_safe(
            {
                "run": self.run,
                "results": [
                    {
                        **{k: getattr(r, k) for k in keys},
                        "lc_win_rate": r.lc_win_rate,
                        "order_flips": r.order_flips,
                        "items": r.items,
                        "unjudged": r.unjudged,
                        "errors": r.errors,
                        "judge_cost_usd": r.judge_cost,
                        "bradley_terry": None if r.bt is None else dict(zip(("strength", "lo", "hi"), r.bt)),
                    }
                    for r in self.results
                ],
                "incumbent": self.incumbent,
                "agreement": [a.__dict__ for a in self.agreement],
                "judge_cost_usd": self.judge_costs,
                "warnings": self.warnings,
            }
        )


def family(model_name: str) -> str:
    """A model's family from its API name: the first word of its last path part ("Qwen/Qwen3-8B" -> "qwen")."""
    last = model_name.lower().rsplit("/", 1)[-1]
    last = re.sub(r"^(meta-|models-)", "", last)
    m = re.match(r"[a-z]+", last)
    return m.group(0) if m else last


def _verdict_label(score: float) -> str:
    return "win" if score > 0.5 else "loss" if score < 0.5 else "tie"


def read_human(path: str | Path) -> dict[tuple[str, str], str]:
    """(model, item) -> "win" | "tie" | "loss" from a JSONL file of {item, model, verdict}."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"--human {path}: file not found (JSONL lines of {{item, model, verdict: win|tie|loss}})")
    out = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            verdict = str(row["verdict"]).lower()
            if verdict not in OUTCOME_SCORE:
                raise ValueError
            out[(str(row["model"]), str(row["item"]))] = verdict
        except (ValueError, KeyError, TypeError):
            raise HarnessError(
                f'{path}:{lineno}: expected {{"item": ID, "model": NAME, "verdict": "win"|"tie"|"loss"}}'
            ) from None
    return out


def pairwise_report(store: Store, run_id: str | None = None, *, human: str | Path | None = None) -> PairwiseReport:
    run_id = store.resolve_run(run_id)
    run = store.run(run_id)
    suites = [s.suite for s in store.run_suites(run_id) if s.grader == "pairwise"]
    if not suites:
        raise HarnessError(f"run {run_id} has no pairwise suite (grader: pairwise); nothing to show")
    plan = run.plan or {}
    incumbent = plan.get("incumbent") or LOGGED_INCUMBENT
    report = PairwiseReport(run=run_id, incumbent=incumbent)
    humans = read_human(human) if human else {}
    pairs: dict[tuple[str, str], list[dict]] = {}  # (model, suite) -> pair rows
    unjudged: dict[tuple[str, str], int] = {}
    errors: dict[tuple[str, str], int] = {}
    spent: dict[tuple[str, str], float] = {}  # judging cost per (model, suite)
    asked: dict[tuple[str, str], int] = {}  # judge requests sent per (model, suite)
    per_judge_item: dict[tuple[str, str, str], str] = {}  # (suite, model, item) per judge below
    judges_seen: set[str] = set()
    for suite in suites:
        for s in store.samples(run_id, suite=suite):
            if s.model == plan.get("incumbent"):
                continue
            key = (s.model, suite)
            pairs.setdefault(key, [])
            try:
                detail = json.loads(s.extracted) if s.extracted else None
            except ValueError:
                detail = None
            judged = isinstance(detail, dict) and MARK in detail
            for r in detail.get("judges", []) if judged else ():  # every call is paid for, verdict or not
                judges_seen.add(r["judge"])
                report.judge_costs[r["judge"]] = report.judge_costs.get(r["judge"], 0.0) + float(r.get("cost") or 0)
                spent[key] = spent.get(key, 0.0) + float(r.get("cost") or 0)
                asked[key] = asked.get(key, 0) + int(r.get("requests") or 0)
            if s.error:  # the candidate's request failed, or no comparison came back (stored as an error)
                errors[key] = errors.get(key, 0) + 1
                continue
            if not judged:
                unjudged[key] = unjudged.get(key, 0) + 1
                continue
            rows = [r for r in detail.get("judges", []) if r.get("outcome")]
            if not rows:
                unjudged[key] = unjudged.get(key, 0) + 1
            diff = float(detail.get("len_candidate", 0)) - float(detail.get("len_incumbent", 0))
            for r in rows:
                first = {"A": "win", "B": "loss", "TIE": "tie"}[r["ab"]]
                second = {"B": "win", "A": "loss", "TIE": "tie"}[r["ba"]]
                pairs[key].append(
                    {
                        "item": s.item_id,
                        "judge": r["judge"],
                        "score": OUTCOME_SCORE[r["outcome"]],
                        "flip": first != second,
                        "diff": diff,
                        "cost": float(r.get("cost") or 0),
                        "requests": int(r.get("requests") or 0),
                    }
                )
                per_judge_item[(suite, s.model, s.item_id, r["judge"])] = r["outcome"]  # type: ignore[index]
    for (model, suite), rows in sorted(pairs.items()):
        scores = [r["score"] for r in rows]
        wr = stats.win_rate(scores, [r["item"] for r in rows])
        items = {r["item"] for r in rows}
        report.results.append(
            PairwiseResult(
                model=model,
                suite=suite,
                n=wr.n,
                wins=wr.wins,
                ties=wr.ties,
                losses=wr.losses,
                win_rate=wr.rate,
                win_rate_lo=wr.lo,
                win_rate_hi=wr.hi,
                lc_win_rate=stats.length_controlled(scores, [r["diff"] for r in rows]),
                order_flips=(sum(r["flip"] for r in rows) / len(rows)) if rows else float("nan"),
                items=len(items),
                unjudged=unjudged.get((model, suite), 0),
                errors=errors.get((model, suite), 0),
                judge_cost=spent.get((model, suite), 0.0),
                judge_requests=asked.get((model, suite), 0),
            )
        )
    _bradley_terry(report, pairs, incumbent)
    _agreement(report, per_judge_item, sorted(judges_seen), humans)
    _self_preference(report, plan, store.run_models(run_id), sorted(judges_seen))
    return report


def _bradley_terry(report: PairwiseReport, pairs: dict, incumbent: str) -> None:
    by_suite: dict[str, list] = {}
    for (model, suite), rows in pairs.items():
        by_suite.setdefault(suite, []).extend((model, incumbent, r["score"], r["item"]) for r in rows)
    for suite, battles in by_suite.items():
        if len({b[0] for b in battles}) < 2:
            continue  # one candidate: its strength is the logit of its win rate, nothing more to say
        fitted = stats.bradley_terry_intervals(battles, incumbent)
        report.results = [
            r if r.suite != suite or r.model not in fitted else _with_bt(r, fitted[r.model]) for r in report.results
        ]


def _with_bt(r: PairwiseResult, bt) -> PairwiseResult:
    from dataclasses import replace

    return replace(r, bt=bt)


def _agreement(report: PairwiseReport, verdicts: dict, judges: list[str], humans: dict) -> None:
    suites = sorted({k[0] for k in verdicts})
    for suite in suites:
        for a, b in combinations(judges, 2):
            keys = [k[:3] for k in verdicts if k[0] == suite and k[3] == a and (*k[:3], b) in verdicts]
            if keys:
                x = [verdicts[(*k, a)] for k in keys]
                y = [verdicts[(*k, b)] for k in keys]
                report.agreement.append(
                    Agreement(
                        suite, a, b, len(keys), sum(p == q for p, q in zip(x, y)) / len(keys), stats.cohen_kappa(x, y)
                    )
                )
        if humans:
            for judge in judges:
                keys = [k for k in verdicts if k[0] == suite and k[3] == judge and (k[1], k[2]) in humans]
                if keys:
                    x = [verdicts[k] for k in keys]
                    y = [humans[(k[1], k[2])] for k in keys]
                    report.agreement.append(
                        Agreement(
                            suite,
                            judge,
                            "human",
                            len(keys),
                            sum(p == q for p, q in zip(x, y)) / len(keys),
                            stats.cohen_kappa(x, y),
                        )
                    )


def _self_preference(report: PairwiseReport, plan: dict, models, judges: list[str]) -> None:
    api = {j["name"]: j.get("model") or j["name"] for j in plan.get("judges") or []}
    for judge in judges:
        fam = family(api.get(judge, judge))
        for m in models:
            if family(m.api_model or m.model) == fam:
                report.warnings.append(
                    f"judge {judge} and candidate {m.model} are both of the {fam} family: a judge may prefer "
                    f"its own family's answers (self-preference); add a judge of another family"
                )
