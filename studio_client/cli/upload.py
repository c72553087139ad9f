"""``farm upload``: send a file or a folder (only what the farm lacks), optionally publish it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from farm import schemas
from farm.errors import InvalidSpec, invalid_spec_from_errors
from studio_client.cli._common import Token, Url, console, err_console, make_client
from studio_client.upload import Uploader, UploadProgress, UploadResult

KINDS = "particle_cache, particle_seed, scene, texture or other"


def upload(
    path: Annotated[Path, typer.Argument(help="a file or a folder")],
    show: Annotated[
        str | None, typer.Option("--show", help="show name or id (needed with --publish)")
    ] = None,
    asset: Annotated[
        str | None, typer.Option("--asset", help="asset name (needed with --publish)")
    ] = None,
    kind: Annotated[str, typer.Option("--kind", help=KINDS)] = "other",
    publish: Annotated[
        bool, typer.Option("--publish", help="register it as the asset's next version")
    ] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Upload a file or folder: hashes it, sends only what the farm lacks, resumes where an
    interrupted upload stopped (Ctrl-C is safe); --publish makes it the asset's next version."""
    if not publish and (show or asset):
        raise InvalidSpec(
            "--show and --asset name the asset version --publish makes: add --publish, "
            "or leave them out to upload only",
            field="publish",
        )
    if publish:
        if not (show and asset):
            raise InvalidSpec("--publish needs --show and --asset", field="asset")
        try:  # a bad asset name or kind: refused before anything is read or sent
            schemas.AssetVersionCreate.model_validate(
                {"asset": asset, "kind": kind, "content_hash": "0" * 64}
            )
        except ValidationError as exc:
            raise invalid_spec_from_errors(list(exc.errors())) from exc
    with make_client(url, token) as client:
        show_id = client.show(show).id if publish and show else None
        result = _upload_with_progress(Uploader(client), path)
        done = result.progress
        what = (
            f"{done.files_total:,} files, {done.bytes_total:,} bytes"
            if result.manifest_hash
            else f"{done.bytes_total:,} bytes"
        )
        console.print(
            f"uploaded {path} ({what}): sent {done.blobs_sent:,} blobs, {done.bytes_sent:,} "
            f"bytes; {done.files_already_stored:,} files already stored",
            soft_wrap=True,
        )
        if show_id is None or asset is None:
            console.print(f"content hash {result.content_hash}")
            return
        version = client.register_asset_version(
            show_id, asset=asset, content_hash=result.content_hash, kind=kind
        )
    console.print(
        f"published [bold]{version.asset}[/] version {version.version} (id {version.id}, "
        f"hash {version.content_hash})",
        soft_wrap=True,
    )


def _upload_with_progress(uploader: Uploader, path: Path) -> UploadResult:
    """Run the upload with a live progress display; Ctrl-C stops it resumably (exit 130)."""
    with Progress(
        TextColumn("{task.description:<8}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
        console=err_console,
        transient=True,
    ) as bar:
        hashing = bar.add_task("hashing", total=None, note="")
        sending = bar.add_task("sending", total=None, note="")

        def show(now: UploadProgress) -> None:
            _draw(bar, hashing, sending, now)

        uploader.on_progress = show
        handle = uploader.start(path)
        try:
            while not handle.wait(0.2):
                pass
        except KeyboardInterrupt:
            handle.cancel()
            handle.wait()
            now = handle.progress
            err_console.print(
                f"error: interrupted with {now.files_done:,} of {now.files_total:,} files on "
                "the farm; run the same command to resume (nothing hashed or sent is done "
                "again)",
                soft_wrap=True,
            )
            raise typer.Exit(130) from None
        result = handle.result()
        _draw(bar, hashing, sending, result.progress)
        return result


def _draw(bar: Progress, hashing: TaskID, sending: TaskID, now: UploadProgress) -> None:
    files = f"{now.files_done:,}/{now.files_total:,} files"
    bar.update(
        hashing,
        completed=now.bytes_hashed,
        total=now.bytes_total or None,
        note=f"{now.files_cached:,} unchanged since the last upload",
    )
    bar.update(
        sending,
        completed=now.bytes_sent,
        total=now.bytes_to_send or None,  # None: still asking what the farm lacks
        note=f"{files}, {now.files_already_stored:,} already stored",
    )
