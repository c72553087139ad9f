"""Sharing between studios: who may read which show and asset, and the grants that say so.

A studio reads its own shows and assets, and those another studio shared with it through a
live :class:`~farm.db.models.Share`: a whole show (every asset in it, those published later
too) or one asset (every version). Sharing is read-only: the grantee may read and use a shared
version as a job input, never publish into the asset, add shots or submit jobs into the show;
writes go through the owner-only lookups of :mod:`farm.db.queries` (``get_own_show``).

Everything another studio may not read answers exactly as a missing row does, with the same
message, so no answer reveals that it exists. A revoke applies to the next read, since every
lookup here asks the ``shares`` table. Jobs already accepted keep the versions they were given:
the dispatcher reads blobs by hash, with no studio in the way, so a job needs no blob grant.

Blobs stay per studio (:func:`farm.db.queries.missing_blobs`): a share never makes another
studio's bytes count as uploaded, so ``POST /blobs/missing`` is no oracle for them.

This module imports models and paging only; :mod:`farm.db.queries` imports it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import ColumnElement, and_, exists, func, or_, select
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.sql.base import ExecutableOption

from farm import schemas
from farm.db import models as m
from farm.db.paging import PageRequest, Rows, keyset_page
from farm.errors import Conflict, Forbidden, InvalidSpec, NotFound


# ----------------------------------------------------------------------------- the rule
def _live_grants(studio_id: int) -> ColumnElement[bool]:
    return and_(m.Share.grantee_studio_id == studio_id, m.Share.revoked_at.is_(None))


def readable_by(studio_id: int) -> ColumnElement[bool]:
    """A condition on :class:`~farm.db.models.Asset`: ``studio_id`` may read the asset (it owns
    it, or a live share of the asset or of its show names the studio).

    Example:
        >>> select(m.Asset).where(readable_by(studio_id))  # doctest: +SKIP
    """
    shared = exists().where(
        _live_grants(studio_id),
        # The grantor must still own it: assets never change owner, but a share must not
        # outlive that rule if they ever do.
        m.Share.grantor_studio_id == m.Asset.studio_id,
        m.Share.show_id == m.Asset.show_id,
        or_(m.Share.asset_id.is_(None), m.Share.asset_id == m.Asset.id),
    )
    return or_(m.Asset.studio_id == studio_id, shared)


def show_readable_by(studio_id: int) -> ColumnElement[bool]:
    """A condition on :class:`~farm.db.models.Show`: the studio owns it, or a live share of the
    whole show names the studio (a share of one asset does not open its show)."""
    shared = exists().where(
        _live_grants(studio_id),
        m.Share.grantor_studio_id == m.Show.studio_id,
        m.Share.show_id == m.Show.id,
        m.Share.asset_id.is_(None),
    )
    return or_(m.Show.studio_id == studio_id, shared)


def readable_show(session: Session, studio_id: int, show_id: int) -> m.Show | None:
    """The show if ``studio_id`` may read it, else None (missing or not shared: alike)."""
    return session.scalar(select(m.Show).where(m.Show.id == show_id, show_readable_by(studio_id)))


def readable_asset(session: Session, studio_id: int, asset_id: int) -> m.Asset | None:
    """The asset if ``studio_id`` may read it, else None (missing or not shared: alike)."""
    return session.scalar(select(m.Asset).where(m.Asset.id == asset_id, readable_by(studio_id)))


# ----------------------------------------------------------------------------- reading assets
def get_asset(session: Session, studio_id: int, asset_id: int) -> schemas.AssetOut:
    """An asset the studio may read, with its newest version.

    Raises:
        NotFound: no such asset, or one the studio may not read (the same answer).
    """
    asset = readable_asset(session, studio_id, asset_id)
    if asset is None:
        raise NotFound(f"asset {asset_id} not found")
    return _asset_outs(session, studio_id, [asset])[0]


def list_assets(
    session: Session, studio_id: int, page: PageRequest, *, show_id: int | None = None
) -> Rows[schemas.AssetOut]:
    """A page of the assets the studio may read (its own and those shared with it), oldest
    first (by id), of one show or all; each with its newest version."""
    query = select(m.Asset).where(readable_by(studio_id))
    if show_id is not None:
        query = query.where(m.Asset.show_id == show_id)
    rows = keyset_page(session, query, m.Asset.id, page)
    return Rows(_asset_outs(session, studio_id, rows.items), rows.next_cursor)


def _asset_outs(session: Session, studio_id: int, assets: list[m.Asset]) -> list[schemas.AssetOut]:
    """The assets as the API shows them: three queries for a page, whatever its length."""
    ids = [asset.id for asset in assets]
    newest = (
        select(m.AssetVersion.asset_id, func.max(m.AssetVersion.version).label("version"))
        .where(m.AssetVersion.asset_id.in_(ids))
        .group_by(m.AssetVersion.asset_id)
        .subquery()
    )
    latest = {
        version.asset_id: version
        for version in session.scalars(
            select(m.AssetVersion)
            .join(
                newest,
                and_(
                    m.AssetVersion.asset_id == newest.c.asset_id,
                    m.AssetVersion.version == newest.c.version,
                ),
            )
            .options(selectinload(m.AssetVersion.asset_row))
        )
    }
    shows = {
        show.id: show
        for show in session.scalars(
            select(m.Show).where(m.Show.id.in_({a.show_id for a in assets}))
        )
    }
    studios = {
        studio.id: studio.name
        for studio in session.scalars(
            select(m.Studio).where(m.Studio.id.in_({a.studio_id for a in assets}))
        )
    }
    return [
        schemas.AssetOut(
            id=asset.id,
            name=asset.name,
            kind=asset.kind,
            show_id=asset.show_id,
            show=shows[asset.show_id].name,
            studio=studios[asset.studio_id],
            shared=asset.studio_id != studio_id,
            latest=(
                schemas.AssetVersionOut.model_validate(latest[asset.id])
                if asset.id in latest
                else None
            ),
        )
        for asset in assets
    ]


def list_versions(
    session: Session, studio_id: int, asset_id: int, page: PageRequest
) -> Rows[m.AssetVersion]:
    """A page of an asset's versions, oldest first.

    Raises:
        NotFound: no such asset, or one the studio may not read.
    """
    if readable_asset(session, studio_id, asset_id) is None:
        raise NotFound(f"asset {asset_id} not found")
    query = (
        select(m.AssetVersion)
        .where(m.AssetVersion.asset_id == asset_id)
        .options(selectinload(m.AssetVersion.asset_row))
    )
    return keyset_page(session, query, m.AssetVersion.id, page)


def readable_version(session: Session, studio_id: int, version_id: int) -> m.AssetVersion | None:
    """The asset version if ``studio_id`` may read it, else None (missing or not shared)."""
    return session.scalar(
        select(m.AssetVersion)
        .join(m.Asset, m.Asset.id == m.AssetVersion.asset_id)
        .where(m.AssetVersion.id == version_id, readable_by(studio_id))
    )


def get_version(session: Session, studio_id: int, version_id: int) -> m.AssetVersion:
    """An asset version the studio may read.

    Raises:
        NotFound: no such version, or one the studio may not read (the same answer).
    """
    version = readable_version(session, studio_id, version_id)
    if version is None:
        raise NotFound(f"asset version {version_id} not found")
    return version


def latest_published(session: Session, studio_id: int, asset_id: int) -> m.AssetVersion | None:
    """The newest version of an asset the studio may read; None before the first publish.

    What a "wait until asset X version >= N is published" job dependency compares with: each
    publish inserts the version and its ``asset_published`` event in one transaction, so a
    reader that saw the event finds the version here.

    Raises:
        NotFound: no such asset, or one the studio may not read (a revoke included).
    """
    if readable_asset(session, studio_id, asset_id) is None:
        raise NotFound(f"asset {asset_id} not found")
    return session.scalar(
        select(m.AssetVersion)
        .where(m.AssetVersion.asset_id == asset_id)
        .order_by(m.AssetVersion.version.desc())
        .limit(1)
    )


# ----------------------------------------------------------------------------- grants
def grant(session: Session, user: m.User, spec: schemas.ShareCreate) -> m.Share:
    """Share one of the user's studio's shows or assets with another studio, and audit it.

    Studio names are not secret on a shared farm (every studio's operator sees them, and
    quotas name them), so an unknown studio is a 404 that names it.

    Raises:
        NotFound: the show or asset is not the studio's own (missing or another studio's:
            the same answer), or no studio has that name.
        Forbidden: the asset or show was shared with the studio: only its owner shares it.
        InvalidSpec: sharing with the studio itself.
        Conflict: the same grant is already live (the message names it).
    """
    show_id, asset_id = _subject(session, user.studio_id, spec)
    grantee = session.scalar(select(m.Studio).where(m.Studio.name == spec.studio))
    if grantee is None:
        raise NotFound(f"no studio named {spec.studio!r}", field="studio")
    if grantee.id == user.studio_id:
        raise InvalidSpec(
            f"studio: {spec.studio!r} is your own studio, which reads its assets already",
            field="studio",
        )
    live = session.scalar(
        select(m.Share.id).where(
            m.Share.grantor_studio_id == user.studio_id,
            m.Share.grantee_studio_id == grantee.id,
            m.Share.show_id == show_id,
            m.Share.asset_id.is_(None) if asset_id is None else m.Share.asset_id == asset_id,
            m.Share.revoked_at.is_(None),
        )
    )
    if live is not None:
        raise Conflict(f"already shared with {spec.studio!r} (share {live}); nothing changed")
    share = m.Share(
        grantor_studio_id=user.studio_id,
        grantee_studio_id=grantee.id,
        show_id=show_id,
        asset_id=asset_id,
        created_by=user.id,
    )
    session.add(share)
    session.flush()
    _audit(session, share, "grant", user, share.created_at)
    return share


def _subject(session: Session, studio_id: int, spec: schemas.ShareCreate) -> tuple[int, int | None]:
    """The (show id, asset id or None) a grant names, once checked to be the studio's own."""
    if spec.asset_id is not None:
        asset = readable_asset(session, studio_id, spec.asset_id)
        if asset is None:
            raise NotFound(f"asset {spec.asset_id} not found", field="asset_id")
        if asset.studio_id != studio_id:
            raise Forbidden(
                f"asset {spec.asset_id} was shared with your studio; only its owner "
                "may share it further"
            )
        return asset.show_id, asset.id
    assert spec.show_id is not None  # ShareCreate holds exactly one of the two
    show = readable_show(session, studio_id, spec.show_id)
    if show is None:
        raise NotFound(f"show {spec.show_id} not found", field="show_id")
    if show.studio_id != studio_id:
        raise Forbidden(
            f"show {spec.show_id} was shared with your studio; only its owner may share it further"
        )
    return show.id, None


