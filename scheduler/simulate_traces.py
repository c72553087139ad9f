"""Traces for the policy simulator: the JSONL format, its strict reader, and a synthetic generator.

A trace is one job per line, in any order (the simulator sorts by ``submit_s``)::

    {"submit_s": 12.5, "studio": "nimble", "job": "j1", "priority": 50, "rush": false,
     "layers": [{"name": "render", "tiles": 400, "cost_s": {"cpu": 30.0, "h100": 4.0},
                 "licences": ["houdini"], "depends_on": []}]}

``cost_s`` names the pools a layer can run on and what one tile costs there (seconds on one
slot); ``depends_on`` names other layers of the same job whose tiles must all finish first.
Reading is strict, like every incoming spec of the farm: unknown keys, wrong types and cycles are
refused with the line and the field (:class:`TraceError`).

The generator (:func:`generate_trace`, :func:`generate_farm`) writes a busy day: many studios of
very different sizes, submissions in bursts (morning, after lunch, the evening dump), chains of
sim -> render -> comp holding a licence, GPU-only layers, CPU layers that may backfill the GPU
pool, and one rush job. It uses only ``random.Random(seed)``, so a seed always gives one trace.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUSY_DAY_POOLS: Mapping[str, int] = {"cpu": 640, "h100": 64, "ascend": 32}
"""Slots of the busy day's farm: cores of the CPU pool, accelerators of the two others."""

ACCELERATED = frozenset({"h100", "ascend"})
"""Pools of the generated farm whose nodes carry accelerators."""


class TraceError(ValueError):
    """A trace line or farm description is wrong; says where (line, field) and what is allowed.

    Args:
        message: what is wrong and what would be accepted.
        line: 1-based line of the trace, or None for the farm description.
        field: dotted path of the offending field (``layers[0].cost_s``).
    """

    def __init__(self, message: str, *, line: int | None = None, field: str = "") -> None:
        where = f"line {line}: " if line is not None else ""
        at = f"{field}: " if field else ""
        super().__init__(f"{where}{at}{message}")
        self.line = line
        self.field = field


@dataclass(frozen=True, slots=True)
class TraceLayer:
    """One layer of a traced job: ``tiles`` alike tiles, each costing ``cost_s[pool]`` seconds."""

    name: str
    tiles: int
    cost_s: Mapping[str, float]
    licences: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TraceJob:
    """One traced job; ``line`` is where it was read (0 when built in code)."""

    submit_s: float
    studio: str
    job: str
    layers: tuple[TraceLayer, ...]
    priority: int = 50
    rush: bool = False
    line: int = 0


_JOB_KEYS = {"submit_s", "studio", "job", "priority", "rush", "layers"}
_LAYER_KEYS = {"name", "tiles", "cost_s", "licences", "depends_on"}


def parse_job(raw: object, *, line: int = 0) -> TraceJob:
    """Check one decoded trace line and build its job.

    Raises:
        TraceError: naming the line and the field, for unknown keys, wrong types or values,
            duplicate layer names, unknown dependencies and dependency cycles.
    """
    if not isinstance(raw, dict):
        raise TraceError(f"expected a JSON object, got {_kind(raw)}", line=line)
    _no_extra(raw, _JOB_KEYS, "", line)
    submit_s = _number(raw, "submit_s", line, minimum=0.0)
    studio = _name(raw, "studio", line)
    job = _name(raw, "job", line)
    priority = raw.get("priority", 50)
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 100:
        raise TraceError(
            f"expected an integer 0-100, got {priority!r}", line=line, field="priority"
        )
    rush = raw.get("rush", False)
    if not isinstance(rush, bool):
        raise TraceError(f"expected true or false, got {rush!r}", line=line, field="rush")
    layers_raw = raw.get("layers")
    if not isinstance(layers_raw, list) or not layers_raw:
        raise TraceError("expected a non-empty list of layers", line=line, field="layers")
    layers = tuple(_parse_layer(item, f"layers[{i}]", line) for i, item in enumerate(layers_raw))
    _check_dependencies(layers, line)
    return TraceJob(submit_s, studio, job, layers, priority, rush, line)


