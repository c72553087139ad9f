"""The dispatcher: the farm's only Ray driver, a loop of activate -> plan -> submit -> collect.

Each tick it (1) plans tiles for frames whose upstream frames are done, (2) asks the pure planner
which pending tiles fit the pools' free slots, (3) commits them RUNNING and submits them as Ray
tasks asking for ``pool:<name>``, and (4) collects finished attempts with ``ray.wait`` and commits
their results, usage records and events in **one transaction per batch**.

The database is the source of truth: a tile is committed RUNNING before its Ray task exists, and
on start-up every RUNNING tile is requeued (its dispatcher is gone). Ray's own retries are off
(``max_retries=0``): the farm counts attempts itself so retries show in reports and costs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from farm import schemas
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
    on_requeued,
    on_succeeded,
)
from farm.storage import BlobStore
from farm.vocab import Accelerator, LayerKind
from scheduler.dispatch import frames as fr
from scheduler.dispatch.tasks import build_task
from scheduler.executors.base import TileResult, TileTask, run_tile
from scheduler.plan import PoolState, Snapshot, Work, plan
from scheduler.runtime import pool_capacity, pool_resource

log = logging.getLogger("scheduler.dispatch")


@dataclass
class InFlight:
    tile_id: int
    job_id: int
    attempt: int
    pool: str
    started: float


class Dispatcher:
    """Drives every active job to completion on the Ray cluster this process is connected to.

    Args:
        db: the farm database.
        store: the blob store; Ray tasks receive it and read and write blobs directly.
        output_root: where assembled frames and previews are written.
        max_attempts: attempts per tile before it fails for good.
        queue_depth: tiles kept queued in Ray per free slot, so a worker starts its next tile
            without waiting for a dispatcher tick.
    """

    def __init__(
        self,
        db: Database,
        store: BlobStore,
        output_root: Path,
        *,
        max_attempts: int = 3,
        poll_s: float = 0.1,
        queue_depth: float = 1.5,
    ) -> None:
        import ray

        self.db = db
        self.store = store
        self.output_root = Path(output_root)
        self.max_attempts = max_attempts
        self.poll_s = poll_s
        self.queue_depth = queue_depth
        self._remote = ray.remote(run_tile)
        self._in_flight: dict[Any, InFlight] = {}
        self._specs: dict[int, schemas.JobSpec] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._capacity: dict[str, float] = {}
        self._capacity_at = 0.0
        self._swept_at = time.monotonic()
        self.recover()

    # ------------------------------------------------------------------ lifecycle
    def recover(self) -> int:
        """Requeue tiles left RUNNING by a dispatcher that is gone; returns how many."""
        count = self._sweep_orphans()
        if count:
            log.info("requeued %d tiles left running by a previous dispatcher", count)
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
                log.exception("dispatcher tick failed; retrying")
                self._stop.wait(1.0)

    def run_until_done(self, job_ids: Iterable[int], timeout_s: float = 600.0) -> None:
        """Tick in this thread until every job in ``job_ids`` is finished (tests, benchmarks)."""
        wanted = set(job_ids)
        deadline = time.monotonic() + timeout_s
        while True:
            self.tick()
            with self.db.session() as session:
                states = session.scalars(select(m.Job.state).where(m.Job.id.in_(wanted))).all()
            if all(TileState(s) in TERMINAL for s in states) and not self._in_flight:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs {sorted(wanted)} did not finish in {timeout_s} s")

    # ------------------------------------------------------------------ one tick
    def tick(self) -> bool:
        """One round of activate, dispatch and collect. Returns whether anything happened."""
        now = time.monotonic()
        if now - self._swept_at > 10.0:
            self._swept_at = now
            self._sweep_orphans()
        activated = self._activate()
        dispatched = self._dispatch()
        collected = self._collect(timeout_s=self.poll_s if self._in_flight else 0.0)
        return bool(activated or dispatched or collected)

    def _spec(self, job: m.Job) -> schemas.JobSpec:
        spec = self._specs.get(job.id)
        if spec is None:
            spec = self._specs[job.id] = schemas.JobSpec.model_validate(job.spec)
        return spec

    def _activate(self) -> int:
        changed = 0
        now = datetime.now(UTC)
        with self.db.session() as session:
            for job in fr.active_jobs(session):
                events = fr.activate_frames(session, job, self._spec(job))
                if events:
                    session.flush()
                    session.expire(job)
                    changed += len(events)
                    before = job.state
                    fr.roll_up_job(job, now)
                    session.add(
                        m.Event(
                            studio_id=job.studio_id,
                            job_id=job.id,
                            kind="frames",
                            payload={"frames": events},
                        )
                    )
                    if job.state != before:
                        session.add(self._job_event(job))
        return changed

    def _free_slots(self) -> dict[str, int]:
        now = time.monotonic()
        if now - self._capacity_at > 2.0:
            self._capacity = pool_capacity()
            self._capacity_at = now
        in_flight = Counter(f.pool for f in self._in_flight.values())
        return {
            pool: int(slots * self.queue_depth + 0.5) - in_flight[pool]
            for pool, slots in self._capacity.items()
        }

    def _dispatch(self) -> int:
        free = self._free_slots()
        if not any(n > 0 for n in free.values()):
            return 0
        submissions: list[tuple[TileTask, str, InFlight]] = []
        with self.db.session() as session:
            self._note_unplaceable(session)
            rows = self._pending_rows(session, free)
            if not rows:
                return 0
            tiles = {row[0].id: row for row in rows}
            grouped: dict[tuple[int, int], list[Any]] = defaultdict(list)
            for row in rows:
                grouped[(row[0].job_id, row[0].layer_id)].append(row)
            pending = [
                Work(
                    studio_id=group[0][1],
                    job_id=job_id,
                    layer_id=layer_id,
                    tiles=[(number, position, t.rank, t.id) for t, _, position, _, number in group],
                    pools=(group[0][3],),
                )
                for (job_id, layer_id), group in sorted(grouped.items())
            ]
            snapshot = Snapshot(
                pending=pending,
                pools={p: PoolState(p, max(0, n), max(0, n)) for p, n in free.items()},
            )
            for decision in plan(snapshot).decisions:
                tile = tiles[decision.tile_id][0]
                change = on_dispatched(TileState(tile.state), pool=decision.pool)
                tile.state, tile.reason = change.after.value, change.reason
                tile.attempts += 1
                tile.pool = decision.pool
                tile.started_at = datetime.now(UTC)
                spec = self._spec(session.get_one(m.Job, tile.job_id))
                task = build_task(session, tile, spec, output_root=self.output_root)
                submissions.append(
                    (
                        task,
                        decision.pool,
                        InFlight(
                            tile.id, tile.job_id, tile.attempts, decision.pool, time.monotonic()
                        ),
                    )
                )
        # Committed RUNNING first: a crash now leaves RUNNING tiles that recover() requeues.
        accelerators = self._accelerators()
        for task, pool, flight in submissions:
            options: dict[str, Any] = {
                "num_cpus": 1,
                "resources": {pool_resource(pool): 1},
                "max_retries": 0,
                "name": f"job{task.job_id}/{task.layer}/f{task.frame}/t{task.index}",
            }
            accelerator = accelerators.get(pool)
            if accelerator is not None:
                options["accelerator_type"] = accelerator
            try:
                ref = self._remote.options(**options).remote(task, self.store)
            except Exception as exc:
                self._apply([(flight, _lost(flight, exc))])
                continue
            self._in_flight[ref] = flight
        return len(submissions)

    def _pending_rows(self, session: Session, free: dict[str, int]) -> list[Any]:
        """The oldest pending tiles of each studio on each pool that has free slots.

        Bounded per (pool, studio) by the pool's free slots, so one studio's huge job never
        hides another studio's tiles from the planner, and a pool without capacity costs nothing.
        """
        base = (
            select(m.Tile, m.Job.studio_id, m.Layer.position, m.Layer.pool, m.Frame.number)
            .join(m.Job, m.Job.id == m.Tile.job_id)
            .join(m.Layer, m.Layer.id == m.Tile.layer_id)
            .join(m.Frame, m.Frame.id == m.Tile.frame_id)
            .where(m.Tile.state == TileState.PENDING)
            .order_by(m.Tile.job_id, m.Frame.number, m.Layer.position, m.Tile.rank, m.Tile.id)
        )
        rows: list[Any] = []
        for pool, slots in sorted(free.items()):
            if slots <= 0:
                continue
            studios = session.scalars(
                select(m.Job.studio_id)
                .join(m.Tile, m.Tile.job_id == m.Job.id)
                .join(m.Layer, m.Layer.id == m.Tile.layer_id)
                .where(m.Tile.state == TileState.PENDING, m.Layer.pool == pool)
                .distinct()
            ).all()
            for studio_id in studios:
                query = base.where(m.Layer.pool == pool, m.Job.studio_id == studio_id)
                rows.extend(session.execute(query.limit(slots)).all())
        return rows

    def _accelerators(self) -> dict[str, str]:
        with self.db.session() as session:
            return {
                p.name: p.accelerator
                for p in session.scalars(select(m.Pool))
                if p.accelerator != Accelerator.NONE
            }

    def _note_unplaceable(self, session: Session) -> None:
        """Ray queues a task for a missing resource forever: say so on the job instead.

        The note is cleared as soon as a node offers the pool.
        """
        waiting = session.execute(
            select(m.Layer.pool, m.Tile.job_id, func.count(m.Tile.id))
            .join(m.Layer, m.Layer.id == m.Tile.layer_id)
            .where(m.Tile.state == TileState.PENDING)
            .group_by(m.Layer.pool, m.Tile.job_id)
        ).all()
        stuck: dict[int, list[str]] = defaultdict(list)
        for pool, job_id, count in waiting:
            if self._capacity.get(pool, 0) <= 0:
                resource = pool_resource(pool)
                stuck[job_id].append(
                    f"{count} tile(s) wait for pool '{pool}': no Ray node offers resource "
                    f"'{resource}' (start one with ray start --resources "
                    f"'{{\"{resource}\": 4}}')"
                )
        for job in session.scalars(select(m.Job).where(m.Job.state.in_(fr.ACTIVE))):
            message = "; ".join(stuck.get(job.id, []))
            if job.message != message and (message or job.message.endswith("4}')")):
                job.message = message

    # ------------------------------------------------------------------ task building
    # ------------------------------------------------------------------ collecting results
    def _collect(self, *, timeout_s: float) -> int:
        if not self._in_flight:
            return 0
        import ray

        refs = list(self._in_flight)
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
        if not ready:
            return 0
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
            del self._in_flight[ref]
        return len(results)

    def _sweep_orphans(self) -> int:
        """Requeue RUNNING tiles this dispatcher has no task for (a submission or commit that
        failed half-way). This process is the farm's only driver, so such a tile runs nowhere.
        """
        mine = {flight.tile_id for flight in self._in_flight.values()}
        count = 0
        with self.db.session() as session:
            for tile in session.scalars(select(m.Tile).where(m.Tile.state == TileState.RUNNING)):
                if tile.id in mine:
                    continue
                change = on_requeued(TileState(tile.state))
                tile.state, tile.reason = change.after.value, change.reason
                tile.attempts = max(0, tile.attempts - 1)
                count += 1
        return count

    def _apply(self, results: list[tuple[InFlight, TileResult]]) -> None:
        """Commit a batch of attempt results, their usage records and events in one transaction."""
        now = datetime.now(UTC)
        finished: list[int] = []
        touched_jobs: set[int] = set()
        changes: dict[int, list[list[Any]]] = defaultdict(list)
        with self.db.session() as session:
            pools = {p.name: p for p in session.scalars(select(m.Pool))}
            for flight, result in results:
                tile = session.get(m.Tile, result.tile_id)
                if (
                    tile is None
                    or tile.state != TileState.RUNNING
                    or tile.attempts != result.attempt
                ):
                    continue  # stale: the tile was requeued or cancelled meanwhile
                layer = session.get_one(m.Layer, tile.layer_id)
                job = session.get_one(m.Job, tile.job_id)
                pool = pools[flight.pool]
                tile.node = result.node
                tile.finished_at = now
                tile.wall_seconds = result.wall_seconds
                tile.cpu_seconds = result.cpu_seconds
                session.add(self._usage(tile, layer, job, pool, result, now))
                if result.ok:
                    change = on_succeeded(TileState.RUNNING)
                    tile.output_hash = result.output_hash
                    if LayerKind(layer.kind) is LayerKind.PARTICLE_RENDER:
                        layer.tile_times = [
                            *layer.tile_times[-255:],
                            [*tile.rect.as_tuple(), result.wall_seconds],
                        ]
                    if result.cost_preview is not None or result.outputs:
                        frame = session.get_one(m.Frame, tile.frame_id)
                    if result.cost_preview is not None:
                        frame.cost_preview = result.cost_preview
                    if result.outputs:
                        frame.output_path = result.outputs.get("exr")
                        frame.preview_path = result.outputs.get("preview")
                        frame.output_hash = result.output_hash
                elif result.corrupt_input_tiles:
                    change = on_inputs_lost(
                        TileState.RUNNING, tiles=len(result.corrupt_input_tiles)
                    )
                    tile.attempts -= 1  # the assemble itself did nothing wrong
                    session.get_one(m.Frame, tile.frame_id).state = TileState.WAITING.value
                    for bad_id in result.corrupt_input_tiles:
                        self._output_lost(session, bad_id, changes)
                else:
                    change = on_attempt_failed(
                        TileState.RUNNING,
                        attempts=tile.attempts,
                        max_attempts=self.max_attempts,
                        error=result.error or "unknown error",
                    )
                tile.state, tile.reason = change.after.value, change.reason
                changes[job.id].append([tile.id, tile.state, result.node])
                touched_jobs.add(job.id)
            session.flush()
            for job_id in touched_jobs:
                job = session.get_one(m.Job, job_id)
                session.refresh(job)
                before = job.state
                fr.roll_up_job(job, now)
                # Cascade now: downstream frames of a failed frame are cancelled, and frames
                # whose inputs just finished get their tiles planned without waiting a tick.
                if fr.activate_frames(session, job, self._spec(job)):
                    session.flush()
                    fr.roll_up_job(job, now)
                session.add(
                    m.Event(
                        studio_id=job.studio_id,
                        job_id=job.id,
                        kind="tiles",
                        payload={"tiles": changes[job_id]},
                    )
                )
                if job.state != before:
                    session.add(self._job_event(job))
                    if TileState(job.state) in TERMINAL:
                        finished.append(job.id)
        for job_id in finished:
            self._contact_sheets(job_id)

    def _contact_sheets(self, job_id: int) -> None:
        """A contact sheet of each assemble layer's previews, beside its frames."""
        from farm.exr.preview import contact_sheet

        with self.db.session() as session:
            layers = session.scalars(
                select(m.Layer).where(m.Layer.job_id == job_id, m.Layer.kind == LayerKind.ASSEMBLE)
            ).all()
            sheets = [
                [(f.number, f.preview_path) for f in layer.frames if f.preview_path]
                for layer in layers
            ]
        for previews in sheets:
            if not previews:
                continue
            folder = Path(previews[0][1]).parent
            try:
                contact_sheet(
                    [path for _, path in previews],
                    folder / "contact_sheet.png",
                    columns=min(4, len(previews)),
                    labels=[f"frame {number}" for number, _ in previews],
                )
            except Exception:
                log.exception("contact sheet for job %s failed", job_id)

    def _output_lost(
        self, session: Session, tile_id: int, changes: dict[int, list[list[Any]]]
    ) -> None:
        tile = session.get(m.Tile, tile_id)
        if tile is None or tile.state != TileState.DONE:
            return
        change = on_output_lost(
            TileState.DONE, attempts=tile.attempts, max_attempts=self.max_attempts
        )
        tile.state, tile.reason = change.after.value, change.reason
        tile.output_hash = None
        frame = session.get_one(m.Frame, tile.frame_id)
        frame.state = TileState.RUNNING.value
        changes[tile.job_id].append([tile.id, tile.state, None])

    def _usage(
        self,
        tile: m.Tile,
        layer: m.Layer,
        job: m.Job,
        pool: m.Pool,
        result: TileResult,
        now: datetime,
    ) -> m.UsageRecord:
        spec = self._spec(job).layer(layer.name)
        return m.UsageRecord(
            tile_id=tile.id,
            job_id=job.id,
            studio_id=job.studio_id,
            show_id=job.show_id,
            shot_id=job.shot_id,
            layer_id=layer.id,
            department=spec.effective_department,
            pool=pool.name,
            node=result.node,
            attempt=result.attempt,
            succeeded=result.ok,
            wall_seconds=result.wall_seconds,
            cpu_seconds=result.cpu_seconds,
            node_hours=node_hours(result.wall_seconds, slots=1, cpus_per_node=pool.cpus_per_node),
            cost=attempt_cost(
                result.wall_seconds,
                slots=1,
                cpus_per_node=pool.cpus_per_node,
                price_per_node_hour=pool.price_per_node_hour,
            ),
            currency=pool.currency,
            finished_at=now,
        )

    @staticmethod
    def _job_event(job: m.Job) -> m.Event:
        return m.Event(
            studio_id=job.studio_id, job_id=job.id, kind="job_state", payload={"state": job.state}
        )


def _lost(flight: InFlight, exc: BaseException) -> TileResult:
    """A failed attempt for a task whose result never came back (worker or node lost)."""
    first_line = (str(exc).splitlines() or [""])[0][:300]
    return TileResult(
        tile_id=flight.tile_id,
        attempt=flight.attempt,
        ok=False,
        node="?",
        wall_seconds=time.monotonic() - flight.started,
        cpu_seconds=0.0,
        error=f"{type(exc).__name__}: {first_line}".rstrip(": "),
    )
