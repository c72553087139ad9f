"""Jobs that wait for other jobs and for asset versions before any of their frames starts.

A job's ``after_jobs`` must all be done and each of its ``after_assets`` must have a published
version of at least ``min_version`` (one the studio may read: its own or shared). Until then
its frames stay waiting and its message says what it waits for. When everything is there the
dispatcher records it on the job (``dependencies_met``: when, and which version of each asset
it started with) and offers its frames; a job it waits for that failed or was cancelled
cancels it, with that reason. Checked every half second, for waiting jobs only: a publish is
seen within that, with no event plumbing between the API and the dispatcher.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from farm.db import models as m
from farm.db.sharing import latest_published, readable_asset
from farm.errors import NotFound
from farm.states import TileState
from scheduler.dispatch.book import JobBook

ENDED_BADLY = (TileState.FAILED.value, TileState.CANCELLED.value)


@dataclass
class Verdict:
    """What a waiting job's dependencies say now."""

    met: bool = False
    failed: str = ""
    """Why it can never start (a job it waits for failed), else empty."""
    waiting: list[str] = field(default_factory=list)
    """What it still waits for, in words."""
    assets: dict[str, int] = field(default_factory=dict)
    """Asset id -> the version id it starts with (once met)."""


def waits(job: JobBook) -> bool:
    """Does ``job`` declare anything to wait for?"""
    return bool(job.spec.after_jobs or job.spec.after_assets)


def judge(session: Session, job: JobBook) -> Verdict:
    """Read what ``job`` waits for and say whether it may start."""
    verdict = Verdict()
    if job.spec.after_jobs:
        states = dict(
            session.execute(
                select(m.Job.id, m.Job.state).where(m.Job.id.in_(job.spec.after_jobs))
            ).all()
        )
        for other in job.spec.after_jobs:
            state = states.get(other)
            if state in ENDED_BADLY:
                verdict.failed = f"job {other} it waits for is {state}"
                return verdict
            if state != TileState.DONE.value:
                verdict.waiting.append(f"job {other} ({state or 'gone'})")
    for wait in job.spec.after_assets:
        asset = readable_asset(session, job.studio_id, wait.asset_id)
        if asset is None:
            verdict.waiting.append(f"asset {wait.asset_id} (no longer shared with the studio)")
            continue
        try:
            newest = latest_published(session, job.studio_id, wait.asset_id)
        except NotFound:
            newest = None
        if newest is None or newest.version < wait.min_version:
            have = f"newest v{newest.version}" if newest else "none published"
            verdict.waiting.append(f"asset {asset.name} v{wait.min_version}+ ({have})")
        else:
            verdict.assets[str(wait.asset_id)] = newest.id
    verdict.met = not verdict.waiting
    return verdict


def record_met(session: Session, job: JobBook, verdict: Verdict) -> dict[str, Any]:
    """Write on the job that its dependencies are met, and with which asset versions; the
    caller files the returned payload as the job's ``dependencies_met`` event (with the
    tick's other events, so the events lock is taken once, last)."""
    met = {"at": datetime.now(UTC).isoformat(), "assets": verdict.assets}
    session.execute(update(m.Job).where(m.Job.id == job.id).values(dependencies_met=met))
    return met
