"""Uploading trees through the API (issue 21 item 3): one missing-check per batch, only what the
studio lacks sent, resume after an interruption, no blob bytes for an unchanged tree; the upload
size limit (413) and the per-studio storage quota (409), each leaving nothing stored."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from farm import schemas
from farm.api.app import create_app
from farm.api.context import FarmContext
from farm.db import queries
from farm.db.session import Database
from farm.errors import Conflict, InvalidSpec, TooLarge
from farm.pool_config import Limits, StudioLimits
from farm.storage import DiskStore
from farm.storage.s3 import S3Store
from studio_client import Client
from studio_client.cli import main
from studio_client.cli import upload as upload_cli
from studio_client.upload import HashCache, Uploader
from tests.factories import StudioUser, make_shot, make_studio
from tests.s3_server import S3Endpoint

GiB = 1 << 30


class Counting(httpx.BaseTransport):
    """Drives the app in process and notes every request: method, path, body bytes."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.requests: list[tuple[str, str, int]] = []
        self.before_send: Callable[[httpx.Request], None] | None = None
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        with self._lock:
            self.requests.append((request.method, request.url.path, len(body)))
        if self.before_send is not None:
            self.before_send(request)
        return self.inner.handle_request(request)

    def clear(self) -> None:
        self.requests.clear()

    def calls(self, method: str, prefix: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == method and p.startswith(prefix))

    @property
    def blob_bytes(self) -> int:
        """Bytes of every blob upload the server received (a pack's framing included)."""
        return sum(
            size
            for method, path, size in self.requests
            if (method, path) == ("POST", "/blobs/pack")
            or (method == "PUT" and path.startswith("/blobs/"))
        )


class Farm:
    def __init__(self, db: Database, tmp_path: Path) -> None:
        self.db = db
        self.store = DiskStore(tmp_path / "blobs")
        self.tmp_path = tmp_path

    def api(self, limits: Limits | None = None, max_upload_bytes: int = 20 * GiB) -> TestClient:
        context = FarmContext(
            db=self.db,
            store=self.store,
            output_root=self.tmp_path / "out",
            limits=limits or Limits(),
            max_upload_bytes=max_upload_bytes,
        )
        return TestClient(create_app(context))

    def stored(self) -> set[str]:
        blobs = (self.tmp_path / "blobs").rglob("*")
        return {p.name for p in blobs if p.is_file() and p.parent.name != "tmp"}


@pytest.fixture(autouse=True)
def _cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Upload state files go under the test's tmp dir, never the developer's cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def farm(db: Database, tmp_path: Path) -> Farm:
    return Farm(db, tmp_path)


@pytest.fixture
def api(farm: Farm) -> Iterator[TestClient]:
    with farm.api() as client:
        yield client


@pytest.fixture
def who(db: Database) -> StudioUser:
    return make_studio(db, "nimble")


def client_for(api: TestClient, who: StudioUser) -> tuple[Client, Counting]:
    counting = Counting(api._transport)
    return Client("http://testserver", who.token, transport=counting), counting


def make_tree(root: Path, count: int, size: int = 64, *, big: int = 0) -> Path:
    """``count`` files of random bytes in a few folders, one duplicate, and one of ``big``."""
    for i in range(count):
        path = root / f"sq{i % 7:02d}" / f"f{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    (root / "copy.bin").write_bytes((root / "sq00" / "f00000.bin").read_bytes())
    if big:
        (root / "plate.exr").write_bytes(os.urandom(big))
    return root


def unique_bytes(root: Path) -> int:
    seen = {hashlib.sha256(p.read_bytes()).hexdigest(): p.stat().st_size for p in files(root)}
    return sum(seen.values())


def files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


