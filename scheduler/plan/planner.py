"""``plan(snapshot, policy) -> Plan``: who gets the free slots of each pool, and why others wait.

The order, for each free slot of a pool:

1. **Guarantees first.** A studio running less than its guarantee there goes ahead, the one
   furthest below it (running / guarantee) first.
2. **Then the studio furthest below its weighted share**, measured over time: how far its
   received slot-seconds (decayed ``usage``) are from what fair share promised it (decayed
   ``owed``, the integral of its entitlement from ``share.entitlements``), as a fraction of
   the promise, projected one tile ahead at what it runs now. Usage is what makes the share
   fair *across* ticks: a studio that had the pool all morning waits while the others catch
   up (Slurm's decayed usage), a fractional share (2.25 of 3 slots) is served by turns (3, 2,
   2, 2...) instead of locking on 2, and within one tick each slot handed out raises the
   receiver's projection, so the slots spread.
3. **Inside the studio**: rush jobs, then priority, then the oldest job, then the job's own
   dispatch order (frame, layer, rank). Priority never takes another studio's share.

A studio at its ceiling gets nothing more there; idle capacity goes to whoever has work (lending),
and when a studio comes back it is below its guarantee and share, so it is fed first as slots
free up (reclaim). Only a rush job may stop running work to reclaim, of studios above their
entitlement, youngest tiles first, at most ``policy.max_preemptions`` per tick; the victims
stay at or above their entitlement, so a preemption can never be answered by another (no
cycles). Accelerated work may likewise stop CPU tiles that backfill its pool.

Work is grouped per (job, layer), so a tick costs what it hands out plus one step per group,
never the number of ready tiles. Ties break on studio, job and tile ids: the same snapshot
always gives the same plan.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

from scheduler.plan.model import (
    Decision,
    Plan,
    Policy,
    PoolState,
    Preemption,
    Quota,
    Snapshot,
    StudioPool,
    Work,
)
from scheduler.plan.share import entitlements

_NO_QUOTA = Quota()

KeyTerms = tuple[int, float, float, float, bool]
"""What a studio's place in line needs besides its running count, fixed for one tick:
(guarantee, share, offset, step per running slot, rush work waiting); see :func:`_key`."""


class _Tick:
    """The mutable state of one planning pass over a snapshot."""

    def __init__(self, snapshot: Snapshot, policy: Policy) -> None:
        self.snapshot = snapshot
        self.policy = policy
        self.running: dict[StudioPool, int] = defaultdict(int, snapshot.running)
        self.free = {name: max(0, pool.free) for name, pool in snapshot.pools.items()}
        self.taken = [0] * len(snapshot.pending)
        self.blocked: dict[int, str] = {}
        """Work index -> why it cannot be placed this tick (licence, size, ceiling)."""
        self.licence_use: dict[str, dict[int, int]] = {
            name: dict(licence.in_use) for name, licence in snapshot.licences.items()
        }
        self.licence_wanted: dict[str, set[int]] = defaultdict(set)
        for work in snapshot.pending:
            for name in work.licences:
                self.licence_wanted[name].add(work.studio_id)
        self.entitled = self._entitlements()
        self.rushing = {
            (work.studio_id, work.pools[0]) for work in snapshot.pending if work.rush and work.pools
        }
        self.plan = Plan(entitled=self.entitled)
        self.tile_s = _tile_times(snapshot.pending, policy.default_tile_s)
        self._terms: dict[StudioPool, KeyTerms] = {}

    # ------------------------------------------------------------------ shares
    def _entitlements(self) -> dict[StudioPool, float]:
        """Fair shares per pool from demand: running slots plus ready work that prefers it.

        Ready work that needs a licence counts only as far as the studio's fair share of the
        licence's free seats goes: slots a studio cannot use for want of seats are not its
        share (they go to the studios that can use them), so shares stay deliverable.
        """
        demand: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        for (studio, pool_name), slots in self.snapshot.running.items():
            if slots > 0:
                demand[pool_name][studio] += slots
        seats = self._licence_room()
        for work in self.snapshot.pending:
            if not (work.pools and work.tiles):
                continue
            tiles = len(work.tiles)
            for name in work.licences:
                tiles = min(tiles, seats.get((work.studio_id, name), 0))
            for name in work.licences:
                seats[(work.studio_id, name)] = seats.get((work.studio_id, name), 0) - tiles
            if tiles > 0:
                demand[work.pools[0]][work.studio_id] += tiles * work.slots
        entitled: dict[StudioPool, float] = {}
        for pool_name, wanted in demand.items():
            pool = self.snapshot.pools.get(pool_name)
            capacity = pool.capacity if pool is not None else 0
            quotas = {s: self.quota(s, pool_name) for s in wanted}
            for studio, share in entitlements(capacity, wanted, quotas).items():
                entitled[(studio, pool_name)] = share
        return entitled

    def _licence_room(self) -> dict[tuple[int, str], int]:
        """Free seats of each licence each studio may fairly take now: the licence's seats
        shared by demand (running plus ready tiles), with its guarantees as floors."""
        wanted: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        for work in self.snapshot.pending:
            for name in work.licences:
                wanted[name][work.studio_id] += len(work.tiles)
        room: dict[tuple[int, str], int] = {}
        for name, by_studio in wanted.items():
            licence = self.snapshot.licences.get(name)
            if licence is None:
                continue
            for studio, held in licence.in_use.items():
                if held > 0:
                    by_studio[studio] += held
            floors = {s: Quota(guarantee=g) for s, g in licence.guarantees.items()}
            for studio, share in entitlements(licence.total, by_studio, floors).items():
                held = licence.in_use.get(studio, 0)
                room[(studio, name)] = max(0, math.ceil(share - held - 1e-9))
        return room

    def quota(self, studio: int, pool: str) -> Quota:
        return self.snapshot.quotas.get((studio, pool), _NO_QUOTA)

    def key_terms(self, studio: int, pool: str) -> KeyTerms:
        """What :meth:`studio_key` needs besides the running count, fixed for a tick."""
        terms = self._terms.get((studio, pool))
        if terms is None:
            terms = self._terms[(studio, pool)] = self._key_terms(studio, pool)
        return terms

    def _key_terms(self, studio: int, pool: str) -> KeyTerms:
        share = self.entitled.get((studio, pool), 0.0)
        guarantee = self.quota(studio, pool).guarantee
        rushing = (studio, pool) in self.rushing
        if share <= 0:
            return (guarantee, share, math.inf, 0.0, rushing)
        usage = self.snapshot.usage.get((studio, pool), 0.0)
        owed = self.snapshot.owed.get((studio, pool), 0.0)
        tile_s = self.tile_s.get((studio, pool), self.policy.default_tile_s)
        promised = owed + share * tile_s  # by one tile from now
        return (guarantee, share, (usage - promised) / promised, tile_s / promised, rushing)

    def studio_key(self, studio: int, pool: str) -> tuple[int, float, int]:
        """Smaller goes first: (tier, how far ahead of its share, studio id).

        Tier 0 is a studio below its guarantee, or below its share with rush work waiting
        (so the slots a rush preemption frees go to the rush job, not back to the victim).
        Tier 1 is the studio's relative error one tile from now,
        ``(usage + running * t - (owed + e * t)) / (owed + e * t)``, with ``e`` its
        entitlement and ``t`` its tile time (:func:`_tile_times`): -1 for a studio that got
        nothing of what it was promised, 0 for one served exactly its share, above 0 for one
        ahead. Its past (``usage - owed``) weighs in proportion to the promise, so a newcomer's
        place follows what it runs now, and a studio that has shared the pool for hours is
        kept to its share by its record, which a single tile barely moves; that is what
        serves a share of 2.25 slots as 2 and 3 by turns. A tile handed out adds ``t`` of
        usage to the projection, so the slots of one tick spread over the studios.
        """
        return _key(self.running[(studio, pool)], self.key_terms(studio, pool), studio)

    # ------------------------------------------------------------------ licences
    def licence_refusal(self, work: Work) -> str | None:
        """Why one more tile of ``work`` would exceed a licence, or None if the seats are there.

        Seats guaranteed to other studios that want the licence now are kept free for them.
        """
        for name in work.licences:
            licence = self.snapshot.licences.get(name)
            if licence is None:
                return f"licence {name} is not declared on this farm"
            use = self.licence_use[name]
            in_use = sum(use.values())
            reserved = sum(
                max(0, guarantee - use.get(studio, 0))
                for studio, guarantee in licence.guarantees.items()
                if studio != work.studio_id and studio in self.licence_wanted[name]
            )
            if in_use >= licence.total:
                return f"licence {name}: {in_use} of {licence.total} in use"
            if in_use + reserved >= licence.total:
                return (
                    f"licence {name}: {in_use} of {licence.total} in use, "
                    f"{reserved} kept for other studios' guarantees"
                )
        return None

    def hold_licences(self, work: Work) -> None:
        for name in work.licences:
            use = self.licence_use[name]
            use[work.studio_id] = use.get(work.studio_id, 0) + 1

    # ------------------------------------------------------------------ filling a pool
    def fill(self, pool: PoolState, works: list[int]) -> None:
        """Hand out ``pool``'s free slots among the works (indices) that want it in this pass."""
        pending = self.snapshot.pending
        by_studio: dict[int, list[tuple[tuple[int, int, int, tuple[int, ...]], int]]] = {}
        for index in works:
            work = pending[index]
            if index in self.blocked or self.taken[index] >= len(work.tiles):
                continue
            entry = (_order(work, self.taken[index]), index)
            by_studio.setdefault(work.studio_id, []).append(entry)
        studios: list[tuple[tuple[int, float, int], int]] = []
        for studio, queue in by_studio.items():
            heapq.heapify(queue)
            studios.append((self.studio_key(studio, pool.name), studio))
        heapq.heapify(studios)
        free = self.free[pool.name]
        while free > 0 and studios:
            _, studio = heapq.heappop(studios)
            free = self._serve(studio, pool, by_studio[studio], studios, free)
        self.free[pool.name] = free

    def _serve(
        self,
        studio: int,
        pool: PoolState,
        queue: list[tuple[tuple[int, int, int, tuple[int, ...]], int]],
        studios: list[tuple[tuple[int, float, int], int]],
        free: int,
    ) -> int:
        """Give ``studio`` tiles until its turn passes to the next studio in ``studios``, its
        work runs out or the pool is full; returns the free slots left. Staying with one
        studio while it is still first saves a heap round trip per tile."""
        pending = self.snapshot.pending
        key = (studio, pool.name)
        ceiling = self.quota(studio, pool.name).ceiling
        terms = self.key_terms(studio, pool.name)
        while queue:
            index = queue[0][1]
            work = pending[index]
            running = self.running[key]
            if ceiling is not None and running + work.slots > ceiling:
                for _, blocked in queue:
                    self.blocked.setdefault(
                        blocked,
                        f"studio {self.name(studio)} is at its ceiling on pool {pool.name} "
                        f"({running} running, ceiling {ceiling})",
                    )
                return free
            refusal = self.licence_refusal(work) if work.licences else None
            if refusal is None and work.slots > free:
                refusal = f"needs {work.slots} slots; pool {pool.name} has {free} free"
            if refusal is not None:
                self.blocked[index] = refusal
                heapq.heappop(queue)
                continue
            taken = self.taken[index]
            tile = work.tiles[taken]
            self.plan.decisions.append(Decision(tile[3], pool.name, work.job_id, work.layer_id))
            self.taken[index] = taken + 1
            self.running[key] = running + work.slots
            if work.licences:
                self.hold_licences(work)
            free -= work.slots
            if taken + 1 >= len(work.tiles):
                heapq.heappop(queue)
            elif len(queue) > 1:  # alone, its place in the queue needs no key
                heapq.heapreplace(queue, (_order(work, taken + 1), index))
            if free <= 0 or not queue:
                break
            turn = (_key(running + work.slots, terms, studio), studio)
            if studios and turn > studios[0]:
                heapq.heappush(studios, turn)
                return free
        if queue:
            heapq.heappush(studios, (_key(self.running[key], terms, studio), studio))
        return free

    def name(self, studio: int) -> str:
        return self.snapshot.studio_names.get(studio, f"#{studio}")


