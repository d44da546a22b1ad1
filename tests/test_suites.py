"""Bundled suites: load, stream items with stable ids, render in the sandbox, grade their references."""

import pytest

from harness.errors import HarnessError
from harness.graders.grading import validate_suite
from harness.plan import SuiteRef
from harness.suite import list_suites, load_suite
from harness.suite.prompt import PromptBuilder

BUNDLED = ["code-functions", "code-tasks", "math-word", "zh-mcq", "en-reasoning"]


def test_bundled_suites_are_listed():
    assert set(BUNDLED) <= set(list_suites())


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_suite_has_40_items_with_unique_ids(name):
    suite = load_suite(name)
    items = list(suite.items())
    assert len(items) >= 40
    assert len({i.id for i in items}) == len(items)
    assert suite.count() == len(items)
    assert all(i.reference not in (None, "") for i in items)


@pytest.mark.parametrize("name", BUNDLED)
def test_reference_answers_grade_correct(name):
    result = validate_suite(load_suite(name))
    assert result.failures == []
    assert result.passed == result.total >= 40


@pytest.mark.parametrize("name", BUNDLED)
def test_prompts_render_with_and_without_shots(name):
    suite = load_suite(SuiteRef(name=name, limit=3, fewshot=0))
    builder = PromptBuilder(suite)
    for item in suite.items():
        prompt = builder.build(item)
        assert prompt.messages[-1].role == "user" and prompt.messages[-1].content.strip()
    with_shots = load_suite(SuiteRef(name=name, limit=1, fewshot=1))
    if with_shots.fewshot_pool():
        p = PromptBuilder(with_shots).build(next(with_shots.items()))
        assert [m.role for m in p.messages if m.role != "system"] == ["user", "assistant", "user"]


def test_limit_and_stable_order():
    a = [i.id for i in load_suite(SuiteRef(name="math-word", limit=5)).items()]
    b = [i.id for i in load_suite(SuiteRef(name="math-word", limit=5)).items()]
    assert a == b and len(a) == 5
    everything = [i.id for i in load_suite("math-word").items()]
    assert a == [i for i in everything if i in a]  # file order
    assert a != everything[:5]  # a sample, not the head of the file
    assert [i.id for i in load_suite(SuiteRef(name="math-word", first=5)).items()] == everything[:5]
    other = [i.id for i in load_suite(SuiteRef(name="math-word", limit=5, sample_seed=1)).items()]
    assert other != a and len(other) == 5
    assert load_suite(SuiteRef(name="math-word", limit=5)).count() == 5


@pytest.mark.parametrize("name", ["zh-mcq", "en-reasoning"])
def test_limit_spreads_over_the_groups(name):
    from collections import Counter

    everything = list(load_suite(name).items())
    sizes = Counter(i.group for i in everything)
    n_groups = len(sizes)
    assert n_groups > 1
    # Fewer items than groups: one item each from that many groups.
    few = list(load_suite(SuiteRef(name=name, limit=n_groups - 1)).items())
    assert len({i.group for i in few}) == n_groups - 1
    # More: every group, in proportion to its size (within one item), never more than it has.
    n = len(everything) // 2
    half = Counter(i.group for i in load_suite(SuiteRef(name=name, limit=n)).items())
    assert sum(half.values()) == n and set(half) == set(sizes)
    for group, size in sizes.items():
        assert abs(half[group] - n * size / len(everything)) <= 1.5 and half[group] <= size
    # The head of the file is what `first` is for; the sample does not depend on the file's order.
    head = Counter(i.group for i in load_suite(SuiteRef(name=name, first=n_groups)).items())
    assert len(head) < n_groups


def test_sample_depends_on_the_items_not_their_order():
    from harness.suite.sample import sample_indices

    entries = [(f"s/{g}/{k}", f"g{g}") for g in range(7) for k in range(g + 3)]
    chosen = {entries[i][0] for i in sample_indices(entries, 20, suite="s")}
    flipped = entries[::-1]
    assert {flipped[i][0] for i in sample_indices(flipped, 20, suite="s")} == chosen
    assert len(chosen) == 20 and len({e.split("/")[1] for e in chosen}) == 7
    assert sample_indices(entries, 999, suite="s") == set(range(len(entries)))
    assert len(sample_indices(entries, 3, suite="s")) == 3


