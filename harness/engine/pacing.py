"""How fast a model may be asked: adaptive concurrency window, rate buckets, retry backoff."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque

log = logging.getLogger(__name__)


class AdaptiveLimiter:
    """An AIMD window over one model's concurrent requests.

    Additive increase: each success grows the window by 1/window (about +1 per window of
    successes), up to the plan's `concurrency`. Multiplicative decrease: the window halves when
    429s are a real signal, i.e. at least `threshold` of the recent responses were 429s, and at
    most once per generation of requests (429s from requests that were already in flight when
    the window was cut do not cut it again, as TCP cuts once per round trip). After a cut, no new
    request starts until the server's Retry-After has passed. An isolated 429 (a burst limit, a
    flaky gateway) is only retried after its Retry-After: halving the window for it would cost far
    more throughput than the retry.

    Waiters are served in order; retries (`priority=True`) go first, so a unit that failed is
    not starved behind new ones and the run's tail stays short.
    """

    def __init__(self, cap: int, *, threshold: float = 0.2, memory: int | None = None):
        self.cap = max(1, int(cap))
        self.window = float(self.cap)
        self.min_window = self.window
        self.threshold = threshold
        self.in_flight = 0
        self.cuts = 0
        self._waiters: deque[asyncio.Future] = deque()
        self._recent: deque[bool] = deque(maxlen=memory or max(20, self.cap))
        self._recent_429 = 0
        self._started = 0
        self._cut_ticket = 0  # requests started before the last cut do not cut again
        self._paused_until = 0.0
        self._wake_handle: asyncio.TimerHandle | None = None

    @property
    def limit(self) -> int:
        return max(1, int(self.window))

    async def acquire(self, *, priority: bool = False) -> int:
        """Wait for a slot; returns a ticket to hand back to `release`."""
        if (
            self.in_flight < self.limit
            and not self._waiters
            and (not self._paused_until or time.monotonic() >= self._paused_until)
        ):
            self.in_flight += 1
        else:
            fut = asyncio.get_running_loop().create_future()
            if priority:
                self._waiters.appendleft(fut)
            else:
                self._waiters.append(fut)
            self._wake()  # a slot may be free and only a pause in the way: make sure a timer ends it
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():  # the slot was handed over: give it back
                    self.in_flight -= 1
                    self._wake()
                raise
        self._started += 1
        return self._started

    def release(
        self, ticket: int, *, rate_limited: bool = False, success: bool = True, retry_after: float | None = None
    ) -> None:
        self.in_flight -= 1
        if success or rate_limited:
            if len(self._recent) == self._recent.maxlen and self._recent[0]:
                self._recent_429 -= 1
            self._recent.append(rate_limited)
            self._recent_429 += rate_limited
        if rate_limited:
            share = self._recent_429 / max(len(self._recent), (self._recent.maxlen or 0) // 2)
            if ticket > self._cut_ticket and share >= self.threshold:
                self.window = max(1.0, self.window / 2)
                self.min_window = min(self.min_window, self.window)
                self.cuts += 1
                self._cut_ticket = self._started
                if retry_after:
                    self._paused_until = max(self._paused_until, time.monotonic() + min(retry_after, 60.0))
                log.info("429s: concurrency window cut to %d", self.limit)
        elif success and self.window < self.cap:
            self.window = min(float(self.cap), self.window + 1.0 / self.window)
        self._wake()

    def lower_cap(self) -> None:
        """The server serves fewer requests at once than it is sent (it ends some early): one fewer, for good."""
        if self.cap > 1:
            self.cap = max(1, min(self.cap - 1, self.limit - 1))
            self.window = min(self.window, float(self.cap))
            self.min_window = min(self.min_window, self.window)
            self.cuts += 1
            log.info("the server ends requests early under concurrency: at most %d at once from now on", self.cap)

    def _wake(self) -> None:
        if not self._waiters:
            return
        if self._paused_until:
            wait = self._paused_until - time.monotonic()
            if wait > 0:
                if self._wake_handle is None:
                    self._wake_handle = asyncio.get_running_loop().call_later(wait, self._wake_later)
                return
            self._paused_until = 0.0
        while self._waiters and self.in_flight < self.limit:
            fut = self._waiters.popleft()
            if not fut.done():
                self.in_flight += 1
                fut.set_result(None)

    def _wake_later(self) -> None:
        self._wake_handle = None
        self._wake()


class RateLimiter:
    """Token buckets for requests per minute and (estimated) tokens per minute.

    Each bucket holds at most ten seconds' worth, so a run starts with a modest burst
    instead of a whole minute's allowance at once.
    """

    def __init__(self, rpm: float | None, tpm: float | None):
        self.rpm, self.tpm = rpm, tpm
        self.active = bool(rpm or tpm)
        self._req_cap = max(1.0, rpm / 6) if rpm else 0.0
        self._tok_cap = max(1.0, tpm / 6) if tpm else 0.0
        self._req = self._req_cap
        self._tok = self._tok_cap
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self, tokens: int) -> None:
        if not self.active:
            return
        async with self._lock:
            while True:
                now = time.monotonic()
                elapsed, self._stamp = now - self._stamp, now
                if self.rpm:
                    self._req = min(self._req_cap, self._req + elapsed * self.rpm / 60)
                if self.tpm:
                    self._tok = min(self._tok_cap, self._tok + elapsed * self.tpm / 60)
                need_tok = min(tokens, self._tok_cap) if self.tpm else 0
                waits = []
                if self.rpm and self._req < 1:
                    waits.append((1 - self._req) * 60 / self.rpm)
                if self.tpm and self._tok < need_tok:
                    waits.append((need_tok - self._tok) * 60 / self.tpm)
                if not waits:
                    if self.rpm:
                        self._req -= 1
                    if self.tpm:
                        self._tok -= need_tok
                    return
                await asyncio.sleep(max(waits))


def backoff_delay(attempt: int, retry_after: float | None, base: float = 0.25, cap: float = 30.0) -> float:
    """How long to wait before attempt `attempt + 1`.

    The server's Retry-After when it sent one (never shortened; up to 20% jitter on top, so
    that requests told the same time do not all come back at the same instant). Otherwise
    exponential backoff with full jitter: uniform in [0, base * 2^(attempt-1)], capped, so
    retries of a failed burst spread out instead of hammering the server together.
    """
    if retry_after is not None:
        return min(retry_after, 120.0) * random.uniform(1.0, 1.2)
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))


def rate_limit_delay(retry_after: float | None, attempt: int, base: float = 1.0, cap: float = 30.0) -> float:
    """How long a rate-limited (429) request waits before it asks again.

    The server's Retry-After when it sent one (as `backoff_delay`). Without it (LiteLLM's
    router sends none), a backoff that doubles from `base` up to `cap` with half of it jittered:
    it keeps a rate window's worth of requests from all coming back at once, and the cap keeps a
    request from sleeping long past the moment a per-minute window frees.
    """
    if retry_after is not None:
        return backoff_delay(attempt, retry_after)
    step = min(cap, base * 2 ** max(0, attempt - 1))
    return step * random.uniform(0.5, 1.0)