def _key(running: int, terms: KeyTerms, studio: int) -> tuple[int, float, int]:
    """:meth:`_Tick.studio_key` from the running count and the tick's fixed terms."""
    guarantee, share, offset, step, rushing = terms
    if running < guarantee:
        return (0, running / guarantee, studio)
    if share <= 0:
        return (1, math.inf, studio)
    if rushing and running < share:
        return (0, running / share, studio)
    return (1, offset + running * step, studio)


def _tile_times(pending: Sequence[Work], default_s: float) -> dict[StudioPool, float]:
    """Each studio's mean tile time on each pool, over its ready work that prefers the pool
    (``default_s`` for work whose tiles have not been timed yet): how far ahead
    :meth:`_Tick.studio_key` looks, one tile of the studio's own work, since a slot handed out
    now is held about that long."""
    total: dict[StudioPool, float] = defaultdict(float)
    count: dict[StudioPool, int] = defaultdict(int)
    for work in pending:
        if work.pools:
            key = (work.studio_id, work.pools[0])
            total[key] += work.tile_s if work.tile_s > 0 else default_s
            count[key] += 1
    return {key: total[key] / count[key] for key in total}


def _order(work: Work, taken: int) -> tuple[int, int, int, tuple[int, ...]]:
    """A work's place in its studio's queue: rush, priority, oldest job, then its next tile."""
    return (0 if work.rush else 1, -work.priority, work.job_id, work.tiles[taken])


