"""Delta's studio client: the public SDK (``Client``, the schemas, the errors).

Owns: talking to a farm's API. Imports only ``farm.vocab``, ``farm.schemas``, ``farm.states`` and
``farm.errors`` from the server side, never the database, Ray or the scheduler: it installs
without the ``server`` extra (``tests/unit/test_client_imports.py``). The ``farm`` CLI adds the
farm host's commands from ``farm.cli`` only where that extra is installed.

Example:
    >>> from studio_client import Client  # doctest: +SKIP
    >>> with Client("http://127.0.0.1:8765", token) as farm:  # doctest: +SKIP
    ...     job = farm.submit(spec)
"""

from farm.errors import (
    Conflict,
    FarmError,
    Forbidden,
    InvalidSpec,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from farm.schemas import (
    CostReport,
    FrameRange,
    JobOut,
    JobSpec,
    LayerSpec,
    OutputSpec,
    Resolution,
    TilingSpec,
)
from studio_client.client import Client

__all__ = [
    "Client",
    "Conflict",
    "CostReport",
    "FarmError",
    "Forbidden",
    "FrameRange",
    "InvalidSpec",
    "JobOut",
    "JobSpec",
    "LayerSpec",
    "NotFound",
    "OutputSpec",
    "Resolution",
    "TilingSpec",
    "Unauthenticated",
    "Unavailable",
]
