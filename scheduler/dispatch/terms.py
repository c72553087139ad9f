"""The farm's sharing terms as the dispatcher reads them: pools, quotas, licences, usage.

Small tables, re-read every :data:`TERMS_EVERY_S` so an operator's change applies on the next
planning tick without a restart. Decayed usage lives in memory and is saved every
:data:`SAVE_USAGE_EVERY_S`, so a restart forgets at most that much history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from farm.db import models as m
from farm.db.pools import pool_shapes
from scheduler.plan import Licence, Quota, StudioPool, decayed_usage
from scheduler.plan.fit import PoolShape

TERMS_EVERY_S = 0.5
SAVE_USAGE_EVERY_S = 10.0


@dataclass
class Terms:
    """Pools, quotas, licence totals and studio names, as of the last read."""

    pools: dict[str, PoolShape] = field(default_factory=dict)
    quotas: dict[StudioPool, Quota] = field(default_factory=dict)
    licences: dict[str, tuple[int, dict[int, int]]] = field(default_factory=dict)
    """Licence name -> (seats, guarantee per studio)."""
    studio_names: dict[int, str] = field(default_factory=dict)
    prices: dict[str, tuple[float, int, str]] = field(default_factory=dict)
    """Pool -> (price per node-hour, cores per node, currency): what usage records cost."""

    def licence_view(self, in_use: dict[str, dict[int, int]]) -> dict[str, Licence]:
        """The planner's licences: these totals with the seats held now."""
        return {
            name: Licence(total=total, in_use=dict(in_use.get(name, {})), guarantees=guarantees)
            for name, (total, guarantees) in self.licences.items()
        }


def read_terms(session: Session) -> Terms:
    """Five small queries; none grows with the number of jobs or tiles."""
    quotas = {
        (q.studio_id, q.pool): Quota(guarantee=q.guarantee, weight=q.weight, ceiling=q.ceiling)
        for q in session.scalars(select(m.Quota))
    }
    licences = {
        row.name: (row.count, {g.studio_id: g.guarantee for g in row.guarantees})
        for row in session.scalars(select(m.Licence).options(selectinload(m.Licence.guarantees)))
    }
    names = {i: name for i, name in session.execute(select(m.Studio.id, m.Studio.name))}
    prices = {
        p.name: (p.price_per_node_hour, p.cpus_per_node, p.currency)
        for p in session.scalars(select(m.Pool))
    }
    return Terms(
        pools={shape.name: shape for shape in pool_shapes(session)},
        quotas=quotas,
        licences=licences,
        studio_names=names,
        prices=prices,
    )


def read_usage(
    session: Session, *, half_life_s: float, now: datetime
) -> tuple[dict[StudioPool, float], dict[StudioPool, float]]:
    """Usage and owed share per (studio, pool) as last saved, decayed to ``now``.

    Nothing ran under this farm while no dispatcher was up, so both just decay.
    """
    usage: dict[StudioPool, float] = {}
    owed: dict[StudioPool, float] = {}
    for row in session.scalars(select(m.FairShareUsage)):
        saved = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=UTC)
        dt = max(0.0, (now - saved).total_seconds())
        usage[(row.studio_id, row.pool)] = decayed_usage(row.usage_slot_s, 0, dt, half_life_s)
        owed[(row.studio_id, row.pool)] = decayed_usage(row.owed_slot_s, 0, dt, half_life_s)
    return usage, owed


def save_usage(
    session: Session,
    usage: dict[StudioPool, float],
    owed: dict[StudioPool, float],
    now: datetime,
) -> None:
    """Upsert every studio's decayed usage and owed share (a few hundred rows at most)."""
    have = {(row.studio_id, row.pool): row for row in session.scalars(select(m.FairShareUsage))}
    for key in set(usage) | set(owed):
        row = have.get(key)
        if row is None:
            row = m.FairShareUsage(studio_id=key[0], pool=key[1])
            session.add(row)
        row.usage_slot_s = usage.get(key, 0.0)
        row.owed_slot_s = owed.get(key, 0.0)
        row.updated_at = now