def revoke(session: Session, user: m.User, share_id: int) -> m.Share:
    """End a share at once: the grantee's next read of it is a 404. Audited.

    Raises:
        NotFound: no share given or received by the user's studio.
        Forbidden: the share was given *to* the user's studio: only the grantor revokes.
        Conflict: already revoked.
    """
    share = _visible_share(session, user.studio_id, share_id)
    if share.grantor_studio_id != user.studio_id:
        raise Forbidden(
            f"share {share_id} was given to your studio by {share.grantor!r}: only they may "
            "revoke it"
        )
    if share.revoked_at is not None:
        raise Conflict(f"share {share_id} was already revoked at {share.revoked_at:%Y-%m-%d %H:%M}")
    share.revoked_at = datetime.now(UTC)
    share.revoked_by = user.id
    _audit(session, share, "revoke", user, share.revoked_at)
    session.flush()
    return share


def _visible_share(session: Session, studio_id: int, share_id: int) -> m.Share:
    share = session.get(m.Share, share_id)
    if share is None or studio_id not in (share.grantor_studio_id, share.grantee_studio_id):
        raise NotFound(f"share {share_id} not found")
    return share


def _audit(session: Session, share: m.Share, action: str, user: m.User, when: datetime) -> None:
    session.add(
        m.ShareAudit(
            share_id=share.id,
            action=action,
            grantor_studio_id=share.grantor_studio_id,
            grantee_studio_id=share.grantee_studio_id,
            show_id=share.show_id,
            asset_id=share.asset_id,
            user_id=user.id,
            created_at=when,
        )
    )
    session.flush()


