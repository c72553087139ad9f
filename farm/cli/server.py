"""``farm server`` and ``farm admin``: commands that run on the farm's own machine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from farm.cli._console import console

if TYPE_CHECKING:
    from farm.api.context import FarmContext
    from farm.vocab import Role

ADMIN_HELP = "Farm administration (runs against the farm's database directly)."
"""Help of the ``farm admin`` group (wired in :func:`farm.cli.register`)."""


def server(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="port to listen on (0: any free port)")
    ] = 8765,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="join this Ray cluster (default: local)")
    ] = None,
) -> None:
    """Run the farm: the API, the dispatcher and a local Ray (or join --ray-address)."""
    from farm.settings import Settings
    from scheduler.embedded import EmbeddedFarm

    settings = Settings()
    if ray_address:
        settings = settings.model_copy(update={"ray_address": ray_address})
    _check_listen(host, port)  # before Ray starts: a taken port is one line, not a traceback
    farm = EmbeddedFarm(settings, host=host, port=port).start()
    console.print(f"farm API on [bold]{farm.url}[/] (OpenAPI at {farm.url}/docs)")
    console.print(f"FARM_HOME {settings.home}; database {settings.resolved_database_url}")
    for note in farm.runtime.notes:
        console.print(f"[yellow]note:[/] {note}")
    import signal

    def terminate(*_: object) -> None:
        # SIGTERM (systemd, Kubernetes, kill) stops the farm as Ctrl-C does: Ray's own handler
        # printed a crash report for an ordinary stop.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        farm.serve_forever()
    finally:
        farm.stop()
        console.print("farm stopped")


def _check_listen(host: str, port: int) -> None:
    """Raise Unavailable, in one line, when the API could not listen on ``host:port``."""
    import socket

    from farm.errors import Unavailable

    if port == 0:
        return
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(address)
    except OSError as exc:
        raise Unavailable(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}): another program holds "
            "the port, or the address is not this machine's; pick another --port or --host"
        ) from exc


def _role(role: str) -> Role:
    """The role named on the command line, or a one-line error listing the roles."""
    from farm.errors import InvalidSpec
    from farm.vocab import Role

    try:
        return Role(role)
    except ValueError as exc:
        raise InvalidSpec(
            f"role {role!r} is not one of {', '.join(r.value for r in Role)}", field="role"
        ) from exc


def _context() -> FarmContext:
    """The farm's database and store, as ``FARM_*`` settings name them (migrated if needed)."""
    from farm.api.context import FarmContext
    from farm.settings import Settings

    return FarmContext.from_settings(Settings())


def create_studio(
    name: Annotated[str, typer.Argument(help="studio name")],
    user: Annotated[str, typer.Option(help="first user's name")] = "admin",
    role: Annotated[str, typer.Option(help="artist, td, producer, admin or operator")] = "admin",
) -> None:
    """Create a studio and its first user; prints the user's API token (shown once)."""
    from farm.db import queries

    user_role = _role(role)
    with _context().db.session() as session:
        studio = queries.create_studio(session, name)
        _, token = queries.create_user(session, studio, user, user_role)
    console.print(
        f"studio {name} created; user {user} ({user_role}) token, shown once "
        "(`farm login` stores it):"
    )
    console.print(token, soft_wrap=True)


def create_user(
    studio: Annotated[str, typer.Argument(help="studio name")],
    name: Annotated[str, typer.Argument(help="user name")],
    role: Annotated[str, typer.Option(help="artist, td, producer, admin or operator")] = "artist",
) -> None:
    """Add a user to a studio; prints the API token (shown once)."""
    from sqlalchemy import select

    from farm.db import models as m
    from farm.db import queries
    from farm.errors import NotFound

    user_role = _role(role)
    with _context().db.session() as session:
        row = session.scalar(select(m.Studio).where(m.Studio.name == studio))
        if row is None:
            raise NotFound(f"no studio named {studio!r}")
        _, token = queries.create_user(session, row, name, user_role)
    console.print(token, soft_wrap=True)
