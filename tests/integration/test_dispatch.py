"""Jobs through the real dispatcher on a local Ray: progressive assembly, retries, blocked frames.

Tests that need to act between two stages hold a pool back with :class:`GatedDispatcher` (the
planner then sees no free slots there), change something in the store, and let it go.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from farm import schemas
from farm.db import models as m
from farm.db import queries
from farm.db.session import Database
from farm.exr.io import read_exr
from farm.frame_check import check_job_frames
from farm.particles.cache import read_cache
from farm.particles.camera import Camera
from farm.particles.render import render_frame
from farm.storage import DiskStore
from farm.vocab import AOV_CHANNELS
from scheduler.dispatch import sheets
from scheduler.dispatch.dispatcher import Dispatcher
from scheduler.tiles import CostMap, TilePlan, balanced_plan
from tests.conftest import Farm
from tests.factories import job_spec, make_shot, make_studio, write_seed
from tests.invariants import assert_tiles_accounted

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]


class GatedDispatcher(Dispatcher):
    """A dispatcher that sends nothing to the pools in ``gated`` until they are removed."""

    gated: set[str] = set()  # noqa: RUF012

    def _target(self, pool: str, *, batched: bool = True) -> int:
        return 0 if pool in self.gated else super()._target(pool, batched=batched)


def submit(
    db: Database, store: DiskStore, tmp_path: Path, **spec_args: object
) -> tuple[int, schemas.JobSpec]:
    who = make_studio(db, "alpha")
    shot_id = make_shot(db, who)
    put = store.put_file(write_seed(tmp_path / "seed.dpc"))
    with db.session() as session:
        user = session.get_one(m.User, who.user_id)
        queries.record_blob(
            session,
            who.studio_id,
            content_hash=put.content_hash,
            size_bytes=put.size_bytes,
            storage_key=put.storage_key,
        )
        show_id = session.get_one(m.Shot, shot_id).show_id
        version = queries.register_asset_version(
            session,
            user,
            show_id,
            schemas.AssetVersionCreate(
                asset="seed", kind="particle_seed", content_hash=put.content_hash
            ),
        )
        spec = job_spec(shot_id, version.id, **spec_args)  # type: ignore[arg-type]
        job = queries.submit_job(session, user, spec)
        return job.id, spec


def tick_until(
    dispatcher: Dispatcher, condition: Callable[[], bool], timeout_s: float = 120
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        dispatcher.tick()
        assert time.monotonic() < deadline, "condition not reached in time"


def tiles_of(db: Database, job_id: int, layer: str, frame: int | None = None) -> list[m.Tile]:
    """The tiles of a layer of a job (of one frame), by frame then index."""
    query = (
        select(m.Tile)
        .join(m.Layer, m.Layer.id == m.Tile.layer_id)
        .join(m.Frame, m.Frame.id == m.Tile.frame_id)
        .where(m.Tile.job_id == job_id, m.Layer.name == layer)
        .order_by(m.Frame.number, m.Tile.index)
    )
    if frame is not None:
        query = query.where(m.Frame.number == frame)
    with db.session() as session:
        return list(session.scalars(query))


def frame_state(db: Database, job_id: int, layer: str, frame: int) -> str:
    with db.session() as session:
        return session.execute(
            select(m.Frame.state)
            .join(m.Layer, m.Layer.id == m.Frame.layer_id)
            .where(m.Layer.job_id == job_id, m.Layer.name == layer, m.Frame.number == frame)
        ).scalar_one()


@pytest.mark.parametrize("execution", ["task", "session"])
def test_job_runs_to_exr_frames_equal_to_a_whole_frame_render(
    farm: Farm, tmp_path: Path, execution: str
) -> None:
    """Bit for bit the whole-frame render, whether tiles run as stateless tasks or in render
    sessions that keep each frame's cache between tiles."""
    db, store, out = farm
    job_id, spec = submit(
        db, store, tmp_path, frames=(1, 3), size=(61, 37), grid=(4, 3), execution=execution
    )
    dispatcher = Dispatcher(db, store, out)
    dispatcher.run_until_done([job_id], timeout_s=300)
    if execution == "session":
        # 36 render tiles on 2 slots: a few sessions did them all, not one process per tile.
        assert dispatcher._sessions is not None and 1 <= dispatcher._sessions.created <= 4
        dispatcher.stop()
    with db.session() as session:
        detail = queries.job_detail(session, 1, job_id)
        assert detail.state == "done", detail.model_dump_json(indent=1)[:2000]
        render, comp = detail.layers[1], detail.layers[2]
        assert render.tile_counts == {"done": 3 * 12}
        assert all(t.pool == "h100" for f in render.frames for t in f.tiles)
        assert all(f.tile_plan == "12 tiles (4x3 grid), overscan 2 px" for f in render.frames)
        usage = session.scalars(select(m.UsageRecord)).all()
        assert len(usage) == 3 + 36 + 3 and all(u.cost > 0 for u in usage)
    channels = [c for aovs in AOV_CHANNELS.values() for c in aovs]
    for frame in comp.frames:
        # The frame and its preview are blobs, named as the farm wrote them (no server path).
        assert frame.output_hash and frame.preview_hash and frame.file_name
        assert frame.file_name == f"sh010_comp.{frame.number:04d}.exr"
        assert store.path(frame.preview_hash).read_bytes().startswith(b"\x89PNG")
        image = read_exr(store.path(frame.output_hash))
        assert (image.width, image.height) == (61, 37)
        assert sorted(image.channels) == sorted(channels)
        assert image.channels["R"].dtype == np.float16
        assert image.channels["Z"].dtype == np.float32
        assert image.channels["id"].dtype == np.uint32
        assert image.attributes["delta/job"] == f"{job_id}:testjob"
        assert image.attributes["delta/frame"] == frame.number
        recorded = TilePlan.from_json(json.loads(str(image.attributes["delta/tile_plan"])))
        assert len(recorded.tiles) == 12 and recorded.overscan == 2
        # The tiled, overscanned, cropped and stitched frame is the whole-frame render.
        tile = tiles_of(db, job_id, "sim", frame.number)[0]
        with store.local_path(tile.output_hash or "") as cache_path:
            whole = render_frame(
                read_cache(cache_path).frame(frame.number),
                Camera.model_validate(spec.camera.model_dump()),
                width=61,
                height=37,
            )
        for name in ("R", "G", "B", "A"):
            assert np.array_equal(image.channels[name], whole[name].astype(np.float16)), name
        for name in ("Z", "id", "velocity.X", "velocity.Y"):
            assert np.array_equal(image.channels[name], whole[name]), name
    assert comp.contact_sheet_hash is not None
    assert store.path(comp.contact_sheet_hash).read_bytes().startswith(b"\x89PNG")


