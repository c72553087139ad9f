"""The policy simulator: replay a trace through the farm's own ``plan()`` on a simulated clock.

No Ray, no database, no wall clock: the same trace and farm always give the same
:class:`Report`. The simulator plays the dispatcher: at each tick it decays usage, builds a
:class:`~scheduler.plan.Snapshot` of ready tiles, free slots, licences and running tiles, calls
:func:`scheduler.plan.plan`, stops what the plan preempts (back to the front of its layer's
queue, nothing lost, no failure counted) and starts what it decides.

Time runs on a grid of ``tick_s`` seconds (the dispatcher's loop). A tile holds its slot for its
cost rounded up to the grid, as a real slot stays held until the dispatcher collects the result.
Ticks where nothing can change are skipped: the clock jumps to the next submission or
completion, or to the next tick after a preemption (the freed slots are filled then).

What is measured, per studio and pool, integrated over time: slot-seconds *received* (slots
held) and *entitled* (``plan.entitled``: the fair share the planner computed, which exists only
while the studio has work there). ``fair_share_error`` is the largest |received - entitled| /
entitled over studios entitled to at least ``min_entitled_slot_s``.

Example:
    >>> from scheduler.simulate_traces import generate_farm, generate_trace, parse_job
    >>> jobs = [parse_job(row) for row in generate_trace(1, studios=5, hours=0.5)]
    >>> report = simulate(jobs, Farm.from_mapping(generate_farm(1, studios=5)))
    >>> report.checks["every_tile_finished_once"]
    True
"""

from __future__ import annotations

import heapq
import math
import tomllib
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from scheduler.plan import (
    Licence,
    Plan,
    Policy,
    PoolState,
    Quota,
    RunningTile,
    Snapshot,
    TileKey,
    Work,
    plan,
)
from scheduler.plan.share import decayed_usage
from scheduler.simulate_report import PoolReport, Report, StudioReport, percentile
from scheduler.simulate_state import Layer, SimJob
from scheduler.simulate_traces import TraceError, TraceJob

__all__ = ["Farm", "FarmPool", "LicenceTerms", "Report", "load_farm", "simulate"]


@dataclass(frozen=True, slots=True)
class FarmPool:
    """A pool of the simulated farm: ``capacity`` slots, never more, never fewer."""

    name: str
    capacity: int
    accelerated: bool = False
    backfill: bool = False


