"""The one exception type for errors a user can cause and fix, and the redaction every error text passes.

The CLI prints a `HarnessError` on one line and exits with status 2, without a traceback;
anything else that escapes is a bug in the harness and keeps its traceback.

Servers echo credentials back (a 401 body quoting the Authorization header, a proxy's HTML error
page): every text the harness stores, prints or logs goes through `redact`, which replaces the
values of the key variables the plan reads (registered with `register_secret` when they are
read) and anything that looks like a bearer token.
"""

from __future__ import annotations

import logging
import re
import threading


class HarnessError(Exception):
    """A user-fixable problem. The message names the file/field/model and says what to do."""


def yaml_error(where: str, exc: Exception) -> HarnessError:
    """A YAML syntax error as one line in our words: the file, the line and column, what is wrong."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return HarnessError(f"{where}: invalid YAML{at}: {problem} (check the indentation and quoting there)")


REDACTED = "[REDACTED]"
# Shorter values are too likely to occur in ordinary text ("1", "yes") to be worth replacing.
MIN_SECRET_LENGTH = 6
# `Bearer <token>`, `Authorization: <anything>`, and the usual provider key shapes (sk-..., sk-ant-...).
_TOKEN_PATTERNS = re.compile(
    r"(?i)(?<=bearer )[A-Za-z0-9._~+/=-]{8,}"
    r"|(?<=authorization: )[^\s,;\"'}]{8,}"
    r"|(?<=authorization\": \")[^\"]{8,}"
    r"|\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}"
)

_secrets: set[str] = set()
_secrets_pattern: re.Pattern | None = None
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Remember a credential's value so that `redact` removes it from every text from now on."""
    global _secrets_pattern
    if not value or len(value) < MIN_SECRET_LENGTH or value in _secrets:
        return
    with _lock:
        _secrets.add(value)
        # Longest first, so a key that contains another key is replaced whole.
        _secrets_pattern = re.compile("|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True)))


def redact(text: str) -> str:
    """`text` without registered secret values and bearer-looking tokens."""
    if not text:
        return text
    pattern = _secrets_pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    return _TOKEN_PATTERNS.sub(REDACTED, text)


def redact_secrets(text: str) -> str:
    """Only the registered secret values: for model-written text, where a token-shaped string may be the answer."""
    pattern = _secrets_pattern
    return pattern.sub(REDACTED, text) if text and pattern is not None else text


_factory_installed = False


def install_log_redaction() -> None:
    """Redact the message of every log record made from now on, whichever library logs it (idempotent).

    A record factory rather than a logger filter: filters on a logger do not see its children's
    records, and the HTTP client libraries log under their own names. Records are only made for
    enabled levels, so disabled debug logging costs nothing.
    """
    global _factory_installed
    with _lock:
        if _factory_installed:
            return
        _factory_installed = True
        previous = logging.getLogRecordFactory()

        def factory(*args, **kwargs) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            try:
                message = record.getMessage()
            except Exception:  # a malformed log call is logging's to report, not ours
                return record
            cleaned = redact(message)
            if cleaned != message:
                record.msg, record.args = cleaned, None
            return record

        logging.setLogRecordFactory(factory)
