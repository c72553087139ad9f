"""A layer's ready tiles in dispatch order, cheap to add to, read from the front and take from.

The planner reads a :class:`~scheduler.plan.Work`'s tiles front to back (``len`` and ``[i]``
with ``i`` growing) and the dispatcher then takes as many as were decided. Tiles arrive a frame
at a time (frames activate) or one by one (a retry, a preemption), so the tiles are bucketed by
frame: adding, reading the next and taking are O(1) or O(log frames), never O(ready tiles).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

from scheduler.plan import TileKey


class ReadyTiles(Sequence[TileKey]):
    """Ready tiles ordered by :data:`~scheduler.plan.TileKey` (frame, layer, rank, id)."""

    def __init__(self) -> None:
        self._frames: list[int] = []
        """Frame numbers that have ready tiles, ascending."""
        self._by_frame: dict[int, list[TileKey]] = {}
        self._len = 0
        self._cursor = (0, 0, 0)
        """(index, frame position, offset): where ``[index]`` was last found."""

    def __len__(self) -> int:
        return self._len

    def add(self, keys: Iterable[TileKey]) -> None:
        """Make tiles ready (a tile must not be added twice)."""
        for key in keys:
            bucket = self._by_frame.get(key[0])
            if bucket is None:
                bisect.insort(self._frames, key[0])
                self._by_frame[key[0]] = [key]
            elif key >= bucket[-1]:
                bucket.append(key)
            else:
                bisect.insort(bucket, key)
            self._len += 1
        self._cursor = (0, 0, 0)

    def take(self, count: int) -> list[TileKey]:
        """Remove and return the first ``count`` tiles."""
        taken: list[TileKey] = []
        while count > 0 and self._frames:
            frame = self._frames[0]
            bucket = self._by_frame[frame]
            part = bucket[:count]
            taken.extend(part)
            count -= len(part)
            if len(part) == len(bucket):
                del self._by_frame[frame]
                self._frames.pop(0)
            else:
                del bucket[: len(part)]
        self._len -= len(taken)
        self._cursor = (0, 0, 0)
        return taken

    def remove(self, key: TileKey) -> bool:
        """Remove one tile wherever it is (a job cancelled, a tile taken by hand)."""
        bucket = self._by_frame.get(key[0])
        if bucket is None:
            return False
        at = bisect.bisect_left(bucket, key)
        if at >= len(bucket) or bucket[at] != key:
            return False
        del bucket[at]
        if not bucket:
            del self._by_frame[key[0]]
            self._frames.remove(key[0])
        self._len -= 1
        self._cursor = (0, 0, 0)
        return True

    @overload
    def __getitem__(self, index: int) -> TileKey: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[TileKey]: ...
    def __getitem__(self, index: int | slice) -> TileKey | Sequence[TileKey]:
        if isinstance(index, slice):
            return list(self)[index]
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError(index)
        at, position, offset = self._cursor
        if index < at:
            at, position, offset = 0, 0, 0
        while True:  # walk forward from the cursor, a bucket at a time
            bucket = self._by_frame[self._frames[position]]
            if index - at < len(bucket) - offset:
                offset += index - at
                self._cursor = (index, position, offset)
                return bucket[offset]
            at += len(bucket) - offset
            position += 1
            offset = 0

    def __iter__(self) -> Iterator[TileKey]:
        for frame in self._frames:
            yield from self._by_frame[frame]
