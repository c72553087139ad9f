"""The S3 asset store: blobs as objects ``<prefix>ab/cd/<sha256>`` in one bucket, read through a
local cache on each node.

Works with AWS S3 and with S3-compatible stores (MinIO, Ceph RGW) through ``endpoint_url``.

Where bytes are verified:

- **Writes** hash the bytes first (streamed in 1 MiB chunks into a spool file in the cache),
  refuse them with :class:`~farm.errors.Conflict` when they do not match ``expect_hash``, and
  upload only when the bucket does not already hold a verified copy. A verified copy is an object
  of the right size carrying ``x-amz-meta-sha256`` with its hash, which only this store writes,
  after hashing. Anything else under a hash key (truncated, written by another tool) is uploaded
  again: a damaged object is repaired by the next put of its bytes, as on disk.
- **Reads** (``local_path``, ``open``, ``iter_chunks``) go through the node's cache
  ``<cache_dir>/ab/cd/<sha256>``. A cache miss downloads to a temp name in the same folder, checks
  the sha256 and only then renames into place, so a crash never leaves wrong bytes under a final
  name, and corrupt bytes in the bucket are refused with :class:`~farm.errors.InvalidSpec` and
  never cached. After that, the cached file is trusted like a disk store's file: it is read-only,
  and replaced (never rewritten) by later verified puts.

A node never downloads the same blob twice: a cached file stays until it is deleted, and
concurrent misses on one node (the tiles of one frame starting together) wait on a file lock
while one of them downloads. Paths given out stay valid while the process lives, so a particle
cache may stay memory-mapped after its ``local_path`` context ends. Nothing evicts the cache
yet: size it for the inputs a node reads. A blob that another process deletes from the bucket
is still served from a cache that holds it (its bytes are still the right ones).

The store pickles as its configuration (bucket, prefix, endpoint, region, cache folder and any
explicit credentials), never as a boto3 client: each process creates one client per
configuration on first use and checks the bucket once. Every S3 failure (no such bucket,
refused credentials, endpoint unreachable) becomes one :class:`~farm.errors.Unavailable` naming
the bucket and the endpoint.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from farm.errors import Conflict, InvalidSpec, NotFound, Unavailable
from farm.storage.base import (
    BlobStore,
    PutResult,
    check_hash,
    sha256_file,
)
from farm.storage.packs import (
    PACK_MAX_BLOB_BYTES,
    Location,
    PackIndex,
    encode_index,
    now_ns,
    pack_name,
)

HASH_METADATA = "sha256"
"""User metadata (``x-amz-meta-sha256``): an object this store wrote after hashing it."""

TRANSFER_PART_BYTES = 16 << 20
"""Multipart threshold and part size of uploads and ranged downloads."""
SMALL_PUT_BYTES = 8 << 20
"""A blob up to this size given as bytes is stored with a single PUT (:meth:`S3Store.put_bytes`)."""

_ClientKey = tuple[int, str | None, str | None, str | None, str | None, str | None]

_lock = threading.Lock()
_clients: dict[_ClientKey, Any] = {}
_checked: set[tuple[_ClientKey, str]] = set()
"""Buckets already found reachable by this process, per client."""
_pack_indexes: dict[tuple[str | None, str, str], PackIndex] = {}
"""This process's index of each store's packs (``farm.storage.packs``)."""


def _restore(config: dict[str, Any]) -> S3Store:
    return S3Store(**config)


class S3Store(BlobStore):
    """Content-addressed objects in an S3 bucket, read through a local cache keyed by hash.

    Args:
        bucket: the bucket holding the blobs (it must exist).
        prefix: prepended to every key, e.g. ``"delta/"`` (a missing trailing ``/`` is added).
        endpoint_url: an S3-compatible endpoint (MinIO, Ceph, a local test server); None for
            AWS. With an endpoint, keys are addressed path-style (``endpoint/bucket/key``),
            which every S3-compatible server accepts.
        region: the bucket's region; None lets boto3 decide (``AWS_DEFAULT_REGION``, config).
        cache_dir: this node's cache folder (local disk: it holds whole blobs).
        access_key_id: explicit credentials; None uses boto3's default chain (environment,
            ``AWS_PROFILE``, the node's role). Explicit ones travel with the pickled store.
        secret_access_key: the secret of ``access_key_id``.
        session_token: for temporary credentials.

    Example:
        >>> store = S3Store("studio-farm", prefix="delta/", cache_dir="/var/cache/delta")
        >>> put = store.put_bytes(b"tile")  # doctest: +SKIP
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        cache_dir: str | Path,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
    ) -> None:
        # No I/O here: the store is rebuilt in every Ray task that receives it.
        self.bucket = bucket
        prefix = prefix.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self.endpoint_url = endpoint_url
        self.region = region
        self.cache_dir = Path(cache_dir)
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._session_token = session_token

    def _config(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "prefix": self.prefix,
            "endpoint_url": self.endpoint_url,
            "region": self.region,
            "cache_dir": str(self.cache_dir),
            "access_key_id": self._access_key_id,
            "secret_access_key": self._secret_access_key,
            "session_token": self._session_token,
        }

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        return (_restore, (self._config(),))

    def __repr__(self) -> str:
        return f"S3Store({self.location}, cache_dir={str(self.cache_dir)!r})"

    @property
    def location(self) -> str:
        """``s3://bucket/prefix`` and the endpoint, as error messages name them."""
        return f"s3://{self.bucket}/{self.prefix} at {self.endpoint_url or 'AWS S3'}"

    def key(self, content_hash: str) -> str:
        """The object key of a hash: ``<prefix>ab/cd/<sha256>``."""
        check_hash(content_hash)
        return f"{self.prefix}{content_hash[:2]}/{content_hash[2:4]}/{content_hash}"

    def cache_path(self, content_hash: str) -> Path:
        """Where this node keeps its verified copy of a blob."""
        check_hash(content_hash)
        return self.cache_dir / content_hash[:2] / content_hash[2:4] / content_hash

    # -- the client ----------------------------------------------------------------------

    def _client_key(self) -> _ClientKey:
        # Per process id: a boto3 client must not cross a fork.
        return (
            os.getpid(),
            self.endpoint_url,
            self.region,
            self._access_key_id,
            self._secret_access_key,
            self._session_token,
        )

    def _raw_client(self) -> Any:
        key = self._client_key()
        with _lock:
            client = _clients.get(key)
            if client is None:
                # Created once per process and configuration (creating one costs tens of ms,
                # and a Ray worker unpickles the store for every task). boto3 clients are
                # thread-safe; sessions are not, hence the lock.
                import boto3
                from botocore.config import Config

                options: dict[str, Any] = {
                    "retries": {"mode": "standard", "max_attempts": 3},
                    "connect_timeout": 5,
                    "read_timeout": 60,
                    "max_pool_connections": 32,
                }
                if self.endpoint_url:
                    options["s3"] = {"addressing_style": "path"}
                session = boto3.session.Session(
                    aws_access_key_id=self._access_key_id,
                    aws_secret_access_key=self._secret_access_key,
                    aws_session_token=self._session_token,
                    region_name=self.region,
                )
                client = session.client(
                    "s3", endpoint_url=self.endpoint_url, config=Config(**options)
                )
                _clients[key] = client
        return client

    @property
    def client(self) -> Any:
        """This process's boto3 S3 client for the store, its bucket checked once.

        Raises:
            Unavailable: the bucket cannot be reached (see :meth:`check`).
        """
        client = self._raw_client()
        if (self._client_key(), self.bucket) not in _checked:
            self.check()
        return client

    def check(self) -> None:
        """Check that the bucket exists and the credentials may use it (one HEAD request).

        The farm server calls it at start-up; every process does once, on first use, so that a
        missing bucket is never mistaken for a missing blob (both answer 404 to a HEAD).

        Raises:
            Unavailable: no such bucket, refused credentials, or the endpoint is unreachable.
        """
        client = self._raw_client()
        with self._errors("reach the bucket", head_bucket=True):
            client.head_bucket(Bucket=self.bucket)
        with _lock:
            _checked.add((self._client_key(), self.bucket))

    @contextlib.contextmanager
    def _errors(self, doing: str, *, head_bucket: bool = False) -> Iterator[None]:
        """Turn boto3's failures into one Unavailable naming the bucket and the endpoint."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (ClientError, BotoCoreError, Boto3Error) as exc:
            reason = _reason(exc, head_bucket=head_bucket)
            raise Unavailable(
                f"the S3 store {self.location} is unavailable (could not {doing}): {reason}"
            ) from exc

    def _head(self, content_hash: str) -> dict[str, Any] | None:
        """The object's HEAD answer, or None when there is no such object."""
        from botocore.exceptions import ClientError

        key = self.key(content_hash)
        client = self.client
        with self._errors(f"look up blob {content_hash}"):
            try:
                head: dict[str, Any] = client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _status(exc) == 404:
                    return None
                raise
        return head

    # -- writes --------------------------------------------------------------------------

    def _ready(self) -> None:
        _ = self.client  # an unreachable store fails before the bytes are read

    def scratch_dir(self) -> Path:
        spool = self.cache_dir / "tmp"
        spool.mkdir(parents=True, exist_ok=True)
        return spool

    def _take(self, flushed: Path, content_hash: str, size: int) -> PutResult:
        """Uploads the file (unless the bucket holds its bytes already) and keeps it as this
        node's cached copy."""
        client = self.client
        tmp_name = str(flushed)
        try:
            key = self.key(content_hash)
            head = self._head(content_hash)
            if head is None or not _verified(head, content_hash, size):
                from boto3.s3.transfer import TransferConfig

                with self._errors(f"upload blob {content_hash}"):
                    client.upload_file(
                        tmp_name,
                        self.bucket,
                        key,
                        ExtraArgs={
                            "Metadata": {HASH_METADATA: content_hash},
                            "ContentType": "application/octet-stream",
                        },
                        Config=TransferConfig(
                            multipart_threshold=TRANSFER_PART_BYTES,
                            multipart_chunksize=TRANSFER_PART_BYTES,
                        ),
                    )
            # The bytes are verified: keep them as this node's copy (replacing, like the disk
            # store, any copy already cached; a process that mapped that one keeps its inode).
            target = self.cache_path(content_hash)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp_name, 0o444)
            os.replace(tmp_name, target)
            tmp_name = ""
            return PutResult(content_hash, size, key, created=head is None)
        finally:
            if tmp_name:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp_name)

    def put_small(self, data: bytes, *, expect_hash: str | None = None) -> PutResult:
        """A small blob in one request: hashed in memory, then one PUT, no HEAD first.

        Content addressing makes the PUT safe whether or not the object exists (the same key
        always holds the same bytes), and one request instead of two is what makes 10,000
        small files upload quickly (the upload pack route). Blobs over
        :data:`SMALL_PUT_BYTES` take :meth:`put_bytes`. No local copy is kept: the API host
        rarely reads what it is sent, and a worker caches what it reads. ``created`` is True:
        whether the object was there before is not asked.
        """
        if len(data) > SMALL_PUT_BYTES:
            return self.put_bytes(data, expect_hash=expect_hash)
        if expect_hash is not None:
            check_hash(expect_hash)
        content_hash = hashlib.sha256(data).hexdigest()
        if expect_hash is not None and content_hash != expect_hash:
            raise Conflict(
                f"uploaded bytes hash to {content_hash}, not {expect_hash}: the upload was "
                "corrupted or the hash is wrong; nothing was stored, send it again"
            )
        key = self.key(content_hash)
        with self._errors(f"upload blob {content_hash}"):
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                Metadata={HASH_METADATA: content_hash},
                ContentType="application/octet-stream",
            )
        return PutResult(content_hash, len(data), key, created=True)

    packs_natively = True

    def put_pack(self, blobs: Sequence[tuple[str, bytes]]) -> list[PutResult]:
        """Small blobs in two requests: their bytes end to end in one pack object, then its
        index (``farm.storage.packs``); bigger ones (over ``PACK_MAX_BLOB_BYTES``) one object
        each. Every hash is checked before anything is stored."""
        for content_hash, data in blobs:
            check_hash(content_hash)
            actual = hashlib.sha256(data).hexdigest()
            if actual != content_hash:
                raise Conflict(
                    f"uploaded bytes hash to {actual}, not {content_hash}: the upload was "
                    "corrupted or the hash is wrong; nothing was stored, send it again"
                )
        small = {h: d for h, d in blobs if len(d) <= PACK_MAX_BLOB_BYTES}
        results = {h: self.put_small(d, expect_hash=h) for h, d in blobs if h not in small}
        if small:
            body = b"".join(small.values())
            name = pack_name(now_ns(), hashlib.sha256(body).hexdigest())
            pack_key, index_key = f"{self._packs}{name}.pack", f"{self._packs}{name}.index"
            entries, offset = [], 0
            for content_hash, data in small.items():
                entries.append((content_hash, offset, len(data)))
                offset += len(data)
            with self._errors(f"upload a pack of {len(small)} blobs"):
                self.client.put_object(Bucket=self.bucket, Key=pack_key, Body=body)
                # Last: an index names only a pack that is whole.
                self.client.put_object(
                    Bucket=self.bucket, Key=index_key, Body=encode_index(pack_key, entries)
                )
            self._pack_index.add(index_key, {h: Location(pack_key, o, n) for h, o, n in entries})
            for content_hash, o, n in entries:
                results[content_hash] = PutResult(
                    content_hash, n, f"{pack_key}#{o}+{n}", created=True
                )
        return [results[content_hash] for content_hash, _ in blobs]

    @property
    def _packs(self) -> str:
        return f"{self.prefix}packs/"

    @property
    def _pack_index(self) -> PackIndex:
        key = (self.endpoint_url, self.bucket, self.prefix)
        with _lock:
            index = _pack_indexes.get(key)
            if index is None:
                index = _pack_indexes[key] = PackIndex()
        return index

    def _locate(self, content_hash: str) -> Location | None:
        """Where a packed blob is (None when no pack holds it)."""
        client = self.client

        def list_after(start: str) -> list[str]:
            keys: list[str] = []
            options = {"Bucket": self.bucket, "Prefix": self._packs}
            if start:
                options["StartAfter"] = start
            for page in client.get_paginator("list_objects_v2").paginate(**options):
                keys.extend(item["Key"] for item in page.get("Contents", ()))
            return keys

        def read(key: str) -> bytes:
            # Indexes never change: the node's copy serves every later process on it.
            cached = self.cache_dir / "pack-indexes" / key.rsplit("/", 1)[-1]
            if cached.is_file():
                return cached.read_bytes()
            data: bytes = client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            cached.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=cached.parent, prefix=".index-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp_name, cached)
            return data

        with self._errors(f"look up blob {content_hash} in the packs"):
            return self._pack_index.find(
                content_hash, list_after=list_after, read=read, prefix=self._packs
            )

    # -- reads ---------------------------------------------------------------------------

    def exists(self, content_hash: str) -> bool:
        return self._head(content_hash) is not None or self._locate(content_hash) is not None

    def size(self, content_hash: str) -> int:
        head = self._head(content_hash)
        if head is None:
            packed = self._locate(content_hash)
            if packed is None:
                raise NotFound(f"blob {content_hash} is not in the store")
            return packed.length
        return int(head["ContentLength"])

    def open(self, content_hash: str) -> BinaryIO:
        """Open the node's verified copy (downloaded first when the node has none)."""
        return open(self._cached(content_hash), "rb")

    @contextlib.contextmanager
    def local_path(self, content_hash: str) -> Iterator[Path]:
        """The node's verified, read-only copy; it stays after the context (see the module)."""
        yield self._cached(content_hash)

    def delete(self, content_hash: str) -> None:
        key = self.key(content_hash)
        client = self.client
        with self._errors(f"delete blob {content_hash}"):
            client.delete_object(Bucket=self.bucket, Key=key)
        with contextlib.suppress(FileNotFoundError):
            self.cache_path(content_hash).unlink()

    def _cached(self, content_hash: str) -> Path:
        path = self.cache_path(content_hash)
        if path.is_file():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._download_lock(content_hash):
            if not path.is_file():  # else another process on this node fetched it meanwhile
                self._download(content_hash, path)
        return path

    @contextlib.contextmanager
    def _download_lock(self, content_hash: str) -> Iterator[None]:
        # 4,096 lock files striped by hash (never deleted, so no lock is ever taken on a file
        # that another process just unlinked). flock is per open file, so it also serialises
        # threads of one process, each of which opens the file itself.
        locks = self.cache_dir / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{content_hash[:3]}.lock", "ab") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _download(self, content_hash: str, path: Path) -> None:
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import ClientError

        key = self.key(content_hash)
        client = self.client
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{content_hash}-", suffix=".part")
        os.close(fd)
        try:
            with self._errors(f"download blob {content_hash}"):
                try:
                    client.download_file(
                        self.bucket,
                        key,
                        tmp_name,
                        Config=TransferConfig(
                            multipart_threshold=TRANSFER_PART_BYTES,
                            multipart_chunksize=TRANSFER_PART_BYTES,
                        ),
                    )
                except ClientError as exc:
                    if _status(exc) != 404:
                        raise
                    self._download_packed(content_hash, tmp_name)
            actual = sha256_file(tmp_name)
            if actual != content_hash:
                raise InvalidSpec(
                    f"blob {content_hash} is corrupt in the store: its bytes hash to {actual}; "
                    "it was not used, store its bytes again (a verified put replaces them)",
                    field="content_hash",
                )
            with open(tmp_name, "rb") as handle:
                os.fsync(handle.fileno())
            # Read-only: every later task on this node trusts this copy without hashing it.
            os.chmod(tmp_name, 0o444)
            os.replace(tmp_name, path)
            tmp_name = ""
        finally:
            if tmp_name:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp_name)

    def _download_packed(self, content_hash: str, tmp_name: str) -> None:
        """A packed blob's bytes into ``tmp_name`` (one ranged GET); NotFound when no pack
        holds it. The caller verifies the hash, as for any download."""
        packed = self._locate(content_hash)
        if packed is None:
            raise NotFound(f"blob {content_hash} is not in the store")
        data = b""
        if packed.length:
            end = packed.offset + packed.length - 1
            answer = self.client.get_object(
                Bucket=self.bucket, Key=packed.key, Range=f"bytes={packed.offset}-{end}"
            )
            data = answer["Body"].read()
        with open(tmp_name, "wb") as handle:
            handle.write(data)