def plan(snapshot: Snapshot, policy: Policy | None = None) -> Plan:
    """Decide which ready tiles run now, on which pool, what to preempt, and why the rest wait.

    Pools are filled in passes: first every work on its preferred pool, then on its second
    choice, and so on, so CPU-only work backfills an accelerator pool only once that pool's
    accelerated work has had its turn.
    """
    tick = _Tick(snapshot, policy or Policy())
    passes = max((len(work.pools) for work in snapshot.pending), default=0)
    for depth in range(passes):
        wanting: dict[str, list[int]] = defaultdict(list)
        for index, work in enumerate(snapshot.pending):
            if depth < len(work.pools):
                wanting[work.pools[depth]].append(index)
        for pool_name in sorted(wanting):
            pool = snapshot.pools.get(pool_name)
            if pool is not None and tick.free[pool_name] > 0:
                tick.fill(pool, wanting[pool_name])
    _preempt(tick)
    _explain(tick)
    return tick.plan


# ---------------------------------------------------------------------------- preemption
def _preempt(tick: _Tick) -> None:
    """Stop running tiles for rush work (of studios over their share) and for accelerated work
    (CPU backfill on its pool), youngest first, within the per-tick limit."""
    snapshot = tick.snapshot
    budget = tick.policy.max_preemptions
    hungry = [
        (index, work)
        for index, work in enumerate(snapshot.pending)
        if (work.rush or work.accelerated)
        and work.pools
        and index not in tick.blocked
        and tick.taken[index] < len(work.tiles)
        and tick.free.get(work.pools[0], 0) < work.slots
    ]
    if not hungry or budget <= 0:
        return
    hungry.sort(key=lambda item: (_order(item[1], tick.taken[item[0]]), item[1].studio_id))
    victims = sorted(snapshot.running_tiles, key=lambda t: (-t.started, t.tile_id))
    stopped: set[int] = set()
    for index, work in hungry:
        pool = work.pools[0]
        wanted = (len(work.tiles) - tick.taken[index]) * work.slots
        if work.rush:
            room = (
                tick.entitled.get((work.studio_id, pool), 0.0)
                - tick.running[(work.studio_id, pool)]
            )
            wanted = min(wanted, math.floor(room))
        for victim in victims:
            if budget <= 0:
                return
            if wanted <= 0:
                break
            if victim.pool != pool or victim.tile_id in stopped or victim.rush:
                continue
            reason = _victim_reason(tick, work, victim.studio_id, victim.slots, victim.backfill)
            if reason is None:
                continue
            stopped.add(victim.tile_id)
            tick.running[(victim.studio_id, pool)] -= victim.slots
            tick.running[(work.studio_id, pool)] += victim.slots
            wanted -= victim.slots
            budget -= 1
            tick.plan.preemptions.append(Preemption(victim.tile_id, pool, reason))


