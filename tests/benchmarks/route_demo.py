"""The issue-23 scenario end to end against the loopback fake server, in a temporary folder.

A cloud architect's week: four models behind one gateway (different prices, one flaky), two bundled
suites plus a 10-item intent suite of their own, a second week with a changed price and a silently
swapped served model, a load run of the same plan, then `harness check`, `harness recommend`,
`harness compare` and the HTML report. Prints what each says and where the pages are; with
--screenshots, also PNGs of the run, load, trend and index pages from headless Chromium at 1,400 px.

    python tests/benchmarks/route_demo.py [--out DIR] [--screenshots]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from support.fakeserver import FakeOpenAIServer, ServerState  # noqa: E402
from support.plans import run_plan  # noqa: E402
from support.weekly import WeeklyResponder, item_ids, write_plan  # noqa: E402

INTENTS = ["greeting", "refund", "billing", "cancel", "shipping"]


def harness(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=900, env=env
    )


def _own_suite(root: Path) -> Path:
    """A user's own 10-item intent-classification suite (exact-match grader) under ROOT/suites."""
    folder = root / "suites" / "intent"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "suite.yaml").write_text(
        "family: classification\ndescription: Customer-message intent, one word\n"
        "grader: exact\ntemplate: prompt.j2\nreference_field: intent\nid_field: id\n"
        "generation: {max_tokens: 8}\n",
        encoding="utf-8",
    )
    (folder / "prompt.j2").write_text(
        "Classify the intent of this message as one of greeting, refund, billing, cancel, shipping.\n"
        "Answer with the word only.\n\n{{ text }}\n",
        encoding="utf-8",
    )
    with open(folder / "items.jsonl", "w", encoding="utf-8") as fh:
        for i in range(10):
            intent = INTENTS[i % len(INTENTS)]
            fh.write(json.dumps({"id": f"intent/{i}", "text": f"message {i} about {intent}", "intent": intent}) + "\n")
    return root / "suites"


def _week_back(db: str, run_id: str) -> None:
    from sqlalchemy.orm import Session

    from harness.store import RunRow, Store

    store = Store(db)
    with Session(store.engine) as s, s.begin():
        row = s.get(RunRow, run_id)
        row.started_at -= timedelta(days=7)
        row.finished_at -= timedelta(days=7)
    store.close()


def _responder(base: WeeklyResponder, wrong_intent: dict[str, set[str]]):
    """The weekly responder for the bundled suites; the intent suite answered from its items."""
    by_text = {}
    for i in range(10):
        by_text[f"message {i} about {INTENTS[i % len(INTENTS)]}"] = (f"intent/{i}", INTENTS[i % len(INTENTS)])

    def answer(model: str, messages: list[dict]) -> str:
        text = messages[-1]["content"] if isinstance(messages[-1]["content"], str) else ""
        for key, (item, intent) in by_text.items():
            if key in text:
                return "other" if item in wrong_intent.get(model, set()) else intent
        return base(model, messages)

    return answer


def screenshot(page: Path, png: Path, height: int = 1000) -> None:
    """Headless Chromium at 1,400 px wide: what a reader sees first."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("no chromium: screenshots skipped")
        return
    profile = tempfile.mkdtemp(prefix="route-demo-chromium-")
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size=1400,{height}",
            f"--screenshot={png}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    shutil.rmtree(profile, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="folder for the database, plan and reports (default: a new temporary folder)")
    ap.add_argument("--screenshots", action="store_true", help="PNGs of the pages (headless Chromium, 1,400 px)")
    args = ap.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="harness-route-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{root / 'harness.db'}"
    reports = root / "reports"
    os.environ["HARNESS_SUITES_PATH"] = str(_own_suite(root))
    env = dict(os.environ)

    base = WeeklyResponder(suites=("math-word", "zh-mcq"))
    math, zh = item_ids("math-word", 20), item_ids("zh-mcq", 20)
    base.wrong = {"qwen3-8b": set(math[:8]), "deepseek-v4-flash": set(zh[:3])}
    wrong_intent: dict[str, set[str]] = {}
    state = ServerState(responder=_responder(base, wrong_intent))
    models = {
        "deepseek-v4-flash": {"price": {"output": 0.25}},
        "qwen3-8b": {"price": {"output": 0.01}},
        "glm-5": {"price": {"output": 1.92}},
        "kimi-k2.5": {"price": {"output": 3.00}, "max_attempts": 1},
    }
    suites = [{"math-word": {"limit": 20}}, {"zh-mcq": {"limit": 20}}, "intent"]
    # kimi is the flaky one: 1 request in 20 fails with a 500.
    state.faults = replace(state.faults, error_500=0.05, fault_models=frozenset({"kimi-k2.5"}), seed=1)
    with FakeOpenAIServer(state) as server:
        plan = write_plan(root / "gateway.yaml", server, models, name="gateway", suites=suites)
        week1 = run_plan(plan, db, tag="weekly")
        # Week 2: glm-5 gets the intent suite mostly wrong, flash is served by another model, kimi's price rises.
        wrong_intent["glm-5"] = {f"intent/{i}" for i in range(8)}
        state.served_model = lambda m: {"deepseek-v4-flash": "deepseek-v4-flash-lite"}.get(m, m)
        models["kimi-k2.5"] = {"price": {"output": 3.50}, "max_attempts": 1}
        plan = write_plan(root / "gateway.yaml", server, models, name="gateway", suites=suites)
        week2 = run_plan(plan, db, tag="weekly")
        load = harness(
            "load", str(plan), "--db", db, "--concurrency", "1,4,8", "--requests", "16",
            "--slo", "latency_p99<=0.5s,error_rate<=1%", env=env,
        )  # fmt: skip
        print(load.stdout[-1500:] or load.stderr[-1500:])
    _week_back(db, week1)

    print(f"database: {db}\nruns: week 1 {week1}, week 2 {week2}\n")
    for cmd in (
        ("check", week2, "--db", db),
        ("recommend", week2, "--db", db),
        ("recommend", week2, "--db", db, "--at", "8", "--slo", "latency_p99<=0.5s,error_rate<=1%"),
        ("compare", week2, "--db", db),
    ):
        proc = harness(*cmd, env=env)
        print(f"$ harness {' '.join(cmd)}   # exit {proc.returncode}\n{proc.stdout.rstrip()}{proc.stderr.rstrip()}\n")
    rep = harness("report", week1, week2, "--db", db, "--out", str(reports), env=env)
    print(rep.stdout.rstrip() or rep.stderr.rstrip())
    pages = {
        "run": reports / week2 / "index.html",
        "index": reports / "index.html",
        "trend": next(iter(sorted((reports / "trends").glob("*.html"))), None),
        "load": next(iter(sorted((reports / "load").glob("*.html"))), None) if (reports / "load").is_dir() else None,
    }
    for name, page in pages.items():
        print(f"{name} page: {page}")
        if args.screenshots and page is not None:
            png = root / f"{name}.png"
            screenshot(page, png)
            print(f"  screenshot: {png}")


if __name__ == "__main__":
    main()
