"""Images in prompts end to end: suite items -> checked image parts -> the wire -> a fake server that decodes them."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.vision import (
    REPO,
    blind_responder,
    describe_responder,
    make_suite,
    png,
    png_header,
    request_images,
    seeing_responder,
    write_mmmu,
)

from harness.errors import HarnessError
from harness.providers.chat_format import openai_messages
from harness.providers.vision import image_tokens, rule_for
from harness.records import ImagePart, TextPart
from harness.suite import load_suite
from harness.suite.prompt import PromptBuilder


def harness(*args, cwd=None, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


def one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- the contract: images after the text of the last user message, in order ---------------------


def test_images_are_sent_after_the_text_in_item_order(tmp_path):
    folder = tmp_path / "s"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.png").write_bytes(png(10, 10, "first"))
    (folder / "sub" / "b.jpg").write_bytes(png(20, 12, fmt="JPEG"))
    make_suite(folder, [{"question": "Q?", "answer": "x", "images": ["a.png", "sub/b.jpg"]}])
    suite = load_suite(str(folder))
    prompt = PromptBuilder(suite).build(next(suite.items()))
    parts = prompt.messages[-1].content
    assert isinstance(parts[0], TextPart) and parts[0].text == "Q?"
    assert [p.source for p in parts[1:]] == ["a.png", "sub/b.jpg"]
    assert [p.media_type for p in parts[1:]] == ["image/png", "image/jpeg"]  # sniffed from the bytes
    wire = openai_messages(prompt)[-1]["content"]
    assert [w["type"] for w in wire] == ["text", "image_url", "image_url"]
    seen = request_images(openai_messages(prompt))
    assert [(i["format"], i["size"], i["answer"]) for i in seen] == [
        ("PNG", (10, 10), "first"),
        ("JPEG", (20, 12), None),
    ]
    # Stored and exported by name and hash, never the bytes.
    stored = json.dumps(prompt.to_json())
    assert "a.png" in stored and parts[1].sha256 in stored and base64.b64encode(parts[1].data).decode() not in stored


def test_a_template_may_place_images_itself(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "a.png").write_bytes(png(answer="A"))
    (folder / "b.png").write_bytes(png(answer="B"))
    make_suite(
        folder,
        [{"question": "Q?", "answer": "x", "images": ["a.png", "b.png"]}],
        template="Compare {{ image(2) }} with the other one. {{ question }}",
    )
    suite = load_suite(str(folder))
    parts = PromptBuilder(suite).build(next(suite.items())).messages[-1].content
    kinds = [(type(p).__name__, getattr(p, "source", getattr(p, "text", ""))) for p in parts]
    assert kinds == [
        ("TextPart", "Compare"),
        ("ImagePart", "b.png"),
        ("TextPart", "with the other one. Q?"),
        ("ImagePart", "a.png"),  # not placed by the template: after the text
    ]


def test_data_urls_and_the_encoding_is_done_once(tmp_path):
    data_url = "data:image/jpeg;base64," + base64.b64encode(png(8, 8)).decode()  # declared jpeg, really png
    folder = make_suite(tmp_path / "s", [{"question": "Q", "answer": "x", "images": [data_url]}])
    suite = load_suite(str(folder))
    part = PromptBuilder(suite).build(next(suite.items())).messages[-1].images[0]
    assert part.media_type == "image/png" and part.source.startswith("data:image/jpeg;base64,")
    assert part.data_url() is part.data_url()  # every retry reuses the one encoding


def test_max_edge_resizes_and_changes_the_content_hash(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "big.png").write_bytes(png(400, 200))
    make_suite(folder, [{"question": "Q", "answer": "x", "images": ["big.png"]}])
    before = load_suite(str(folder)).content_hash
    make_suite(
        folder, [{"question": "Q", "answer": "x", "images": ["big.png"]}], images={"max_edge": 100, "detail": "low"}
    )
    suite = load_suite(str(folder))
    part = PromptBuilder(suite).build(next(suite.items())).messages[-1].images[0]
    assert (part.width, part.height, part.detail) == (100, 50, "low")
    assert "PNG 100x50" in describe_responder("m", openai_messages(PromptBuilder(suite).build(next(suite.items()))))
    assert suite.content_hash != before
    (folder / "big.png").write_bytes(png(400, 200, color=(0, 0, 255)))  # new pixels, same name
    assert load_suite(str(folder)).content_hash != suite.content_hash


# -- bad images: one line naming the item, before anything is sent ------------------------------


def bad_cases(tmp_path: Path) -> dict[str, tuple[object, str]]:
    outside = tmp_path / "outside.png"
    outside.write_bytes(png())
    return {
        "missing": ("nope.png", "no such file"),
        "dotdot": ("../outside.png", "outside"),
        "symlink": ("link.png", "outside"),
        "absolute": (str(outside), "absolute path"),
        "text": ("notes.png", "not an image"),
        "truncated": ("cut.png", "truncated"),
        "truncated-jpeg": ("cut.jpg", "truncated"),
        "huge-pixels": ("wide.png", "pixels"),
        "bomb": ("bomb.png", "pixels"),
        "nul": ("a\x00b.png", "not a usable path"),
        "remote": ("https://example.com/x.png", "remote: send"),
        "bad-data-url": ("data:image/png;base64,@@@", "does not decode"),
        "not-a-list": (42, "must be a list"),
        "file-url": ("file:///etc/passwd", "only files"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "dotdot",
        "symlink",
        "absolute",
        "text",
        "truncated",
        "truncated-jpeg",
        "huge-pixels",
        "bomb",
        "nul",
        "remote",
        "bad-data-url",
        "not-a-list",
        "file-url",
    ],
)
def test_each_bad_image_is_one_line_naming_the_item(tmp_path, case):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "ok.png").write_bytes(png())
    (folder / "link.png").symlink_to(tmp_path / "outside.png")
    (folder / "notes.png").write_text("just text")
    (folder / "cut.png").write_bytes(png(300, 300, color=(1, 2, 3))[:200])
    jpeg = png(300, 300, fmt="JPEG")
    (folder / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "wide.png").write_bytes(png(9000, 5000))
    (folder / "bomb.png").write_bytes(png_header(30000, 30000))  # 900 Mpixels claimed in 60 bytes
    ref, needle = bad_cases(tmp_path)[case]
    rows = [
        {"question": "fine", "answer": "x", "images": ["ok.png"]},
        {"question": "bad", "answer": "x", "images": ref},
    ]
    make_suite(folder, rows, images={"max_pixels": 40_000_000})
    suite = load_suite(str(folder))
    with pytest.raises(HarnessError) as err:
        suite.check_images()
    message = str(err.value)
    assert "item s/1" in message and needle in message and "\n" not in message
    assert message.count(": image ") <= 1  # said once, not wrapped in another image message


def test_a_50_mb_image_is_refused_before_any_request(tmp_path, fake_server):
    folder = tmp_path / "suites" / "big"
    folder.mkdir(parents=True)
    (folder / "ok.png").write_bytes(png())
    with open(folder / "huge.png", "wb") as fh:  # a real PNG header followed by 50 MB
        fh.write(png())
        fh.write(os.urandom(1024) * (50 * 1024))
    rows = [
        {"question": "fine", "answer": "x", "images": ["ok.png"]},
        {"question": "big", "answer": "x", "images": ["huge.png"]},
    ]
    make_suite(folder, rows)
    plan = {"models": {"m": {"provider": "openai", "base_url": fake_server.base_url}}, "suites": [str(folder)]}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plan))
    proc = harness("run", "p.yaml", "--db", f"sqlite:///{tmp_path}/h.db", cwd=tmp_path)
    line = one_line_error(proc, "item big/1", "huge.png", "over the 20 MB limit", "images.max_bytes")
    assert "50" in line
    assert fake_server.state.requests == 0


def test_remote_urls_only_when_the_plan_allows(tmp_path, fake_server):
    folder = make_suite(
        tmp_path / "suites" / "web",
        [{"question": "Q", "answer": "x", "images": ["https://images.example/chart.png"]}],
    )
    plan = {"models": {"m": {"provider": "openai", "base_url": fake_server.base_url}}, "suites": [str(folder)]}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plan))
    one_line_error(harness("run", "p.yaml", "--db", f"sqlite:///{tmp_path}/h.db", cwd=tmp_path), "remote URL")
    assert fake_server.state.requests == 0
    fake_server.state.responder = describe_responder
    plan["suites"] = [{str(folder): {"images": {"remote": "send"}}}]
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plan))
    proc = harness("run", "p.yaml", "--db", f"sqlite:///{tmp_path}/h.db", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(x) for x in harness("export", "--db", f"sqlite:///{tmp_path}/h.db").stdout.splitlines()]
    assert rows[0]["completion"] == "url https://images.example/chart.png at 1"  # passed on, never fetched


@pytest.mark.parametrize("provider", ["llamacpp", "samples"])
def test_text_only_providers_refuse_an_image_suite(tmp_path, provider):
    plan = {
        "models": {"m": {"provider": provider, "path": str(tmp_path / "x")}},
        "suites": [{"chart-read": {"limit": 2}}],
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plan))
    one_line_error(
        harness("run", "p.yaml", "--db", f"sqlite:///{tmp_path}/h.db", cwd=tmp_path), "cannot take images", "chart-read"
    )


# -- tokens ------------------------------------------------------------------------------------


def test_image_token_rules_match_their_published_examples():
    # OpenAI's documented examples: 1024x1024 high = 765; 2048x4096 = 1105; low = 85.
    assert image_tokens(1024, 1024, "openai") == 765
    assert image_tokens(2048, 4096, "openai") == 1105
    assert image_tokens(4096, 8192, "openai", "low") == 85
    # Qwen2.5-VL: 28x28 pixels a token (+2 markers); Qwen3-VL: 32x32.
    assert image_tokens(280, 280, "patch28") == 102
    assert image_tokens(320, 320, "patch32") == 102
    assert image_tokens(1000, 1000, "claude") == 1333  # Anthropic: w*h/750
    assert rule_for("qwen3-vl-plus") == "patch32" and rule_for("gpt-4o") == "openai"
    assert rule_for("glm-4.6v") == "patch28" and rule_for("some-model") == "patch28"


def test_dry_run_counts_image_tokens(tmp_path, fake_server):
    plan = {
        "models": {
            "q": {
                "provider": "openai",
                "model": "qwen3-vl-plus",
                "base_url": fake_server.base_url,
                "price": {"input": 0.52, "output": 1},
            }
        },
        "suites": [{"chart-read": {"first": 2}}],
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plan))
    proc = harness("run", "p.yaml", "--dry-run", "--db", f"sqlite:///{tmp_path}/h.db", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "[image images/00-bar-revenue.png 480x320 sha256" in proc.stdout
    # 480x320 under Qwen3-VL's rule: 15 x 10 tokens + 2, for each of the 2 charts.
    assert "≈304 image tokens (patch32 rule" in proc.stdout
    assert fake_server.state.requests == 0


# -- bundled suites and MMMU, end to end --------------------------------------------------------


def vision_plan(tmp_path: Path, base_url: str, stream: bool) -> Path:
    mmmu = tmp_path / "MMMU" / "Art_Theory" / "validation-00000-of-00001.parquet"
    write_mmmu(mmmu)
    plan = {
        "name": "vision",
        "models": {
            "vl": {
                "provider": "openai",
                "model": "qwen3-vl-plus",
                "base_url": base_url,
                "stream": stream,
                "concurrency": 8,
            }
        },
        "suites": ["chart-read", "doc-read", "diagram-mcq", {"mmmu": {"data": str(tmp_path / "MMMU")}}],
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plan))
    return tmp_path / "p.yaml"


def scores(proc_stdout: str, db: str) -> dict[str, float]:
    rows = [json.loads(x) for x in harness("export", "--db", db).stdout.splitlines()]
    out: dict[str, list[float]] = {}
    for r in rows:
        assert not r["error"], r
        out.setdefault(r["suite"], []).append(r["score"])
    return {k: sum(v) / len(v) for k, v in out.items()}, rows


@pytest.mark.parametrize("stream", [False, True])
def test_a_seeing_model_reads_every_bundled_suite_and_mmmu(tmp_path, fake_server, stream):
    fake_server.state.responder = seeing_responder
    db = f"sqlite:///{tmp_path}/h.db"
    proc = harness(
        "run",
        str(vision_plan(tmp_path, fake_server.base_url, stream)),
        "--db",
        db,
        "--out",
        str(tmp_path / "r"),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    by_suite, rows = scores(proc.stdout, db)
    assert by_suite == {"chart-read": 1.0, "doc-read": 1.0, "diagram-mcq": 1.0, "mmmu": 1.0}
    assert sum(1 for r in rows if r["suite"] == "mmmu") == 7  # the open question is left out by default
    assert fake_server.state.requests == 40 * 3 + 7  # each item once


def test_a_blind_model_scores_near_chance(tmp_path, fake_server):
    fake_server.state.responder = blind_responder
    db = f"sqlite:///{tmp_path}/h.db"
    proc = harness("run", str(vision_plan(tmp_path, fake_server.base_url, False)), "--db", db, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    by_suite, _ = scores(proc.stdout, db)
    assert by_suite["chart-read"] == 0.0 and by_suite["doc-read"] < 0.05
    assert 0.1 <= by_suite["diagram-mcq"] <= 0.4  # always "A": about one in four


def test_bundled_suites_have_forty_items_and_their_own_reference_answers_pass():
    for name in ("chart-read", "doc-read", "diagram-mcq"):
        proc = harness("suites", "validate", name)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert load_suite(name).count() == 40
    langs = {i.fields["lang"] for i in load_suite("doc-read").items()}
    assert langs == {"en", "zh"}


def test_blind_responder_sanity():
    assert blind_responder("m", [{"role": "user", "content": "x"}]).startswith("Answer")
    assert ImagePart(data=b"x", media_type="image/png").sha256


# -- load profiles with images ---------------------------------------------------------------------


def test_load_sends_synthetic_images_the_server_decodes(tmp_path, fake_server):
    seen: list[tuple] = []

    def record(model, messages):
        images = request_images(messages)
        seen.append(tuple((i["format"], i["size"], i["position"]) for i in images))
        return "ok " * 3

    fake_server.state.responder = record
    plan = {
        "models": {"vl": {"provider": "openai", "model": "gpt-4o", "base_url": fake_server.base_url}},
        "suites": [{"chart-read": {"first": 2}}],
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plan))
    db = f"sqlite:///{tmp_path}/h.db"
    args = [
        "load",
        "p.yaml",
        "--db",
        db,
        "--concurrency",
        "2",
        "--requests",
        "4",
        "--images",
        "2",
        "--image-size",
        "64x48",
    ]
    dry = harness(*args, "--dry-run", "--json", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert fake_server.state.requests == 0
    proc = harness(*args, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    stage = json.loads(proc.stdout)["models"][0]["stages"][0]
    assert stage["ok"] == 4 and stage["errors"] == 0
    # Each request: the chart the suite names, then the two synthetic images, all decoded by the server.
    assert seen and all(
        s[0][:2] == ("PNG", (480, 320)) and [x[:2] for x in s[1:]] == [("JPEG", (64, 48))] * 2 for s in seen
    )
    one_line_error(harness(*args[:-2], "--image-size", "64by48", cwd=tmp_path), "--image-size", "WIDTHxHEIGHT")


def test_a_server_without_usage_gets_image_tokens_estimated_and_marked(tmp_path, fake_server):
    fake_server.state.responder = seeing_responder
    fake_server.state.faults.stream_usage = False  # llama.cpp's server sends no usage in streams
    plan = {
        "models": {
            "vl": {"provider": "openai", "model": "qwen3-vl-plus", "base_url": fake_server.base_url, "stream": True}
        },
        "suites": [{"chart-read": {"first": 2}}],
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plan))
    db = f"sqlite:///{tmp_path}/h.db"
    assert harness("run", "p.yaml", "--db", db, cwd=tmp_path).returncode == 0
    rows = [json.loads(x) for x in harness("export", "--db", db).stdout.splitlines()]
    for r in rows:
        text_only = 3 + 4 + len(r["prompt"][-1]["content"][0]["text"]) // 4 + 1
        assert r["usage_estimated"] and r["prompt_tokens"] == text_only + 152  # 480x320: 15 x 10 + 2


def test_images_through_the_batch_api(tmp_path, fake_server):
    """A provider batch carries the same body: the batch lines' images are decoded by the fake's batch path."""
    fake_server.state.responder = seeing_responder
    plan = {
        "models": {"vl": {"provider": "openai", "model": "gpt-4o", "base_url": fake_server.base_url, "batch": True}},
        "suites": [{"chart-read": {"first": 3}}, {"diagram-mcq": {"first": 3}}],
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plan))
    db = f"sqlite:///{tmp_path}/h.db"
    env_poll = {**os.environ, "HARNESS_BATCH_POLL_S": "0.02", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "p.yaml", "--db", db],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env_poll,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(x) for x in harness("export", "--db", db).stdout.splitlines()]
    assert len(rows) == 6 and all(r["score"] == 1.0 and not r["error"] for r in rows)
    assert fake_server.state.batch.created == 1


def test_the_fake_counts_image_tokens_as_a_vision_server_does(tmp_path, fake_server):
    fake_server.state.responder = seeing_responder
    plan = {
        "models": {"vl": {"provider": "openai", "base_url": fake_server.base_url}},
        "suites": [{"chart-read": {"first": 1}}],
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plan))
    db = f"sqlite:///{tmp_path}/h.db"
    assert harness("run", "p.yaml", "--db", db, cwd=tmp_path).returncode == 0
    (row,) = [json.loads(x) for x in harness("export", "--db", db).stdout.splitlines()]
    words = len(row["prompt"][-1]["content"][0]["text"].split())
    assert row["prompt_tokens"] == words + 85 and not row["usage_estimated"]  # reported, not estimated


def test_a_paced_model_counts_image_tokens_against_its_tpm(tmp_path, fake_server):
    """tpm pacing reserves each request's image tokens too (runs through the rate limiter's path)."""
    fake_server.state.responder = seeing_responder
    model = {"provider": "openai", "model": "gpt-4o", "base_url": fake_server.base_url, "rpm": 60000, "tpm": 10_000_000}
    plan = {"models": {"vl": model}, "suites": [{"chart-read": {"first": 3}}]}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plan))
    db = f"sqlite:///{tmp_path}/h.db"
    proc = harness("run", "p.yaml", "--db", db, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(x) for x in harness("export", "--db", db).stdout.splitlines()]
    assert len(rows) == 3 and all(r["score"] == 1.0 for r in rows)
