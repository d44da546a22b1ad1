"""Needle suites: the generator (lengths, depths, languages, a user's haystack, distractors), the grader,
a run against the fake server (over-window items classified, not retried), the dry run per length, the
export's item fields, the report's heatmap and effective length (also in headless Chromium)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner
from support.browser import check_page as _check_page
from support.browser import screenshot_dir as _screenshot_dir

from harness.analysis import long_context as lc
from harness.analysis.summary import summarize_run
from harness.cli import cli
from harness.engine.runs import execute_plan
from harness.errors import HarnessError
from harness.graders import grade
from harness.plan import load_plan
from harness.records import CONTEXT_LENGTH, Item, error_class
from harness.report.pages import run_dir
from harness.store import Store
from harness.suite import load_suite
from harness.suite.needle import NeedleOptions, make_needle_suite, parse_depths, parse_lengths, render_user
from harness.suite.prompt import PromptBuilder
from harness.suite.token_counter import counter_for, estimate_counter


def make(tmp_path, name="needle", **options):
    defaults = dict(lengths=(1024, 2048), depths=(0.0, 50.0, 100.0))
    return make_needle_suite(tmp_path / name, NeedleOptions(**{**defaults, **options}), estimate_counter())


def items_of(path):
    return [json.loads(line) for line in (path / "items.jsonl").read_text("utf-8").splitlines()]


def test_lengths_and_depths_parse_as_written():
    assert parse_lengths("1k,2k,4k") == (1024, 2048, 4096) and parse_lengths("128k") == (131072,)
    assert parse_lengths("1000,1m") == (1000, 1048576)
    assert parse_depths("0,10,...,100") == tuple(float(x) for x in range(0, 101, 10))
    assert parse_depths("0,50,100") == (0.0, 50.0, 100.0)
    for bad, call in (("4kb", parse_lengths), ("10", parse_lengths), ("0,120", parse_depths), ("a", parse_depths)):
        with pytest.raises(HarnessError):
            call(bad)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--lengths", "1q"], "--lengths: '1q' is not a token count"),
        (["--depths", "0,150"], "every depth is a percentage from 0 to 100"),
        (["--lang", "fr"], "--lang fr: write en, zh or en,zh"),
        (["--tokenizer", "nonsense"], "--tokenizer nonsense: not 'embedded'"),
        (["--haystack", "/nonexistent/file.txt"], "--haystack /nonexistent/file.txt: file not found"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(tmp_path, args, needle):
    base = {"--lengths": "1k", "--depths": "0,50", "--out": str(tmp_path / "s")}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    args = [sys.executable, "-m", "harness", "suites", "make", "needle", *[x for kv in base.items() for x in kv]]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr and "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_an_existing_folder_is_not_overwritten(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "mine.txt").write_text("keep")
    args = ["suites", "make", "needle", "--lengths", "1k", "--depths", "0", "--out", str(tmp_path / "s")]
    out = CliRunner().invoke(cli, args)
    assert isinstance(out.exception, HarnessError) and "not an empty folder" in str(out.exception)
    assert (tmp_path / "s" / "mine.txt").read_text() == "keep"


def test_the_suite_folder_stores_the_haystack_once_and_renders_what_was_counted(tmp_path):
    made = make(tmp_path, langs=("en", "zh"), needles=(1, 3), distractors=2)
    folder = made.path
    assert sorted(p.name for p in folder.iterdir()) == [
        "haystack-en.j2",
        "haystack-zh.j2",
        "items.jsonl",
        "prompt.j2",
        "suite.yaml",
    ]
    items = items_of(folder)
    assert len(items) == made.items == 2 * 2 * 3 * 2
    suite = load_suite(str(folder))
    assert suite.grader.name == "needle" and "estimate" in suite.description
    builder = PromptBuilder(suite)
    rendered_chars = 0
    counter = estimate_counter()
    for item in suite.items():
        f = item.fields
        text = builder.build(item).messages[-1].text
        rendered_chars += len(text.encode())
        haystack = (folder / f["haystack"]).read_text("utf-8").removeprefix("{% raw %}").removesuffix("{% endraw %}")
        assert text == render_user(f["intro"], haystack, f["pieces"], f["question"])
        assert counter.prompt(text) == f["tokens"]
        assert abs(f["tokens"] - f["length"]) <= 0.02 * f["length"]  # what the counter counted, within 2%
        for value in f["values"] + f["distractor_values"]:
            assert text.count(value) == 1  # every needle and distractor once in the prompt
        assert len(f["distractor_values"]) == 2 and len(f["values"]) == f["needles"]
        # Depth: the first needle sits at about `depth` percent of the document.
        doc = text[len(f["intro"]) : text.rindex(f["question"])]
        at = doc.index(f["values"][0]) / len(doc)
        assert abs(at - f["depth"] / 100) < 0.12, (item.id, at)
        if f["lang"] == "zh":
            cjk = sum("\u4e00" <= ch <= "\u9fff" for ch in text)
            assert "储物柜" in text and cjk > 0.7 * len(text)
    # The haystack is stored once, not per item: the folder is a fraction of the prompts it renders.
    assert made.bytes_on_disk < rendered_chars / 3
    # The same options make the same suite (a rebuilt suite keeps its content hash).
    again = make(tmp_path, name="needle2", langs=("en", "zh"), needles=(1, 3), distractors=2)
    assert (again.path / "items.jsonl").read_bytes() == (folder / "items.jsonl").read_bytes()


def test_a_users_own_haystack_is_used_and_repeated_when_short(tmp_path):
    mine = tmp_path / "mine.txt"
    mine.write_text("Alpha paragraph one. It has two sentences.\n\nBeta paragraph {% endraw %} here.\n", "utf-8")
    made = make(tmp_path, haystack=str(mine), lengths=(1024,), depths=(50.0,))
    assert made.repeated["en"] > 1
    (item,) = load_suite(str(made.path)).items()
    text = PromptBuilder(load_suite(str(made.path))).build(item).messages[-1].text
    assert "Alpha paragraph one." in text and "Beta paragraph { % endraw %} here." in text
    assert "your text (mine.txt)" in load_suite(str(made.path)).description


def test_embedded_tokenizer_counts_match_within_two_percent(tmp_path):
    pytest.importorskip("llama_cpp")
    counter = counter_for("embedded")
    made = make_needle_suite(
        tmp_path / "s", NeedleOptions(lengths=(1024, 3072), depths=(0.0, 100.0), langs=("en", "zh")), counter
    )
    assert made.exact and "SmolLM2" in made.counted_by and made.worst_miss <= 0.02
    suite = load_suite(str(made.path))
    builder = PromptBuilder(suite)
    for item in suite.items():
        assert counter.prompt(builder.build(item).messages[-1].text) == item.fields["tokens"]


@pytest.mark.parametrize(
    "answer, score, passed",
    [
        ("4812937", 1.0, True),
        ("The code is 4,812,937.", 1.0, True),
        ("4 812 937", 1.0, True),
        ("48129371", 0.0, False),  # a longer number is not the code
        ("I do not know", 0.0, False),
        ("4812937 or maybe 5555555", 0.0, False),  # a distractor named too: not told apart
    ],
)
def test_the_needle_grader_is_exact_recall(answer, score, passed):
    item = Item("i", {"values": ["4812937"], "distractor_values": ["5555555"]})
    g = grade("needle", answer, item)
    assert (g.score, g.passed) == (score, passed), g.reason


def test_several_needles_score_the_share_recalled():
    item = Item("i", {"values": ["1111111", "2222222", "3333333"], "distractor_values": []})
    assert grade("needle", "1111111\n3333333", item).score == pytest.approx(2 / 3)
    assert grade("needle", "1111111\n2222222\n3333333", item).passed


def test_effective_length_by_hand():
    rows = [(1024, 0.0, 1.0, False)] * 10 + [(2048, 0.0, 0.95, False)] * 10 + [(4096, 0.0, 0.5, False)] * 10
    eff = lc.effective_length(rows, drop=0.10)
    assert (
        eff.value == 2048 and eff.baseline == 1.0 and eff.by_length == pytest.approx({1024: 1.0, 2048: 0.95, 4096: 0.5})
    )
    assert eff.lo == 2048 and eff.hi == 2048  # no item varies: the interval is the point
    # Over-window items score 0: a model cannot reach a length it refuses.
    refused = [(1024, 0.0, 1.0, False)] * 5 + [(8192, 0.0, 0.0, True)] * 5
    assert lc.effective_length(refused).value == 1024
    mixed = [(1024, 0.0, s, False) for s in (1, 1, 1, 1, 0)] + [(2048, 0.0, s, False) for s in (1, 1, 1, 0, 0)]
    eff = lc.effective_length(mixed, drop=0.1)
    assert eff.value == 1024 and eff.lo == 1024 and eff.hi == 2048  # 0.6 vs 0.8: within the drop in some draws
    cells = lc.grid(refused)
    assert [(c.length, c.n, c.over_window) for c in cells] == [(1024, 5, 0), (8192, 5, 5)]


def needle_oracle(forget_above_words: int | None = None):
    """Answer a needle question from the document, like a model that reads it; optionally 'lose' needles
    in the middle of long prompts (so the heatmap has a shape)."""

    def respond(model, messages):
        text = str(messages[-1]["content"])
        if "储物柜" in text:
            keys = re.search(r"问题：(.+?)的储物柜", text).group(1).split("、")
            found = [re.search(re.escape(k) + r"的储物柜密码是(\d+)", text) for k in keys]
        else:
            keys = re.findall(r"the (\w+ \w+)(?=,| and|\?)", text.rsplit("Question:", 1)[1])
            found = [re.search(rf"The locker of the {k} opens with the code (\d+)", text) for k in keys]
        words = len(text.split())
        if forget_above_words and words > forget_above_words:
            middle = [m for m in found if m and 0.2 < m.start() / len(text) < 0.8]
            if middle:
                return "I could not find it."
        return "\n".join(m.group(1) if m else "unknown" for m in found)

    return respond


@pytest.fixture
def needle_run(tmp_path, fake_server, db_url):
    made = make(tmp_path, lengths=(1024, 2048, 4096, 8192), depths=(0.0, 50.0, 100.0))
    suite = load_suite(str(made.path))
    builder = PromptBuilder(suite)
    words = {i.fields["length"]: len(builder.build(i).messages[-1].text.split()) for i in suite.items()}
    fake_server.state.responder = needle_oracle(forget_above_words=words[2048] + 10)
    fake_server.state.faults.context_window = (words[4096] + words[8192]) // 2  # the 8k items are over it
    plan = tmp_path / "plan.yaml"
    # Streamed: TTFT is measured, so the report's TTFT-against-length chart has points.
    model = {"provider": "openai", "base_url": fake_server.base_url, "model": "m", "concurrency": 2, "stream": True}
    plan.write_text(
        yaml.safe_dump(
            {
                "name": "needles",
                "models": {"m": {**model, "price": {"input": 1.0, "output": 2.0}}},
                "suites": [str(made.path)],
            }
        )
    )
    store = Store(db_url)
    result = execute_plan(load_plan(plan), store)
    return result, store, plan, made


def test_over_window_items_are_classified_not_retried_not_fatal(needle_run, fake_server):
    result, store, _, _ = needle_run
    assert result.status == "finished" and not result.outcome.per_model["m"].failed
    samples = {s.item_id: s for s in store.samples(result.run_id)}
    over = {k: s for k, s in samples.items() if "-len8192-" in k}
    assert len(over) == 3 and fake_server.state.status_counts["context_length"] == 3
    for s in over.values():
        assert error_class(s.error) == CONTEXT_LENGTH and s.attempts == 1 and s.score == 0
        assert "maximum context length" in s.error
    for k, s in samples.items():
        if k not in over:
            assert not s.error
    assert samples["en-len1024-depth50-n1"].passed and not samples["en-len4096-depth50-n1"].passed
    ops = summarize_run(store, result.run_id).ops[0]
    assert ops.over_window == 3 and ops.errors == 0 and ops.error_rate == 0


def test_export_carries_item_fields_and_the_report_shows_the_grid(needle_run, tmp_path):
    result, store, _, _ = needle_run
    db = str(store.engine.url)
    runner = CliRunner()
    out = runner.invoke(cli, ["export", result.run_id, "--format", "jsonl", "--db", db])
    rows = [json.loads(line) for line in out.output.splitlines() if line.strip()]
    assert len(rows) == 12 and all({"length", "depth", "values"} <= set(r["item"]) for r in rows)
    assert {r["item"]["length"] for r in rows} == {1024, 2048, 4096, 8192}
    report = tmp_path / "report"
    made = runner.invoke(cli, ["report", result.run_id, "--out", str(report), "--db", db])
    assert made.exit_code == 0, made.output
    page = (report / run_dir(result.run_id) / "index.html").read_text("utf-8")
    assert 'id="long-context"' in page and "over the window" in page
    # 1k and 2k found everywhere; 4k loses its middle needle (2 of 3); 8k over the window (0).
    assert "Effective length: <strong>2k tokens" in page
    assert "4k 67%" in page and "8k 0%" in page


def test_dry_run_shows_tokens_and_cost_per_length_and_confirm_above_refuses(needle_run, fake_server):
    result, store, plan, _ = needle_run
    before = fake_server.state.requests
    runner = CliRunner()
    out = runner.invoke(cli, ["run", str(plan), "--dry-run", "--db", str(store.engine.url)])
    assert out.exit_code == 0, out.output
    lines = [ln for ln in out.output.splitlines() if " tokens: " in ln]
    assert [ln.split()[0] for ln in lines] == ["1,024", "2,048", "4,096", "8,192"]
    assert all("3 items" in ln and "m ~$" in ln for ln in lines)
    refused = runner.invoke(
        cli, ["run", str(plan), "--new", "--confirm-above", "0.00001", "--db", str(store.engine.url)]
    )
    assert isinstance(refused.exception, HarnessError) and "exceeds --confirm-above" in str(refused.exception)
    assert fake_server.state.requests == before  # nothing sent


def test_the_long_context_section_in_headless_chromium(needle_run, browser, tmp_path):  # noqa: F811
    result, store, _, _ = needle_run
    from harness.report import write_report

    index = write_report(store, [result.run_id], tmp_path / "site")
    page = tmp_path / "site" / run_dir(result.run_id) / "index.html"
    state = _check_page(browser, page)
    assert "Long context" in state["text"] and "Effective length: 2k tokens" in state["text"]
    # accuracy, cost-vs-accuracy, latency; the heatmap; TTFT and cost against prompt length.
    assert len(state["images"]) == 6
    geometry = browser.js(
        """const h = document.getElementById('long-context');
        h.scrollIntoView();
        const r = h.getBoundingClientRect();
        const imgs = Array.from(document.querySelectorAll('#long-context ~ figure img, #long-context ~ .charts img'));
        return {top: r.top, widths: imgs.map(i => i.getBoundingClientRect().width),
                overflow: document.documentElement.scrollWidth > document.documentElement.clientWidth};"""
    )
    assert not geometry["overflow"] and all(w > 200 for w in geometry["widths"])
    shots = _screenshot_dir(tmp_path)
    browser.screenshot(shots / "long-context.png")
    assert (shots / "long-context.png").read_bytes().startswith(b"\x89PNG") and index.exists()


@pytest.mark.parametrize(
    "status, message, code, expected",
    [
        (400, "This model's maximum context length is 8192 tokens. However, you requested 9300 tokens", "", True),
        (400, "the request exceeds the available context size, try increasing it", "exceed_context_size_error", True),
        (400, "The input (9000 tokens) is longer than the model's context length (8192 tokens).", "", True),
        (400, "prompt is too long: 210000 tokens > 200000 maximum", "", True),
        (400, "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096", "", True),
        (400, "whatever", "context_length_exceeded", True),
        (None, "llama.cpp: Requested tokens (9000) exceed context window of 8192", "", True),
        (400, "The model `gpt-9` does not exist", "model_not_found", False),
        (500, "maximum context length is 8192", "", False),  # a 5xx is the server's failure, retried
        (400, "temperature must be at most 2", "", False),
    ],
)
def test_over_window_refusals_in_each_servers_words(status, message, code, expected):
    from harness.providers.context_limit import is_context_length

    assert is_context_length(status, message, code) is expected


def test_the_reference_answers_pass_the_grader(tmp_path):
    made = make(tmp_path, langs=("en", "zh"), needles=(1, 3), distractors=1, lengths=(1024,), depths=(0.0, 100.0))
    out = CliRunner().invoke(cli, ["suites", "validate", str(made.path)])
    assert out.exit_code == 0 and "8/8 reference answers graded correct" in out.output, out.output
