"""Write the static HTML report of stored runs: leaderboards, operations, samples, A vs B and trends."""

from __future__ import annotations

from pathlib import Path

from harness.store import Store

__all__ = ["write_report"]


def write_report(store: Store, run_ids: list[str] | None = None, out_dir: str | Path = "reports") -> Path:
    """Write the static site for these runs (None = latest run) under out_dir and return the path of the
    first run's index.html, i.e. out_dir/<run_id>/index.html. Also (re)writes out_dir/index.html, the index
    of all runs in the DB, and the trend page of each of these runs' plans (out_dir/trends/).

    Pages need no network and run no script: charts are inline PNGs, the stylesheet is inlined and a
    Content-Security-Policy meta tag forbids everything else. All stored text is HTML-escaped.
    """
    from harness.report.site import build_site  # jinja2 and the page code load only when a report is made

    return build_site(store, run_ids, out_dir)
