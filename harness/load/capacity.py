"""Capacity search: the highest concurrency (or rate) at which a model still meets the SLO.

The profile's own levels are run first; from what they show, the search doubles past the last
level that passed until one fails (or `ceiling` is reached), then bisects between the highest
pass and the lowest failure until they are within `resolution` of each other (relative, at least
one user). It assumes that more load never makes a model faster, the premise of capacity planning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Awaitable, Callable

Probe = Callable[[float], Awaitable[bool]]  # run one stage at a level; does it meet the SLO?


@dataclass
class Capacity:
    best: float | None  # the highest level that met the SLO; None if none did
    first_failure: float | None  # the lowest level that did not
    tried: dict[float, bool] = field(default_factory=dict)
    note: str = ""


async def search(
    probe: Probe,
    levels: tuple[float, ...],
    *,
    integer: bool,
    ceiling: float,
    resolution: float = 0.1,
    max_probes: int = 12,
) -> Capacity:
    tried: dict[float, bool] = {}

    async def run(level: float) -> bool:
        if level not in tried:
            tried[level] = await probe(level)
        return tried[level]

    def passes() -> list[float]:
        return [lv for lv, ok in tried.items() if ok]

    def failures() -> list[float]:
        return [lv for lv, ok in tried.items() if not ok]

    for level in sorted(levels):
        if not await run(level):
            break  # more load will not pass either
    extra = 0
    while not failures() and extra < max_probes:
        best = max(passes())
        nxt = min(ceiling, best * 2)
        if nxt <= best:
            return Capacity(best, None, tried, f"met the SLO up to the search ceiling {ceiling:g}")
        await run(nxt)
        extra += 1
    while extra < max_probes:
        lo = max([lv for lv in passes() if lv < min(failures())], default=0.0)
        hi = min(failures())
        gap = hi - lo
        if gap <= max(1.0 if integer else 0.0, resolution * max(lo, 1e-9)) or (integer and gap <= 1):
            break
        mid = (lo + hi) / 2
        mid = float(math.floor(mid)) if integer else round(mid, 3)
        if mid <= lo:
            break
        await run(mid)
        extra += 1
    fails = failures()
    hi = min(fails) if fails else None
    ok_below = [lv for lv in passes() if hi is None or lv < hi]
    best = max(ok_below) if ok_below else None
    note = "" if best is not None else f"no level met the SLO (lowest tried: {min(tried):g})"
    if extra >= max_probes:
        note = (note + "; " if note else "") + f"stopped after {max_probes} search probes"
    return Capacity(best, hi, tried, note)
