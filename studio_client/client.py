"""The studio client: one explicit object per farm connection, returning Delta models."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from farm import schemas
from farm.errors import InvalidSpec, invalid_spec_from_errors
from farm.states import TERMINAL
from studio_client._http import Http
from studio_client._upload import Progress, iter_file, sha256_path
from studio_client.download import Download, fetch_file
from studio_client.events import EventStream
from studio_client.upload import ProgressCallback, Uploader, UploadResult

T = TypeVar("T")
B = TypeVar("B", bound=BaseModel)
PAGE_SIZE = 1000
"""Items asked for per request when following a list's pages (the API's largest page)."""


class Client:
    """Talks to a farm's API.

    Args:
        url: the API's base URL, e.g. ``http://127.0.0.1:8765``.
        token: a studio user's API token.
        timeout_s: per-request timeout.
        transport: an httpx transport; tests pass ``httpx.ASGITransport``-like transports to
            drive the FastAPI app in process.

    Example:
        >>> client = Client("http://127.0.0.1:8765", token)  # doctest: +SKIP
        >>> show = client.create_show("seamonster")  # doctest: +SKIP
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = Http(url, token, timeout_s=timeout_s, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _pages(
        self, path: str, page: type[schemas.Page[T]], params: dict[str, Any] | None = None
    ) -> Iterator[T]:
        """Every item of a list route, following ``next_cursor`` one page at a time."""
        query: dict[str, Any] = {**(params or {}), "limit": PAGE_SIZE}
        while True:
            answer: schemas.Page[T] = self._http.call("GET", path, page, params=query)
            yield from answer.items
            if answer.next_cursor is None:
                return
            query["cursor"] = answer.next_cursor

    # ------------------------------------------------------------------ who and where
    def me(self) -> schemas.UserOut:
        return self._http.call("GET", "/me", schemas.UserOut)

    def pools(self) -> list[schemas.PoolOut]:
        return list(self._pages("/pools", schemas.Page[schemas.PoolOut]))

    # ------------------------------------------------------------------ API tokens
    # Experimental: may change.
    def tokens(self) -> list[schemas.TokenOut]:
        """Your API tokens (a studio admin gets the whole studio's), never their secrets."""
        return list(self._pages("/tokens", schemas.Page[schemas.TokenOut]))

    def create_token(
        self, name: str, *, expires_in_days: int | None = None
    ) -> schemas.TokenCreated:
        """A new token of yours; ``.token`` is the secret, which the farm shows only now."""
        body = schemas.TokenCreate(name=name, expires_in_days=expires_in_days)
        return self._http.send("POST", "/tokens", body, schemas.TokenCreated)

    def revoke_token(self, token_id: int) -> schemas.TokenOut:
        """Revoke a token at once (yours, or as a studio admin any of the studio's)."""
        return self._http.call("DELETE", f"/tokens/{token_id}", schemas.TokenOut)

    def rotate_token(self, token_id: int) -> schemas.TokenCreated:
        """Revoke one of your tokens and get its successor, secret included."""
        return self._http.call("POST", f"/tokens/{token_id}/rotate", schemas.TokenCreated)

    # ------------------------------------------------------------------ shows and shots
    def create_show(self, name: str, *, title: str = "") -> schemas.ShowOut:
        body = _spec(schemas.ShowCreate, {"name": name, "title": title})
        return self._http.send("POST", "/shows", body, schemas.ShowOut)

    def shows(self) -> list[schemas.ShowOut]:
        """Every show of your studio, oldest first."""
        return list(self._pages("/shows", schemas.Page[schemas.ShowOut]))

    def show(self, name_or_id: str | int) -> schemas.ShowOut:
        """A show by name among this studio's shows, or by id (a name wins: shows may be "2024")."""
        for show in self.shows():
            if show.name == str(name_or_id):
                return show
        if isinstance(name_or_id, int) or str(name_or_id).isdigit():
            return self._http.call("GET", f"/shows/{int(name_or_id)}", schemas.ShowOut)
        raise InvalidSpec(f"no show named {name_or_id!r} in your studio", field="show")

    def create_shot(self, show_id: int, name: str, *, sequence: str) -> schemas.ShotOut:
        body = _spec(schemas.ShotCreate, {"name": name, "sequence": sequence})
        return self._http.send("POST", f"/shows/{show_id}/shots", body, schemas.ShotOut)

    def shots(self, show_id: int) -> list[schemas.ShotOut]:
        """Every shot of a show, oldest first."""
        return list(self._pages(f"/shows/{show_id}/shots", schemas.Page[schemas.ShotOut]))

    # ------------------------------------------------------------------ assets
    def missing(self, hashes: list[str]) -> list[str]:
        body = schemas.MissingBlobsQuery(hashes=hashes)
        return self._http.send("POST", "/blobs/missing", body, schemas.MissingBlobsOut).missing

    def upload(self, path: str | Path, *, progress: Progress | None = None) -> schemas.BlobOut:
        """Upload a file's bytes unless the farm already has them for this studio.

        Returns the blob; ``created`` is False when nothing needed sending. For a folder (or
        many files, resumable) use :meth:`upload_tree`.
        """
        path = Path(path)
        if not path.is_file():
            raise InvalidSpec(
                f"{path} is not a file (upload a folder with upload_tree)", field="path"
            )
        content_hash = sha256_path(path, progress)
        size = path.stat().st_size
        if not self.missing([content_hash]):
            return schemas.BlobOut(content_hash=content_hash, size_bytes=size, created=False)
        return self.put_blob(content_hash, iter_file(path, progress), size_bytes=size)

    def put_blob(
        self, content_hash: str, content: bytes | Iterable[bytes], *, size_bytes: int
    ) -> schemas.BlobOut:
        """Send one blob's bytes, streamed; the farm checks they hash to ``content_hash``.

        ``size_bytes`` goes in ``Content-Length``, so a blob over the farm's limit is refused
        (413) before its bytes are sent. Safe to call from several threads at once.

        Experimental: may change.

        Raises:
            TooLarge: over ``FARM_MAX_UPLOAD_BYTES``.
            Conflict: the bytes do not match the hash, or the studio's storage quota is full.
        """
        return self._http.call(
            "PUT",
            f"/blobs/{content_hash}",
            schemas.BlobOut,
            content=content,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size_bytes)},
        )

    def put_blob_pack(self, blobs: list[tuple[str, bytes]]) -> list[schemas.BlobOut]:
        """Send many small blobs ``(hash, bytes)`` in one request (at most 16 MiB in all);
        all are stored or none. Safe to call from several threads at once.

        Experimental: may change.

        Raises:
            TooLarge: the pack is over 16 MiB (or the farm's upload limit).
            Conflict: a blob's bytes do not match its hash, or the storage quota is full.
        """
        answer: schemas.BlobPackOut = self._http.call(
            "POST",
            "/blobs/pack",
            schemas.BlobPackOut,
            content=schemas.encode_pack(blobs),
            headers={"Content-Type": schemas.PACK_MEDIA_TYPE},
        )
        return answer.blobs

    def upload_tree(
        self,
        path: str | Path,
        *,
        on_progress: ProgressCallback | None = None,
        state_dir: Path | None = None,
    ) -> UploadResult:
        """Upload a folder (or a file), resumably: hashed in threads, one ``missing`` call per
        1,000 hashes, only what the farm lacks sent, then the folder's manifest. Blocks: a GUI
        uses :class:`studio_client.upload.Uploader` ``.start()`` instead.

        Experimental: may change.

        Returns:
            what was done; ``content_hash`` is what to register (the manifest for a folder).
        """
        uploader = Uploader(self, on_progress=on_progress, state_dir=state_dir)
        return uploader.run(path)

    def register_asset_version(
        self, show_id: int, *, asset: str, content_hash: str, kind: str = "other"
    ) -> schemas.AssetVersionOut:
        body = _spec(
            schemas.AssetVersionCreate,
            {"asset": asset, "kind": kind, "content_hash": content_hash},
        )
        return self._http.send(
            "POST", f"/shows/{show_id}/asset-versions", body, schemas.AssetVersionOut
        )

    def publish(
        self,
        show_id: int,
        path: str | Path,
        *,
        asset: str,
        kind: str = "other",
        progress: Progress | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> schemas.AssetVersionOut:
        """Upload (only what is missing) and register ``path`` as the next version of
        ``asset``: a file as its blob, a folder as its manifest (a directory version).

        ``progress`` sees a file's bytes; ``on_progress`` a folder's :class:`UploadProgress`.
        """
        body = _spec(  # a bad name or kind: refused before anything is read or sent
            schemas.AssetVersionCreate, {"asset": asset, "kind": kind, "content_hash": "0" * 64}
        )
        if Path(path).is_dir():
            content_hash = self.upload_tree(path, on_progress=on_progress).content_hash
        else:
            content_hash = self.upload(path, progress=progress).content_hash
        return self.register_asset_version(
            show_id, asset=body.asset, content_hash=content_hash, kind=body.kind
        )

    # ------------------------------------------------------------------ jobs
    def submit(self, spec: schemas.JobSpec) -> schemas.JobOut:
        return self._http.send("POST", "/jobs", spec, schemas.JobOut)

    def submit_template(
        self,
        template: str | Path | dict[str, Any],
        *,
        shot_id: int,
        parameters: dict[str, str] | None = None,
        environments: Iterable[str | Path | dict[str, Any]] = (),
        name: str | None = None,
        priority: int = 50,
        after_jobs: Iterable[int] = (),
        after_assets: Iterable[schemas.AssetWait] = (),
    ) -> schemas.JobOut:
        """Submit an Open Job Description job template (a file, its YAML/JSON text, or the
        decoded object) with its job parameter values; the farm expands and validates it.
        ``after_jobs`` and ``after_assets`` hold it until those jobs are done and those asset
        versions published.

        Experimental: may change.

        Raises:
            InvalidSpec: the template or a value is refused (the reason named).
        """
        body = _spec(
            schemas.OpenJDSubmit,
            {
                "shot_id": shot_id,
                "template": _template_text(template),
                "parameters": dict(parameters or {}),
                "environments": [_template_text(e) for e in environments],
                "name": name,
                "priority": priority,
                "after_jobs": list(after_jobs),
                "after_assets": [a.model_dump() for a in after_assets],
            },
        )
        return self._http.send("POST", "/jobs/openjd", body, schemas.JobOut)

    def log(self, job_id: int, *, layer: str, frame: int, tile: int = 0) -> str:
        """A tile's log: a command task's output (its last attempt that wrote one).

        Experimental: may change.
        """
        path = f"/jobs/{job_id}/layers/{layer}/frames/{frame}/tiles/{tile}/log"
        return self._http.request("GET", path).text

    def job(self, job_id: int) -> schemas.JobOut:
        return self._http.call("GET", f"/jobs/{job_id}", schemas.JobOut)

    def jobs(self, *, show_id: int | None = None) -> list[schemas.JobSummary]:
        """Every job of your studio (or of one show), newest first."""
        return list(self.iter_jobs(show_id=show_id))

    def iter_jobs(self, *, show_id: int | None = None) -> Iterator[schemas.JobSummary]:
        """Your studio's jobs (or one show's), newest first, fetched a page at a time as the
        loop asks for more: stop early and the rest is never sent.

        Experimental: may change.
        """
        params = {"show_id": show_id} if show_id is not None else {}
        return self._pages("/jobs", schemas.Page[schemas.JobSummary], params)

    def events(
        self, job_id: int | None = None, *, after: int | None = None, follow: bool = True
    ) -> EventStream:
        """The live events of one job (or, without ``job_id``, of your whole studio), oldest
        first, each once: reconnects after a dropped connection where it left off.

        Iterate it for :class:`~farm.schemas.EventOut`; ``.last_id`` is where to resume later
        (``after=``). Following, a job's events end when the job does; a studio's never end.
        Without ``follow``, what the farm has now.

        Experimental: may change.

        Example:
            >>> for event in client.events(job.id):  # doctest: +SKIP
            ...     print(event.id, event.kind, event.payload)
        """
        return EventStream(self._http, job_id, after=after, follow=follow)

    def wait(
        self,
        job_id: int,
        *,
        poll_s: float = 0.5,
        timeout_s: float | None = None,
        on_update: Callable[[schemas.JobOut], None] | None = None,
        on_event: Callable[[schemas.EventOut], None] | None = None,
    ) -> schemas.JobOut:
        """Wait until a job finishes and return it.

        With ``on_event`` (experimental: may change), follow the job's event stream instead of
        polling: ``on_event`` sees every event from the first, each once, in order, and
        ``on_update`` the finished job. Without, poll every ``poll_s``; ``on_update`` sees
        every state read.

        Raises:
            TimeoutError: the job had not finished after ``timeout_s``.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        if on_event is not None:
            return self._follow(job_id, on_event, on_update, deadline, timeout_s)
        while True:
            job = self.job(job_id)
            if on_update:
                on_update(job)
            if job.state in TERMINAL:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job.state} after {timeout_s} s")
            time.sleep(poll_s)

    def _follow(
        self,
        job_id: int,
        on_event: Callable[[schemas.EventOut], None],
        on_update: Callable[[schemas.JobOut], None] | None,
        deadline: float | None,
        timeout_s: float | None,
    ) -> schemas.JobOut:
        """:meth:`wait` on the event stream: to its end, then the job as it is now."""
        after: int | None = None
        while True:
            stream = EventStream(self._http, job_id, after=after, until=deadline)
            for event in stream:
                on_event(event)
            after = stream.last_id
            job = self.job(job_id)
            # A retry may bring an ended job back before we looked: then follow on.
            if job.state in TERMINAL:
                if on_update:
                    on_update(job)
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job.state} after {timeout_s} s")

    def job_files(
        self,
        job: int | schemas.JobOut,
        out: str | Path,
        *,
        layers: Iterable[str] | None = None,
        previews: bool = True,
    ) -> list[Download]:
        """What :meth:`fetch` would download: each done frame's EXR (and PNG preview) and each
        layer's contact sheet, under ``out/job<ID>_<name>/<layer>/`` by the farm's file names.

        ``layers``: only these (default: every layer that wrote frames, usually the assembly).
        """
        detail = self.job(job) if isinstance(job, int) else job
        wanted = set(layers) if layers is not None else None
        folder = Path(out) / f"job{detail.id}_{detail.name}"
        files: list[Download] = []
        for layer in detail.layers:
            if wanted is not None and layer.name not in wanted:
                continue
            base = f"/jobs/{detail.id}/layers/{layer.name}"
            for frame in layer.frames:
                if frame.output_hash and frame.file_name:
                    where = folder / layer.name / frame.file_name
                    url = f"{base}/frames/{frame.number}"
                    files.append(Download(f"{url}/exr", where, frame.output_hash))
                    if previews and frame.preview_hash:
                        png = where.with_suffix(".png")
                        files.append(Download(f"{url}/preview", png, frame.preview_hash))
            if previews and layer.contact_sheet_hash:
                sheet = folder / layer.name / "contact_sheet.png"
                files.append(Download(f"{base}/contact-sheet", sheet, layer.contact_sheet_hash))
        if wanted is not None and (unknown := wanted - {layer.name for layer in detail.layers}):
            names = ", ".join(layer.name for layer in detail.layers)
            raise InvalidSpec(
                f"job {detail.id} has no layer {sorted(unknown)[0]!r} (its layers: {names})",
                field="layer",
            )
        return files

    def fetch(
        self,
        job: int | schemas.JobOut,
        out: str | Path,
        *,
        layers: Iterable[str] | None = None,
        previews: bool = True,
        on_file: Callable[[Download, bool], None] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[Path]:
        """Download a job's frames (what :meth:`job_files` lists) into ``out``, verified.

        Each file is checked against the sha256 the farm gave and written under a temporary
        name, renamed only once complete; a file already there with the right bytes is kept,
        so fetching again (after an interruption, or as more frames finish) sends only what
        is new. ``on_file(download, sent)`` is called after each file, ``progress(n)`` with
        bytes as they arrive.

        Experimental: may change.

        Returns:
            every file's path, fetched now or already there.
        """
        files = self.job_files(job, out, layers=layers, previews=previews)
        for item in files:
            sent = fetch_file(self._http, item, progress)
            if on_file is not None:
                on_file(item, sent)
        return [item.dest for item in files]

    def fetch_asset_version(self, version_id: int, out: str | Path) -> list[Path]:
        """Download an asset version you may read (yours or shared) into the folder ``out``:
        a file version as one file named after the asset, a folder version as its tree
        (with each file's mode). Verified and resumable as :meth:`fetch` is.

        Experimental: may change.
        """
        version = self.asset_version(version_id)
        base = Path(out)
        if not (version.meta or {}).get("manifest"):
            dest = base / version.asset.rsplit("/", 1)[-1]
            url = f"/asset-versions/{version_id}/content"
            fetch_file(self._http, Download(url, dest, version.content_hash))
            return [dest]
        raw = self._http.request("GET", f"/asset-versions/{version_id}/content").content
        manifest = schemas.Manifest.from_bytes(raw)
        paths = []
        for path, entry in manifest.files.items():
            dest = base.joinpath(*path.split("/"))
            url = f"/asset-versions/{version_id}/files/{quote(path, safe='/')}"
            fetch_file(self._http, Download(url, dest, entry.hash, entry.size))
            dest.chmod(entry.mode)
            paths.append(dest)
        return paths

    def set_priority(self, job_id: int, priority: int) -> schemas.JobSummary:
        """Reorder your studio's work: 0-100, higher first (default 50).

        Experimental: may change.
        """
        body = schemas.JobUpdate(priority=priority)
        return self._http.send("PATCH", f"/jobs/{job_id}", body, schemas.JobSummary)

    # ------------------------------------------------------------------ job control
    def pause(self, job_id: int, *, wait_s: float = 10.0) -> schemas.JobCommandOut:
        """Dispatch nothing more of the job (what runs finishes); waits up to ``wait_s`` for
        the farm to apply it (``applied_at`` stays None if it did not in time)."""
        return self._command(job_id, "pause", wait_s)

    def resume(self, job_id: int, *, wait_s: float = 10.0) -> schemas.JobCommandOut:
        return self._command(job_id, "resume", wait_s)

    def cancel(self, job_id: int, *, wait_s: float = 10.0) -> schemas.JobCommandOut:
        """Cancel every unfinished tile; running ones are stopped on their nodes."""
        return self._command(job_id, "cancel", wait_s)

    def retry(
        self,
        job_id: int,
        *,
        layers: list[str] | None = None,
        frames: list[int] | None = None,
        wait_s: float = 10.0,
    ) -> schemas.JobCommandOut:
        """Run failed and cancelled tiles again (all, or of some layers / frames)."""
        body = schemas.RetryRequest(layers=layers, frames=frames)
        return self._command(job_id, "retry", wait_s, body.model_dump(exclude_none=True))

    def _command(
        self, job_id: int, action: str, wait_s: float, body: dict[str, object] | None = None
    ) -> schemas.JobCommandOut:
        params = {"wait": min(max(wait_s, 0.0), 30.0)}
        return self._http.call(
            "POST",
            f"/jobs/{job_id}/{action}",
            schemas.JobCommandOut,
            params=params,
            json=body,
            timeout=wait_s + 30.0,
        )

    def check_frames(self, job_id: int) -> schemas.FrameCheckOut:
        return self._http.call("GET", f"/jobs/{job_id}/check", schemas.FrameCheckOut)

    # ------------------------------------------------------------------ cost
    def report(self, show_id: int) -> schemas.CostReport:
        return self._http.call("GET", f"/shows/{show_id}/report", schemas.CostReport)

    # ------------------------------------------------------------------ farm operation
    # Experimental: may change. These need a user with the ``operator`` role.
    def quotas(self) -> list[schemas.QuotaOut]:
        """Every studio's quotas (operator only)."""
        return list(self._pages("/admin/quotas", schemas.Page[schemas.QuotaOut]))

    def set_quota(
        self,
        studio: str,
        pool: str,
        *,
        guarantee: int = 0,
        weight: float = 1.0,
        ceiling: int | None = None,
    ) -> schemas.QuotaOut:
        """Set ``studio``'s guaranteed slots, weight and ceiling on ``pool`` (operator only)."""
        body = schemas.QuotaCreate(guarantee=guarantee, weight=weight, ceiling=ceiling)
        return self._http.send("PUT", f"/admin/quotas/{studio}/{pool}", body, schemas.QuotaOut)

    def delete_quota(self, studio: str, pool: str) -> None:
        """Back to weight 1, no guarantee, no ceiling for ``studio`` on ``pool``."""
        self._http.request("DELETE", f"/admin/quotas/{studio}/{pool}")

    def licences(self) -> list[schemas.LicenceOut]:
        return list(self._pages("/admin/licences", schemas.Page[schemas.LicenceOut]))

    def set_licence(
        self, name: str, count: int, *, guarantees: dict[str, int] | None = None
    ) -> schemas.LicenceOut:
        """Set a licence's seats and the seats kept per studio name (operator only)."""
        body = schemas.LicenceCreate(count=count, guarantees=guarantees or {})
        return self._http.send("PUT", f"/admin/licences/{name}", body, schemas.LicenceOut)

    def set_rush(self, job_id: int, rush: bool = True) -> schemas.JobSummary:
        """Mark any studio's job rush, or clear it (operator only)."""
        body = schemas.RushUpdate(rush=rush)
        return self._http.send("POST", f"/admin/jobs/{job_id}/rush", body, schemas.JobSummary)

    # ------------------------------------------------------------------ sharing between studios
    # Experimental: may change.
    def assets(self, *, show_id: int | None = None) -> list[schemas.AssetOut]:
        """Every asset your studio may read (its own and those shared with it, ``shared``
        true), of one show or all, oldest first, each with its newest version."""
        params = {"show_id": show_id} if show_id is not None else {}
        return list(self._pages("/assets", schemas.Page[schemas.AssetOut], params))

    def asset(self, asset_id: int) -> schemas.AssetOut:
        return self._http.call("GET", f"/assets/{asset_id}", schemas.AssetOut)

    def asset_versions(self, asset_id: int) -> list[schemas.AssetVersionOut]:
        """Every version of an asset you may read, oldest first."""
        path = f"/assets/{asset_id}/versions"
        return list(self._pages(path, schemas.Page[schemas.AssetVersionOut]))

    def asset_version(self, version_id: int) -> schemas.AssetVersionOut:
        return self._http.call("GET", f"/asset-versions/{version_id}", schemas.AssetVersionOut)

    def share(
        self, studio: str, *, show_id: int | None = None, asset_id: int | None = None
    ) -> schemas.ShareOut:
        """Let ``studio`` read one of your shows (every asset in it) or one asset (every
        version) and use them in its jobs; give exactly one of ``show_id`` and ``asset_id``.
        Needs the admin or td role."""
        body = schemas.ShareCreate(studio=studio, show_id=show_id, asset_id=asset_id)
        return self._http.send("POST", "/shares", body, schemas.ShareOut)

    def shares(self) -> list[schemas.ShareOut]:
        """The live shares your studio gave and received, oldest first."""
        return list(self._pages("/shares", schemas.Page[schemas.ShareOut]))

    def revoke_share(self, share_id: int) -> schemas.ShareOut:
        """Stop sharing at once (your studio's shares only; admin or td)."""
        return self._http.call("DELETE", f"/shares/{share_id}", schemas.ShareOut)

    def share_audit(self) -> list[schemas.ShareAuditOut]:
        """Every grant and revoke your studio gave or received, newest first."""
        return list(self._pages("/shares/audit", schemas.Page[schemas.ShareAuditOut]))


def _spec(model: type[B], data: dict[str, Any]) -> B:
    """``data`` as a request model; bad input is the farm's InvalidSpec, as the API says it."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_spec_from_errors(list(exc.errors())) from exc


def _template_text(template: str | Path | dict[str, Any]) -> str | dict[str, Any]:
    """A template as the API takes it: a path is read (a missing file is refused by name)."""
    if isinstance(template, dict):
        return template
    if isinstance(template, Path) or (
        "\n" not in template and template.endswith((".yaml", ".yml", ".json"))
    ):
        path = Path(template)
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise InvalidSpec(f"{path}: no such file", field="template") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidSpec(f"{path}: cannot read it ({exc})", field="template") from exc
    return template
