"""The HTML report: site layout, escaping of stored text, CSP, significance marks, pagination, trends."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import markupsafe
import pytest
from support.postgres import on_both_databases
from support.report_data import EVIL_MODEL, EVIL_MODELS, EVIL_PLAN, EVIL_SUITE, XSS_COMPLETION, make_run

from harness.analysis import leaderboard as analysis
from harness.analysis import paired, stats
from harness.analysis.summary import summarize_run
from harness.report import pages, site, trend, write_report
from harness.store import RunModelInfo, RunSuiteInfo, SampleRecord, Store

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def esc(text: str) -> str:
    return str(markupsafe.escape(text))


@pytest.fixture()
def store(db_url):
    s = Store(db_url)
    yield s
    s.close()


@pytest.fixture(scope="module")
def evil_site(tmp_path_factory):
    """A run whose model, suite, plan, completions, reasons and served names all carry markup."""
    tmp = tmp_path_factory.mktemp("evil")
    store = Store(f"sqlite:///{tmp / 'h.db'}")
    run_id = make_run(
        store,
        plan_name=EVIL_PLAN,
        models=EVIL_MODELS,
        suites=("math-word", EVIL_SUITE),
        n_items=40,
        payload=True,
        tag="<i>tag</i>",
    )
    index = write_report(store, [run_id], tmp / "site")
    yield store, run_id, index, tmp / "site"
    store.close()


def _html_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.html"))


# --------------------------------------------------------------------------- layout


def test_site_layout_and_return_value(evil_site):
    store, run_id, index, out = evil_site
    assert index == out / run_id / "index.html"
    assert (out / "index.html").is_file()
    run = out / run_id
    for name in ("accuracy.png", "cost_accuracy.png", "latency.png"):
        assert (run / "charts" / name).read_bytes().startswith(PNG_MAGIC)
    cells = sorted(p.parent for p in run.glob("samples/*/*/all-1.html"))
    assert len(cells) == 4  # 2 models x 2 suites
    for cell in cells:
        assert {p.name for p in cell.iterdir()} >= {"all-1.html", "right-1.html", "wrong-1.html"}
    assert len(list((run / "compare").glob("*-1.html"))) == 1  # one pair
    trend = out / "trends" / f"{pages.slug(EVIL_PLAN)}.html"
    assert trend.is_file()
    assert not list(out.glob(".*tmp*")), "no temporary folders left behind"
    # every link between pages resolves to a file of the site
    for page in _html_files(out):
        for href in re.findall(r'href="([^"#]+)(?:#[^"]*)?"', page.read_text("utf-8")):
            href = html.unescape(href)
            assert (page.parent / href).resolve().is_file(), f"{page.relative_to(out)} links to missing {href}"


def test_report_defaults_to_latest_run_and_rewrites_cleanly(store, tmp_path):
    first = make_run(store, n_items=10, seed=1)
    latest = make_run(store, n_items=10, seed=2)
    out = tmp_path / "site"
    assert write_report(store, None, out) == out / latest / "index.html"
    stale = out / latest / "samples" / "stale.html"
    stale.write_text("old")
    write_report(store, [latest], out)
    assert not stale.exists(), "a regenerated run folder holds only the new pages"
    index = (out / "index.html").read_text("utf-8")
    assert first in index and latest in index
    assert f'href="{latest}/index.html"' in index and f'href="{first}/index.html"' not in index


# --------------------------------------------------------------------------- safety


def test_stored_text_is_escaped_everywhere(evil_site):
    _, run_id, _, out = evil_site
    texts = {p: p.read_text("utf-8") for p in _html_files(out)}
    for path, text in texts.items():
        assert "<script" not in text.lower(), f"raw <script> in {path}"
        assert text.count("<img ") == text.count('<img src="data:image/png;base64,'), f"foreign <img> in {path}"
        assert "<b>" not in text and "<i>" not in text, f"raw markup from data in {path}"
        assert not re.search(r'(?:src|href)="(?:https?:)?//', text), f"external resource in {path}"
    cell = out / run_id / pages.cell_folder(EVIL_MODEL, "math-word")
    sample_page = texts[cell / "all-1.html"]
    assert esc(XSS_COMPLETION) in sample_page
    assert "&lt;b&gt;served&lt;/b&gt;" in sample_page and "expected &lt;2i&gt;" in sample_page
    run_page = texts[out / run_id / "index.html"]
    assert esc(EVIL_MODEL) in run_page and esc(EVIL_SUITE) in run_page
    assert "&lt;i&gt;tag&lt;/i&gt;" in run_page
    assert esc(EVIL_PLAN) in texts[out / "index.html"]


def test_every_page_has_a_strict_csp_matching_its_inline_style(evil_site):
    _, _, _, out = evil_site
    for path in _html_files(out):
        text = path.read_text("utf-8")
        csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', text)
        assert csp, f"no CSP in {path}"
        policy = html.unescape(csp.group(1))
        assert "default-src 'none'" in policy and "script-src" not in policy and "http" not in policy
        assert "img-src data:" in policy
        style = re.search(r"<style>(.*?)</style>", text, re.S).group(1)
        digest = base64.b64encode(hashlib.sha256(style.encode("utf-8")).digest()).decode()
        assert f"'sha256-{digest}'" in policy, f"style hash does not match in {path}"
        assert text.count("<style>") == 1 and ' style="' not in text  # no inline style attributes


# --------------------------------------------------------------------------- statistics


def _cells_run(store, scores: dict[str, list[int]], suite="s1", groups=None) -> str:
    """A run where model m scored scores[m][i] on item i of one suite."""
    run_id = store.start_run(plan_name="sig", plan_path="", plan_fingerprint="fp-sig", plan={})
    store.record_models(run_id, [RunModelInfo(m, "openai", m, "", 1.0, 1.0) for m in scores])
    n = len(next(iter(scores.values())))
    store.record_suite(run_id, RunSuiteInfo(suite, "h-" + suite, "mcq", "exact", n))
    store.record_prompts("h-" + suite, [(f"i{i}", json.dumps([["user", f"q{i}"]]), "A") for i in range(n)])
    store.save_samples(
        [
            SampleRecord(
                run_id,
                m,
                suite,
                "h-" + suite,
                f"i{i}",
                groups[i] if groups else "",
                0,
                "A" if s else "B",
                "",
                "stop",
                10,
                5,
                0,
                0.5,
                0.1,
                m,
                "",
                1,
                0.001,
                float(s),
                bool(s),
                "ok" if s else "no",
                "A",
            )
            for m, ss in scores.items()
            for i, s in enumerate(ss)
        ]
    )
    store.mark_run(run_id, "finished")
    return run_id


def test_leaderboard_marks_models_worse_than_the_best_with_holm(store, tmp_path):
    n = 200
    best = [1 if i % 10 else 0 for i in range(n)]  # 90%
    close = [1 if i % 9 else 0 for i in range(n)]  # 88.5%: not distinguishable
    weak = [1 if i % 2 else 0 for i in range(n)]  # 50%
    run_id = _cells_run(store, {"weak": weak, "best": best, "close": close})
    boards = analysis.leaderboards(summarize_run(store, run_id))
    rows = {r.cell.model: r for r in boards["s1"]}
    assert rows["best"].best and rows["best"].rank == 1
    assert rows["weak"].worse and not rows["close"].worse
    raw = [paired.paired_compare(close, best).p_value, paired.paired_compare(weak, best).p_value]
    assert [rows["close"].p, rows["weak"].p] == pytest.approx(raw)
    assert [rows["close"].p_adj, rows["weak"].p_adj] == pytest.approx(stats.adjust_pvalues(raw, "holm"))
    assert rows["weak"].diff == pytest.approx(-0.4)
    page = write_report(store, [run_id], tmp_path / "site").read_text("utf-8")
    board = page[page.index('<table class="leaderboard"') :]
    board = board[: board.index("</table>")]
    assert board.index(">best<") < board.index(">close<") < board.index(">weak<")
    weak_row = board[board.rindex("<tr", 0, board.index(">weak<")) :]
    assert weak_row.startswith('<tr class="worse">') and "Holm-adjusted p" in weak_row
    assert '<tr class="tie">' in board


def test_comparisons_align_items_by_id_and_use_groups(store):
    groups = [f"g{i % 10}" for i in range(40)]
    run_id = _cells_run(store, {"a": [1] * 40, "b": [i % 2 for i in range(40)]}, groups=groups)
    summary = summarize_run(store, run_id)
    ((a, b, per_suite),) = analysis.pairs(summary)
    ps = per_suite[0]
    # One sign convention: A − B with B the reference (the earlier model of the plan), as `harness compare`.
    assert (a, b) == ("b", "a") and ps.comparison.diff == pytest.approx(-0.5)
    assert ps.comparison.method == "cluster-permutation" and len(ps.disagree) == 20
    assert ps.a_better == 0 and ps.b_better == 20


def test_pareto_front():
    pts = [(1.0, 0.5), (2.0, 0.7), (3.0, 0.6), (0.5, 0.5), (float("nan"), 0.9), (2.0, 0.7)]
    assert analysis.pareto_front(pts) == [False, True, False, True, False, True]


# --------------------------------------------------------------------------- samples


@on_both_databases
def test_samples_are_paginated_filtered_and_linked(store, tmp_path, monkeypatch):
    monkeypatch.setattr(pages, "PAGE_SIZE", 25)
    run_id = make_run(
        store, n_items=60, samples_per_item=1, seed=3, models={"a": (0.7, 1, 1, 1), "b": (0.4, 1, 1, 1)}, suites=("s",)
    )
    out = tmp_path / "site"
    write_report(store, [run_id], out)
    cell = out / run_id / pages.cell_folder("a", "s")
    all_pages = sorted(cell.glob("all-*.html"), key=lambda p: int(p.stem.split("-")[1]))
    assert [p.name for p in all_pages] == ["all-1.html", "all-2.html", "all-3.html"]
    counts = [p.read_text("utf-8").count('<article class="sample') for p in all_pages]
    assert counts == [25, 25, 10]
    n_right = sum(p.read_text("utf-8").count('<article class="sample pass"') for p in all_pages)
    rights = sum(p.read_text("utf-8").count("<article") for p in cell.glob("right-*.html"))
    wrongs = sum(p.read_text("utf-8").count("<article") for p in cell.glob("wrong-*.html"))
    assert rights == n_right and rights + wrongs == 60
    for p in cell.glob("wrong-*.html"):
        assert '<article class="sample pass"' not in p.read_text("utf-8")
    # reasoning is collapsed, the completion is not
    first = all_pages[0].read_text("utf-8")
    assert '<details class="reasoning"><summary>Reasoning' in first and '<div class="completion">' in first
    # A-vs-B rows link to the exact sample of each model
    compare = next((out / run_id / "compare").glob("*-1.html")).read_text("utf-8")
    links = re.findall(r'href="\.\./(samples/[^"#]+)#(s\d+)"', compare)
    assert links
    for target, anchor in links:
        assert f'id="{anchor}"' in (out / run_id / target).read_text("utf-8")


def test_long_texts_are_cut_on_the_page(store, tmp_path, monkeypatch):
    monkeypatch.setattr(pages, "TEXT_CAP", 100)
    run_id = _cells_run(store, {"m": [1, 0]})
    from sqlalchemy import update

    from harness.store import SampleRow

    with store.engine.begin() as conn:
        conn.execute(update(SampleRow).values(completion="x" * 1000))
    write_report(store, [run_id], tmp_path / "site")
    text = (tmp_path / "site" / run_id / pages.cell_folder("m", "s1") / "all-1.html").read_text("utf-8")
    assert "x" * 100 in text and "x" * 101 not in text and "900 more characters not shown" in text


def test_parallel_worker_writes_the_same_pages(tmp_path, monkeypatch):
    store = Store(f"sqlite:///{tmp_path / 'h.db'}")
    run_id = make_run(store, n_items=30, payload=True)
    write_report(store, [run_id], tmp_path / "serial")
    monkeypatch.setattr(site, "PARALLEL_MIN_SAMPLES", 1)
    calls = []
    real = site._split
    monkeypatch.setattr(site, "_split", lambda *a: calls.append(real(*a)) or calls[-1])
    write_report(store, [run_id], tmp_path / "parallel")
    assert calls and calls[0][1], "some cells went to the worker"
    serial = {p.relative_to(tmp_path / "serial"): p.read_bytes() for p in (tmp_path / "serial").rglob("*.html")}
    parallel = {p.relative_to(tmp_path / "parallel"): p.read_bytes() for p in (tmp_path / "parallel").rglob("*.html")}
    assert serial == parallel
    assert not list((tmp_path / "parallel" / run_id).glob(".worker-*"))
    store.close()


def test_in_memory_database_renders_in_process(tmp_path, monkeypatch):
    store = Store("sqlite://")
    run_id = make_run(store, n_items=5)
    monkeypatch.setattr(site, "PARALLEL_MIN_SAMPLES", 1)
    index = write_report(store, [run_id], tmp_path / "site")
    assert "leaderboard" in index.read_text("utf-8")


def test_run_without_samples(store, tmp_path):
    run_id = store.start_run(plan_name="empty", plan_path="", plan_fingerprint="fp-e", plan={})
    page = write_report(store, [run_id], tmp_path / "site").read_text("utf-8")
    assert "No graded samples yet" in page


# --------------------------------------------------------------------------- trends


def test_trend_page_follows_the_plan_across_runs(store, tmp_path):
    start = datetime(2025, 1, 6)
    ids = [
        make_run(
            store,
            plan_name="weekly",
            n_items=20,
            seed=w,
            started_at=start + timedelta(weeks=w),
            suite_hash_salt="" if w < 2 else "-v2",
        )
        for w in range(4)
    ]
    other = make_run(store, plan_name="other", n_items=5, seed=9)
    out = tmp_path / "site"
    write_report(store, [ids[-1]], out)
    page = (out / "trends" / f"{pages.slug('weekly')}.html").read_text("utf-8")
    for run_id in ids:
        assert run_id in page
    assert other not in page
    assert page.count("Suite content changed in run") == 2  # once per suite
    assert re.search(r'h-math-word</span> → <span class="mono">h-math-word-v2<', page)
    # one chart per suite, and the operations across runs (p99, error rate, cost per 1,000 requests)
    assert page.count('<img src="data:image/png;base64,') == 3
    assert f'href="../{ids[-1]}/index.html"' in page  # the reported run is linked
    index = (out / "index.html").read_text("utf-8")
    assert f'href="trends/{pages.slug("weekly")}.html"' in index
    # earlier runs were summarized once and cached; a second report reuses the cache
    cached = out / "trends" / "data" / f"{ids[0]}.json"
    assert json.loads(cached.read_text())["cells"]


# --------------------------------------------------------------------------- start-up cost


def test_importing_the_report_package_loads_no_heavy_modules():
    code = (
        "import sys, harness.report, harness.report.charts; "
        "print(sorted(m for m in ('matplotlib', 'jinja2', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------- where a report may go


def test_report_refuses_a_folder_holding_other_files(store, tmp_path):
    run_id = make_run(store, n_items=3)
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\n")
    before = sorted(p.relative_to(project) for p in project.rglob("*"))
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match=r"--out .*project: the folder holds other files \(pyproject.toml, src\)"):
        write_report(store, [run_id], project)
    assert sorted(p.relative_to(project) for p in project.rglob("*")) == before  # nothing written
    from harness.report import check_out_dir

    for folder in ("/", Path.home()):  # checked only: nothing is written there whatever the outcome
        if any(Path(folder).iterdir()):
            with pytest.raises(HarnessError, match="holds other files"):
                check_out_dir(folder)


@pytest.mark.slow
def test_report_writes_into_new_empty_readme_only_and_earlier_report_folders(store, tmp_path):
    run_id = make_run(store, n_items=3)
    write_report(store, [run_id], tmp_path / "new" / "site")
    (tmp_path / "empty").mkdir()
    write_report(store, [run_id], tmp_path / "empty")
    repo_reports = tmp_path / "reports"  # the repository's reports/ holds a README; a schedule's log comes first
    repo_reports.mkdir()
    (repo_reports / "README.md").write_text("reports land here\n")
    (repo_reports / "schedule-weekly.log").write_text("harness schedule weekly\n")
    write_report(store, [run_id], repo_reports)
    (repo_reports / "notes.txt").write_text("mine\n")  # a marked report folder stays writable
    write_report(store, [run_id], repo_reports)
    older = tmp_path / "older"  # written by a harness that left no marker
    write_report(store, [run_id], older)
    (older / ".harness-report").unlink()
    write_report(store, [make_run(store, n_items=3, plan_name="other")], older)
    assert (older / "index.html").is_file() and (older / ".harness-report").is_file()


def test_trend_spaces_runs_by_run_and_marks_drift_events(store, tmp_path):
    # Two runs a minute apart (not collapsed into one x position), then a price change a week later.
    start = datetime(2026, 3, 2, 6, 0)
    models = {"steady": (0.8, 0.1, 0.4, 0.5), "moving": (0.7, 0.2, 1.0, 0.8)}
    repriced = {**models, "moving": (0.7, 0.2, 1.5, 0.8)}
    ids = [
        make_run(store, plan_name="drift", models=m, n_items=10, seed=i, started_at=t)
        for i, (m, t) in enumerate(
            [(models, start), (models, start + timedelta(minutes=1)), (repriced, start + timedelta(days=7))]
        )
    ]
    out = tmp_path / "site"
    write_report(store, [ids[-1]], out)
    per_run = [(store.run(r), trend.run_data(store, out, store.run(r), store.count_samples(r))) for r in ids]
    assert trend.drift_events(per_run) == [(2, "moving: price changed")]
    page = (out / "trends" / f"{pages.slug('drift')}.html").read_text("utf-8")
    assert "⚠ moving: price changed" in page and ids[2] in page
    # The operations chart (p99, error rate, cost per 1,000 requests) and one chart per suite.
    assert "Latency p99, error rate and cost per 1,000 requests per model across runs" in page
