"""What a finished attempt does to the book: its tile's state, its frame, its usage record.

Every state change goes through a named rule of :mod:`farm.states`; a preempted attempt comes
back pending without counting, a stale result (the tile moved on meanwhile) changes nothing.
These functions only change the book and a :class:`Changes`; the dispatcher writes it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from farm.cost.pricing import attempt_cost, node_hours
from farm.states import (
    TileState,
    frame_inputs_lost,
    on_attempt_failed,
    on_inputs_lost,
    on_node_lost,
    on_out_of_memory,
    on_output_lost,
    on_preempted,
    on_succeeded,
)
from farm.vocab import LayerKind
from scheduler.dispatch.book import Changes, TileBook, change_frame, move
from scheduler.executors.base import TileResult

Prices = Mapping[str, tuple[float, int, str]]
"""Pool -> (price per node-hour, cores per node, currency)."""
NODE_LOSSES_FORGIVEN = 3
"""Attempts of one tile lost with their node that are forgiven; later ones count. A tile whose
every attempt takes its node or session down (Ray says ``ActorUnavailableError``, as for a dying
node) would otherwise run again for ever."""
NODE_FAILURES_TO_AVOID = 3
"""Failed attempts of one layer on one node after which that node is kept off the layer."""
_NODE_ID = re.compile(r"\b[0-9a-f]{56}\b")


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
    cancelled: bool = False
    """Its job was cancelled: the tile is already CANCELLED; only its usage is left to record."""
    memory_gb: float = 0.0
    """Memory granted to this attempt, GiB (what an out-of-memory retry doubles)."""
    node_memory_gb: float = 0.0
    """Memory of one node of its pool, GiB: the most a retry can ask for."""
    share: float = 1.0
    """Its part of the slots it holds: 1/k for a tile in a batch of k (usage counts that)."""


def lost(flight: InFlight, exc: BaseException) -> TileResult:
    """A failed attempt for a task whose result never came back (worker or node lost).

    A dead node (Ray's ``NodeDiedError``) is not the tile's fault: the result says so, with
    the node's id when Ray's message names it.
    """
    text = str(exc)
    first_line = (text.splitlines() or [""])[0][:300]
    node_lost = _is_node_died(exc)
    found = _NODE_ID.search(text) if node_lost else None
    out_of_memory = type(exc).__name__ == "OutOfMemoryError"  # Ray's memory monitor killed it
    return TileResult(
        tile_id=flight.tile.id,
        attempt=flight.attempt,
        ok=False,
        node="?",
        node_id=found.group(0) if found else "",
        node_lost=node_lost,
        out_of_memory=out_of_memory,
        wall_seconds=time.monotonic() - flight.started,
        cpu_seconds=0.0,
        error=f"{type(exc).__name__}: {first_line}".rstrip(": "),
    )


def _is_node_died(exc: BaseException) -> bool:
    """Ray's ``NodeDiedError`` for a task; for a render session's call, an ``ActorDiedError``
    whose cause is its node's death (Ray says so only in the message), or an
    ``ActorUnavailableError``: the session's node stopped answering (a tile that crashes its
    own process ends in ``ActorDiedError`` instead), which is what a dying node looks like
    before Ray has declared it dead."""
    try:
        from ray.exceptions import ActorDiedError, ActorUnavailableError, NodeDiedError
    except ImportError:  # pragma: no cover - ray is a server dependency
        return False
    if isinstance(exc, NodeDiedError | ActorUnavailableError):
        return True
    return isinstance(exc, ActorDiedError) and (
        bool(getattr(exc, "preempted", False)) or "node has died" in str(exc).lower()
    )


def apply_result(
    flight: InFlight,
    result: TileResult,
    changes: Changes,
    *,
    tiles: Mapping[int, TileBook],
    max_attempts: int,
    prices: Prices,
    now: datetime,
) -> dict[str, Any] | None:
    """Record one attempt's outcome; returns its usage row (None when nothing was used up)."""
    tile = flight.tile
    if flight.cancelled:
        # Its job was cancelled while it ran: the attempt used its slot, so it is recorded and
        # billed, and nothing moves (the tile is CANCELLED, or already retried). Its output is
        # discarded, so even a clean finish is not the tile's success.
        row = usage_row(flight, result, prices, now)
        row["succeeded"] = False
        return row
    if tile.state != TileState.RUNNING or tile.attempts != result.attempt:
        return None  # stale: the tile was requeued meanwhile (its attempt was never counted)
    if flight.preempted and not result.ok:
        tile.preemptions += 1
        change = on_preempted(tile.state, why=flight.preempted)
        move(tile, change, changes, preemptions=tile.preemptions)
        tile.frame.layer.ready.add([tile.key])
        return None
    values: dict[str, Any] = {
        "node": result.node,
        "finished_at": now,
        "wall_seconds": result.wall_seconds,
        "cpu_seconds": result.cpu_seconds,
    }
    if result.node_id:
        values["node_id"] = result.node_id
    if result.outputs.get("log_hash"):
        values["log_hash"] = result.outputs["log_hash"]
    layer = tile.frame.layer
    if result.ok:
        _succeeded(tile, result, changes, values)
    elif result.node_lost and tile.node_losses < NODE_LOSSES_FORGIVEN:
        tile.node_losses += 1
        change = on_node_lost(tile.state, node=result.node_id[:12])  # forgiven: not its fault
        move(tile, change, changes, where=result.node_id[:12], **values)
        layer.ready.add([tile.key])
        return usage_row(flight, result, prices, now, billed=False)
    elif result.corrupt_input_tiles:
        # The tile did nothing wrong: its input is gone or damaged. The tiles that wrote it run
        # again (unless they already did since this attempt started) and this one waits.
        change = on_inputs_lost(tile.state, tiles=len(result.corrupt_input_tiles))
        move(tile, change, changes, where=result.node, **values)
        if tile.frame.state not in (TileState.WAITING, TileState.RUNNING):
            change_frame(tile.frame, frame_inputs_lost(tile.frame.state), changes)
        for bad_id in result.corrupt_input_tiles:
            bad = tiles.get(bad_id)
            if bad is not None and bad.done_at < flight.started:
                _output_lost(bad, changes, max_attempts=max_attempts)
        changes.offers.append(tile.frame)
    elif result.out_of_memory:
        had = flight.memory_gb
        more = min(2 * had, flight.node_memory_gb) if had < flight.node_memory_gb else None
        change = on_out_of_memory(
            tile.state,
            attempts=tile.counted,
            max_attempts=max_attempts,
            had_gb=round(had, 2),
            next_gb=None if more is None else round(more, 2),
        )
        tile.memory_gb = more or had  # failed for good: a user's retry starts from the most
        move(tile, change, changes, where=result.node, memory_gb=tile.memory_gb, **values)
        if change.after == TileState.PENDING:
            layer.ready.add([tile.key])
    else:
        _failed_on(tile, result.node_id, changes)
        error = result.error or "unknown error"
        if result.node_lost:
            error = f"{error} (lost with its node {tile.node_losses + 1} times: counted now)"
            tile.node_losses += 1
        change = on_attempt_failed(
            tile.state, attempts=tile.counted, max_attempts=max_attempts, error=error
        )
        move(tile, change, changes, where=result.node, **values)
        if change.after == TileState.PENDING:
            layer.ready.add([tile.key])
    return usage_row(flight, result, prices, now)