# ----------------------------------------------------------------------------- upload and re-upload
def test_an_unchanged_tree_uploads_again_without_sending_blob_bytes(
    api: TestClient, who: StudioUser, tmp_path: Path
) -> None:
    tree = make_tree(tmp_path / "tree", 40, big=3 << 20)  # the big file is streamed alone
    client, counting = client_for(api, who)
    first = client.upload_tree(tree)
    assert first.progress.bytes_sent == unique_bytes(tree)
    assert first.progress.blobs_sent == len(files(tree)) - 1  # the copy is sent once
    assert first.progress.files_done == first.progress.files_total == len(files(tree))
    assert first.manifest_sent and first.manifest is not None
    assert counting.calls("PUT", "/blobs/") == 2  # the big file and the manifest
    assert counting.calls("POST", "/blobs/missing") == 2  # one batch, then the manifest

    counting.clear()
    again = client.upload_tree(tree)
    assert counting.blob_bytes == 0
    assert [m for m, _, _ in counting.requests] == ["POST", "POST"]  # two missing-checks only
    assert again.manifest_hash == first.manifest_hash and not again.manifest_sent
    assert again.progress.files_cached == again.progress.files_total  # nothing read again
    assert again.progress.files_already_stored == again.progress.files_total

    # A client without the state file (another workstation) hashes again, still sends nothing.
    counting.clear()
    cold = client.upload_tree(tree, state_dir=tmp_path / "elsewhere")
    assert counting.blob_bytes == 0 and cold.progress.files_cached == 0
    assert cold.manifest_hash == first.manifest_hash


def test_two_thousand_tiny_files_take_a_few_requests(
    api: TestClient, who: StudioUser, tmp_path: Path
) -> None:
    tree = make_tree(tmp_path / "tree", 2000, size=16)
    client, counting = client_for(api, who)
    result = client.upload_tree(tree)
    assert result.progress.blobs_sent == 2000
    # Batches of 1,000 hashes and the manifest (a slow machine may ask about a partial batch
    # that waited a second): never a request per file.
    assert counting.calls("POST", "/blobs/missing") <= 6
    assert counting.calls("POST", "/blobs/pack") <= 4
    assert counting.calls("PUT", "/blobs/") == 1  # the manifest
    assert len(counting.requests) <= 12
    missing = client.missing([e.hash for e in result.files])
    assert missing == []
    counting.clear()
    client.upload_tree(tree)
    assert len(counting.requests) <= 4 and counting.blob_bytes == 0


def test_an_interrupted_upload_resumes_hashing_nothing_again(
    api: TestClient, who: StudioUser, farm: Farm, tmp_path: Path
) -> None:
    tree = make_tree(tmp_path / "tree", 300, size=256)
    client, counting = client_for(api, who)
    total = len(files(tree))

    def stop_after_some(now: object) -> None:
        if getattr(now, "blobs_sent", 0) >= 40:
            handle.cancel()

    uploader = Uploader(
        client, batch_size=20, upload_workers=1, on_progress=stop_after_some, progress_interval_s=0
    )
    handle = uploader.start(tree)
    with pytest.raises(CancelledError):
        handle.result(timeout_s=60)
    with farm.db.session() as session:
        held_after_first = (
            total
            - 1
            - len(
                queries.missing_blobs(
                    session,
                    who.studio_id,
                    [hashlib.sha256(p.read_bytes()).hexdigest() for p in files(tree)],
                )
            )
        )
    assert 40 <= held_after_first < total - 1
    state = HashCache.for_tree(tree, tmp_path / "cache" / "delta" / "uploads")
    known = [p for p in files(tree) if state.get(next(f for f in _scan(tree) if f.local == p))]
    assert known  # the hashes computed before the interruption were kept

    counting.clear()
    resumed = Uploader(client).run(tree)
    assert resumed.progress.files_cached == len(known)  # none of them read again
    assert resumed.progress.files_hashed == total
    assert resumed.progress.blobs_sent == total - 1 - held_after_first  # only what is missing
    assert resumed.progress.files_done == total
    assert client.missing([e.hash for e in resumed.files]) == []


def _scan(tree: Path) -> list:  # type: ignore[type-arg]
    from studio_client.upload import scan_tree

    return scan_tree(tree)