def _parse_layer(raw: object, at: str, line: int) -> TraceLayer:
    if not isinstance(raw, dict):
        raise TraceError(f"expected a JSON object, got {_kind(raw)}", line=line, field=at)
    _no_extra(raw, _LAYER_KEYS, at + ".", line)
    name = _name(raw, "name", line, at=at + ".")
    tiles = raw.get("tiles")
    if isinstance(tiles, bool) or not isinstance(tiles, int) or tiles < 1:
        raise TraceError(f"expected an integer >= 1, got {tiles!r}", line=line, field=at + ".tiles")
    cost_raw = raw.get("cost_s")
    if not isinstance(cost_raw, dict) or not cost_raw:
        raise TraceError(
            f"expected an object of pool -> seconds per tile, got {cost_raw!r}",
            line=line,
            field=at + ".cost_s",
        )
    cost_s = {str(pool): _number(cost_raw, pool, line, at=at + ".cost_s.") for pool in cost_raw}
    for pool, seconds in cost_s.items():
        if seconds <= 0:
            raise TraceError(
                f"expected seconds > 0, got {seconds!r}", line=line, field=f"{at}.cost_s.{pool}"
            )
    return TraceLayer(
        name,
        tiles,
        cost_s,
        _names(raw, "licences", line, at + "."),
        _names(raw, "depends_on", line, at + "."),
    )


def _check_dependencies(layers: Sequence[TraceLayer], line: int) -> None:
    """Layer names are unique, dependencies exist, and no layer waits for itself."""
    index = {}
    for i, layer in enumerate(layers):
        if layer.name in index:
            raise TraceError(
                f"layer name {layer.name!r} is used twice", line=line, field=f"layers[{i}].name"
            )
        index[layer.name] = i
    for i, layer in enumerate(layers):
        for name in layer.depends_on:
            if name not in index:
                raise TraceError(
                    f"no layer {name!r} in this job (layers: {', '.join(index)})",
                    line=line,
                    field=f"layers[{i}].depends_on",
                )
    state: dict[str, int] = {}  # 1: being visited, 2: done

    def visit(name: str) -> None:
        state[name] = 1
        for needed in layers[index[name]].depends_on:
            if state.get(needed) == 1:
                raise TraceError(
                    f"dependency cycle through layer {needed!r}",
                    line=line,
                    field=f"layers[{index[name]}].depends_on",
                )
            if needed not in state:
                visit(needed)
        state[name] = 2

    for layer in layers:
        if layer.name not in state:
            visit(layer.name)


def read_trace(lines: Iterable[str]) -> list[TraceJob]:
    """Jobs of a JSONL trace (blank lines skipped), each checked by :func:`parse_job`.

    Raises:
        TraceError: for a line that is not JSON or not a valid job; a job name used twice by
            one studio is refused too, since results are keyed by it.
    """
    jobs: list[TraceJob] = []
    seen: dict[tuple[str, str], int] = {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TraceError(f"not JSON ({exc.msg} at column {exc.colno})", line=number) from exc
        job = parse_job(raw, line=number)
        first = seen.setdefault((job.studio, job.job), number)
        if first != number:
            raise TraceError(
                f"job {job.job!r} of studio {job.studio!r} already appears on line {first}",
                line=number,
                field="job",
            )
        jobs.append(job)
    return jobs


def load_trace(path: Path) -> list[TraceJob]:
    """:func:`read_trace` of a file."""
    with path.open(encoding="utf-8") as handle:
        return read_trace(handle)


def write_trace(rows: Iterable[Mapping[str, Any]], path: Path) -> int:
    """Write trace rows as JSONL; returns how many were written."""
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, separators=(",", ":")) + "\n")
            count += 1
    return count


# ---------------------------------------------------------------------------- generator
def studio_names(count: int) -> list[str]:
    """``studio-001`` ... : names that sort in the order they were made."""
    return [f"studio-{i:03d}" for i in range(1, count + 1)]


