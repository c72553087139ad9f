"""A procedural sea monster: the demo and benchmark particle scene.

A serpent's body arcs out of a choppy sea in humps, its neck rears up into a head with two glowing
eyes, a crest of fins runs along its back, and spray flies where the body breaks the surface.
World units are metres, y is up, the camera looks down -z. Particles are grouped by id range
(sea, body, fins, eyes, spray), so :func:`simulate` can move each group in closed form from the
seed state alone, whatever order the particles are stored in.
"""

from __future__ import annotations

import numpy as np

from farm.particles.cache import ParticleFrame
from farm.particles.camera import Camera

# Share of particles per group, in id order.
_GROUPS = (("sea", 0.42), ("body", 0.38), ("fins", 0.05), ("eyes", 0.01), ("spray", 0.14))
_GRAVITY = 0.012
"""Metres per frame² pulling spray down (9.8 m/s² is about 0.017 at 24 fps; a touch floaty)."""


def _bounds(count: int) -> dict[str, tuple[int, int]]:
    """Id range ``[lo, hi)`` of each group for a scene of ``count`` particles."""
    out: dict[str, tuple[int, int]] = {}
    lo = 0
    for i, (name, share) in enumerate(_GROUPS):
        hi = count if i == len(_GROUPS) - 1 else lo + round(count * share)
        out[name] = (lo, hi)
        lo = hi
    return out


def _spine(s: np.ndarray) -> np.ndarray:
    """Body centre line for s in [0, 1] (tail to head): humps, then a neck rearing up."""
    x = -32.0 + 52.0 * s
    z = -14.0 + 5.0 * np.sin(2.4 * s + 0.5)
    hump = 4.2 * np.sin(2 * np.pi * 2.3 * s - 0.6)
    neck = np.clip((s - 0.8) / 0.2, 0.0, 1.0)
    y = hump * (1 - neck) + (hump * (1 - neck) + 11.0 * neck**1.5) * neck
    return np.stack([x, y, z], axis=1)


def _wave(x: np.ndarray, z: np.ndarray, t: float) -> np.ndarray:
    return 0.25 * np.sin(0.31 * x + 0.11 * t) + 0.18 * np.sin(0.23 * z - 0.07 * t + 0.4 * x)


