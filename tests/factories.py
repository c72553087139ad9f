"""Builders for test data: studios with users, shows, shots, particle caches and job specs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from farm import schemas
from farm.db import models as m
from farm.db import queries
from farm.db.session import Database
from farm.particles.cache import ParticleFrame, write_cache
from farm.particles.camera import Camera
from farm.vocab import Role


@dataclass
class StudioUser:
    studio_id: int
    user_id: int
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_studio(db: Database, name: str, role: Role = Role.TD) -> StudioUser:
    with db.session() as session:
        studio = queries.create_studio(session, name)
        user, token = queries.create_user(session, studio, f"{name}-user", role)
        return StudioUser(studio.id, user.id, token)


def make_shot(db: Database, who: StudioUser, show: str = "show", shot: str = "sh010") -> int:
    """A shot in ``show`` of the studio (the show made on first use, reused after)."""
    with db.session() as session:
        show_row = session.scalar(
            select(m.Show).where(m.Show.studio_id == who.studio_id, m.Show.name == show)
        ) or queries.create_show(session, who.studio_id, schemas.ShowCreate(name=show))
        shot_row = queries.create_shot(
            session, who.studio_id, show_row.id, schemas.ShotCreate(name=shot, sequence="sq01")
        )
        return shot_row.id


def small_frame(count: int = 400, *, frame: int = 1, seed: int = 7) -> ParticleFrame:
    """A little cloud in front of :func:`test_camera`, big enough to cross tile borders."""
    rng = np.random.default_rng(seed)
    position = rng.uniform(-1.0, 1.0, size=(count, 3)).astype(np.float32)
    position[:, 2] *= 0.5
    return ParticleFrame(
        frame=frame,
        position=position,
        velocity=rng.normal(0, 0.01, size=(count, 3)).astype(np.float32),
        radius=rng.uniform(0.01, 0.05, size=count).astype(np.float32),
        colour=np.concatenate(
            [rng.uniform(0.2, 1.0, size=(count, 3)), rng.uniform(0.5, 1.0, size=(count, 1))],
            axis=1,
        ).astype(np.float32),
        id=np.arange(count, dtype=np.uint32),
    )


def small_camera() -> Camera:
    return Camera(position=(0.0, 0.0, 4.0), look_at=(0.0, 0.0, 0.0))


def write_seed(path: Path, count: int = 400) -> Path:
    write_cache(path, [small_frame(count)])
    return path


def job_spec(
    shot_id: int,
    seed_version: int,
    *,
    frames: tuple[int, int] = (1, 2),
    size: tuple[int, int] = (64, 48),
    grid: tuple[int, int] = (3, 2),
    **render: Any,
) -> schemas.JobSpec:
    """sim -> render (tiles) -> assemble, small enough for a test."""
    return schemas.JobSpec.model_validate(
        {
            "name": "testjob",
            "shot_id": shot_id,
            "frames": {"first": frames[0], "last": frames[1]},
            "resolution": {"width": size[0], "height": size[1]},
            "camera": small_camera().model_dump(),
            "layers": [
                {"name": "sim", "kind": "particle_sim", "input_asset_version": seed_version},
                {
                    "name": "render",
                    "kind": "particle_render",
                    "pool": "h100",
                    "depends_on": ["sim"],
                    "tiles": {"cols": grid[0], "rows": grid[1], "overscan": 2},
                    **render,
                },
                {"name": "comp", "kind": "assemble", "depends_on": ["render"]},
            ],
        }
    )
