"""Responders for the fake server that look at the images a request carries (Pillow decodes every one).

`seeing_responder` answers from what the image holds: the "answer" text chunk the bundled suites'
generator writes into each PNG (or a note that an image had none), so a right answer proves the bytes
arrived intact, in the right message and order; `describe_responder` reports each image's format and
size; `blind_responder` ignores images, as a text-only model would.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import yaml


def request_images(messages: list[dict]) -> list[dict]:
    """Every image of the last user message, decoded: {format, size, answer, detail, position}."""
    from PIL import Image

    user = [m for m in messages if m.get("role") == "user"]
    content = user[-1].get("content") if user else None
    found = []
    if not isinstance(content, list):
        return found
    for position, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "image_url":
            continue
        url = part["image_url"]["url"]
        head, _, payload = url.partition(",")
        if not head.startswith("data:") or not head.endswith(";base64"):
            found.append({"url": url, "position": position})
            continue
        data = base64.b64decode(payload, validate=True)
        image = Image.open(io.BytesIO(data))
        image.load()  # a truncated or corrupted upload fails here, as it would at a real server
        declared = head[5:].split(";")[0]
        assert declared == Image.MIME[image.format], (declared, image.format)  # the media type matches the bytes
        found.append(
            {
                "format": image.format,
                "size": image.size,
                "answer": image.text.get("answer") if hasattr(image, "text") else None,
                "detail": part["image_url"].get("detail"),
                "position": position,
            }
        )
    return found


def seeing_responder(model: str, messages: list[dict]) -> str:
    images = request_images(messages)
    answers = [i.get("answer") for i in images if i.get("answer")]
    if not answers:
        return "Answer: I see no image."
    return "Answer: " + " / ".join(answers)


def describe_responder(model: str, messages: list[dict]) -> str:
    parts = []
    for i in request_images(messages):
        if "url" in i:
            parts.append(f"url {i['url']} at {i['position']}")
        else:
            parts.append(f"{i['format']} {i['size'][0]}x{i['size'][1]} at {i['position']} answer={i['answer']}")
    return "; ".join(parts) or "no images"


def blind_responder(model: str, messages: list[dict]) -> str:
    """A model that cannot see: a fixed guess for every question."""
    return "Answer: A. 50"


REPO = Path(__file__).resolve().parents[2]


def png(width=40, height=30, answer=None, color=(200, 30, 30), fmt="PNG") -> bytes:
    from PIL import Image, PngImagePlugin

    image = Image.new("RGB", (width, height), color)
    out = io.BytesIO()
    if fmt == "PNG" and answer is not None:
        info = PngImagePlugin.PngInfo()
        info.add_text("answer", answer)
        image.save(out, format="PNG", pnginfo=info)
    else:
        image.save(out, format=fmt)
    return out.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming this size, then IEND: what a decompression bomb shows first."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def make_suite(folder: Path, rows: list[dict], template="{{ question }}", images: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "name": folder.name,
        "data": "items.jsonl",
        "reference_field": "answer",
        "template": "prompt.j2",
        "images_field": "images",
        "grader": {"name": "exact", "options": {"extract": "answer:"}},
        "generation": {"max_tokens": 16},
    }
    if images:
        config["images"] = images
    (folder / "suite.yaml").write_text(yaml.safe_dump(config))
    (folder / "prompt.j2").write_text(template)
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def write_mmmu(path: Path, n: int = 8) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for i in range(n):
        letter = "ABCD"[i % 4]
        rows.append(
            {
                "id": f"validation_Art_Theory_{i + 1}",
                "question": f"<image 1> Which painting is shown? ({i})",
                "options": str(["Mona Lisa", "The Scream", "Starry Night", "Guernica"]),
                "explanation": "",
                "image_1": {"bytes": png(32 + i, 24, answer=letter), "path": f"img{i}.png"},
                "image_2": None,
                "img_type": "['Paintings']",
                "answer": letter,
                "topic_difficulty": "Easy",
                "question_type": "multiple-choice" if i < n - 1 else "open",
                "subfield": "Art History",
            }
        )
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("question", pa.string()),
            ("options", pa.string()),
            ("explanation", pa.string()),
            ("image_1", image_type),
            ("image_2", image_type),
            ("img_type", pa.string()),
            ("answer", pa.string()),
            ("topic_difficulty", pa.string()),
            ("question_type", pa.string()),
            ("subfield", pa.string()),
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