def test_a_file_edited_since_the_last_upload_is_hashed_and_sent_again(
    api: TestClient, who: StudioUser, tmp_path: Path
) -> None:
    tree = make_tree(tmp_path / "tree", 10)
    client, counting = client_for(api, who)
    first = client.upload_tree(tree)
    (tree / "sq03" / "f00003.bin").write_bytes(b"a new take")
    counting.clear()
    second = client.upload_tree(tree)
    assert second.progress.files_cached == second.progress.files_total - 1
    assert second.progress.bytes_sent == len(b"a new take")
    assert second.manifest_hash != first.manifest_hash


# ----------------------------------------------------------------------------- publishing a tree
def test_publishing_a_folder_registers_its_manifest_as_the_version(
    api: TestClient, who: StudioUser, db: Database, tmp_path: Path
) -> None:
    tree = make_tree(tmp_path / "tree", 12, size=100)
    make_shot(db, who)
    client, _ = client_for(api, who)
    show = client.show("show")
    version = client.publish(show.id, tree, asset="plates", kind="texture")
    manifest = schemas.Manifest.from_bytes(
        DiskStore(tmp_path / "blobs").path(version.content_hash).read_bytes()
    )
    assert version.size_bytes == len(manifest.canonical_bytes())
    assert version.meta == {"manifest": True, "files": 13, "bytes": 13 * 100}
    # A manifest naming files the studio never uploaded is refused, and nothing registered.
    rival = make_studio(db, "rival")
    make_shot(db, rival)
    rival_client, _ = client_for(api, rival)
    data = manifest.canonical_bytes()
    rival_client.put_blob(version.content_hash, data, size_bytes=len(data))
    rival_show = rival_client.show("show")
    with pytest.raises(InvalidSpec, match="has not uploaded"):
        rival_client.register_asset_version(
            rival_show.id, asset="plates", content_hash=version.content_hash
        )
    assert rival_client.assets() == []


def test_a_manifest_is_checked_against_the_studios_blobs(
    api: TestClient, who: StudioUser, farm: Farm, db: Database, tmp_path: Path
) -> None:
    tree = make_tree(tmp_path / "tree", 5)
    client, _ = client_for(api, who)
    result = client.upload_tree(tree)
    assert result.manifest_hash is not None and result.manifest is not None
    with db.session() as session:
        meta = queries.describe_manifest(session, farm.store, who.studio_id, result.manifest_hash)
        assert meta == {"manifest": True, "files": 6, "bytes": 6 * 64}
        plain = result.files[0].hash  # an ordinary blob is no manifest
        assert queries.describe_manifest(session, farm.store, who.studio_id, plain) is None
    # Another studio holding the same manifest bytes, but none of the files: refused.
    rival = make_studio(db, "rival")
    rival_client, _ = client_for(api, rival)
    data = result.manifest.canonical_bytes()
    rival_client.put_blob(result.manifest_hash, data, size_bytes=len(data))
    with db.session() as session, pytest.raises(InvalidSpec, match="has not uploaded"):
        queries.describe_manifest(session, farm.store, rival.studio_id, result.manifest_hash)


# ----------------------------------------------------------------------------- limits
def test_a_blob_over_the_upload_limit_is_413_and_nothing_is_stored(
    farm: Farm, who: StudioUser, tmp_path: Path
) -> None:
    data = os.urandom(1001)
    digest = hashlib.sha256(data).hexdigest()
    with farm.api(max_upload_bytes=1000) as api:
        declared = api.put(f"/blobs/{digest}", content=data, headers=who.headers)
        chunked = api.put(
            f"/blobs/{digest}", content=iter([data[:600], data[600:]]), headers=who.headers
        )
        packed = api.post(
            "/blobs/pack", content=schemas.encode_pack([(digest, data)]), headers=who.headers
        )
        for answer in (declared, chunked, packed):
            assert answer.status_code == 413, answer.text
            assert answer.json()["error"] == "too_large"
            assert "1,000 bytes" in answer.json()["message"]
        assert "FARM_MAX_UPLOAD_BYTES" in declared.json()["message"]
        assert api.post("/blobs/missing", json={"hashes": [digest]}, headers=who.headers).json()[
            "missing"
        ] == [digest]
        assert farm.stored() == set()
        # Through the SDK: the message names the file, and a small tree still goes.
        tree = tmp_path / "tree"
        tree.mkdir()
        (tree / "huge.exr").write_bytes(os.urandom(2 << 20))
        client, _ = client_for(api, who)
        with pytest.raises(TooLarge, match=r"huge\.exr.*1,000 bytes"):
            client.upload_tree(tree)
        assert farm.stored() == set()


