"""`harness import`: a log of chat requests (OpenAI JSONL, or LiteLLM's logged payloads) becomes a suite folder.

The log is streamed line by line: memory holds one 8-byte digest per distinct request (for
deduplication) and, with `--sample N`, at most N candidate rows per stratum, never the file.
Everything is written to a temporary folder renamed into place at the end, so a refusal (a
secret, a malformed line with `strict`) leaves nothing half-written behind.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

from harness.errors import HarnessError
from harness.traffic.request import REPLAYED_SETTINGS, RequestError, canonical, prompt_from_openai, replay_settings

# What a key or token looks like in a log: (what the user is told, pattern, lower-case literals one of
# which every match contains). The literals are a cheap first test: most lines hold none of them, and
# the regular expression then never runs (it was most of the import's time). Values are never printed.
_SECRETS = tuple(
    (kind, re.compile(pattern), needles)
    for kind, pattern, needles in (
        ("an OpenAI-style API key (sk-...)", r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}", ("sk-",)),
        ("a bearer token", r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{12,}", ("bearer",)),
        ("an AWS access key id", r"\bAKIA[0-9A-Z]{16}\b", ("akia",)),
        ("a GitHub token", r"\bgh[pousr]_[A-Za-z0-9]{30,}", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
        ("a Google API key", r"\bAIza[0-9A-Za-z_-]{35}\b", ("aiza",)),
        ("a Slack token", r"\bxox[baprs]-[A-Za-z0-9-]{10,}", ("xox",)),
        (
            "an api_key field",
            r'(?i)"(?:api[_-]?key|x-api-key|authorization)"\s*:\s*"(?!\[REDACTED\])[^"\s]{12,}"',
            ("apikey", "api_key", "api-key", "authorization"),
        ),
    )
)

# Where a log names the route a request took: the first present wins.
_GROUP_KEYS = ("route", "tag", "endpoint", "task", "feature", "group")
_LABEL_KEYS = ("label", "expected_label", "class", "intent")
MAX_LABELS = 50  # more distinct labels than this is free text, not a classification workload


@dataclass
class ImportResult:
    """What an import read and wrote; `summary()` is the one line the CLI prints."""

    suite_dir: Path
    lines: int = 0
    written: int = 0
    distinct: int = 0
    duplicates: int = 0
    malformed: int = 0
    not_utf8: int = 0
    failed_requests: int = 0  # logged calls that errored: no request worth replaying, no answer to judge
    first_problem: str = ""
    formats: dict[str, int] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    with_answer: int = 0
    grader: str = ""

    def summary(self) -> str:
        skipped = []
        if self.duplicates:
            skipped.append(f"{self.duplicates} duplicate{'s' * (self.duplicates != 1)}")
        if self.malformed:
            skipped.append(f"{self.malformed} malformed")
        if self.not_utf8:
            skipped.append(f"{self.not_utf8} not UTF-8")
        if self.failed_requests:
            skipped.append(f"{self.failed_requests} failed calls")
        tail = f"; skipped {', '.join(skipped)}" + (f" (first: {self.first_problem})" if self.first_problem else "")
        return (
            f"{self.suite_dir}: {self.written} items from {self.lines} lines "
            f"({self.distinct} distinct requests, {len(self.groups)} groups, "
            f"{self.with_answer} with the incumbent's answer, grader {self.grader})" + (tail if skipped else "")
        )


@dataclass(frozen=True)
class LoggedRequest:
    """One log line read: the request to replay and what the log says about it."""

    request: dict[str, Any]
    answer: str | None
    model: str
    group: str
    label: str | None
    metadata: Mapping[str, Any]
    fmt: str


def _response_text(response: Any) -> str | None:
    """The assistant's answer in a logged response (a chat completion object or plain text)."""
    if isinstance(response, str):
        return response
    if not isinstance(response, dict):
        return None
    choices = response.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message") or {}
        content = message.get("content")
        if isinstance(content, str) and content:
            return content
        calls = message.get("tool_calls")
        if calls:
            return json.dumps(calls, ensure_ascii=False, sort_keys=True)
        return content if isinstance(content, str) else None
    return None


