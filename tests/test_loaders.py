"""harness.suite.loaders on the real benchmark files (../shared/datasets) and on small broken files.

Every test runs with HF_DATASETS_OFFLINE=1 and a private datasets cache: local files must never
need the network, and a hub id must fail fast with a HarnessError when offline.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("datasets")

from harness.errors import HarnessError  # noqa: E402
from harness.suite import loaders  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="module", autouse=True)
def offline_private_cache(tmp_path_factory):
    """Offline, with the datasets cache in a fresh temporary folder (read by loaders at each call)."""
    import datasets.config

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf-datasets-cache")))
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        mp.setenv("HF_HUB_OFFLINE", "1")
        # `datasets` and `huggingface_hub` read the offline flag once, at import: set it there too.
        mp.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        try:
            import huggingface_hub.constants as hub_constants

            mp.setattr(hub_constants, "HF_HUB_OFFLINE", True)
        except ImportError:  # pragma: no cover
            pass
        yield


def shared(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"real benchmark files not available: {path} is missing (see ../shared/datasets/<name>/README.md)")
    return path


_cache: dict[tuple, loaders.LoadedData] = {}


def load(loader: str, data: Path | str, **options) -> loaders.LoadedData:
    """loaders.load, memoised per test module run: each benchmark is read once per option set."""
    key = (loader, str(data), json.dumps(options, sort_keys=True))
    if key not in _cache:
        _cache[key] = loaders.load(loader, str(data), options)
    return _cache[key]


def test_available_loaders():
    assert loaders.available_loaders() == [
        "bbh",
        "bfcl",
        "ceval",
        "chartqa",
        "docvqa",
        "gsm8k",
        "humaneval",
        "mbpp",
        "mmmu",
    ]


# -- HumanEval -----------------------------------------------------------------------------


def test_humaneval_rows_and_ids():
    folder = shared("humaneval")
    data = load("humaneval", folder)
    rows = list(data.rows)
    assert data.count == len(rows) == 164
    assert [r["task_id"] for r in rows] == [f"HumanEval/{i}" for i in range(164)]
    assert all(set(r) == {"task_id", "prompt", "entry_point", "canonical_solution", "test"} for r in rows)
    assert all(isinstance(v, str) and v for r in rows for v in r.values())
    assert data.fewshot == []
    # the file itself and its folder are the same data
    assert load("humaneval", folder / "HumanEval.jsonl.gz").fingerprint == data.fingerprint


def test_humaneval_rows_equal_the_file():
    folder = shared("humaneval")
    with gzip.open(folder / "HumanEval.jsonl.gz", "rt", encoding="utf-8") as fh:
        expected = [json.loads(line) for line in fh if line.strip()]
    assert list(load("humaneval", folder).rows) == expected


# -- MBPP ----------------------------------------------------------------------------------


def test_mbpp_test_split_and_fewshot():
    data = load("mbpp", shared("mbpp") / "mbpp.jsonl")
    rows = list(data.rows)
    assert data.count == len(rows) == 500
    assert [r["task_id"] for r in rows] == list(range(11, 511))
    assert [r["task_id"] for r in data.fewshot] == [2, 3, 4]
    for row in rows + data.fewshot:
        assert isinstance(row["task_id"], int)
        assert isinstance(row["text"], str) and isinstance(row["code"], str)
        assert isinstance(row["test_list"], list) and all(isinstance(t, str) for t in row["test_list"])
        assert isinstance(row["test_setup_code"], str) and isinstance(row["challenge_test_list"], list)
    assert all(len(r["test_list"]) == 3 for r in rows)


@pytest.mark.parametrize(
    "split, first, last, count",
    [("validation", 511, 600, 90), ("train", 601, 974, 374), ("prompt", 1, 10, 7), ("all", 1, 974, 971)],
)
def test_mbpp_other_splits_never_hold_the_shots(split, first, last, count):
    data = load("mbpp", shared("mbpp"), split=split)
    ids = [r["task_id"] for r in data.rows]
    assert data.count == len(ids) == count
    assert ids[0] == first and ids[-1] == last
    assert not {2, 3, 4} & set(ids)


# -- GSM8K ---------------------------------------------------------------------------------


def _jsonl_head(path: Path, n: int | None = None) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return rows[:n] if n is not None else rows


def test_gsm8k_test_rows_and_train_shots():
    folder = shared("gsm8k")
    data = load("gsm8k", folder)
    rows = list(data.rows)
    assert data.count == len(rows) == 1319
    assert rows == _jsonl_head(folder / "test.jsonl")
    assert all(set(r) == {"question", "answer"} and "####" in r["answer"] for r in rows)
    assert data.fewshot == _jsonl_head(folder / "train.jsonl", 8)
    # the test file alone finds train.jsonl beside it
    assert load("gsm8k", folder / "test.jsonl").fingerprint == data.fingerprint


def test_gsm8k_train_split_leaves_out_the_shot_rows():
    folder = shared("gsm8k")
    data = load("gsm8k", folder, split="train", fewshot_pool=5)
    train = _jsonl_head(folder / "train.jsonl")
    assert data.fewshot == train[:5]
    assert data.count == len(train) - 5
    assert next(iter(data.rows)) == train[5]


# -- C-Eval --------------------------------------------------------------------------------

CEVAL_FIELDS = {"id", "question", "A", "B", "C", "D", "answer", "explanation", "subject", "subject_zh", "category"}


def test_ceval_val_rows_types_and_ids():
    data = load("ceval", shared("ceval"))
    rows = list(data.rows)
    assert data.count == len(rows) == 1346
    assert len({r["subject"] for r in rows}) == 52
    assert all(set(r) == CEVAL_FIELDS for r in rows)
    assert {r["answer"] for r in rows} == {"A", "B", "C", "D"}
    assert all(type(r["id"]) is int for r in rows)
    assert all(isinstance(r[c], str) for r in rows for c in "ABCD")  # numeric options stay text
    assert all(r["explanation"] == "" for r in rows)
    ids = [f"{r['subject']}/{r['id']}" for r in rows]
    assert len(set(ids)) == len(ids)
    assert {r["category"] for r in rows} == {"STEM", "Social Science", "Humanities", "Other"}
    assert all(r["subject_zh"] and r["subject_zh"] != r["subject"] for r in rows)


def test_ceval_rows_equal_the_csv_files():
    """datasets' csv reader must give exactly what the csv module reads (CRLF inside cells, numbers as text)."""
    folder = shared("ceval")
    expected = []
    for path in sorted((folder / "val").glob("*_val.csv")):
        with open(path, newline="", encoding="utf-8") as fh:
            for record in csv.DictReader(fh):
                expected.append({**record, "id": int(record["id"]), "subject": path.name[: -len("_val.csv")]})
    got = [
        {k: v for k, v in r.items() if k not in ("explanation", "subject_zh", "category")}
        for r in load("ceval", folder).rows
    ]
    assert got == expected


