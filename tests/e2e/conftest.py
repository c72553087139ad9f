"""The end-to-end tests' farm: a real server (API, dispatcher, local Ray) on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from farm.settings import Settings
from scheduler.embedded import EmbeddedFarm


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[EmbeddedFarm]:
    with EmbeddedFarm(Settings(home=tmp_path / "home")) as running:
        yield running