def list_shares(session: Session, studio_id: int, page: PageRequest) -> Rows[m.Share]:
    """A page of the live shares the studio gave or received, oldest first (by id)."""
    query = (
        select(m.Share)
        .where(
            or_(m.Share.grantor_studio_id == studio_id, m.Share.grantee_studio_id == studio_id),
            m.Share.revoked_at.is_(None),
        )
        .options(*_share_names(m.Share), selectinload(m.Share.creator))
    )
    return keyset_page(session, query, m.Share.id, page)


def list_audit(session: Session, studio_id: int, page: PageRequest) -> Rows[m.ShareAudit]:
    """A page of the grants and revokes the studio gave or received, newest first (by id)."""
    query = (
        select(m.ShareAudit)
        .where(
            or_(
                m.ShareAudit.grantor_studio_id == studio_id,
                m.ShareAudit.grantee_studio_id == studio_id,
            )
        )
        .options(*_share_names(m.ShareAudit), selectinload(m.ShareAudit.user))
    )
    return keyset_page(session, query, m.ShareAudit.id, page, descending=True)


def _share_names(table: type[m.Share] | type[m.ShareAudit]) -> list[ExecutableOption]:
    """Load what the Out schemas name (studios, show, asset) with the page, not per row."""
    return [
        selectinload(table.grantor_row),
        selectinload(table.grantee_row),
        selectinload(table.show_row),
        selectinload(table.asset_row),
    ]