@dataclass(frozen=True, slots=True)
class LicenceTerms:
    """``total`` seats, of which ``guarantees[studio]`` are kept for that studio."""

    total: int
    guarantees: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Farm:
    """What the simulated farm has and how it shares it.

    Args:
        pools: in the farm's order of preference (ties between equal tile costs go to the
            earlier pool).
        quotas: per (studio name, pool); missing ones are ``Quota()``.
        licences: by name.
        policy: the planner's policy (half-life of usage, preemptions per tick).
        tick_s: the dispatcher's loop period on the simulated clock.
    """

    pools: tuple[FarmPool, ...]
    quotas: Mapping[tuple[str, str], Quota] = field(default_factory=dict)
    licences: Mapping[str, LicenceTerms] = field(default_factory=dict)
    policy: Policy = field(default_factory=Policy)
    tick_s: float = 5.0

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Farm:
        """Build a farm from its description (the JSON or TOML of :func:`load_farm`)::

            {"pools": {"cpu": {"capacity": 640}, "h100": {"capacity": 64, "accelerated": true,
                                                         "backfill": true}},
             "licences": {"houdini": {"total": 48, "guarantees": {"nimble": 8}}},
             "quotas": {"nimble": {"h100": {"guarantee": 8, "weight": 2, "ceiling": 32}}},
             "policy": {"half_life_s": 3600, "max_preemptions": 8, "default_tile_s": 60,
                        "tick_s": 5}}

        Raises:
            TraceError: naming the field, for a missing pool table, unknown keys or bad values.
        """
        _keys(raw, {"pools", "licences", "quotas", "policy"}, "")
        pools_raw = raw.get("pools")
        if not isinstance(pools_raw, Mapping) or not pools_raw:
            raise TraceError("expected a table of pools (name -> capacity ...)", field="pools")
        pools = []
        for name, spec in pools_raw.items():
            at = f"pools.{name}"
            _keys(spec, {"capacity", "accelerated", "backfill"}, at)
            pools.append(
                FarmPool(
                    str(name),
                    _int(spec.get("capacity"), f"{at}.capacity"),
                    _bool(spec.get("accelerated", False), f"{at}.accelerated"),
                    _bool(spec.get("backfill", False), f"{at}.backfill"),
                )
            )
        licences = {}
        for name, spec in dict(raw.get("licences") or {}).items():
            at = f"licences.{name}"
            _keys(spec, {"total", "guarantees"}, at)
            guarantees = {
                str(s): _int(n, f"{at}.guarantees.{s}")
                for s, n in dict(spec.get("guarantees") or {}).items()
            }
            licences[str(name)] = LicenceTerms(_int(spec.get("total"), f"{at}.total"), guarantees)
        quotas = {}
        for studio, per_pool in dict(raw.get("quotas") or {}).items():
            for pool, terms in dict(per_pool).items():
                quotas[(str(studio), str(pool))] = _quota(terms, f"quotas.{studio}.{pool}")
        policy_raw = dict(raw.get("policy") or {})
        _keys(policy_raw, {"half_life_s", "max_preemptions", "default_tile_s", "tick_s"}, "policy")
        policy = Policy(
            half_life_s=_positive(policy_raw.get("half_life_s", 3600.0), "policy.half_life_s"),
            max_preemptions=_int(policy_raw.get("max_preemptions", 8), "policy.max_preemptions"),
            default_tile_s=_positive(
                policy_raw.get("default_tile_s", 60.0), "policy.default_tile_s"
            ),
        )
        tick_s = _positive(policy_raw.get("tick_s", 5.0), "policy.tick_s")
        return cls(tuple(pools), quotas, licences, policy, tick_s)


def load_farm(path: Path) -> Farm:
    """A farm description from a ``.toml`` or ``.json`` file (see :meth:`Farm.from_mapping`)."""
    import json

    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise TraceError(f"cannot read the farm description ({exc})") from exc
    if not isinstance(raw, Mapping):
        raise TraceError("expected a table at the top of the farm description")
    return Farm.from_mapping(raw)


Observer = Callable[[float, Snapshot, Plan], None]
"""Called after each plan with (simulated time, snapshot, plan); tests watch ticks with it."""


def simulate(
    jobs: Sequence[TraceJob],
    farm: Farm,
    *,
    min_entitled_slot_s: float = 3600.0,
    observe: Observer | None = None,
) -> Report:
    """Replay ``jobs`` on ``farm`` through ``plan()`` and measure what each studio received.

    Args:
        jobs: the trace (any order; replayed by submission time, then trace line).
        farm: pools, quotas, licences and policy.
        min_entitled_slot_s: studios entitled to less (over the whole run) are reported but
            left out of ``fair_share_error``: a few slot-seconds make any ratio noise.
        observe: see :data:`Observer`.

    Raises:
        TraceError: a layer names a pool or licence the farm does not have.
    """
    return _Run(jobs, farm, observe).run().report(min_entitled_slot_s)