def _failed_on(tile: TileBook, node_id: str, changes: Changes) -> None:
    """Remember the node a tile failed on: its retry, and after several failures the whole
    layer, go to other nodes of the pool (the dispatcher drops the rule when no other is up)."""
    if not node_id:
        return
    if node_id not in tile.avoid:
        tile.avoid = (*tile.avoid, node_id)
        changes.tile(tile, avoid_nodes=list(tile.avoid))
    tile.frame.layer.node_failures[node_id] += 1


def _succeeded(
    tile: TileBook, result: TileResult, changes: Changes, values: dict[str, Any]
) -> None:
    """A good attempt: its output, what it measured, and what it tells its frame."""
    layer = tile.frame.layer
    frame = tile.frame
    tile.output_hash = result.output_hash
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
            preview_hash=result.outputs.get("preview_hash"),
            output_hash=result.output_hash,
        )
    change = on_succeeded(tile.state)
    tile.done_at = time.monotonic()
    move(tile, change, changes, where=result.node, output_hash=result.output_hash, **values)


def _output_lost(tile: TileBook | None, changes: Changes, *, max_attempts: int) -> None:
    """A done render tile's file proved corrupt: render it again (or fail it)."""
    if tile is None or tile.state != TileState.DONE:
        return
    change = on_output_lost(tile.state, attempts=tile.counted, max_attempts=max_attempts)
    changes.voided.append((tile.id, tile.attempts))  # its usage record: failed after all
    tile.output_hash = None
    move(tile, change, changes, output_hash=None)
    if change.after == TileState.PENDING:
        tile.frame.layer.ready.add([tile.key])


def usage_row(
    flight: InFlight, result: TileResult, prices: Prices, now: datetime, *, billed: bool = True
) -> dict[str, Any]:
    """The usage record of one attempt: what cost reports and budgets add up.

    An attempt lost with its node is recorded (attempts and records match one to one) but not
    billed: the studio did not cause it.
    """
    layer = flight.tile.frame.layer
    job = layer.job
    price, cpus, currency = prices.get(flight.pool, (0.0, 1, "USD"))
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
        "node_id": result.node_id or None,
        "attempt": result.attempt,
        "succeeded": result.ok,
        "wall_seconds": result.wall_seconds,
        "cpu_seconds": result.cpu_seconds,
        "node_hours": node_hours(result.wall_seconds, slots=flight.slots, cpus_per_node=cpus),
        "cost": attempt_cost(
            result.wall_seconds, slots=flight.slots, cpus_per_node=cpus, price_per_node_hour=price
        )
        if billed
        else 0.0,
        "currency": currency,
        "finished_at": now,
    }
