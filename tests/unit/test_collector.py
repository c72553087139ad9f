"""When the dispatcher freezes its book away from Python's collector, and when it sweeps."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from scheduler.dispatch.collector import Collector


class Node:
    """A tile and its frame point at each other, as in the book: only the cyclic collector
    frees them."""

    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> tuple[Node, weakref.ref[Node]]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a, weakref.ref(a)


@pytest.fixture
def collector() -> Iterator[Collector]:
    gc.unfreeze()
    collector = Collector(min_tiles=10, every_s=600.0)
    yield collector
    collector.close()
    gc.unfreeze()


def test_a_small_book_keeps_pythons_default(collector: Collector) -> None:
    collector.added(9)
    assert not collector.after_tick(9, now=0.0)
    assert gc.get_freeze_count() == 0 and not collector.frozen


def test_a_big_book_is_frozen_and_its_ended_jobs_freed_at_the_next_sweep(
    collector: Collector,
) -> None:
    job, alive = cycle()
    collector.added(100)
    assert collector.after_tick(100, now=0.0)
    assert collector.frozen and gc.get_freeze_count() > 0
    # The job ends: frozen, its cycle survives the collections that run meanwhile...
    del job
    gc.collect()
    assert alive() is not None
    collector.forgotten(40)  # under the book's size: not yet
    assert not collector.after_tick(80, now=1.0)
    collector.forgotten(60)
    # ...and is freed by the sweep once the book changed by about its size.
    assert collector.after_tick(60, now=2.0)
    assert alive() is None
    assert collector.frozen and collector.sweeps == 2


def test_a_frozen_book_is_swept_after_a_while_even_unchanged(collector: Collector) -> None:
    collector.added(100)
    collector.after_tick(100, now=0.0)
    assert not collector.after_tick(100, now=599.0)
    assert collector.after_tick(100, now=600.0)


def test_each_ticks_survivors_are_frozen_between_sweeps(collector: Collector) -> None:
    collector.added(100)
    collector.after_tick(100, now=0.0)
    frozen = gc.get_freeze_count()
    kept = [Node() for _ in range(1000)]  # what one tick built and keeps
    assert not collector.after_tick(100, now=1.0)
    assert gc.get_freeze_count() >= frozen + len(kept)


def test_a_book_that_shrank_goes_back_to_the_default_and_close_unfreezes(
    collector: Collector,
) -> None:
    collector.added(100)
    collector.after_tick(100, now=0.0)
    collector.forgotten(95)
    assert collector.after_tick(5, now=1.0)
    assert not collector.frozen and gc.get_freeze_count() == 0
    collector.added(100)
    collector.after_tick(100, now=2.0)
    collector.close()
    assert gc.get_freeze_count() == 0
