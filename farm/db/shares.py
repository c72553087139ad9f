"""Reads and writes of the farm's sharing rules: quotas, licences, rush and priority.

Quotas, licences and rush are the operator's (every studio's); a job's priority is its own
studio's. The dispatcher reads these tables on its next tick, so a change applies then.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from farm import schemas
from farm.db import models as m
from farm.db.queries import get_job_row
from farm.errors import Conflict, InvalidSpec, NotFound
from farm.states import IllegalTransition, JobAction, TileState, job_control


def studio_by_name(session: Session, name: str) -> m.Studio:
    studio = session.scalar(select(m.Studio).where(m.Studio.name == name))
    if studio is None:
        raise NotFound(f"no studio named {name!r}")
    return studio


def _check_pool(session: Session, pool: str) -> None:
    if session.get(m.Pool, pool) is None:
        names = ", ".join(session.scalars(select(m.Pool.name).order_by(m.Pool.name)))
        raise InvalidSpec(f"pool: unknown pool {pool!r}; pools are {names}", field="pool")


# ----------------------------------------------------------------------------- quotas
def list_quotas(session: Session) -> list[m.Quota]:
    """Every quota, by studio then pool."""
    return list(
        session.scalars(
            select(m.Quota)
            .options(selectinload(m.Quota.studio_row))
            .order_by(m.Quota.studio_id, m.Quota.pool)
        )
    )


def set_quota(session: Session, studio: str, pool: str, spec: schemas.QuotaCreate) -> m.Quota:
    """Create or replace ``studio``'s quota on ``pool``.

    Raises:
        NotFound: no such studio.
        InvalidSpec: no such pool (the message lists the pools).
    """
    row = studio_by_name(session, studio)
    _check_pool(session, pool)
    quota = session.get(m.Quota, (row.id, pool)) or m.Quota(studio_id=row.id, pool=pool)
    quota.guarantee = spec.guarantee
    quota.weight = spec.weight
    quota.ceiling = spec.ceiling
    quota.updated_at = m.utcnow()
    session.add(quota)
    session.flush()
    session.refresh(quota)
    return quota


def delete_quota(session: Session, studio: str, pool: str) -> None:
    """Drop a quota: the studio goes back to weight 1, no guarantee, no ceiling on that pool."""
    row = studio_by_name(session, studio)
    quota = session.get(m.Quota, (row.id, pool))
    if quota is None:
        raise NotFound(f"studio {studio!r} has no quota on pool {pool!r}")
    session.delete(quota)
    session.flush()


# ----------------------------------------------------------------------------- licences
def licence_out(licence: m.Licence) -> schemas.LicenceOut:
    return schemas.LicenceOut(
        name=licence.name,
        count=licence.count,
        guarantees={g.studio_row.name: g.guarantee for g in licence.guarantees},
    )


def list_licences(session: Session) -> list[schemas.LicenceOut]:
    licences = session.scalars(
        select(m.Licence)
        .options(selectinload(m.Licence.guarantees).selectinload(m.LicenceGuarantee.studio_row))
        .order_by(m.Licence.name)
    )
    return [licence_out(licence) for licence in licences]


def set_licence(session: Session, name: str, spec: schemas.LicenceCreate) -> schemas.LicenceOut:
    """Create or replace a licence counter and its per-studio guarantees.

    Raises:
        InvalidSpec: a bad licence name, or a guarantee for a studio that does not exist.
    """
    try:
        schemas.check_name(name)
    except ValueError as exc:
        raise InvalidSpec(f"name: {exc}", field="name") from exc
    studios = {}
    for studio in spec.guarantees:
        row = session.scalar(select(m.Studio).where(m.Studio.name == studio))
        if row is None:
            field = f"guarantees.{studio}"
            raise InvalidSpec(f"{field}: no studio named {studio!r}", field=field)
        studios[studio] = row
    licence = session.get(m.Licence, name) or m.Licence(name=name)
    licence.count = spec.count
    licence.guarantees = [
        m.LicenceGuarantee(licence=name, studio_id=studios[studio].id, guarantee=seats)
        for studio, seats in sorted(spec.guarantees.items())
        if seats > 0
    ]
    session.add(licence)
    session.flush()
    session.refresh(licence)
    return licence_out(licence)


# ----------------------------------------------------------------------------- jobs
def set_rush(session: Session, job_id: int, rush: bool) -> m.Job:
    """Mark any studio's job rush (or not): an operator's call, so no studio scoping."""
    job = session.get(m.Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    _allowed(job, JobAction.RUSH, by="an operator")
    job.rush = rush
    session.add(
        m.Event(studio_id=job.studio_id, job_id=job.id, kind="job_rush", payload={"rush": rush})
    )
    session.flush()
    return job


def set_priority(session: Session, studio_id: int, job_id: int, priority: int) -> m.Job:
    """Change the priority of one of ``studio_id``'s jobs (another studio's is a 404)."""
    job = get_job_row(session, studio_id, job_id)
    _allowed(job, JobAction.PRIORITY, by="the studio", priority=priority)
    job.priority = priority
    session.add(
        m.Event(
            studio_id=studio_id, job_id=job.id, kind="job_priority", payload={"priority": priority}
        )
    )
    session.flush()
    return job


def _allowed(job: m.Job, action: JobAction, *, by: str, priority: int | None = None) -> None:
    """Raise Conflict when the job-control rule refuses ``action`` (a job that has ended)."""
    try:
        job_control(action, state=TileState(job.state), paused=job.paused, by=by, priority=priority)
    except IllegalTransition as exc:
        raise Conflict(f"job {job.id}: {exc}") from exc
