"""What a simulated replay measured: per studio, per pool, and the checks that must hold.

Units: slot-seconds (one slot held for one second), seconds of simulated time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class StudioReport:
    """One studio's day.

    Attributes:
        received_slot_s: slot-seconds its tiles held, over all pools.
        entitled_slot_s: the integral of its fair share (``plan.entitled``) while it had work.
        error: |received - entitled| / entitled; None when entitled is below the report's floor.
        jobs: jobs it submitted.
        wait_mean_s, wait_p95_s: submission to first tile start of its jobs.
    """

    studio: str
    received_slot_s: float
    entitled_slot_s: float
    error: float | None
    jobs: int
    wait_mean_s: float
    wait_p95_s: float


@dataclass(frozen=True, slots=True)
class PoolReport:
    """One pool's day: ``busy_slot_s / (capacity * makespan)`` is its utilisation."""

    pool: str
    capacity: int
    busy_slot_s: float
    utilisation: float


@dataclass(frozen=True)
class Report:
    """The outcome of :func:`scheduler.simulate.simulate`.

    Attributes:
        fair_share_error: max over measured studios of their ``error``.
        fair_share_worst: the studio with that error.
        studios_measured: studios entitled to enough to be measured.
        makespan_s: first submission to last tile end.
        preemptions: running tiles stopped (each ran again later: see ``checks``).
        plan_calls: ticks where the planner ran.
        licence_peak: most seats held at once, per licence.
        checks: invariants of the run, all True on a correct planner and simulator.
        faults: how often each broken invariant was seen (empty when all checks hold).
    """

    studios: tuple[StudioReport, ...]
    pools: tuple[PoolReport, ...]
    fair_share_error: float
    fair_share_worst: str
    studios_measured: int
    makespan_s: float
    tiles: int
    jobs: int
    preemptions: int
    plan_calls: int
    wait_mean_s: float
    wait_p95_s: float
    licence_peak: Mapping[str, int]
    checks: Mapping[str, bool]
    faults: Mapping[str, int]

    @property
    def ok(self) -> bool:
        """Every check held."""
        return all(self.checks.values())

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types only; floats rounded so equal runs print equal text."""
        return _rounded(
            {
                "fair_share_error": self.fair_share_error,
                "fair_share_worst": self.fair_share_worst,
                "studios_measured": self.studios_measured,
                "makespan_s": self.makespan_s,
                "tiles": self.tiles,
                "jobs": self.jobs,
                "preemptions": self.preemptions,
                "plan_calls": self.plan_calls,
                "wait_mean_s": self.wait_mean_s,
                "wait_p95_s": self.wait_p95_s,
                "licence_peak": dict(self.licence_peak),
                "checks": dict(self.checks),
                "faults": dict(self.faults),
                "pools": [asdict(pool) for pool in self.pools],
                "studios": [asdict(studio) for studio in self.studios],
            }
        )


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 for no values): always one of the values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value
