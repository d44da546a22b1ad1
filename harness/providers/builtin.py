"""The built-in providers' registrations: name, class, capabilities and own plan fields of each.

They sit here rather than at the foot of each provider's module so that asking what a provider can
do (every plan load, every report) does not import the `openai` client or llama-cpp-python: each
class is named as a string and imported only when a run builds it.
"""

from __future__ import annotations

from typing import Any

from harness.providers.registry import Capabilities, ProviderInfo, register_provider


def _check_openai(spec: Any) -> str | None:
    if not spec.base_url:
        return "provider openai needs base_url (the server's OpenAI-compatible /v1 URL)"
    return None


def _openai_credentials(spec: Any) -> None:
    from harness.providers.openai_api import resolve_api_key, resolve_extra_headers

    resolve_api_key(spec)
    resolve_extra_headers(spec)


def _check_samples(spec: Any) -> str | None:
    if not spec.path:
        return "provider samples needs path (a JSONL file with task_id and completion)"
    return None


register_provider(
    ProviderInfo(
        "openai",
        "harness.providers.openai_api:OpenAIProvider",
        Capabilities(
            endpoint=True,
            streams=True,
            tools=True,
            images=True,
            batch=True,
            usage=True,
            served_model=True,
            credentials=True,
        ),
        fields=frozenset({"base_url", "api_key_env", "stream", "extra_body", "extra_headers"}),
        check=_check_openai,
        preflight=_openai_credentials,
        batch_api="harness.providers.openai_batch:OpenAIBatchAPI",
    )
)

register_provider(
    ProviderInfo(
        "llamacpp",
        "harness.providers.llamacpp:LlamaCppProvider",
        Capabilities(tools=True, tokenizer=True, usage=True),
        fields=frozenset({"path", "n_ctx", "threads"}),
        paths=frozenset({"path"}),
    )
)

register_provider(
    ProviderInfo(
        "samples",
        "harness.providers.samples:SamplesProvider",
        Capabilities(timed=False),
        fields=frozenset({"path"}),
        check=_check_samples,
        paths=frozenset({"path"}),
    )
)
