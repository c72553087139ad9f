"""``farm assets`` and ``farm share``: the assets a studio may read, and sharing them.

Experimental: may change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from pydantic import ValidationError
from rich import box
from rich.table import Table

from farm import schemas
from farm.errors import InvalidSpec, invalid_spec_from_errors
from studio_client import Client
from studio_client.cli._common import Token, Url, console, make_client


def assets(
    show: Annotated[
        str | None,
        typer.Option(
            "--show",
            help="only this show: a name of your studio's, or any show's id",
            metavar="SHOW",
        ),
    ] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """List the assets your studio may read with their newest version; those another studio
    shared with yours are marked with the owner."""
    with make_client(url, token) as client:
        show_id = None if show is None else _show_id(client, show)
        rows = client.assets(show_id=show_id)
    if not rows:
        console.print("no assets" + ("" if show is None else f" in show {show}"))
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", justify="right", no_wrap=True)
    for column in ("show", "asset", "kind", "latest", "size", "published", "owner"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for row in rows:
        latest = row.latest
        table.add_row(
            str(row.id),
            row.show,
            row.name,
            row.kind,
            "-" if latest is None else f"v{latest.version}",
            "-" if latest is None else _size(latest.size_bytes),
            "-" if latest is None else _when(latest.created_at),
            f"shared by {row.studio}" if row.shared else "yours",
        )
    console.print(table)


def _show_id(client: Client, show: str) -> int:
    """A show of the studio's by name, else any show's id as given: a show shared with the
    studio, or one holding a shared asset, is named by id (names repeat across studios)."""
    for own in client.shows():
        if own.name == show:
            return own.id
    if show.isdigit() and int(show) >= 1:
        return int(show)
    raise InvalidSpec(
        f"show: no show named {show!r} in your studio; give the id of a show shared with yours",
        field="show",
    )


def share(
    studio: Annotated[
        str | None,
        typer.Argument(help="the studio to share with", metavar="STUDIO", show_default=False),
    ] = None,
    show: Annotated[
        str | None,
        typer.Option("--show", help="share a whole show of yours (name or id)", metavar="SHOW"),
    ] = None,
    asset: Annotated[
        int | None,
        typer.Option(
            "--asset", help="share one asset of yours (id, see `farm assets`)", metavar="ID", min=1
        ),
    ] = None,
    list_: Annotated[
        bool, typer.Option("--list", help="list the shares your studio gave and received")
    ] = False,
    revoke: Annotated[
        int | None,
        typer.Option("--revoke", help="stop a share of yours at once", metavar="ID", min=1),
    ] = None,
    audit: Annotated[
        bool, typer.Option("--audit", help="every grant and revoke your studio gave or received")
    ] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Share a show or an asset with another studio (read-only, usable in its jobs), list
    shares, or revoke one.

    farm share STUDIO --show NAME_OR_ID | --asset ID;  farm share --list;  farm share --revoke ID

    Sharing and revoking take a td or a studio admin.
    """
    modes = [
        name
        for name, given in (
            ("STUDIO", studio is not None),
            ("--list", list_),
            ("--revoke", revoke is not None),
            ("--audit", audit),
        )
        if given
    ]
    if len(modes) != 1:
        raise InvalidSpec(
            "share: give one of STUDIO (with --show or --asset), --list, --revoke ID or --audit"
            + (f"; got {', '.join(modes)}" if modes else ""),
            field="share",
        )
    if studio is None and (show is not None or asset is not None):
        raise InvalidSpec("share: --show and --asset go with STUDIO", field="share")
    with make_client(url, token) as client:
        if list_:
            _print_shares(client.shares())
        elif audit:
            _print_audit(client.share_audit())
        elif revoke is not None:
            row = client.revoke_share(revoke)
            console.print(
                f"revoked share {row.id}: {_what(row)} no longer shared with {row.grantee}"
            )
        else:
            assert studio is not None
            row = _grant(client, studio, show, asset)
            console.print(f"share {row.id}: {row.grantee} may now read {_what(row)}")


def _grant(client: Client, studio: str, show: str | None, asset: int | None) -> schemas.ShareOut:
    if (show is None) == (asset is None):
        raise InvalidSpec("share: give exactly one of --show and --asset", field="share")
    show_id = None if show is None else client.show(show).id
    try:
        schemas.ShareCreate(studio=studio, show_id=show_id, asset_id=asset)
    except ValidationError as exc:  # a bad studio name: said before anything is sent
        raise invalid_spec_from_errors(list(exc.errors())) from exc
    return client.share(studio, show_id=show_id, asset_id=asset)


def _print_shares(rows: list[schemas.ShareOut]) -> None:
    if not rows:
        console.print("no shares")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", justify="right", no_wrap=True)
    for column in ("from", "to", "shared", "by", "since"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row.id), row.grantor, row.grantee, _what(row), row.granted_by, _when(row.created_at)
        )
    console.print(table)


def _print_audit(rows: list[schemas.ShareAuditOut]) -> None:
    if not rows:
        console.print("no grants or revokes")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("when", "action", "share", "from", "to", "what", "by"):
        table.add_column(column, justify="right" if column == "share" else "left")
    for row in rows:
        table.add_row(
            _when(row.created_at),
            row.action,
            str(row.share_id),
            row.grantor,
            row.grantee,
            _what(row),
            row.user_name,
        )
    console.print(table)


def _what(row: schemas.ShareOut | schemas.ShareAuditOut) -> str:
    if row.asset is None:
        return f"show {row.show}"
    return f"asset {row.show}/{row.asset} ({row.asset_id})"


def _when(moment: datetime) -> str:
    return f"{moment.astimezone():%Y-%m-%d %H:%M}"


def _size(size_bytes: int) -> str:
    if size_bytes < 1000:
        return f"{size_bytes} B"
    size = float(size_bytes)
    for unit in ("KB", "MB", "GB"):
        size /= 1000
        if size < 1000:
            return f"{size:.1f} {unit}"
    return f"{size / 1000:.1f} TB"
