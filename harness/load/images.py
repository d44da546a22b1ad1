"""Synthetic images for `harness load --images N --image-size WxH`: vision requests have their own TTFT.

Each image is a seeded JPEG of coloured blocks and text (compressible like a photo or chart, not
noise), different for every request body so a server's image cache does not flatter it.
"""

from __future__ import annotations

import io
import random
import re

from harness.errors import HarnessError
from harness.records import ImagePart

MAX_SIDE = 8192


def parse_image_size(text: str | None) -> tuple[int, int]:
    """ "1024x768" -> (1024, 768); anything else is a one-line error."""
    if text is None:
        return (1024, 1024)
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not match or not all(1 <= int(v) <= MAX_SIDE for v in match.groups()):
        raise HarnessError(f"--image-size {text!r}: write WIDTHxHEIGHT, each 1-{MAX_SIDE} pixels (e.g. 1024x1024)")
    return int(match.group(1)), int(match.group(2))


def synthetic_image(width: int, height: int, seed: int) -> ImagePart:
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    image = Image.new("RGB", (width, height), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(24):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1, y1 = (
            min(width, x0 + rng.randrange(8, max(9, width // 3))),
            min(height, y0 + rng.randrange(8, max(9, height // 3))),
        )
        draw.rectangle((x0, y0, x1, y1), fill=tuple(rng.randrange(256) for _ in range(3)))
    for _ in range(12):
        draw.text((rng.randrange(width), rng.randrange(height)), f"{rng.randrange(10**6)}", fill=(0, 0, 0))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return ImagePart(
        data=out.getvalue(), media_type="image/jpeg", source=f"synthetic-{seed}.jpg", width=width, height=height
    )