def _first(mapping: Mapping[str, Any], keys) -> Any:
    for key in keys:
        value = mapping.get(key)
        if value not in (None, "", []):
            return value[0] if isinstance(value, list) else value
    return None


def read_logged(record: Any) -> LoggedRequest | None:
    """A log record as a request, or None for a logged failure (LiteLLM's status "failure").

    RequestError says what is wrong with a record that is neither format.
    """
    if not isinstance(record, dict):
        raise RequestError("not a JSON object")
    if "request" in record and isinstance(record["request"], dict):  # {request: {...}, response: ...}
        record = {**record["request"], **{k: v for k, v in record.items() if k != "request"}}
    litellm = "model_parameters" in record or "call_type" in record or "standard_logging_object" in record
    if "standard_logging_object" in record and isinstance(record["standard_logging_object"], dict):
        record = record["standard_logging_object"]
    metadata = record.get("metadata") if isinstance(record.get("metadata"), dict) else {}
    if litellm:
        if record.get("status") == "failure":
            return None
        params = record.get("model_parameters") if isinstance(record.get("model_parameters"), dict) else {}
        messages = record.get("messages")
        if isinstance(messages, str):  # LiteLLM logs a text-completion prompt as a string
            messages = [{"role": "user", "content": messages}]
        request = {"messages": messages, **{k: v for k, v in params.items() if k in (*REPLAYED_SETTINGS, "tools")}}
        for key in ("tool_choice", "response_format", "max_completion_tokens"):
            if key in params:
                request[key] = params[key]
        tags = record.get("request_tags") or metadata.get("tags") or []
        group = _first(metadata, _GROUP_KEYS) or (tags[0] if tags else None) or record.get("model_group") or ""
        model = str(record.get("model_group") or record.get("model") or "")
        fmt = "litellm"
    else:
        request = {
            k: record[k]
            for k in (
                "messages",
                "tools",
                "tool_choice",
                "response_format",
                "max_completion_tokens",
                *REPLAYED_SETTINGS,
            )
            if k in record and record[k] is not None
        }
        group = _first(metadata, _GROUP_KEYS) or ""
        model = str(record.get("model") or "")
        fmt = "openai"
    label = _first(record, _LABEL_KEYS)
    if label is None:
        label = _first(metadata, _LABEL_KEYS)
    prompt_from_openai(request)  # refuse what a replay could not send
    request = {k: v for k, v in request.items() if k in ("messages", "tools", "tool_choice", "response_format")}
    request.update(replay_settings({**record, **request} if not litellm else {**params, **request}))
    return LoggedRequest(
        request=request,
        answer=_response_text(record.get("response")),
        model=model,
        group=str(group),
        label=None if label is None else str(label),
        metadata=metadata,
        fmt=fmt,
    )


def scan_secrets(text: str) -> str | None:
    """The kind of secret `text` holds (never the value), or None."""
    lower = text.lower()
    for kind, pattern, needles in _SECRETS:
        if any(n in lower for n in needles) and pattern.search(text):
            return kind
    return None


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if raw.strip():
                yield lineno, raw


def _stratum(row: Mapping[str, Any], logged: LoggedRequest, by: str) -> str:
    if by.startswith("metadata."):
        return str(logged.metadata.get(by.split(".", 1)[1], ""))
    return str(row.get(by) if row.get(by) is not None else "")


def _allocate(counts: dict[str, int], n: int) -> dict[str, int]:
    """N items over strata: one each first (while N lasts), the rest in proportion to size, largest remainder."""
    order = sorted(counts, key=lambda s: (-counts[s], s))
    quota = {s: 0 for s in counts}
    for s in order[:n]:
        quota[s] = 1
    rest = n - sum(quota.values())
    room = {s: counts[s] - quota[s] for s in counts}
    total = sum(room.values())
    if rest > 0 and total > 0:
        shares = {s: rest * room[s] / total for s in counts}
        for s in counts:
            quota[s] += min(room[s], int(shares[s]))
        left = n - sum(quota.values())
        for s in sorted(counts, key=lambda s: (-(shares[s] - int(shares[s])), s)):
            if left <= 0:
                break
            if quota[s] < counts[s]:
                quota[s] += 1
                left -= 1
    return quota


