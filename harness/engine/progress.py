"""Show a run's progress: a rich progress bar per model on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any

from harness.formatting import money


class RunProgress:
    """Per model: done/total, errors, running accuracy and spend.

    On a terminal, one rich bar per model, refreshed a few times a second. Elsewhere (a log file,
    CI), a line per model every `interval_s` seconds and when a model finishes; rich is then not
    even imported.
    """

    def __init__(self, *, console=None, plain: bool | None = None, interval_s: float = 5.0, stream=None):
        self.stream = stream or sys.stderr
        if plain is None:
            plain = console is None and not _isatty(self.stream)
        self.plain = plain
        self.console = console
        self.interval_s = interval_s
        self._states: dict = {}
        self._tasks: dict = {}
        self._progress: Any = None  # a rich Progress once started (rich is imported only then)
        self._last_line = 0.0
        self._last_bar = 0.0
        self._finished: set[str] = set()

    def start(self, states) -> None:
        self._states = states
        self._last_line = time.monotonic()
        if self.plain:
            totals = ", ".join(f"{name}: {st.total if st.total is not None else '?'}" for name, st in states.items())
            print(f"requests to make: {totals}", file=self.stream, flush=True)
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            # Model names are data: shown as written, never parsed as rich markup.
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}", markup=False),
            TimeElapsedColumn(),
            console=self.console or Console(file=self.stream),
            transient=False,
            auto_refresh=True,
            refresh_per_second=4,
        )
        self._progress.start()
        for name, st in states.items():
            self._tasks[name] = self._progress.add_task(name, total=st.total, stats=self._stats(st))

    @staticmethod
    def _stats(st) -> str:
        acc = st.correct / st.done if st.done else 0.0
        return f"acc {acc:.1%}  errors {st.errors}  {money(st.cost)}"

    def advance(self, record) -> None:
        st = self._states.get(record.model)
        if st is None:
            return
        if self._progress is not None:
            now = time.monotonic()
            if now - self._last_bar >= 0.1 or (st.total is not None and st.done >= st.total):
                self._last_bar = now
                for name, s in self._states.items():  # cheap: rich redraws on its own timer
                    self._progress.update(self._tasks[name], completed=s.done, stats=self._stats(s))
            return
        now = time.monotonic()
        finished = st.total is not None and st.done >= st.total and record.model not in self._finished
        if finished:
            self._finished.add(record.model)
        if finished or now - self._last_line >= self.interval_s:
            self._print_lines(now)

    def refresh(self) -> None:
        """Redraw from the states as they are now (for an executor whose samples finish in other
        processes and whose counts it gathers itself, such as the Ray executor)."""
        if self._progress is not None:
            self._update_bars()
            return
        now = time.monotonic()
        finished = {
            name for name, s in self._states.items() if s.total is not None and s.done >= s.total
        } - self._finished
        self._finished |= finished
        if finished or now - self._last_line >= self.interval_s:
            self._print_lines(now)

    def _print_lines(self, now: float) -> None:
        self._last_line = now
        for name, s in self._states.items():
            total = s.total if s.total is not None else "?"
            print(f"{name}: {s.done}/{total}  {self._stats(s)}", file=self.stream, flush=True)

    def _update_bars(self) -> None:
        for name, s in self._states.items():
            self._progress.update(self._tasks[name], completed=s.done, stats=self._stats(s))

    def stop(self) -> None:
        if self._progress is not None:
            self._update_bars()
            self._progress.stop()
            self._progress = None


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
