"""Sample pages with images, checked in headless Chromium: thumbnails inline within the CSP, full images
linked from the run's folder, hostile file names shown as text, an image that changed never shown."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import yaml
from support.browser import check_page as _check_page
from support.browser import screenshot_dir as _screenshot_dir
from support.vision import REPO, make_suite, png, seeing_responder

from harness.report import pages

EVIL = "<img src=x onerror=\"document.title='PWNED'\">.png"


def run_plan(tmp_path: Path, base_url: str) -> tuple[str, Path, Path]:
    folder = tmp_path / "suites" / "evil-vision"
    folder.mkdir(parents=True)
    (folder / EVIL).write_bytes(png(300, 200, answer="</figcaption><script>document.title='PWNED'</script>"))
    make_suite(folder, [{"question": "What does it say?", "answer": "x", "images": [EVIL]}])
    plan = {
        "name": "vision-report",
        "models": {"vl": {"provider": "openai", "model": "qwen3-vl-plus", "base_url": base_url}},
        "suites": [{"chart-read": {"first": 3}}, {"doc-read": {"first": 1}}, str(folder)],
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plan))
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "p.yaml", "--db", "sqlite:///h.db", "--out", "reports"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("report: "))
    index = tmp_path / line.split(": ", 1)[1]
    run_id = index.parent.name
    return run_id, index.parent, folder


def test_sample_pages_show_thumbnails_that_open_the_full_image(browser, tmp_path, fake_server):  # noqa: F811
    fake_server.state.responder = seeing_responder
    run_id, run_folder, evil_folder = run_plan(tmp_path, fake_server.base_url)
    shots = _screenshot_dir(tmp_path)

    chart = run_folder / pages.cell_folder("vl", "chart-read") / "all-1.html"
    state = _check_page(browser, chart)
    assert state["articles"] == 3 and len(state["images"]) == 3  # one thumbnail per sample, loaded, data: only
    assert all(w <= 240 for _, w, _ in state["images"])
    assert "images/00-bar-revenue.png · 480×320 · sha256" in state["text"]
    links = browser.js("return Array.from(document.querySelectorAll('.images a')).map(a => a.href)")
    assert len(links) == 3 and all("/images/" in h and h.endswith(".png") for h in links)
    browser.screenshot(shots / "vision-samples-chart.png")
    browser.get(links[0])  # the full image, from the run's folder
    full = browser.js(
        "return [document.images.length, document.images[0].naturalWidth, document.images[0].naturalHeight]"
    )
    assert full == [1, 480, 320]

    doc = run_folder / pages.cell_folder("vl", "doc-read") / "all-1.html"
    _check_page(browser, doc)
    browser.screenshot(shots / "vision-samples-doc.png")

    evil = run_folder / pages.cell_folder("vl", "evil-vision") / "all-1.html"
    state = _check_page(browser, evil)  # no script, no handler, title not PWNED
    assert EVIL in state["text"] and len(state["images"]) == 1

    # The image changes after the run: the page names it and says why, and shows no wrong picture.
    (evil_folder / EVIL).write_bytes(png(300, 200, color=(0, 90, 0)))
    subprocess.run(
        [sys.executable, "-m", "harness", "report", "--db", "sqlite:///h.db", "--out", "again"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=300,
        check=True,
    )
    again = tmp_path / "again" / run_id / pages.cell_folder("vl", "evil-vision") / "all-1.html"
    state = _check_page(browser, again)
    assert state["images"] == [] and "the image has changed since the run sent it" in state["text"]


def test_export_names_images_by_source_and_hash(tmp_path, fake_server):
    fake_server.state.responder = seeing_responder
    run_plan(tmp_path, fake_server.base_url)
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "export", "--db", "sqlite:///h.db"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    rows = [json.loads(x) for x in proc.stdout.splitlines()]
    chart = next(r for r in rows if r["suite"] == "chart-read")
    image = chart["prompt"][-1]["content"][1]
    sent = (REPO / "suites" / "chart-read" / "images" / "00-bar-revenue.png").read_bytes()  # sent unchanged
    assert image["source"] == "images/00-bar-revenue.png" and image["sha256"] == hashlib.sha256(sent).hexdigest()
    assert "base64" not in proc.stdout
