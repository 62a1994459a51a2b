"""Which record a full book lets go, found without looking at every record it holds.

The books of instrument states and incidents drop their lowest-ranked record when
full. Scanning them all for it made each new record cost the whole book, under the
lock the page draws with: 5,000 new instruments in a full book kept the reader busy
for seconds. Here the ranks sit in a heap. A record whose rank changes leaves its
old entry behind, skipped when it comes up, and the heap is rebuilt from the live
ranks once such entries outnumber them, so it stays within about twice the book.
"""

from __future__ import annotations

from collections.abc import Hashable
from heapq import heapify, heappop, heappush
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)


class EvictionOrder(Generic[Key]):
    """The keys of a book by rank, lowest first. Ranks of two keys must never be equal: end each
    rank with something unique to its key."""

    def __init__(self) -> None:
        self._ranks: dict[Key, tuple] = {}
        self._heap: list[tuple[tuple, Key]] = []

    def rank(self, key: Key, rank: tuple) -> None:
        """Set or change the rank of ``key``."""
        if self._ranks.get(key) == rank:
            return
        self._ranks[key] = rank
        heappush(self._heap, (rank, key))
        if len(self._heap) > 2 * len(self._ranks) + 16:
            self._heap = [(kept, known) for known, kept in self._ranks.items()]
            heapify(self._heap)

    def forget(self, key: Key) -> None:
        """``key`` left the book another way (its entry in the heap is skipped when it comes up)."""
        self._ranks.pop(key, None)

    def pop_lowest(self) -> Key:
        """The key of the lowest rank, forgotten here (its record is the caller's to drop)."""
        while True:
            rank, key = heappop(self._heap)
            if self._ranks.get(key) == rank:
                del self._ranks[key]
                return key