def _victim_reason(tick: _Tick, work: Work, studio: int, slots: int, backfill: bool) -> str | None:
    """Why this running tile may be stopped for ``work``, or None if it may not."""
    pool = work.pools[0]
    if work.accelerated and backfill:
        return f"preempted: pool {pool} is needed by accelerated job {work.job_id}"
    if not work.rush or studio == work.studio_id:
        return None
    share = tick.entitled.get((studio, pool), 0.0)
    if tick.running[(studio, pool)] - slots < share:
        return None  # it would fall below its own share: that could be reclaimed back
    return (
        f"preempted for rush job {work.job_id} of studio {tick.name(work.studio_id)}: "
        f"studio {tick.name(studio)} is over its share of pool {pool}"
    )


# ---------------------------------------------------------------------------- reasons
def _explain(tick: _Tick) -> None:
    """A reason for every (job, layer) that still has ready tiles after this tick."""
    snapshot = tick.snapshot
    leaders = _studio_leaders(tick)
    for index, work in enumerate(snapshot.pending):
        if tick.taken[index] >= len(work.tiles):
            continue
        tick.plan.waiting[work.key] = _reason(tick, index, work, leaders)


def _studio_leaders(tick: _Tick) -> dict[StudioPool, Work]:
    """The first work in line of each studio on each pool (its rush, priority, age order)."""
    leaders: dict[StudioPool, tuple[tuple[int, int, int, tuple[int, ...]], Work]] = {}
    for index, work in enumerate(tick.snapshot.pending):
        if not work.pools or tick.taken[index] >= len(work.tiles):
            continue
        key = (work.studio_id, work.pools[0])
        order = _order(work, tick.taken[index])
        if key not in leaders or order < leaders[key][0]:
            leaders[key] = (order, work)
    return {key: work for key, (_, work) in leaders.items()}


