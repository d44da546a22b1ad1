"""Write the static HTML report of stored runs: leaderboards, operations, samples, A vs B and trends."""

from __future__ import annotations

import re
from pathlib import Path

from harness.errors import HarnessError
from harness.store import Store

__all__ = ["check_out_dir", "write_report"]

# Written into every report folder: a later report may write there again, into nothing else non-empty.
MARKER = ".harness-report"
# What a folder may hold before its first report: the repository's reports/README.md, a .gitkeep,
# the log a scheduled run appends to before its report is written.
_PRE_REPORT = re.compile(r"README(\.\w+)?|\.gitkeep|\.gitignore|schedule-.+\.log(\.lock)?")


def write_report(store: Store, run_ids: list[str] | None = None, out_dir: str | Path = "reports") -> Path:
    """Write the static site for these runs (None = latest run) under out_dir and return the path of the
    first run's index.html, i.e. out_dir/<run_id>/index.html. Also (re)writes out_dir/index.html, the index
    of all runs in the DB, and the trend page of each of these runs' plans (out_dir/trends/).

    Pages need no network and run no script: charts are inline PNGs, the stylesheet is inlined and a
    Content-Security-Policy meta tag forbids everything else. All stored text is HTML-escaped.
    """
    from harness.report.site import build_site  # jinja2 and the page code load only when a report is made

    check_out_dir(out_dir)
    return build_site(store, run_ids, out_dir)


def check_out_dir(out_dir: str | Path) -> None:
    """Refuse to write a report into a folder that holds anything else (`--out /`, a home, a source tree).

    Accepted: a new or empty folder, one marked by an earlier report, one laid out like a report of a
    harness that wrote no marker yet (index.html, trends/, run folders), or one holding only a README
    or schedule logs. Cheap (no page code is imported), so `harness run` checks before its first request.
    """
    out = Path(out_dir)
    if not out.is_dir() or (out / MARKER).is_file():
        return
    entries = sorted(out.iterdir())
    others = [e for e in entries if not _PRE_REPORT.fullmatch(e.name)]
    if not others:
        return
    names = {e.name for e in entries}
    if {"index.html", "trends"} <= names and all(_report_entry(e) for e in others):
        return
    shown = ", ".join(e.name for e in others[:4]) + (", ..." if len(others) > 4 else "")
    raise HarnessError(
        f"--out {out}: the folder holds other files ({shown}) and no earlier report; "
        f"give a new or empty folder, e.g. --out reports"
    )


def _report_entry(path: Path) -> bool:
    """Whether a folder entry is one an (unmarked) earlier report wrote."""
    if path.name in ("index.html", "trends") or ".tmp-" in path.name:
        return True
    return path.is_dir() and (path / "index.html").is_file()
