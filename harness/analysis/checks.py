"""The check after a (scheduled) run: regressions against the previous run of the plan, drift alarms, webhook.

`check_run` compares a run with the previous *finished* run of the same plan (preferring one with the
same tag) and lists:

- regressions: each model whose score dropped significantly on a suite: the comparisons of
  `compare.compare_runs` (paired test per model x suite, all p-values corrected together). Only like is compared with like:
  a model whose provider or API model name changed in the plan, and a suite whose content hash
  changed, are left out (and raise an alarm instead);
- alarms (`Alarm(kind, model, suite, detail)`), in this order of kinds:
  * `served-model`: the server reported a model name that does not match the one asked for. Gateways
    often answer with a more specific name, so a served name matches the asked one when, compared
    case-insensitively and without any `vendor/` prefix, it is equal or it is the asked name followed
    by version-like parts only (`-2025-04-28`, `-0528`, `-v2`, `:latest`, `@001`). `glm-5-air` for
    `glm-5` is an alarm; `qwen3-32b-2025-04-28` for `qwen3-32b` is not. Checked on every run, the
    first one included; not for the embedded llama.cpp model (its "name" is a file name);
  * `served-model-changed`: the set of names the server reported for a model differs from the
    previous run's, whatever the rule above says (a quiet version bump is still a different model);
  * `api-model`: the plan asks a different provider / API model under the same name;
  * `price`: the plan's price per million tokens changed (online, or batched when both runs batched);
  * `suite-hash`: a suite's content (items, templates, grader settings) changed;
  * `availability`: a model's error rate (failed requests over the suites both runs share) rose by at
    least `availability_min_increase` (1 point) and significantly (one-sided Fisher exact test, p < alpha);
  * `unavailable`: every request of a model failed in this run (checked on every run, the first
    included): its scores are no measurement, whatever they compare to.

`post_webhook` delivers the check as JSON to the plan's `webhook` URL; failures are reported, never raised.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from harness.analysis.compare import RunsComparison, comparison_dict, correct, json_safe, pair_cells
from harness.analysis.summary import RunSummary, summarize_run
from harness.errors import HarnessError
from harness.formatting import percent
from harness.providers.registry import capabilities_of
from harness.store import RunInfo, Store

ALARM_KINDS = (
    "served-model",
    "served-model-changed",
    "api-model",
    "price",
    "suite-hash",
    "availability",
    "unavailable",
)


@dataclass(frozen=True)
class Alarm:
    kind: str  # one of ALARM_KINDS
    model: str  # "" when the alarm is about a suite as a whole
    suite: str  # "" when the alarm is about a model over the whole run
    detail: str

    def __str__(self) -> str:
        where = " / ".join(x for x in (self.model, self.suite) if x)
        return f"{self.kind}: {where}: {self.detail}" if where else f"{self.kind}: {self.detail}"


@dataclass(frozen=True)
class CheckResult:
    run: RunInfo
    previous: RunInfo | None
    regressions: list  # compare.PairComparison, the significant drops
    alarms: list[Alarm]
    comparison: RunsComparison | None = None  # every comparison made (None on a plan's first run)
    notes: list[str] = field(default_factory=list)
    correction: str = "holm"
    alpha: float = 0.05

    @property
    def run_id(self) -> str:
        return self.run.id

    @property
    def previous_run_id(self) -> str | None:
        return self.previous.id if self.previous else None

    @property
    def ok(self) -> bool:
        return not self.regressions and not self.alarms

    @property
    def watch(self) -> list:
        """Drops worth watching: not significant after correction, but large (`is_watch`), largest first."""
        found = [c for c in self.comparison.comparisons if is_watch(c)] if self.comparison else []
        return sorted(found, key=lambda c: c.diff)


def is_watch(c) -> bool:
    """A drop the correction hides or too few items cannot confirm (`PairComparison.watch`, downwards)."""
    return c.watch and c.diff < 0


# --------------------------------------------------------------------------- served names

_VERSION_PART = re.compile(r"^(\d+|v\d+(\.\d+)*|latest)$")


def _bare(name: str) -> str:
    return name.strip().lower().rsplit("/", 1)[-1]


def served_name_matches(asked: str, served: str) -> bool:
    """Does the name a server reported stand for the model asked for? (rule in the module docstring)"""
    a, s = _bare(asked), _bare(served)
    if not a or not s or s == a:
        return True
    if not s.startswith(a) or s[len(a)] not in "-_:@.":
        return False
    parts = [p for p in re.split(r"[-_:@.]", s[len(a) + 1 :]) if p]
    return bool(parts) and all(_VERSION_PART.match(p) for p in parts)


# --------------------------------------------------------------------------- store reads


@dataclass
class _ModelCounts:
    samples: int = 0
    errors: int = 0
    served: dict = field(default_factory=lambda: defaultdict(int))  # served name -> samples


def _count_rows(store: Store, run_id: str) -> list[tuple[str, str, str, int, int]]:
    """(model, suite, served name, samples, failed samples) of a run, in one aggregate query."""
    from harness.store.reports import served_counts

    return served_counts(store, run_id)


def _counts(rows, suites: set[str] | None = None) -> dict[str, _ModelCounts]:
    """Per model: samples, failed samples and served names (over `suites`, default all)."""
    out: dict[str, _ModelCounts] = defaultdict(_ModelCounts)
    for model, suite, served, n, errors in rows:
        if suites is not None and suite not in suites:
            continue
        c = out[model]
        c.samples += n
        c.errors += errors
        if served:
            c.served[served] += n
    return out


def _names(names) -> str:
    return ", ".join(f"'{n}'" for n in sorted(names))


def find_previous(store: Store, run_id: str) -> RunInfo | None:
    """The latest finished run of the same plan that started before RUN, preferring RUN's tag."""
    current = store.run(run_id)
    earlier = [
        r
        for r in store.runs(current.plan_name)
        if r.id != current.id and r.status == "finished" and (r.started_at, r.id) < (current.started_at, current.id)
    ]
    same_tag = [r for r in earlier if r.tag == current.tag]
    pool = same_tag or earlier
    return pool[-1] if pool else None