def test_ceval_fewshot_pool_is_dev_with_explanations():
    data = load("ceval", shared("ceval"))
    assert len(data.fewshot) == 260
    per_subject = Counter(r["subject"] for r in data.fewshot)
    assert len(per_subject) == 52 and set(per_subject.values()) == {5}
    assert all(set(r) == CEVAL_FIELDS for r in data.fewshot)
    assert sum(1 for r in data.fewshot if r["explanation"]) > 250


def test_ceval_dev_split_has_no_shot_pool():
    data = load("ceval", shared("ceval"), split="dev")
    assert data.count == 260
    assert data.fewshot == []


def test_ceval_category_and_subject_filters():
    folder = shared("ceval")
    stem = load("ceval", folder, categories=["STEM"])
    rows = list(stem.rows)
    assert rows and stem.count == len(rows) < 1346
    assert {r["category"] for r in rows} == {"STEM"}
    assert len({r["subject"] for r in rows}) == 20
    assert {r["category"] for r in stem.fewshot} == {"STEM"}
    two = load("ceval", folder, subjects=["logic", "law"])
    assert {r["subject"] for r in two.rows} == {"law", "logic"}
    # a single name is a list of one; the order of names does not matter
    assert load("ceval", folder, subjects=["law", "logic"]).fingerprint == two.fingerprint
    assert load("ceval", folder, subjects="logic").count == load("ceval", folder, subjects=["logic"]).count