def test_ceval_limit_52_touches_52_subjects():
    import os

    data = "/work/shared/datasets/ceval"
    if not os.path.isdir(data):
        pytest.skip(f"C-Eval files not found at {data}")
    ids, subjects = [], []
    for _ in range(2):  # the same plan, run twice
        items = list(load_suite(SuiteRef(name="ceval", limit=52, data=data)).items())
        ids.append([i.id for i in items])
        subjects.append({i.group for i in items})
    assert len(ids[0]) == 52 and len(subjects[0]) == 52
    assert ids[0] == ids[1]
    head = {i.group for i in load_suite(SuiteRef(name="ceval", first=30, data=data)).items()}
    assert len(head) == 1  # the head of the file is one subject: what `limit` no longer does


def test_content_hash_is_stable_and_tracks_options():
    h1 = load_suite("zh-mcq").content_hash
    assert h1 == load_suite("zh-mcq").content_hash
    assert h1 != load_suite(SuiteRef(name="zh-mcq", fewshot=2)).content_hash
    # the item limit selects items; it does not change what an item is
    assert h1 == load_suite(SuiteRef(name="zh-mcq", limit=3)).content_hash


def test_unknown_suite_lists_known():
    with pytest.raises(HarnessError, match="unknown suite 'nope'.*math-word"):
        load_suite("nope")


def _make_suite(tmp_path, template: str, items: str = '{"q": "hi", "a": "1"}\n'):
    folder = tmp_path / "suites" / "tiny"
    folder.mkdir(parents=True)
    (folder / "suite.yaml").write_text(
        "name: tiny\nfamily: reasoning\ntemplate: prompt.j2\nreference_field: a\ngrader: {name: exact}\n"
    )
    (folder / "prompt.j2").write_text(template)
    (folder / "items.jsonl").write_text(items)
    return folder


def test_template_typo_is_an_error_not_empty_text(tmp_path):
    folder = _make_suite(tmp_path, "Question: {{ qq }}")
    suite = load_suite(str(folder))
    with pytest.raises(HarnessError, match="undefined"):
        PromptBuilder(suite).build(next(suite.items()))


def test_template_cannot_reach_python_internals(tmp_path):
    folder = _make_suite(tmp_path, "{{ q.__class__.__mro__[1].__subclasses__() }}")
    suite = load_suite(str(folder))
    with pytest.raises(HarnessError):
        PromptBuilder(suite).build(next(suite.items()))


def test_malformed_items_line_is_named(tmp_path):
    folder = _make_suite(tmp_path, "{{ q }}", items='{"q": "hi", "a": "1"}\n{not json}\n')
    suite = load_suite(str(folder))
    with pytest.raises(HarnessError, match=r"items.jsonl:2: not valid JSON"):
        list(suite.items())


def test_items_file_that_is_not_utf8_names_the_line(tmp_path):
    folder = _make_suite(tmp_path, "{{ q }}")
    (folder / "items.jsonl").write_bytes(b'{"q": "hi", "a": "1"}\n{"q": "ok", "a": "2"}\n{"q": "caf\xe9", "a": "3"}\n')
    suite = load_suite(str(folder))
    with pytest.raises(HarnessError, match=r"items.jsonl:3: not valid UTF-8 \(byte 0xe9 at column 11\)"):
        list(suite.items())


@pytest.mark.parametrize(
    "generation, needle",
    [
        ("{temperature: hot}", "generation.temperature: must be a valid number, got 'hot'"),
        ("{max_tokens: -1}", "generation.max_tokens: must be greater than or equal to 1"),
        ("{stop: 3}", "generation.stop: must be a string or a list of strings"),
        ("{tempreature: 0}", "generation: unknown key(s) tempreature"),
    ],
)
def test_suite_generation_is_checked_like_a_plans(tmp_path, generation, needle):
    folder = _make_suite(tmp_path, "{{ q }}")
    config = folder / "suite.yaml"
    config.write_text(config.read_text() + f"generation: {generation}\n")
    with pytest.raises(HarnessError) as err:
        load_suite(str(folder))
    assert str(err.value) == f"{config}: {needle}" or str(err.value).startswith(f"{config}: {needle}")


def test_a_suite_stop_string_is_one_stop_sequence(tmp_path):
    folder = _make_suite(tmp_path, "{{ q }}")
    config = folder / "suite.yaml"
    config.write_text(config.read_text() + "generation: {stop: '###', max_tokens: 7}\n")
    suite = load_suite(str(folder))
    assert suite.generation.stop == ("###",) and suite.generation.max_tokens == 7