def _rank(seed: int, item_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\0{item_id}".encode()).digest()[:8], "big")


def import_log(
    path: str | Path,
    suite: str,
    out: str | Path,
    *,
    sample: int | None = None,
    by: str = "group",
    seed: int = 0,
    strict: bool = False,
    force: bool = False,
) -> ImportResult:
    """Read the log at `path` into the suite folder `out/suite/`; HarnessError names the line it refuses."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"log file not found: {path} (give a JSONL file of logged chat requests)")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", suite):
        raise HarnessError(f"--suite {suite!r}: a suite name is letters, digits, '.', '_' or '-' (a folder name)")
    if by not in ("group", "label", "model") and not by.startswith("metadata."):
        raise HarnessError(f"--by {by!r}: stratify by group, label, model or metadata.KEY")
    target = Path(out) / suite
    if target.exists() and not force:
        raise HarnessError(f"{target} already exists; remove it, choose another --suite, or pass --force to replace it")
    Path(out).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{suite}-", dir=out))
    result = ImportResult(suite_dir=target)
    try:
        _import_into(path, tmp, result, sample=sample, by=by, seed=seed, strict=strict)
        _write_suite_files(tmp, suite, path, result, sample=sample, by=by, seed=seed)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def _import_into(path: Path, folder: Path, result: ImportResult, *, sample, by, seed, strict) -> None:
    seen: set[int] = set()
    heaps: dict[str, list[tuple[int, str]]] = {}  # stratum -> max-heap (negated rank) of the N lowest ranks
    strata: dict[str, int] = {}
    labels: dict[str, int] = {}
    with open(folder / "items.jsonl", "w", encoding="utf-8") as items:
        for lineno, raw in _lines(path):
            result.lines += 1
            try:
                text, byte = raw.decode("utf-8"), 0
            except UnicodeDecodeError as exc:
                text, byte = raw.decode("utf-8", errors="replace"), exc.start + 1
            kind = scan_secrets(text)  # a line with bad bytes is still scanned: a key there is still a key
            if kind:
                raise HarnessError(_secret_message(path, lineno, kind))
            if byte:
                if strict:
                    raise HarnessError(
                        f"{path}:{lineno}: not valid UTF-8 (byte {byte}); re-encode the log as UTF-8, "
                        f"or import without --strict to skip the line"
                    )
                result.not_utf8 += 1
                result.first_problem = result.first_problem or f"line {lineno}: not valid UTF-8 (byte {byte})"
                continue
            try:
                logged = read_logged(json.loads(text))
            except (ValueError, RequestError, RecursionError) as exc:
                what = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                if strict:
                    raise HarnessError(
                        f"{path}:{lineno}: malformed log line ({what}); fix or drop it, or import without --strict to skip it"
                    ) from None
                result.malformed += 1
                result.first_problem = result.first_problem or f"line {lineno}: {what}"
                continue
            if logged is None:
                result.failed_requests += 1
                continue
            key = canonical(logged.request)
            digest = hashlib.sha256(key.encode()).digest()
            short = int.from_bytes(digest[:8], "big")
            if short in seen:
                result.duplicates += 1
                continue
            seen.add(short)
            result.distinct += 1
            result.formats[logged.fmt] = result.formats.get(logged.fmt, 0) + 1
            row = {
                "id": digest.hex()[:16],
                "group": logged.group,
                "request": logged.request,
                "incumbent": logged.answer,
                "model": logged.model,
                "label": logged.label,
                "line": lineno,
            }
            if sample is None:
                _count(result, row, labels)
                items.write(json.dumps(row, ensure_ascii=False) + "\n")
                continue
            stratum = _stratum(row, logged, by)
            strata[stratum] = strata.get(stratum, 0) + 1
            heap = heaps.setdefault(stratum, [])
            entry = (-_rank(seed, row["id"]), json.dumps(row, ensure_ascii=False))
            if len(heap) < sample:
                heapq.heappush(heap, entry)
            elif entry[0] > heap[0][0]:
                heapq.heapreplace(heap, entry)
        if sample is not None:
            quota = _allocate(strata, sample)
            chosen = []
            for stratum, heap in heaps.items():
                best = sorted(heap, key=lambda e: -e[0])[: quota[stratum]]
                chosen.extend(json.loads(line) for _, line in best)
            chosen.sort(key=lambda r: r["line"])  # file order: the suite reads like the log
            for row in chosen:
                _count(result, row, labels)
                items.write(json.dumps(row, ensure_ascii=False) + "\n")
    result.labels = labels


def _count(result: ImportResult, row: Mapping[str, Any], labels: dict[str, int]) -> None:
    result.written += 1
    result.groups[row["group"]] = result.groups.get(row["group"], 0) + 1
    if row["incumbent"] is not None:
        result.with_answer += 1
    if row["label"] is not None:
        labels[row["label"]] = labels.get(row["label"], 0) + 1


def _secret_message(path: Path, lineno: int, kind: str) -> str:
    return (
        f"{path}:{lineno}: refused: the line holds {kind}; nothing was written. Remove or redact it "
        f"(rotate the key if it was real) and import again"
    )


_RUBRIC = """\
{#- Pairwise rubric: the judge sees the user's request and two answers, and names the better one.
    Fields: request (the conversation as text), answer_a, answer_b. The grader asks twice, swapping A and B. -#}
You compare two assistant answers to the same request. Judge which answer serves the user better:
correct, complete, follows the instructions, no more words than needed. Do not prefer an answer for
being longer, or for coming first.

[Request]
{{ request }}

[Answer A]
{{ answer_a }}

[Answer B]
{{ answer_b }}

Reply with your reasoning in one or two sentences, then a last line that is exactly one of
VERDICT: A
VERDICT: B
VERDICT: TIE
"""


def _write_suite_files(folder: Path, suite: str, log: Path, result: ImportResult, *, sample, by, seed) -> None:
    labelled = result.labels and len(result.labels) <= MAX_LABELS and sum(result.labels.values()) == result.written
    config: dict[str, Any] = {
        "name": suite,
        "description": f"Traffic imported from {log.name}: {result.written} logged requests replayed as they were sent.",
        "family": "traffic",
        "version": 1,
        "data": "items.jsonl",
        "id_field": "id",
        "group_field": "group",
        "request_field": "request",
    }
    if labelled:
        config["reference_field"] = "label"
        config["grader"] = {"name": "label", "options": {"labels": sorted(result.labels)}}
        result.grader = "label"
    else:
        config["grader"] = {"name": "pairwise", "options": {"rubric": "pairwise.j2"}}
        result.grader = "pairwise"
    (folder / "suite.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    (folder / "pairwise.j2").write_text(_RUBRIC, encoding="utf-8")
    groups = ", ".join(f"{g or '(none)'}: {n}" for g, n in sorted(result.groups.items())) or "none"
    how = (
        f"a seeded sample of {sample} (seed {seed}) stratified by {by}"
        if sample is not None
        else "every distinct request"
    )
    (folder / "README.md").write_text(
        f"""# {suite}

Imported by `harness import` from `{log.name}`: {how}; {result.written} items
({result.duplicates} duplicates, {result.malformed} malformed lines and {result.not_utf8} lines not UTF-8 skipped).
Groups: {groups}.

Each item holds the whole request as it was sent (`request`: messages, tools, response_format and its
own sampling settings, which a run replays unless the plan overrides them), the incumbent's logged
answer (`incumbent`, null when the log had none), the logged model, a label when the log had one, and
the log line it came from.

## Personal data

**These items are your users' own words.** The import refused keys and bearer tokens, but it does not
find names, e-mail addresses, phone numbers, account numbers or anything else personal in the text.
Before sharing this folder, committing it or sending it to a model hosted by someone else, check it
against your data-protection rules (consent, retention, where the data may be processed), and redact or
drop items you may not use. Reports and exports of runs on this suite show the same text.
""",
        encoding="utf-8",
    )
