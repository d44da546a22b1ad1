"""Process-wide tuning for a process that exists for one run (the CLI's `harness run`): the one place that
touches the garbage collector and the GIL switch interval."""

from __future__ import annotations

import contextlib
import gc
import sys
from typing import Iterator


def quiet_startup() -> None:
    """Start-up is imports (sqlalchemy, then openai's hundreds of pydantic models): the cyclic garbage
    collector would rescan them over and over while they load (~0.1 s). `tuned_for_run` turns it back on."""
    gc.disable()


@contextlib.contextmanager
def tuned_for_run() -> Iterator[None]:
    """While requests are in flight: every object alive after the imports moves to the collector's
    permanent generation (full collections stop re-walking the hundreds of thousands of objects that
    importing the openai client creates) and the collector is on again; the GIL switch interval is
    1 ms instead of 5, so the store writer and the import-warming thread hand the GIL back to the
    event loop sooner when a response is waiting."""
    switch_interval = sys.getswitchinterval()
    gc.freeze()
    gc.enable()
    sys.setswitchinterval(min(switch_interval, 0.001))
    try:
        yield
    finally:
        sys.setswitchinterval(switch_interval)


def spare_exit() -> None:
    """Spare the interpreter's exit from walking every object the run and its imports created (about
    0.3 s with openai, sqlalchemy and scipy loaded): all of it lives until exit anyway."""
    gc.freeze()
