"""The one request to an OpenAI-compatible server (body, headers, proxy, redirect policy), for runs, load and batches.

`harness run` (providers/openai_api.py), `harness load` (load/requests.py, load/wire.py) and provider
batches (the JSONL lines and the Files/Batches calls) all build what they send here, so that the
same plan asks the same question on every path: a key that one path drops (extra_body, a header,
top_p, seed) changes what the model does, and its score or latency then belong to another setup.
"""

from __future__ import annotations

import os
import re
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from harness.errors import HarnessError, register_secret
from harness.plan import ModelSpec
from harness.providers.base import ProviderError
from harness.providers.chat_format import openai_prompt_fields
from harness.records import Generation, Prompt

NO_KEY = "not-needed"  # sent as the bearer token when the plan names no key (local servers accept anything)


def resolve_api_key(spec: ModelSpec) -> str:
    """The key named by api_key_env; local servers often need none, so no variable means 'none'.

    The value is registered for redaction: a server that echoes it back never gets it stored.
    """
    if not spec.api_key_env:
        return NO_KEY
    key = os.environ.get(spec.api_key_env)
    if not key:
        raise HarnessError(
            f"model '{spec.name}': environment variable {spec.api_key_env} is not set "
            f"(export {spec.api_key_env}=... with the API key for {spec.base_url})"
        )
    register_secret(key)
    return key


def resolve_extra_headers(spec: ModelSpec) -> dict[str, str]:
    """The model's extra_headers with `$VAR` values read from the environment.

    Every value is registered for redaction, literal ones too: a header is how gateways take
    credentials, and a value written into the plan is no less a secret when a server echoes it.
    """
    headers = {}
    for name, value in (spec.extra_headers or {}).items():
        if value.startswith("$"):
            var = value[1:]
            resolved = os.environ.get(var)
            if resolved is None:
                raise HarnessError(
                    f"model '{spec.name}': extra_headers {name}: environment variable {var} "
                    f"is not set (export {var}=...)"
                )
            value = resolved
        register_secret(value)
        headers[name] = value
    return headers


# A 400 that names the model as the problem is an unknown model (LiteLLM answers so, not 404).
_UNKNOWN_MODEL = re.compile(
    r"(?i)(invalid|unknown|no such) model|model\b.{0,80}\b(not found|does not exist|"
    r"is not supported|not available)|model_not_found"
)
# A 400 that refuses the key: LiteLLM's proxy answers a key other than its master key, when it has no
# database of virtual keys to look it up in, with 400 "No connected db.".
_KEY_REFUSED = re.compile(r"(?i)no connected db|(invalid|incorrect|missing) api[ _-]?key|authentication error")


def refusal_is_fatal(status: int, detail: str) -> bool:
    """Whether an error answer says the setup is wrong (key, permission, route, model), so that
    retrying or adding load cannot help. One rule for `harness run` and `harness load`."""
    return status in (401, 403, 404) or (
        status in (400, 422) and bool(_UNKNOWN_MODEL.search(detail) or _KEY_REFUSED.search(detail))
    )


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTP(S)_PROXY, ALL_PROXY, honouring NO_PROXY), or None."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    proxies = urllib.request.getproxies()
    if not proxies or (host and urllib.request.proxy_bypass(host)):
        return None
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy:
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or default


def check_redirect(base_url: str, target: str) -> None:
    """Redirects are followed only within the server's own origin (scheme, host, port).

    A request carries the key and every configured header; sent on to another host they would hand
    it the credentials, so a redirect elsewhere is an error that names where it pointed.
    """
    if origin(target) != origin(base_url):
        shown = target if len(target) <= 200 else target[:200] + "..."
        raise ProviderError(
            f"the server redirected to another origin ({shown}); not followed, so the key and headers "
            f"stay with {base_url} (point base_url at the final address)",
            retryable=False,
            fatal=True,
        )


@dataclass(frozen=True)
class Target:
    """Where a model's requests go and what every one of them carries."""

    name: str
    base_url: str
    api_key: str
    extra_headers: dict[str, str] = field(default_factory=dict)
    extra_body: dict[str, Any] = field(default_factory=dict)
    proxy: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        """Every header the plan configures: the key as a bearer token, then extra_headers (they may override it)."""
        return {"Authorization": f"Bearer {self.api_key}", **self.extra_headers}

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")


def target_for(spec: ModelSpec) -> Target:
    """Resolve a model's key, headers and proxy once (missing variables are one-line errors)."""
    base = spec.base_url or ""
    return Target(
        name=spec.name,
        base_url=base,
        api_key=resolve_api_key(spec),
        extra_headers=resolve_extra_headers(spec),
        extra_body=dict(spec.extra_body or {}),
        proxy=proxy_for(base) if base else None,
    )


def chat_body(
    spec: ModelSpec, prompt: Prompt, gen: Generation, *, sample_index: int = 0, stream: bool = False
) -> dict[str, Any]:
    """The chat/completions JSON body: the same for an online request, a load request and a batch line.

    extra_body is merged last, so a plan can override any field (as the openai client's extra_body does).
    """
    body: dict[str, Any] = {
        "model": spec.api_model,
        **openai_prompt_fields(prompt),
        "max_tokens": gen.max_tokens,
        "temperature": gen.temperature,
    }
    if gen.top_p is not None:
        body["top_p"] = gen.top_p
    if gen.stop:
        body["stop"] = list(gen.stop)
    if gen.seed is not None:
        body["seed"] = gen.seed + sample_index
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    body.update(spec.extra_body or {})
    return body
