"""``farm fetch``: download a job's frames (EXR, previews, contact sheet), or an asset version."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from farm.errors import InvalidSpec
from farm.states import TERMINAL
from studio_client.cli._common import Token, Url, console, err_console, make_client
from studio_client.download import Download


def fetch(
    job_id: Annotated[int | None, typer.Argument(help="the job whose frames to download")] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="folder to write into (made if missing)")
    ] = Path("."),
    layer: Annotated[
        list[str] | None,
        typer.Option("--layer", help="only this layer (repeat for more; default: all)"),
    ] = None,
    previews: Annotated[
        bool, typer.Option("--previews/--no-previews", help="PNG previews and contact sheets")
    ] = True,
    version: Annotated[
        int | None,
        typer.Option("--asset-version", help="download this asset version instead of a job"),
    ] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """Download a job's frames into `OUT/job<ID>_<name>/<layer>/`, verified by sha256; files
    already there are kept, so run it again as more frames finish (or after Ctrl-C)."""
    if (job_id is None) == (version is None):
        raise InvalidSpec("give a JOB_ID or --asset-version ID (one of them)", field="job_id")
    with make_client(url, token) as client:
        if version is not None:
            paths = client.fetch_asset_version(version, out)
            console.print(f"asset version {version}: {len(paths):,} files in {out}/")
            return
        assert job_id is not None
        job = client.job(job_id)
        files = client.job_files(job, out, layers=layer, previews=previews)
        if not files:
            if job.state in TERMINAL:
                console.print(f"job {job_id} ({job.state}) made no frames to fetch")
            else:
                console.print(f"job {job_id} ({job.state}) has no finished frames yet")
            return
        sent_files = 0
        with Progress(
            TextColumn("fetching"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files, {task.fields[mb]:.1f} MB"),
            console=err_console,
            transient=True,
        ) as bar:
            counting = bar.add_task("files", total=len(files), mb=0.0)
            received = {"bytes": 0}

            def on_bytes(n: int) -> None:
                received["bytes"] += n
                bar.update(counting, mb=received["bytes"] / 1e6)

            def on_file(_item: Download, sent: bool) -> None:
                nonlocal sent_files
                sent_files += sent
                bar.update(counting, advance=1)

            client.fetch(
                job, out, layers=layer, previews=previews, on_file=on_file, progress=on_bytes
            )
        folder = files[0].dest.parent.parent
        console.print(
            f"job {job_id} ({job.state}): {len(files):,} files in {folder}/ "
            f"({sent_files:,} downloaded, {received['bytes']:,} bytes; "
            f"{len(files) - sent_files:,} already there)",
            soft_wrap=True,
        )
