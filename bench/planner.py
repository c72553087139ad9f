"""Benchmark: the pure planner's tick at farm scale, and fair share over a simulated busy day.

(a) ``tick_ms_median``: ``scheduler.plan.plan`` for 10,000 hosts in 3 pools (8,000 CPU hosts of
    32 cores, 1,500 H100 hosts of 8, 500 Ascend hosts of 8: 272,000 slots), 138 studios with
    quotas, 100,000 pending tiles in 2,000 (job, layer) groups, two licences. Each tick the
    snapshot is rebuilt as a dispatcher would (``snapshot_ms_median``, timed apart), about
    1.5 % of the slots have freed since the last tick, and new work arrives so that about
    100,000 tiles stay pending. Median over the ticks; ``cold_tick_ms`` is a fresh farm's first
    tick (every slot free, nothing running, no usage: it hands out all 100,000 tiles). Goal
    <= 50 ms.
(b) ``fair_share_error``: a busy day (138 studios, bursts, a rush job) replayed through the same
    ``plan()`` by ``scheduler.simulate``. Goal <= 0.05.
(c) ``db_tick_ms_median``: the whole dispatcher tick against the database with the same load
    (``bench/db_tick.py``: the real dispatcher, Ray replaced at its boundary), on SQLite and,
    when ``FARM_TEST_PG_URL`` is set, PostgreSQL. Goal <= 250 ms.
(d) ``fair_share_error_contended``: 138 weighted studios with work all day on one pool.

Usage::

    .venv/bin/python bench/planner.py            # 50 ticks, a 24-hour day
    .venv/bin/python bench/planner.py --quick    # 20 ticks, a 6-hour day: under a minute

The last stdout line is one JSON object (the contract of ``shared/README.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from scheduler.plan import (
    Licence,
    Policy,
    PoolState,
    Quota,
    RunningTile,
    Snapshot,
    TileKey,
    Work,
    plan,
)
from scheduler.plan.share import steady_usage_s
from scheduler.simulate import Farm, FarmPool, simulate
from scheduler.simulate_report import percentile
from scheduler.simulate_traces import generate_farm, generate_trace, parse_job

HOSTS = {"cpu": (8_000, 32), "h100": (1_500, 8), "ascend": (500, 8)}
"""Pool -> (hosts, slots per host)."""
STUDIOS = 138
PENDING = 100_000
GROUPS = 2_000
FREED_PER_TICK = 0.015
LICENCES = {"houdini": 400, "nuke": 150}
POLICY = Policy(half_life_s=3600.0, max_preemptions=8)
_KINDS: list[tuple[tuple[str, ...], bool]] = [
    (("cpu",), False),
    (("h100",), True),
    (("ascend",), True),
    (("cpu", "h100"), False),  # CPU work that may backfill idle H100 nodes
]
"""(pools, accelerated) of the layers that arrive, 80 / 12 / 5 / 3 %."""


@dataclass
class Group:
    """One (job, layer) of the dispatcher's index: its ready tiles, front first."""

    work: Work
    keys: list[TileKey]
    head: int = 0