def test_contact_sheets_are_drawn_beside_the_dispatcher_which_goes_on_meanwhile(
    farm: Farm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, store, out = farm
    gate = threading.Event()
    drawn_on: list[str] = []
    draw = sheets.draw_contact_sheets

    def held(db_: Database, store_: DiskStore, job_id: int) -> None:
        drawn_on.append(threading.current_thread().name)
        gate.wait(60)
        draw(db_, store_, job_id)

    monkeypatch.setattr(sheets, "draw_contact_sheets", held)
    first, spec = submit(db, store, tmp_path, frames=(1, 2), size=(32, 24), grid=(2, 1))
    dispatcher = Dispatcher(db, store, out)

    def state(job_id: int) -> str:
        with db.session() as session:
            return session.get_one(m.Job, job_id).state

    def sheet(job_id: int) -> str | None:
        with db.session() as session:
            layer = session.scalars(
                select(m.Layer).where(m.Layer.job_id == job_id, m.Layer.name == "comp")
            ).one()
            return layer.contact_sheet_hash

    tick_until(dispatcher, lambda: state(first) == "done")
    with db.session() as session:
        job = session.get_one(m.Job, first)
        user = session.scalars(select(m.User).where(m.User.studio_id == job.studio_id)).first()
        assert user is not None
        second = queries.submit_job(session, user, spec).id
    # The first job's sheet is still being drawn (held): the farm runs the next job meanwhile.
    tick_until(dispatcher, lambda: state(second) == "done", timeout_s=50)
    assert drawn_on and all(name.startswith("farm-sheets") for name in drawn_on)
    assert sheet(first) is None
    gate.set()
    assert dispatcher._sheets.drain(60)
    for job_id in (first, second):
        sheet_hash = sheet(job_id)
        assert sheet_hash is not None
        assert store.path(sheet_hash).read_bytes().startswith(b"\x89PNG")


def test_a_long_job_sheet_shows_frames_spread_over_it_first_and_last_included() -> None:
    frames = list(range(1, 1001))
    shown = sheets.spread(frames, sheets.SHEET_FRAMES_MAX)
    assert len(shown) == sheets.SHEET_FRAMES_MAX == len(set(shown))
    assert shown[0] == 1 and shown[-1] == 1000 and shown == sorted(shown)
    gaps = {b - a for a, b in itertools.pairwise(shown)}
    assert max(gaps) - min(gaps) <= 1  # evenly spaced
    assert sheets.spread(frames[:5], 96) == frames[:5]


def test_frames_assemble_as_soon_as_their_own_tiles_are_done(farm: Farm, tmp_path: Path) -> None:
    db, store, out = farm
    job_id, _ = submit(db, store, tmp_path, frames=(1, 4), size=(64, 48), grid=(4, 4))
    # No queue beyond half the slots: tiles start in the planner's order (frame by frame).
    Dispatcher(db, store, out, queue_s=0).run_until_done([job_id], timeout_s=300)
    first_frame_written = tiles_of(db, job_id, "comp", 1)[0].finished_at
    last_render_tiles = [t.finished_at for t in tiles_of(db, job_id, "render", 4)]
    assert first_frame_written is not None
    assert first_frame_written < max(t for t in last_render_tiles if t is not None)


def test_a_corrupt_tile_file_is_rendered_again_never_assembled(farm: Farm, tmp_path: Path) -> None:
    db, store, out = farm
    job_id, _ = submit(db, store, tmp_path, frames=(1, 1), grid=(2, 2))
    with db.session() as session:
        for layer in session.scalars(select(m.Layer).where(m.Layer.name == "comp")):
            layer.pool = "ascend"
    dispatcher = GatedDispatcher(db, store, out)
    dispatcher.gated = {"ascend"}
    tick_until(dispatcher, lambda: frame_state(db, job_id, "render", 1) == "done")
    victim, missing = tiles_of(db, job_id, "render", 1)[1:3]
    path = store.path(victim.output_hash or "")
    path.write_bytes(path.read_bytes()[:200])  # truncated: a corrupt EXR
    store.delete(missing.output_hash or "")  # and one tile file gone entirely
    dispatcher.gated = set()
    dispatcher.run_until_done([job_id], timeout_s=120)
    retried = {t.id: t for t in tiles_of(db, job_id, "render", 1)}
    for tile in (victim, missing):
        assert retried[tile.id].state == "done"
        assert retried[tile.id].attempts == 2
    assert frame_state(db, job_id, "comp", 1) == "done"
    with db.session() as session:
        failed = session.scalars(
            select(m.UsageRecord).where(m.UsageRecord.succeeded.is_(False))
        ).all()
        # The assemble that found them (forgiven, not the comp's fault) and the two render
        # attempts whose output proved lost: failed after all, so each tile has one success.
        comp = tiles_of(db, job_id, "comp", 1)[0].id
        assert {u.tile_id for u in failed} == {comp, victim.id, missing.id}
        assert {u.attempt for u in failed if u.tile_id != comp} == {1}
    assert_tiles_accounted(db, job_id)


def test_a_damaged_sim_cache_runs_its_sim_frame_again_not_its_renders(
    farm: Farm, tmp_path: Path
) -> None:
    db, store, out = farm
    job_id, _ = submit(db, store, tmp_path, frames=(1, 2), grid=(2, 1))
    dispatcher = GatedDispatcher(db, store, out, max_attempts=2)
    dispatcher.gated = {"h100"}
    tick_until(
        dispatcher,
        lambda: (
            frame_state(db, job_id, "sim", 2) == "done"
            and frame_state(db, job_id, "sim", 1) == "done"
        ),
    )
    sim = tiles_of(db, job_id, "sim", 2)[0]
    store.delete(sim.output_hash or "")  # frame 2's cache is lost after its sim finished
    dispatcher.gated = set()
    dispatcher.run_until_done([job_id], timeout_s=120)
    with db.session() as session:
        assert session.get_one(m.Job, job_id).state == "done"
        report = check_job_frames(session, 1, job_id)
    assert report.frames_checked == 2 and not report.problems
    # The sim frame ran again (one attempt more); the renders that found the cache gone are
    # forgiven, so none failed for good and none used up its budget of 2.
    again = tiles_of(db, job_id, "sim", 2)[0]
    assert again.attempts == 2 and again.output_hash == sim.output_hash
    renders = tiles_of(db, job_id, "render", 2)
    assert all(t.state == "done" and t.attempts - t.forgiven == 1 for t in renders)
    assert any(t.forgiven >= 1 for t in renders)
    assert_tiles_accounted(db, job_id)


def test_a_tile_that_keeps_failing_blocks_its_frame_and_is_reported(
    farm: Farm, tmp_path: Path
) -> None:
    db, store, out = farm
    job_id, spec = submit(db, store, tmp_path, frames=(1, 2), grid=(2, 1))
    dispatcher = Dispatcher(db, store, out, max_attempts=2)
    seed = seed_hash(db, spec)
    store.delete(seed)  # the published seed asset is gone: no tile of this job can make it
    dispatcher.run_until_done([job_id], timeout_s=120)
    assert frame_state(db, job_id, "sim", 2) == "failed"
    assert frame_state(db, job_id, "render", 2) == "cancelled"
    assert frame_state(db, job_id, "comp", 2) == "cancelled"
    failed = tiles_of(db, job_id, "sim", 2)
    assert all(t.state == "failed" and t.attempts == 2 for t in failed)
    assert all("failed 2 times" in t.reason and "not in the store" in t.reason for t in failed)
    with db.session() as session:
        assert session.get_one(m.Job, job_id).state == "failed"
    assert_tiles_accounted(db, job_id)


def seed_hash(db: Database, spec: schemas.JobSpec) -> str:
    """The content hash of the seed asset the job's sim layer reads."""
    version = next(layer.input_asset_version for layer in spec.layers if layer.name == "sim")
    with db.session() as session:
        return session.get_one(m.AssetVersion, version).content_hash


def test_restart_requeues_tiles_left_running(farm: Farm, tmp_path: Path) -> None:
    db, store, out = farm
    job_id, _ = submit(db, store, tmp_path, frames=(1, 1), grid=(1, 1))
    first = Dispatcher(db, store, out)
    tick_until(first, lambda: bool(first._in_flight))  # committed RUNNING, sent, never collected
    assert len(first._in_flight) == 1
    # The first dispatcher "dies" here; a new one finds the tile RUNNING and requeues it.
    second = Dispatcher(db, store, out)
    assert tiles_of(db, job_id, "sim", 1)[0].state == "pending"
    second.run_until_done([job_id], timeout_s=120)
    assert tiles_of(db, job_id, "sim", 1)[0].attempts == 1


def test_adaptive_tiles_replan_later_frames_from_measured_times(farm: Farm, tmp_path: Path) -> None:
    """A target far above the measured tile times merges cheap neighbours after frame 1."""
    db, store, out = farm
    job_id, _spec = submit(
        db,
        store,
        tmp_path,
        frames=(1, 3),
        size=(64, 48),
        grid=(4, 4),
        tiles={"cols": 4, "rows": 4, "overscan": 2, "target_runtime_s": 60.0},
    )
    Dispatcher(db, store, out).run_until_done([job_id], timeout_s=300)
    with db.session() as session:
        detail = queries.job_detail(session, 1, job_id)
    assert detail.state == "done"
    render = detail.layers[1]
    counts = [len(f.tiles) for f in render.frames]
    assert counts[0] == 16
    assert all(n < 16 for n in counts[1:]), counts
    for frame in render.frames:  # every plan still covers the frame exactly once
        area = sum(t.rect.width * t.rect.height for t in frame.tiles)
        assert area == 64 * 48
    comp = detail.layers[2]
    image = read_exr(store.path(comp.frames[2].output_hash or ""))
    plan = TilePlan.from_json(json.loads(str(image.attributes["delta/tile_plan"])))
    assert len(plan.tiles) == counts[2]


def test_a_frames_slowest_estimated_tiles_are_sent_first(farm: Farm, tmp_path: Path) -> None:
    """Measured tile times rank the next frame's tiles; the dispatcher sends them in that order.

    The layer's measurements say the bottom-right quarter of the frame is slow (as if earlier
    frames had been rendered), so tile 8 of the 3x3 grid, then its neighbours, go first.
    """
    db, store, out = farm
    job_id, _ = submit(db, store, tmp_path, frames=(1, 1), size=(60, 60), grid=(3, 3))
    with db.session() as session:
        render = session.scalars(select(m.Layer).where(m.Layer.name == "render")).one()
        render.tile_times = [[0, 0, 60, 60, 0.9], [40, 40, 60, 60, 4.0]]
    dispatcher = GatedDispatcher(db, store, out)
    dispatcher.gated = {"h100"}
    tick_until(dispatcher, lambda: frame_state(db, job_id, "render", 1) == "pending")
    planned = tiles_of(db, job_id, "render", 1)
    assert all(t.estimate_s is not None for t in planned)
    by_rank = [t.index for t in sorted(planned, key=lambda t: t.rank)]
    assert by_rank[0] == 8, by_rank  # the slow corner
    assert sorted(t.rank for t in planned) == list(range(9))
    estimates = [t.estimate_s for t in sorted(planned, key=lambda t: t.rank)]
    assert estimates == sorted(estimates, reverse=True)
    dispatcher.gated = set()
    dispatcher.run_until_done([job_id], timeout_s=120)
    done = tiles_of(db, job_id, "render", 1)
    started = sorted(done, key=lambda t: (t.started_at, t.rank))
    assert [t.index for t in started] == by_rank


def test_balanced_tiles_cut_every_frame_where_its_sims_preview_divides_evenly(
    farm: Farm, tmp_path: Path
) -> None:
    db, store, out = farm
    job_id, _ = submit(
        db, store, tmp_path, frames=(1, 3), size=(96, 64), tiles={"balanced": 2, "overscan": 2}
    )
    with db.session() as session:  # look past the cloud's left edge: the work sits on the right
        job = session.get_one(m.Job, job_id)
        job.spec = {
            **job.spec,
            "camera": {**job.spec["camera"], "position": [-0.9, 0, 4], "look_at": [-0.9, 0, 0]},
        }
    Dispatcher(db, store, out).run_until_done([job_id], timeout_s=300)
    with db.session() as session:
        detail = queries.job_detail(session, 1, job_id)
        measured = session.scalars(select(m.Layer).where(m.Layer.name == "render")).one()
        assert len(measured.tile_times) == 6  # every finished tile was measured
        sim = session.scalars(select(m.Layer).where(m.Layer.name == "sim")).one()
        previews = [frame.cost_preview for frame in sim.frames]
    assert detail.state == "done"
    for preview, frame in zip(previews, detail.layers[1].frames, strict=True):
        assert preview is not None and len(preview) == 36 and len(preview[0]) == 64
        expected = balanced_plan(96, 64, 2, cost=CostMap.from_grid(96, 64, np.array(preview)))
        assert [t.rect for t in frame.tiles] == [t.rect for t in expected.tiles]
        assert frame.tiles[0].rect.x1 > 56  # not the equal-area cut at 48
    comp = detail.layers[2]
    image = read_exr(store.path(comp.frames[1].output_hash or ""))
    plan = TilePlan.from_json(json.loads(str(image.attributes["delta/tile_plan"])))
    assert [t.rect for t in plan.tiles] == [t.rect for t in detail.layers[1].frames[1].tiles]


def test_a_layers_first_frame_is_cut_by_the_sims_cost_preview(farm: Farm, tmp_path: Path) -> None:
    """Before any tile is measured, the sim's preview says where the work is."""
    db, store, out = farm
    job_id, _ = submit(
        db, store, tmp_path, frames=(1, 1), size=(96, 64), tiles={"balanced": 3, "overscan": 2}
    )
    dispatcher = GatedDispatcher(db, store, out)
    dispatcher.gated = {"h100"}
    tick_until(dispatcher, lambda: frame_state(db, job_id, "render", 1) == "pending")
    with db.session() as session:
        sim_frame = session.scalars(
            select(m.Frame).join(m.Layer).where(m.Layer.name == "sim", m.Frame.number == 1)
        ).one()
        assert sim_frame.cost_preview  # the sim reported where its particles land
        render_frame_row = session.scalars(
            select(m.Frame).join(m.Layer).where(m.Layer.name == "render", m.Frame.number == 1)
        ).one()
        preview = np.array(sim_frame.cost_preview)
    planned = tiles_of(db, job_id, "render", 1)
    expected = balanced_plan(96, 64, 3, cost=CostMap.from_grid(96, 64, preview))
    assert [t.rect for t in planned] == [t.rect for t in expected.tiles]
    assert render_frame_row.tile_plan is not None


def test_a_layer_gets_only_the_aovs_it_asks_for(farm: Farm, tmp_path: Path) -> None:
    db, store, out = farm
    job_id, _ = submit(db, store, tmp_path, frames=(1, 1), grid=(2, 2), aovs=["rgba", "z"])
    Dispatcher(db, store, out).run_until_done([job_id], timeout_s=120)
    with db.session() as session:
        comp = queries.job_detail(session, 1, job_id).layers[2]
        report = check_job_frames(session, 1, job_id)
    image = read_exr(store.path(comp.frames[0].output_hash or ""))
    assert sorted(image.channels) == ["A", "B", "G", "R", "Z"]
    assert report.problems == []


def test_adaptive_tiles_split_tiles_that_ran_over_the_target(farm: Farm, tmp_path: Path) -> None:
    db, store, out = farm
    job_id, _ = submit(
        db,
        store,
        tmp_path,
        frames=(1, 2),
        size=(96, 64),
        grid=(2, 2),
        tiles={"cols": 2, "rows": 2, "overscan": 2, "target_runtime_s": 1e-6},
    )
    Dispatcher(db, store, out).run_until_done([job_id], timeout_s=300)
    with db.session() as session:
        detail = queries.job_detail(session, 1, job_id)
    assert detail.state == "done"
    first, second = (frame.tiles for frame in detail.layers[1].frames)
    assert len(first) == 4 and len(second) > 4
    assert sum(t.rect.area for t in second) == 96 * 64


def test_output_options_reach_the_exr(farm: Farm, tmp_path: Path) -> None:
    """A layer may ask for tiled EXR and another compression instead of ZIP scanlines."""
    db, store, out = farm
    job_id, _ = submit(db, store, tmp_path, frames=(1, 1), grid=(2, 2))
    with db.session() as session:
        job = session.get_one(m.Job, job_id)
        spec = dict(job.spec)
        spec["layers"] = [dict(layer) for layer in spec["layers"]]
        spec["layers"][2]["output"] = {"compression": "piz", "layout": "tiled", "preview": False}
        job.spec = spec
        comp = session.scalars(select(m.Layer).where(m.Layer.name == "comp")).one()
        comp.spec = spec["layers"][2]
    Dispatcher(db, store, out).run_until_done([job_id], timeout_s=120)
    with db.session() as session:
        frame = queries.job_detail(session, 1, job_id).layers[2].frames[0]
    assert frame.preview_hash is None and frame.output_hash is not None
    image = read_exr(store.path(frame.output_hash))
    assert image.layout == "tiled"
    assert "piz" in image.compression.lower()


def render_on_quantum(db: Database, *, cores: int | None = None) -> None:
    """Declare a pool ``quantum`` (1 core a node, no Ray node offers it) and put the render
    layer on it, asking for ``cores`` a tile when given."""
    with db.session() as session:
        session.add(
            m.Pool(
                name="quantum",
                accelerator="none",
                price_per_node_hour=1.0,
                cpus_per_node=1,
                currency="USD",
            )
        )
        session.flush()
        render = session.scalars(select(m.Layer).where(m.Layer.name == "render")).one()
        render.pool = "quantum"
        if cores is not None:
            render.requirements = {**render.requirements, "cores": cores}


def test_a_pool_no_node_offers_is_named_on_the_job_not_sent_to_ray(
    farm: Farm, tmp_path: Path
) -> None:
    db, store, out = farm
    job_id, _ = submit(db, store, tmp_path, frames=(1, 1), grid=(1, 1))
    render_on_quantum(db)
    dispatcher = Dispatcher(db, store, out)
    tick_until(dispatcher, lambda: frame_state(db, job_id, "sim", 1) == "done")

    def message() -> str:
        with db.session() as session:
            return session.get_one(m.Job, job_id).message

    tick_until(dispatcher, lambda: "no Ray node offers resource 'pool:quantum'" in message())
    assert message().startswith("render: pool quantum has no nodes")
    with db.session() as session:
        job = session.get_one(m.Job, job_id)
        assert job.state == "running"
    assert all(t.state == "pending" for t in tiles_of(db, job_id, "render", 1))
    assert not dispatcher._in_flight


def test_a_pool_that_grows_while_the_farm_runs_is_fitted_on_the_next_terms_read(
    farm: Farm, tmp_path: Path
) -> None:
    """Layers are fitted to the declared pools again when the pools change (and only then: the
    dispatcher once refitted every active layer twice a second)."""
    db, store, out = farm
    job_id, _ = submit(db, store, tmp_path, frames=(1, 1), grid=(1, 1))
    render_on_quantum(db, cores=4)  # more than a quantum node has
    dispatcher = Dispatcher(db, store, out)

    def message() -> str:
        with db.session() as session:
            return session.get_one(m.Job, job_id).message

    tick_until(dispatcher, lambda: "pool quantum has 1 cores per node" in message())
    with db.session() as session:
        session.get_one(m.Pool, "quantum").cpus_per_node = 8
    tick_until(dispatcher, lambda: "no Ray node offers resource 'pool:quantum'" in message())
    render_layer = next(layer for layer in dispatcher._layers.values() if layer.name == "render")
    assert render_layer.pools and not render_layer.unfit


def test_a_failed_first_frame_does_not_hold_an_adaptive_layer_forever(
    farm: Farm, tmp_path: Path
) -> None:
    db, store, out = farm
    job_id, _ = submit(
        db,
        store,
        tmp_path,
        frames=(1, 2),
        grid=(2, 1),
        tiles={"cols": 2, "rows": 1, "overscan": 2, "target_runtime_s": 1.0},
    )
    dispatcher = GatedDispatcher(db, store, out, max_attempts=1)
    dispatcher.gated = {"h100"}
    tick_until(dispatcher, lambda: frame_state(db, job_id, "sim", 1) == "done")
    # Frame 1's cache is lost: its renders send the sim frame back, which has no attempt left
    # (max_attempts=1), so it fails and the first render frame ends cancelled.
    store.delete(tiles_of(db, job_id, "sim", 1)[0].output_hash or "")
    dispatcher.gated = set()
    dispatcher.run_until_done([job_id], timeout_s=120)
    assert frame_state(db, job_id, "sim", 1) == "failed"
    assert frame_state(db, job_id, "render", 1) == "cancelled"
    assert frame_state(db, job_id, "render", 2) == "done"
    assert frame_state(db, job_id, "comp", 2) == "done"


def test_render_workers_run_with_the_farms_worker_environment() -> None:
    """Workers keep freed memory for the next tile and run numba on their one CPU slot."""
    import os

    import ray

    from scheduler.runtime import WORKER_ENV

    @ray.remote(num_cpus=1)
    def environment() -> dict[str, str | None]:
        return {name: os.environ.get(name) for name in WORKER_ENV}

    assert ray.get(environment.remote()) == WORKER_ENV


def test_a_job_runs_and_is_recorded_alike_on_sqlite_and_postgresql(
    db: Database, tmp_path: Path
) -> None:
    """The dispatcher writes tiles and usage rows with plain executemany: both drivers."""
    who = make_studio(db, "alpha")
    shot_id = make_shot(db, who)
    spec = schemas.JobSpec.model_validate(
        {
            "name": "noop",
            "shot_id": shot_id,
            "frames": {"first": 1, "last": 3},
            "resolution": {"width": 64, "height": 48},
            "camera": {"position": [0, 0, 4], "look_at": [0, 0, 0]},
            "layers": [
                {"name": "work", "kind": "noop", "tiles": {"cols": 2, "rows": 2, "overscan": 0}},
                {"name": "after", "kind": "noop", "depends_on": ["work"]},
            ],
        }
    )
    with db.session() as session:
        job_id = queries.submit_job(session, session.get_one(m.User, who.user_id), spec).id
    started = datetime.now(UTC)
    Dispatcher(db, DiskStore(tmp_path / "blobs"), tmp_path / "out").run_until_done([job_id], 120)
    with db.session() as session:
        tiles = session.scalars(select(m.Tile).where(m.Tile.job_id == job_id)).all()
        usage = session.scalars(select(m.UsageRecord).where(m.UsageRecord.job_id == job_id)).all()
        job = session.get_one(m.Job, job_id)
        assert job.state == "done" and job.finished_at is not None
    assert len(tiles) == 3 * 4 + 3
    assert all(t.state == "done" and t.attempts == 1 and t.pool == "cpu" for t in tiles)
    assert sorted(u.tile_id for u in usage) == sorted(t.id for t in tiles)
    for tile in tiles:
        assert tile.started_at is not None and tile.finished_at is not None
        begun = tile.started_at.replace(tzinfo=tile.started_at.tzinfo or UTC)
        assert abs((begun - started).total_seconds()) < 120