class _Run:
    """One replay: the simulated dispatcher's state between ticks."""

    def __init__(self, jobs: Sequence[TraceJob], farm: Farm, observe: Observer | None) -> None:
        self.farm = farm
        self.observe = observe
        self.pools = {pool.name: pool for pool in farm.pools}
        self.rank = {pool.name: i for i, pool in enumerate(farm.pools)}
        names = sorted({job.studio for job in jobs})
        self.studio_ids = {name: i for i, name in enumerate(names, start=1)}
        self.studio_names = {i: name for name, i in self.studio_ids.items()}
        self.quotas = {
            (self.studio_ids[s], pool): q
            for (s, pool), q in farm.quotas.items()
            if s in self.studio_ids
        }
        ordered = sorted(jobs, key=lambda job: (job.submit_s, job.line, job.studio, job.job))
        self.jobs: list[SimJob] = []
        self.layers: dict[int, Layer] = {}
        self.tiles = 0
        for job_id, job in enumerate(ordered, start=1):
            self.jobs.append(self._job(job_id, job))
        self.finished = bytearray(self.tiles)
        self.ready: dict[int, Layer] = {}
        """Layers with ready tiles, by layer id."""
        self.running: dict[int, tuple[Layer, str, int, RunningTile]] = {}
        """tile id -> (layer, pool, run number, as preemption sees it) of each tile in flight."""
        self.backfill: dict[int, RunningTile] = {}
        """The running tiles that are CPU work on an accelerator pool."""
        self.ends: list[tuple[float, int, int]] = []
        """Heap of (end, tile id, run number); an entry whose run was preempted is stale."""
        self.runs = 0
        self.slots: dict[tuple[int, str], int] = defaultdict(int)
        self.busy = dict.fromkeys(self.pools, 0)
        self.usage: dict[tuple[int, str], float] = {}
        self.owed: dict[tuple[int, str], float] = {}
        """Decayed integral of each studio's entitlement: what fair share promised lately."""
        self.licence_use: dict[str, dict[int, int]] = {name: {} for name in farm.licences}
        self.licence_peak = dict.fromkeys(farm.licences, 0)
        self.received: dict[tuple[int, str], float] = defaultdict(float)
        self.entitled: dict[tuple[int, str], float] = defaultdict(float)
        self.busy_slot_s = dict.fromkeys(self.pools, 0.0)
        self.shares: Mapping[tuple[int, str], float] = {}
        self.preemptions = 0
        self.plan_calls = 0
        self.faults: Counter[str] = Counter()
        self.now = 0.0
        self.last_end = 0.0

    # ------------------------------------------------------------------ setup
    def _job(self, job_id: int, job: TraceJob) -> SimJob:
        sim = SimJob(job_id, self.studio_ids[job.studio], job)
        by_name: dict[str, Layer] = {}
        for position, spec in enumerate(job.layers):
            pools, accelerated = self._pools_of(job, position)
            backfill = frozenset(p for p in pools if not accelerated and self.pools[p].accelerated)
            for name in spec.licences:
                if name not in self.farm.licences:
                    raise TraceError(
                        f"licence {name!r} is not declared by the farm "
                        f"(licences: {', '.join(self.farm.licences) or 'none'})",
                        line=job.line,
                        field=f"layers[{position}].licences",
                    )
            layer = Layer(
                len(self.layers) + 1,
                sim,
                position=position,
                spec=spec,
                pools=pools,
                accelerated=accelerated,
                backfill_pools=backfill,
                first_tile=self.tiles,
            )
            self.tiles += spec.tiles
            self.layers[layer.layer_id] = layer
            by_name[spec.name] = layer
            sim.layers.append(layer)
        for layer in sim.layers:
            for name in layer.spec.depends_on:
                by_name[name].dependents.append(layer)
                layer.waiting_on += 1
        return sim

    def _pools_of(self, job: TraceJob, position: int) -> tuple[tuple[str, ...], bool]:
        """Cheapest pool first; CPU work keeps only the accelerator pools that allow backfill."""
        cost_s = job.layers[position].cost_s
        for name in cost_s:
            if name not in self.pools or self.pools[name].capacity <= 0:
                raise TraceError(
                    f"pool {name!r} has no slots on this farm "
                    f"(pools: {', '.join(p.name for p in self.farm.pools if p.capacity > 0)})",
                    line=job.line,
                    field=f"layers[{position}].cost_s",
                )
        ordered = sorted(cost_s, key=lambda name: (cost_s[name], self.rank[name]))
        accelerated = self.pools[ordered[0]].accelerated
        if not accelerated:
            ordered = [
                p for p in ordered if not self.pools[p].accelerated or self.pools[p].backfill
            ]
        return tuple(ordered), accelerated

    # ------------------------------------------------------------------ the loop
    def run(self) -> _Run:
        tick = self.farm.tick_s
        submit_at = 0
        self.now = _on_grid(self.jobs[0].spec.submit_s, tick) if self.jobs else 0.0
        last = self.now
        while True:
            self._accrue(self.now - last)
            last = self.now
            self._collect()
            while submit_at < len(self.jobs) and self.jobs[submit_at].spec.submit_s <= self.now:
                self._submit(self.jobs[submit_at])
                submit_at += 1
            preempted = self._tick()
            upcoming = [self._next_end()]
            if submit_at < len(self.jobs):
                upcoming.append(self.jobs[submit_at].spec.submit_s)
            if preempted:
                upcoming.append(self.now + tick)
            due = min(upcoming)
            if math.isinf(due):
                break
            self.now = max(self.now + tick, _on_grid(due, tick))
        if self.ready or self.running:
            self.faults["stalled with work left"] += 1
        return self

    def _accrue(self, dt: float) -> None:
        """Add ``dt`` seconds of the state since the last tick: nothing changed inside it."""
        if dt <= 0:
            return
        for key, slots in self.slots.items():
            if slots:
                self.received[key] += slots * dt
                self.busy_slot_s[key[1]] += slots * dt
        for key, share in self.shares.items():
            self.entitled[key] += share * dt
        half_life_s = self.farm.policy.half_life_s
        for key in set(self.usage) | {k for k, n in self.slots.items() if n}:
            value = decayed_usage(self.usage.get(key, 0.0), self.slots.get(key, 0), dt, half_life_s)
            if value > 1e-6:
                self.usage[key] = value
            else:
                self.usage.pop(key, None)
        for key in set(self.owed) | set(self.shares):
            value = decayed_usage(self.owed.get(key, 0.0), self.shares.get(key, 0), dt, half_life_s)
            if value > 1e-6:
                self.owed[key] = value
            else:
                self.owed.pop(key, None)

    def _collect(self) -> None:
        """Finish every tile whose end has come; release layers whose dependencies are done."""
        while self.ends and self.ends[0][0] <= self.now:
            _, tile_id, run = heapq.heappop(self.ends)
            held = self.running.get(tile_id)
            if held is None or held[2] != run:
                continue  # preempted: its requeued copy ends on its own
            del self.running[tile_id]
            layer, pool = held[0], held[1]
            self._release(tile_id, layer, pool)
            self.finished[tile_id] += 1
            self.last_end = self.now
            layer.done += 1
            if not layer.work.tile_s:  # as the dispatcher: timed once a tile has ended
                held_s = _on_grid(layer.spec.cost_s[pool], self.farm.tick_s)
                layer.work = replace(layer.work, tile_s=held_s)
            if layer.done == layer.spec.tiles:
                for dependent in layer.dependents:
                    dependent.waiting_on -= 1
                    if dependent.waiting_on == 0:
                        self._make_ready(dependent)
                layer.job.layers_left -= 1
                if layer.job.layers_left == 0:
                    layer.job.done_s = self.now

    def _submit(self, job: SimJob) -> None:
        for layer in job.layers:
            if layer.waiting_on == 0:
                self._make_ready(layer)

    def _make_ready(self, layer: Layer) -> None:
        layer.fill_queue()
        self.ready[layer.layer_id] = layer

    def _tick(self) -> bool:
        """Plan once and carry it out; True if something was preempted."""
        snapshot = self._snapshot()
        answer = plan(snapshot, self.farm.policy)
        self.plan_calls += 1
        self.shares = answer.entitled
        if self.observe is not None:
            self.observe(self.now, snapshot, answer)
        self._check_reasons(snapshot, answer)
        # Starts first: ``Work.tiles`` is a live view of each queue, and a requeued tile would
        # shift it under the decisions, which index it as it was when planned.
        for decision in answer.decisions:
            self._start(self.layers[decision.layer_id], decision.tile_id, decision.pool)
        for preemption in answer.preemptions:
            self._preempt(preemption.tile_id)
        self.preemptions += len(answer.preemptions)
        self._check_limits()
        return bool(answer.preemptions)

    def _snapshot(self) -> Snapshot:
        pending = [layer.work for layer in self.ready.values()]
        pools = {
            name: PoolState(
                name,
                pool.capacity,
                pool.capacity - self.busy[name],
                pool.accelerated,
                pool.backfill,
            )
            for name, pool in self.pools.items()
        }
        licences = {
            name: Licence(
                terms.total,
                dict(self.licence_use[name]),
                {
                    self.studio_ids[s]: n
                    for s, n in terms.guarantees.items()
                    if s in self.studio_ids
                },
            )
            for name, terms in self.farm.licences.items()
        }
        return Snapshot(
            pending=pending,
            pools=pools,
            running={key: n for key, n in self.slots.items() if n},
            usage=dict(self.usage),
            owed=dict(self.owed),
            quotas=self.quotas,
            licences=licences,
            running_tiles=self._victims(pending),
            studio_names=self.studio_names,
        )

    def _victims(self, pending: Sequence[Work]) -> list[RunningTile]:
        """The running tiles preemption could stop, as a dispatcher would pass them.

        Accelerated work may stop only CPU backfill on its pool, and only rush work may stop
        other tiles; passing just these gives the same plan, and spares the planner a scan of
        every tile in flight for each waiting accelerated layer.
        """
        if any(work.rush for work in pending):
            return [held[3] for held in self.running.values()]
        return list(self.backfill.values())

    def _start(self, layer: Layer, tile_id: int, pool: str) -> None:
        key = layer.take()
        if key[3] != tile_id:
            self.faults["plan started a tile out of its layer's order"] += 1
        if not layer.remaining:
            self.ready.pop(layer.layer_id, None)
        job = layer.job
        if job.first_start_s is None:
            job.first_start_s = self.now
        self.runs += 1
        running_tile = layer.running_tile(key[3], pool, self.now)
        self.running[key[3]] = (layer, pool, self.runs, running_tile)
        if running_tile.backfill:
            self.backfill[key[3]] = running_tile
        held_s = _on_grid(layer.spec.cost_s[pool], self.farm.tick_s)
        heapq.heappush(self.ends, (self.now + held_s, key[3], self.runs))
        self.slots[(job.studio_id, pool)] += 1
        self.busy[pool] += 1
        for name in layer.spec.licences:
            use = self.licence_use[name]
            use[job.studio_id] = use.get(job.studio_id, 0) + 1

    def _preempt(self, tile_id: int) -> None:
        held = self.running.pop(tile_id, None)
        if held is None:
            self.faults["plan preempted a tile that was not running"] += 1
            return
        layer, pool = held[0], held[1]
        self._release(tile_id, layer, pool)
        layer.requeue(_key(layer, tile_id))
        layer.job.preempted += 1
        self.ready[layer.layer_id] = layer

    def _release(self, tile_id: int, layer: Layer, pool: str) -> None:
        self.backfill.pop(tile_id, None)
        studio = layer.job.studio_id
        self.slots[(studio, pool)] -= 1
        self.busy[pool] -= 1
        for name in layer.spec.licences:
            self.licence_use[name][studio] -= 1

    def _next_end(self) -> float:
        while self.ends:
            end, tile_id, run = self.ends[0]
            held = self.running.get(tile_id)
            if held is not None and held[2] == run:
                return end
            heapq.heappop(self.ends)
        return math.inf

    # ------------------------------------------------------------------ checks
    def _check_reasons(self, snapshot: Snapshot, answer: Plan) -> None:
        started = Counter((d.job_id, d.layer_id) for d in answer.decisions)
        for work in snapshot.pending:
            if started[work.key] < len(work.tiles) and not answer.waiting.get(work.key):
                self.faults["a waiting layer had no reason"] += 1

    def _check_limits(self) -> None:
        for name, use in self.licence_use.items():
            in_use = sum(use.values())
            self.licence_peak[name] = max(self.licence_peak[name], in_use)
            if in_use > self.farm.licences[name].total:
                self.faults[f"licence {name} exceeded"] += 1
        for name, busy in self.busy.items():
            if busy > self.pools[name].capacity:
                self.faults[f"pool {name} over capacity"] += 1

    # ------------------------------------------------------------------ the report
    def report(self, min_entitled_slot_s: float) -> Report:
        start = self.jobs[0].spec.submit_s if self.jobs else 0.0
        makespan_s = max(0.0, self.last_end - start)
        studios = []
        worst, worst_error = "", 0.0
        for studio_id, name in sorted(self.studio_names.items()):
            received = sum(v for (s, _), v in self.received.items() if s == studio_id)
            entitled = sum(v for (s, _), v in self.entitled.items() if s == studio_id)
            error = abs(received - entitled) / entitled if entitled >= min_entitled_slot_s else None
            if error is not None and error > worst_error:
                worst, worst_error = name, error
            waits = [
                j.wait_s for j in self.jobs if j.studio_id == studio_id and j.wait_s is not None
            ]
            studios.append(
                StudioReport(
                    name,
                    received,
                    entitled,
                    error,
                    sum(j.studio_id == studio_id for j in self.jobs),
                    sum(waits) / len(waits) if waits else 0.0,
                    percentile(waits, 0.95),
                )
            )
        pools = tuple(
            PoolReport(
                name,
                pool.capacity,
                self.busy_slot_s[name],
                self.busy_slot_s[name] / (pool.capacity * makespan_s) if makespan_s else 0.0,
            )
            for name, pool in self.pools.items()
        )
        all_waits = [j.wait_s for j in self.jobs if j.wait_s is not None]
        unfinished = self.tiles - self.finished.count(1)
        checks = {
            "every_tile_finished_once": unfinished == 0,
            "licences_never_exceeded": not any("licence" in f for f in self.faults),
            "pools_never_over_capacity": not any("capacity" in f for f in self.faults),
            "every_waiting_layer_has_a_reason": "a waiting layer had no reason" not in self.faults,
            "plan_orders_respected": not any("plan " in f for f in self.faults),
        }
        return Report(
            studios=tuple(studios),
            pools=pools,
            fair_share_error=worst_error,
            fair_share_worst=worst,
            studios_measured=sum(s.error is not None for s in studios),
            makespan_s=makespan_s,
            tiles=self.tiles,
            jobs=len(self.jobs),
            preemptions=self.preemptions,
            plan_calls=self.plan_calls,
            wait_mean_s=sum(all_waits) / len(all_waits) if all_waits else 0.0,
            wait_p95_s=percentile(all_waits, 0.95),
            licence_peak=dict(self.licence_peak),
            checks=checks,
            faults=dict(self.faults),
        )


