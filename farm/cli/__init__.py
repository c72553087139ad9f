"""The farm host's commands: ``farm server``, ``farm worker``, ``farm admin``, ``farm demo``,
``farm simulate``.

Owns: the commands that run on the farm's own machine, against its database, its API app, Ray
and the scheduler. The ``farm`` console script is one command (:func:`studio_client.cli.main`):
it builds the client's commands, then adds these through :func:`register` when this package
imports. It does not import on a client-only install (``pip install delta-farm``, without the
``server`` extra): there the server commands are simply absent from ``farm --help``.

Must not import, at module level here or in the command modules: the database, the API app, Ray,
NumPy or the scheduler. Each command imports them inside itself, so ``farm --help`` stays fast
and importing ``studio_client.cli`` stays light (``tests/unit/test_client_imports.py``).
"""

from __future__ import annotations

from importlib.util import find_spec

import typer

REQUIRED: dict[str, str] = {
    "fastapi": "fastapi",
    "uvicorn": "uvicorn",
    "sqlalchemy": "sqlalchemy",
    "alembic": "alembic",
    "pydantic_settings": "pydantic-settings",
    "ray": "ray",
    "numpy": "numpy",
    "OpenEXR": "OpenEXR",
    "PIL": "pillow",
}
"""Modules of the ``server`` extra that the farm cannot run without, and their distributions.

Numba (the renderer falls back to NumPy), psycopg (PostgreSQL only) and boto3 (S3 only) are in
the extra too, but a farm runs without them.
"""

# find_spec looks a top-level module up without importing it: cheap, and nothing heavy loads.
_missing = [dist for module, dist in REQUIRED.items() if find_spec(module) is None]
if _missing:
    raise ImportError(
        f"the farm's server commands need {', '.join(_missing)}: "
        "install them with pip install 'delta-farm[server]'",
        name=__name__,
    )

HOST_PANEL = "Farm host (server extra)"
"""The ``farm --help`` panel that lists these commands apart from the client's."""


def register(app: typer.Typer) -> None:
    """Add the farm host's commands to the ``farm`` app that :mod:`studio_client.cli` built.

    Called once, when ``studio_client.cli`` is imported. A new server-side command (e.g.
    ``farm worker``) goes in its own module here and is added below, with
    ``rich_help_panel=HOST_PANEL``; the command module imports its heavy dependencies inside
    the command function.

    Args:
        app: the ``farm`` typer app, with the client's commands already on it.
    """
    from farm.cli import demo, operate, server, simulate, worker

    app.command(rich_help_panel=HOST_PANEL)(server.server)
    app.command(rich_help_panel=HOST_PANEL)(demo.demo)
    app.command(rich_help_panel=HOST_PANEL)(demo.seed)
    app.command(rich_help_panel=HOST_PANEL)(simulate.simulate)
    app.command(rich_help_panel=HOST_PANEL)(worker.worker)
    admin = typer.Typer(help=server.ADMIN_HELP)
    admin.command("create-studio")(server.create_studio)
    admin.command("create-user")(server.create_user)
    admin.command()(operate.rush)
    admin.add_typer(operate.quota, name="quota")
    admin.add_typer(operate.licence, name="licence")
    app.add_typer(admin, name="admin", rich_help_panel=HOST_PANEL)
