"""``farm show list|create`` and ``farm shot list|create``: where a studio's jobs live.

A job runs in a shot of a show; without these a newcomer on the command line had no way to make
the first show and shot (only the SDK could), and ``farm submit --show S --shot SEQ/SHOT``
answered that the show did not exist.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from farm.errors import InvalidSpec
from studio_client.cli._common import Token, Url, console, make_client

show_app = typer.Typer(help="Your studio's shows: list, create.", no_args_is_help=True)
shot_app = typer.Typer(help="The shots of a show: list, create.", no_args_is_help=True)
ShowName = Annotated[str, typer.Argument(help="the show's name (or id)")]


@show_app.command("list")
def list_shows(url: Url = None, token: Token = None) -> None:
    """Your studio's shows, oldest first."""
    with make_client(url, token) as client:
        shows = client.shows()
    if not shows:
        console.print("no shows yet: `farm show create NAME`")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("id", "show", "title", "created"):
        table.add_column(column)
    for show in shows:
        table.add_row(str(show.id), show.name, show.title, f"{show.created_at:%Y-%m-%d}")
    console.print(table)


@show_app.command("create")
def create_show(
    name: Annotated[str, typer.Argument(help="short name, e.g. seamonster")],
    title: Annotated[str, typer.Option(help="the show's full title")] = "",
    url: Url = None,
    token: Token = None,
) -> None:
    """Create a show in your studio."""
    with make_client(url, token) as client:
        show = client.create_show(name, title=title)
    console.print(f"show {show.name} created (id {show.id})")


@shot_app.command("list")
def list_shots(show: ShowName, url: Url = None, token: Token = None) -> None:
    """The shots of a show, oldest first."""
    with make_client(url, token) as client:
        found = client.show(show)
        shots = client.shots(found.id)
    if not shots:
        console.print(
            f"show {found.name} has no shots yet: `farm shot create {found.name} SEQ/SHOT`"
        )
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("id", "shot", "created"):
        table.add_column(column)
    for shot in shots:
        table.add_row(str(shot.id), f"{shot.sequence}/{shot.name}", f"{shot.created_at:%Y-%m-%d}")
    console.print(table)


@shot_app.command("create")
def create_shot(
    show: ShowName,
    shot: Annotated[str, typer.Argument(help="SEQUENCE/SHOT, e.g. sq010/sh0100")],
    url: Url = None,
    token: Token = None,
) -> None:
    """Create a shot in a show (its sequence is created on first use)."""
    sequence, slash, name = shot.partition("/")
    if not slash or not sequence or not name or "/" in name:
        raise InvalidSpec(
            f"shot {shot!r} is not SEQUENCE/SHOT: name its sequence too, e.g. sq010/sh0100",
            field="shot",
        )
    with make_client(url, token) as client:
        found = client.show(show)
        created = client.create_shot(found.id, name, sequence=sequence)
    console.print(
        f"shot {created.sequence}/{created.name} created in {found.name} (id {created.id}); "
        f"submit to it with --show {found.name} --shot {created.sequence}/{created.name}",
        soft_wrap=True,  # a command to copy: never broken over two lines
    )
