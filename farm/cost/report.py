"""Cost reports for producers: what a show has cost, by shot, department, pool and job."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, String, cast, func, select
from sqlalchemy.orm import Session

from farm import schemas
from farm.db import models as m
from farm.db.queries import get_own_show


def _lines(session: Session, query: Select[Any]) -> list[schemas.CostLine]:
    rows = session.execute(query).all()
    lines = [
        schemas.CostLine(
            key=str(key),
            cost=round(float(cost or 0.0), 6),
            node_hours=round(float(hours or 0.0), 6),
            cpu_hours=round(float(cpu or 0.0) / 3600.0, 6),
            attempts=int(n or 0),
        )
        for key, cost, hours, cpu, n in rows
    ]
    return sorted(lines, key=lambda line: (-line.cost, line.key))


def show_cost_report(session: Session, studio_id: int, show_id: int) -> schemas.CostReport:
    """Every usage record of the show's jobs, summed the ways a producer asks."""
    show = get_own_show(session, studio_id, show_id)  # a shared show has no costs of ours
    u = m.UsageRecord
    sums = (
        func.sum(u.cost),
        func.sum(u.node_hours),
        func.sum(u.cpu_seconds),
        func.count(u.id),
    )
    where = (u.show_id == show.id, u.studio_id == studio_id)

    def grouped(key: Any, *joins: Any) -> Select[Any]:
        query = select(key, *sums).select_from(u)
        for target, on in joins:
            query = query.join(target, on)
        return query.where(*where).group_by(key)

    shot_key = (m.Sequence.name + "/" + m.Shot.name).label("shot")
    by_shot = _lines(
        session,
        grouped(
            shot_key,
            (m.Shot, m.Shot.id == u.shot_id),
            (m.Sequence, m.Sequence.id == m.Shot.sequence_id),
        ),
    )
    job_key = (m.Job.name + " #" + cast(m.Job.id, String)).label("job")
    by_job = _lines(session, grouped(job_key, (m.Job, m.Job.id == u.job_id)))
    total_cost, total_hours, _, _ = session.execute(select(*sums).where(*where)).one()
    return schemas.CostReport(
        show=show.name,
        currency="USD",
        total=round(float(total_cost or 0.0), 6),
        node_hours=round(float(total_hours or 0.0), 6),
        by_shot=by_shot,
        by_department=_lines(session, grouped(u.department)),
        by_pool=_lines(session, grouped(u.pool)),
        by_job=by_job,
    )