# --------------------------------------------------------------------------- the check


def _fisher_greater(e_new: int, n_new: int, e_old: int, n_old: int) -> float:
    from scipy.stats import fisher_exact

    _, p = fisher_exact([[e_new, n_new - e_new], [e_old, n_old - e_old]], alternative="greater")
    return float(p)


def _compare(
    old: RunSummary,
    new: RunSummary,
    models: list[str],
    suites: list[str],
    *,
    correction: str,
    alpha: float,
    clusters: bool,
) -> RunsComparison | None:
    """`compare.compare_runs` on summaries already at hand: the same pairing and correction, no re-reading."""
    comparisons = []
    for suite in suites:
        for model in models:
            a, b = old.cell(model, suite), new.cell(model, suite)
            if a is not None and b is not None:
                comparisons.append(pair_cells(a, old.run.id, b, new.run.id, alpha=alpha, clusters=clusters))
    if not comparisons:
        return None
    return RunsComparison(
        runs=[old.run, new.run], correction=correction, alpha=alpha, comparisons=correct(comparisons, correction, alpha)
    )


def check_run(
    store: Store,
    run_id: str | None = None,
    *,
    previous: str | None = None,
    correction: str = "holm",
    alpha: float = 0.05,
    clusters: bool = True,
    availability_min_increase: float = 0.01,
    summaries: dict[str, RunSummary] | None = None,
) -> CheckResult:
    """Check RUN (default: the latest) against `previous` (default: the previous finished run of its plan).

    `summaries` (run id -> `summarize_run` result) is a cache: runs in it are not read again, and the
    runs this check summarizes are added to it.
    """
    correct([], correction, alpha)  # validates the settings
    rid = store.resolve_run(run_id)
    run = store.run(rid)
    notes: list[str] = []
    if run.status != "finished":
        notes.append(f"run {rid} is {run.status}: its results are incomplete")
    if previous is not None:
        prev = store.run(store.resolve_run(previous))
        if prev.id == rid:
            raise HarnessError(f"--against {previous}: that is the checked run itself; name an earlier run")
    else:
        prev = find_previous(store, rid)
    if prev is not None and (prev.started_at, prev.id) > (run.started_at, run.id):
        notes.append(f"run {prev.id} started after {rid}: differences read as {rid} minus {prev.id}")
    models = store.run_models(rid)
    suites = store.run_suites(rid)
    alarms: list[Alarm] = []

    # Served name against the asked one: every run, the first one included.
    new_rows = _count_rows(store, rid)
    counts = _counts(new_rows)
    for m in models:
        if not capabilities_of(m.provider).served_model:
            continue
        c = counts.get(m.model)
        if c is None:
            continue
        for served, n in sorted(c.served.items()):
            if not served_name_matches(m.api_model, served):
                alarms.append(
                    Alarm(
                        "served-model",
                        m.model,
                        "",
                        f"asked for '{m.api_model}', the server reported '{served}' on {n} of {c.samples} samples",
                    )
                )

    unavailable = [
        Alarm("unavailable", m.model, "", f"all {c.samples} requests failed: no answer was measured")
        for m in models
        if (c := counts.get(m.model)) is not None and c.samples and c.errors >= c.samples
    ]
    # A model stopped for fatal errors (bad key, unknown model, unreachable) stored no samples to count.
    unavailable += [
        Alarm("unavailable", model, "", f"stopped after fatal errors: {reason}")
        for model, reason in sorted(store.model_failures(rid).items())
        if not any(a.model == model for a in unavailable)
    ]
    if prev is None:
        notes.append(f"first run of plan '{run.plan_name}': no previous run to compare with")
        return CheckResult(run, None, [], alarms + unavailable, None, notes, correction, alpha)

    prev_models = {m.model: m for m in store.run_models(prev.id)}
    prev_suites = {s.suite: s for s in store.run_suites(prev.id)}
    same_suites = [
        s.suite for s in suites if s.suite in prev_suites and prev_suites[s.suite].suite_hash == s.suite_hash
    ]
    shared_suite_names = {s.suite for s in suites if s.suite in prev_suites}
    prev_rows = _count_rows(store, prev.id)
    prev_all = _counts(prev_rows)
    prev_counts = _counts(prev_rows, shared_suite_names)
    new_counts = _counts(new_rows, shared_suite_names)
    served_alarms, api_alarms, price_alarms = [], [], []
    same_models = []
    for m in models:
        before = prev_models.get(m.model)
        if before is None:
            notes.append(f"model {m.model} is new in this run: nothing to compare it with")
            continue
        if (before.provider, before.api_model) != (m.provider, m.api_model):
            api_alarms.append(
                Alarm(
                    "api-model",
                    m.model,
                    "",
                    f"{before.provider}/{before.api_model} in {prev.id}, {m.provider}/{m.api_model} "
                    f"now: a different model, left out of the regression check",
                )
            )
        else:
            same_models.append(m.model)
        old_served = set(prev_all.get(m.model, _ModelCounts()).served)
        new_served = set(counts.get(m.model, _ModelCounts()).served)
        # Asking for another model (the api-model alarm) is expected to change the served name.
        if m.model in same_models and old_served and new_served and old_served != new_served:
            served_alarms.append(
                Alarm(
                    "served-model-changed",
                    m.model,
                    "",
                    f"the server reported {_names(old_served)} in {prev.id}, {_names(new_served)} now",
                )
            )
        if (before.price_input, before.price_output) != (m.price_input, m.price_output):
            price_alarms.append(
                Alarm(
                    "price",
                    m.model,
                    "",
                    f"price per million tokens in/out changed from ${before.price_input:g}/"
                    f"${before.price_output:g} to ${m.price_input:g}/${m.price_output:g}",
                )
            )
        if before.price_cached_input != m.price_cached_input:
            price_alarms.append(
                Alarm(
                    "price",
                    m.model,
                    "",
                    f"cached-input price per million tokens changed from {_per_million(before.price_cached_input)} "
                    f"to {_per_million(m.price_cached_input)}",
                )
            )
        old_batch = (before.batch_price_input, before.batch_price_output)
        new_batch = (m.batch_price_input, m.batch_price_output)
        # Only when both runs were batched: moving a model to or from a Batch API is no price change.
        if None not in old_batch + new_batch and old_batch != new_batch:
            price_alarms.append(
                Alarm(
                    "price",
                    m.model,
                    "",
                    f"batch price per million tokens in/out changed from ${old_batch[0]:g}/"
                    f"${old_batch[1]:g} to ${new_batch[0]:g}/${new_batch[1]:g}",
                )
            )
    for name in prev_models:
        if name not in {m.model for m in models}:
            notes.append(f"model {name} was in {prev.id} but not in this run")
    suite_alarms = []
    for s in suites:
        before = prev_suites.get(s.suite)
        if before is None:
            notes.append(f"suite {s.suite} is new in this run: nothing to compare it with")
        elif before.suite_hash != s.suite_hash:
            suite_alarms.append(
                Alarm(
                    "suite-hash",
                    "",
                    s.suite,
                    f"content hash {before.suite_hash} in {prev.id}, {s.suite_hash} now (items, "
                    f"templates or grader settings changed): left out of the regression check",
                )
            )
    availability = []
    for m in models:
        old, new = prev_counts.get(m.model), new_counts.get(m.model)
        if old is None or new is None or not old.samples or not new.samples:
            continue
        r_old, r_new = old.errors / old.samples, new.errors / new.samples
        if r_new - r_old >= availability_min_increase:
            p = _fisher_greater(new.errors, new.samples, old.errors, old.samples)
            if p < alpha:
                availability.append(
                    Alarm(
                        "availability",
                        m.model,
                        "",
                        f"error rate {percent(r_old)} ({old.errors}/{old.samples}) in {prev.id}, "
                        f"{percent(r_new)} ({new.errors}/{new.samples}) now "
                        f"(one-sided Fisher exact p = {p:.2g})",
                    )
                )
    alarms = alarms + served_alarms + api_alarms + price_alarms + suite_alarms + availability + unavailable

    comparison = None
    if same_models and same_suites:
        cache = summaries if summaries is not None else {}
        for run_key in (prev.id, rid):
            if run_key not in cache:
                cache[run_key] = summarize_run(store, run_key)
        old, new = cache[prev.id], cache[rid]
        comparison = _compare(old, new, same_models, same_suites, correction=correction, alpha=alpha, clusters=clusters)
    if comparison is None:
        notes.append("no model and suite with results in both runs unchanged: no regression check")
    regressions = comparison.regressions if comparison else []
    return CheckResult(run, prev, regressions, alarms, comparison, notes, correction, alpha)


