"""MMMU, ChartQA and DocVQA loaders on small files written here in each benchmark's published layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.vision import png, request_images, write_mmmu

from harness.errors import HarnessError
from harness.graders import grade
from harness.plan import SuiteRef
from harness.providers.chat_format import openai_messages
from harness.suite import load_suite
from harness.suite.loaders import load
from harness.suite.prompt import PromptBuilder


def write_chartqa(root: Path) -> Path:
    """ChartQA's release: test/test_human.json, test/test_augmented.json, test/png/<imgname>."""
    split = root / "test"
    (split / "png").mkdir(parents=True)
    human = [
        {"imgname": "1001.png", "query": "What is the value of Japan?", "label": "42.5"},
        {"imgname": "1002.png", "query": "Which country is highest?", "label": "Brazil"},
    ]
    augmented = [{"imgname": "2001.png", "query": "What is the percentage in 2010?", "label": "37"}]
    (split / "test_human.json").write_text(json.dumps(human))
    (split / "test_augmented.json").write_text(json.dumps(augmented))
    for entry in human + augmented:
        (split / "png" / entry["imgname"]).write_bytes(png(50, 40, entry["label"]))
    return split


def write_docvqa(root: Path) -> Path:
    """DocVQA task 1: val_v1.0.json ({"data": [...]}) with documents/<name>.png beside it."""
    (root / "documents").mkdir(parents=True)
    data = [
        {
            "questionId": 49153,
            "question": "What is the ‘actual’ value per 1000, during the year 1975?",
            "question_types": ["figure/diagram"],
            "image": "documents/pybv0228_81.png",
            "docId": 14465,
            "ucsf_document_id": "pybv0228",
            "ucsf_document_page_no": "81",
            "answers": ["0.28"],
            "data_split": "val",
        },
        {
            "questionId": 24580,
            "question": "What is name of university?",
            "question_types": ["others"],
            "image": "documents/nkbl0226_1.png",
            "docId": 2754,
            "ucsf_document_id": "nkbl0226",
            "ucsf_document_page_no": "1",
            "answers": ["university of california", "University of California", "university of california, san diego"],
            "data_split": "val",
        },
    ]
    doc = {"dataset_name": "docvqa", "dataset_split": "val", "dataset_version": "1.0", "data": data}
    (root / "val_v1.0.json").write_text(json.dumps(doc))
    for entry in data:
        (root / entry["image"]).write_bytes(png(60, 80, entry["answers"][0]))
    return root


def test_mmmu_rows_options_and_embedded_images(tmp_path):
    write_mmmu(tmp_path / "MMMU" / "Art_Theory" / "validation-00000-of-00001.parquet", n=5)
    write_mmmu(tmp_path / "MMMU" / "Art_Theory" / "dev-00000-of-00001.parquet", n=2)
    data = load("mmmu", str(tmp_path / "MMMU"))
    rows = list(data.rows)
    assert data.count == len(rows) == 4  # validation only, the open question left out
    assert (
        rows[0]["subject"] == "Art_Theory"
        and rows[0]["options"][2] == "Starry Night"
        and rows[0]["C"] == "Starry Night"
    )
    assert len(rows[0]["images"]) == 1 and rows[0]["images"][0]["bytes"].startswith(b"\x89PNG")
    assert len(list(load("mmmu", str(tmp_path / "MMMU"), {"question_type": "all"}).rows)) == 5
    suite = load_suite(SuiteRef(name="mmmu", data=str(tmp_path / "MMMU")))
    item = next(suite.items())
    prompt = PromptBuilder(suite).build(item)
    assert "A. Mona Lisa" in prompt.messages[-1].text and "D. Guernica" in prompt.messages[-1].text
    assert request_images(openai_messages(prompt))[0]["answer"] == item.reference
    assert prompt.messages[-1].images[0].source == "img0.png"


def test_mmmu_bad_files_are_one_line(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "validation-0.parquet").write_text("not parquet")
    with pytest.raises(HarnessError, match="not a parquet file"):
        load("mmmu", str(tmp_path / "x"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(HarnessError, match="no validation"):
        load("mmmu", str(tmp_path / "empty"))


def test_chartqa_json_and_png_folder(tmp_path):
    split = write_chartqa(tmp_path)
    suite = load_suite(SuiteRef(name="chartqa", data=str(split)))
    items = list(suite.items())
    assert [i.id for i in items] == ["augmented/0", "human/0", "human/1"]
    suite.check_images()
    builder = PromptBuilder(suite)
    for item in items:
        seen = request_images(openai_messages(builder.build(item)))
        assert seen[0]["answer"] == item.reference
        assert grade("relaxed", f"Answer: {item.reference}", item).passed
    only_human = load_suite(SuiteRef(name="chartqa", data=str(split), options={"parts": ["human"]}))
    assert only_human.count() == 2 and only_human.content_hash != suite.content_hash


def test_chartqa_missing_png_names_the_item(tmp_path):
    split = write_chartqa(tmp_path)
    (split / "png" / "1002.png").unlink()
    suite = load_suite(SuiteRef(name="chartqa", data=str(split)))
    with pytest.raises(HarnessError, match=r"item human/1: image png/1002.png: no such file"):
        suite.check_images()


def test_docvqa_json_and_documents(tmp_path):
    root = write_docvqa(tmp_path / "docvqa")
    suite = load_suite(SuiteRef(name="docvqa", data=str(root)))
    items = list(suite.items())
    assert [i.id for i in items] == ["49153", "24580"]
    assert items[1].reference[2] == "university of california, san diego"
    suite.check_images()
    seen = request_images(openai_messages(PromptBuilder(suite).build(items[0])))
    assert seen[0]["size"] == (60, 80) and seen[0]["answer"] == "0.28"
    assert grade("anls", "Answer: University of California", items[1]).score == 1.0
    assert grade("anls", "Answer: univ of california", items[1]).score == pytest.approx(1 - 6 / 24)


def test_docvqa_bad_json(tmp_path):
    (tmp_path / "val_v1.0.json").write_text(json.dumps({"data": [{"question": "q"}]}))
    with pytest.raises(HarnessError, match=r"data\[0\]: needs question and image"):
        load("docvqa", str(tmp_path))