class SyntheticFarm:
    """The dispatcher's in-memory view of a farm at scale, advanced tick by tick (seeded)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.capacity = {pool: hosts * slots for pool, (hosts, slots) in HOSTS.items()}
        self.sizes = [self.rng.paretovariate(1.2) for _ in range(STUDIOS)]
        self.quotas = self._quotas()
        self.groups: list[Group] = []
        self.next_job = 1
        self.next_tile = 1
        while sum(len(g.keys) - g.head for g in self.groups) < PENDING:
            self._arrive()
        self.running: dict[tuple[int, str], int] = defaultdict(int)
        self.usage: dict[tuple[int, str], float] = {}
        self.licence_use: dict[str, dict[int, int]] = {name: {} for name in LICENCES}
        self.backfill: list[RunningTile] = []
        self.free = dict(self.capacity)

    def _quotas(self) -> dict[tuple[int, str], Quota]:
        quotas = {}
        for studio in range(1, STUDIOS + 1):
            draw = self.rng.random()
            for pool in HOSTS:
                if draw < 0.10:
                    quotas[(studio, pool)] = Quota(weight=self.rng.choice((2.0, 3.0)))
                elif draw < 0.20:
                    quotas[(studio, pool)] = Quota(guarantee=self.capacity[pool] // 200)
                elif draw < 0.25:
                    quotas[(studio, pool)] = Quota(ceiling=self.capacity[pool] // 20)
        return quotas

    def _arrive(self) -> None:
        """A new (job, layer) of 50 tiles on average, from a studio drawn by size."""
        rng = self.rng
        studio = rng.choices(range(1, STUDIOS + 1), weights=self.sizes)[0]
        tiles = max(1, round(rng.lognormvariate(3.5, 0.8)))
        pools, accelerated = rng.choices(_KINDS, weights=(80, 12, 5, 3))[0]
        licences = (rng.choice(tuple(LICENCES)),) if rng.random() < 0.05 else ()
        job = self.next_job
        self.next_job += 1
        keys = [(rng.randrange(1, 240), 0, rank, self.next_tile + rank) for rank in range(tiles)]
        keys.sort()
        self.next_tile += tiles
        work = Work(
            studio,
            job,
            job,
            keys,
            pools,
            priority=rng.choice((30, 50, 50, 70)),
            licences=licences,
            accelerated=accelerated,
        )
        self.groups.append(Group(work, keys))

    def snapshot(self) -> Snapshot:
        """What a dispatcher hands the planner: ready tiles per group, counters, quotas."""
        pending = []
        for group in self.groups:
            if group.head < len(group.keys):
                w = group.work
                pending.append(
                    Work(
                        w.studio_id,
                        w.job_id,
                        w.layer_id,
                        group.keys[group.head :],
                        w.pools,
                        priority=w.priority,
                        licences=w.licences,
                        accelerated=w.accelerated,
                    )
                )
        return Snapshot(
            pending=pending,
            pools={
                name: PoolState(name, cap, self.free[name], name != "cpu", name == "h100")
                for name, cap in self.capacity.items()
            },
            running={k: n for k, n in self.running.items() if n},
            usage=dict(self.usage),
            quotas=self.quotas,
            licences={
                name: Licence(total, dict(self.licence_use[name]))
                for name, total in LICENCES.items()
            },
            # Preemption may stop only CPU backfill (no rush job here), so that is what a
            # dispatcher passes: the planner need not look at the 270,000 other tiles.
            running_tiles=list(self.backfill),
        )

    def apply(self, decisions: list[tuple[int, int, str]], tick: int) -> None:
        """Start what was planned, free ~1.5 % of the slots, decay usage, refill the backlog."""
        by_job = {g.work.job_id: g for g in self.groups}
        for job_id, tile_id, pool in decisions:
            group = by_job[job_id]
            group.head += 1
            studio = group.work.studio_id
            self.running[(studio, pool)] += 1
            self.free[pool] -= 1
            for name in group.work.licences:
                self.licence_use[name][studio] = self.licence_use[name].get(studio, 0) + 1
            if pool == "h100" and not group.work.accelerated:
                self.backfill.append(RunningTile(tile_id, studio, pool, float(tick), backfill=True))
        self.groups = [g for g in self.groups if g.head < len(g.keys)]
        for pool, cap in self.capacity.items():
            self._finish(pool, round(cap * FREED_PER_TICK * self.rng.uniform(0.7, 1.3)))
        unit = steady_usage_s(POLICY.half_life_s)
        for key, n in self.running.items():
            self.usage[key] = 0.9 * self.usage.get(key, n * unit) + 0.1 * n * unit
        while sum(len(g.keys) - g.head for g in self.groups) < PENDING:
            self._arrive()

    def _finish(self, pool: str, count: int) -> None:
        keys = [k for k, n in self.running.items() if k[1] == pool and n > 0]
        weights = [self.running[k] for k in keys]
        for key in self.rng.choices(keys, weights=weights, k=count) if keys else []:
            if self.running[key] > 0:
                self.running[key] -= 1
                self.free[pool] += 1
        for use in self.licence_use.values():
            for studio in use:
                use[studio] = max(0, use[studio] - self.rng.randrange(0, 2))
        if pool == "h100":
            self.backfill = self.backfill[count // 20 :]


def planner_ticks(ticks: int, seed: int) -> dict[str, float]:
    """Cold tick on a fresh farm, then ``ticks`` steady ticks; milliseconds."""
    farm = SyntheticFarm(seed)
    snapshot = farm.snapshot()
    started = time.perf_counter()
    cold = plan(snapshot, POLICY)
    cold_ms = (time.perf_counter() - started) * 1e3
    handed_cold = len(cold.decisions)
    # Steady state: the farm is full; only what frees up between ticks is free.
    farm.apply([(d.job_id, d.tile_id, d.pool) for d in cold.decisions], 0)
    for pool, cap in farm.capacity.items():
        busy = sum(n for (s, p), n in farm.running.items() if p == pool)
        _fill_rest(farm, pool, cap - busy)
        farm.free[pool] = round(cap * FREED_PER_TICK)
    tick_ms, snapshot_ms, handed = [], [], []
    for tick in range(1, ticks + 1):
        started = time.perf_counter()
        snapshot = farm.snapshot()
        built = time.perf_counter()
        result = plan(snapshot, POLICY)
        done = time.perf_counter()
        snapshot_ms.append((built - started) * 1e3)
        tick_ms.append((done - built) * 1e3)
        handed.append(len(result.decisions))
        farm.apply([(d.job_id, d.tile_id, d.pool) for d in result.decisions], tick)
    return {
        "tick_ms_median": statistics.median(tick_ms),
        "tick_ms_max": max(tick_ms),
        "cold_tick_ms": cold_ms,
        "cold_tiles_handed_out": handed_cold,
        "snapshot_ms_median": statistics.median(snapshot_ms),
        "tiles_handed_per_tick": statistics.median(handed),
        "pending_tiles": sum(len(w.tiles) for w in snapshot.pending),
        "pending_layers": len(snapshot.pending),
    }


def _fill_rest(farm: SyntheticFarm, pool: str, slots: int) -> None:
    """Make the pool full, the rest of its slots held by studios in proportion to size."""
    for studio, n in enumerate(_split(slots, farm.sizes), start=1):
        farm.running[(studio, pool)] += n


def _split(total: int, sizes: list[float]) -> list[int]:
    whole = sum(sizes)
    parts = [int(total * s / whole) for s in sizes]
    parts[0] += total - sum(parts)
    return parts


def busy_day(hours: float, seed: int) -> dict[str, float | str | int]:
    """Replay a generated busy day through the planner; fair share and the simulator's speed."""
    jobs = [parse_job(row) for row in generate_trace(seed, studios=STUDIOS, hours=hours)]
    farm = Farm.from_mapping(generate_farm(seed, studios=STUDIOS))
    started = time.perf_counter()
    report = simulate(jobs, farm)
    errors = [s.error for s in report.studios if s.error is not None]
    return {
        "fair_share_error": report.fair_share_error,
        "fair_share_error_median": statistics.median(errors),
        "fair_share_error_p90": percentile(errors, 0.9),
        "fair_share_worst": report.fair_share_worst,
        "studios_measured": report.studios_measured,
        "simulate_s": time.perf_counter() - started,
        "simulated_hours": hours,
        "simulated_tiles": report.tiles,
        "simulated_preemptions": report.preemptions,
        "simulated_checks_ok": report.ok,
    }


