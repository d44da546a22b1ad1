"""The images of sample pages: the full image copied into the report folder, a small thumbnail inlined.

The store keeps an image's source and sha256, never its bytes; the report reads the suite again
(as the run's plan named it), rebuilds the item's images with the same settings and keeps only
those whose sha256 matches what was sent. A page shows the thumbnail as a data: URI (the CSP allows
no other image source) linking to `images/<sha256>.<ext>` in the run's folder; an image that
can no longer be found or has changed is named in text instead, never shown wrong.
"""

from __future__ import annotations

import base64
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

THUMB_EDGE = 240
_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}


@dataclass(frozen=True)
class ShownImage:
    label: str  # where the suite named it (path or URL), for the caption and alt text
    sha256: str
    thumb: str = ""  # data: URI of the thumbnail ("" when the bytes could not be found)
    href: str = ""  # the full image, relative to the sample page
    width: int = 0
    height: int = 0
    note: str = ""  # why it is not shown


def stored_images(messages_json: str | None) -> list[dict[str, Any]]:
    """The image parts of a stored prompt ({source, sha256, width, height, ...}), in order."""
    if not messages_json:
        return []
    try:
        data = json.loads(messages_json)
    except ValueError:
        return []
    messages = data.get("messages") if isinstance(data, dict) else data
    found = []
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") == "image" and isinstance(part.get("sha256"), str):
                found.append(part)
    return found


class ImageShelf:
    """Finds, copies and thumbnails the images of one run's samples (each image once)."""

    def __init__(self, run_folder: Path, plan: dict):
        self.folder = run_folder / "images"
        self.plan = plan
        self._suites: dict[str, Any] = {}  # suite name -> (Suite, PromptBuilder, {item id: Item}) or None
        self._done: dict[str, ShownImage] = {}

    def _suite(self, name: str):
        if name not in self._suites:
            self._suites[name] = None
            try:
                from harness.plan import SuiteRef
                from harness.suite import load_suite
                from harness.suite.prompt import PromptBuilder

                entry = next((s for s in self.plan.get("suites") or () if s.get("name") == name), {"name": name})
                fields = {k: v for k, v in entry.items() if k in SuiteRef.__dataclass_fields__}
                suite = load_suite(SuiteRef(**fields))
                self._suites[name] = (suite, PromptBuilder(suite), {i.id: i for i in suite.items()})
            except Exception:  # a suite that moved or no longer loads: its images are named, not shown
                self._suites[name] = None
        return self._suites[name]

    def shown(self, suite: str, item_id: str, messages_json: str | None, page_folder: Path) -> list[ShownImage]:
        parts = stored_images(messages_json)
        if not parts:
            return []
        out = []
        for part in parts:
            sha = part["sha256"]
            label = str(part.get("source") or sha[:12])
            if sha not in self._done:
                self._done[sha] = self._load(suite, item_id, sha, label)
            found = self._done[sha]
            if found.thumb:
                href = os.path.relpath(self.folder / found.href, page_folder).replace(os.sep, "/")
                out.append(ShownImage(label, sha, found.thumb, href, found.width, found.height))
            else:
                out.append(ShownImage(label, sha, note=found.note))
        return out

    def _load(self, suite: str, item_id: str, sha: str, label: str) -> ShownImage:
        if label.startswith(("http://", "https://")):
            return ShownImage(label, sha, note="a remote URL the server fetched; not copied into the report")
        loaded = self._suite(suite)
        item = loaded[2].get(item_id) if loaded else None
        if item is None:
            return ShownImage(label, sha, note="not found: the suite or its data is no longer where the run read it")
        try:
            parts = loaded[1].images(item)
        except Exception:
            parts = []
        part = next((p for p in parts if p.sha256 == sha), None)
        if part is None:
            return ShownImage(label, sha, note="not shown: the image has changed since the run sent it")
        name = f"{sha}.{_EXT.get(part.media_type, 'bin')}"
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / name
        if not target.exists():
            tmp = target.with_name(f".{name}.tmp")
            tmp.write_bytes(part.data)
            os.replace(tmp, target)
        return ShownImage(label, sha, _thumbnail(part.data), name, part.width, part.height)


def _thumbnail(data: bytes) -> str:
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image.thumbnail((THUMB_EDGE, THUMB_EDGE))
    if image.mode not in ("RGB", "RGBA", "L", "P"):
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")
