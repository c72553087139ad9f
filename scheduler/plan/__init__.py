"""The pure planner: which ready tiles run now, on which pool, and why the others wait.

No Ray, no DB, no clock: ``plan(snapshot, policy) -> Plan`` is deterministic, so the
dispatcher, the policy simulator and the tests get the same answer from the same snapshot.
This package may import only ``farm.vocab``, ``farm.states`` and ``farm.schemas``.

- :mod:`scheduler.plan.model`: the snapshot and the answer (plain frozen data).
- :mod:`scheduler.plan.share`: entitlements (weighted water-filling) and decayed usage.
- :mod:`scheduler.plan.planner`: the order of service, preemption and the reasons.
"""

from scheduler.plan.model import (
    Decision,
    Licence,
    Plan,
    Policy,
    PoolState,
    Preemption,
    Quota,
    RunningTile,
    Snapshot,
    StudioPool,
    TileKey,
    Work,
)
from scheduler.plan.planner import plan
from scheduler.plan.share import decayed_usage, entitlements

__all__ = [
    "Decision",
    "Licence",
    "Plan",
    "Policy",
    "PoolState",
    "Preemption",
    "Quota",
    "RunningTile",
    "Snapshot",
    "StudioPool",
    "TileKey",
    "Work",
    "decayed_usage",
    "entitlements",
    "plan",
]