def contended_day(hours: float, seed: int) -> float:
    """Fair share where every studio has work all day (the property the planner promises).

    138 studios of weight 1, 2 or 3 (a tenth with a guarantee) share 640 slots of 60-300 s
    tiles, each with more work than its share can finish. With bursts and idle pools (the busy
    day above) a studio may borrow idle slots and keep them until its tiles end, which the
    error measure counts against it; here every slot is contended from start to end.
    """
    rng = random.Random(seed)
    slots = 640
    names = [f"studio-{i:03d}" for i in range(1, STUDIOS + 1)]
    quotas: dict[tuple[str, str], Quota] = {}
    weights = []
    for name in names:
        weight = rng.choice((1.0, 2.0, 3.0))
        guarantee = 3 if rng.random() < 0.1 else 0
        quotas[(name, "cpu")] = Quota(guarantee=guarantee, weight=weight)
        weights.append(weight)
    farm = Farm(pools=(FarmPool("cpu", slots),), quotas=quotas, policy=POLICY, tick_s=10.0)
    day_s = hours * 3600
    jobs = []
    for name, weight in zip(names, weights, strict=True):
        cost = rng.choice((60.0, 120.0, 300.0))
        share = slots * weight / sum(weights)
        tiles = round(share * day_s / cost)  # all finish near the end of the day
        row = {
            "submit_s": 0.0,
            "studio": name,
            "job": "backlog",
            "layers": [{"name": "render", "tiles": tiles, "cost_s": {"cpu": cost}}],
        }
        jobs.append(parse_job(row))
    report = simulate(jobs, farm)
    return report.fair_share_error