def generate_trace(
    seed: int,
    *,
    studios: int = 138,
    hours: float = 24.0,
    pools: Mapping[str, int] = BUSY_DAY_POOLS,
    load: float = 1.0,
    burst: float = 0.5,
    rush: bool = True,
) -> list[dict[str, Any]]:
    """A synthetic busy day, as trace rows sorted by submission time.

    Studio sizes are heavy-tailed (a few big houses, many small ones). Jobs are drawn until the
    work handed to each pool reaches ``load`` times what the pool can do in ``hours``; ``burst``
    of them arrive in three bursts (at 5 %, 45 % and 75 % of the day, the last the largest), the
    rest spread over the first 90 % of the day.

    Args:
        seed: the one source of randomness.
        studios: how many studios submit.
        hours: length of the day.
        pools: slots per pool; the names ``cpu``, ``h100`` and ``ascend`` get their own kind of
            layer (any missing pool is simply not used).
        load: offered work / pool capacity over the day (above 1: a backlog at night).
        burst: share of jobs submitted in bursts.
        rush: add one rush job at mid-day.
    """
    rng = random.Random(seed)
    names = studio_names(studios)
    sizes = [rng.paretovariate(1.2) for _ in names]
    day_s = hours * 3600.0
    budget = {pool: load * slots * day_s for pool, slots in pools.items() if slots > 0}
    kinds = [kind for kind in _KINDS if all(p in budget for p in kind[2])]
    rows: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    while kinds:
        kind_name = _pick(rng, kinds)[0]
        studio = rng.choices(names, weights=sizes)[0]
        counts[studio] = counts.get(studio, 0) + 1
        layers = _LAYER_MAKERS[kind_name](rng)
        for layer in layers:
            pool = min(layer["cost_s"], key=lambda p: (layer["cost_s"][p], p))
            budget[pool] -= layer["tiles"] * layer["cost_s"][pool]
        rows.append(
            {
                "submit_s": round(_submit_time(rng, day_s, burst), 1),
                "studio": studio,
                "job": f"{kind_name}-{counts[studio]:04d}",
                "priority": rng.choice((30, 50, 50, 50, 70)),
                "rush": False,
                "layers": layers,
            }
        )
        kinds = [kind for kind in kinds if all(budget[p] > 0 for p in kind[2])]
    if rush and "cpu" in pools:
        rows.append(_rush_job(rng, names, day_s))
    rows.sort(key=lambda row: (row["submit_s"], row["studio"], row["job"]))
    return rows


