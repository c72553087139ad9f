"""Live events (issue 22 item 5): every change of a job, its layers, frames and tiles reaches the
SSE stream once and in order, also across a reconnect; another studio sees none of it; event
ids of a studio commit in order under concurrent writers; ``farm watch`` and the SDK follow it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from farm import schemas
from farm.api.app import create_app
from farm.api.context import FarmContext
from farm.db import events
from farm.db import models as m
from farm.db.session import Database
from farm.errors import NotFound
from farm.states import ALLOWED, TileState
from farm.storage import DiskStore
from studio_client import Client
from studio_client.cli import main
from studio_client.cli.watch import LiveJob
from studio_client.events import parse
from tests.factories import StudioUser, make_shot, make_studio, small_camera


@pytest.fixture
def api(db: Database, tmp_path: Path) -> Iterator[TestClient]:
    context = FarmContext(db=db, store=DiskStore(tmp_path / "blobs"), output_root=tmp_path / "out")
    with TestClient(create_app(context)) as client:
        yield client


def submit(api: TestClient, db: Database, who: StudioUser, shot: str = "sh010") -> int:
    """Through the API: a noop layer ``a`` (2 frames of 2 tiles), ``b`` frame by frame after it."""
    spec = {
        "name": "events",
        "shot_id": make_shot(db, who, shot=shot),
        "frames": {"first": 1, "last": 2},
        "resolution": {"width": 64, "height": 48},
        "camera": small_camera().model_dump(),
        "layers": [
            {"name": "a", "kind": "noop", "pool": "cpu", "tiles": {"cols": 2, "rows": 1}},
            {
                "name": "b",
                "kind": "noop",
                "pool": "cpu",
                "depends_on": ["a"],
                "tiles": {"cols": 1, "rows": 2},
            },
        ],
    }
    answer = api.post("/jobs", json=spec, headers=who.headers)
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def sse(api: TestClient, path: str, who: StudioUser, **headers: str) -> list[schemas.EventOut]:
    """A stream read to its end (``wait=0``: what there is now), parsed as the SDK does."""
    answer = api.get(path, headers={**who.headers, **headers})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/event-stream")
    messages = list(parse(answer.text.splitlines()))
    assert messages[-1].comment is not None and messages[-1].comment.startswith("end ")
    dispatched = [msg for msg in messages if msg.data]
    found = [schemas.EventOut.model_validate_json(msg.data) for msg in dispatched]
    assert [(msg.event, msg.id) for msg in dispatched] == [(e.kind, str(e.id)) for e in found]
    return found


class _Cut(httpx.SyncByteStream):
    """A response body that breaks after ``events`` events, as a dropped connection does."""

    def __init__(self, inner: httpx.SyncByteStream, events: int) -> None:
        self.inner, self.events = inner, events

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        for chunk in self.inner:
            yield chunk
            sent += chunk.count(b"\nid: ")
            if sent >= self.events:
                raise httpx.ReadError("connection reset (test)")

    def close(self) -> None:
        self.inner.close()


class DropOnce(httpx.BaseTransport):
    """The app's transport, except that the first event stream is cut after ``events`` events."""

    def __init__(self, inner: httpx.BaseTransport, events: int) -> None:
        self.inner, self.events = inner, events
        self.streams: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if not request.url.path.endswith("/events"):
            return response
        self.streams.append(request)
        if len(self.streams) > 1:
            return response
        assert isinstance(response.stream, httpx.SyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_Cut(response.stream, self.events),
            request=request,
        )


def client_for(api: TestClient, who: StudioUser, transport: Any = None) -> Client:
    return Client("http://testserver", who.token, transport=transport or api._transport)


