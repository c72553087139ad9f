"""The renderer's camera: the pinhole model lives in :mod:`farm.camera` (job specs embed it)."""

from farm.camera import PARAM_COUNT, Camera

__all__ = ["PARAM_COUNT", "Camera"]