# --------------------------------------------------------------------------- output


def _run_dict(r: RunInfo | None) -> dict | None:
    if r is None:
        return None
    return {
        "run": r.id,
        "plan": r.plan_name,
        "tag": r.tag,
        "status": r.status,
        "started": r.started_at.isoformat(timespec="seconds"),
    }


def to_json(result: CheckResult) -> dict:
    """The `harness check --json` document (and the webhook's body); NaN/inf become null."""
    return json_safe(
        {
            "run": _run_dict(result.run),
            "previous": _run_dict(result.previous),
            "ok": result.ok,
            "correction": result.correction,
            "alpha": result.alpha,
            "regressions": [comparison_dict(c) for c in result.regressions],
            "watch": [comparison_dict(c) for c in result.watch],
            "alarms": [{"kind": a.kind, "model": a.model, "suite": a.suite, "detail": a.detail} for a in result.alarms],
            "comparisons": [comparison_dict(c) for c in result.comparison.comparisons] if result.comparison else [],
            "notes": list(result.notes),
            "summary": headline(result),
        }
    )


def _points(x: float) -> str:
    return "—" if x != x else f"{100 * x:+.1f}"


def _p(p: float) -> str:
    return "—" if p != p else (f"{p:.2g}" if p < 0.001 else f"{p:.3f}")


