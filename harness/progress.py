"""Show a run's progress: a rich progress bar per model on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time

from harness.store import SampleRecord


class RunProgress:
    """Per model: done/total, errors, running accuracy and spend."""

    def __init__(self, *, console=None, plain: bool | None = None, interval_s: float = 5.0):
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.plain = (not self.console.is_terminal) if plain is None else plain
        self.interval_s = interval_s
        self._states = {}
        self._tasks = {}
        self._progress = None
        self._last_line = 0.0

    def start(self, states) -> None:
        self._states = states
        if self.plain:
            totals = ", ".join(f"{name}: {st.total if st.total is not None else '?'}" for name, st in states.items())
            print(f"requests to make: {totals}", file=sys.stderr, flush=True)
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"), TimeElapsedColumn(),
            console=self.console, transient=False,
        )
        self._progress.start()
        for name, st in states.items():
            self._tasks[name] = self._progress.add_task(name, total=st.total, stats="")

    def _stats(self, st) -> str:
        acc = st.correct / st.done if st.done else 0.0
        return f"acc {acc:.1%}  errors {st.errors}  ${st.cost:.4f}"

    def advance(self, record: SampleRecord) -> None:
        st = self._states.get(record.model)
        if st is None:
            return
        if self._progress is not None:
            self._progress.update(self._tasks[record.model], advance=1, stats=self._stats(st))
            return
        now = time.monotonic()
        finished = st.total is not None and st.done >= st.total
        if finished or now - self._last_line >= self.interval_s:
            self._last_line = now
            for name, s in self._states.items():
                total = s.total if s.total is not None else "?"
                print(f"{name}: {s.done}/{total}  {self._stats(s)}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
