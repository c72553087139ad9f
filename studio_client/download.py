"""Downloads from the farm: frames, previews, contact sheets and asset bytes, verified.

Every download names the sha256 it expects (the farm's answer says it), is written to a
temporary file beside its destination and renamed only once its bytes hash right: an
interrupted or corrupted download never leaves a half-written file under the final name.
A file already there with the right bytes is not downloaded again, so fetching a job twice
(or after an interruption) sends only what is missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from farm.errors import Conflict, InvalidSpec
from studio_client._http import Http
from studio_client._upload import sha256_path

CHUNK_BYTES = 1 << 20
Progress = Callable[[int], None]
"""Called with the bytes received since the last call."""


@dataclass(frozen=True)
class Download:
    """One file to fetch: the API path that serves it, where it goes, the bytes it must hash to."""

    url_path: str
    dest: Path
    content_hash: str
    size_bytes: int | None = None


def file_hash(path: Path) -> str | None:
    """The sha256 of a file, None when there is no such file."""
    try:
        return sha256_path(path)
    except FileNotFoundError:
        return None


def fetch_file(http: Http, item: Download, progress: Progress | None = None) -> bool:
    """Download ``item`` unless its destination already holds those bytes.

    Returns:
        True when bytes were downloaded, False when the file was already there.

    Raises:
        Conflict: the bytes received do not hash to ``item.content_hash`` (nothing is kept).
        InvalidSpec: the destination cannot be written.
    """
    if file_hash(item.dest) == item.content_hash:
        return False
    try:
        item.dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=item.dest.parent, prefix=f".{item.dest.name}.")
    except OSError as exc:
        raise InvalidSpec(
            f"cannot write {item.dest.parent} ({exc.strerror}): choose another --out folder",
            field="out",
        ) from exc
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, http.stream("GET", item.url_path) as response:
            for chunk in response.iter_bytes(CHUNK_BYTES):
                digest.update(chunk)
                out.write(chunk)
                if progress is not None:
                    progress(len(chunk))
        if digest.hexdigest() != item.content_hash:
            raise Conflict(
                f"{item.dest.name}: the bytes received hash to {digest.hexdigest()}, not "
                f"{item.content_hash}: the download was corrupted; nothing was kept, fetch again"
            )
        os.replace(tmp, item.dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return True