def _key(layer: Layer, tile_id: int) -> TileKey:
    return (0, layer.position, tile_id - layer.first_tile, tile_id)


def _on_grid(t: float, tick_s: float) -> float:
    """``t`` rounded up to the tick grid (a tiny tolerance keeps exact multiples in place)."""
    return math.ceil(t / tick_s - 1e-9) * tick_s


# ---------------------------------------------------------------------------- farm parsing
def _keys(raw: object, allowed: set[str], at: str) -> None:
    if not isinstance(raw, Mapping):
        raise TraceError(f"expected a table, got {raw!r}", field=at or "farm")
    extra = sorted(set(raw) - allowed)
    if extra:
        where = f"{at}.{extra[0]}" if at else extra[0]
        raise TraceError(f"unknown key (allowed: {', '.join(sorted(allowed))})", field=where)


def _int(value: object, at: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TraceError(f"expected an integer >= 0, got {value!r}", field=at)
    return value


def _bool(value: object, at: str) -> bool:
    if not isinstance(value, bool):
        raise TraceError(f"expected true or false, got {value!r}", field=at)
    return value


def _positive(value: object, at: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise TraceError(f"expected a number > 0, got {value!r}", field=at)
    return float(value)


def _quota(terms: object, at: str) -> Quota:
    _keys(terms, {"guarantee", "weight", "ceiling"}, at)
    assert isinstance(terms, Mapping)
    ceiling = terms.get("ceiling")
    return Quota(
        guarantee=_int(terms.get("guarantee", 0), f"{at}.guarantee"),
        weight=_positive(terms.get("weight", 1.0), f"{at}.weight"),
        ceiling=None if ceiling is None else _int(ceiling, f"{at}.ceiling"),
    )
