"""``farm login``, ``farm logout`` and ``farm tokens list|create|revoke|rotate``.

``farm login`` checks a token against the farm (``GET /me``) and only then stores it, with the
URL, in :func:`~studio_client.cli._common.credentials_path` (mode 0600, written atomically), where
every client command finds it after ``--token`` and ``FARM_TOKEN``.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from farm import schemas
from farm.errors import InvalidSpec
from studio_client import Client
from studio_client._files import write_text_atomically
from studio_client.cli._common import (
    DEFAULT_URL,
    Token,
    Url,
    console,
    credentials_path,
    make_client,
    read_credentials,
)

tokens_app = typer.Typer(
    help="Your API tokens: list, create, revoke, rotate.", no_args_is_help=True
)
TokenId = Annotated[int, typer.Argument(help="token id (see `farm tokens list`)", min=1)]


def login(url: Url = None, token: Token = None) -> None:
    """Check an API token against the farm and store it for the CLI (asks for it if not given)."""
    url = url or os.environ.get("FARM_API_URL") or _stored_url() or DEFAULT_URL
    if token is None:
        if not sys.stdin.isatty():
            raise InvalidSpec("no token to log in with: pass --token (no terminal to ask on)")
        token = getpass.getpass("API token: ")
    token = token.strip()
    if not token:
        raise InvalidSpec("no token to log in with: paste the token your studio admin gave you")
    with Client(url, token) as client:
        me = client.me()
    path = write_credentials(url, token)
    console.print(f"logged in to {url} as {me.name} ({me.role}); token stored in {path}")


def _stored_url() -> str | None:
    """The URL of the last login, so logging in again (a rotated token) needs no --url."""
    try:
        stored = read_credentials()
    except InvalidSpec:
        return None  # an unreadable file is about to be replaced
    return stored.url if stored else None


def logout() -> None:
    """Forget the token `farm login` stored (it stays valid: `farm tokens revoke` ends it)."""
    path = credentials_path()
    try:
        path.unlink()
    except FileNotFoundError:
        console.print(f"not logged in ({path} does not exist)")
        return
    console.print(f"logged out: removed {path}")


def write_credentials(url: str, token: str) -> Path:
    """Store ``url`` and ``token`` readable by this user only; returns the file's path.

    Written to a temporary file in the same folder and renamed over the old one, so a crash never
    leaves half a file, and created 0600 so the secret is never readable by others, even briefly.
    """
    path = credentials_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # json.dumps of a str is a valid TOML basic string (same escapes; ensure_ascii=False keeps
    # JSON's surrogate pairs, which TOML refuses, out of it).
    url_text, token_text = (json.dumps(v, ensure_ascii=False) for v in (url, token))
    text = (
        "# Written by `farm login`; `farm logout` removes it.\n"
        f"url = {url_text}\ntoken = {token_text}\n"
    )
    write_text_atomically(path, text, private=True, durable=True)
    return path


# ----------------------------------------------------------------------------- farm tokens
@tokens_app.command("list")
def list_tokens(url: Url = None, token: Token = None) -> None:
    """Your tokens (a studio admin sees the whole studio's); never the secrets."""
    with make_client(url, token) as client:
        rows = client.tokens()
    users = {row.user_id for row in rows}
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("name", overflow="fold", min_width=8)
    if len(users) > 1:  # a studio admin's listing
        table.add_column("user", overflow="fold", min_width=8)
    for column in ("token", "created", "last used"):
        table.add_column(column, no_wrap=True)
    table.add_column("state", min_width=10)  # "revoked 2026-12-05" wraps at the space
    now = datetime.now().astimezone()
    for row in rows:
        cells = [str(row.id), row.name, *([row.user_name] if len(users) > 1 else [])]
        cells += [
            f"{row.prefix}…" if row.prefix else "(legacy)",
            _day(row.created_at),
            _ago(row.last_used_at, now),
            _state(row, now),
        ]
        table.add_row(*cells)
    console.print(table)


@tokens_app.command("create")
def create_token(
    name: Annotated[str, typer.Argument(help="what the token is for, e.g. laptop or ci")],
    expires_in_days: Annotated[
        int | None, typer.Option("--expires-in-days", help="days until it stops working", min=1)
    ] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """Create a token; prints its secret once, on the last line."""
    with make_client(url, token) as client:
        created = client.create_token(name, expires_in_days=expires_in_days)
    _print_secret(created, "created")


@tokens_app.command("revoke")
def revoke_token(token_id: TokenId, url: Url = None, token: Token = None) -> None:
    """Revoke a token at once (yours, or as a studio admin any of the studio's)."""
    with make_client(url, token) as client:
        row = client.revoke_token(token_id)
    console.print(f"revoked token {row.id} ({row.name}, {row.user_name})")


@tokens_app.command("rotate")
def rotate_token(token_id: TokenId, url: Url = None, token: Token = None) -> None:
    """Revoke one of your tokens and print its successor's secret once, on the last line."""
    with make_client(url, token) as client:
        created = client.rotate_token(token_id)
    console.print(f"revoked token {token_id}; if `farm login` stored it, log in again with:")
    _print_secret(created, "its successor is")


def _print_secret(created: schemas.TokenCreated, what: str) -> None:
    expiry = f", expires {_when(created.expires_at)}" if created.expires_at else ""
    console.print(f"{what} token {created.id} ({created.name}{expiry}); the secret, shown once:")
    console.print(created.token, soft_wrap=True, highlight=False)


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment.astimezone():%Y-%m-%d %H:%M}"


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    minutes = int((now - moment).total_seconds() // 60)
    for size, unit in ((24 * 60, "d"), (60, "h"), (1, "min")):
        if minutes >= size:
            return f"{minutes // size} {unit} ago"
    return "just now"


def _day(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment.astimezone():%Y-%m-%d}"


def _state(row: schemas.TokenOut, now: datetime) -> str:
    if row.revoked_at is not None:
        return f"revoked {_day(row.revoked_at)}"
    if row.expires_at is None:
        return "active"
    return f"{'expired' if row.expires_at <= now else 'expires'} {_day(row.expires_at)}"
