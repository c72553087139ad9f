"""The embedded asset store: blobs as files under ``$FARM_HOME/blobs/ab/cd/<sha256>``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from farm.errors import NotFound
from farm.storage.base import BlobStore, PutResult, check_hash


class DiskStore(BlobStore):
    """Content-addressed files on a local (or shared network) disk.

    Writes are atomic: bytes go to a temp file in the store, are hashed on the way, fsynced, and
    renamed into place only when the hash is right. A crash leaves at worst a stray temp file,
    never a blob with the wrong bytes under a hash.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)

    def __reduce__(self) -> tuple[type[DiskStore], tuple[str]]:
        return (DiskStore, (str(self.root),))

    def key(self, content_hash: str) -> str:
        """The storage key (path relative to the root) of a hash."""
        check_hash(content_hash)
        return f"{content_hash[:2]}/{content_hash[2:4]}/{content_hash}"

    def path(self, content_hash: str) -> Path:
        return self.root / self.key(content_hash)

    def scratch_dir(self) -> Path:
        return self.root / "tmp"

    def _take(self, flushed: Path, content_hash: str, size: int) -> PutResult:
        # Renaming over a stored copy is as cheap as deleting the new one, and repairs a
        # stored copy damaged on disk (bit rot, truncation) that a size check would miss.
        target = self.path(content_hash)
        existed = target.is_file()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(flushed, target)
        finally:
            flushed.unlink(missing_ok=True)
        return PutResult(content_hash, size, self.key(content_hash), created=not existed)

    def exists(self, content_hash: str) -> bool:
        return self.path(content_hash).is_file()

    def size(self, content_hash: str) -> int:
        try:
            return self.path(content_hash).stat().st_size
        except FileNotFoundError as exc:
            raise NotFound(f"blob {content_hash} is not in the store") from exc

    def open(self, content_hash: str) -> BinaryIO:
        try:
            return open(self.path(content_hash), "rb")
        except FileNotFoundError as exc:
            raise NotFound(f"blob {content_hash} is not in the store") from exc

    @contextlib.contextmanager
    def local_path(self, content_hash: str) -> Iterator[Path]:
        path = self.path(content_hash)
        if not path.is_file():
            raise NotFound(f"blob {content_hash} is not in the store")
        yield path

    def delete(self, content_hash: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(content_hash).unlink()