def test_a_studio_over_its_storage_quota_gets_409_and_nothing_is_stored(
    farm: Farm, db: Database
) -> None:
    who = make_studio(db, "nimble")
    roomy = make_studio(db, "roomy")
    limits = Limits(max_storage_gb=4096 / GiB, studios={"roomy": StudioLimits(max_storage_gb=None)})
    first, second = os.urandom(3000), os.urandom(2000)
    h1, h2 = (hashlib.sha256(d).hexdigest() for d in (first, second))
    with farm.api(limits=limits) as api:
        assert api.put(f"/blobs/{h1}", content=first, headers=who.headers).status_code == 201
        over = api.put(f"/blobs/{h2}", content=second, headers=who.headers)
        assert over.status_code == 409, over.text
        message = over.json()["message"]
        assert "uses 3,000 bytes" in message and "4,096 bytes" in message
        assert "limits.max_storage_gb" in message
        packed = api.post(
            "/blobs/pack",
            content=schemas.encode_pack([(h2, second), (hashlib.sha256(b"x").hexdigest(), b"x")]),
            headers=who.headers,
        )
        assert packed.status_code == 409, packed.text
        assert farm.stored() == {h1}  # neither the PUT nor any blob of the pack
        # Bytes the studio holds already cost nothing; another studio keeps its own quota.
        again = api.put(f"/blobs/{h1}", content=first, headers=who.headers)
        assert again.status_code == 201 and again.json()["created"] is False
        for data, digest in ((first, h1), (second, h2)):
            answer = api.put(f"/blobs/{digest}", content=data, headers=roomy.headers)
            assert answer.status_code == 201
        client, _ = client_for(api, who)
        with pytest.raises(Conflict, match="storage quota"):
            client.put_blob(h2, second, size_bytes=len(second))


def test_a_studio_override_keeps_the_farm_wide_values_it_does_not_set() -> None:
    limits = Limits(max_storage_gb=100, studios={"nimble": StudioLimits(max_job_frames=50)})
    assert limits.of("nimble").max_storage_bytes == 100 * GiB
    assert limits.of("nimble").max_job_frames == 50
    assert limits.of("other").max_job_frames == 100_000


def test_a_pack_with_a_wrong_hash_stores_nothing(
    api: TestClient, who: StudioUser, farm: Farm
) -> None:
    good = b"good bytes"
    blobs = [(hashlib.sha256(good).hexdigest(), good), ("c" * 64, b"not c")]
    answer = api.post("/blobs/pack", content=schemas.encode_pack(blobs), headers=who.headers)
    assert answer.status_code == 409 and "nothing was stored" in answer.json()["message"]
    cut = api.post("/blobs/pack", content=schemas.encode_pack(blobs)[:-1], headers=who.headers)
    assert cut.status_code == 422 and "cut short" in cut.json()["message"]
    assert farm.stored() == set()