def test_ceval_without_subject_mapping(tmp_path):
    folder = shared("ceval")
    (tmp_path / "val").mkdir()
    shutil.copy(folder / "val" / "logic_val.csv", tmp_path / "val")
    data = loaders.load("ceval", str(tmp_path))
    rows = list(data.rows)
    assert rows and {(r["subject"], r["subject_zh"], r["category"]) for r in rows} == {("logic", "logic", "Other")}
    assert data.fewshot == []  # no dev/ folder


# -- BBH -----------------------------------------------------------------------------------


def test_bbh_rows_and_ids():
    data = load("bbh", shared("bbh"))
    rows = list(data.rows)
    assert data.count == len(rows) == 6511
    per_task = Counter(r["task"] for r in rows)
    assert len(per_task) == 27
    assert per_task["causal_judgement"] == 187 and per_task["penguins_in_a_table"] == 146 and per_task["snarks"] == 178
    assert all(set(r) == {"task", "id", "input", "target"} for r in rows)
    assert all(isinstance(r["target"], str) and r["target"] for r in rows)
    assert rows[0]["id"] == f"{rows[0]['task']}/0"
    assert len({r["id"] for r in rows}) == len(rows)


def test_bbh_cot_fewshot():
    data = load("bbh", shared("bbh"))
    per_task = Counter(r["task"] for r in data.fewshot)
    assert len(per_task) == 27 and set(per_task.values()) == {3}
    for shot in data.fewshot:
        assert set(shot) == {"task", "input", "rationale", "target"}
        assert shot["input"] and not shot["input"].startswith("Q:")
        assert shot["rationale"] and not shot["rationale"].startswith("Let's think")
        assert "So the answer is" not in shot["rationale"]
        assert shot["target"] and not shot["target"].endswith(".")
    mc = [s["target"] for s in data.fewshot if s["task"] == "date_understanding"]
    assert all(t.startswith("(") and t.endswith(")") for t in mc)


def test_bbh_task_folder_single_file_and_task_option():
    folder = shared("bbh")
    everything = load("bbh", folder)
    assert load("bbh", folder / "bbh").fingerprint == everything.fingerprint  # cot-prompts found beside bbh/
    one = load("bbh", folder / "bbh" / "snarks.json")
    assert one.count == 178 and {r["task"] for r in one.fewshot} == {"snarks"}
    picked = load("bbh", folder, tasks=["snarks"])
    assert picked.count == 178 and [r["id"] for r in picked.rows][:2] == ["snarks/0", "snarks/1"]


def test_parse_cot_prompt():
    text = (
        "CANARY line: canary GUID 0000\n-----\nAdd small numbers.\n\n"
        "Q: 2 + 3 =\nA: Let's think step by step.\nTwo plus three is five. So the answer is 5.\n\n"
        "Q: Pick one:\nOptions:\n(A) red\n(B) blue\nA: Let's think step by step.\nBlue is asked.\nSo the answer is (B)."
    )
    shots = loaders.parse_cot_prompt(text, "toy", "toy.txt")
    assert shots == [
        {"task": "toy", "input": "2 + 3 =", "rationale": "Two plus three is five.", "target": "5"},
        {
            "task": "toy",
            "input": "Pick one:\nOptions:\n(A) red\n(B) blue",
            "rationale": "Blue is asked.",
            "target": "(B)",
        },
    ]
    with pytest.raises(HarnessError, match="toy.txt"):
        loaders.parse_cot_prompt("-----\nQ: no answer here\n", "toy", "toy.txt")


# -- laziness and fingerprints -----------------------------------------------------------


def test_rows_are_lazy_and_reiterable():
    data = load("gsm8k", shared("gsm8k"))
    assert not isinstance(data.rows, (list, tuple))
    assert len(data.rows) == data.count
    first = next(iter(data.rows))
    assert next(iter(data.rows)) == first


def test_fingerprint_stable_and_sensitive(tmp_path):
    folder = shared("mbpp")
    a = loaders.load("mbpp", str(folder)).fingerprint
    b = loaders.load("mbpp", str(folder)).fingerprint
    assert a == b and len(a) == 64
    assert loaders.load("mbpp", str(folder), {"split": "test"}).fingerprint == a  # a default spelt out
    assert loaders.load("mbpp", str(folder), {"split": "train"}).fingerprint != a
    # same bytes elsewhere: same fingerprint; one byte changed: a different one
    copy = tmp_path / "mbpp.jsonl"
    shutil.copy(folder / "mbpp.jsonl", copy)
    assert loaders.load("mbpp", str(copy)).fingerprint == a
    copy.write_bytes(copy.read_bytes().replace(b"minimum cost path", b"minimum-cost path", 1))
    assert loaders.load("mbpp", str(copy)).fingerprint != a


