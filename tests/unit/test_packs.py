"""Small blobs packed into shared S3 objects with an index (``farm.storage.packs``)."""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from farm.errors import Conflict, InvalidSpec, NotFound
from farm.storage import s3 as s3_module
from farm.storage.packs import LIST_MARGIN_NS, PackIndex, decode_index, encode_index, pack_name
from farm.storage.s3 import S3Store
from tests.s3_server import S3Endpoint

REPO = Path(__file__).resolve().parents[2]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_an_index_reads_back_and_a_process_lists_only_newer_indexes() -> None:
    objects: dict[str, bytes] = {}
    listed: list[str] = []

    def list_after(start: str) -> list[str]:
        listed.append(start)
        return sorted(k for k in objects if k > start)

    def write(stamp: int, blobs: list[bytes]) -> str:
        name = pack_name(stamp, sha(b"".join(blobs)))
        entries, offset = [], 0
        for blob in blobs:
            entries.append((sha(blob), offset, len(blob)))
            offset += len(blob)
        objects[f"p/{name}.pack"] = b"".join(blobs)
        objects[f"p/{name}.index"] = encode_index(f"p/{name}.pack", entries)
        return name

    stamp = 1_700_000_000 * 10**9
    first = write(stamp, [b"a", b"bb"])
    index = PackIndex()
    found = index.find(sha(b"bb"), list_after=list_after, read=objects.__getitem__, prefix="p/")
    assert found is not None and (found.key, found.offset, found.length) == (
        f"p/{first}.pack",
        1,
        2,
    )
    assert listed == [""]
    # A blob written later, by another host: found by listing from a margin before the newest.
    write(stamp + 5 * 10**9, [b"ccc"])
    found = index.find(sha(b"ccc"), list_after=list_after, read=objects.__getitem__, prefix="p/")
    assert found is not None and found.length == 3
    assert listed[-1] == f"p/{stamp - LIST_MARGIN_NS:020d}"
    assert (
        index.find(sha(b"zz"), list_after=list_after, read=objects.__getitem__, prefix="p/") is None
    )
    assert decode_index(objects[f"p/{first}.index"])[sha(b"a")].offset == 0


@pytest.fixture
def fresh_indexes() -> None:
    """Another node: no index of packs in memory."""
    s3_module._pack_indexes.clear()


def test_a_thousand_small_blobs_are_two_objects_and_read_back_verified_anywhere(
    s3_store: S3Store, s3_endpoint: S3Endpoint, tmp_path: Path
) -> None:
    blobs = [os.urandom(100 + i) for i in range(1000)] + [b""]
    big = os.urandom((1 << 20) + 1)
    results = s3_store.put_pack([(sha(b), b) for b in [*blobs, big]])
    assert [r.content_hash for r in results] == [sha(b) for b in [*blobs, big]]
    assert [r.size_bytes for r in results] == [len(b) for b in [*blobs, big]]
    client = s3_endpoint.client()
    keys = [
        item["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=s3_endpoint.bucket, Prefix=s3_store.prefix
        )
        for item in page.get("Contents", ())
    ]
    assert len(keys) == 3  # the pack, its index, and the big blob's own object
    assert sum(k.endswith(".pack") for k in keys) == sum(k.endswith(".index") for k in keys) == 1
    # A worker on another node: a fresh process, its own cache, no index in memory.
    worker = s3_endpoint.store(tmp_path / "worker-cache", prefix=s3_store.prefix)
    script = (
        "import hashlib, pickle, sys\n"
        "store, wanted = pickle.loads(sys.stdin.buffer.read())\n"
        "for content_hash, size in wanted:\n"
        "    with store.local_path(content_hash) as path:\n"
        "        assert hashlib.sha256(path.read_bytes()).hexdigest() == content_hash\n"
        "    assert store.size(content_hash) == size and store.exists(content_hash)\n"
        "print('ok')\n"
    )
    wanted = [(sha(b), len(b)) for b in [blobs[0], blobs[500], blobs[-1], big]]
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=pickle.dumps((worker, wanted)),
        capture_output=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "ok"


def test_a_blob_in_no_pack_is_not_found_and_a_wrong_hash_stores_nothing(
    s3_store: S3Store, s3_endpoint: S3Endpoint, fresh_indexes: None
) -> None:
    s3_store.put_pack([(sha(b"one"), b"one")])
    with pytest.raises(NotFound):
        s3_store.size(sha(b"two"))
    assert not s3_store.exists(sha(b"two"))
    with pytest.raises(Conflict):
        s3_store.put_pack([(sha(b"three"), b"three"), (sha(b"four"), b"not four")])
    assert not s3_store.exists(sha(b"three"))


def test_a_damaged_pack_is_refused_on_read(
    s3_store: S3Store, s3_endpoint: S3Endpoint, tmp_path: Path, fresh_indexes: None
) -> None:
    (result,) = s3_store.put_pack([(sha(b"frame 12 texture"), b"frame 12 texture")])
    pack_key = result.storage_key.split("#")[0]
    s3_endpoint.client().put_object(
        Bucket=s3_endpoint.bucket, Key=pack_key, Body=b"frame 12 texturf"
    )
    reader = s3_endpoint.store(tmp_path / "other-cache", prefix=s3_store.prefix)
    s3_module._pack_indexes.clear()
    with pytest.raises(InvalidSpec, match="corrupt"), reader.local_path(result.content_hash):
        pass
    assert not reader.cache_path(result.content_hash).exists()


class Bucket:
    """Index objects by key, as S3 lists them (in key order)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def list_after(self, start: str) -> list[str]:
        return sorted(k for k in self.objects if k > start)

    def write(self, stamp: int, blob: bytes) -> None:
        name = pack_name(stamp, sha(blob))
        self.objects[f"p/{name}.index"] = encode_index(
            f"p/{name}.pack", [(sha(blob), 0, len(blob))]
        )

    def find(self, index: PackIndex, blob: bytes) -> object:
        return index.find(
            sha(blob), list_after=self.list_after, read=self.objects.__getitem__, prefix="p/"
        )


def test_a_damaged_index_is_skipped_and_the_ones_after_it_still_found() -> None:
    import time

    bucket = Bucket()
    now = time.time_ns()
    bucket.objects[f"p/{now - 10:020d}-bad.index"] = b"{not json"
    bucket.write(now, b"after")
    index = PackIndex()
    assert bucket.find(index, b"after") is not None
    assert f"p/{now - 10:020d}-bad.index" in index.seen  # not read again on every lookup


def test_an_index_from_a_clock_far_ahead_does_not_hide_later_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    from farm.storage import packs

    bucket = Bucket()
    now = time.time_ns()
    bucket.write(now + 86_400 * 10**9, b"from the future")
    index = PackIndex()
    assert bucket.find(index, b"from the future") is not None
    bucket.write(now, b"written next, by a host with the right time")
    assert bucket.find(index, b"written next, by a host with the right time") is not None
    # A host whose clock is far behind: its index sorts before every listing start; a miss
    # lists everything again (at most every FULL_LIST_EVERY_S).
    bucket.write(now - 86_400 * 10**9, b"from the past")
    monkeypatch.setattr(packs, "FULL_LIST_EVERY_S", 0.0)
    assert bucket.find(index, b"from the past") is not None
