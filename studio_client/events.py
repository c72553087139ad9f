"""Following the farm's live events: a server-sent-events reader that reconnects where it left off.

The farm streams ``GET /events`` (a studio) and ``GET /jobs/{id}/events`` (a job) as
``text/event-stream`` (see ``farm.api.routes.events``). Each event carries its id; when the
connection drops, :class:`EventStream` connects again with the last id it saw as
``Last-Event-ID``, so the caller gets every event once and in order. The farm ends a stream on
purpose with a ``: end <why>`` comment: ``end job-ended`` (the job is over: stop) or ``end idle``
(nothing new for a while: connect again when following).

Experimental: may change.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import httpx

from farm import schemas
from farm.errors import Unavailable
from studio_client._http import Http

END_JOB = "end job-ended"
FOLLOW_WAIT_S = 60.0
"""How long the farm keeps a quiet stream open before it ends it and we connect again."""
RECONNECT_TRIES = 5
"""Connections in a row that may fail (with nothing received) before :class:`Unavailable`."""
RECONNECT_DELAY_S = 0.5
"""The first pause after a failed connection; it doubles with each failure in a row, to 8 s."""
STREAM_TIMEOUT = httpx.Timeout(30.0, read=45.0)
"""A quiet stream still gets a keep-alive ping every 15 s: 45 s without a byte means the
connection is dead (then we connect again)."""


@dataclass
class Message:
    """One dispatched server-sent event (``data`` lines joined), or an ``end`` comment."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    comment: str | None = None


@dataclass
class _Block:
    event: str = ""
    data: list[str] = field(default_factory=list)
    id: str | None = None
    comments: list[str] = field(default_factory=list)


def parse(lines: Iterable[str]) -> Iterator[Message]:
    """Messages from ``text/event-stream`` lines, as the WHATWG parser reads them.

    A blank line ends a message; ``data`` lines are joined with newlines; a message without
    data (a keep-alive ping, a ``retry``) is not dispatched, except an ``end ...`` comment,
    which is. Unknown fields are ignored.
    """
    block = _Block()
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            yield from _dispatch(block)
            block = _Block()
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "":
            block.comments.append(value)
        elif name == "data":
            block.data.append(value)
        elif name == "event":
            block.event = value
        elif name == "id" and "\0" not in value:
            block.id = value
    yield from _dispatch(block)


def _dispatch(block: _Block) -> Iterator[Message]:
    for comment in block.comments:
        if comment.startswith("end"):
            yield Message(event="", comment=comment)
    if block.data:
        yield Message(event=block.event or "message", data="\n".join(block.data), id=block.id)


class EventStream:
    """The events of a studio (``job_id`` None) or of one job, after ``after``, followed live.

    Iterate it for :class:`~farm.schemas.EventOut` objects. Without ``follow`` it stops once
    it has what the farm has now; with it, a job's stream stops when the job ends and a
    studio's never does (break out of the loop). ``last_id`` is the last event's id, where a
    later stream may resume.

    Args:
        http: the client's connection.
        job_id: the job, or None for the whole studio.
        after: start after this event id (None: from the first).
        follow: wait for new events.
        wait_s: how long the farm keeps a quiet stream open (then we connect again).
        until: a ``time.monotonic()`` after which a quiet stream is not opened again (the
            iteration then stops, the job still running).
    """

    def __init__(
        self,
        http: Http,
        job_id: int | None = None,
        *,
        after: int | None = None,
        follow: bool = True,
        wait_s: float = FOLLOW_WAIT_S,
        until: float | None = None,
    ) -> None:
        self._http = http
        self.path = "/events" if job_id is None else f"/jobs/{job_id}/events"
        self.last_id = after
        self.follow = follow
        self.wait_s = wait_s
        self.until = until
        self.ended = False
        """True once the farm said the job ended (``end job-ended``)."""
        self.reconnects = 0
        """Connections made again after one dropped (not counting idle ends)."""

    def __iter__(self) -> Iterator[schemas.EventOut]:
        failures = 0
        while True:
            end: str | None = None
            received = False
            error: Unavailable | None = None
            try:
                for message in self._connect():
                    if message.comment is not None:
                        end = message.comment
                        continue
                    event = schemas.EventOut.model_validate(json.loads(message.data))
                    self.last_id = event.id
                    received = True
                    yield event
            except Unavailable as exc:
                error = exc
            if end == END_JOB:
                self.ended = True
                return
            if end is not None:  # the farm ended it on purpose: caught up, or quiet a while
                if not self.follow or self._wait() <= 0:
                    return
                failures = 0
                continue
            # Dropped, or closed without saying why: connect again after the last id seen.
            failures = 0 if received else failures + 1
            if failures >= RECONNECT_TRIES:
                raise error or Unavailable(
                    f"the farm closed the event stream {self.path} {failures} times in a row"
                )
            if failures:
                time.sleep(min(RECONNECT_DELAY_S * 2 ** (failures - 1), 8.0))
            self.reconnects += 1

    def _wait(self) -> float:
        """Seconds the farm may keep the next connection open with nothing to send."""
        if not self.follow:
            return 0.0
        if self.until is None:
            return self.wait_s
        return max(0.0, min(self.wait_s, self.until - time.monotonic()))

    def _connect(self) -> Iterator[Message]:
        params = {"wait": self._wait()}
        headers = {"Accept": "text/event-stream"}
        if self.last_id is not None:
            headers["Last-Event-ID"] = str(self.last_id)
        with self._http.stream(
            "GET", self.path, params=params, headers=headers, timeout=STREAM_TIMEOUT
        ) as response:
            yield from parse(response.iter_lines())