def test_fingerprints_differ_across_benchmarks_and_options():
    gsm = shared("gsm8k")
    fps = {
        load("gsm8k", gsm).fingerprint,
        load("gsm8k", gsm, split="train", fewshot_pool=5).fingerprint,
        load("ceval", shared("ceval")).fingerprint,
        load("ceval", shared("ceval"), categories=["STEM"]).fingerprint,
        load("bbh", shared("bbh")).fingerprint,
        load("bbh", shared("bbh"), tasks=["snarks"]).fingerprint,
    }
    assert len(fps) == 6


# -- errors --------------------------------------------------------------------------------


def test_missing_data_names_the_suite_and_how_to_give_it():
    with pytest.raises(HarnessError) as err:
        loaders.load("gsm8k", None)
    assert str(err.value) == (
        "suite 'gsm8k' needs data: give a path to the benchmark files or a hub id in the plan "
        "(suites: [{gsm8k: {data: PATH}}]) or with --data"
    )
    with pytest.raises(HarnessError, match="suite 'my-gsm' needs data"):
        loaders.load("gsm8k", "", suite="my-gsm")


def test_unknown_loader():
    with pytest.raises(
        HarnessError,
        match=r"unknown loader 'mmlu' \(known: bbh, bfcl, ceval, chartqa, docvqa, gsm8k, humaneval, mbpp, mmmu\)",
    ):
        loaders.load("mmlu", "x")


@pytest.mark.parametrize("data", ["./nowhere/test.jsonl", "/no/such/dir", "test.jsonl", "a/b/c"])
def test_missing_path(data):
    with pytest.raises(HarnessError, match="does not exist"):
        loaders.load("gsm8k", data)


def test_folder_without_the_file(tmp_path):
    with pytest.raises(
        HarnessError, match=r"holds no HumanEval file \(looked for HumanEval.jsonl.gz, HumanEval.jsonl\)"
    ):
        loaders.load("humaneval", str(tmp_path))
    with pytest.raises(HarnessError, match="no C-Eval val files"):
        loaders.load("ceval", str(tmp_path))
    with pytest.raises(HarnessError, match="holds no BBH task files"):
        loaders.load("bbh", str(tmp_path))


def test_hub_id_offline_fails_clearly():
    with pytest.raises(HarnessError) as err:
        loaders.load("gsm8k", "openai/gsm8k")
    message = str(err.value)
    assert "'openai/gsm8k'" in message and "not an existing path" in message and "hub" in message
    assert "offline" in message


def test_bad_options():
    with pytest.raises(
        HarnessError, match=r"unknown option\(s\) spilt for loader gsm8k \(known: config, fewshot_pool, split\)"
    ):
        loaders.load("gsm8k", "x", {"spilt": "test"})
    with pytest.raises(HarnessError, match=r"option split='dev' is not one of test, validation, train, prompt, all"):
        loaders.load("mbpp", "x", {"split": "dev"})
    with pytest.raises(HarnessError, match="fewshot_pool must be a whole number"):
        loaders.load("gsm8k", "x", {"fewshot_pool": -1})
    folder = shared("ceval")
    with pytest.raises(HarnessError, match="unknown C-Eval subject"):
        loaders.load("ceval", str(folder), {"subjects": ["astrology"]})
    with pytest.raises(HarnessError, match="unknown C-Eval categor"):
        loaders.load("ceval", str(folder), {"categories": ["Science"]})


def _write(path: Path, text: str, newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.replace("\n", newline), encoding="utf-8")
    return path


def test_malformed_jsonl_names_file_and_line(tmp_path):
    bad = _write(tmp_path / "test.jsonl", '{"question": "q1", "answer": "#### 1"}\n{"question": "q2", "answer": \n')
    with pytest.raises(HarnessError, match=re.escape(f"{bad}, line 2: not valid JSON")):
        loaders.load("gsm8k", str(bad))


