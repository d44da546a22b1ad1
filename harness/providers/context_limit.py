"""Recognise a server's "the prompt does not fit the model's window" refusal, in the words each server uses."""

from __future__ import annotations

import re

from harness.records import CONTEXT_LENGTH

# OpenAI, vLLM, DeepSeek and llama-cpp-python ("This model's maximum context length is N tokens"),
# llama.cpp's own server ("exceeds the available context size", type exceed_context_size_error),
# SGLang ("longer than the model's context length"), TGI ("must be <= N"), Anthropic-style gateways
# ("prompt is too long") and llama-cpp-python's engine ("Requested tokens (N) exceed context window").
_CONTEXT_WORDS = re.compile(
    r"(?i)maximum context length|context[_ ]length[_ ]exceeded|exceeds? the available context size|"
    r"exceed_context_size|longer than the model'?s context length|exceed(s|ed)? (the )?context window|"
    r"prompt is too long|input is too long|tokens \+ `?max_new_tokens`? must be <="
)


def is_context_length(status: int | None, detail: str, code: str = "") -> bool:
    """Whether a refusal (a 400/413/422, or an engine's error when status is None) says the prompt is over the window."""
    if status not in (None, 400, 413, 422):
        return False
    return code in ("context_length_exceeded", "exceed_context_size_error") or bool(_CONTEXT_WORDS.search(detail))


def context_length_message(detail: str) -> str:
    """The stored error of an over-window item: its class first, so every reader can tell it apart."""
    return f"{CONTEXT_LENGTH}: {detail}"
