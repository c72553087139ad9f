"""The dispatcher's render sessions: which actor runs which attempt, and when an actor stops.

A session (:class:`scheduler.executors.session.TileSession`) is a warm worker process kept for
one studio on one pool, created with exactly the Ray resources of one tile, so it occupies one
slot as a stateless task would; the planner's accounting does not change. It runs any tile of
that studio that asks for the same resources, and keeps what it loaded (by content) for the
next: a frame's particle cache today, a DCC process and its scene next. Each attempt the
planner starts on a session layer goes to a session of its (studio, pool, resources): an idle
one first, else a new one while fewer than the pool's slots exist, else the least busy one
(``DEPTH``: the next tile waits in the actor while the current one runs, so the worker never
idles through the dispatcher's commit).

An idle session keeps its core for the studio's next layer or job (a session costs a process
and its warm-up to start: 0.9 s here, far more for a DCC) for at most ``KEEP_S``, and not a
moment longer than another attempt needs that core: when the dispatcher sends any other
attempt to a pool, and again on each tick for attempts sent while the sessions were busy, it
stops as many idle sessions there (or on the cores that pool shares) as the attempts would
otherwise queue behind (:meth:`SessionPool.make_room`).

Faults: when a session dies, its *current* attempt (the oldest it was given) is the one that
died with it; the attempts queued behind it never started, so the dispatcher puts them back
without counting an attempt (:meth:`SessionPool.lost`). Stopping a session to cancel or preempt
one attempt does the same for the others queued on it (:meth:`SessionPool.stop`). Sessions are
never shared between studios.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

SessionKey = tuple[int, str, str]
"""(studio id, pool, the tile's Ray options as text): the tiles one session may run."""

DEPTH = 2
"""Attempts one session holds at once: the running one and the next."""
KEEP_S = 30.0
"""Seconds an idle session waits for its studio's next tile before it is stopped (sooner when
another attempt needs its core)."""


def session_key(studio_id: int, pool: str, options: dict[str, Any]) -> SessionKey:
    """The key of the sessions that may run a tile of ``studio_id`` placed with ``options``."""
    return (studio_id, pool, json.dumps(options, sort_keys=True))


@dataclass(eq=False)
class Session:
    actor: Any
    key: SessionKey
    slots: int = 1
    """Cores it holds in Ray, busy or idle."""
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

    @property
    def pool(self) -> str:
        return self.key[1]


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
        self._unstarted: set[Any] = set()
        self.created = 0
        """Sessions started so far (each is a Ray actor: a process and its warm-up)."""

    def __len__(self) -> int:
        return sum(len(s) for s in self._sessions.values())

    def owns(self, ref: Any) -> bool:
        return ref in self._by_ref

    def unstarted(self, ref: Any) -> bool:
        """Whether ``ref`` was taken out of a session's queue before it started (:meth:`stop`);
        asked once, when its attempt is collected."""
        if ref in self._unstarted:
            self._unstarted.discard(ref)
            return True
        return False

    def submit(
        self, key: SessionKey, options: dict[str, Any], task: Any, *, most: int, slots: int
    ) -> Any:
        """Give ``task`` to a session of ``key``: an idle one, else a new one (created with
        ``options``, holding ``slots`` cores) while fewer than ``most`` exist (what the pool
        can run at once), else the least busy one, whose queue then grows past ``DEPTH``."""
        session = self._pick(key, options, most, slots)
        ref = session.actor.run.remote(task)
        session.queue.append(ref)
        self._by_ref[ref] = session
        return ref

    def has_idle(self, key: SessionKey) -> bool:
        """Whether a session of ``key`` waits for work now."""
        return any(not s.queue for s in self._sessions.get(key, ()))

    def takes_a_core(self, key: SessionKey, most: int) -> bool:
        """Whether :meth:`submit` would start a new session (which needs a free core)."""
        return not self.has_idle(key) and len(self._sessions.get(key, ())) < most

    def _pick(self, key: SessionKey, options: dict[str, Any], most: int, slots: int) -> Session:
        sessions = self._sessions.setdefault(key, [])
        idle = [s for s in sessions if not s.queue]
        if idle:
            return idle[0]
        if len(sessions) >= most:  # every slot has its session: queue behind the least busy
            return min(sessions, key=lambda s: len(s.queue))
        actor = self._remote.options(
            max_restarts=0, max_task_retries=0, max_concurrency=1, **options
        ).remote(self._store_ref)
        session = Session(actor, key, slots=slots, node_ref=actor.node.remote())
        sessions.append(session)
        self.created += 1
        return session

    def held(self, pools: Collection[str]) -> tuple[int, int, int]:
        """On ``pools``: (cores all sessions hold, cores idle ones hold, slots of the attempts
        given to sessions)."""
        held = idle = given = 0
        for sessions in self._sessions.values():
            for session in sessions:
                if session.pool in pools:
                    held += session.slots
                    idle += 0 if session.queue else session.slots
                    given += session.slots * len(session.queue)
        return held, idle, given

    def pools_with_idle(self) -> set[str]:
        return {s.pool for s in self._idle()}

    def make_room(self, pools: Collection[str], slots: int) -> int:
        """Stop idle sessions on ``pools``, longest idle first, until they hand back at least
        ``slots`` cores (or none is left); returns the cores handed back."""
        freed = 0
        for session in sorted(
            (s for s in self._idle() if s.pool in pools), key=lambda s: s.idle_since
        ):
            if freed >= slots:
                break
            self._kill(session)
            freed += session.slots
        return freed

    def _idle(self) -> list[Session]:
        return [s for sessions in self._sessions.values() for s in sessions if not s.queue]

    def finished(self, ref: Any, node_id: str) -> str | None:
        """An attempt of a session returned a result (the session lives on). Returns the
        session's pool if that left it idle."""
        session = self._by_ref.pop(ref, None)
        if session is None:
            return None
        if ref in session.queue:
            session.queue.remove(ref)
        if node_id:
            session.node_id = node_id
        if session.queue:
            return None
        session.idle_since = time.monotonic()
        return session.pool

    def lost(self, ref: Any) -> tuple[bool, str]:
        """An attempt's session died under it. Returns (whether it was the attempt running,
        the session's node id if known). The others queued on it come back here one by one
        and are not the running one."""
        session = self._by_ref.pop(ref, None)
        if session is None:
            return True, ""
        if not session.dead:
            session.died_running = session.queue[0] if session.queue else ref
            # Unreachable rather than dead (its node went quiet): make sure it holds no core.
            self._kill(session)
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
            # No longer the session's: its cancelled call comes back as an error of a task
            # that never ran, and must not read as the session dying under the attempt it
            # runs, which may be another job's (a session serves a studio's jobs in turn).
            ray.cancel(ref)
            session.queue.remove(ref)
            del self._by_ref[ref]
            self._unstarted.add(ref)
            return []
        session.died_running = ref
        self._kill(session)
        return [other for other in session.queue if other is not ref]

    def reap(self) -> int:
        """Stop sessions idle for ``KEEP_S``; returns how many were stopped."""
        now = time.monotonic()
        old = [s for s in self._idle() if now - s.idle_since > KEEP_S]
        for session in old:
            self._kill(session)
        return len(old)

    def _kill(self, session: Session) -> None:
        import ray

        ray.kill(session.actor, no_restart=True)
        self._bury(session)

    def forget(self, ref: Any) -> None:
        """Drop an attempt the dispatcher no longer tracks (reloaded after a failed commit)."""
        session = self._by_ref.pop(ref, None)
        if session is not None and ref in session.queue:
            session.queue.remove(ref)
            if not session.queue:
                session.idle_since = time.monotonic()

    def close(self) -> None:
        """Stop every session (the dispatcher stops)."""
        for sessions in list(self._sessions.values()):
            for session in list(sessions):
                self._kill(session)

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