def test_missing_field_names_file_and_line(tmp_path):
    bad = _write(tmp_path / "g" / "test.jsonl", '{"question": "q1", "answer": "#### 1"}\n\n{"question": "q2"}\n')
    with pytest.raises(HarnessError, match=re.escape(f"{bad}, line 3: field 'answer' is missing")):
        loaders.load("gsm8k", str(bad.parent))


def test_wrong_type_names_file_and_line(tmp_path):
    bad = _write(tmp_path / "mbpp.jsonl", '{"task_id": "eleven", "text": "t", "code": "c", "test_list": []}\n')
    with pytest.raises(HarnessError, match=re.escape(f"{bad}, line 1: field 'task_id' should be an integer")):
        loaders.load("mbpp", str(bad))


def test_malformed_ceval_rows(tmp_path):
    header = "id,question,A,B,C,D,answer\n"
    _write(tmp_path / "val" / "logic_val.csv", header + "0,q,1,2,3,4,A\n1,q,1,2,3,4,E\n", newline="\r\n")
    with pytest.raises(HarnessError, match=r"logic_val.csv, row 2: answer 'E' is not one of A, B, C, D"):
        loaders.load("ceval", str(tmp_path))
    _write(tmp_path / "val" / "logic_val.csv", header + "zero,q,1,2,3,4,A\n", newline="\r\n")
    with pytest.raises(HarnessError, match=r"logic_val.csv, row 1 \(line 2\): id 'zero' is not an integer"):
        loaders.load("ceval", str(tmp_path))
    _write(tmp_path / "val" / "logic_val.csv", "id,question,A,B,C,D\n0,q,1,2,3,4\n")
    with pytest.raises(HarnessError, match=r"logic_val.csv: the header row lacks column\(s\) answer"):
        loaders.load("ceval", str(tmp_path))


def test_ceval_keeps_na_like_cells_as_text(tmp_path):
    _write(
        tmp_path / "val" / "logic_val.csv",
        'id,question,A,B,C,D,answer\n7,"two\nlines",NA,None,0.50,,B\n',
        newline="\r\n",
    )
    (row,) = list(loaders.load("ceval", str(tmp_path)).rows)
    assert row["id"] == 7 and row["question"] == "two\r\nlines"
    assert [row[c] for c in "ABCD"] == ["NA", "None", "0.50", ""]


def test_malformed_bbh_example(tmp_path):
    bad = _write(tmp_path / "toy.json", json.dumps({"examples": [{"input": "x", "target": "y"}, {"input": "z"}]}))
    with pytest.raises(HarnessError, match=re.escape(f"{bad}, examples[1]: field 'target' is missing")):
        loaders.load("bbh", str(bad))
    bad.write_text('{"examples": [', encoding="utf-8")
    with pytest.raises(HarnessError, match=re.escape(f"{bad}, line 1: not valid JSON")):
        loaders.load("bbh", str(bad))


# Bytes that are not UTF-8 (a Latin-1 export, a truncated multi-byte character) on line 2 of each kind of file.
@pytest.mark.parametrize(
    "loader, name, good, bad",
    [
        (
            "gsm8k",
            "test.jsonl",
            b'{"question": "q1", "answer": "#### 1"}\n',
            b'{"question": "caf\xe9", "answer": "#### 2"}\n',
        ),
        (
            "gsm8k",
            "test.jsonl",
            b'{"question": "q1", "answer": "#### 1"}\n',
            b'{"question": "\xe4\xb8", "answer": "#### 2"}\n',
        ),
        (
            "humaneval",
            "he.jsonl",
            b'{"task_id": "t/0", "prompt": "p", "canonical_solution": "s", "test": "t", "entry_point": "f"}\n',
            b'{"task_id": "t/1", "prompt": "\xff", "canonical_solution": "s", "test": "t", "entry_point": "f"}\n',
        ),
        ("ceval", "val/logic_val.csv", b"id,question,A,B,C,D,answer\n", b"0,caf\xe9,1,2,3,4,A\n"),
        ("bbh", "toy.json", b'{"examples": [\n', b'{"input": "caf\xe9", "target": "y"}]}\n'),
    ],
)
def test_file_that_is_not_utf8_names_file_and_line(tmp_path, loader, name, good, bad):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(good + bad)
    where = tmp_path if loader == "ceval" else path
    with pytest.raises(HarnessError) as err:
        loaders.load(loader, str(where))
    assert f"{path}, line 2: not valid UTF-8" in str(err.value)
