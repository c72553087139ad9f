"""Keeping Python's garbage collector off the dispatcher's book at farm scale.

At farm scale the book (``dispatch.book``) holds millions of long-lived objects: 272,000 tiles in
flight with their frames, layers and attempts. CPython's cyclic collector rescans all of them in
every full collection, and a tick that builds a few thousand new objects triggers one every few
ticks: measured at farm scale (``bench/db_tick.py``), a full collection took 1.2 s inside a
tick, and ticks ran 230-1,730 ms (median 324) against 190-275 ms (median 226) with the book
frozen.

So once the book is big, what survives a tick is *frozen* at its end (``gc.freeze``: moved,
in constant time, where collections no longer look), so a collection only ever scans the
objects of the tick in progress; and the whole heap is *swept* (unfrozen, collected, frozen
again) only when the book changed by about its own size, or every ``SWEEP_EVERY_S``. The
objects of ended jobs (tiles and frames point at each other, so only the cyclic collector frees
them) wait for that sweep: the book may take up to about twice its size meanwhile. A sweep is
one full collection, about a second at farm scale, during which the API served by the same
process waits too: at most every ten minutes, where Python's own collector ran one every few
ticks. Small farms (tests, a studio's laptop) keep Python's default behaviour.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("scheduler.dispatch")

MIN_TILES = 20_000
"""Below this many tiles in the book Python's own collector costs little: nothing is frozen."""
SWEEP_SHARE = 1.0
"""Sweep once the tiles added or forgotten since the last sweep reach this share of the book."""
SWEEP_EVERY_S = 600.0
"""Sweep at least this often while frozen (garbage that is not tiles, e.g. finished requests)."""


class Collector:
    """Decides when to freeze and sweep; the dispatcher calls :meth:`after_tick` once a tick."""

    def __init__(self, *, min_tiles: int = MIN_TILES, every_s: float = SWEEP_EVERY_S) -> None:
        self.min_tiles = min_tiles
        self.every_s = every_s
        self.book_at_sweep = 0
        self.changed = 0
        """Tiles added to or forgotten from the book since the last sweep."""
        self.swept_at = time.monotonic()
        self.sweeps = 0
        self.frozen = False

    def added(self, tiles: int) -> None:
        self.changed += tiles

    def forgotten(self, tiles: int) -> None:
        self.changed += tiles

    def after_tick(self, book_tiles: int, now: float | None = None) -> bool:
        """Sweep when due; returns whether it did."""
        now = time.monotonic() if now is None else now
        if book_tiles < self.min_tiles and not self.frozen:
            return False
        due = self.changed >= max(self.min_tiles, SWEEP_SHARE * self.book_at_sweep)
        shrank = book_tiles < self.min_tiles  # and frozen: back to Python's default
        if due or shrank or not self.frozen or now - self.swept_at >= self.every_s:
            self.sweep(book_tiles, now)
            return True
        gc.collect(1)  # this tick's young garbage first (it would stay frozen until a sweep)
        gc.freeze()  # then its survivors: constant time
        return False

    def sweep(self, book_tiles: int, now: float | None = None) -> None:
        """Collect everything once, then freeze what survived."""
        started = time.perf_counter()
        gc.unfreeze()
        freed = gc.collect()
        if book_tiles >= self.min_tiles:
            gc.freeze()
            self.frozen = True
        else:  # the farm shrank: back to Python's default
            self.frozen = False
        self.book_at_sweep = book_tiles
        self.changed = 0
        self.swept_at = time.monotonic() if now is None else now
        self.sweeps += 1
        log.info(
            "swept the book: %d tiles, %d objects freed, %.0f ms%s",
            book_tiles,
            freed,
            (time.perf_counter() - started) * 1000,
            ", frozen" if self.frozen else "",
        )

    def close(self) -> None:
        """Give frozen objects back to the collector (the dispatcher stops)."""
        if self.frozen:
            gc.unfreeze()
            self.frozen = False
