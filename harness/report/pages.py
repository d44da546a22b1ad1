"""Render report pages: autoescaped Jinja shell with CSP, value formatting, paginated sample pages."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import os
import re
from array import array
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from harness import __version__
from harness.formatting import finite, money
from harness.formatting import percent as pct
from harness.graders import shown_reference
from harness.providers.registry import capabilities_of
from harness.records import Prompt
from harness.report.images import ImageShelf
from harness.store import Store

if TYPE_CHECKING:
    from harness.report.charts import Chart
from harness.store import reports as queries

PAGE_SIZE = 200  # samples per page
TEXT_CAP = 20_000  # characters shown per prompt message, completion or reasoning
SHORT_CAP = 2_000  # reference / reason / extracted / error
ANSWER_CAP = 80  # answers and references quoted on A-vs-B pages
FILTERS = (("all", "All"), ("right", "Right"), ("wrong", "Wrong"))
NAN = float("nan")
_HERE = Path(__file__).parent
_SAFE_DIR = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


# --------------------------------------------------------------------------- formatting


def ci_text(lo, hi) -> str:
    return f"{100 * lo:.1f}–{100 * hi:.1f}" if finite(lo) and finite(hi) else "—"


def secs(x) -> str:
    if not finite(x):
        return "—"
    return f"{1000 * x:.0f} ms" if x < 1 else f"{x:.2f} s"


def pval(p) -> str:
    if not finite(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def points(diff, lo=NAN, hi=NAN) -> str:
    """A score difference in percentage points, with its CI when known."""
    if not finite(diff):
        return "—"
    text = f"{100 * diff:+.1f}"
    return text + (f" [{100 * lo:+.1f}, {100 * hi:+.1f}]" if finite(lo) and finite(hi) else "")


@functools.lru_cache(maxsize=4096)
def slug(name: str) -> str:
    """A file-name-safe, collision-free (also on case-insensitive disks) form of a name."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:48] or "x"
    return f"{base}-{hashlib.sha1(name.encode('utf-8')).hexdigest()[:6]}"


def run_dir(run_id: str) -> str:
    return run_id if _SAFE_DIR.fullmatch(run_id) else slug(run_id)


def cell_folder(model: str, suite: str) -> str:
    """A model x suite's sample pages, relative to the run folder."""
    return f"samples/{slug(model)}/{slug(suite)}"


def expected_pages(count: int) -> int:
    return max(1, math.ceil(count / PAGE_SIZE))


def page_of(ordinal: int, count: int) -> int:
    """The 'all' page that holds the ordinal-th (1-based) sample of a cell of `count` samples."""
    return min(math.ceil(ordinal / PAGE_SIZE), expected_pages(count))


def page_links(page: int, pages: int) -> list[int | None]:
    """1 … p-2 p-1 p p+1 p+2 … last (None is a gap)."""
    keep = {1, pages, *range(max(1, page - 2), min(pages, page + 2) + 1)}
    out: list[int | None] = []
    for p in sorted(keep):
        if out and out[-1] is not None and p > out[-1] + 1:
            out.append(None)
        out.append(p)
    return out


# --------------------------------------------------------------------------- templates