def test_the_upload_routes_declare_413_and_409(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    for operation in (paths["/blobs/{content_hash}"]["put"], paths["/blobs/pack"]["post"]):
        assert {"409", "413"} <= set(operation["responses"])


# ----------------------------------------------------------------------------- farm upload
@pytest.fixture
def cli(api: TestClient, who: StudioUser, monkeypatch: pytest.MonkeyPatch) -> Counting:
    """``farm upload`` talking to the in-process app."""
    counting = Counting(api._transport)
    monkeypatch.setattr(
        upload_cli,
        "make_client",
        lambda url, token: Client("http://testserver", who.token, transport=counting),
    )
    return counting


def test_farm_upload_publishes_a_folder(
    cli: Counting, who: StudioUser, db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_shot(db, who)
    tree = make_tree(tmp_path / "tree", 20)
    argv = ["upload", str(tree), "--show", "show", "--asset", "plates", "--publish"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "published plates version 1" in out and "sent 20 blobs" in out
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "version 2" in out and "sent 0 blobs" in out and "21 files already stored" in out


def test_farm_upload_errors_are_one_line(
    cli: Counting, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = make_tree(tmp_path / "tree", 3)
    assert main(["upload", str(tree), "--publish"]) == 2
    assert capsys.readouterr().err.strip() == "error: --publish needs --show and --asset"
    # --show without --publish did nothing with the show (not even check it existed).
    assert main(["upload", str(tree), "--show", "nowhere", "--asset", "x"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --show and --asset name the asset version --publish makes: add --publish, "
        "or leave them out to upload only"
    )
    assert main(["upload", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "no such file" in err[0]


def test_ctrl_c_leaves_a_resumable_upload_and_exits_130(
    cli: Counting, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = make_tree(tmp_path / "tree", 3000, size=16)
    interrupted = threading.Event()

    def interrupt_on_first_pack(request: httpx.Request) -> None:
        if request.url.path == "/blobs/pack" and not interrupted.is_set():
            interrupted.set()
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C: lands in the CLI's main thread

    cli.before_send = interrupt_on_first_pack
    assert main(["upload", str(tree)]) == 130
    assert "run the same command to resume" in capsys.readouterr().err
    cli.before_send = None
    cli.clear()
    assert main(["upload", str(tree)]) == 0
    assert "3,001 files" in capsys.readouterr().out
    assert cli.calls("POST", "/blobs/pack") >= 1  # what the interruption left out


def test_small_files_go_to_s3_as_packs_and_come_back_whole(
    db: Database, s3_store: S3Store, s3_endpoint: S3Endpoint, who: StudioUser, tmp_path: Path
) -> None:
    """With the S3 store, the pack route writes a pack object and its index per pack, not an
    object per file; a published folder downloads back byte for byte, read from the packs by a
    process that never saw them written."""
    from farm.storage import s3 as s3_module

    tree = make_tree(tmp_path / "tree", 300, size=200, big=2 << 20)
    make_shot(db, who)
    context = FarmContext(db=db, store=s3_store, output_root=tmp_path / "out")
    with TestClient(create_app(context)) as api:
        client, counting = client_for(api, who)
        version = client.publish(client.show("show").id, tree, asset="plates", kind="texture")
        assert counting.calls("POST", "/blobs/pack") >= 1
        keys = [
            item["Key"]
            for page in s3_endpoint.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=s3_endpoint.bucket, Prefix=s3_store.prefix)
            for item in page.get("Contents", ())
        ]
        packs = [k for k in keys if k.endswith(".pack")]
        # 300 small files: packs and their indexes, the big file and the manifest on their own.
        assert 1 <= len(packs) <= 4
        assert len(keys) == 2 * len(packs) + 2
        # The same bytes sent again (a retried pack, another studio's copy) add no object.
        again = [(hashlib.sha256(p.read_bytes()).hexdigest(), p.read_bytes()) for p in files(tree)]
        small = [(h, data) for h, data in again if len(data) < 1000]
        answers = client.put_blob_pack(small)
        assert {a.content_hash for a in answers} == {h for h, _ in small}
        rival = make_studio(db, "rival")
        rival_client, _ = client_for(api, rival)
        assert all(a.created for a in rival_client.put_blob_pack(small))  # new to the rival
        listed = s3_endpoint.client().list_objects_v2(
            Bucket=s3_endpoint.bucket, Prefix=s3_store.prefix
        )
        assert listed["KeyCount"] == len(keys)
        s3_module._pack_indexes.clear()  # as if another API host served the download
        for path in s3_store.cache_dir.rglob("*"):
            if path.is_file() and path.parent.name != "locks":
                path.chmod(0o644)
                path.unlink()
        out = tmp_path / "fetched"
        client.fetch_asset_version(version.id, out)
    fetched = {p.relative_to(out): p.read_bytes() for p in files(out)}
    assert fetched == {p.relative_to(tree): p.read_bytes() for p in files(tree)}
