"""Commits finished samples from a background thread."""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections import OrderedDict
from typing import Iterable

from harness.engine.units import WorkUnit
from harness.records import Completion
from harness.store import SampleRecord, Store

log = logging.getLogger(__name__)


class StoreWriter:
    """Commits samples from a background thread as they finish: each transaction takes whatever
    is ready at that moment (one sample when they trickle in, many when they arrive together),
    so nothing waits to fill a batch and a kill loses only samples not yet handed over."""

    PROMPT_MEMORY = 4096  # (suite content, item) pairs known stored; older ones are re-checked in the store

    def __init__(self, store: Store, suite_hashes: Iterable[str] = ()):
        self.store = store
        # Suite contents no earlier run stored prompts for: their prompts need no existence check.
        hashes = set(suite_hashes)
        self._new_suites = frozenset(hashes - store.suites_with_prompts(hashes)) if hashes else frozenset()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._prompted: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._error: BaseException | None = None
        self.written = 0
        self._thread = threading.Thread(target=self._loop, name="harness-store", daemon=True)
        self._thread.start()

    def put(self, record: SampleRecord, unit: WorkUnit) -> None:
        if self._error:
            raise self._error
        self._queue.put((record, unit))

    def put_cache(self, key: str, completion: Completion) -> None:
        self._queue.put(("cache", key, completion))

    def flush(self) -> None:
        """Block until everything handed over so far is committed (or has failed: then raise)."""
        done = threading.Event()
        self._queue.put(("flush", done))
        done.wait()
        if self._error:
            raise self._error

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < 2000:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            flushes = [entry[1] for entry in batch if entry[0] == "flush"]
            try:
                self._write([entry for entry in batch if entry[0] != "flush"])
            except BaseException as exc:  # surfaced to the engine on the next put/close
                self._error = exc
                log.exception("storing samples failed")
            for done in flushes:
                done.set()
            if stop:
                return

    def _write(self, batch: list) -> None:
        by_suite: dict[str, list[tuple[str, ...]]] = {}
        records = []
        cache_rows = []
        for entry in batch:
            if entry[0] == "cache":
                cache_rows.append((entry[1], json.dumps(entry[2].to_json(), ensure_ascii=False)))
                continue
            record, unit = entry
            records.append(record)
            key = (unit.suite_hash, unit.item.id)
            if key in self._prompted:
                continue
            self._prompted[key] = None
            if len(self._prompted) > self.PROMPT_MEMORY:
                self._prompted.popitem(last=False)
            messages = json.dumps(unit.prompt.to_json(), ensure_ascii=False)
            ref = unit.item.reference
            ref_text = ref if isinstance(ref, str) else json.dumps(ref, ensure_ascii=False, default=str)
            fields = json.dumps(dict(unit.item.fields), ensure_ascii=False, default=str)
            by_suite.setdefault(unit.suite_hash, []).append((unit.item.id, messages, ref_text or "", fields))
        if not self.store.save_batch(records, prompts=by_suite, cache=cache_rows, new_suites=self._new_suites):
            self._new_suites = frozenset()  # someone else stores prompts too: check from now on
        self.written += len(records)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error:
            raise self._error