class Renderer:
    """Compiled templates plus the page shell (CSP, inlined stylesheet) shared by every page."""

    def __init__(self) -> None:
        self.env = Environment(
            loader=FileSystemLoader(str(_HERE / "templates")),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
            undefined=StrictUndefined,
            auto_reload=False,
        )
        css = (_HERE / "static" / "report.css").read_text(encoding="utf-8")
        digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode("ascii")
        # No script runs on any page; styles only from the inlined sheet (by hash), images only inline.
        self.csp = (
            f"default-src 'none'; style-src 'sha256-{digest}'; img-src data:; base-uri 'none'; form-action 'none'"
        )
        # The stylesheet is our own static file, not data: Markup keeps its `>` selectors intact.
        self.env.globals.update(css=Markup(css), csp=self.csp, version=__version__)
        self.sample = self.env.get_template("_sample.html.j2").module.sample
        self._templates: dict = {}

    def template(self, name: str):
        if name not in self._templates:
            self._templates[name] = self.env.get_template(name)
        return self._templates[name]

    def write(self, name: str, path: Path, **context) -> None:
        """Render a page and put it in place atomically (a reader never sees half a page)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(self.template(name).render(**context))
        os.replace(tmp, path)


# --------------------------------------------------------------------------- samples

# The fields of one sample article, in the order the `_sample.html.j2` macro unpacks them: a plain
# tuple keeps the per-sample template work to local-variable access (100k samples in seconds).
SAMPLE_FIELDS = (
    "n",
    "status",
    "status_label",
    "item_id",
    "meta",
    "extracted",
    "reference",
    "reference_cut",
    "reason",
    "error",
    "messages",
    "summary",
    "reasoning",
    "reasoning_cut",
    "reasoning_size",
    "completion",
    "completion_cut",
    "ops",
    "images",
    "tools",  # tool suites: (label, text) sections: tools offered, calls made, outcome, agent transcript
)
_STATUS = {"pass": "✓ right", "fail": "✗ wrong", "error": "⚠ error"}
_COL = {c.key: i for i, c in enumerate(queries.SAMPLE_COLUMNS)}
_ITEM, _ERROR, _PASSED, _LATENCY = _COL["item_id"], _COL["error"], _COL["passed"], _COL["latency_s"]
_EXTRACTED, _REFERENCE, _BATCHED = _COL["extracted"], _COL["reference"], _COL["batched"]
_MESSAGES = _COL["messages_json"]


def messages_of(messages_json: str | None) -> list[tuple[str, str, int]]:
    """[(role, text, characters cut)] from a stored prompt; images and tool calls are shown as a line each."""
    if messages_json is None:
        return []
    try:
        data = json.loads(messages_json)
    except ValueError:
        data = [["prompt", messages_json]]
    if not isinstance(data, (list, dict)):
        data = [["prompt", str(data)]]
    out = []
    for m in Prompt.from_json(data).messages:
        lines = [m.text] if m.text else []
        lines += [f"[image: {image.source or image.sha256[:12]}]" for image in m.images]
        lines += [f"-> {call.name}({call.raw_arguments})" for call in m.tool_calls]
        if m.tool_call_id:
            lines.insert(0, f"[result of {m.tool_call_id}]")
        content = "\n".join(lines)
        out.append(
            (m.role, content, 0) if len(content) <= TEXT_CAP else (m.role, content[:TEXT_CAP], len(content) - TEXT_CAP)
        )
    return out


def tool_sections(messages_json, calls_json=None, outcome=None, transcript_json=None) -> list[tuple[str, str]]:
    """What a tool sample page shows beyond the prompt: tools offered, calls made, outcome, the agent transcript."""
    from harness.report.tool_view import sections

    return sections(messages_json, calls_json, outcome, transcript_json, TEXT_CAP)


def sample_view(row, n: int, reference: str | None = None, timed: bool = True, images: tuple = ()) -> tuple:
    """A streamed sample row (queries.SAMPLE_COLUMNS) as the SAMPLE_FIELDS tuple of plain text;
    the template escapes every field. `reference`: the reference as the grader reads it (default: as
    stored); `timed`: the latency was measured (not so for completions replayed from a file)."""
    (
        _model,
        _suite,
        item_id,
        group,
        sample_index,
        completion,
        reasoning,
        finish,
        pt,
        ct,
        rt,
        latency,
        ttft,
        served,
        error,
        attempts,
        cost,
        score,
        passed,
        reason,
        extracted,
        messages_json,
        stored_reference,
        batched,
        *tool_columns,
    ) = row
    reference = stored_reference if reference is None else reference
    status = "error" if error else ("pass" if passed else "fail")
    messages = messages_of(messages_json)
    if messages:
        preview = " ".join(messages[-1][1][:300].split())
        if len(preview) > 120:
            preview = preview[:119] + "…"
        summary = f"Prompt · {len(messages)} message{'' if len(messages) == 1 else 's'} · {preview}"
    else:
        summary = "Prompt · not stored"
    meta = (
        f"sample {sample_index} · group {group} · score {score:g}"
        if group
        else f"sample {sample_index} · score {score:g}"
    )
    reference = reference or ""
    completion = completion or ""
    reasoning = reasoning or ""
    size = f"{len(reasoning):,} characters"
    ops = ["batched (no latency)" if batched else (secs(latency) if timed else "latency —")]
    if ttft is not None:
        ops.append("TTFT " + secs(ttft))
    ops.append(f"{pt:,} → {ct:,} tokens ({rt:,} reasoning)" if rt else f"{pt:,} → {ct:,} tokens")
    ops.append(money(cost))
    if finish:
        ops.append("finish " + finish)
    if served:
        ops.append("served as " + served)
    if attempts and attempts > 1:
        ops.append(f"{attempts} attempts")
    return (
        n,
        status,
        _STATUS[status],
        item_id,
        meta,
        (extracted or "")[:SHORT_CAP],
        reference[:SHORT_CAP],
        max(0, len(reference) - SHORT_CAP),
        (reason or "")[:SHORT_CAP],
        (error or "")[:SHORT_CAP],
        messages,
        summary,
        reasoning[:TEXT_CAP],
        max(0, len(reasoning) - TEXT_CAP),
        f"{rt:,} tokens · {size}" if rt else size,
        completion[:TEXT_CAP],
        max(0, len(completion) - TEXT_CAP),
        " · ".join(ops),
        images,
        tool_sections(messages_json, *tool_columns) if tool_columns else [],
    )


class CellPages:
    """Writes one model x suite's sample pages for the all / right / wrong views as samples stream in.

    Page counts come from the samples counted up front (up to the same newest sample id as the
    stream); a page is written as soon as it is full, so memory holds one page per view. Should the
    stream bring more samples than counted, the last page takes them; fewer, and the missing pages
    are written empty: links never break."""

    def __init__(self, renderer: Renderer, folder: Path, context: dict, n_all: int, n_right: int):
        self.r = renderer
        self.folder = folder
        self.counts = {"all": n_all, "right": n_right, "wrong": n_all - n_right}
        self.pages = {f: expected_pages(c) for f, c in self.counts.items()}
        self.buf: dict[str, list[bytes]] = {f: [] for f, _ in FILTERS}
        self.next_page = {f: 1 for f, _ in FILTERS}
        self.first = {f: 1 for f, _ in FILTERS}
        self.context = context
        self.filters = [(f, label, f"{self.counts[f]:,}") for f, label in FILTERS]

    def add(self, fragment: bytes, passed: bool) -> None:
        """Add one rendered sample (UTF-8 bytes of the autoescaped macro's output)."""
        for f in ("all", "right" if passed else "wrong"):
            buf = self.buf[f]
            buf.append(fragment)
            if len(buf) >= PAGE_SIZE and self.next_page[f] < self.pages[f]:
                self._flush(f)

    def close(self) -> None:
        for f, _ in FILTERS:
            while self.next_page[f] <= self.pages[f]:
                self._flush(f)

    def _flush(self, f: str) -> None:
        page, buf = self.next_page[f], self.buf[f]
        total = self.counts[f]
        shown = f"{self.first[f]:,}–{self.first[f] + len(buf) - 1:,} of {total:,}" if buf else f"0 of {total:,}"
        # The page shell is rendered around a marker that only our template can contain (data is
        # escaped, so no "<!--" from it survives); the samples, already-escaped HTML encoded once,
        # are written in its place without copying them into one big string.
        text = self.r.template("samples.html.j2").render(
            filter=f,
            filter_label=dict(FILTERS)[f],
            page=page,
            pages=self.pages[f],
            page_links=page_links(page, self.pages[f]),
            shown=shown,
            has_samples=bool(buf),
            body=Markup(_BODY_MARK),
            filters=self.filters,
            **self.context,
        )
        head, _, tail = text.partition(_BODY_MARK)  # no marker on an empty page: all of it is head
        path = self.folder / f"{f}-{page}.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(head.encode("utf-8"))
            fh.write(b"".join(buf))
            fh.write(tail.encode("utf-8"))
        self.first[f] += len(buf)
        self.next_page[f] += 1
        self.buf[f] = []


_BODY_MARK = "<!--harness:samples-->"


def render_cells(
    store: Store | str,
    run_id: str,
    max_id: int,
    cells: list[tuple[str, str]],
    site: str | Path,
    counts: dict[tuple[str, str], tuple[int, int, float]],
) -> dict:
    """Write the sample pages of these model x suite cells under `site` (the run's folder).

    `store` may be a database URL (in a worker process). Returns what the run page needs from the
    samples: per cell, item -> (ordinal of its first sample, its answer) for A-vs-B links; per
    (suite, item) the reference; per model the latencies of successful requests."""
    own = isinstance(store, str)
    if own:
        store = Store(store)
    try:
        r = Renderer()
        site = Path(site)
        render = r.sample
        located: dict[tuple[str, str], dict[str, tuple[int, str]]] = {}
        references: dict[tuple[str, str], str] = {}
        latencies: dict[str, array] = {}
        graders = {s.suite: s.grader for s in store.run_suites(run_id)}
        untimed = {m.model for m in store.run_models(run_id) if not capabilities_of(m.provider).timed}  # replayed
        shown: dict[tuple[str, str], str] = {}
        shelf = ImageShelf(site, store.run(run_id).plan)
        for model, suite in cells:
            n_all, n_right, score_sum = counts.get((model, suite), (0, 0, 0.0))
            pages = CellPages(
                r,
                site / cell_folder(model, suite),
                dict(
                    root="../../../../",
                    run_href="../../../index.html",
                    run_id=run_id,
                    model=model,
                    suite=suite,
                    score=pct(score_sum / n_all) if n_all else "—",
                ),
                n_all,
                n_right,
            )
            loc = located.setdefault((model, suite), {})
            lat = latencies.setdefault(model, array("d"))
            n = 0
            for row in queries.stream_samples(store, run_id, max_id, model=model, suite=suite):
                n += 1
                item = row[_ITEM]
                ref = shown.get((suite, item))
                if ref is None:
                    ref = shown[(suite, item)] = shown_reference(graders.get(suite, ""), row[_REFERENCE] or "")
                images = tuple(shelf.shown(suite, item, row[_MESSAGES], pages.folder)) if row[_MESSAGES] else ()
                view = sample_view(row, n, ref, model not in untimed, images)
                pages.add(render(view).encode("utf-8"), bool(row[_PASSED]))
                if row[_ERROR]:
                    if item not in loc:
                        loc[item] = (n, "(error)")
                else:
                    if model not in untimed and not row[_BATCHED]:  # a batched answer waited in a queue
                        lat.append(row[_LATENCY])
                    if item not in loc:
                        loc[item] = (n, (row[_EXTRACTED] or "")[:ANSWER_CAP])
                if (suite, item) not in references:
                    references[(suite, item)] = ref[:ANSWER_CAP]
            pages.close()
        return dict(located=located, references=references, latencies=latencies)
    finally:
        if own:
            store.close()


def when(d: datetime | None) -> str:
    return d.strftime("%Y-%m-%d %H:%M") if d else ""


def chart_ctx(chart: Chart | None, path: Path, href: str) -> dict | None:
    """Save the PNG (for download) and inline it as a data: URI (CSP allows only those images)."""
    if chart is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(chart.png)
    return dict(
        src="data:image/png;base64," + base64.b64encode(chart.png).decode("ascii"),
        file=href,
        alt=chart.alt,
        width=chart.width,
        height=chart.height,
    )
