"""A pinhole camera for the particle renderer, embedded in job specs.

Projection (pixel aspect 1, horizontal film fit, y down as in EXR)::

    forward = normalise(look_at - position)
    right   = normalise(forward x up)
    up'     = right x forward
    d       = p - position
    x_c, y_c, z_c = d.right, d.up', d.forward      # camera space; z_c is the depth
    focal_px = focal_length_mm / sensor_width_mm * width
    sx = width / 2 + focal_px * x_c / z_c
    sy = height / 2 - focal_px * y_c / z_c

Pixel ``(i, j)`` covers ``[i, i+1) x [j, j+1)`` and is sampled at its centre ``(i+0.5, j+0.5)``.
Particles whose depth ``z_c`` lies outside ``[near, far]`` are dropped. The sensor height follows
from the image aspect (horizontal fit), so the same camera frames any resolution alike.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    import numpy as np

Vec3 = tuple[float, float, float]

# Layout of the float64 parameter vector the kernels take (see :meth:`Camera.projection_params`).
PARAM_COUNT = 17


def _sub(a: Vec3, b: Vec3) -> tuple[float, float, float]:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def _cross(a: Vec3, b: Vec3) -> tuple[float, float, float]:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _norm(a: Vec3) -> float:
    return math.sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2])


def _unit(a: Vec3) -> tuple[float, float, float]:
    n = _norm(a)
    return (a[0] / n, a[1] / n, a[2] / n)


class Camera(BaseModel):
    """A pinhole camera looking from ``position`` at ``look_at``; see the module docstring.

    Experimental: may change.

    Args:
        position: camera centre in world units.
        look_at: a point the optical axis passes through.
        up: world direction that appears upwards in the image; must not be parallel to the view.
        focal_length_mm: lens focal length.
        sensor_width_mm: film back width (horizontal fit).
        near: nearest depth rendered, world units along the view axis.
        far: farthest depth rendered.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    position: tuple[float, float, float]
    look_at: tuple[float, float, float]
    up: tuple[float, float, float] = (0.0, 1.0, 0.0)
    focal_length_mm: float = Field(default=35.0, gt=0, allow_inf_nan=False)
    sensor_width_mm: float = Field(default=36.0, gt=0, allow_inf_nan=False)
    near: float = Field(default=0.1, gt=0, allow_inf_nan=False)
    far: float = Field(default=10000.0, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check_geometry(self) -> Camera:
        for name in ("position", "look_at", "up"):
            if not all(math.isfinite(v) for v in getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)}")
        view = _sub(self.look_at, self.position)
        if _norm(view) == 0.0:
            raise ValueError("look_at must differ from position: the view direction is undefined")
        if _norm(_cross(_unit(view), self.up)) < 1e-9:
            raise ValueError("up must not be parallel to the view direction (look_at - position)")
        if not self.near < self.far:
            raise ValueError(f"near ({self.near}) must be less than far ({self.far})")
        return self

    def basis(self) -> tuple[Vec3, Vec3, Vec3]:
        """``(right, up, forward)`` unit vectors of camera space, in world coordinates."""
        forward = _unit(_sub(self.look_at, self.position))
        right = _unit(_cross(forward, self.up))
        up = _cross(right, forward)
        return right, up, forward

    def focal_px(self, width: int) -> float:
        """Focal length in pixels for an image ``width`` pixels wide (horizontal film fit)."""
        return self.focal_length_mm / self.sensor_width_mm * width

    def projection_params(self, width: int, height: int) -> np.ndarray:
        """The float64 vector every render kernel takes, so all backends project alike.

        Layout: position (3), right (3), up (3), forward (3), focal_px, width/2, height/2,
        near, far.
        """
        import numpy as np  # lazily: job specs embed cameras, the SDK must not need numpy

        right, up, forward = self.basis()
        return np.array(
            [
                *self.position,
                *right,
                *up,
                *forward,
                self.focal_px(width),
                width / 2.0,
                height / 2.0,
                self.near,
                self.far,
            ],
            dtype=np.float64,
        )

    def project(self, points: np.ndarray, *, width: int, height: int) -> np.ndarray:
        """Project world points to ``(sx, sy, depth)`` rows (float64), for tools and tests.

        Args:
            points: ``(N, 3)`` world positions.
            width: image width in pixels.
            height: image height in pixels.

        Returns:
            ``(N, 3)`` array of pixel x, pixel y and camera depth; depth <= 0 means behind.
        """
        import numpy as np

        p = self.projection_params(width, height)
        d = np.asarray(points, dtype=np.float64) - p[0:3]
        xc = d[:, 0] * p[3] + d[:, 1] * p[4] + d[:, 2] * p[5]
        yc = d[:, 0] * p[6] + d[:, 1] * p[7] + d[:, 2] * p[8]
        zc = d[:, 0] * p[9] + d[:, 1] * p[10] + d[:, 2] * p[11]
        with np.errstate(divide="ignore", invalid="ignore"):
            sx = p[13] + p[12] * xc / zc
            sy = p[14] - p[12] * yc / zc
        return np.stack([sx, sy, zc], axis=1)
