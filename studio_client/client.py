"""The studio client: one explicit object per farm connection, returning Delta models."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx

from farm import schemas
from farm.errors import InvalidSpec
from farm.states import TERMINAL
from studio_client._http import Http
from studio_client._upload import Progress, iter_file, sha256_path

T = TypeVar("T")
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
        body = schemas.ShowCreate(name=name, title=title)
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
        body = schemas.ShotCreate(name=name, sequence=sequence)
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

        Returns the blob; ``created`` is False when nothing needed sending.
        """
        path = Path(path)
        if not path.is_file():
            raise InvalidSpec(f"{path} is not a file", field="path")
        content_hash = sha256_path(path, progress)
        size = path.stat().st_size
        if not self.missing([content_hash]):
            return schemas.BlobOut(content_hash=content_hash, size_bytes=size, created=False)
        return self._http.call(
            "PUT",
            f"/blobs/{content_hash}",
            schemas.BlobOut,
            content=iter_file(path, progress),
            headers={"Content-Type": "application/octet-stream"},
        )

    def register_asset_version(
        self, show_id: int, *, asset: str, content_hash: str, kind: str = "other"
    ) -> schemas.AssetVersionOut:
        body = schemas.AssetVersionCreate.model_validate(
            {"asset": asset, "kind": kind, "content_hash": content_hash}
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
    ) -> schemas.AssetVersionOut:
        """Upload (only if missing) and register a file as the next version of ``asset``."""
        blob = self.upload(path, progress=progress)
        return self.register_asset_version(
            show_id, asset=asset, content_hash=blob.content_hash, kind=kind
        )

    # ------------------------------------------------------------------ jobs
    def submit(self, spec: schemas.JobSpec) -> schemas.JobOut:
        return self._http.send("POST", "/jobs", spec, schemas.JobOut)

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

    def wait(
        self,
        job_id: int,
        *,
        poll_s: float = 0.5,
        timeout_s: float | None = None,
        on_update: Callable[[schemas.JobOut], None] | None = None,
    ) -> schemas.JobOut:
        """Poll a job until it finishes; ``on_update`` sees every state read."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if on_update:
                on_update(job)
            if job.state in TERMINAL:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job.state} after {timeout_s} s")
            time.sleep(poll_s)

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