def generate_farm(
    seed: int, *, studios: int = 138, pools: Mapping[str, int] = BUSY_DAY_POOLS
) -> dict[str, Any]:
    """The farm description that goes with :func:`generate_trace` (see ``scheduler.simulate``).

    One studio in ten gets weight 2 or 3 on every pool, one in twenty a CPU guarantee, two a
    ceiling on the GPU pool; ``houdini`` has 48 seats with 8 kept for the first studio.
    """
    rng = random.Random(seed * 7919 + 1)
    names = studio_names(studios)
    quotas: dict[str, dict[str, dict[str, float | int]]] = {}
    for name in names:
        terms: dict[str, dict[str, float | int]] = {}
        draw = rng.random()
        if draw < 0.10:
            for pool in pools:
                terms[pool] = {"weight": rng.choice((2, 3))}
        elif draw < 0.15 and "cpu" in pools:
            terms["cpu"] = {"guarantee": max(1, pools["cpu"] // 40)}
        if terms:
            quotas[name] = terms
    if "h100" in pools:
        for name in names[1:3]:
            quotas.setdefault(name, {})["h100"] = {"ceiling": max(1, pools["h100"] // 4)}
    return {
        "pools": {
            name: {
                "capacity": slots,
                "accelerated": name in ACCELERATED,
                "backfill": name == "h100",
            }
            for name, slots in pools.items()
        },
        "licences": {"houdini": {"total": 48, "guarantees": {names[0]: 8}}},
        "quotas": quotas,
        "policy": {"half_life_s": 3600.0, "max_preemptions": 8, "tick_s": 10.0},
    }


def _pick(
    rng: random.Random, kinds: Sequence[tuple[str, float, tuple[str, ...]]]
) -> tuple[str, float, tuple[str, ...]]:
    return rng.choices(list(kinds), weights=[k[1] for k in kinds])[0]


def _submit_time(rng: random.Random, day_s: float, burst: float) -> float:
    if rng.random() < burst:
        centre = rng.choices((0.05, 0.45, 0.75), weights=(2, 2, 3))[0] * day_s
        return min(day_s, centre + rng.expovariate(1 / 300.0))
    return rng.uniform(0.0, 0.9 * day_s)


def _tiles(rng: random.Random, median: float, most: int) -> int:
    return max(1, min(most, round(rng.lognormvariate(math.log(median), 1.0))))


def _cost(rng: random.Random, median_s: float) -> float:
    return round(min(20 * median_s, max(5.0, rng.lognormvariate(math.log(median_s), 0.6))), 1)


def _cpu_render(rng: random.Random) -> list[dict[str, Any]]:
    return [_layer("render", _tiles(rng, 120, 4000), {"cpu": _cost(rng, 240.0)})]


def _fx_chain(rng: random.Random) -> list[dict[str, Any]]:
    """sim (few long tiles, houdini) -> render -> comp."""
    sim = _layer("sim", _tiles(rng, 6, 40), {"cpu": _cost(rng, 900.0)}, licences=["houdini"])
    render = _layer("render", _tiles(rng, 100, 3000), {"cpu": _cost(rng, 200.0)}, after=["sim"])
    comp = _layer("comp", _tiles(rng, 24, 240), {"cpu": _cost(rng, 30.0)}, after=["render"])
    return [sim, render, comp]


def _gpu_render(rng: random.Random) -> list[dict[str, Any]]:
    return [_layer("render", _tiles(rng, 150, 4000), {"h100": _cost(rng, 45.0)})]


def _backfill_render(rng: random.Random) -> list[dict[str, Any]]:
    """CPU work the GPU pool may take when idle, at the same speed."""
    seconds = _cost(rng, 180.0)
    return [_layer("render", _tiles(rng, 80, 2000), {"cpu": seconds, "h100": seconds})]


def _ascend_render(rng: random.Random) -> list[dict[str, Any]]:
    return [_layer("render", _tiles(rng, 100, 2000), {"ascend": _cost(rng, 60.0)})]


def _layer(
    name: str,
    tiles: int,
    cost_s: dict[str, float],
    *,
    licences: list[str] | None = None,
    after: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "tiles": tiles,
        "cost_s": cost_s,
        "licences": licences or [],
        "depends_on": after or [],
    }


def _rush_job(rng: random.Random, names: Sequence[str], day_s: float) -> dict[str, Any]:
    studio = names[len(names) // 2]
    return {
        "submit_s": round(0.5 * day_s, 1),
        "studio": studio,
        "job": "rush-0001",
        "priority": 90,
        "rush": True,
        "layers": [_layer("render", 200, {"cpu": _cost(rng, 120.0)})],
    }


_KINDS: list[tuple[str, float, tuple[str, ...]]] = [
    ("cpu", 0.55, ("cpu",)),
    ("fx", 0.15, ("cpu",)),
    ("gpu", 0.15, ("h100",)),
    ("backfill", 0.05, ("cpu", "h100")),
    ("ascend", 0.10, ("ascend",)),
]
"""(kind, how often, pools its work is charged to) of generated jobs."""

_LAYER_MAKERS = {
    "cpu": _cpu_render,
    "fx": _fx_chain,
    "gpu": _gpu_render,
    "backfill": _backfill_render,
    "ascend": _ascend_render,
}


def _no_extra(raw: Mapping[str, Any], allowed: set[str], at: str, line: int) -> None:
    extra = sorted(set(raw) - allowed)
    if extra:
        raise TraceError(
            f"unknown key (allowed: {', '.join(sorted(allowed))})", line=line, field=at + extra[0]
        )


def _number(
    raw: Mapping[str, Any], key: str, line: int, *, at: str = "", minimum: float | None = None
) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TraceError(f"expected a number, got {value!r}", line=line, field=at + key)
    if minimum is not None and value < minimum:
        raise TraceError(f"expected >= {minimum:g}, got {value!r}", line=line, field=at + key)
    return float(value)


def _name(raw: Mapping[str, Any], key: str, line: int, *, at: str = "") -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise TraceError(f"expected a non-empty string, got {value!r}", line=line, field=at + key)
    return value


def _names(raw: Mapping[str, Any], key: str, line: int, at: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise TraceError(f"expected a list of names, got {value!r}", line=line, field=at + key)
    return tuple(value)


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__
