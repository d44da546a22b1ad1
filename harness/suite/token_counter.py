"""Count tokens the way a model will: the embedded model's (or any GGUF's) tokenizer, a server's
/tokenize endpoint, or the project's estimate when neither is reachable. Each counter says what it is."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.errors import HarnessError
from harness.providers.tokens import TOKENS_PER_MESSAGE, TOKENS_PER_REQUEST, estimate_tokens


@dataclass
class TokenCounter:
    """`text(s)`: tokens of a piece of text; `prompt(user)`: tokens of a whole chat request whose only
    message is `user` (its chat template and default system prompt included where the counter knows them)."""

    name: str  # what counted, as the suite says it: "SmolLM2-135M-Instruct tokenizer (embedded model)"
    exact: bool  # a real tokenizer, not the estimate
    text: Callable[[str], int]
    prompt: Callable[[str], int]


def estimate_counter() -> TokenCounter:
    return TokenCounter(
        "estimate (about 4 characters a token; one per Chinese character)",
        False,
        estimate_tokens,
        lambda user: estimate_tokens(user) + TOKENS_PER_MESSAGE + TOKENS_PER_REQUEST,
    )


def gguf_counter(path: Path, name: str) -> TokenCounter:
    """A GGUF model's own tokenizer (vocabulary only: nothing is loaded onto the CPU but the vocabulary)
    and its own chat template, rendered as llama-cpp-python's server renders it."""
    try:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    except ImportError:
        raise HarnessError("--tokenizer: llama-cpp-python is not installed: pip install -e '.[local]'") from None
    llama = Llama(model_path=str(path), vocab_only=True, verbose=False)
    template = llama.metadata.get("tokenizer.chat_template")

    def text(s: str) -> int:
        return len(llama.tokenize(s.encode("utf-8"), add_bos=False, special=False)) if s else 0

    if not template:
        return TokenCounter(
            f"{name} tokenizer (no chat template in the file: template tokens estimated)",
            True,
            text,
            lambda user: text(user) + TOKENS_PER_MESSAGE + TOKENS_PER_REQUEST,
        )

    def token_text(token: int) -> str:
        return llama._model.token_get_text(token) if token >= 0 else ""

    formatter = Jinja2ChatFormatter(
        template=template, eos_token=token_text(llama.token_eos()), bos_token=token_text(llama.token_bos())
    )

    def prompt(user: str) -> int:
        rendered = formatter(messages=[{"role": "user", "content": user}]).prompt
        return len(llama.tokenize(rendered.encode("utf-8"), add_bos=True, special=True))

    return TokenCounter(f"{name} tokenizer and chat template", True, text, prompt)


def server_counter(url: str, timeout: float = 30.0) -> TokenCounter:
    """A server's own tokenizer over HTTP: llama.cpp's `POST /tokenize {"content"}`, llama-cpp-python's
    `POST /extras/tokenize {"input"}` or vLLM's `POST /tokenize {"prompt"}`, whichever answers first.
    The chat template's few tokens are estimated (these endpoints count text, not chat requests)."""
    root = url.rstrip("/").removesuffix("/v1")
    attempts = (
        (f"{root}/extras/tokenize", "input", "tokens"),
        (f"{root}/tokenize", "content", "tokens"),
        (f"{root}/tokenize", "prompt", "count"),
    )

    def call(endpoint: str, key: str, s: str):
        body = json.dumps({key: s}).encode()
        req = urllib.request.Request(endpoint, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())

    chosen = None
    for endpoint, key, field in attempts:
        try:
            answer = call(endpoint, key, "hello world")
        except (OSError, ValueError, urllib.error.HTTPError):
            continue
        if isinstance(answer, dict) and field in answer:
            chosen = (endpoint, key, field)
            break
    if chosen is None:
        raise HarnessError(
            f"--tokenizer {url}: no tokenize endpoint answered (tried /extras/tokenize, /tokenize); "
            f"leave --tokenizer out to use the estimate"
        )
    endpoint, key, field = chosen

    def text(s: str) -> int:
        if not s:
            return 0
        answer = call(endpoint, key, s)[field]
        return len(answer) if isinstance(answer, list) else int(answer)

    return TokenCounter(
        f"the server's tokenizer ({endpoint}; chat template tokens estimated)",
        True,
        text,
        lambda user: text(user) + TOKENS_PER_MESSAGE + TOKENS_PER_REQUEST,
    )


def counter_for(tokenizer: str | None) -> TokenCounter:
    """--tokenizer: None (the estimate), "embedded" (the embedded model), a .gguf path or a server URL."""
    if not tokenizer:
        return estimate_counter()
    if tokenizer.startswith(("http://", "https://")):
        return server_counter(tokenizer)
    if tokenizer in ("embedded", "llamacpp"):
        from harness.providers.llamacpp import EMBEDDED_NAME, embedded_model_path

        return gguf_counter(embedded_model_path(), f"{EMBEDDED_NAME} (embedded model)")
    path = Path(tokenizer).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        return gguf_counter(path, path.stem)
    raise HarnessError(
        f"--tokenizer {tokenizer}: not 'embedded', a .gguf file or a server URL (http://host:port); "
        f"leave it out to use the estimate"
    )