def db_ticks(*, quick: bool) -> dict[str, Any]:
    """The whole dispatcher tick on the database (``bench/db_tick.py``): SQLite, and
    PostgreSQL when ``FARM_TEST_PG_URL`` names one."""
    import tempfile
    from pathlib import Path

    import ray
    from db_tick import measure  # bench/db_tick.py, beside this script

    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    home = Path(tempfile.mkdtemp(prefix="delta-planner-db-"))
    out: dict[str, Any] = {
        "sqlite": measure(f"sqlite:///{home / 'farm.db'}", quick=quick, ticks=20)
    }
    if os.environ.get("FARM_TEST_PG_URL"):
        out["postgresql"] = measure(os.environ["FARM_TEST_PG_URL"], quick=quick, ticks=20)
    ray.shutdown()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 ticks, a 6-hour day (< 1 min)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    ticks, hours = (20, 6.0) if args.quick else (50, 24.0)
    figures = planner_ticks(ticks, args.seed)
    print(f"planner: {json.dumps({k: round(v, 2) for k, v in figures.items()})}", file=sys.stderr)
    day = busy_day(hours, args.seed)
    print(f"busy day: {json.dumps(day)}", file=sys.stderr)
    contended = contended_day(hours, args.seed)
    db = db_ticks(quick=args.quick)
    print(f"db ticks: {json.dumps(db)}", file=sys.stderr)
    result = {
        "bench": "planner",
        "tick_ms_median": round(figures["tick_ms_median"], 2),
        "cold_tick_ms": round(figures["cold_tick_ms"], 1),
        "snapshot_ms_median": round(figures["snapshot_ms_median"], 2),
        "tick_ms_max": round(figures["tick_ms_max"], 2),
        "tiles_handed_per_tick": figures["tiles_handed_per_tick"],
        "db_tick_ms_median": db["sqlite"]["db_tick_ms_median"],
        "db_tick_ms_median_postgresql": db.get("postgresql", {}).get("db_tick_ms_median"),
        "db_cold_tick_ms": db["sqlite"]["db_cold_tick_ms"],
        "db_fill_s": db["sqlite"]["fill_s"],
        "fair_share_error_contended": round(contended, 4),
        "fair_share_error": round(float(day["fair_share_error"]), 4),
        "fair_share_error_median": round(float(day["fair_share_error_median"]), 4),
        "fair_share_error_p90": round(float(day["fair_share_error_p90"]), 4),
        "fair_share_worst": day["fair_share_worst"],
        "simulate_s": round(float(day["simulate_s"]), 1),
        "simulated_hours": hours,
        "simulated_checks_ok": day["simulated_checks_ok"],
        "hosts": sum(hosts for hosts, _ in HOSTS.values()),
        "slots": sum(hosts * slots for hosts, slots in HOSTS.values()),
        "studios": STUDIOS,
        "pending_tiles": int(figures["pending_tiles"]),
        "ticks": ticks,
        "quick": args.quick,
        "goal": "tick_ms_median <= 50; db_tick_ms_median <= 250; fair_share_error <= 0.05",
        "machine": f"{os.cpu_count()} cores, python {sys.version_info[0]}.{sys.version_info[1]}",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
