"""Small blobs packed into shared S3 objects, with an index: two requests for a thousand files.

An upload of 10,000 small files cost 10,000 S3 requests, one object per blob; on a store whose
cost is per request (every S3, and moto's 5 ms of CPU per request here) that was the whole of a
first upload's time. So the upload pack route (``POST /blobs/pack``) stores its small blobs as
one *pack*: the blobs' bytes end to end in one object, then an *index* object listing each
blob's hash, offset and length (as git, restic and kopia do). The index is written last, so a
pack whose index exists is whole.

Keys: ``<prefix>packs/<time>-<sha256 of the pack>.pack`` and ``....index``. ``<time>`` (UTC
nanoseconds, 20 digits) orders them as they were written, so a process that knows the indexes
up to some key lists only the newer ones (``StartAfter``, less a margin for clocks that
disagree between API hosts).

Reading a packed blob (``S3Store``): a plain object under the blob's own key is looked for
first; on a miss, this process's index of packs (refreshed from the newest index keys) gives
the pack and the range, read with one ranged GET and verified against the hash like any
download. Index objects are immutable, so each node keeps a copy of those it read in its cache
folder: a new worker process on the node reads them from disk, not from S3. Each process holds
the locations of every packed blob in memory (about 150 bytes each: 150 MB for a million small
files); a node-wide on-disk index is the next step when farms hold many millions.

Packed blobs are immutable as the rest; deleting one forgets it from the cache only
(its bytes stay in the pack until a compaction rewrites packs, which the farm does not do yet).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

log = logging.getLogger("farm.storage")

PACK_MAX_BLOB_BYTES = 1 << 20
"""Blobs up to this size are packed; bigger ones get their own object."""
LIST_MARGIN_NS = 600 * 10**9
"""Index keys this much older than the newest one seen are listed again (clock skew)."""
INDEX_VERSION = 1
FULL_LIST_EVERY_S = 30.0
"""A miss lists every index key again at most this often."""


@dataclass(frozen=True)
class Location:
    """Where a packed blob's bytes are: ``length`` bytes at ``offset`` of object ``key``."""

    key: str
    offset: int
    length: int


def pack_name(stamp_ns: int, pack_hash: str) -> str:
    return f"{stamp_ns:020d}-{pack_hash}"


def encode_index(pack_key: str, entries: Iterable[tuple[str, int, int]]) -> bytes:
    """The index object's bytes: JSON naming the pack and each blob's (hash, offset, length)."""
    body = {"version": INDEX_VERSION, "pack": pack_key, "blobs": [list(e) for e in entries]}
    return json.dumps(body, separators=(",", ":")).encode()


def decode_index(data: bytes) -> dict[str, Location]:
    """Raises ValueError (or KeyError, TypeError) for bytes that are not an index this farm
    reads."""
    body = json.loads(data)
    if body.get("version") != INDEX_VERSION:
        raise ValueError(f"pack index version {body.get('version')!r}: this farm reads 1")
    pack = str(body["pack"])
    return {str(h): Location(pack, int(offset), int(length)) for h, offset, length in body["blobs"]}


@dataclass
class PackIndex:
    """One process's view of a store's packs: blob hash -> location, grown as packs appear.

    ``list_after(start)`` lists index keys after ``start``; ``read(key)`` reads one. Both come
    from the store, so this class does no I/O of its own and is tested without S3.
    """

    entries: dict[str, Location] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    newest: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    listed_all_at: float = -math.inf
    """When (monotonic) every index key was last listed: a miss lists all again at most every
    ``FULL_LIST_EVERY_S`` (a pack written by a host whose clock is far behind)."""

    def add(self, index_key: str, locations: dict[str, Location]) -> None:
        with self.lock:
            self.entries.update(locations)
            self.seen.add(index_key)
            self.newest = max(self.newest, index_key)

    def find(
        self,
        content_hash: str,
        *,
        list_after: Callable[[str], Sequence[str]],
        read: Callable[[str], bytes],
        prefix: str,
    ) -> Location | None:
        """Where ``content_hash`` is packed, reading any index written since the last look.

        The listing starts a margin before the newest index known, or before this host's own
        clock if that is earlier (an index from a host whose clock runs ahead never hides
        the ones written after it); a miss then lists every index, at most every
        ``FULL_LIST_EVERY_S``.
        """
        found = self.entries.get(content_hash)
        if found is not None:
            return found
        with self.lock:
            newest = self.newest
            full = time.monotonic() - self.listed_all_at >= FULL_LIST_EVERY_S
        if not newest:
            full = True
        self._read_new(list_after("" if full else _before(newest, prefix, now_ns())), read)
        if full:
            self.listed_all_at = time.monotonic()
            return self.entries.get(content_hash)
        found = self.entries.get(content_hash)
        if found is None and time.monotonic() - self.listed_all_at >= FULL_LIST_EVERY_S:
            self.listed_all_at = time.monotonic()
            self._read_new(list_after(""), read)
            found = self.entries.get(content_hash)
        return found

    def _read_new(self, keys: Sequence[str], read: Callable[[str], bytes]) -> None:
        for key in keys:
            if not key.endswith(".index") or key in self.seen:
                continue
            try:
                locations = decode_index(read(key))
            except (ValueError, KeyError, TypeError) as exc:
                # A damaged index (or one of a newer farm) must not hide the ones after it.
                log.warning("pack index %s is unreadable (%s): skipped", key, exc)
                locations = {}
            self.add(key, locations)


def _before(newest_key: str, prefix: str, now: int) -> str:
    """A listing start a margin before ``newest_key`` or ``now``, whichever is earlier."""
    stamp = newest_key[len(prefix) :].split("-", 1)[0]
    try:
        earlier = max(0, min(int(stamp), now) - LIST_MARGIN_NS)
    except ValueError:
        return ""
    return f"{prefix}{earlier:020d}"


def now_ns() -> int:
    return time.time_ns()