def _status(exc: Any) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def _verified(head: dict[str, Any], content_hash: str, size: int) -> bool:
    """An object this store wrote after hashing it, and of the right size."""
    metadata = head.get("Metadata") or {}
    return bool(head.get("ContentLength") == size and metadata.get(HASH_METADATA) == content_hash)


_CREDENTIAL_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
    }
)


def _reason(exc: BaseException, *, head_bucket: bool) -> str:
    """What went wrong and what to do, in words (boto3's own messages are often just codes)."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import (
        ClientError,
        ConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    # boto3's upload wraps the ClientError in an S3UploadFailedError that only quotes it.
    wrapped = isinstance(exc, Boto3Error) and isinstance(exc.__context__, ClientError)
    cause = exc.__context__ if wrapped and exc.__context__ is not None else exc
    if isinstance(cause, ClientError):
        code = str(cause.response.get("Error", {}).get("Code", ""))
        status = _status(cause)
        if code == "NoSuchBucket" or (head_bucket and status == 404):
            return "the bucket does not exist: create it, or correct FARM_S3_BUCKET"
        if code in _CREDENTIAL_CODES or status == 403:
            return (
                f"the endpoint refused the credentials ({code or status}): check "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the node's role, "
                "and that they may use this bucket"
            )
        message = cause.response.get("Error", {}).get("Message", "")
        return f"{code or status}: {message or cause}"
    if isinstance(cause, NoCredentialsError | PartialCredentialsError):
        return (
            "no usable AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, or give the node a role"
        )
    if isinstance(cause, ConnectionError):
        return (
            f"cannot connect to the endpoint ({cause}); check that it is up and that "
            "FARM_S3_ENDPOINT_URL and FARM_S3_REGION are right"
        )
    return str(cause)
