"""The asset store interface: content-addressed blobs, by sha256.

Every backend (``disk``, the default, and ``s3``) implements :class:`BlobStore`. Blobs are
immutable and named by the hash of their bytes, so a retry never overwrites anything and dedupe
is free. A store is a small picklable value (a root path, a bucket), so Ray tasks receive it as
an argument and read and write blobs directly, without passing bytes through the dispatcher.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from farm.errors import Conflict, InvalidSpec

HASH_RE = re.compile(r"^[0-9a-f]{64}$")
CHUNK_BYTES = 1 << 20


def check_hash(content_hash: str) -> str:
    """Return ``content_hash`` if it is a lowercase hex sha256, else raise InvalidSpec."""
    if not HASH_RE.match(content_hash):
        raise InvalidSpec(
            f"{content_hash!r} is not a sha256 content hash: expected 64 lowercase hex digits",
            field="content_hash",
        )
    return content_hash


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file, read in 1 MiB chunks."""
    return hash_and_flush(path, flush=False)[0]


def hash_and_flush(path: str | Path, *, flush: bool = True) -> tuple[str, int]:
    """The sha256 and size of a file, read in 1 MiB chunks; with ``flush``, its bytes are on
    disk when this returns (``fsync``), so the file may be renamed to its hash."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
        if flush:
            os.fsync(handle.fileno())
    return digest.hexdigest(), size


@dataclass(frozen=True)
class PutResult:
    content_hash: str
    size_bytes: int
    storage_key: str
    created: bool
    """False when the store already held these bytes (dedupe)."""


class BlobStore(ABC):
    """Content-addressed, immutable blob storage."""

    def put_stream(
        self, stream: BinaryIO | Iterable[bytes], *, expect_hash: str | None
    ) -> PutResult:
        """Store bytes, verifying their hash when ``expect_hash`` is given.

        The bytes go to a file in :meth:`scratch_dir`, hashed on the way and flushed, and the
        store takes that file (:meth:`_take`) only when the hash is right: a crash leaves at
        worst a stray scratch file, never a blob with the wrong bytes under a hash.

        Raises:
            Conflict: the bytes do not hash to ``expect_hash``; nothing is stored.
        """
        if expect_hash is not None:
            check_hash(expect_hash)
        self._ready()
        chunks: Iterable[bytes]
        if hasattr(stream, "read"):
            reader = stream
            chunks = iter(lambda: reader.read(CHUNK_BYTES), b"")
        else:
            chunks = stream
        fd, tmp_name = tempfile.mkstemp(dir=self.scratch_dir(), prefix="put-")
        try:
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            content_hash = digest.hexdigest()
            if expect_hash is not None and content_hash != expect_hash:
                raise Conflict(
                    f"uploaded bytes hash to {content_hash}, not {expect_hash}: the upload was "
                    "corrupted or the hash is wrong; nothing was stored, send it again"
                )
            taken = self._take(Path(tmp_name), content_hash, size)
            tmp_name = ""
            return taken
        finally:
            if tmp_name:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp_name)

    def put_file(self, path: str | Path, *, expect_hash: str | None = None) -> PutResult:
        """Store a local file's bytes."""
        with open(path, "rb") as handle:
            return self.put_stream(handle, expect_hash=expect_hash)

    def adopt_file(self, path: str | Path) -> PutResult:
        """Store a scratch file its writer is done with; the store may take the file itself.

        A tile's output used to be written twice and flushed to disk twice (the executor's
        atomic write, then the store's copy): 0.4 s of a 1.0 s 1080p render tile. A file in
        :meth:`scratch_dir` is hashed, flushed once and taken as it is (a rename; the S3 store
        uploads it and keeps it as the node's copy); the caller must not use ``path``
        afterwards. A file elsewhere is copied, as :meth:`put_file` does.
        """
        source = Path(path)
        if source.parent.resolve() != self.scratch_dir().resolve():
            return self.put_file(source)
        self._ready()
        content_hash, size = hash_and_flush(source)
        return self._take(source, content_hash, size)

    @abstractmethod
    def scratch_dir(self) -> Path:
        """Where bytes wait for their hash, and where an executor writes a file it will hand
        to :meth:`adopt_file`: on the file system the store keeps its own files on, so that
        taking one is a rename, not a copy."""

    @abstractmethod
    def _take(self, flushed: Path, content_hash: str, size: int) -> PutResult:
        """Store a flushed file of :meth:`scratch_dir` whose bytes hash to ``content_hash``;
        the file is gone afterwards, whatever happens."""

    def _ready(self) -> None:  # noqa: B027 (a hook: most stores are always ready)
        """Raise before any bytes are read when the store cannot take them (by default, never)."""

    def put_bytes(self, data: bytes, *, expect_hash: str | None = None) -> PutResult:
        return self.put_stream(iter([data]), expect_hash=expect_hash)

    def put_small(self, data: bytes, *, expect_hash: str | None = None) -> PutResult:
        """A small blob stored the cheapest way the store has (uploads of many small files);
        by default :meth:`put_bytes`."""
        return self.put_bytes(data, expect_hash=expect_hash)

    packs_natively = False
    """Whether :meth:`put_pack` stores many blobs in a few requests (the S3 store's packs)."""

    def put_pack(self, blobs: Sequence[tuple[str, bytes]]) -> list[PutResult]:
        """Many small blobs, each ``(expected hash, bytes)``; by default one :meth:`put_small`
        each. Raises Conflict, storing nothing more, at the first blob whose bytes do not
        match its hash (callers check every hash first)."""
        return [self.put_small(data, expect_hash=content_hash) for content_hash, data in blobs]

    @abstractmethod
    def exists(self, content_hash: str) -> bool: ...

    @abstractmethod
    def size(self, content_hash: str) -> int: ...

    @abstractmethod
    def open(self, content_hash: str) -> BinaryIO:
        """Open a blob for reading. Raises NotFound when it is not in the store."""

    @abstractmethod
    def local_path(self, content_hash: str) -> AbstractContextManager[Path]:
        """A context giving a local file path with the blob's bytes (memory-mappable).

        The disk store hands out its own file; the S3 store, the node's verified cached copy.
        Either path stays valid after the context ends, so a memory map of it may outlive it.
        """

    @abstractmethod
    def delete(self, content_hash: str) -> None:
        """Remove a blob (tests and garbage collection only: blobs are otherwise immutable)."""

    def iter_chunks(self, content_hash: str) -> Iterator[bytes]:
        with self.open(content_hash) as handle:
            while chunk := handle.read(CHUNK_BYTES):
                yield chunk