def describe_regression(c) -> str:
    return (
        f"{c.a.model} on {c.suite}: {100 * c.a.mean:.1f}% -> {100 * c.b.mean:.1f}% "
        f"({_points(c.diff)} points, corrected p {_p(c.p_adjusted)}, n={c.n_paired})"
    )


def describe_watch(c, n_comparisons: int) -> str:
    """One line for a large drop that is not significant: how large, why not confirmed, what would be."""
    mde = "—" if c.mde != c.mde else f"{100 * c.mde:.0f} points"
    return (
        f"{c.a.model} on {c.suite}: {100 * c.a.mean:.1f}% -> {100 * c.b.mean:.1f}% ({_points(c.diff)} points, "
        f"raw p {_p(c.p_value)}, corrected p {_p(c.p_adjusted)} over {n_comparisons} comparisons, n={c.n_paired}): "
        f"not significant; the smallest drop {c.n_paired} items detect (80% power) is {mde}: add items to confirm"
    )


def headline(result: CheckResult) -> str:
    """One line: what the check found."""
    against = f"against {result.previous_run_id}" if result.previous else "first run of its plan"
    parts = []
    if result.regressions:
        parts.append(f"{len(result.regressions)} regression{'s' if len(result.regressions) != 1 else ''}")
    if result.alarms:
        parts.append(f"{len(result.alarms)} alarm{'s' if len(result.alarms) != 1 else ''}")
    found = ", ".join(parts) if parts else "no regression, no alarm"
    if result.watch:
        found += f", {len(result.watch)} to watch"
    return f"harness check: plan {result.run.plan_name}, run {result.run_id} ({against}): {found}"


