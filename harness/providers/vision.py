"""Which providers take images, and how many prompt tokens an image costs when a server reports none.

Estimates follow each family's published rule, picked from the API model name:
- OpenAI (gpt-4o, gpt-4.1, gpt-5, o1/o3/o4): fit within 2048x2048, then shrink the short side to 768;
  85 tokens + 170 per 512-pixel tile; `detail: low` is 85 flat.
- Qwen3-VL: 16-pixel patches merged 2x2, so one token per 32x32 pixels (sides rounded to 32), + 2
  for the vision start/end markers. Qwen2-VL / Qwen2.5-VL / GLM-4.xV: 14-pixel patches merged 2x2, one
  token per 28x28 pixels, + 2. Both within their processors' default pixel bounds.
- Claude: width x height / 750 after fitting the long side within 1568.
- Anything else: the 28x28-pixel rule (the most common open-weight layout), stated as the default.
Every estimate is flagged (`usage_estimated`) and shown with ≈, like text estimates.
"""

from __future__ import annotations

import math
from typing import Iterable

from harness.errors import HarnessError
from harness.records import ImagePart, Prompt

DEFAULT_RULE = "patch28"
# What an image of unknown size (a URL the server fetches) is assumed to be: a 1024x1024 picture.
UNKNOWN_SIZE = (1024, 1024)
_NO_IMAGES = {"llamacpp": "the embedded llama.cpp model reads text only", "samples": "recorded samples have no images"}


def accepts_images(provider: str) -> bool:
    """Whether a provider can send image parts: what its registration declares."""
    from harness.providers.registry import capabilities_of

    return capabilities_of(provider).images


def refuse_images(model: str, provider: str, suite: str) -> None:
    if not accepts_images(provider):
        raise HarnessError(
            f"model '{model}' (provider {provider}) cannot take images ({_NO_IMAGES.get(provider, 'its provider declares no image capability')}), "
            f"but suite '{suite}' sends them; use an OpenAI-compatible vision model or drop the suite"
        )


def rule_for(api_model: str) -> str:
    name = api_model.lower()
    if "qwen3-vl" in name or "qwen3vl" in name:
        return "patch32"
    if any(k in name for k in ("qwen2-vl", "qwen2.5-vl", "qwen-vl", "qwen2_5_vl", "qvq")) or (
        "glm" in name and "v" in name.split("glm", 1)[1]
    ):
        return "patch28"
    if "claude" in name:
        return "claude"
    if name.startswith(("gpt-4o", "gpt-4.1", "gpt-4-turbo", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")):
        return "openai"
    return DEFAULT_RULE


def _patch_tokens(width: int, height: int, unit: int, min_pixels: int, max_pixels: int) -> int:
    """Qwen-VL's smart_resize: sides rounded to `unit`, area kept within [min_pixels, max_pixels]."""
    h = max(unit, round(height / unit) * unit)
    w = max(unit, round(width / unit) * unit)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(unit, math.floor(height / beta / unit) * unit)
        w = max(unit, math.floor(width / beta / unit) * unit)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / unit) * unit
        w = math.ceil(width * beta / unit) * unit
    return (h // unit) * (w // unit) + 2


def image_tokens(width: int, height: int, rule: str, detail: str | None = None) -> int:
    """Estimated prompt tokens of one image of this size under a family's rule."""
    if width <= 0 or height <= 0:
        width, height = UNKNOWN_SIZE
    if rule == "openai":
        if detail == "low":
            return 85
        scale = min(1.0, 2048 / max(width, height))
        w, h = width * scale, height * scale
        scale = min(1.0, 768 / min(w, h))
        w, h = w * scale, h * scale
        return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)
    if rule == "claude":
        scale = min(1.0, 1568 / max(width, height))
        return max(1, round(width * scale * height * scale / 750))
    if rule == "patch32":
        return _patch_tokens(width, height, 32, 64 * 32 * 32, 16384 * 32 * 32)
    return _patch_tokens(width, height, 28, 4 * 28 * 28, 16384 * 28 * 28)


def prompt_images(prompt: Prompt) -> Iterable[ImagePart]:
    for message in prompt.messages:
        yield from message.images


def prompt_image_tokens(prompt: Prompt, api_model: str) -> int:
    """Estimated tokens of all images of a prompt for this model (0 for a text prompt)."""
    rule = rule_for(api_model)
    return sum(image_tokens(p.width, p.height, rule, p.detail) for p in prompt_images(prompt))
