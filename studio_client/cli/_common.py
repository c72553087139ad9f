"""Shared CLI plumbing: the console, the client from settings, one-line errors."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from studio_client import Client

console = Console()
err_console = Console(stderr=True)

DEFAULT_URL = "http://127.0.0.1:8765"
Url = Annotated[str | None, typer.Option("--url", help="API URL (FARM_API_URL)")]
Token = Annotated[str | None, typer.Option("--token", help="API token (FARM_TOKEN)")]


@dataclass(frozen=True)
class Credentials:
    """What ``farm login`` stored: the farm's URL and a token for it."""

    url: str
    token: str


def credentials_path() -> Path:
    """``$XDG_CONFIG_HOME/delta/credentials.toml``, by default under ``~/.config``."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    root = Path(base) if os.path.isabs(base) else Path.home() / ".config"
    return root / "delta" / "credentials.toml"


def read_credentials() -> Credentials | None:
    """The stored credentials, None if ``farm login`` never ran (or ``farm logout`` since)."""
    from farm.errors import InvalidSpec

    path = credentials_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidSpec(
            f"{path}: cannot read it ({exc}); run `farm login` again or delete the file",
            field="credentials",
        ) from exc
    url, token = data.get("url"), data.get("token")
    if not isinstance(url, str) or not isinstance(token, str):
        raise InvalidSpec(
            f"{path}: needs a url and a token string; run `farm login` again",
            field="credentials",
        )
    return Credentials(url, token)


def make_client(url: str | None, token: str | None) -> Client:
    """A client from options, else ``FARM_API_URL`` / ``FARM_TOKEN``, else ``farm login``'s file.

    Each of the URL and the token is taken from the first of those that has it.
    """
    from farm.errors import Unauthenticated

    url = url or os.environ.get("FARM_API_URL")
    token = token or os.environ.get("FARM_TOKEN")
    stored = read_credentials() if not (url and token) else None
    if stored is not None:
        url = url or stored.url
        token = token or stored.token
    if not token:
        raise Unauthenticated("no API token: run `farm login`, pass --token or set FARM_TOKEN")
    return Client(url or DEFAULT_URL, token)
