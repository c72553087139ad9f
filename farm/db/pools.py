"""The ``pools`` and ``licences`` tables as the pools file declares them.

:func:`sync_pools` runs at start-up (:class:`farm.api.context.FarmContext`): the file is the
truth for what nodes a pool has and what they cost. :func:`pool_shapes` reads the rows back as
the planner's :class:`~scheduler.plan.fit.PoolShape`.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from farm.db import models as m
from farm.pool_config import FarmConfig, PoolSpec
from farm.vocab import Accelerator
from scheduler.plan.fit import PoolShape

log = logging.getLogger("farm.db.pools")


def sync_pools(session: Session, config: FarmConfig) -> None:
    """Make the ``pools`` table say what ``config`` says, and set the licences it names.

    Declared pools are inserted or updated. A pool the file no longer declares is deleted
    (its quotas with it), unless layers still name it: then it stays so their history reads,
    and a warning says so. Licences named in the file get the file's count (the file wins at
    start-up); licences set only through the API are left alone.
    """
    rows = {p.name: p for p in session.scalars(select(m.Pool))}
    for spec in config.pools:
        row = rows.get(spec.name) or m.Pool(name=spec.name)
        _copy_spec(spec, row)
        session.add(row)
    declared = {spec.name for spec in config.pools}
    for name, row in rows.items():
        if name in declared:
            continue
        in_use = session.scalar(select(m.Layer.id).where(m.Layer.pool == name).limit(1))
        if in_use is None:
            session.delete(row)
        else:
            log.warning("pool %s is no longer declared but layers name it: kept", name)
    for name, count in config.licences.items():
        licence = session.get(m.Licence, name) or m.Licence(name=name)
        licence.count = count
        session.add(licence)
    session.flush()


def _copy_spec(spec: PoolSpec, row: m.Pool) -> None:
    row.accelerator = spec.ray_accelerator_type or Accelerator.NONE.value
    row.accelerator_kind = spec.accelerator
    row.price_per_node_hour = spec.price_per_node_hour
    row.currency = spec.currency
    row.cpus_per_node = spec.cores_per_node
    row.memory_gb = spec.memory_gb
    row.accelerators_per_node = spec.accelerators_per_node
    row.accelerator_memory_gb = spec.accelerator_memory_gb
    row.backfill = spec.backfill


def pool_shape(row: m.Pool) -> PoolShape:
    """One ``pools`` row as the planner sees it."""
    return PoolShape(
        name=row.name,
        accelerator=row.accelerator_kind,
        cores_per_node=row.cpus_per_node,
        memory_gb=row.memory_gb,
        accelerators_per_node=row.accelerators_per_node,
        accelerator_memory_gb=row.accelerator_memory_gb,
        backfill=row.backfill,
    )


def pool_shapes(session: Session) -> tuple[PoolShape, ...]:
    """Every pool's node shape, by name (the stable order fit breaks ties on)."""
    return tuple(pool_shape(p) for p in session.scalars(select(m.Pool).order_by(m.Pool.name)))
