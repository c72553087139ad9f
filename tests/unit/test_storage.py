"""The disk blob store: hash-verified, atomic, deduplicated."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pytest

from farm.errors import Conflict, InvalidSpec, NotFound
from farm.storage import DiskStore


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_put_then_read_back(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    data = b"particles" * 1000
    result = store.put_bytes(data, expect_hash=sha(data))
    assert result.created and result.size_bytes == len(data)
    with store.open(result.content_hash) as handle:
        assert handle.read() == data
    with store.local_path(result.content_hash) as path:
        assert path.read_bytes() == data


def test_same_bytes_are_stored_once(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    first = store.put_bytes(b"abc")
    second = store.put_bytes(b"abc")
    assert first.created and not second.created
    assert first.storage_key == second.storage_key


def test_wrong_hash_stores_nothing(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    with pytest.raises(Conflict, match="hash to"):
        store.put_bytes(b"abc", expect_hash=sha(b"abd"))
    assert not store.exists(sha(b"abc"))
    assert not store.exists(sha(b"abd"))
    assert list((tmp_path / "tmp").iterdir()) == []


def test_bad_hash_and_missing_blob_are_clear_errors(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    with pytest.raises(InvalidSpec, match="64 lowercase hex"):
        store.exists("not-a-hash")
    with pytest.raises(NotFound):
        store.open(sha(b"nothing"))


def test_store_pickles_as_its_root_for_ray_tasks(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    clone = pickle.loads(pickle.dumps(store))
    put = store.put_bytes(b"shared")
    assert clone.exists(put.content_hash)


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
