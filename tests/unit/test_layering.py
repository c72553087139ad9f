"""Imports point one way: the planner and the client stay free of Ray and the database."""

from __future__ import annotations

import subprocess
import sys

import pytest

import studio_client


def loaded_after(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in out.stdout.split()}


@pytest.mark.parametrize(
    "module", ["scheduler.plan", "scheduler.plan.fit", "scheduler.tiles", "farm.states"]
)
def test_pure_modules_import_neither_ray_nor_the_database(module: str) -> None:
    loaded = loaded_after(module)
    assert "ray" not in loaded
    assert "sqlalchemy" not in loaded


def test_the_client_imports_neither_ray_nor_the_database() -> None:
    loaded = loaded_after("studio_client")
    assert "ray" not in loaded
    assert "sqlalchemy" not in loaded
    assert "scheduler" not in loaded
    assert "numpy" not in loaded


def test_the_public_sdk_surface_is_pinned() -> None:
    assert sorted(studio_client.__all__) == sorted(
        [
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
    )
