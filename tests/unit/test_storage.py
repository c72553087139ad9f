"""The blob stores: hash-verified, atomic, deduplicated, on disk and in S3 (moto's server).

The contract tests run on both stores; the S3 ones check the node cache (one download per
blob), refusal of corrupt objects, pickling into a fresh process, clear errors when the bucket
cannot be reached, and that configuration picks the store.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from farm.errors import Conflict, InvalidSpec, NotFound, Unavailable
from farm.storage import BlobStore, DiskStore, S3Store
from tests.s3_server import S3Endpoint

REPO = Path(__file__).resolve().parents[2]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["disk", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "disk":
        return DiskStore(tmp_path / "blobs")
    s3: S3Store = request.getfixturevalue("s3_store")
    return s3


def spool_dir(store: BlobStore) -> Path:
    """Where a store writes bytes before it knows their hash."""
    if isinstance(store, DiskStore):
        return store.root / "tmp"
    assert isinstance(store, S3Store)
    return store.cache_dir / "tmp"


@contextmanager
def counting_gets(store: S3Store) -> Iterator[list[str]]:
    """Every GetObject request this process sends for ``store`` while the block runs."""
    keys: list[str] = []
    client = store.client

    def count(params: dict[str, Any], **_: Any) -> None:
        keys.append(params["Key"])

    client.meta.events.register("before-parameter-build.s3.GetObject", count)
    try:
        yield keys
    finally:
        client.meta.events.unregister("before-parameter-build.s3.GetObject", count)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- the contract, on both stores ---------------------------------------------------------


def test_put_then_read_back(store: BlobStore) -> None:
    data = b"particles" * 1000
    result = store.put_bytes(data, expect_hash=sha(data))
    assert result.created and result.size_bytes == len(data)
    assert store.exists(result.content_hash) and store.size(result.content_hash) == len(data)
    with store.open(result.content_hash) as handle:
        assert handle.read() == data
    with store.local_path(result.content_hash) as path:
        assert path.read_bytes() == data
    assert b"".join(store.iter_chunks(result.content_hash)) == data


def test_put_file_streams_a_multi_chunk_file(store: BlobStore, tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 17)  # three 1 MiB chunks and a tail
    source = tmp_path / "cache.dpc"
    source.write_bytes(data)
    result = store.put_file(source, expect_hash=sha(data))
    assert result.size_bytes == len(data)
    with store.local_path(result.content_hash) as path:
        assert path.read_bytes() == data


def test_an_adopted_scratch_file_is_moved_in_and_a_file_elsewhere_is_copied(
    store: BlobStore, tmp_path: Path
) -> None:
    data = os.urandom((1 << 20) + 5)
    scratch_dir = store.scratch_dir()
    assert scratch_dir is not None and scratch_dir.is_dir()
    scratch = scratch_dir / "delta-tile.exr"
    scratch.write_bytes(data)
    adopted = store.adopt_file(scratch)
    assert adopted.content_hash == sha(data) and adopted.size_bytes == len(data)
    assert adopted.created
    assert not scratch.exists()  # taken, not copied: the caller's path is gone
    with store.local_path(adopted.content_hash) as path:
        assert path.read_bytes() == data
    with store.open(adopted.content_hash) as handle:
        assert handle.read() == data  # from the bucket itself on S3, not only the node's copy
    elsewhere = tmp_path / "mine.exr"
    elsewhere.write_bytes(data)
    again = store.adopt_file(elsewhere)
    assert again.content_hash == adopted.content_hash and not again.created
    assert elsewhere.read_bytes() == data  # not the store's to take
    assert not list(spool_dir(store).iterdir())  # nothing left behind


def test_same_bytes_are_stored_once(store: BlobStore) -> None:
    first = store.put_bytes(b"abc")
    second = store.put_bytes(b"abc")
    assert first.created and not second.created
    assert first.storage_key == second.storage_key


def test_wrong_hash_stores_nothing(store: BlobStore) -> None:
    with pytest.raises(Conflict, match="hash to"):
        store.put_bytes(b"abc", expect_hash=sha(b"abd"))
    assert not store.exists(sha(b"abc"))
    assert not store.exists(sha(b"abd"))
    assert list(spool_dir(store).iterdir()) == []


def test_bad_hash_and_missing_blob_are_clear_errors(store: BlobStore) -> None:
    with pytest.raises(InvalidSpec, match="64 lowercase hex"):
        store.exists("not-a-hash")
    with pytest.raises(NotFound, match="not in the store"):
        store.open(sha(b"nothing"))
    with pytest.raises(NotFound, match="not in the store"):
        store.size(sha(b"nothing"))
    with pytest.raises(NotFound, match="not in the store"), store.local_path(sha(b"nothing")):
        pass


def test_deleted_blob_is_gone(store: BlobStore) -> None:
    put = store.put_bytes(b"scratch")
    store.delete(put.content_hash)
    assert not store.exists(put.content_hash)
    with pytest.raises(NotFound):
        store.open(put.content_hash)


def test_store_pickles_for_ray_tasks(store: BlobStore) -> None:
    clone = pickle.loads(pickle.dumps(store))
    put = store.put_bytes(b"shared")
    assert clone.exists(put.content_hash)
    with clone.open(put.content_hash) as handle:
        assert handle.read() == b"shared"


# -- the disk store -----------------------------------------------------------------------


def test_a_damaged_blob_is_repaired_by_the_next_put_of_its_bytes(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    data = b"tile pixels" * 100
    put = store.put_bytes(data)
    store.path(put.content_hash).write_bytes(data[:10])  # truncated on disk
    store.put_bytes(data, expect_hash=put.content_hash)
    assert store.path(put.content_hash).read_bytes() == data
    rotten = bytearray(data)
    rotten[7] ^= 0xFF  # same size, one flipped byte
    store.path(put.content_hash).write_bytes(bytes(rotten))
    again = store.put_bytes(data, expect_hash=put.content_hash)
    assert not again.created
    assert store.path(put.content_hash).read_bytes() == data


# -- the S3 store ---------------------------------------------------------------------------


def test_s3_keys_carry_the_prefix_and_hold_the_bytes(
    s3_store: S3Store, s3_endpoint: S3Endpoint
) -> None:
    data = b"frame 1001"
    put = s3_store.put_bytes(data)
    h = put.content_hash
    assert put.storage_key == f"{s3_store.prefix}{h[:2]}/{h[2:4]}/{h}"
    assert s3_store.prefix.endswith("/") and not s3_store.prefix.startswith("/")
    body = s3_endpoint.client().get_object(Bucket=s3_endpoint.bucket, Key=put.storage_key)
    assert body["Body"].read() == data
    assert body["Metadata"] == {"sha256": h}


def test_a_node_downloads_a_blob_once_then_reads_its_cache(
    s3_store: S3Store, s3_endpoint: S3Endpoint, tmp_path: Path
) -> None:
    data = b"sim cache" * 5000
    put = s3_store.put_bytes(data)
    node = s3_endpoint.store(tmp_path / "other-node", prefix=s3_store.prefix)
    with counting_gets(node) as gets:
        with s3_store.local_path(put.content_hash) as path:  # the writer keeps its own copy
            assert path.read_bytes() == data
        assert gets == []
        with node.local_path(put.content_hash) as first:
            inode = first.stat().st_ino
            assert first.read_bytes() == data
        with node.local_path(put.content_hash) as second:
            assert second == first and second.stat().st_ino == inode
        with node.open(put.content_hash) as handle:
            assert handle.read() == data
        assert b"".join(node.iter_chunks(put.content_hash)) == data
        # Another process of the node (same cache folder) finds it too.
        same_node = s3_endpoint.store(tmp_path / "other-node", prefix=s3_store.prefix)
        with same_node.local_path(put.content_hash) as path:
            assert path.stat().st_ino == inode
        assert gets == [put.storage_key]
    assert not os.access(first, os.W_OK) or os.geteuid() == 0  # cached copies are read-only
    assert [p.name for p in first.parent.iterdir()] == [put.content_hash]  # no temp files left


def test_concurrent_misses_on_one_node_download_once(
    s3_store: S3Store, s3_endpoint: S3Endpoint, tmp_path: Path
) -> None:
    data = os.urandom(1 << 20)
    put = s3_store.put_bytes(data)
    node = s3_endpoint.store(tmp_path / "render-node", prefix=s3_store.prefix)
    start = threading.Barrier(6)

    def read() -> bytes:
        start.wait()
        with node.local_path(put.content_hash) as path:
            return path.read_bytes()

    with counting_gets(node) as gets, ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: read(), range(6)))
    assert results == [data] * 6
    assert gets == [put.storage_key]


def test_a_corrupt_object_is_refused_on_read_and_repaired_by_a_put(
    s3_store: S3Store, s3_endpoint: S3Endpoint, tmp_path: Path
) -> None:
    data = b"tile pixels" * 100
    put = s3_store.put_bytes(data)
    bucket, raw = s3_endpoint.bucket, s3_endpoint.client()
    rotten = bytearray(data)
    rotten[7] ^= 0xFF  # same size, one flipped byte, written by something else than the store
    raw.put_object(Bucket=bucket, Key=put.storage_key, Body=bytes(rotten))
    node = s3_endpoint.store(tmp_path / "reader", prefix=s3_store.prefix)
    with pytest.raises(InvalidSpec, match=f"blob {put.content_hash} is corrupt"):
        node.open(put.content_hash)
    with pytest.raises(InvalidSpec, match="corrupt"), node.local_path(put.content_hash):
        pass
    assert not node.cache_path(put.content_hash).exists()
    assert list(node.cache_path(put.content_hash).parent.iterdir()) == []  # no .part left
    again = s3_store.put_bytes(data, expect_hash=put.content_hash)
    assert not again.created  # the key was there; its bytes were not
    with node.open(put.content_hash) as handle:
        assert handle.read() == data
    # A truncated object that even claims the right hash is uploaded again too.
    raw.put_object(
        Bucket=bucket, Key=put.storage_key, Body=data[:10], Metadata={"sha256": put.content_hash}
    )
    s3_store.put_bytes(data)
    assert raw.get_object(Bucket=bucket, Key=put.storage_key)["Body"].read() == data


def test_a_pickled_store_works_in_a_fresh_process(
    s3_store: S3Store, s3_endpoint: S3Endpoint, tmp_path: Path
) -> None:
    put = s3_store.put_bytes(b"seed particles")
    worker_store = s3_endpoint.store(tmp_path / "worker-cache", prefix=s3_store.prefix)
    script = (
        "import pickle, sys\n"
        "store = pickle.loads(sys.stdin.buffer.read())\n"
        "with store.local_path(sys.argv[1]) as path:\n"
        "    assert path.read_bytes() == b'seed particles', path\n"
        "print(store.put_bytes(b'a tile from a worker').content_hash)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, put.content_hash],
        input=pickle.dumps(worker_store),
        capture_output=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    written = done.stdout.decode().strip()
    assert written == sha(b"a tile from a worker")
    assert s3_store.exists(written)
    assert worker_store.cache_path(put.content_hash).is_file()
    assert b"botocore" not in pickle.dumps(worker_store)  # config only, never a client


def test_an_unreachable_endpoint_is_one_clear_unavailable_error(
    s3_store: S3Store, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    store = S3Store("delta-blobs", endpoint_url=url, cache_dir=tmp_path / "cache")
    with pytest.raises(Unavailable) as caught:
        store.exists(sha(b"anything"))
    message = str(caught.value)
    assert "s3://delta-blobs/" in message and url in message
    assert "cannot connect to the endpoint" in message and "FARM_S3_ENDPOINT_URL" in message
    assert "\n" not in message
    with pytest.raises(Unavailable, match="cannot connect"):
        store.put_bytes(b"never sent")
    assert not (tmp_path / "cache" / "tmp").exists()  # refused before the bytes were read


def test_a_missing_bucket_is_unavailable_not_a_missing_blob(
    s3_store: S3Store, s3_endpoint: S3Endpoint, tmp_path: Path
) -> None:
    store = S3Store(
        "delta-no-such-bucket", endpoint_url=s3_endpoint.url, cache_dir=tmp_path / "cache"
    )
    for action in (store.check, lambda: store.exists(sha(b"x")), lambda: store.open(sha(b"x"))):
        with pytest.raises(Unavailable, match=r"bucket does not exist.*FARM_S3_BUCKET"):
            action()


def test_configuration_picks_the_store(
    s3_store: S3Store, s3_endpoint: S3Endpoint, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """(``s3_store`` gives the AWS_* environment of the endpoint.)"""
    from farm.api.context import FarmContext, open_store
    from farm.settings import Settings

    assert isinstance(open_store(Settings()), DiskStore)  # the default
    monkeypatch.setenv("FARM_STORE", "s3")
    with pytest.raises(ValidationError, match="FARM_STORE=s3 needs FARM_S3_BUCKET"):
        Settings()
    monkeypatch.setenv("FARM_S3_BUCKET", s3_endpoint.bucket)
    monkeypatch.setenv("FARM_S3_PREFIX", "/configured/")
    monkeypatch.setenv("FARM_S3_ENDPOINT_URL", s3_endpoint.url)
    monkeypatch.setenv("FARM_S3_REGION", s3_endpoint.region)
    settings = Settings()
    context = FarmContext.from_settings(settings)
    store = context.store
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix) == (s3_endpoint.bucket, "configured/")
    assert store.cache_dir == settings.home / "cache"
    put = store.put_bytes(b"configured")
    assert put.storage_key.startswith("configured/")
    another_node = s3_endpoint.store(tmp_path / "another-node", prefix="configured")
    assert another_node.exists(put.content_hash)
    monkeypatch.setenv("FARM_CACHE_DIR", str(tmp_path / "node-cache"))
    assert Settings().resolved_cache_dir == tmp_path / "node-cache"
    monkeypatch.setenv("FARM_S3_BUCKET", "delta-no-such-bucket")
    with pytest.raises(Unavailable, match="delta-no-such-bucket"):
        FarmContext.from_settings(Settings())  # start-up stops on a bad bucket
    monkeypatch.setenv("FARM_S3_ENDPOINT_URL", "minio:9000")
    with pytest.raises(ValidationError, match="FARM_S3_ENDPOINT_URL"):
        Settings()


def test_a_small_put_stores_bytes_that_read_back_verified(store: BlobStore, tmp_path: Path) -> None:
    """``put_small`` (one PUT on S3, the upload pack route) keeps the same contract on read:
    the bytes come back under their hash, and a wrong hash stores nothing."""
    data = b"a tiny texture"
    result = store.put_small(data)
    assert result.content_hash == hashlib.sha256(data).hexdigest()
    with store.open(result.content_hash) as handle:
        assert handle.read() == data
    with pytest.raises(Conflict):
        store.put_small(b"other bytes", expect_hash=result.content_hash[::-1])
    assert not store.exists(result.content_hash[::-1])
