"""Upload a file or a directory tree: hash in threads, ask per batch which hashes the farm lacks,
send only those in parallel, and resume after an interruption.

How one upload runs (:class:`Uploader`), all off the caller's thread:

1. **Scan** the tree (:func:`scan_tree`): every file's normalised path, size, mtime and mode;
   paths that escape the root, symlinks that point outside it and clashing names are refused
   before a byte is read.
2. **Hash** the files in a thread pool (1 MiB reads; ``hashlib`` releases the GIL). A file whose
   (path, size, mtime_ns) the tree's state file already holds is not read again.
3. **Ask** ``POST /blobs/missing`` once per batch of up to ``batch_size`` hashes, as hashes
   come in, so sending starts while big files are still being hashed.
4. **Send** what the studio lacks, a few blobs at a time, each once however many files share it.
5. For a directory, upload its :class:`~farm.schemas.Manifest` (a blob too) last, once every
   file it names is on the farm.

Resume: the state file (in the user's cache folder, one per tree, named by the tree's path)
keeps every hash computed, and is saved as hashing goes and when the upload stops for any
reason. Run again after an interruption and nothing unchanged is hashed again; the farm is
asked again what it lacks, so only what it still lacks is sent. An unchanged tree sends no
blob bytes at all. A file is trusted unchanged when its size and mtime are (rsync's quick
check): a tool that rewrites a file keeping both defeats it, so delete the state file then.

Experimental: may change.

Example:
    >>> uploader = Uploader(client, on_progress=print)  # doctest: +SKIP
    >>> handle = uploader.start("renders/seamonster")  # returns at once  # doctest: +SKIP
    >>> result = handle.result()  # or handle.future.add_done_callback(...)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import re
import stat
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from farm import schemas
from farm.errors import FarmError, InvalidSpec
from studio_client._files import write_text_atomically

if TYPE_CHECKING:
    from studio_client.client import Client

CHUNK_BYTES = 1 << 20
"""Bytes per read while hashing and sending."""
BATCH_HASHES = 1000
"""Hashes per ``POST /blobs/missing`` (the farm takes up to 10,000)."""
FLUSH_AFTER_S = 1.0
"""Ask about a partial batch once it has waited this long (big files hash slowly)."""
PACK_FILE_MAX_BYTES = 1 << 20
"""Files up to this size travel in packs (``POST /blobs/pack``), bigger ones alone."""
PACK_TARGET_BYTES = 8 << 20
PACK_BLOBS = 1000
"""A pack is sent once it holds this many blobs or bytes (the farm takes 16 MiB)."""
STATE_FORMAT = 1
_NO_HASH = "0" * 64
_HEX_SHA256 = re.compile("[0-9a-f]{64}")

ProgressCallback = Callable[["UploadProgress"], None]


@dataclass(frozen=True)
class TreeFile:
    """One file to upload: its path in the manifest and where it is on this machine."""

    path: str
    """Normalised relative POSIX path (the manifest's key)."""
    local: Path
    size: int
    mtime_ns: int
    mode: int
    """Permission bits (``0o644``, ``0o755``)."""


@dataclass(frozen=True)
class UploadProgress:
    """Where an upload stands. Byte counts are of file contents; each file ends up counted in
    ``files_done``, either as sent or as already stored (the farm had the bytes, or another
    file of the tree with the same bytes was sent)."""

    files_total: int = 0
    bytes_total: int = 0
    files_hashed: int = 0
    """Hashed now or known from the state file (``files_cached`` of them)."""
    bytes_hashed: int = 0
    files_cached: int = 0
    files_done: int = 0
    files_already_stored: int = 0
    blobs_to_send: int = 0
    bytes_to_send: int = 0
    blobs_sent: int = 0
    bytes_sent: int = 0
    missing_requests: int = 0
    """``POST /blobs/missing`` calls made."""
    finished: bool = False


@dataclass(frozen=True)
class UploadResult:
    """What an upload did. ``manifest_hash`` is the directory version's hash (None for a file:
    then ``files[0].hash`` is the blob)."""

    root: Path
    files: tuple[schemas.ManifestEntry, ...]
    paths: tuple[str, ...]
    progress: UploadProgress
    manifest: schemas.Manifest | None = None
    manifest_hash: str | None = None
    manifest_sent: bool = False

    @property
    def content_hash(self) -> str:
        """What to register as the asset version: the manifest's hash, or the file's."""
        return self.manifest_hash or self.files[0].hash


# ----------------------------------------------------------------------------- scanning
def scan_tree(root: str | Path) -> list[TreeFile]:
    """The files of a tree (or ``root`` itself when it is a file), sorted by path.

    Symlinks to files inside the tree are stored as those files' bytes; refused with an
    :class:`InvalidSpec` naming the path: a symlink pointing outside the tree, to a folder or
    nowhere, a special file (socket, FIFO, device), a name that is not a valid manifest path
    (:func:`farm.schemas.check_manifest_path`), two names that are one path once normalised to
    Unicode NFC, and two that differ only in case (refused, not warned: on macOS and Windows
    one would overwrite the other when the version is fetched). Empty folders are not kept.

    Raises:
        InvalidSpec: see above; also a missing root or an empty tree.
    """
    root = Path(root)
    try:
        top = root.lstat()
    except FileNotFoundError as exc:
        raise InvalidSpec(f"{root}: no such file or folder", field="path") from exc
    if stat.S_ISREG(top.st_mode):
        name = unicodedata.normalize("NFC", root.name)
        return [TreeFile(name, root.resolve(), top.st_size, top.st_mtime_ns, _mode(top))]
    if not stat.S_ISDIR(root.stat().st_mode):
        raise InvalidSpec(f"{root}: not a file or a folder", field="path")
    real_root = root.resolve()
    found: dict[str, TreeFile] = {}
    for local, relative, info in _walk(root, "", real_root):
        relative = unicodedata.normalize("NFC", relative)
        if relative in found:
            raise InvalidSpec(
                f"{local} and {found[relative].local} are one path once normalised "
                "(Unicode NFC): rename one",
                field="path",
            )
        found[relative] = TreeFile(relative, local, info.st_size, info.st_mtime_ns, _mode(info))
    if not found:
        raise InvalidSpec(f"{root}: no files to upload", field="path")
    files = [found[path] for path in sorted(found)]
    _check_names(root, files)
    return files


def _walk(folder: Path, prefix: str, real_root: Path) -> Iterator[tuple[Path, str, os.stat_result]]:
    """Every file under ``folder``: where it is, its path below the root, its stat."""
    with os.scandir(folder) as entries:
        listed = sorted(entries, key=lambda e: e.name)
    for entry in listed:
        local = folder / entry.name  # cheaper than parsing entry.path again
        relative = prefix + entry.name
        if entry.is_symlink():
            target = local.resolve()
            if not target.exists():
                raise InvalidSpec(f"{local}: a symlink to nothing ({target})", field="path")
            if not target.is_relative_to(real_root):
                raise InvalidSpec(
                    f"{local}: a symlink to {target}, outside the tree: copy the file in",
                    field="path",
                )
            if target.is_dir():
                raise InvalidSpec(
                    f"{local}: a symlink to a folder; such links are not followed: replace it "
                    "by the folder, or upload the folder it points at",
                    field="path",
                )
            yield local, relative, target.stat()
        elif entry.is_dir(follow_symlinks=False):
            yield from _walk(local, relative + "/", real_root)
        elif entry.is_file(follow_symlinks=False):
            yield local, relative, entry.stat(follow_symlinks=False)
        else:
            raise InvalidSpec(
                f"{local}: not a regular file (a socket, FIFO or device)", field="path"
            )


def _mode(info: os.stat_result) -> int:
    return stat.S_IMODE(info.st_mode) & 0o777


def _check_names(root: Path, files: list[TreeFile]) -> None:
    """The manifest's rules on paths (each path, case clashes, file vs folder), checked before
    anything is read: the same files with placeholder hashes must make a valid manifest."""
    entries = {f.path: {"hash": _NO_HASH, "size": f.size, "mode": f.mode} for f in files}
    try:
        schemas.Manifest.model_validate({"files": entries})
    except ValidationError as exc:
        message = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise InvalidSpec(f"{root}: {message.removeprefix('files: ')}", field="path") from exc


def build_manifest(files: list[TreeFile], hashes: dict[str, str]) -> schemas.Manifest:
    """The manifest of files :func:`scan_tree` returned, whose hashes are known.

    Not validated again: :func:`scan_tree` checked these paths, sizes and modes as a manifest,
    and the hashes are hashlib's hex digests, or the state file's, checked as it is read
    (10,000 files: 0.1 s saved on every upload).
    """
    return schemas.Manifest.model_construct(
        files={
            f.path: schemas.ManifestEntry.model_construct(
                hash=hashes[f.path], size=f.size, mode=f.mode
            )
            for f in files
        }
    )


# ----------------------------------------------------------------------------- the state file
def default_state_dir() -> Path:
    """Where upload state files live: the user's cache folder, ``delta/uploads`` in it."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        # The XDG spec says a relative value is invalid and must be ignored.
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "delta" / "uploads"


class HashCache:
    """The hashes of one tree's files by (path, size, mtime_ns), kept in a JSON file.

    Thread-safe. Saved atomically (a temporary file renamed over the old one), so a crash
    leaves the previous state, never half a file. A file that cannot be read is ignored: it
    only costs hashing again.
    """

    def __init__(self, path: Path, root: Path) -> None:
        self.path = path
        self.root = root
        self._lock = threading.Lock()
        self._files: dict[str, tuple[int, int, str]] = {}
        self._dirty = False
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            data = json.loads(path.read_text(encoding="utf-8"))
            if data["format"] == STATE_FORMAT and data["root"] == str(root):
                self._files = {
                    p: (int(s), int(t), h)
                    for p, (s, t, h) in data["files"].items()
                    if isinstance(h, str) and _HEX_SHA256.fullmatch(h)  # else hashed again
                }

    @classmethod
    def for_tree(cls, root: Path, state_dir: Path) -> HashCache:
        real = root.resolve()
        name = hashlib.sha256(str(real).encode()).hexdigest()[:32]
        return cls(state_dir / f"{name}.json", real)

    def get(self, item: TreeFile) -> str | None:
        with self._lock:
            known = self._files.get(item.path)
        if known is not None and known[:2] == (item.size, item.mtime_ns):
            return known[2]
        return None

    def put(self, item: TreeFile, content_hash: str) -> None:
        with self._lock:
            self._files[item.path] = (item.size, item.mtime_ns, content_hash)
            self._dirty = True

    def save(self, keep: set[str]) -> None:
        """Write the state, keeping only the paths in ``keep`` (files gone are forgotten)."""
        with self._lock:
            if not self._dirty and set(self._files) <= keep:
                return
            files = {p: list(v) for p, v in self._files.items() if p in keep}
            self._dirty = False
        text = json.dumps({"format": STATE_FORMAT, "root": str(self.root), "files": files})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(self.path, text)


# ----------------------------------------------------------------------------- progress
class _Tally:
    """The mutable counters behind :class:`UploadProgress`, and the throttled callback."""

    def __init__(self, callback: ProgressCallback | None, interval_s: float) -> None:
        self._lock = threading.Lock()
        self._now = UploadProgress()
        self._callback = callback
        self._interval_s = interval_s
        self._last = 0.0

    @property
    def now(self) -> UploadProgress:
        with self._lock:
            return self._now

    def add(self, *, force: bool = False, **counts: int | bool) -> None:
        with self._lock:
            changes = {
                k: v if isinstance(v, bool) else getattr(self._now, k) + v
                for k, v in counts.items()
            }
            self._now = replace(self._now, **changes)
            now = time.monotonic()
            due = force or now - self._last >= self._interval_s
            if due:
                self._last = now
            snapshot = self._now
        if due and self._callback is not None:
            self._callback(snapshot)


# ----------------------------------------------------------------------------- the uploader
class UploadHandle:
    """A running upload: poll ``progress``, ``cancel()`` it, wait for its ``result()``.

    ``future`` is a standard :class:`concurrent.futures.Future`: a GUI can attach a done
    callback instead of waiting. Cancelling stops hashing and sending at the next chunk and
    saves the state file, so the same upload started again resumes.
    """

    def __init__(self, future: Future[UploadResult], cancel: threading.Event, tally: _Tally):
        self.future = future
        self._cancel = cancel
        self._tally = tally

    @property
    def progress(self) -> UploadProgress:
        return self._tally.now

    def cancel(self) -> None:
        self._cancel.set()

    def done(self) -> bool:
        return self.future.done()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait until the upload ends (or ``timeout_s`` passes); True when it has ended."""
        wait([self.future], timeout_s)  # a Ctrl-C on this thread still interrupts it
        return self.future.done()

    def result(self, timeout_s: float | None = None) -> UploadResult:
        """The result, once done.

        Raises:
            CancelledError: the upload was cancelled (its state file is saved).
            FarmError: what stopped it (a refused path, a 413 or 409 from the farm, ...).
        """
        return self.future.result(timeout_s)


@dataclass
class Uploader:
    """Uploads files and trees through a :class:`~studio_client.Client` (see the module).

    Args:
        client: the farm connection; its HTTP client is shared by the sending threads.
        hash_workers: threads hashing files (default: the CPUs, at most 8).
        upload_workers: blobs sent at once.
        batch_size: hashes per ``POST /blobs/missing`` (at most 10,000).
        state_dir: where state files live (default :func:`default_state_dir`); ``resume=False``
            keeps none.
        on_progress: called with an :class:`UploadProgress` at most every
            ``progress_interval_s`` and once at the end, **from the uploader's threads**: a
            GUI posts it to its own event loop.

    Experimental: may change.
    """

    client: Client
    hash_workers: int = field(default_factory=lambda: min(8, os.cpu_count() or 1))
    upload_workers: int = 8
    batch_size: int = BATCH_HASHES
    state_dir: Path | None = None
    resume: bool = True
    on_progress: ProgressCallback | None = None
    progress_interval_s: float = 0.1

    def start(self, path: str | Path) -> UploadHandle:
        """Start uploading ``path`` (a file or a folder) in the background; returns at once."""
        cancel = threading.Event()
        tally = _Tally(self.on_progress, self.progress_interval_s)
        future: Future[UploadResult] = Future()
        future.set_running_or_notify_cancel()

        def run() -> None:
            try:
                future.set_result(_Run(self, Path(path), cancel, tally).run())
            except BaseException as exc:  # handed to whoever waits on the future
                future.set_exception(exc)

        threading.Thread(target=run, name="delta-upload", daemon=True).start()
        return UploadHandle(future, cancel, tally)

    def run(self, path: str | Path) -> UploadResult:
        """Upload ``path`` and wait for it (on this thread's time: not from a GUI's thread).

        Raises:
            FarmError: what stopped it (a refused path, a 413 or 409 from the farm, ...).
        """
        handle = self.start(path)
        try:
            return handle.result()
        except KeyboardInterrupt:
            handle.cancel()
            handle.wait()
            raise


class _Run:
    """One upload, run on the handle's thread."""

    def __init__(
        self, uploader: Uploader, root: Path, cancel: threading.Event, tally: _Tally
    ) -> None:
        self.up = uploader
        self.root = root
        self.cancel = cancel
        self.tally = tally
        self.hashes: dict[str, str] = {}
        self._lock = threading.Lock()
        self._files_of: dict[str, list[TreeFile]] = {}
        """Every file asked about, by its bytes' hash."""
        self._on_farm: set[str] = set()
        """Hashes the farm holds: it said so, or they were sent."""

    def run(self) -> UploadResult:
        files = scan_tree(self.root)
        self.tally.add(files_total=len(files), bytes_total=sum(f.size for f in files))
        cache = None
        if self.up.resume:
            cache = HashCache.for_tree(self.root, self.up.state_dir or default_state_dir())
        try:
            with (
                ThreadPoolExecutor(self.up.hash_workers, "delta-hash") as hashing,
                ThreadPoolExecutor(self.up.upload_workers, "delta-send") as sending,
            ):
                try:
                    self._hash_ask_send(files, cache, hashing, sending)
                except BaseException:
                    self.cancel.set()  # the workers stop at their next chunk
                    hashing.shutdown(cancel_futures=True)
                    sending.shutdown(cancel_futures=True)
                    raise
        finally:
            if cache is not None:
                cache.save({f.path for f in files})
        result = self._finish(files)
        self.tally.add(force=True, finished=True)
        return replace(result, progress=self.tally.now)

    def _hash_ask_send(
        self,
        files: list[TreeFile],
        cache: HashCache | None,
        hashing: ThreadPoolExecutor,
        sending: ThreadPoolExecutor,
    ) -> None:
        batch: list[TreeFile] = []
        sends: set[Future[None]] = set()
        # Finished hashes arrive on a queue: waiting on a set of 10,000 futures would cost
        # O(pending) per wake-up, O(files²) in all.
        hashed: queue.SimpleQueue[Future[tuple[TreeFile, str]]] = queue.SimpleQueue()
        hashing_now = 0
        cached, cached_bytes = 0, 0
        for item in files:  # known hashes first: resuming sends what is left at once
            known = cache.get(item) if cache is not None else None
            if known is None:
                hashing.submit(self._hash, item).add_done_callback(hashed.put)
                hashing_now += 1
                continue
            self.hashes[item.path] = known
            cached, cached_bytes = cached + 1, cached_bytes + item.size
            batch.append(item)
            if len(batch) >= self.up.batch_size:
                sends.update(self._ask(batch, sending))
                batch = []
        self.tally.add(files_hashed=cached, files_cached=cached, bytes_hashed=cached_bytes)
        oldest = last_save = time.monotonic()
        while hashing_now:
            finished: list[Future[tuple[TreeFile, str]]] = []
            try:
                finished.append(hashed.get(timeout=FLUSH_AFTER_S))
                while len(finished) < self.up.batch_size:
                    finished.append(hashed.get_nowait())
            except queue.Empty:
                pass
            hashing_now -= len(finished)
            for future in finished:
                item, content_hash = future.result()
                self.hashes[item.path] = content_hash
                if cache is not None:
                    cache.put(item, content_hash)
                if not batch:
                    oldest = time.monotonic()
                batch.append(item)
            waited = time.monotonic() - oldest >= FLUSH_AFTER_S
            if batch and (len(batch) >= self.up.batch_size or waited or not hashing_now):
                sends.update(self._ask(batch, sending))
                batch = []
            _raise_first_error(sends)
            if cache is not None and time.monotonic() - last_save > 2.0:
                cache.save({f.path for f in files})  # a hard kill loses little hashing
                last_save = time.monotonic()
        if batch:
            sends.update(self._ask(batch, sending))
        while sends:
            sent, sends = wait(sends, return_when=FIRST_COMPLETED)
            for send in sent:
                send.result()

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise CancelledError("upload cancelled")

    def _hash(self, item: TreeFile) -> tuple[TreeFile, str]:
        digest = hashlib.sha256()
        try:
            with open(item.local, "rb") as handle:
                while chunk := handle.read(CHUNK_BYTES):
                    self._check_cancel()
                    digest.update(chunk)
                    if item.size > CHUNK_BYTES:  # a big file's progress as it goes
                        self.tally.add(bytes_hashed=len(chunk))
                after = os.fstat(handle.fileno())
        except OSError as exc:
            raise InvalidSpec(
                f"{item.local}: cannot read it ({exc.strerror})", field="path"
            ) from exc
        if (after.st_size, after.st_mtime_ns) != (item.size, item.mtime_ns):
            raise InvalidSpec(
                f"{item.local} changed while it was being uploaded: upload again once it is "
                "written",
                field="path",
            )
        self.tally.add(files_hashed=1, bytes_hashed=0 if item.size > CHUNK_BYTES else item.size)
        return item, digest.hexdigest()

    def _ask(self, files: list[TreeFile], sending: ThreadPoolExecutor) -> list[Future[None]]:
        """Ask the farm about the files' hashes, ``batch_size`` to a request; start sending
        what it lacks."""
        sends = []
        for start in range(0, len(files), self.up.batch_size):
            sends += self._ask_batch(files[start : start + self.up.batch_size], sending)
        return sends

    def _ask_batch(self, batch: list[TreeFile], sending: ThreadPoolExecutor) -> list[Future[None]]:
        """Ask about one batch's new hashes; send what the farm lacks (each blob once,
        however many files hold it; small ones packed together)."""
        self._check_cancel()
        fresh: dict[str, list[TreeFile]] = {}
        stored = 0
        with self._lock:
            for item in batch:
                content_hash = self.hashes[item.path]
                earlier = self._files_of.get(content_hash)
                if earlier is None:
                    fresh.setdefault(content_hash, []).append(item)
                    continue
                earlier.append(item)  # same bytes as a file asked about before
                if content_hash in self._on_farm:
                    stored += 1
        self.tally.add(files_done=stored, files_already_stored=stored)
        if not fresh:
            return []
        missing = set(self.up.client.missing(list(fresh)))
        stored = 0
        with self._lock:
            for content_hash, items in fresh.items():
                self._files_of[content_hash] = items
                if content_hash not in missing:
                    self._on_farm.add(content_hash)
                    stored += len(items)
        to_send = [(h, items[0]) for h, items in fresh.items() if h in missing]
        self.tally.add(
            missing_requests=1,
            files_done=stored,
            files_already_stored=stored,
            blobs_to_send=len(to_send),
            bytes_to_send=sum(item.size for _, item in to_send),
        )
        sends = []
        pack: list[tuple[str, TreeFile]] = []  # small blobs go many to a request
        pack_bytes = 0
        for content_hash, item in to_send:
            if item.size > PACK_FILE_MAX_BYTES:
                sends.append(sending.submit(self._send, content_hash, item))
                continue
            pack.append((content_hash, item))
            pack_bytes += item.size
            if len(pack) >= PACK_BLOBS or pack_bytes >= PACK_TARGET_BYTES:
                sends.append(sending.submit(self._send_pack, pack))
                pack, pack_bytes = [], 0
        if pack:
            sends.append(sending.submit(self._send_pack, pack))
        return sends

    def _send(self, content_hash: str, item: TreeFile) -> None:
        """PUT one big blob, streamed."""
        self._check_cancel()
        self._check_unchanged(item)
        try:
            self.up.client.put_blob(content_hash, self._read(item), size_bytes=item.size)
        except FarmError as exc:
            raise type(exc)(f"{item.local}: {exc.message}", field=exc.field) from exc
        self._sent([(content_hash, item)])

    def _send_pack(self, blobs: list[tuple[str, TreeFile]]) -> None:
        """Send small blobs in one ``POST /blobs/pack``."""
        self._check_cancel()
        body = []
        for content_hash, item in blobs:
            self._check_unchanged(item)
            body.append((content_hash, item.local.read_bytes()))
        self._check_cancel()  # reading a thousand files gave a Ctrl-C time to land
        try:
            self.up.client.put_blob_pack(body)
        except FarmError as exc:
            where = f"{len(blobs)} files from {blobs[0][1].local}"
            raise type(exc)(f"{where} on: {exc.message}", field=exc.field) from exc
        self._sent(blobs)

    def _sent(self, blobs: list[tuple[str, TreeFile]]) -> None:
        with self._lock:
            holders = 0
            for content_hash, _ in blobs:
                self._on_farm.add(content_hash)
                holders += len(self._files_of[content_hash])
            sent_bytes = sum(item.size for _, item in blobs)
            self.tally.add(blobs_sent=len(blobs), bytes_sent=sent_bytes, files_done=holders)

    def _check_unchanged(self, item: TreeFile) -> None:
        info = item.local.stat()
        if (info.st_size, info.st_mtime_ns) != (item.size, item.mtime_ns):
            raise InvalidSpec(
                f"{item.local} changed while it was being uploaded: upload again once it is "
                "written",
                field="path",
            )

    def _read(self, item: TreeFile) -> Iterator[bytes]:
        with open(item.local, "rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                self._check_cancel()
                yield chunk

    def _finish(self, files: list[TreeFile]) -> UploadResult:
        paths = tuple(f.path for f in files)
        if self.root.is_file():
            entries = tuple(
                schemas.ManifestEntry(hash=self.hashes[f.path], size=f.size, mode=f.mode)
                for f in files
            )
            return UploadResult(self.root, entries, paths, self.tally.now)
        manifest = build_manifest(files, self.hashes)
        entries = tuple(manifest.files[f.path] for f in files)  # not validated again either
        data = manifest.canonical_bytes()
        manifest_hash = hashlib.sha256(data).hexdigest()
        self._check_cancel()
        sent = bool(self.up.client.missing([manifest_hash]))
        if sent:
            self.up.client.put_blob(manifest_hash, data, size_bytes=len(data))
        return UploadResult(
            self.root, entries, paths, self.tally.now, manifest, manifest_hash, sent
        )


def _raise_first_error(sends: set[Future[None]]) -> None:
    """Stop early when a send failed (a 413 or a full quota fails the others too)."""
    for send in [s for s in sends if s.done()]:
        send.result()
        sends.discard(send)
