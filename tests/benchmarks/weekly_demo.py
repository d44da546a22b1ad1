"""The weekly routine end to end against the loopback fake server, in a temporary folder.

Week 1: four models of the weekly plan on two workloads (math-word, zh-mcq); its start time is then
set a week back. Week 2: glm-5 got worse at math, and the gateway quietly serves deepseek-v4-flash
under another name. Then the check
(`harness check`), the routing recommendation (`harness recommend`) and the report with its trend
page. Prints the paths and what the check and the recommendation say.

    python tests/benchmarks/weekly_demo.py [--out DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from support.fakeserver import FakeOpenAIServer, ServerState  # noqa: E402
from support.plans import run_plan  # noqa: E402
from support.weekly import WeeklyResponder, item_ids, write_plan  # noqa: E402

# Names and output prices from evals/weekly.yaml.
MODELS = {
    "deepseek-v4-flash": {"price": {"output": 0.25}},
    "qwen3-8b": {"price": {"output": 0.01}},
    "glm-5": {"price": {"output": 1.92}},
    "kimi-k2.5": {"price": {"output": 3.00}},
}
SUITES = [{"math-word": {"limit": 30}}, {"zh-mcq": {"limit": 30}}]


def harness(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=600)
    return proc


def _a_week_earlier(db: str, run_id: str) -> None:
    """Date week 1 back by seven days (it ran a second ago), so the trend chart shows two weeks."""
    from datetime import timedelta

    from sqlalchemy.orm import Session

    from harness.store import RunRow, Store

    store = Store(db)
    with Session(store.engine) as s, s.begin():
        row = s.get(RunRow, run_id)
        row.started_at -= timedelta(days=7)
        row.finished_at -= timedelta(days=7)
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="folder for the database, plan and reports (default: a new temporary folder)")
    args = ap.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="harness-weekly-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{root / 'harness.db'}"
    reports = root / "reports"

    responder = WeeklyResponder(suites=("math-word", "zh-mcq"))
    math, zh = item_ids("math-word", 30), item_ids("zh-mcq", 30)
    # Week 1: the cheap models each have their strength; the expensive ones answer everything.
    responder.wrong = {"qwen3-8b": set(math[:10]), "deepseek-v4-flash": set(zh[:5])}
    state = ServerState(
        responder=responder, served_model=lambda m: {"kimi-k2.5": "kimi-k2.5-0711"}.get(m, m)
    )  # a dated name: fine
    with FakeOpenAIServer(state) as server:
        plan = write_plan(root / "weekly-demo.yaml", server, MODELS, name="weekly-demo", suites=SUITES)
        week1 = run_plan(plan, db, tag="scheduled")
        # Week 2: glm-5 misses 12 math items it used to get right; flash is served by something else.
        responder.wrong["glm-5"] = set(math[5:17])
        state.served_model = lambda m: {
            "kimi-k2.5": "kimi-k2.5-0711",
            "deepseek-v4-flash": "deepseek-v4-flash-lite",
        }.get(m, m)
        week2 = run_plan(plan, db, tag="scheduled")
    _a_week_earlier(db, week1)

    print(f"plan:     {plan}")
    print(f"database: {db}")
    print(f"runs:     week 1 {week1}, week 2 {week2}\n")

    check = harness("check", week2, "--db", db, "--fail-on-regression")
    print(f"$ harness check {week2} --fail-on-regression   # exit status {check.returncode}")
    print(check.stdout.rstrip() + "\n")
    rec = harness("recommend", week2, "--db", db)
    print(f"$ harness recommend {week2}")
    print(rec.stdout.rstrip() + "\n")

    rep = harness("report", week1, week2, "--db", db, "--out", str(reports))
    print(rep.stdout.rstrip() or rep.stderr.rstrip())
    trends = sorted((reports / "trends").glob("*.html")) if (reports / "trends").is_dir() else []
    for page in trends:
        print(f"trend page: {page}")
    print(f"run page:   {reports / week2 / 'index.html'}")


if __name__ == "__main__":
    main()
