"""Which items a `limit` takes: a seeded sample spread across the suite's groups, the same on every run.

Each item gets a rank from a hash of (seed, suite, item id), so the choice depends on nothing but
the items themselves: a weekly run of the same plan asks the same items, and adding rows to a file
keeps most of the earlier choice. Within a group the lowest ranks are taken first.

Allocation over groups (C-Eval subjects, BBH tasks; one group when the suite has none):
- N below the number of groups: N groups, those whose names rank lowest, one item each;
- otherwise one item from every group, and the remaining N - G go where the group sizes say:
  the k-th extra item of a group of size n_g competes with the score k / n_g (lowest first), so a
  group receives about N * n_g / total items (proportional allocation), never more than it has.
"""

from __future__ import annotations

import hashlib
from typing import Iterable


def _rank(seed: int, suite: str, key: str) -> bytes:
    return hashlib.sha256(f"{seed}\0{suite}\0{key}".encode()).digest()[:12]


def sample_indices(entries: Iterable[tuple[str, str]], n: int, *, suite: str, seed: int = 0) -> set[int]:
    """Indices (positions in `entries`) of the `n` items to take; `entries` are (item id, group) in file order."""
    by_group: dict[str, list[tuple[bytes, int]]] = {}
    total = 0
    for index, (item_id, group) in enumerate(entries):
        by_group.setdefault(group, []).append((_rank(seed, suite, item_id), index))
        total += 1
    if n >= total:
        return set(range(total))
    for members in by_group.values():
        members.sort()
    groups = sorted(by_group, key=lambda g: _rank(seed, suite, "group\0" + g))
    if n < len(groups):
        return {by_group[g][0][1] for g in groups[:n]}
    chosen = {by_group[g][0][1] for g in groups}
    extra = sorted(
        (
            (k / len(members), rank, index)
            for members in by_group.values()
            for k, (rank, index) in enumerate(members)
            if k >= 1
        )
    )
    chosen.update(index for _, _, index in extra[: n - len(groups)])
    return chosen
