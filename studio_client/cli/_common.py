"""Shared CLI plumbing: the console, the client from settings, one-line errors."""

from __future__ import annotations

import os

from rich.console import Console

from studio_client import Client

console = Console()
err_console = Console(stderr=True)


def make_client(url: str | None, token: str | None) -> Client:
    """A client from options, else ``FARM_API_URL`` / ``FARM_TOKEN``."""
    from farm.errors import Unauthenticated

    url = url or os.environ.get("FARM_API_URL", "http://127.0.0.1:8765")
    token = token or os.environ.get("FARM_TOKEN")
    if not token:
        raise Unauthenticated("no API token: pass --token or set FARM_TOKEN")
    return Client(url, token)
