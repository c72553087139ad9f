"""Live events: server-sent events of a studio (``GET /events``) or of one job.

Each event is one row of the ``events`` table (:class:`farm.schemas.EventOut` as ``data``,
its kind as ``event``, its id as ``id``), sent in id order, each once. A client resumes after
the last id it saw: browsers send it back as ``Last-Event-ID`` when they reconnect, scripts may
pass ``?after=``. :mod:`farm.db.events` explains why resuming after an id never skips one.

The API and the dispatcher talk only through the database, so a stream reads the table every
:data:`POLL_S` while it has nothing to send. A stream ends on purpose with a ``: end <why>``
comment: ``end job-ended`` once the job is done, failed or cancelled and everything before that
was sent; ``end idle`` once ``wait`` seconds passed with nothing new (``wait=0``: send what
there is and end). Anything else (a dropped connection) is a cue to reconnect.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent

from farm import schemas
from farm.api.deps import Ctx, CurrentUser, Db, Id
from farm.api.errors import error_responses
from farm.db import events, queries
from farm.db.session import Database
from farm.states import TERMINAL
from farm.vocab import MAX_ID

router = APIRouter(tags=["events"])

POLL_S = 0.2
"""How often an idle stream looks for new events (the dispatcher commits every tick)."""
MAX_WAIT_S = 300
"""The longest ``wait``: a quiet stream then ends and its client reconnects (proxies and load
balancers drop connections that stay open much longer)."""
END_JOB = "end job-ended"
END_IDLE = "end idle"

After = Annotated[
    int | None,
    Query(ge=0, le=MAX_ID, description="send the events after this id (0 or none: from the first)"),
]
LastEventId = Annotated[
    int | None,
    Header(
        alias="Last-Event-ID",
        ge=0,
        le=MAX_ID,
        description="the last id a reconnecting client saw; wins over ?after=",
    ),
]
Wait = Annotated[
    float,
    Query(
        ge=0,
        le=MAX_WAIT_S,
        description="seconds to stay open for new events while there is nothing to send "
        "(0: send what there is and end); the job stream also ends when the job does",
    ),
]


def _studio(user: CurrentUser) -> int:
    return user.studio_id


def _own_job(job_id: Id, user: CurrentUser, session: Db) -> int:
    """The job's id, checked before the stream starts: another studio's job is a 404."""
    return queries.get_job_row(session, user.studio_id, job_id).id


def _json_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """:func:`error_responses` for a stream: FastAPI files a route's declared errors under its
    own media type (``text/event-stream``), but errors are answered as JSON before any stream
    starts. Declared here per route, they replace the app-wide ones (``COMMON_ERRORS``)."""
    schema = {"$ref": "#/components/schemas/ErrorOut"}
    return {
        status: {
            "description": spec["description"],
            "content": {"application/json": {"schema": schema}},
        }
        for status, spec in error_responses(*statuses).items()
    }


StudioId = Annotated[int, Depends(_studio)]
OwnJob = Annotated[int, Depends(_own_job)]


@router.get("/events", response_class=EventSourceResponse, responses=_json_errors(401, 422, 503))
async def studio_events(
    studio_id: StudioId,
    context: Ctx,
    after: After = None,
    last_event_id: LastEventId = None,
    wait: Wait = 0,
) -> AsyncIterator[schemas.EventOut]:
    """Every event of the caller's studio, oldest first: its jobs' changes and its published
    asset versions. Never another studio's.

    Experimental: may change.
    """

    def read(cursor: int) -> tuple[list[schemas.EventOut], bool]:
        with context.db.session() as session:
            return events.read(session, studio_id, after=cursor), False

    async for item in _stream(read, _start(after, last_event_id), wait):
        yield item  # type: ignore[misc]  # see _stream


@router.get(
    "/jobs/{job_id}/events",
    response_class=EventSourceResponse,
    responses=_json_errors(401, 404, 422, 503),
)
async def job_events(
    job_id: OwnJob,
    studio_id: StudioId,
    context: Ctx,
    after: After = None,
    last_event_id: LastEventId = None,
    wait: Wait = 0,
) -> AsyncIterator[schemas.EventOut]:
    """Every change of one job, its layers, frames and tiles, oldest first; the stream ends
    once the job has ended and all its events before that were sent.

    Experimental: may change.
    """

    def read(cursor: int) -> tuple[list[schemas.EventOut], bool]:
        return _read_job(context.db, studio_id, job_id, cursor)

    async for item in _stream(read, _start(after, last_event_id), wait):
        yield item  # type: ignore[misc]  # see _stream


def _start(after: int | None, last_event_id: int | None) -> int:
    """Where a stream starts: a reconnecting client's ``Last-Event-ID`` wins over the URL's
    ``?after=`` (an EventSource reconnects with the same URL)."""
    if last_event_id is not None:
        return last_event_id
    return after or 0


def _read_job(
    db: Database, studio_id: int, job_id: int, cursor: int
) -> tuple[list[schemas.EventOut], bool]:
    """The job's next events, and whether it had ended before they were read.

    The state is read first: a job seen ended committed its last batch before, so that
    batch's events are visible to the events query after it (each statement sees every
    commit made before it starts, on PostgreSQL and SQLite alike).
    """
    with db.session() as session:
        state = events.job_state(session, studio_id, job_id)
        found = events.read(session, studio_id, job_id=job_id, after=cursor)
    return found, state is None or state in TERMINAL


async def _stream(
    read: Callable[[int], tuple[list[schemas.EventOut], bool]], cursor: int, wait_s: float
) -> AsyncIterator[ServerSentEvent]:
    """Send the events after ``cursor`` as they come; end as the module docstring says.

    The routes are annotated as streams of :class:`~farm.schemas.EventOut`, so the OpenAPI
    gives the schema of each event's ``data``; they yield these ``ServerSentEvent`` objects
    (the id and kind set), which FastAPI sends as they are.

    Reads run in a worker thread (the database is synchronous); sleeping between reads is a
    cancellation point, so a client that goes away ends the stream at once.
    """
    quiet_since = time.monotonic()
    while True:
        found, ended = await anyio.to_thread.run_sync(read, cursor)
        for item in found:
            yield ServerSentEvent(data=item, event=item.kind, id=str(item.id))
            cursor = item.id
        if len(found) == events.READ_LIMIT:
            quiet_since = time.monotonic()
            continue  # a backlog: read on at once
        if ended:
            yield ServerSentEvent(comment=END_JOB)
            return
        now = time.monotonic()
        if found:
            quiet_since = now
        if now - quiet_since >= wait_s:
            yield ServerSentEvent(comment=END_IDLE)
            return
        await anyio.sleep(POLL_S)