def _body(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Tube around the spine (thicker towards the head, a head bulb at the end), above water."""
    pos = np.zeros((0, 3))
    while pos.shape[0] < n:
        m = 2 * (n - pos.shape[0]) + 64
        s = rng.random(m) ** 0.8
        c = _spine(s)
        thick = 0.5 + 1.3 * s + 1.4 * np.exp(-(((s - 0.985) / 0.02) ** 2))
        ang = rng.random(m) * 2 * np.pi
        rr = thick * np.sqrt(rng.uniform(0.85, 1.0, m))
        p = c + np.stack([0.3 * rr * np.cos(ang), rr * np.sin(ang), rr * np.cos(ang)], axis=1)
        pos = np.concatenate([pos, p[p[:, 1] > -0.3]])
    pos = pos[:n]
    s_of = (pos[:, 0] + 32.0) / 52.0
    stripe = 0.5 + 0.5 * np.sin(s_of * 90.0)
    belly = np.clip(-(pos[:, 1] - _spine(np.clip(s_of, 0, 1))[:, 1]), 0, 1)
    rgb = np.stack(
        [0.05 + 0.1 * stripe + 0.4 * belly, 0.25 + 0.2 * stripe + 0.35 * belly, 0.2 + 0.1 * stripe],
        axis=1,
    )
    return pos, rgb


def sea_monster(count: int = 1_000_000, *, seed: int = 0) -> ParticleFrame:
    """The seed state (frame 1) of the sea-monster scene, ids ``0..count-1``.

    Args:
        count: number of particles (at least 5, one per group).
        seed: random seed; the same seed gives the same particles.

    Returns:
        A valid frame in id order (pass it through ``prepare_frame`` before rendering tiles).
    """
    rng = np.random.default_rng(seed)
    b = _bounds(count)
    pos: list[np.ndarray] = []
    rgb: list[np.ndarray] = []
    op: list[np.ndarray] = []
    rad: list[np.ndarray] = []

    n = b["sea"][1] - b["sea"][0]
    z = -90.0 + 115.0 * np.sqrt(rng.random(n))  # denser towards the camera
    x = -5.0 + rng.uniform(-1.0, 1.0, n) * (0.75 * (34.0 - z) + 4.0)  # the visible wedge
    y = _wave(x, z, 0.0)
    foam = np.clip(y * 2.0 - 0.1 + rng.normal(0, 0.25, n), 0, 1) ** 2
    pos.append(np.stack([x, y, z], 1))
    rgb.append(np.stack([0.02 + 0.8 * foam, 0.12 + 0.75 * foam, 0.22 + 0.7 * foam], 1))
    op.append(0.55 + 0.4 * rng.random(n))
    rad.append(0.05 + 0.0012 * np.abs(z))

    n = b["body"][1] - b["body"][0]
    p, c = _body(rng, n)
    pos.append(p)
    rgb.append(c)
    op.append(np.full(n, 0.9))
    rad.append(rng.uniform(0.04, 0.065, n))

    n = b["fins"][1] - b["fins"][0]
    s = rng.uniform(0.05, 0.95, 4 * n + 64)
    s = s[_spine(s)[:, 1] > 0.0][:n]  # only where the back is above water
    s = np.resize(s, n)
    h = rng.random(n) * (0.6 + 1.6 * np.abs(np.sin(s * 60.0)))
    fin = _spine(s) + np.stack([np.zeros(n), 0.6 + 1.3 * s + h, rng.normal(0, 0.05, n)], 1)
    pos.append(fin)
    rgb.append(np.stack([0.8 - 0.3 * h, 0.25 + 0.1 * h, 0.1 + 0.0 * h], 1))
    op.append(np.full(n, 0.8))
    rad.append(np.full(n, 0.05))

    n = b["eyes"][1] - b["eyes"][0]
    head = _spine(np.array([0.985]))[0]
    side = np.where(np.arange(n) % 2 == 0, -1.0, 1.0)
    d = rng.normal(0, 1, (n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-12
    rr = 0.45 * np.cbrt(rng.random(n))
    centre = head + np.stack([0.9 + 0 * side, 0.6 + 0 * side, 1.4 * side], 1)
    pos.append(centre + d * rr[:, None])
    pupil = rr < 0.2
    rgb.append(np.where(pupil[:, None], [0.02, 0.02, 0.02], [4.0, 3.2, 0.4]))
    op.append(np.full(n, 1.0))
    rad.append(np.full(n, 0.05))

    n = b["spray"][1] - b["spray"][0]
    s = rng.random(n)
    base = _spine(s)
    base[:, 1] = 0.0
    base += rng.normal(0, 0.8, (n, 3)) * [1.0, 0.1, 1.0]
    v = np.stack([rng.normal(0, 0.04, n), rng.uniform(0.08, 0.35, n), rng.normal(0, 0.04, n)], 1)
    age = rng.random(n) * (2 * v[:, 1] / _GRAVITY)
    pos.append(base + v * age[:, None] + 0.5 * np.array([0, -_GRAVITY, 0]) * (age**2)[:, None])
    vel_spray = v + np.array([0, -_GRAVITY, 0]) * age[:, None]
    rgb.append(np.full((n, 3), 0.85))
    op.append(rng.uniform(0.2, 0.5, n))
    rad.append(rng.uniform(0.03, 0.06, n))

    position = np.concatenate(pos).astype(np.float32)
    velocity = np.zeros_like(position)
    velocity[b["spray"][0] :] = vel_spray
    colour = np.concatenate([np.concatenate(rgb), np.concatenate(op)[:, None]], 1)
    return ParticleFrame(
        frame=1,
        position=position,
        velocity=velocity.astype(np.float32),
        radius=np.concatenate(rad).astype(np.float32),
        colour=np.clip(colour, 0, None).astype(np.float32),
        id=np.arange(count, dtype=np.uint32),
    )


def _state_at(seed: ParticleFrame, t: float) -> np.ndarray:
    """Positions ``t`` frames after the seed state, per group, in closed form (float64)."""
    b = _bounds(seed.count)
    ids = seed.id.astype(np.int64)
    p0 = seed.position.astype(np.float64)
    v0 = seed.velocity.astype(np.float64)
    out = p0.copy()
    sea = ids < b["sea"][1]
    out[sea, 1] += _wave(p0[sea, 0], p0[sea, 2], t) - _wave(p0[sea, 0], p0[sea, 2], 0.0)
    beast = (ids >= b["body"][0]) & (ids < b["spray"][0])
    k, w, amp = 0.35, 0.06, 0.5
    x = p0[beast, 0]
    out[beast, 1] += amp * (np.sin(k * x - w * t) - np.sin(k * x))
    out[beast, 0] += 0.02 * t
    spray = ids >= b["spray"][0]
    vs = v0[spray]
    height = np.maximum(p0[spray, 1], 0.0)
    # Frames until the drop lands; it then starts over from its seed state (a looping fountain).
    land = (vs[:, 1] + np.sqrt(vs[:, 1] ** 2 + 2 * _GRAVITY * height)) / _GRAVITY
    period = np.maximum(land, 1.0)
    tau = np.mod(t, period)
    out[spray] = p0[spray] + vs * tau[:, None]
    out[spray, 1] -= 0.5 * _GRAVITY * tau**2
    return out


def simulate(seed_state: ParticleFrame, frame: int, *, start_frame: int = 1) -> ParticleFrame:
    """The state at ``frame``, computed in closed form from the seed state (frames are independent).

    Args:
        seed_state: the frame returned by :func:`sea_monster` (any particle order).
        frame: frame to compute.
        start_frame: frame number of the seed state.

    Returns:
        The frame's particles in the seed's order, with ``velocity`` = motion to the next frame.
    """
    t = float(frame - start_frame)
    now = _state_at(seed_state, t)
    nxt = _state_at(seed_state, t + 1.0)
    return ParticleFrame(
        frame=frame,
        position=now.astype(np.float32),
        velocity=(nxt - now).astype(np.float32),
        radius=np.array(seed_state.radius, dtype=np.float32),
        colour=np.array(seed_state.colour, dtype=np.float32),
        id=np.array(seed_state.id, dtype=np.uint32),
    )


def monster_camera() -> Camera:
    """A 35 mm camera framing the whole monster at 16:9, from just above the waves."""
    return Camera(position=(-4.0, 7.0, 34.0), look_at=(-5.0, 4.0, -14.0), focal_length_mm=28.0)