def format_text(result: CheckResult) -> str:
    """The human-readable check: regressions, alarms, notes (also the webhook's `text`)."""
    lines = [headline(result)]
    if result.comparison is not None:
        n = len(result.comparison.comparisons)
        name = {"holm": "Holm", "bh": "Benjamini-Hochberg"}[result.correction]
        lines.append(f"  {n} model x suite comparison{'s' if n != 1 else ''}, {name}-corrected, alpha {result.alpha:g}")
    for c in result.regressions:
        lines.append(f"  REGRESSION {describe_regression(c)}")
    for c in result.watch:
        lines.append(f"  WATCH {describe_watch(c, len(result.comparison.comparisons))}")
    for a in result.alarms:
        lines.append(f"  ALARM {a}")
    for note in result.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- webhook


@dataclass(frozen=True)
class WebhookResult:
    ok: bool
    status: int | None  # the HTTP status, when the server answered
    error: str  # why it failed ("" when ok)
    target: str  # scheme://host[:port] only: a webhook URL is often a secret


def webhook_target(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}" if parts.netloc else "(no host)"


def resolve_webhook(value) -> tuple[str | None, str]:
    """The plan's `webhook` -> (URL or None, a note when it cannot be used).

    `webhook: https://...` is the URL itself; `webhook: $VAR` (or `${VAR}`) reads it from the
    environment variable VAR, so a secret URL (Slack, Teams) need not sit in the plan file.
    """
    if value in (None, ""):
        return None, ""
    if not isinstance(value, str):
        return None, f"webhook {value!r} in the plan: give a URL or $VARIABLE"
    value = value.strip()
    if value.startswith("$"):
        var = value[1:].strip("{}")
        url = os.environ.get(var, "").strip()
        if not url:
            return None, f"webhook: environment variable {var} is not set; nothing posted"
        value = url
    if urlsplit(value).scheme not in ("http", "https"):
        return None, f"webhook {webhook_target(value)}: only http:// and https:// URLs are posted to"
    return value, ""


def post_webhook(url: str, payload: dict, timeout: float = 10) -> WebhookResult:
    """POST `payload` as JSON to `url`. Never raises: a failure comes back in the result."""
    from harness import __version__

    target = webhook_target(url)
    if urlsplit(url).scheme not in ("http", "https"):
        return WebhookResult(False, None, "only http:// and https:// URLs are posted to", target)
    body = json.dumps(payload, ensure_ascii=False, allow_nan=False, default=str).encode("utf-8")
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": f"harness/{__version__}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
            response.read(65536)
    except urllib.error.HTTPError as exc:
        return WebhookResult(False, exc.code, f"HTTP {exc.code} {exc.reason}", target)
    except urllib.error.URLError as exc:
        return WebhookResult(False, None, f"cannot reach it: {exc.reason}", target)
    except (TimeoutError, OSError, ValueError) as exc:
        return WebhookResult(False, None, f"{exc.__class__.__name__}: {exc}", target)
    if not 200 <= status < 300:
        return WebhookResult(False, status, f"HTTP {status}", target)
    return WebhookResult(True, status, "", target)


def webhook_payload(result: CheckResult) -> dict:
    """The check document plus `text`, a plain summary chat webhooks (Slack, Mattermost) display."""
    return {"text": format_text(result), **to_json(result)}


def notify(result: CheckResult, *, timeout: float = 10) -> WebhookResult | None:
    """Post the check to the webhook named in the run's plan; None when the plan names none."""
    url, problem = resolve_webhook(result.run.plan.get("webhook"))
    if url is None:
        return WebhookResult(False, None, problem, "") if problem else None
    return post_webhook(url, webhook_payload(result), timeout=timeout)


def _per_million(price: float | None) -> str:
    return "none (billed as input)" if price is None else f"${price:g}"
