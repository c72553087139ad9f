"""The dispatcher's render sessions: which actor runs which attempt, and when an actor stops.

A session (:class:`scheduler.executors.session.TileSession`) is created with exactly the Ray
resources of one tile of its layer on its pool, so it occupies one slot, as a stateless task
would; the planner's accounting does not change. Each attempt the planner starts on a session
layer goes to a session of that (layer, pool): an idle one first, else the least busy one with
room in its queue (``DEPTH``: the next tile waits in the actor while the current one runs, so
the worker never idles through the dispatcher's commit), else a new one. A session idle for
``IDLE_S`` — its layer has nothing for it, or the planner gave the slot to someone else — is
stopped, handing its slot back.

Faults: when a session dies, its *current* attempt (the oldest it was given) is the one that
died with it; the attempts queued behind it never started, so the dispatcher puts them back
without counting an attempt (:meth:`SessionPool.lost`). Stopping a session to cancel or preempt
one attempt does the same for the others queued on it (:meth:`SessionPool.stop`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from farm.vocab import LayerKind

SessionKey = tuple[int, str]
"""(layer id, pool): the tiles one session may run."""

DEPTH = 2
"""Attempts one session holds at once: the running one and the next."""
IDLE_S = 0.5
"""Seconds a session may wait for work before it is stopped and its slot handed back."""


@dataclass(eq=False)
class Session:
    actor: Any
    key: SessionKey
    queue: list[Any] = field(default_factory=list)
    """Refs of its attempts in the order given: the first is the one running."""
    idle_since: float = 0.0
    node_id: str = ""
    """Ray node id: asked for as its first call, so it is known even if it dies on its first
    tile (the attempt's usage row and the retry's node avoidance need it)."""
    node_ref: Any = None
    dead: bool = False
    died_running: Any = None
    """The ref that was running when it died or was stopped (the others never started)."""


class SessionPool:
    """The live sessions of one dispatcher (driver side; every call is local bookkeeping except
    creating and stopping actors)."""

    def __init__(self, store_ref: Any) -> None:
        import ray

        from scheduler.executors.session import TileSession

        self._store_ref = store_ref
        self._remote = ray.remote(TileSession)
        self._sessions: dict[SessionKey, list[Session]] = {}
        self._by_ref: dict[Any, Session] = {}
        self.created = 0
        """Sessions started so far (each is a Ray actor: a process and its warm-up)."""

    def __len__(self) -> int:
        return sum(len(s) for s in self._sessions.values())

    def owns(self, ref: Any) -> bool:
        return ref in self._by_ref

    def submit(
        self, key: SessionKey, kind: LayerKind, options: dict[str, Any], task: Any, *, most: int
    ) -> Any:
        """Give ``task`` to a session of ``key``: one with room, else a new one (created with
        ``options``) while fewer than ``most`` exist (what the pool can run at once), else the
        least busy one, whose queue then grows past ``DEPTH``."""
        session = self._pick(key, kind, options, most)
        ref = session.actor.run.remote(task)
        session.queue.append(ref)
        self._by_ref[ref] = session
        return ref

    def _pick(
        self, key: SessionKey, kind: LayerKind, options: dict[str, Any], most: int
    ) -> Session:
        sessions = self._sessions.setdefault(key, [])
        idle = [s for s in sessions if not s.queue]
        if idle:
            return idle[0]
        if len(sessions) >= most:  # every slot has its session: queue behind the least busy
            return min(sessions, key=lambda s: len(s.queue))
        actor = self._remote.options(
            max_restarts=0, max_task_retries=0, max_concurrency=1, **options
        ).remote(self._store_ref, kind)
        session = Session(actor, key, node_ref=actor.node.remote())
        sessions.append(session)
        self.created += 1
        return session

    def finished(self, ref: Any, node_id: str) -> None:
        """An attempt of a session returned a result (the session lives on)."""
        session = self._by_ref.pop(ref, None)
        if session is None:
            return
        if ref in session.queue:
            session.queue.remove(ref)
        if node_id:
            session.node_id = node_id
        if not session.queue:
            session.idle_since = time.monotonic()

    def lost(self, ref: Any) -> tuple[bool, str]:
        """An attempt's session died under it. Returns (whether it was the attempt running,
        the session's node id if known). The others queued on it come back here one by one
        and are not the running one."""
        import ray

        session = self._by_ref.pop(ref, None)
        if session is None:
            return True, ""
        if not session.dead:
            session.died_running = session.queue[0] if session.queue else ref
            self._bury(session)
            # Unreachable rather than dead (its node went quiet): make sure it holds no core.
            ray.kill(session.actor, no_restart=True)
        return ref is session.died_running, session.node_id or _resolved(session.node_ref)

    def stop(self, ref: Any) -> list[Any]:
        """Stop the attempt ``ref`` (cancel, preemption). One still queued is taken out of its
        session's queue (Ray cancels an actor call that has not started) and the session lives
        on; the running one stops its session, and the refs of the attempts queued behind it,
        which die with it without having started, are returned."""
        import ray

        session = self._by_ref.get(ref)
        if session is None:
            return []
        if session.queue and session.queue[0] is not ref:
            ray.cancel(ref)
            return []
        ray.kill(session.actor, no_restart=True)
        session.died_running = ref
        self._bury(session)
        return [other for other in session.queue if other is not ref]

    def reap(self, wanted: Callable[[SessionKey], bool]) -> int:
        """Stop sessions idle for ``IDLE_S``, or idle at all when ``wanted(key)`` is False
        (their layer has no ready tiles); returns how many were stopped."""
        import ray

        now = time.monotonic()
        stopped = 0
        for key, sessions in list(self._sessions.items()):
            for session in list(sessions):
                if session.queue:
                    continue
                if now - session.idle_since > IDLE_S or not wanted(key):
                    ray.kill(session.actor, no_restart=True)
                    self._bury(session)
                    stopped += 1
        return stopped

    def forget(self, ref: Any) -> None:
        """Drop an attempt the dispatcher no longer tracks (reloaded after a failed commit)."""
        session = self._by_ref.pop(ref, None)
        if session is not None and ref in session.queue:
            session.queue.remove(ref)
            if not session.queue:
                session.idle_since = time.monotonic()

    def close(self) -> None:
        """Stop every session (the dispatcher stops)."""
        import ray

        for sessions in list(self._sessions.values()):
            for session in list(sessions):
                ray.kill(session.actor, no_restart=True)
                self._bury(session)

    def _bury(self, session: Session) -> None:
        session.dead = True
        sessions = self._sessions.get(session.key, [])
        if session in sessions:
            sessions.remove(session)
        if not sessions:
            self._sessions.pop(session.key, None)


def _resolved(ref: Any) -> str:
    """The value of a finished ``node()`` call, or "" if it never finished."""
    import ray

    if ref is None:
        return ""
    try:
        ready, _ = ray.wait([ref], timeout=0)
        return str(ray.get(ready[0])) if ready else ""
    except Exception:  # the session died before it could answer
        return ""