def in_thread(target: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # surfaced by the test after join
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def histories(found: list[schemas.EventOut]) -> dict[str, dict[Any, list[str]]]:
    """Every state each tile, frame, layer and the job went through, in event order."""
    out: dict[str, dict[Any, list[str]]] = {"tile": {}, "frame": {}, "layer": {}, "job": {}}
    for event in found:
        items = event.payload.get("tiles", event.payload.get("frames", event.payload.get("layers")))
        if event.kind == "tiles_planned":
            for tile_id, *_ in items:
                out["tile"].setdefault(tile_id, []).append(TileState.PENDING.value)
        elif event.kind == "tiles":
            for tile_id, state, _ in items:
                out["tile"].setdefault(tile_id, []).append(state)
        elif event.kind == "frames":
            for _, layer, number, state in items:
                out["frame"].setdefault((layer, number), []).append(state)
        elif event.kind == "layers":
            for _, layer, state in items:
                out["layer"].setdefault(layer, []).append(state)
        elif event.kind == "job_state":
            out["job"].setdefault(event.job_id, []).append(event.payload["state"])
    return out


# ----------------------------------------------------------------------------- a job, live
@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
def test_every_change_arrives_once_in_order_across_a_reconnect(
    api: TestClient, db: Database, tmp_path: Path
) -> None:
    """``client.wait(on_event=...)`` follows the job's stream while the dispatcher runs it; the
    first connection is cut after 3 events and the SDK resumes with Last-Event-ID. What it saw
    is the job's whole stream, each event once, and replaying it gives every state the job,
    its layers, frames and tiles have in the database."""
    from scheduler.dispatch.dispatcher import Dispatcher

    who = make_studio(db, "alpha")
    job_id = submit(api, db, who)
    dispatcher = Dispatcher(db, DiskStore(tmp_path / "blobs"), tmp_path / "out")
    cut = DropOnce(api._transport, events=3)
    seen: list[schemas.EventOut] = []
    with client_for(api, who, cut) as client:
        runner, errors = in_thread(lambda: dispatcher.run_until_done([job_id], timeout_s=120))
        finished = client.wait(job_id, timeout_s=120, on_event=seen.append)
        runner.join(timeout=120)
        assert not errors and not runner.is_alive()
        assert finished.state == TileState.DONE

        whole = list(client.events(job_id, follow=False))
        assert [e.id for e in seen] == [e.id for e in whole]  # each once, in order
        assert sorted({e.id for e in whole}) == [e.id for e in whole]
        assert len(cut.streams) >= 2 and "last-event-id" not in cut.streams[0].headers
        assert cut.streams[1].headers["last-event-id"] == str(seen[2].id)
        assert whole[0].kind == "job_submitted"
        assert (whole[-1].kind, whole[-1].payload) == ("job_state", {"state": "done"})
        assert {e.job_id for e in whole} == {job_id}
        # Resuming after the end: nothing more, and the stream says the job is over.
        rest = client.events(job_id, after=whole[-1].id)
        assert list(rest) == [] and rest.ended
        detail = client.job(job_id)

    seen_states = histories(whole)
    tiles = seen_states["tile"]
    assert len(tiles) == 2 * 2 + 2 * 2  # two frames of two tiles in each layer
    assert all(path == ["pending", "running", "done"] for path in tiles.values()), tiles
    for path in tiles.values():
        assert all((TileState(a), TileState(b)) in ALLOWED for a, b in pairwise(path))
    for kind in ("frame", "layer", "job"):
        for key, path in seen_states[kind].items():
            assert all(a != b for a, b in pairwise(path)), (kind, key, path)
            assert path[-1] == "done", (kind, key, path)
    assert set(seen_states["frame"]) == {(name, n) for name in "ab" for n in (1, 2)}
    assert set(seen_states["layer"]) == {"a", "b"}
    assert seen_states["job"] == {job_id: ["pending", "running", "done"]}

    live = LiveJob(detail)
    for event in whole:
        live.apply(event)
    live.recount()
    assert live.job.state == detail.state
    for replayed, stored in zip(live.job.layers, detail.layers, strict=True):
        assert replayed.state == stored.state
        assert replayed.tile_counts == stored.tile_counts
        assert [(f.number, f.state) for f in replayed.frames] == [
            (f.number, f.state) for f in stored.frames
        ]
        for ours, theirs in zip(replayed.frames, stored.frames, strict=True):
            assert [(t.index, t.rect, t.state) for t in ours.tiles] == [
                (t.index, t.rect, t.state) for t in theirs.tiles
            ]
    # The first frame of a layer nothing depends on, as the events tell it.
    needed = {name for layer in detail.layers for name in layer.depends_on}
    outputs = {layer.name for layer in detail.layers} - needed
    assert outputs and outputs != {"a", "b"}  # one layer waits on the other
    first = next(
        e.created_at
        for e in whole
        if e.kind == "frames"
        and any(layer in outputs and state == "done" for _, layer, _, state in e.payload["frames"])
    )
    assert live.first_frame_at == first
    timing = live.timing(detail)
    assert timing is not None and timing.startswith("first frame done ")


@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
def test_farm_watch_draws_the_grid_and_exits_0_when_done_1_when_cancelled(
    api: TestClient,
    db: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from scheduler.dispatch.dispatcher import Dispatcher

    who = make_studio(db, "alpha")
    done = submit(api, db, who)
    cancelled = submit(api, db, who, shot="sh020")
    answer = api.post(f"/jobs/{cancelled}/cancel", headers=who.headers)
    assert answer.status_code == 202, answer.text
    Dispatcher(db, DiskStore(tmp_path / "blobs"), tmp_path / "out").run_until_done(
        [done, cancelled], timeout_s=120
    )
    monkeypatch.setattr("studio_client.cli.watch.make_client", lambda _u, _t: client_for(api, who))

    assert main(["watch", str(done)]) == 0
    printed = capsys.readouterr().out
    assert f"job {done} events: done" in printed
    assert "tiles of a (live)" in printed and "tiles of b (live)" in printed
    assert printed.count("■") >= 8  # every tile of the last frame drawn
    assert "4/4" in printed  # tiles done of each layer
    assert "first frame done " in printed and "s after the submit" in printed

    assert main(["watch", str(cancelled)]) == 1
    assert f"job {cancelled} cancelled" in capsys.readouterr().out


# ----------------------------------------------------------------------------- resuming
def test_last_event_id_and_after_resume_without_loss_or_duplicates(
    api: TestClient, db: Database
) -> None:
    who = make_studio(db, "alpha")
    jobs = [submit(api, db, who, shot=f"sh{i}") for i in range(3)]
    for job_id in jobs:
        answer = api.patch(f"/jobs/{job_id}", json={"priority": 70}, headers=who.headers)
        assert answer.status_code == 200, answer.text
    whole = sse(api, "/events", who)
    assert [(e.kind, e.job_id) for e in whole] == [("job_submitted", j) for j in jobs] + [
        ("job_priority", j) for j in jobs
    ]
    for k, event in enumerate(whole):
        assert sse(api, "/events", who, **{"Last-Event-ID": str(event.id)}) == whole[k + 1 :]
        assert sse(api, f"/events?after={event.id}", who) == whole[k + 1 :]
    # A reconnecting EventSource sends the URL it started with: its Last-Event-ID wins.
    assert sse(api, "/events?after=0", who, **{"Last-Event-ID": str(whole[2].id)}) == whole[3:]
    one = sse(api, f"/jobs/{jobs[1]}/events", who)
    assert [e.id for e in one] == [e.id for e in whole if e.job_id == jobs[1]]

    cut = DropOnce(api._transport, events=2)
    with client_for(api, who, cut) as client:
        stream = client.events(follow=False)
        assert [e.id for e in stream] == [e.id for e in whole]
        assert stream.reconnects == 1 and stream.last_id == whole[-1].id
    assert cut.streams[1].headers["last-event-id"] == str(whole[1].id)


def test_a_quiet_stream_waits_for_the_next_event(api: TestClient, db: Database) -> None:
    """With ``wait``, a stream stays open and sends an event committed after it began."""
    who = make_studio(db, "alpha")
    job_id = submit(api, db, who)
    first = sse(api, "/events", who)

    def later() -> None:
        time.sleep(0.3)  # most likely after the stream's first look (either way it must come)
        with db.session() as session:
            session.add(
                m.Event(studio_id=who.studio_id, job_id=job_id, kind="job_rush", payload={})
            )

    with api.stream(
        "GET", "/events?wait=60", headers={**who.headers, "Last-Event-ID": str(first[-1].id)}
    ) as answer:
        lines = answer.iter_lines()
        writer, errors = in_thread(later)
        got = next(msg for msg in parse(lines) if msg.data)
        writer.join()
    assert not errors
    assert schemas.EventOut.model_validate_json(got.data).kind == "job_rush"


# ----------------------------------------------------------------------------- isolation
def test_another_studios_job_is_404_and_its_stream_holds_only_its_own(
    api: TestClient, db: Database
) -> None:
    alpha, beta = make_studio(db, "alpha"), make_studio(db, "beta")
    theirs = submit(api, db, alpha)
    ours = submit(api, db, beta)
    for job_id in (theirs, 999_999):
        for headers in ({}, {"Last-Event-ID": "0"}):
            answer = api.get(f"/jobs/{job_id}/events", headers={**beta.headers, **headers})
            assert answer.status_code == 404, answer.text
            assert schemas.ErrorOut.model_validate(answer.json()).message == (
                f"job {job_id} not found"
            )
    assert {e.job_id for e in sse(api, "/events", beta)} == {ours}
    assert {e.job_id for e in sse(api, "/events", alpha)} == {theirs}
    with client_for(api, beta) as client, pytest.raises(NotFound):
        list(client.events(theirs, follow=False))


def test_the_event_routes_declare_their_stream_and_errors(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    job_stream = paths["/jobs/{job_id}/events"]["get"]
    for status in ("401", "404", "422", "503"):  # answered as JSON, before any stream
        error = job_stream["responses"][status]["content"]
        assert error == {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
    for operation in (job_stream, paths["/events"]["get"]):
        content = operation["responses"]["200"]["content"]["text/event-stream"]
        data = content["itemSchema"]["properties"]["data"]
        assert data["contentSchema"] == {"$ref": "#/components/schemas/EventOut"}
        names = {p["name"] for p in operation["parameters"]}
        assert {"after", "wait", "Last-Event-ID"} <= names


# ----------------------------------------------------------------------------- commit order
@pytest.mark.parametrize("writer", ["orm", "core"])
def test_a_studios_event_ids_commit_in_order(db: Database, writer: str) -> None:
    """A writer that drew a bigger id waits for one that drew a smaller id to commit, so a
    reader resuming after an id never skips one (``farm.db.events``). ORM inserts are the
    API's (``session.add``), Core inserts the dispatcher's (``events.append``)."""
    who = make_studio(db, "alpha")
    other = make_studio(db, "beta")

    def insert(session: Any, studio_id: int, kind: str) -> None:
        if writer == "orm":
            session.add(m.Event(studio_id=studio_id, kind=kind, payload={}))
            session.flush()
        else:
            row = {"studio_id": studio_id, "job_id": None, "kind": kind, "payload": {}}
            events.append(session.connection(), [row])

    def second_writer(studio_id: int, kind: str) -> Callable[[], None]:
        def run() -> None:
            with db.session() as session:
                insert(session, studio_id, kind)

        return run

    with db.sessions() as first, first.begin():
        insert(first, who.studio_id, "first")
        later, errors = in_thread(second_writer(who.studio_id, "second"))
        later.join(timeout=0.5)
        assert later.is_alive(), "the second writer did not wait for the first to commit"
        if db.engine.dialect.name == "postgresql":  # the lock is the studio's, not the farm's
            elsewhere, other_errors = in_thread(second_writer(other.studio_id, "elsewhere"))
            elsewhere.join(timeout=30)
            assert not elsewhere.is_alive() and not other_errors
        with db.session() as reader:
            assert events.read(reader, who.studio_id) == []
    later.join(timeout=30)
    assert not later.is_alive() and not errors
    with db.session() as reader:
        found = events.read(reader, who.studio_id)
    assert [e.kind for e in found] == ["first", "second"]
    assert found[0].id < found[1].id