def _reason(tick: _Tick, index: int, work: Work, leaders: Mapping[StudioPool, Work]) -> str:
    if not work.pools:
        return work.unfit or "no pool of this farm fits this layer's requirements"
    if index in tick.blocked:
        return tick.blocked[index]
    pool_name = work.pools[0]
    pool = tick.snapshot.pools.get(pool_name)
    if pool is None or pool.capacity <= 0:
        return (
            f"pool {pool_name} has no nodes: no Ray node offers resource 'pool:{pool_name}' "
            f"(start one with farm worker --pool {pool_name})"
        )
    studio = work.studio_id
    running = tick.running[(studio, pool_name)]
    share = tick.entitled.get((studio, pool_name), 0.0)
    leader = leaders.get((studio, pool_name))
    if leader is not None and leader is not work and leader.job_id != work.job_id:
        rush = ", rush" if leader.rush else ""
        return (
            f"behind job {leader.job_id} of the same studio "
            f"(priority {leader.priority}{rush}) on pool {pool_name}"
        )
    if running >= share and share < pool.capacity:
        over = "is over" if running > share + 0.5 else "has"
        return (
            f"studio {tick.name(studio)} {over} its share of pool {pool_name} "
            f"({running} running, entitled {_slots(share)})"
        )
    return (
        f"pool {pool_name} is full ({pool.capacity} slots busy); next in line as slots free "
        f"(studio {tick.name(studio)}: {running} running, entitled {_slots(share)})"
    )


def _slots(value: float) -> str:
    return f"{value:.0f}" if abs(value - round(value)) < 0.05 else f"{value:.1f}"
