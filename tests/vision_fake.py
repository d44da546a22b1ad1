"""Responders for the fake server that look at the images a request carries (Pillow decodes every one).

`seeing_responder` answers from what the image holds: the "answer" text chunk the bundled suites'
generator writes into each PNG (or a note that an image had none), so a right answer proves the bytes
arrived intact, in the right message and order; `describe_responder` reports each image's format and
size; `blind_responder` ignores images, as a text-only model would.
"""

from __future__ import annotations

import base64
import io


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
