"""Content-addressed upload: hash locally, ask which hashes are missing, send only those."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

CHUNK_BYTES = 4 << 20
Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes total) while hashing and while sending."""


def sha256_path(path: Path, progress: Progress | None = None) -> str:
    """The sha256 of a file, in 4 MiB chunks."""
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    return digest.hexdigest()


def iter_file(path: Path, progress: Progress | None = None) -> Iterator[bytes]:
    """The file's bytes in chunks, for a streaming PUT (memory stays flat for big caches)."""
    total = path.stat().st_size
    done = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            done += len(chunk)
            if progress:
                progress(done, total)
            yield chunk
