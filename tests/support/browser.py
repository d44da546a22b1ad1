"""Headless Chromium for the report tests: a minimal W3C WebDriver client (no selenium) and the checks
every rendered page must pass (no script runs, every chart loads, no console errors)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from support.servers import free_port

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--hide-scrollbars",
    "--window-size=1280,1600",
]


def find_executable(*names: str) -> str | None:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


class WebDriver:
    """The few W3C WebDriver commands the test needs, over HTTP with urllib (no selenium)."""

    def __init__(self, chromedriver: str, chromium: str, profile: Path, log_path: Path):
        self.port = free_port()
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [chromedriver, f"--port={self.port}", "--allowed-ips=127.0.0.1"], stdout=self._log, stderr=subprocess.STDOUT
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self.session = None
        deadline = time.monotonic() + 30
        while True:
            try:
                if self._call("GET", "/status")["ready"]:
                    break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError(f"chromedriver did not start (see {log_path})")
            time.sleep(0.1)
        caps = {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]},
            "goog:loggingPrefs": {"browser": "ALL"},
        }
        try:
            self.session = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})["sessionId"]
        except Exception:
            self.close()
            raise

    def _call(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else (b"{}" if method == "POST" else None)
        req = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.loads(resp.read() or b"{}").get("value")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"WebDriver {method} {path}: {exc.code} {exc.read()[:500]!r}") from None

    def cmd(self, method: str, path: str, body: dict | None = None):
        return self._call(method, f"/session/{self.session}{path}", body)

    def get(self, url: str) -> None:
        self.cmd("POST", "/url", {"url": url})

    def title(self) -> str:
        return self.cmd("GET", "/title")

    def js(self, script: str, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def browser_log(self) -> list[dict]:
        try:
            return self.cmd("POST", "/se/log", {"type": "browser"}) or []
        except RuntimeError:  # older chromedrivers only know the legacy endpoint
            return self.cmd("POST", "/log", {"type": "browser"}) or []

    def screenshot(self, path: Path, full_height: bool = True) -> None:
        if full_height:
            height = min(int(self.js("return document.documentElement.scrollHeight")), 8000)
            self.cmd("POST", "/window/rect", {"width": 1280, "height": max(600, height)})
        path.write_bytes(base64.b64decode(self.cmd("GET", "/screenshot")))

    def close(self) -> None:
        if self.session is not None:
            try:
                self.cmd("DELETE", "")
            except Exception:
                pass
            self.session = None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def screenshot_dir(tmp_path: Path) -> Path:
    """Screenshots go to $HARNESS_SCREENSHOTS when set (CI keeps them), else the test's tmp folder."""
    folder = Path(os.environ.get("HARNESS_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def check_page(browser: WebDriver, path: Path) -> dict:
    browser.get(path.as_uri())
    assert browser.title() != "PWNED", f"an injected script ran on {path}"
    state = browser.js("""
        return {
          ready: document.readyState,
          title: document.title,
          scripts: document.scripts.length,
          handlers: document.querySelectorAll('[onerror],[onload],[onclick]').length,
          images: Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.src.slice(0, 22)]),
          text: document.body.innerText,
          leaderboards: document.querySelectorAll('table.leaderboard tbody tr').length,
          articles: document.querySelectorAll('article.sample').length,
        };""")
    errors = [e for e in browser.browser_log() if e.get("level") in ("SEVERE", "WARNING")]
    assert not errors, f"console messages on {path.name}: {errors}"
    assert state["ready"] == "complete"
    assert state["scripts"] == 0 and state["handlers"] == 0, "no script element or inline handler in the DOM"
    for complete, width, src in state["images"]:
        assert complete and width > 0, f"image not loaded on {path.name}: {src}"
        assert src.startswith("data:image/png;base64")
    return state
