"""Synthetic graded runs and `harness load` runs for the report tests and benchmark, written through the Store API."""

from __future__ import annotations

import json
import random
from datetime import datetime

from sqlalchemy.orm import Session

from harness.load.requests import RequestResult
from harness.load.stats import StageTarget, stage_stats
from harness.store import RunModelInfo, RunRow, RunSuiteInfo, SampleRecord, Store
from harness.store import loads as results

XSS_COMPLETION = (
    "<script>document.title='PWNED'</script><img src=x onerror=\"document.title='PWNED'\"> The answer is 42."
)

# model name -> (accuracy, price in, price out, latency scale s)
DEFAULT_MODELS = {
    "gpt-large": (0.82, 2.5, 10.0, 2.0),
    "small-7b": (0.64, 0.2, 0.6, 0.6),
    "mid-70b": (0.78, 0.9, 0.9, 1.2),
}
DEFAULT_SUITES = ("math-word", "zh-mcq")

# Names a hostile plan or dataset could supply: every page must show them as text.
EVIL_MODEL = "<img src=x onerror=\"document.title='PWNED'\">evil-model"
EVIL_SUITE = "suite\"><script>document.title='PWNED'</script>"
EVIL_PLAN = "plan<script>document.title='PWNED'</script>"
EVIL_MODELS = {
    "gpt-large": (0.85, 2.5, 10.0, 2.0),
    EVIL_MODEL: (0.55, 0.2, 0.6, 0.6),
}


def make_run(
    store: Store,
    *,
    plan_name: str = "nightly",
    models: dict | None = None,
    suites=DEFAULT_SUITES,
    n_items: int = 30,
    samples_per_item: int = 1,
    seed: int = 0,
    suite_hash_salt: str = "",
    started_at: datetime | None = None,
    payload: bool = False,
    groups: int = 0,
    long_prompt: int = 0,
    batch: int = 5000,
    status: str = "finished",
    tag: str = "",
) -> str:
    """One run of `plan_name` with every model on every suite; returns the run id."""
    rng = random.Random(seed)
    models = models or DEFAULT_MODELS
    run_id = store.start_run(
        plan_name=plan_name,
        plan_path=f"evals/{plan_name}.yaml",
        plan_fingerprint=f"fp-{plan_name}",
        plan={"name": plan_name},
        tag=tag,
    )
    store.record_models(run_id, [RunModelInfo(m, "openai", m, "", pi, po) for m, (_, pi, po, _) in models.items()])
    pad = " Consider every step carefully." * (long_prompt // 30 + 1) if long_prompt else ""
    for suite in suites:
        suite_hash = f"h-{suite}{suite_hash_salt}"
        store.record_suite(run_id, RunSuiteInfo(suite, suite_hash, "math", "numeric", n_items))
        prompts = []
        for i in range(n_items):
            msgs = [
                ["system", "Answer with one number."],
                ["user", f"Question {i} of {suite}: what is {i} + {i}?{pad[:long_prompt]}"],
            ]
            prompts.append((f"{suite}/{i}", json.dumps(msgs), str(2 * i)))
        store.record_prompts(suite_hash, prompts)
        pending: list[SampleRecord] = []
        for model, (acc, pi, po, lat) in models.items():
            for i in range(n_items):
                for k in range(samples_per_item):
                    ok = rng.random() < acc
                    err = "" if rng.random() > 0.02 else "HTTP 503: upstream overloaded"
                    completion = f"Let me add. {i} + {i} = {2 * i if ok else 2 * i + 1}. The answer is {2 * i if ok else 2 * i + 1}."
                    if payload and i == 0:
                        completion = XSS_COMPLETION
                    pt, ct = 40 + rng.randrange(40), 20 + rng.randrange(200)
                    pending.append(
                        SampleRecord(
                            run_id=run_id,
                            model=model,
                            suite=suite,
                            suite_hash=suite_hash,
                            item_id=f"{suite}/{i}",
                            item_group=f"g{i % groups}" if groups else "",
                            sample_index=k,
                            completion="" if err else completion,
                            reasoning="" if err else f"<b>thinking</b> about {i}+{i} step by step",
                            finish_reason="" if err else "stop",
                            prompt_tokens=pt,
                            completion_tokens=0 if err else ct,
                            reasoning_tokens=0,
                            latency_s=lat * (0.5 + rng.lognormvariate(0, 0.5)),
                            ttft_s=None if err else lat * 0.2 * (0.5 + rng.random()),
                            served_model=f"{model}-2025-01" if not payload else "<b>served</b>",
                            error=err,
                            attempts=1 if not err else 3,
                            cost_usd=0.0 if err else (pt * pi + ct * po) / 1e6,
                            score=1.0 if ok and not err else 0.0,
                            passed=bool(ok and not err),
                            grade_reason=("exact match" if ok else "expected <2i>, got other")
                            if not err
                            else "request failed",
                            extracted="" if err else str(2 * i if ok else 2 * i + 1),
                        )
                    )
                    if len(pending) >= batch:
                        store.save_samples(pending)
                        pending = []
        store.save_samples(pending)
    store.mark_run(run_id, status)
    if started_at is not None:
        with Session(store.engine) as s, s.begin():
            s.get(RunRow, run_id).started_at = started_at
    return run_id


# -- `harness load` results ---------------------------------------------------------------------

LOAD_PLAN = "load-join"  # the plan of make_load_run's runs


def _stage(model_speed: float, users: int, rng: random.Random) -> list[RequestResult]:
    """Requests of a server whose TTFT grows once more than 32 users share it."""
    out = []
    queue = max(0.0, users / 32 - 1)
    for i in range(120):
        ttft = model_speed * (1 + queue) * rng.uniform(0.8, 1.3)
        latency = ttft + 0.02 * 50 * rng.uniform(0.9, 1.1)
        error = "429" if rng.random() < 0.002 * users / 8 else ""
        out.append(
            RequestResult(
                sent_at=i * latency / users,
                latency=None if error else latency,
                ttft=None if error else ttft,
                output_tokens=None if error else 50,
                input_tokens=None if error else 200,
                itl=[] if error else [0.02] * 49,
                error=error,
                elapsed=latency,
            )
        )
    return out


def make_load_run(store: Store) -> str:
    rng = random.Random(4)
    run_id = results.start_load_run(
        store, plan_name=LOAD_PLAN, plan_path="evals/load.yaml", tag="", profile={"slo": {"text": "latency_p99<=3s"}}
    )
    for model, speed in (("fast-model", 0.3), (EVIL_MODEL, 0.8)):
        for index, users in enumerate((1, 8, 32, 128)):
            rs = _stage(speed, users, rng)
            stats = stage_stats(rs, StageTarget(users, None))
            results.save_stage(store, run_id, model, index, stats, rs, meets_slo=None, probe=False)
        results.save_model(store, run_id, model, model, capacity_concurrency=32 if speed < 0.5 else 8)
    results.finish_load_run(store, run_id)
    return run_id
