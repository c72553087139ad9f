"""Logs of running tasks, readable while they run (``farm log`` on a running tile).

A task's log becomes a blob when its attempt ends (``executors.command``); until then its
lines go, every half second, to one small Ray actor of the farm (``delta-live-logs``, no CPU
slot) that keeps the last :data:`TAIL_BYTES` of each running attempt. The API, in the same
Ray job as the dispatcher, reads the tail from it. Best effort by design: if the actor is not
there (a test without a dispatcher, an API process outside Ray) a running task simply has no
log yet; the blob written at the end is the record.
"""

from __future__ import annotations

import contextlib
from typing import Any

ACTOR_NAME = "delta-live-logs"
TAIL_BYTES = 1 << 20
"""Bytes of a running attempt's log kept for readers (the whole log is the blob at the end)."""


class LiveLogs:
    """The tails of running attempts' logs, by tile id (the newest attempt wins)."""

    def __init__(self) -> None:
        self._logs: dict[int, tuple[int, str]] = {}

    def append(self, tile_id: int, attempt: int, text: str) -> None:
        known = self._logs.get(tile_id)
        if known is not None and known[0] > attempt:
            return  # a late line from an older attempt
        before = known[1] if known is not None and known[0] == attempt else ""
        self._logs[tile_id] = (attempt, (before + text)[-TAIL_BYTES:])

    def read(self, tile_id: int) -> str | None:
        known = self._logs.get(tile_id)
        return None if known is None else known[1]

    def close(self, tile_id: int, attempt: int) -> None:
        known = self._logs.get(tile_id)
        if known is not None and known[0] == attempt:
            del self._logs[tile_id]


def start_actor() -> Any:
    """The farm's live-log actor, made if missing (by the dispatcher, which owns it)."""
    import ray

    remote = ray.remote(num_cpus=0, max_concurrency=16)(LiveLogs)
    return remote.options(name=ACTOR_NAME, get_if_exists=True).remote()


def actor() -> Any | None:
    """The live-log actor if this Ray job has one, else None (never starts Ray)."""
    import ray

    if not ray.is_initialized():
        return None
    with contextlib.suppress(ValueError):
        return ray.get_actor(ACTOR_NAME)
    return None


def read(tile_id: int, timeout_s: float = 2.0) -> str | None:
    """A running tile's log so far, None when there is none to read."""
    import ray

    handle = actor()
    if handle is None:
        return None
    try:
        result: str | None = ray.get(handle.read.remote(tile_id), timeout=timeout_s)
    except Exception:  # the actor died or is slow: no live log, never an API error
        return None
    return result
