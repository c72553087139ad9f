"""The dispatcher: the farm's only Ray driver, a loop of refresh -> plan -> submit -> collect.

Each tick it (1) re-reads what may have changed outside it (new jobs, quotas, licences, rush and
priority, the pools' live capacity), (2) plans tiles for frames that became ready, (3) asks the
pure planner (``scheduler.plan``) who gets the free slots, and commits those tiles RUNNING
before sending them to Ray with their pool's resources, and (4) collects finished attempts with
``ray.wait`` and commits their results, usage records and events in **one transaction per
batch**.

A tick costs what changed, never the size of the jobs: active jobs live in the dispatcher's
book (``scheduler.dispatch.book``), loaded once and kept in step, rollups are counters, and
every write is a bulk statement. Enough tiles stay queued in Ray that a worker starts its next
tile while the dispatcher commits the last one (:meth:`Dispatcher._target`).

The database is the source of truth: a tile is committed RUNNING before its Ray task exists,
and on start-up every RUNNING tile is requeued (its dispatcher is gone). Ray's own retries are
off (``max_retries=0``): the farm counts attempts itself so retries show in reports and costs.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from farm.db import events
from farm.db import models as m
from farm.db.session import Database
from farm.states import (
    TERMINAL,
    TileState,
    on_dispatched,
    on_requeued,
)
from farm.storage import BlobStore
from farm.vocab import LayerKind
from scheduler.dispatch import batches, control, gates
from scheduler.dispatch.activate import Activator, create_frames
from scheduler.dispatch.book import (
    Changes,
    JobBook,
    LayerBook,
    TileBook,
    load_jobs,
    move,
)
from scheduler.dispatch.collector import Collector
from scheduler.dispatch.commit import JOBS, LAYERS, update_rows, write
from scheduler.dispatch.results import NODE_FAILURES_TO_AVOID, InFlight, apply_result, lost
from scheduler.dispatch.sessions import SessionKey, SessionPool, session_key
from scheduler.dispatch.shared import LayerShape, within_shared_cores
from scheduler.dispatch.sheets import SheetDrawer
from scheduler.dispatch.tasks import TaskBuilder
from scheduler.dispatch.terms import (
    SAVE_USAGE_EVERY_S,
    TERMS_EVERY_S,
    Terms,
    read_terms,
    read_usage,
    save_usage,
)
from scheduler.executors import livelog
from scheduler.executors.base import TileResult, TileTask, run_tile, run_tiles
from scheduler.executors.session import warm_worker
from scheduler.plan import (
    Decision,
    Plan,
    Policy,
    PoolState,
    RunningTile,
    Snapshot,
    StudioPool,
    Work,
    decayed_usage,
    plan,
)
from scheduler.plan.fit import fitting_pools, memory_share, slots, unfit_reason
from scheduler.runtime import (
    GIB,
    avoid_selector,
    pool_capacity,
    pool_view,
    ray_options,
)

log = logging.getLogger("scheduler.dispatch")
ACTIVE = [s.value for s in TileState if s not in TERMINAL]
REASONS_EVERY_S = 1.0
"""Why-pending reasons are written at most this often (they change with every slot)."""
DISPATCH_PER_TICK = 10_000
"""Tiles sent to one pool per tick at most: a fresh farm of 272,000 slots fills over a few
short ticks instead of one long transaction."""
JOBS_EVERY_S = 0.1
WARM_WORKERS_MAX = 64
"""Workers warmed at start at most (a big cluster warms the rest with its first tiles)."""
"""New jobs are looked for this often: submitting answers at once, the farm starts within it."""


class Dispatcher:
    """Drives every active job to completion on the Ray cluster this process is connected to.

    Args:
        db: the farm database.
        store: the blob store; Ray tasks receive it and read and write blobs directly.
        output_root: where assembled frames and previews are written.
        max_attempts: attempts per tile before it fails for good.
        poll_s: the longest a tick waits for a result when nothing else happens.
        policy: fair-share half-life and the preemption limit.
        queue_s: seconds of each pool's work kept queued in Ray beyond its free slots, so a
            worker starts its next tile while the dispatcher commits (see :meth:`_target`);
            0 keeps the queue at half the capacity, so planning order is followed closely.
    """

    def __init__(
        self,
        db: Database,
        store: BlobStore,
        output_root: Path,
        *,
        max_attempts: int = 3,
        poll_s: float = 0.05,
        policy: Policy | None = None,
        queue_s: float = 0.05,
    ) -> None:
        import ray

        self.db = db
        self.store = store
        self.output_root = Path(output_root)
        self.max_attempts = max_attempts
        self.poll_s = poll_s
        self.policy = policy or Policy()
        self.queue_s = queue_s
        self._remote = ray.remote(run_tile)
        self._batch_remote = ray.remote(run_tiles)
        self._remotes: dict[tuple[int, str], Any] = {}
        self._batch_remotes: dict[tuple[int, str, int], Any] = {}
        self._siblings: dict[Any, tuple[Any, ...]] = {}
        """The other tiles' refs of a batch (``batches``): stopping one stops them all."""
        self._batch_of: dict[str, int] = {}
        """Per pool, the size of its last batch (its Ray queue is kept in tasks, not tiles)."""
        self.batched_tiles = 0
        self._collector = Collector()
        """Tiles sent in batches of two or more so far (reports, tests)."""
        self._sheets = SheetDrawer(db, store)
        self._store_ref = ray.put(store)
        self._in_flight: dict[Any, InFlight] = {}
        self._by_tile: dict[int, Any] = {}
        self._backfill: dict[Any, InFlight] = {}
        """The attempts in flight that backfill an accelerator pool (preemptible by its work)."""
        self._jobs: dict[int, JobBook] = {}
        self._layers: dict[int, LayerBook] = {}
        self._tiles: dict[int, TileBook] = {}
        self._activator = Activator()
        self._tasks = TaskBuilder(self.output_root)
        self._terms = Terms()
        self._running: Counter[StudioPool] = Counter()
        self._busy: defaultdict[StudioPool, float] = defaultdict(float)
        """Slots in use, for usage: ``_running`` but a batch of k tiles counts its slots once
        (``_running`` counts tiles, the unit of the pools' capacity and queue)."""
        self._licence_use: dict[str, dict[int, int]] = defaultdict(dict)
        self._usage: dict[StudioPool, float] = {}
        self._owed: dict[StudioPool, float] = {}
        """What fair share promised lately (``Snapshot.owed``), from the last plan's shares."""
        self._entitled: dict[StudioPool, float] = {}
        self._tile_s: dict[str, float] = {}
        """Per pool: a moving average of attempt wall time, to size the queue kept in Ray."""
        self._capacity: dict[str, float] = {}
        self._nodes: dict[str, frozenset[str]] = {}
        """Alive Ray node ids per pool: where a tile that failed on one node may go instead."""
        self._device_pools: set[str] = set()
        self._node_memory: dict[str, float] = {}
        """Per pool, the most memory one of its Ray nodes offers (GiB)."""
        self._shared: tuple[frozenset[str], ...] = ()
        """Groups of pools that share nodes (the embedded farm's virtual pools)."""
        self._held_back = False
        """The last plan sent nothing: the planner picked nothing (ceilings, licences, fair share)
        or the queue limits (:meth:`_within_queues`) held back all it picked. Nothing changes
        that until an attempt ends, a command, new work, new terms or new capacity come."""
        self._last_job_id = 0
        self._commands: list[control.Command] = []
        self._warming: list[Any] = []
        self._sessions: SessionPool | None = None
        """Render sessions, kept per studio (made on first use by a layer with ``execution:
        session``; an idle one also runs its studio's stateless tiles)."""
        self._session_keys: dict[tuple[int, str], tuple[SessionKey, dict[str, Any]]] = {}
        """(layer id, pool) -> its tiles' session key and Ray options (cleared with the terms)."""
        self._idle_pools: set[str] = set()
        """Pools with an idle render session at the tick's start (or made idle since)."""
        self._live_logs: Any = None
        self._at = {
            "terms": -math.inf,
            "jobs": -math.inf,
            "capacity": -math.inf,
            "usage": time.monotonic(),
        }
        self._saved_usage_at = time.monotonic()
        self._reasons_at = -math.inf
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.recover()

    # ------------------------------------------------------------------ lifecycle
    def recover(self) -> int:
        """Requeue tiles left RUNNING by a dispatcher that is gone, then load the book.

        The rule (``on_requeued``) erases their attempt, never recorded: one statement does it
        for them all.
        """
        change = on_requeued(TileState.RUNNING)
        with self.db.session() as session:
            requeued = session.execute(
                update(m.Tile)
                .where(m.Tile.state == TileState.RUNNING)
                .values(
                    state=change.after.value,
                    reason=change.reason,
                    attempts=m.Tile.attempts - 1,
                )
                .returning(m.Tile.id, m.Tile.job_id)
            ).all()
            count = len(requeued)
            by_job: dict[int, list[list[Any]]] = defaultdict(list)
            for tile_id, job_id in requeued:  # the event stream shows them pending again
                by_job[job_id].append([tile_id, change.after.value, None])
            studios = dict(
                session.execute(
                    select(m.Job.id, m.Job.studio_id).where(m.Job.id.in_(list(by_job)))
                ).all()
            )
            stamp = datetime.now(UTC)
            events.append(
                session.connection(),
                [
                    {
                        "studio_id": studios[job_id],
                        "job_id": job_id,
                        "kind": "tiles",
                        "payload": {"tiles": tiles},
                        "created_at": stamp,
                    }
                    for job_id, tiles in sorted(by_job.items())
                ],
            )
            self._usage, self._owed = read_usage(
                session, half_life_s=self.policy.half_life_s, now=datetime.now(UTC)
            )
        if count:
            log.info("requeued %d tiles left running by a previous dispatcher", count)
        self._jobs.clear()
        self._layers.clear()
        self._tiles.clear()
        self._last_job_id = 0
        self._refresh(time.monotonic())
        return count

    def start(self) -> None:
        """Run the loop in a background thread (the ``farm server`` mode), after asking Ray to
        warm one worker per CPU of the cluster (:func:`warm_worker`; they run beside the loop
        and any tile, and a tile that lands on a warm worker skips the cold start)."""
        import ray

        cpus = min(int(ray.cluster_resources().get("CPU", 0)), WARM_WORKERS_MAX)
        warming = ray.remote(warm_worker).options(num_cpus=1, scheduling_strategy="SPREAD")
        self._warming = [warming.remote() for _ in range(cpus)]
        self._thread = threading.Thread(target=self._loop, name="farm-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                return  # still inside a tick: its sessions die with the Ray job
        if self._sessions is not None:
            self._sessions.close()
        self._collector.close()
        self._sheets.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.tick():
                    self._idle()
            except Exception:
                log.exception("dispatcher tick failed; reloading from the database")
                self._stop.wait(1.0)
                try:
                    self._resync()
                except Exception:  # the database is still away: try again next round
                    log.exception("reloading from the database failed; retrying")

    def _idle(self) -> None:
        """Wait for the next thing to do after a tick that moved nothing: up to ``poll_s``, but
        no longer than the first attempt in flight takes to end. Sleeping ``poll_s`` outright
        left each finished tile uncollected for half of it on average, with its core idle
        when nothing else was queued (on the embedded farm's shared cores, where no long tile
        queues, a 4x4 frame of 40 ms tiles ran at half speed)."""
        refused, refs = self._split_in_flight()
        if refused or not refs:  # refused attempts are applied at once by the next tick
            self._stop.wait(self.poll_s)
            return
        import ray

        ray.wait(refs, num_returns=1, timeout=self.poll_s)

    def _resync(self) -> None:
        """After a failed commit the book may be ahead of the database: reload it.

        Attempts still in flight keep running; their results apply to the reloaded tiles.
        """
        self._jobs.clear()
        self._layers.clear()
        self._tiles.clear()
        self._activator = Activator()
        self._last_job_id = 0
        # Now, not when the jobs are next due: an empty book would drop every attempt in flight
        # below, leaving their tiles RUNNING with nobody to collect them (a stalled job).
        self._at["jobs"] = self._at["terms"] = -math.inf
        self._refresh(time.monotonic())
        self._running.clear()
        self._busy.clear()
        self._licence_use.clear()
        for ref, flight in list(self._in_flight.items()):
            tile = self._tiles.get(flight.tile.id)
            if tile is None:
                self._forget(ref, flight)
                if self._sessions is not None:
                    self._sessions.forget(ref)
                continue
            flight.tile = tile
            tile.frame.layer.ready.remove(tile.key)
            self._hold(flight)
        self._backfill = {ref: f for ref, f in self._in_flight.items() if f.backfill}

    def run_until_done(self, job_ids: Iterable[int], timeout_s: float = 600.0) -> None:
        """Tick in this thread until every job in ``job_ids`` is finished (tests, benchmarks)."""
        wanted = set(job_ids)
        deadline = time.monotonic() + timeout_s
        while True:
            self.tick()
            if not self._in_flight and not wanted & set(self._jobs) and not self._commands:
                with self.db.session() as session:
                    # Read to the end now: a result left half-read keeps its statement, and
                    # with it a read snapshot, open on the pooled connection, so the next
                    # tick's write on it failed at once ("database is locked") whenever the
                    # API had committed in between.
                    states = list(session.scalars(select(m.Job.state).where(m.Job.id.in_(wanted))))
                    queued = session.scalar(  # a retry may bring an ended job back
                        select(m.JobCommand.id).where(
                            m.JobCommand.job_id.in_(wanted), m.JobCommand.applied_at.is_(None)
                        )
                    )
                    if queued is None and all(TileState(s) in TERMINAL for s in states):
                        self._sheets.drain(max(0.0, deadline - time.monotonic()))
                        return
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs {sorted(wanted)} did not finish in {timeout_s} s")

    # ------------------------------------------------------------------ one tick
    def tick(self) -> bool:
        """One round: refresh, collect what finished, then in **one transaction** apply the
        results, plan the frames that became ready and mark the planner's picks RUNNING; after
        the commit, send the picks to Ray. Returns whether anything moved."""
        now = time.monotonic()
        self._refresh(now)
        if self._sessions is not None:
            self._sessions.reap()
            self._idle_pools = self._sessions.pools_with_idle()
            for pool in self._idle_pools:
                self._make_room(pool)  # tasks sent while the sessions were busy
        room = self._has_room()
        gathered = self._gather(timeout_s=0.0 if room or not self._in_flight else self.poll_s)
        commands = self._commands
        if (
            not gathered
            and not room
            and not commands
            and not self._activator
            and not self._reasons_due(now)
            and not self._gates_due(now)
        ):
            return False
        self._commands = []
        changes = Changes()
        stamp = datetime.now(UTC)
        with self.db.session() as session:
            usage = self._apply(gathered, changes, stamp)
            self._control(session, commands, changes, stamp)
            self._open_gates(session, changes, now)
            self._create_frames(session, changes)
            moved = self._activator.activate(session, changes)
            self._settle(session, changes)
            submissions = self._dispatch(session, changes, stamp)
            self._forget_reasons(session, changes)  # after _dispatch, which may write reasons
            write(session.connection(), changes, stamp, usage)
        # Committed first: a crash now leaves RUNNING tiles that recover() requeues, and
        # results are forgotten only once written (a failed commit applies them again).
        for ref, flight in gathered:
            self._forget(ref, flight)
        self._submit_all(submissions)
        self._finish(changes)
        self._collector.after_tick(len(self._tiles))
        return bool(gathered or moved or submissions or commands)

    def _refresh(self, now: float) -> None:
        """New jobs, the terms an operator may have changed, live capacity and usage decay."""
        dt = now - self._at["usage"]
        self._at["usage"] = now
        half_life_s = self.policy.half_life_s
        for key in set(self._usage) | set(self._busy):
            usage = self._usage.get(key, 0.0)
            busy = self._busy.get(key, 0.0)
            self._usage[key] = decayed_usage(usage, busy, dt, half_life_s)
        for key in set(self._owed) | set(self._entitled):
            owed = self._owed.get(key, 0.0)
            self._owed[key] = decayed_usage(owed, self._entitled.get(key, 0.0), dt, half_life_s)
        if now - self._at["capacity"] > 2.0:
            self._at["capacity"] = now
            self._read_capacity()
        terms_due = now - self._at["terms"] > TERMS_EVERY_S
        jobs_due = now - self._at["jobs"] > JOBS_EVERY_S
        usage_due = now - self._saved_usage_at > SAVE_USAGE_EVERY_S
        if not (terms_due or jobs_due or usage_due):
            return
        with self.db.session() as session:
            if terms_due:
                self._at["terms"] = now
                terms = read_terms(session)
                if terms != self._terms:
                    self._terms = terms
                    self._held_back = False  # pools or quotas changed: plan again
                    for layer in self._layers.values():
                        self._fit(layer)  # the pools a layer fits follow the pools declared
                self._read_job_terms(session)
            if jobs_due:
                self._at["jobs"] = now
                new = list(
                    session.scalars(
                        select(m.Job.id).where(
                            m.Job.id > self._last_job_id, m.Job.state.in_(ACTIVE)
                        )
                    )
                )
                if new:
                    self._load(session, new)
                    self._held_back = False
                self._commands = control.read_commands(session)
            if usage_due:
                self._saved_usage_at = now
                save_usage(session, self._usage, self._owed, datetime.now(UTC))

    def _read_capacity(self) -> None:
        capacity = pool_capacity()
        if capacity != self._capacity:
            self._held_back = False  # nodes came or went: plan again
        self._capacity = capacity
        view = pool_view()
        self._nodes = view.nodes
        self._device_pools = set(view.devices)
        self._node_memory = view.memory_gb
        self._shared = tuple(pools for pools, _ in view.shared)
        self._remotes.clear()
        self._batch_remotes.clear()
        self._session_keys.clear()

    @property
    def _virtual(self) -> set[str]:
        """Accelerator pools whose nodes have no real device: their tiles ask for none.

        Derived from both the pools (terms) and the nodes (capacity) each time: a set computed
        at the first capacity read, before the pools were read, once left an H100 layer asking
        a GPU-less cluster for ``num_gpus=1`` and pending forever.
        """
        return {
            name for name, shape in self._terms.pools.items() if not shape.is_cpu
        } - self._device_pools

    def _read_job_terms(self, session: Any) -> None:
        """Priority and rush of the active jobs (the API may change them while they run)."""
        if not self._jobs:
            return
        rows = session.execute(
            select(m.Job.id, m.Job.priority, m.Job.rush).where(m.Job.id.in_(list(self._jobs)))
        )
        for job_id, priority, rush in rows:
            job = self._jobs[job_id]
            if (job.priority, job.rush) != (priority, bool(rush)):
                job.priority, job.rush = priority, bool(rush)
                self._held_back = False  # a rush job may preempt: plan again

    def _load(self, session: Any, job_ids: list[int], *, new: bool = True) -> None:
        """Read jobs into the book: the new active ones (``new``), or one a command names."""
        if new:
            self._last_job_id = max(self._last_job_id, *job_ids)
        for job in load_jobs(session, job_ids):
            self._jobs[job.id] = job
            for layer in job.layers.values():
                self._layers[layer.id] = layer
                self._fit(layer)
                for frame in layer.frames.values():
                    for tile in frame.tiles:
                        self._tiles[tile.id] = tile
                    self._collector.added(len(frame.tiles))
            self._activator.offer_job(job)

    def _fit(self, layer: LayerBook) -> None:
        shapes = list(self._terms.pools.values())
        layer.pools = fitting_pools(layer.requirements, shapes, pool=layer.pool)
        layer.unfit = (
            "" if layer.pools else unfit_reason(layer.requirements, shapes, pool=layer.pool)
        )

    # ------------------------------------------------------------------ job control
    def _control(
        self, session: Any, commands: list[control.Command], changes: Changes, stamp: datetime
    ) -> None:
        """Apply the users' queued commands in this tick's transaction (``dispatch.control``)."""
        for command in commands:
            job = self._jobs.get(command.job_id)
            if job is None:  # ended (a retry brings it back) or submitted since the last look
                self._load(session, [command.job_id], new=False)
                job = self._jobs.get(command.job_id)
            result = "the job no longer exists"
            if job is not None:
                paused = job.paused
                result = control.apply(
                    command, job, changes, stop=self._stop_tile, activator=self._activator
                )
                if job.paused != paused:
                    session.execute(
                        update(m.Job).where(m.Job.id == job.id).values(paused=job.paused)
                    )
                changes.jobs[job.id] = job  # written, and forgotten again if it stays ended
                changes.job_events.append(
                    (
                        job.id,
                        job.studio_id,
                        "job_control",
                        {
                            "action": command.action.value,
                            "reason": command.reason,
                            "result": result,
                            "command": command.id,
                        },
                    )
                )
            session.execute(
                update(m.JobCommand)
                .where(m.JobCommand.id == command.id)
                .values(applied_at=stamp, result=result)
            )

    def _gates_due(self, now: float) -> bool:
        return now - self._at.get("gates", 0.0) > TERMS_EVERY_S and any(
            job.gated for job in self._jobs.values()
        )

    def _open_gates(self, session: Any, changes: Changes, now: float) -> None:
        """Start the jobs whose awaited jobs and asset versions are there; cancel those whose
        awaited job failed; say in each other's message what it still waits for."""
        if not self._gates_due(now):
            return
        self._at["gates"] = now
        for job in [j for j in self._jobs.values() if j.gated]:
            verdict = gates.judge(session, job)
            if verdict.failed:
                job.gated = False
                result = control.cancel(job, changes, by=verdict.failed, stop=self._stop_tile)
                changes.jobs[job.id] = job
                changes.job_events.append(
                    (job.id, job.studio_id, "dependency_failed", {"reason": verdict.failed})
                )
                log.info("job %s: %s; %s", job.id, verdict.failed, result)
            elif verdict.met:
                job.gated = False
                met = gates.record_met(session, job, verdict)
                changes.job_events.append((job.id, job.studio_id, "dependencies_met", met))
                self._activator.offer_job(job)
            message = "waits for " + ", ".join(verdict.waiting) if verdict.waiting else ""
            if message != job.message:
                job.message = message
                session.execute(update(m.Job).where(m.Job.id == job.id).values(message=message))

    def _stop_tile(self, tile: TileBook) -> None:
        """Stop a cancelled tile's attempt; its result is then only recorded (usage)."""
        ref = self._by_tile.get(tile.id)
        flight = self._in_flight.get(ref) if ref is not None else None
        if flight is not None:
            flight.cancelled = True
            self._cancel(ref)

    # ------------------------------------------------------------------ activation
    def _create_frames(self, session: Any, changes: Changes) -> None:
        """Write the next frames of big jobs as their written frames run low."""
        growing = [layer for layer in self._layers.values() if layer.uncreated > 0]
        for frame in create_frames(session, growing, changes):
            self._activator.offer(frame)

    def _settle(self, session: Any, changes: Changes) -> None:
        """Cascade within the batch: a frame that ended may let (or stop) its downstream frames."""
        for frame in changes.offers:
            self._activator.offer(frame)
        seen = 0
        while seen < len(changes.finished_frames):
            for frame in changes.finished_frames[seen:]:
                seen += 1
                self._activator.offer_downstream(frame)
            self._activator.activate(session, changes)
        self._tiles.update((tile.id, tile) for tile in changes.new_tiles)
        self._collector.added(len(changes.new_tiles))

    def _finish(self, changes: Changes) -> None:
        """Forget jobs that ended (after their batch is committed) and draw contact sheets."""
        for job in self._ended(changes):
            del self._jobs[job.id]
            self._activator.forget(job)
            self._tasks.forget(job)
            for layer in job.layers.values():
                self._layers.pop(layer.id, None)
                for frame in layer.frames.values():
                    for tile in frame.tiles:
                        self._tiles.pop(tile.id, None)
                    self._collector.forgotten(len(frame.tiles))
            self._sheets.draw_later(job.id)

    def _ended(self, changes: Changes) -> list[JobBook]:
        """The jobs of the batch that ended and are still in the book."""
        return [
            job for job in changes.jobs.values() if job.state in TERMINAL and job.id in self._jobs
        ]

    def _forget_reasons(self, session: Any, changes: Changes) -> None:
        """An ended job waits for nothing: its layers' reasons and its message go, in the batch
        that ends it (a cancelled job went on saying its studio was at its ceiling)."""
        layers: list[dict[str, Any]] = []
        jobs: list[dict[str, Any]] = []
        for job in self._ended(changes):
            for layer in job.layers.values():
                if layer.reason:
                    layer.reason = ""
                    layers.append({"id": layer.id, "reason": ""})
            if job.message:
                job.message = ""
                jobs.append({"id": job.id, "message": ""})
        connection = session.connection()
        update_rows(connection, LAYERS, layers)
        update_rows(connection, JOBS, jobs)

    # ------------------------------------------------------------------ dispatch
    def _layer_target(self, layer: LayerBook, pool: str) -> int:
        """Tiles of a layer sent one task each to keep in flight on ``pool``: as
        :meth:`_target` but from the layer's own tile time (1 s while unknown), so a layer of
        long tiles never inherits the deep queue of a pool's short ones."""
        return self._queued(int(self._capacity.get(pool, 0)), layer.tile_s or 1.0, 1)

    def _queued(self, capacity: int, mean_s: float, batch: int) -> int:
        if capacity <= 0:
            return 0
        queue = math.ceil(capacity * self.queue_s / max(mean_s, 1e-4))
        most = (2 * capacity + 64) * batch
        return capacity + min(max(queue, math.ceil(capacity / 2)), most)

    def _target(self, pool: str, *, batched: bool = True) -> int:
        """Slots to keep in flight on ``pool``: its capacity plus a queue so workers never wait.

        The queue covers ``queue_s`` of the pool's work (about a dispatcher round trip), at
        least half the capacity and at most twice the capacity plus 64: trivial tiles keep dozens
        queued, tiles of seconds keep a few, so fair share is decided close to when a tile
        really starts. Batched tiles (``batches``) keep as many batches queued as single tiles
        would be (``batched=False``: the queue for tiles sent one task each).
        """
        batch = self._batch_of.get(pool, 1) if batched else 1
        return self._queued(int(self._capacity.get(pool, 0)), self._tile_s.get(pool, 1.0), batch)

    def _pool_states(self) -> dict[str, PoolState]:
        in_flight: Counter[str] = Counter()
        for (_, pool), n in self._running.items():
            in_flight[pool] += n
        states = {}
        for name, shape in self._terms.pools.items():
            target = self._target(name)
            states[name] = PoolState(
                name,
                capacity=target,
                free=min(max(0, target - in_flight[name]), DISPATCH_PER_TICK),
                accelerated=not shape.is_cpu,
                backfill=shape.backfill,
            )
        return states

    def _within_queues(self, decisions: list[Decision]) -> list[Decision]:
        """The planner's picks that fit the queues kept in Ray: shared cores, then each layer's.

        When none does, :meth:`_has_room` says so until the next tick with a result, command or
        new work: a tick that plans and sends nothing every ``poll_s`` cost the embedded farm's
        2 cores a database transaction and a plan each time."""
        return self._within_layer_queues(self._within_shared_cores(decisions))

    def _within_shared_cores(self, decisions: list[Decision]) -> list[Decision]:
        """Pools on the same cores (the embedded farm's virtual pools) share one short queue in
        Ray, given to the earliest frame's deepest layer first (``dispatch.shared``)."""
        if not self._shared or not decisions:
            return decisions
        in_flight: Counter[str] = Counter()
        for (_, pool), n in self._running.items():
            in_flight[pool] += n
        coming = {
            layer.pools[0]
            for layer in self._layers.values()
            if layer.pools and layer.state not in TERMINAL
        }

        def layer_of(decision: Decision) -> LayerShape:
            layer = self._layers[decision.layer_id]
            return LayerShape(
                slots=slots(layer.requirements),
                tile_s=layer.tile_s,
                depth=self._depth_key(decision),
            )

        return within_shared_cores(
            decisions,
            groups=self._shared,
            cores=self._capacity,
            in_flight=in_flight,
            coming=coming,
            layer_of=layer_of,
            queue_s=self.queue_s,
        )

    def _within_layer_queues(self, decisions: list[Decision]) -> list[Decision]:
        """Only layers whose tiles go in batches get a pool's queue sized for batches; any
        other layer keeps the queue its own tile time asks for (:meth:`_layer_target`).

        A layer whose tile time is unknown waits so until one of its tiles ends and says
        whether they are short enough to batch: without this a fresh layer's first tick filled
        a queue sized for batches with a thousand noop tiles sent one task each, before the
        first of them could tell; and a render layer beside a batched one had thousands of
        tiles committed to Ray's queue, fair share decided long before they started."""
        kept = []
        room: dict[tuple[int, str], int] = {}
        for decision in decisions:
            layer = self._layers[decision.layer_id]
            if self._short(layer):
                kept.append(decision)
                continue
            key = (layer.id, decision.pool)
            if key not in room:
                most = self._layer_target(layer, decision.pool) // slots(layer.requirements)
                room[key] = max(1, most) - layer.in_flight
            if room[key] > 0:
                room[key] -= 1
                kept.append(decision)
        return kept

    def _depth_key(self, decision: Decision) -> tuple[int, int]:
        layer = self._layers[decision.layer_id]
        frame = layer.ready[0][0] if layer.ready else 0
        return (frame, -layer.position)

    def _works(self) -> list[Work]:
        works = []
        for layer in self._layers.values():
            if not layer.ready or layer.job.paused:
                continue
            job = layer.job
            req = layer.requirements
            works.append(
                Work(
                    studio_id=job.studio_id,
                    job_id=job.id,
                    layer_id=layer.id,
                    tiles=layer.ready,
                    pools=layer.pools,
                    priority=job.priority,
                    rush=job.rush,
                    slots=slots(req),
                    licences=req.licences,
                    accelerated=req.accelerator is not None,
                    unfit=layer.unfit,
                    tile_s=layer.tile_s,
                )
            )
        return works

    def _snapshot(self, works: list[Work], pools: dict[str, PoolState]) -> Snapshot:
        # Preemption reads running tiles only where it may act: every tile when a rush job
        # waits, CPU backfill when accelerated work finds its pool full, none otherwise.
        rush = any(w.rush for w in works)
        accelerated = any(
            w.accelerated and w.pools and pools[w.pools[0]].free < w.slots for w in works
        )
        flights = self._in_flight.values() if rush else self._backfill.values()
        running_tiles = [
            RunningTile(
                f.tile.id,
                f.studio_id,
                f.pool,
                f.started,
                f.slots,
                f.tile.frame.layer.job.rush,
                f.backfill,
            )
            for f in (flights if rush or accelerated else ())
            if not f.preempted
        ]
        return Snapshot(
            pending=works,
            pools=pools,
            running=dict(self._running),
            usage=self._usage,
            owed=self._owed,
            quotas=self._terms.quotas,
            licences=self._terms.licence_view(self._licence_use),
            running_tiles=running_tiles,
            studio_names=self._terms.studio_names,
        )

    def _has_room(self) -> bool:
        """Is there ready work and a free slot on a pool it fits? (Preemption is planned at the
        latest with the once-a-second reasons, so a rush job waits at most that long.)"""
        if self._held_back:
            return False  # the next tick comes with a result (or the reasons' second)
        free = {name for name, pool in self._pool_states().items() if pool.free > 0}
        return any(
            layer.ready and not layer.job.paused and not free.isdisjoint(layer.pools)
            for layer in self._layers.values()
        )

    def _reasons_due(self, now: float) -> bool:
        return now - self._reasons_at > REASONS_EVERY_S

    def _dispatch(
        self, session: Any, changes: Changes, stamp: datetime
    ) -> list[tuple[InFlight, TileTask]]:
        """Plan, mark the picks RUNNING in ``changes`` and build their tasks (sent after commit)."""
        works = self._works()
        now = time.monotonic()
        reasons_due = self._reasons_due(now)
        self._held_back = False
        if not works:  # everyone runs all they asked for: each is owed what it runs
            self._entitled = {key: float(n) for key, n in self._running.items() if n > 0}
            if reasons_due:
                self._reasons_at = now
                self._write_reasons(session, {})
            return []
        pools = self._pool_states()
        free = {name for name, pool in pools.items() if pool.free > 0}
        room = any(not free.isdisjoint(w.pools) for w in works)
        if not room and not reasons_due and not any(w.rush or w.accelerated for w in works):
            return []
        result = plan(self._snapshot(works, pools), self.policy)
        self._entitled = result.entitled
        self._preempt(result)
        if reasons_due:
            self._reasons_at = now
            self._write_reasons(session, result.waiting)
        submissions: list[tuple[InFlight, TileTask]] = []
        decisions = self._within_queues(list(result.decisions))
        # Nothing to send, though a pool has room: the planner held everything back (ceilings,
        # licences, fair share) or the queue limits did. Neither changes until an attempt ends,
        # a command, new work, new terms or new capacity come, or the reasons' second.
        self._held_back = not decisions
        for decision in decisions:
            layer = self._layers[decision.layer_id]
            (key,) = layer.ready.take(1)
            tile = self._tiles[key[3]]
            move(
                tile,
                on_dispatched(tile.state, pool=decision.pool),  # starts attempt number n + 1
                changes,
                where=decision.pool,
                pool=decision.pool,
                started_at=stamp,
            )
            req = layer.requirements
            shape = self._terms.pools[decision.pool]
            # What a node of the chosen pool offers Ray now: a tile's grown memory never asks
            # more (it would pend forever), whichever pool it failed on before.
            node_gb = min(shape.memory_gb, self._node_memory.get(decision.pool, shape.memory_gb))
            flight = InFlight(
                tile=tile,
                attempt=tile.attempts,
                pool=decision.pool,
                studio_id=layer.job.studio_id,
                slots=slots(req),
                licences=req.licences,
                started=now,
                backfill=req.accelerator is None and not shape.is_cpu,
                memory_gb=min(tile.memory_gb or memory_share(req, shape), node_gb),
                node_memory_gb=node_gb,
            )
            self._hold(flight)
            task = self._tasks.build(session, tile, memory_gb=flight.memory_gb)
            submissions.append((flight, task))
        return submissions

    def _submit_all(self, submissions: list[tuple[InFlight, TileTask]]) -> None:
        """Send the committed picks: short tiles of one layer and pool in batches, the rest
        one task each (``batches``)."""
        groups: dict[tuple[int, str], list[tuple[InFlight, TileTask]]] = defaultdict(list)
        for flight, task in submissions:
            layer = flight.tile.frame.layer
            if layer.tile_s > 0 and self._batchable(flight):
                groups[(layer.id, flight.pool)].append((flight, task))
            else:
                self._submit(flight, self._send(flight, task))
        for (layer_id, pool), group in groups.items():
            slots_ = max(1, int(self._capacity.get(pool, 1)) // group[0][0].slots)
            size = batches.batch_size(self._layers[layer_id].tile_s, len(group), slots_)
            self._batch_of[pool] = size
            for chunk in batches.chunks(group, size):
                if len(chunk) == 1:
                    self._submit(chunk[0][0], self._send(*chunk[0]))
                    continue
                refs = self._send_batch([f for f, _ in chunk], tuple(t for _, t in chunk))
                for (flight, _), ref in zip(chunk, refs, strict=True):
                    self._reweigh(flight, 1 / len(chunk))
                    self._submit(flight, ref)
                    self._siblings[ref] = refs
                self.batched_tiles += len(chunk)

    def _reweigh(self, flight: InFlight, share: float) -> None:
        """A batched tile holds ``share`` of its batch's slots (for usage, not capacity)."""
        key = (flight.studio_id, flight.pool)
        self._busy[key] += flight.slots * (share - flight.share)
        flight.share = share

    def _batchable(self, flight: InFlight) -> bool:
        """Stateless tiles sent with their layer's usual options: not a command (its cancel
        is polite, per task), not a render session, not an attempt moved off nodes or given
        more memory, and measured short."""
        layer = flight.tile.frame.layer
        return self._short(layer) and not flight.tile.memory_gb and not self._avoid(flight)

    @staticmethod
    def _short(layer: LayerBook) -> bool:
        """A layer whose tiles go in batches: measured short, stateless, never a batch lost."""
        return (
            layer.tile_s > 0
            and layer.tile_s * 2 <= batches.BATCH_S
            and layer.kind is not LayerKind.COMMAND
            and layer.spec.execution != "session"
            and not layer.batch_lost
        )

    def _submit(self, flight: InFlight, ref: Any) -> None:
        self._in_flight[ref] = flight
        self._by_tile[flight.tile.id] = ref
        if flight.backfill:
            self._backfill[ref] = flight

    def _send_batch(self, flights: list[InFlight], tasks: tuple[TileTask, ...]) -> tuple[Any, ...]:
        """One Ray task for several tiles of one layer and pool; one object ref per tile."""
        layer = flights[0].tile.frame.layer
        pool = flights[0].pool
        key = (layer.id, pool, len(tasks))
        remote = self._batch_remotes.get(key)
        if remote is None:
            shape = self._terms.pools[pool]
            options = ray_options(layer.requirements, shape, virtual=pool in self._virtual)
            remote = self._batch_remotes[key] = self._batch_remote.options(
                max_retries=0, num_returns=len(tasks), **options
            )
        self._make_room(pool)
        try:
            return tuple(remote.remote(tasks, self._store_ref))
        except Exception as exc:  # Ray refused it: attempts that failed at once
            return tuple(_Refused(exc) for _ in tasks)

    def _send(self, flight: InFlight, task: TileTask) -> Any:
        """Hand the attempt to Ray with its pool's resources; returns its object ref."""
        layer = flight.tile.frame.layer
        if layer.kind is LayerKind.COMMAND and self._live_logs is None:
            self._live_logs = livelog.start_actor()  # a running command's log, readable live
        remote = self._remotes.get((layer.id, flight.pool))
        if remote is None:
            shape = self._terms.pools[flight.pool]
            options = ray_options(layer.requirements, shape, virtual=flight.pool in self._virtual)
            remote = self._remotes[(layer.id, flight.pool)] = self._remote.options(
                max_retries=0, **options
            )
        avoid = self._avoid(flight)
        try:
            if not avoid and not flight.tile.memory_gb:
                if layer.spec.execution == "session":
                    return self._session(flight, task)
                if flight.pool in self._idle_pools and layer.kind is not LayerKind.COMMAND:
                    # The studio's idle session is a warm worker: cheaper than stopping it.
                    # (Not for commands: they are stopped politely, a session is killed.)
                    ref = self._session(flight, task, idle_only=True)
                    if ref is not None:
                        return ref
            self._make_room(flight.pool)
            if avoid or flight.tile.memory_gb:
                # This attempt differs from its layer's: other nodes, or more memory.
                shape = self._terms.pools[flight.pool]
                options = ray_options(
                    layer.requirements, shape, virtual=flight.pool in self._virtual
                )
                if avoid:
                    options["label_selector"] = avoid_selector(avoid)
                if flight.tile.memory_gb:
                    options["memory"] = int(flight.memory_gb * GIB)
                remote = self._remote.options(max_retries=0, **options)
            return remote.remote(task, self._store_ref)
        except Exception as exc:  # Ray refused it: an attempt that failed at once
            return _Refused(exc)

    def _session(self, flight: InFlight, task: TileTask, *, idle_only: bool = False) -> Any:
        """Send the attempt to a render session of its studio, pool and resources (see
        sessions.py); with ``idle_only``, only to one that is idle now (else None)."""
        if self._sessions is None:
            self._sessions = SessionPool(self._store_ref)
        shape = (flight.tile.frame.layer.id, flight.pool)
        if shape not in self._session_keys:
            layer = flight.tile.frame.layer
            pool = self._terms.pools[flight.pool]
            options = ray_options(layer.requirements, pool, virtual=flight.pool in self._virtual)
            self._session_keys[shape] = (
                session_key(flight.studio_id, flight.pool, options),
                options,
            )
        key, options = self._session_keys[shape]
        if idle_only and not self._sessions.has_idle(key):
            return None
        most = max(1, int(self._capacity.get(flight.pool, 1) // flight.slots))
        if self._sessions.takes_a_core(key, most):
            self._make_room(flight.pool)
        return self._sessions.submit(key, options, task, most=most, slots=flight.slots)

    def _make_room(self, pool: str) -> None:
        """Stop the idle render sessions that attempts in flight on ``pool``'s cores would
        otherwise queue behind in Ray. A session holds its core busy or idle, so the other
        attempts there (tasks, and one about to start a session, counted in ``_running`` but
        not given to any session yet) get only the cores no session holds."""
        if self._sessions is None:
            return
        group = {pool}.union(*(shared for shared in self._shared if pool in shared))
        if not group & self._idle_pools:  # none was idle at the tick's start, nor since
            return
        held, idle, given = self._sessions.held(group)
        if not idle:
            return
        cores = max(self._capacity.get(name, 0.0) for name in group)
        # ``_busy`` counts a batch's slots once (its tiles share one task's cores).
        others = sum(n for (_, name), n in self._busy.items() if name in group) - given
        excess = others - (cores - held)
        if excess > 0:
            self._sessions.make_room(group, math.ceil(excess))

    def _avoid(self, flight: InFlight) -> tuple[str, ...]:
        """Nodes this attempt should not run on: where its tile failed, and nodes that failed
        several tiles of its layer; none when that would leave the pool no node at all."""
        tile = flight.tile
        layer = tile.frame.layer
        if not tile.avoid and not layer.node_failures:
            return ()
        bad = set(tile.avoid)
        bad.update(n for n, count in layer.node_failures.items() if count >= NODE_FAILURES_TO_AVOID)
        alive = self._nodes.get(flight.pool, frozenset())
        bad &= alive
        if not bad or bad >= alive:
            return ()
        return tuple(sorted(bad))

    def _hold(self, flight: InFlight) -> None:
        """Count the attempt's slots and licence seats from the moment it is decided."""
        self._running[(flight.studio_id, flight.pool)] += flight.slots
        self._busy[(flight.studio_id, flight.pool)] += flight.slots * flight.share
        flight.tile.frame.layer.in_flight += 1
        for name in flight.licences:
            use = self._licence_use[name]
            use[flight.studio_id] = use.get(flight.studio_id, 0) + 1

    def _release(self, flight: InFlight) -> None:
        self._running[(flight.studio_id, flight.pool)] -= flight.slots
        self._busy[(flight.studio_id, flight.pool)] -= flight.slots * flight.share
        flight.tile.frame.layer.in_flight -= 1
        for name in flight.licences:
            self._licence_use[name][flight.studio_id] -= 1

    def _preempt(self, result: Plan) -> None:
        """Stop the tiles the planner preempts; they come back as pending, no attempt counted."""
        for preemption in result.preemptions:
            ref = self._by_tile.get(preemption.tile_id)
            flight = self._in_flight.get(ref) if ref is not None else None
            if flight is None or flight.preempted:
                continue
            flight.preempted = preemption.reason
            self._cancel(ref)

    def _cancel(self, ref: Any) -> None:
        """Stop an attempt: Ray kills its worker process (``force=True``); its result is then an
        error that the dispatcher records as preempted or cancelled, never as a failure.

        Not the polite ``force=False``: that raises KeyboardInterrupt wherever the task is,
        and a worker interrupted inside an import (numba's, on its first tile) keeps a half-
        imported module, so every later tile on that worker failed with "module 'numba' has
        no attribute 'core'". A fresh worker costs a second; a poisoned one costs tiles.
        A task that finishes first keeps its result: the tile is then done, nothing is lost.

        Command tiles are the exception: killing their worker would orphan the command it
        runs (a render would go on burning a node nobody accounts for), so they get the
        KeyboardInterrupt, on which the executor cancels the action as its template says
        (notify, then terminate) and exits its environments (``executors.command``).
        """
        import ray

        if self._sessions is not None and self._sessions.owns(ref):
            # An actor's call cannot be force-cancelled: stop the session. The attempts queued
            # behind on it never started; they go back to pending as preempted, uncounted.
            for other in self._sessions.stop(ref):
                flight = self._in_flight.get(other)
                if flight is not None and not (flight.cancelled or flight.preempted):
                    flight.preempted = "its render session was stopped"
        elif not isinstance(ref, _Refused):
            for other in self._siblings.get(ref, ()):
                # Its batch stops with it: the others never failed, they run again uncounted.
                flight = self._in_flight.get(other)
                if other is not ref and flight and not (flight.cancelled or flight.preempted):
                    flight.preempted = "stopped with another tile of its batch"
            flight = self._in_flight.get(ref)
            command = flight is not None and flight.tile.frame.layer.kind is LayerKind.COMMAND
            ray.cancel(ref, force=not command)

    def _write_reasons(self, session: Any, waiting: dict[tuple[int, int], str]) -> None:
        """Why each layer's ready tiles wait: on the layer row (the API shows it on each of its
        pending tiles) and in its job's message. One row per layer that changed, never a write
        per pending tile: reasons quote running counts, so they change every second."""
        changes: dict[int, str] = {}
        for layer in self._layers.values():
            reason = waiting.get((layer.job.id, layer.id), "")
            if layer.job.paused and layer.ready:
                reason = "job paused"
            if reason != layer.reason:
                layer.reason = reason
                changes[layer.id] = reason
        if not changes:
            return
        jobs = {self._layers[i].job.id: self._layers[i].job for i in changes}
        connection = session.connection()  # bulk: at farm scale thousands change each second
        update_rows(connection, LAYERS, ({"id": i, "reason": r} for i, r in changes.items()))
        messages = []
        for job in jobs.values():
            message = "; ".join(
                f"{layer.name}: {layer.reason}" for layer in job.layers.values() if layer.reason
            )
            if message != job.message:
                job.message = message
                messages.append({"id": job.id, "message": message})
        update_rows(connection, JOBS, messages)

    # ------------------------------------------------------------------ collecting results
    def _split_in_flight(self) -> tuple[list[tuple[Any, InFlight]], list[Any]]:
        """The attempts Ray refused when they were sent (each with its flight), and the refs
        of those Ray holds, which it can be asked to wait on."""
        refused: list[tuple[Any, InFlight]] = []
        refs: list[Any] = []
        for ref, flight in self._in_flight.items():
            if isinstance(ref, _Refused):
                refused.append((ref, flight))
            else:
                refs.append(ref)
        return refused, refs

    def _gather(self, *, timeout_s: float) -> list[tuple[Any, InFlight]]:
        """The attempts that finished (waiting up to ``timeout_s`` for the first one)."""
        if not self._in_flight:
            return []
        import ray

        refused, refs = self._split_in_flight()
        if not refs:
            return refused
        # Wait for a third of what is in flight (or the timeout): results then come in
        # batches, so the per-transaction cost is shared, while the rest keeps the workers busy.
        batch = max(1, len(refs) // 3)
        ready, _ = ray.wait(refs, num_returns=batch, timeout=0.0 if refused else timeout_s)
        if ready:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        return refused + [(ref, self._in_flight[ref]) for ref in ready]

    def _apply(
        self, gathered: list[tuple[Any, InFlight]], changes: Changes, stamp: datetime
    ) -> list[dict[str, Any]]:
        """Apply finished attempts to the book; returns their usage rows."""
        usage: list[dict[str, Any]] = []
        for ref, flight in gathered:
            result = self._result(ref, flight)
            self._release(flight)
            self._tile_s[flight.pool] = (
                0.8 * self._tile_s.get(flight.pool, result.wall_seconds) + 0.2 * result.wall_seconds
            )
            if result.ok:
                layer = flight.tile.frame.layer
                layer.tile_s = batches.measured(layer.tile_s, result.wall_seconds)
            row = apply_result(
                flight,
                result,
                changes,
                tiles=self._tiles,
                max_attempts=self.max_attempts,
                prices=self._terms.prices,
                now=stamp,
            )
            if row is not None:
                usage.append(row)
        return usage

    def _result(self, ref: Any, flight: InFlight) -> TileResult:
        """What a finished attempt returned; a lost worker or node is a failed attempt."""
        import ray

        if isinstance(ref, _Refused):
            return lost(flight, ref.error)
        sessions = (
            self._sessions if self._sessions is not None and self._sessions.owns(ref) else None
        )
        unstarted = self._sessions is not None and self._sessions.unstarted(ref)
        try:
            result: TileResult = ray.get(ref)
        except Exception as exc:
            if unstarted:  # cancelled in a session's queue: it never ran, it costs nothing
                return replace(lost(flight, exc), wall_seconds=0.0)
            if ref in self._siblings:
                if not (flight.cancelled or flight.preempted):
                    # Its batch's worker (or node) was lost: which tile caused it is unknown,
                    # so none is counted; the layer's tiles go one task each from now on,
                    # where a tile that crashes its worker is counted alone.
                    flight.preempted = "its batch's worker was lost"
                    flight.tile.frame.layer.batch_lost = True
                died = lost(flight, exc)  # the batch's time is shared by its tiles
                return replace(died, wall_seconds=died.wall_seconds * flight.share)
            if sessions is None:
                return lost(flight, exc)
            running, node_id = sessions.lost(ref)
            died = lost(flight, exc)
            if not running:
                # Queued behind another tile on the session: it never ran, so it costs nothing
                # (a cancelled job's queued attempts were billed their time in the queue).
                died = replace(died, wall_seconds=0.0)
                if not (flight.cancelled or flight.preempted):
                    flight.preempted = "its render session died before it started"
            return died if died.node_id or not node_id else replace(died, node_id=node_id)
        if sessions is not None and (idle := sessions.finished(ref, result.node_id)):
            self._idle_pools.add(idle)
        return result

    def _forget(self, ref: Any, flight: InFlight) -> None:
        self._in_flight.pop(ref, None)
        self._backfill.pop(ref, None)
        self._siblings.pop(ref, None)
        if self._by_tile.get(flight.tile.id) is ref:
            del self._by_tile[flight.tile.id]


class _Refused:
    """Stands in for the object ref of a task Ray would not take (its error is the result)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
