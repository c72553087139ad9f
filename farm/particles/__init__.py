"""Particles: caches, the sea-monster demo scene and the built-in tile-exact splatting renderer.

Owns particle frames and their cache files (:mod:`~farm.particles.cache`), the camera model
embedded in job specs (:mod:`~farm.particles.camera`), the procedural demo scene
(:mod:`~farm.particles.monster`) and rendering (:mod:`~farm.particles.render`). Pure computation on
numpy (numba when it is there): it must not import Ray, the database, the API or the scheduler.

Experimental: may change.
"""

from farm.particles.cache import (
    ChunkIndex,
    ParticleCache,
    ParticleFrame,
    prepare_frame,
    read_cache,
    validate_cache,
    validate_frame,
    write_cache,
)
from farm.particles.camera import Camera
from farm.particles.monster import monster_camera, sea_monster, simulate
from farm.particles.render import available_backends, render_frame, render_rect, render_tiles

__all__ = [
    "Camera",
    "ChunkIndex",
    "ParticleCache",
    "ParticleFrame",
    "available_backends",
    "monster_camera",
    "prepare_frame",
    "read_cache",
    "render_frame",
    "render_rect",
    "render_tiles",
    "sea_monster",
    "simulate",
    "validate_cache",
    "validate_frame",
    "write_cache",
]
