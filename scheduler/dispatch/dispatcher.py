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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from farm.cost.pricing import attempt_cost, node_hours
from farm.db import models as m
from farm.db.session import Database
from farm.states import (
    TERMINAL,
    TileState,
    on_attempt_failed,
    on_dispatched,
    on_inputs_lost,
    on_output_lost,
    on_preempted,
    on_requeued,
    on_succeeded,
)
from farm.storage import BlobStore
from farm.vocab import LayerKind
from scheduler.dispatch.activate import Activator
from scheduler.dispatch.book import (
    Changes,
    JobBook,
    LayerBook,
    TileBook,
    load_jobs,
    move,
    set_frame_state,
)
from scheduler.dispatch.commit import write
from scheduler.dispatch.tasks import TaskBuilder
from scheduler.dispatch.terms import (
    SAVE_USAGE_EVERY_S,
    TERMS_EVERY_S,
    Terms,
    read_terms,
    read_usage,
    save_usage,
)
from scheduler.executors.base import TileResult, TileTask, run_tile
from scheduler.plan import (
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
from scheduler.plan.fit import fitting_pools, slots, unfit_reason
from scheduler.runtime import pool_capacity, ray_options

log = logging.getLogger("scheduler.dispatch")
ACTIVE = [s.value for s in TileState if s not in TERMINAL]
REASONS_EVERY_S = 1.0
"""Why-pending reasons are written at most this often (they change with every slot)."""


@dataclass(slots=True)
class InFlight:
    """One attempt sent to Ray and not yet collected."""

    tile: TileBook
    attempt: int
    pool: str
    studio_id: int
    slots: int
    licences: tuple[str, ...]
    started: float
    backfill: bool
    preempted: str = ""
    """Why it was stopped, when the planner preempted it."""


class Dispatcher:
    """Drives every active job to completion on the Ray cluster this process is connected to.

    Args:
        db: the farm database.
        store: the blob store; Ray tasks receive it and read and write blobs directly.
        output_root: where assembled frames and previews are written.
        max_attempts: attempts per tile before it fails for good.
        poll_s: the longest a tick waits for a result when nothing else happens.
        policy: fair-share half-life and the preemption limit.
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
    ) -> None:
        import ray

        self.db = db
        self.store = store
        self.output_root = Path(output_root)
        self.max_attempts = max_attempts
        self.poll_s = poll_s
        self.policy = policy or Policy()
        self._remote = ray.remote(run_tile)
        self._remotes: dict[tuple[int, str], Any] = {}
        self._store_ref = ray.put(store)
        self._in_flight: dict[Any, InFlight] = {}
        self._by_tile: dict[int, Any] = {}
        self._jobs: dict[int, JobBook] = {}
        self._layers: dict[int, LayerBook] = {}
        self._tiles: dict[int, TileBook] = {}
        self._activator = Activator()
        self._tasks = TaskBuilder(self.output_root)
        self._terms = Terms()
        self._running: Counter[StudioPool] = Counter()
        self._licence_use: dict[str, dict[int, int]] = defaultdict(dict)
        self._usage: dict[StudioPool, float] = {}
        self._tile_s: dict[str, float] = {}
        """Per pool: a moving average of attempt wall time, to size the queue kept in Ray."""
        self._capacity: dict[str, float] = {}
        self._virtual: set[str] = set()
        self._last_job_id = 0
        self._at = {"terms": -math.inf, "capacity": -math.inf, "usage": time.monotonic()}
        self._saved_usage_at = time.monotonic()
        self._reasons_at = -math.inf
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.recover()

    # ------------------------------------------------------------------ lifecycle
    def recover(self) -> int:
        """Requeue tiles left RUNNING by a dispatcher that is gone, then load the book."""
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
            )
            count = int(getattr(requeued, "rowcount", 0))
            self._usage = read_usage(session)
        if count:
            log.info("requeued %d tiles left running by a previous dispatcher", count)
        self._jobs.clear()
        self._layers.clear()
        self._tiles.clear()
        self._last_job_id = 0
        self._refresh(time.monotonic())
        return count

    def start(self) -> None:
        """Run the loop in a background thread (the ``farm server`` mode)."""
        self._thread = threading.Thread(target=self._loop, name="farm-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.tick():
                    self._stop.wait(self.poll_s)
            except Exception:
                log.exception("dispatcher tick failed; reloading from the database")
                self._stop.wait(1.0)
                self._resync()

    def _resync(self) -> None:
        """After a failed commit the book may be ahead of the database: reload it.

        Attempts still in flight keep running; their results apply to the reloaded tiles.
        """
        self._jobs.clear()
        self._layers.clear()
        self._tiles.clear()
        self._activator = Activator()
        self._last_job_id = 0
        self._refresh(time.monotonic())
        for ref, flight in list(self._in_flight.items()):
            tile = self._tiles.get(flight.tile.id)
            if tile is None:
                del self._in_flight[ref]
                continue
            flight.tile = tile
            tile.frame.layer.ready.remove(tile.key)

    def run_until_done(self, job_ids: Iterable[int], timeout_s: float = 600.0) -> None:
        """Tick in this thread until every job in ``job_ids`` is finished (tests, benchmarks)."""
        wanted = set(job_ids)
        deadline = time.monotonic() + timeout_s
        while True:
            self.tick()
            if not self._in_flight and not wanted & set(self._jobs):
                with self.db.session() as session:
                    states = session.scalars(select(m.Job.state).where(m.Job.id.in_(wanted)))
                    if all(TileState(s) in TERMINAL for s in states):
                        return
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs {sorted(wanted)} did not finish in {timeout_s} s")

    # ------------------------------------------------------------------ one tick
    def tick(self) -> bool:
        """One round of refresh, activate, dispatch and collect. Returns whether anything moved."""
        now = time.monotonic()
        self._refresh(now)
        activated = self._activate()
        dispatched = self._dispatch()
        collected = self._collect(timeout_s=self.poll_s if self._in_flight else 0.0)
        return bool(activated or dispatched or collected)

    def _refresh(self, now: float) -> None:
        """New jobs, the terms an operator may have changed, live capacity and usage decay."""
        dt = now - self._at["usage"]
        self._at["usage"] = now
        for key in set(self._usage) | set(self._running):
            usage = self._usage.get(key, 0.0)
            running = self._running.get(key, 0)
            self._usage[key] = decayed_usage(usage, running, dt, self.policy.half_life_s)
        if now - self._at["capacity"] > 2.0:
            self._at["capacity"] = now
            self._read_capacity()
        with self.db.session() as session:
            new = list(
                session.scalars(
                    select(m.Job.id).where(m.Job.id > self._last_job_id, m.Job.state.in_(ACTIVE))
                )
            )
            if now - self._at["terms"] > TERMS_EVERY_S:
                self._at["terms"] = now
                self._terms = read_terms(session)
                self._read_job_terms(session)
            if new:
                self._load(session, new)
            if now - self._saved_usage_at > SAVE_USAGE_EVERY_S:
                self._saved_usage_at = now
                save_usage(session, self._usage, datetime.now(UTC))

    def _read_capacity(self) -> None:
        import ray

        self._capacity = pool_capacity()
        resources = ray.cluster_resources()
        has_devices = resources.get("GPU", 0) > 0 or resources.get("NPU", 0) > 0
        self._virtual = (
            set()
            if has_devices
            else {name for name, shape in self._terms.pools.items() if not shape.is_cpu}
        )
        self._remotes.clear()

    def _read_job_terms(self, session: Any) -> None:
        """Priority and rush of the active jobs (the API may change them while they run)."""
        if not self._jobs:
            return
        rows = session.execute(
            select(m.Job.id, m.Job.priority, m.Job.rush).where(m.Job.id.in_(list(self._jobs)))
        )
        for job_id, priority, rush in rows:
            job = self._jobs[job_id]
            job.priority, job.rush = priority, bool(rush)
        for layer in self._layers.values():
            self._fit(layer)

    def _load(self, session: Any, job_ids: list[int]) -> None:
        self._last_job_id = max(self._last_job_id, *job_ids)
        for job in load_jobs(session, job_ids):
            self._jobs[job.id] = job
            for layer in job.layers.values():
                self._layers[layer.id] = layer
                self._fit(layer)
                for frame in layer.frames.values():
                    for tile in frame.tiles:
                        self._tiles[tile.id] = tile
            self._activator.offer_job(job)

    def _fit(self, layer: LayerBook) -> None:
        shapes = list(self._terms.pools.values())
        layer.pools = fitting_pools(layer.requirements, shapes, pool=layer.pool)
        layer.unfit = (
            "" if layer.pools else unfit_reason(layer.requirements, shapes, pool=layer.pool)
        )

    # ------------------------------------------------------------------ activation
    def _activate(self) -> int:
        changes = Changes()
        with self.db.session() as session:
            moved = self._activator.activate(session, changes)
            self._settle(session, changes)
            write(session, changes, datetime.now(UTC))
        self._finish(changes)
        return moved

    def _settle(self, session: Any, changes: Changes) -> None:
        """Cascade within the batch: a frame that ended may let (or stop) its downstream frames."""
        seen = 0
        while seen < len(changes.finished_frames):
            for frame in changes.finished_frames[seen:]:
                seen += 1
                self._activator.offer_downstream(frame)
            self._activator.activate(session, changes)
        self._tiles.update((tile.id, tile) for tile in changes.new_tiles)

    def _finish(self, changes: Changes) -> None:
        """Forget jobs that ended (after their batch is committed) and draw contact sheets."""
        for job in changes.jobs.values():
            if job.state in TERMINAL and job.id in self._jobs:
                del self._jobs[job.id]
                self._activator.forget(job)
                self._tasks.forget(job)
                for layer in job.layers.values():
                    self._layers.pop(layer.id, None)
                    for frame in layer.frames.values():
                        for tile in frame.tiles:
                            self._tiles.pop(tile.id, None)
                self._contact_sheets(job)

    # ------------------------------------------------------------------ dispatch
    def _target(self, pool: str) -> int:
        """Slots to keep in flight on ``pool``: its capacity plus a queue so workers never wait.

        The queue covers about 50 ms of the pool's work (a dispatcher round trip), at least half
        the capacity and at most the capacity plus 32: trivial tiles keep dozens queued, tiles
        of seconds keep a few, so fair share is decided close to when a tile really starts.
        """
        capacity = int(self._capacity.get(pool, 0))
        if capacity <= 0:
            return 0
        mean_s = self._tile_s.get(pool, 1.0)
        queue = math.ceil(capacity * 0.05 / max(mean_s, 1e-4))
        return capacity + min(max(queue, math.ceil(capacity / 2)), capacity + 32)

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
                free=max(0, target - in_flight[name]),
                accelerated=not shape.is_cpu,
                backfill=shape.backfill,
            )
        return states

    def _works(self) -> list[Work]:
        works = []
        for layer in self._layers.values():
            if not layer.ready:
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
                )
            )
        return works

    def _snapshot(self, works: list[Work]) -> Snapshot:
        hungry = any(w.rush or w.accelerated for w in works)
        running_tiles = (
            [
                RunningTile(
                    f.tile.id,
                    f.studio_id,
                    f.pool,
                    f.started,
                    f.slots,
                    f.tile.frame.layer.job.rush,
                    f.backfill,
                )
                for f in self._in_flight.values()
                if not f.preempted
            ]
            if hungry
            else []
        )
        return Snapshot(
            pending=works,
            pools=self._pool_states(),
            running=dict(self._running),
            usage=self._usage,
            quotas=self._terms.quotas,
            licences=self._terms.licence_view(self._licence_use),
            running_tiles=running_tiles,
            studio_names=self._terms.studio_names,
        )

    def _dispatch(self) -> int:
        works = self._works()
        now = time.monotonic()
        reasons_due = now - self._reasons_at > REASONS_EVERY_S
        if not works:
            if reasons_due:
                self._reasons_at = now
                self._write_reasons({})
            return 0
        pools = self._pool_states()
        room = any(p.free > 0 for p in pools.values())
        if not room and not reasons_due and not any(w.rush or w.accelerated for w in works):
            return 0
        result = plan(self._snapshot(works), self.policy)
        self._preempt(result)
        if reasons_due:
            self._reasons_at = now
            self._write_reasons(result.waiting)
        if not result.decisions:
            return 0
        submissions: list[tuple[InFlight, TileTask]] = []
        changes = Changes()
        started = datetime.now(UTC)
        with self.db.session() as session:
            for decision in result.decisions:
                layer = self._layers[decision.layer_id]
                (key,) = layer.ready.take(1)
                tile = self._tiles[key[3]]
                tile.attempts += 1
                change = on_dispatched(tile.state, pool=decision.pool)
                move(
                    tile,
                    change,
                    changes,
                    where=decision.pool,
                    attempts=tile.attempts,
                    pool=decision.pool,
                    started_at=started,
                )
                req = layer.requirements
                flight = InFlight(
                    tile=tile,
                    attempt=tile.attempts,
                    pool=decision.pool,
                    studio_id=layer.job.studio_id,
                    slots=slots(req),
                    licences=req.licences,
                    started=now,
                    backfill=req.accelerator is None
                    and not self._terms.pools[decision.pool].is_cpu,
                )
                submissions.append((flight, self._tasks.build(session, tile)))
            write(session, changes, started)
        # Committed RUNNING first: a crash now leaves RUNNING tiles that recover() requeues.
        for flight, task in submissions:
            self._submit(flight, task)
        return len(submissions)

    def _submit(self, flight: InFlight, task: TileTask) -> None:
        layer = flight.tile.frame.layer
        remote = self._remotes.get((layer.id, flight.pool))
        if remote is None:
            shape = self._terms.pools[flight.pool]
            options = ray_options(layer.requirements, shape, virtual=flight.pool in self._virtual)
            remote = self._remotes[(layer.id, flight.pool)] = self._remote.options(
                max_retries=0, **options
            )
        self._running[(flight.studio_id, flight.pool)] += flight.slots
        for name in flight.licences:
            use = self._licence_use[name]
            use[flight.studio_id] = use.get(flight.studio_id, 0) + 1
        try:
            ref = remote.remote(task, self._store_ref)
        except Exception as exc:
            self._release(flight)
            self._apply([(flight, _lost(flight, exc))])
            return
        self._in_flight[ref] = flight
        self._by_tile[flight.tile.id] = ref

    def _release(self, flight: InFlight) -> None:
        self._running[(flight.studio_id, flight.pool)] -= flight.slots
        for name in flight.licences:
            self._licence_use[name][flight.studio_id] -= 1

    def _preempt(self, result: Plan) -> None:
        """Stop the tiles the planner preempts; they come back as pending, no attempt counted."""
        import ray

        for preemption in result.preemptions:
            ref = self._by_tile.get(preemption.tile_id)
            flight = self._in_flight.get(ref) if ref is not None else None
            if flight is None or flight.preempted:
                continue
            flight.preempted = preemption.reason
            ray.cancel(ref, force=False)

    def _write_reasons(self, waiting: dict[tuple[int, int], str]) -> None:
        """Why each layer's ready tiles wait, on the layer's tiles and on its job's message."""
        changes: dict[int, str] = {}
        for layer in self._layers.values():
            reason = waiting.get((layer.job.id, layer.id), "")
            if reason != layer.reason:
                layer.reason = reason
                changes[layer.id] = reason
        if not changes:
            return
        jobs = {self._layers[i].job.id: self._layers[i].job for i in changes}
        with self.db.session() as session:
            for layer_id, reason in changes.items():
                session.execute(
                    update(m.Tile)
                    .where(m.Tile.layer_id == layer_id, m.Tile.state == TileState.PENDING)
                    .values(reason=reason or "ready")
                )
            for job in jobs.values():
                message = "; ".join(
                    f"{layer.name}: {layer.reason}" for layer in job.layers.values() if layer.reason
                )
                if message != job.message:
                    job.message = message
                    session.execute(update(m.Job).where(m.Job.id == job.id).values(message=message))

    # ------------------------------------------------------------------ collecting results
    def _collect(self, *, timeout_s: float) -> int:
        if not self._in_flight:
            return 0
        import ray

        refs = list(self._in_flight)
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout_s)
        if not ready:
            return 0
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        results: list[tuple[InFlight, TileResult]] = []
        for ref in ready:
            flight = self._in_flight[ref]
            try:
                result: TileResult = ray.get(ref)
            except Exception as exc:
                result = _lost(flight, exc)
            results.append((flight, result))
        self._apply(results)
        # Forgotten only once committed: if the commit fails, the next tick applies them again.
        for ref in ready:
            flight = self._in_flight.pop(ref)
            self._by_tile.pop(flight.tile.id, None)
            self._release(flight)
        return len(results)

    def _apply(self, results: list[tuple[InFlight, TileResult]]) -> None:
        """Commit a batch of attempt results, their usage records and events in one transaction."""
        now = datetime.now(UTC)
        changes = Changes()
        usage: list[dict[str, Any]] = []
        for flight, result in results:
            tile = flight.tile
            if tile.state != TileState.RUNNING or tile.attempts != result.attempt:
                continue  # stale: the tile was requeued or cancelled meanwhile
            self._tile_s[flight.pool] = 0.8 * self._tile_s.get(flight.pool, result.wall_seconds) + (
                0.2 * result.wall_seconds
            )
            if flight.preempted and not result.ok:
                tile.attempts -= 1
                tile.preemptions += 1
                move(
                    tile,
                    on_preempted(tile.state, why=flight.preempted),
                    changes,
                    attempts=tile.attempts,
                    preemptions=tile.preemptions,
                )
                tile.frame.layer.ready.add([tile.key])
                continue
            usage.append(self._usage_row(flight, result, now))
            self._record(tile, flight, result, changes, now)
        with self.db.session() as session:
            self._settle(session, changes)
            write(session, changes, now, usage)
        self._finish(changes)

    def _record(
        self, tile: TileBook, flight: InFlight, result: TileResult, changes: Changes, now: datetime
    ) -> None:
        """One attempt's outcome on its tile (and on the frame it feeds)."""
        layer = tile.frame.layer
        values: dict[str, Any] = {
            "node": result.node,
            "finished_at": now,
            "wall_seconds": result.wall_seconds,
            "cpu_seconds": result.cpu_seconds,
        }
        if result.ok:
            tile.output_hash = result.output_hash
            frame = tile.frame
            if layer.kind is LayerKind.PARTICLE_RENDER:
                layer.tile_times = [*layer.tile_times[-255:], [*tile.rect, result.wall_seconds]]
                changes.layer(layer, tile_times=layer.tile_times)
            if result.cost_preview is not None:
                frame.cost_preview = result.cost_preview
                changes.frame(frame, cost_preview=result.cost_preview)
            if result.outputs:
                changes.frame(
                    frame,
                    output_path=result.outputs.get("exr"),
                    preview_path=result.outputs.get("preview"),
                    output_hash=result.output_hash,
                )
            change = on_succeeded(tile.state)
            move(tile, change, changes, where=result.node, output_hash=result.output_hash, **values)
        elif result.corrupt_input_tiles:
            tile.attempts -= 1  # the assemble itself did nothing wrong
            change = on_inputs_lost(tile.state, tiles=len(result.corrupt_input_tiles))
            move(tile, change, changes, where=result.node, attempts=tile.attempts, **values)
            set_frame_state(tile.frame, TileState.WAITING, changes)
            for bad_id in result.corrupt_input_tiles:
                self._output_lost(bad_id, changes)
        else:
            change = on_attempt_failed(
                tile.state,
                attempts=tile.attempts,
                max_attempts=self.max_attempts,
                error=result.error or "unknown error",
            )
            move(tile, change, changes, where=result.node, **values)
            if change.after == TileState.PENDING:
                layer.ready.add([tile.key])

    def _output_lost(self, tile_id: int, changes: Changes) -> None:
        """A done render tile's file proved corrupt: render it again (or fail it)."""
        tile = self._tiles.get(tile_id)
        if tile is None or tile.state != TileState.DONE:
            return
        change = on_output_lost(tile.state, attempts=tile.attempts, max_attempts=self.max_attempts)
        tile.output_hash = None
        move(tile, change, changes, output_hash=None)
        if change.after == TileState.PENDING:
            tile.frame.layer.ready.add([tile.key])

    def _usage_row(self, flight: InFlight, result: TileResult, now: datetime) -> dict[str, Any]:
        layer = flight.tile.frame.layer
        job = layer.job
        price, cpus, currency = self._terms.prices.get(flight.pool, (0.0, 1, "USD"))
        return {
            "tile_id": flight.tile.id,
            "job_id": job.id,
            "studio_id": job.studio_id,
            "show_id": job.show_id,
            "shot_id": job.spec.shot_id,
            "layer_id": layer.id,
            "department": layer.spec.effective_department,
            "pool": flight.pool,
            "node": result.node,
            "attempt": result.attempt,
            "succeeded": result.ok,
            "wall_seconds": result.wall_seconds,
            "cpu_seconds": result.cpu_seconds,
            "node_hours": node_hours(result.wall_seconds, slots=flight.slots, cpus_per_node=cpus),
            "cost": attempt_cost(
                result.wall_seconds,
                slots=flight.slots,
                cpus_per_node=cpus,
                price_per_node_hour=price,
            ),
            "currency": currency,
            "finished_at": now,
        }

    def _contact_sheets(self, job: JobBook) -> None:
        """A contact sheet of each assemble layer's previews, beside its frames."""
        from farm.exr.preview import contact_sheet

        with self.db.session() as session:
            rows = session.execute(
                select(m.Frame.layer_id, m.Frame.number, m.Frame.preview_path)
                .join(m.Layer, m.Layer.id == m.Frame.layer_id)
                .where(
                    m.Frame.job_id == job.id,
                    m.Layer.kind == LayerKind.ASSEMBLE,
                    m.Frame.preview_path.is_not(None),
                )
                .order_by(m.Frame.layer_id, m.Frame.number)
            ).all()
        sheets: dict[int, list[tuple[int, str]]] = defaultdict(list)
        for layer_id, number, path in rows:
            if path:
                sheets[layer_id].append((number, path))
        for previews in sheets.values():
            folder = Path(previews[0][1]).parent
            try:
                contact_sheet(
                    [path for _, path in previews],
                    folder / "contact_sheet.png",
                    columns=min(4, len(previews)),
                    labels=[f"frame {number}" for number, _ in previews],
                )
            except Exception:
                log.exception("contact sheet for job %s failed", job.id)


def _lost(flight: InFlight, exc: BaseException) -> TileResult:
    """A failed attempt for a task whose result never came back (worker or node lost)."""
    first_line = (str(exc).splitlines() or [""])[0][:300]
    return TileResult(
        tile_id=flight.tile.id,
        attempt=flight.attempt,
        ok=False,
        node="?",
        wall_seconds=time.monotonic() - flight.started,
        cpu_seconds=0.0,
        error=f"{type(exc).__name__}: {first_line}".rstrip(": "),
    )
