"""The rich console the farm host's commands print to (stdout).

Its own, not ``studio_client.cli._common``'s: importing that package builds the ``farm`` app,
which imports these modules, so a command module imported first would meet itself half-built.
"""

from __future__ import annotations

from rich.console import Console

console = Console()
