"""Token counts when a server reports none: a documented estimate from the text itself.

Used for remote models whose server sends no `usage` (llama.cpp's server in streams, gateways
that drop it) or an unusable one, for the rpm/tpm pacing and for the dry-run's cost estimate.
The estimate is about 4 characters a token for text in Latin script (the ratio of BPE
tokenizers such as GPT-4's and Llama's on English prose) and one token per Chinese character
(GPT-4o's tokenizer spends ~0.7, Llama 3's ~1, small English-centred vocabularies such as
SmolLM2's 2-3: one errs high for the large models most runs pay for), plus a few tokens per chat
message for the chat template's role markers.
Samples whose counts were estimated are stored with `usage_estimated`, and their cost is marked
as an estimate wherever it is shown.
"""

from __future__ import annotations

from typing import Any, Iterable

# Per message: the template's role header and end-of-turn markers; per request: the assistant
# header that opens the answer. OpenAI documents 3 and 3 for its chat models; Llama/ChatML-style
# templates (SmolLM2: "<|im_start|>user\n ... <|im_end|>\n") spend about 4-5 per message.
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REQUEST = 3
# More tokens than any context window holds is not a count, it is a broken server.
MAX_PLAUSIBLE_TOKENS = 10_000_000


def estimate_tokens(text: str) -> int:
    """Rough token count (about 4 characters a token for English, one a token for Chinese)."""
    if text.isascii():
        return len(text) // 4 + 1
    cjk = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff")
    return int(cjk + (len(text) - cjk) / 4) + 1


def estimate_prompt_tokens(contents: Iterable[str | int]) -> int:
    """Estimated prompt tokens of a chat request whose messages have these contents.

    An int among them is tokens already estimated for the request's images (providers/vision.py).
    """
    total = TOKENS_PER_REQUEST
    for content in contents:
        if isinstance(content, int):
            total += content
        else:
            total += TOKENS_PER_MESSAGE + estimate_tokens(content)
    return total


def estimate_completion_tokens(text: str) -> int:
    """Estimated tokens of an answer; an empty answer still cost its end-of-turn token."""
    return estimate_tokens(text) if text else 1


def token_count(value: Any) -> int | None:
    """A reported token count, or None when it is missing or not a plausible count."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value <= MAX_PLAUSIBLE_TOKENS:
        return value
    return None
