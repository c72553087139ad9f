"""Manifests of directory versions (issue 21 item 1): normalised paths, canonical JSON, refusals;
and the client's tree scan that builds them."""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from pathlib import Path

import pytest
from pydantic import ValidationError

from farm import schemas
from farm.errors import InvalidSpec
from studio_client.upload import HashCache, build_manifest, scan_tree

H1 = "a" * 64
H2 = "b" * 64


def entry(content_hash: str = H1, size: int = 3, mode: int = 0o644) -> dict[str, object]:
    return {"hash": content_hash, "size": size, "mode": mode}


# ----------------------------------------------------------------------------- the schema
@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("../etc/passwd", "escapes"),
        ("a/../../b", "escapes"),
        ("/etc/passwd", "absolute"),
        ("C:/Windows", "absolute"),
        ("a\\b", "backslash"),
        ("a\x00b", "NUL"),
        ("a\nb", "control"),
        ("a//b", "not normalised"),
        ("./a", "not normalised"),
        ("a/", "not normalised"),
        ("", "empty"),
        (unicodedata.normalize("NFD", "café.exr"), "NFC"),
    ],
)
def test_a_path_that_is_not_normalised_and_relative_is_refused(path: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        schemas.Manifest(files={path: entry()})  # type: ignore[dict-item]


def test_paths_differing_only_in_case_are_refused() -> None:
    with pytest.raises(ValidationError, match="differ only in case"):
        schemas.Manifest.model_validate(
            {"files": {"tex/Wood.exr": entry(), "tex/wood.exr": entry()}}
        )


def test_a_path_both_file_and_folder_is_refused() -> None:
    with pytest.raises(ValidationError, match="both a file and a folder"):
        schemas.Manifest.model_validate({"files": {"rig": entry(), "rig/body.usd": entry()}})


def test_canonical_bytes_are_sorted_compact_and_round_trip() -> None:
    manifest = schemas.Manifest.model_validate(
        {"files": {"b/é.txt": entry(H2, 5, 0o755), "a.txt": entry(H1, 3)}}
    )
    data = manifest.canonical_bytes()
    assert data.startswith(schemas.MANIFEST_MAGIC)
    assert b" " not in data and b"\n" not in data
    assert list(json.loads(data)["files"]) == ["a.txt", "b/é.txt"]
    assert "é".encode() in data  # UTF-8, not \u escapes
    assert schemas.Manifest.from_bytes(data) == manifest
    assert manifest.meta == {"manifest": True, "files": 2, "bytes": 8}
    # The same files given in another order are the same bytes, so the same hash.
    again = schemas.Manifest.model_validate(
        {"files": {"a.txt": entry(H1, 3), "b/é.txt": entry(H2, 5, 0o755)}}
    )
    assert again.canonical_bytes() == data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not UTF-8 JSON"),
        (b'{"delta_manifest":"1","files":{"x":{},"x":{}}}', "'x' appears twice"),
        (
            b'{"delta_manifest":"1","files":{"../x":' + json.dumps(entry()).encode() + b"}}",
            "escapes",
        ),
        (b'{"delta_manifest":"2","files":{}}', "delta_manifest"),
        (b'{"delta_manifest": "1", "files": {}}', "canonical"),
    ],
)
def test_a_bad_manifest_blob_is_refused_naming_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(InvalidSpec, match=message) as caught:
        schemas.Manifest.from_bytes(data)
    assert caught.value.field == "manifest"


# ----------------------------------------------------------------------------- the tree scan
def write(path: Path, data: bytes = b"abc", mode: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mode is not None:
        path.chmod(mode)
    return path


def test_a_scan_lists_files_with_posix_paths_sizes_and_modes(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    write(root / "a.txt", b"hello")
    write(root / "bin" / "run.sh", b"#!/bin/sh\n", mode=0o755)
    write(root / "deep" / "er" / "x.bin", b"")
    (root / "empty").mkdir()
    files = scan_tree(root)
    assert [f.path for f in files] == ["a.txt", "bin/run.sh", "deep/er/x.bin"]
    assert [f.size for f in files] == [5, 10, 0]
    assert files[1].mode == 0o755
    hashes = {f.path: hashlib.sha256(f.local.read_bytes()).hexdigest() for f in files}
    manifest = build_manifest(files, hashes)
    assert manifest.meta == {"manifest": True, "files": 3, "bytes": 15}


def test_a_symlink_inside_the_tree_is_stored_as_the_file(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    write(root / "real.txt", b"payload")
    (root / "link.txt").symlink_to("real.txt")
    files = {f.path: f for f in scan_tree(root)}
    assert files["link.txt"].size == len(b"payload")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root, out: (root / "evil").symlink_to(out), "outside the tree"),
        (lambda root, out: (root / "dangling").symlink_to(root / "nope"), "a symlink to nothing"),
        (lambda root, out: (root / "loop").symlink_to(root), "a symlink to a folder"),
        (lambda root, out: os.mkfifo(root / "pipe"), "not a regular file"),
        (lambda root, out: write(root / "a\\b"), "backslash"),
        (lambda root, out: write(root / "Tex.exr") and write(root / "tex.exr"), "only in case"),
    ],
)
def test_a_tree_that_cannot_be_a_manifest_is_refused_before_reading(
    tmp_path: Path, make: object, message: str
) -> None:
    root = tmp_path / "tree"
    write(root / "ok.txt")
    outside = write(tmp_path / "secret.txt")
    make(root, outside)  # type: ignore[operator]
    with pytest.raises(InvalidSpec, match=message):
        scan_tree(root)


def test_two_names_that_normalise_to_one_path_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    write(root / unicodedata.normalize("NFC", "café"))
    write(root / unicodedata.normalize("NFD", "café"))
    with pytest.raises(InvalidSpec, match="one path once normalised"):
        scan_tree(root)


def test_a_missing_or_empty_tree_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec, match="no such file"):
        scan_tree(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidSpec, match="no files"):
        scan_tree(tmp_path / "empty")


def test_the_hash_cache_trusts_only_an_unchanged_size_and_mtime(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    write(root / "a.txt", b"one")
    [item] = scan_tree(root)
    cache = HashCache.for_tree(root, tmp_path / "state")
    cache.put(item, H1)
    cache.save({item.path})
    reread = HashCache.for_tree(root, tmp_path / "state")
    assert reread.get(item) == H1
    os.utime(item.local, ns=(item.mtime_ns + 1_000_000, item.mtime_ns + 1_000_000))
    [touched] = scan_tree(root)
    assert reread.get(touched) is None
    # A damaged state file costs hashing again, nothing else.
    reread.path.write_text("{not json")
    assert HashCache.for_tree(root, tmp_path / "state").get(item) is None
