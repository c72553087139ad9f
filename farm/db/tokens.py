"""API tokens: their format, how they are stored and looked up, and a user's own tokens.

A token is ``delta_`` + 30 random base62 characters + a 6-character base62 CRC32 of those 30,
like GitHub's, so a secret scanner recognises and checks a leaked one offline; a malformed
token is refused before any lookup. Only a sha256 of each token is stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import zlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, joinedload

from farm import schemas
from farm.db import models as m
from farm.db.paging import PageRequest, Rows, keyset_page
from farm.errors import Conflict, Forbidden, NotFound, Unauthenticated
from farm.vocab import Role

# ----------------------------------------------------------------------------- API token format
TOKEN_PREFIX = "delta_"
"""Every token starts with it, so secret scanners can spot a leaked one."""
TOKEN_RANDOM_CHARS = 30
"""Random base62 characters after the prefix: about 178 bits."""
TOKEN_CHECKSUM_CHARS = 6
"""CRC32 of the random part in base62, zero-padded (62**6 > 2**32)."""
_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_TOKEN = re.compile(
    rf"{TOKEN_PREFIX}([0-9A-Za-z]{{{TOKEN_RANDOM_CHARS}}})([0-9A-Za-z]{{{TOKEN_CHECKSUM_CHARS}}})"
)
_LEGACY_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
"""``secrets.token_urlsafe(32)``, as issued before revision 0008; such tokens keep working."""


def token_checksum(random_part: str) -> str:
    """CRC32 of ``random_part`` in base62 (digits, A-Z, a-z), most significant first."""
    number = zlib.crc32(random_part.encode())
    digits = []
    for _ in range(TOKEN_CHECKSUM_CHARS):
        number, digit = divmod(number, 62)
        digits.append(_BASE62[digit])
    return "".join(reversed(digits))


def new_token() -> str:
    """A new secret: ``delta_``, 30 random base62 characters, their 6-character checksum."""
    random_part = "".join(secrets.choice(_BASE62) for _ in range(TOKEN_RANDOM_CHARS))
    return f"{TOKEN_PREFIX}{random_part}{token_checksum(random_part)}"


def is_well_formed(token: str) -> bool:
    """Whether ``token`` has a Delta token's shape and checksum; no database needed.

    A secret scanner can run the same check offline on a candidate it found.
    """
    match = _TOKEN.fullmatch(token)
    return match is not None and token_checksum(match.group(1)) == match.group(2)


def hash_token(token: str) -> str:
    """Tokens carry at least 178 random bits, so a plain sha256 is a safe stored form."""
    return hashlib.sha256(token.encode()).hexdigest()


# ----------------------------------------------------------------------------- API tokens
TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)
"""``last_used_at`` is written at most this often per token, not on every request."""
MAX_LIVE_TOKENS = 100
"""Unrevoked tokens a user may hold at once."""


def token_for_secret(session: Session, token: str, *, now: datetime) -> m.ApiToken:
    """The live token row for a secret, its user loaded.

    Raises:
        Unauthenticated: the token is malformed (refused before any lookup), unknown, revoked
            or expired.
    """
    legacy = not token.startswith(TOKEN_PREFIX) and _LEGACY_TOKEN.fullmatch(token)
    if not (is_well_formed(token) or legacy):
        # Which part is wrong is not said: the message must not help anyone forge one.
        raise Unauthenticated(
            "unknown API token: it is malformed (a Delta token is delta_ and 36 letters or "
            "digits); check FARM_TOKEN or run `farm login` again"
        )
    row = session.scalar(
        select(m.ApiToken)
        .where(m.ApiToken.token_hash == hash_token(token))
        .options(joinedload(m.ApiToken.user))
    )
    if row is None:
        raise Unauthenticated(
            "unknown API token: check FARM_TOKEN, run `farm login` again or ask your studio admin"
        )
    if row.revoked_at is not None:
        raise Unauthenticated(
            f"token revoked on {row.revoked_at:%Y-%m-%d %H:%M} UTC: use another token or ask "
            "your studio admin for a new one"
        )
    if row.expires_at is not None and row.expires_at <= now:
        raise Unauthenticated(
            f"token expired on {row.expires_at:%Y-%m-%d %H:%M} UTC: use another token or ask "
            "your studio admin for a new one"
        )
    return row


def user_for_token(session: Session, token: str) -> m.User:
    """The user a live token belongs to (see :func:`token_for_secret`)."""
    return token_for_secret(session, token, now=datetime.now(UTC)).user


def token_needs_touch(row: m.ApiToken, now: datetime) -> bool:
    return row.last_used_at is None or now - row.last_used_at >= TOKEN_TOUCH_INTERVAL


def touch_token(session: Session, token_id: int, now: datetime) -> None:
    session.execute(update(m.ApiToken).where(m.ApiToken.id == token_id).values(last_used_at=now))


def list_tokens(session: Session, user: m.User, page: PageRequest) -> Rows[m.ApiToken]:
    """A page of the user's tokens, or for a studio admin of the studio's; oldest first."""
    query = select(m.ApiToken).options(joinedload(m.ApiToken.user))
    if user.role == Role.ADMIN:
        query = query.where(m.ApiToken.studio_id == user.studio_id)
    else:
        query = query.where(m.ApiToken.user_id == user.id)
    return keyset_page(session, query, m.ApiToken.id, page)


def get_token(session: Session, user: m.User, token_id: int) -> m.ApiToken:
    """A token the user may see: their own, or their studio's for an admin; else NotFound."""
    row = session.get(m.ApiToken, token_id)
    visible = row is not None and (
        row.user_id == user.id if user.role != Role.ADMIN else row.studio_id == user.studio_id
    )
    if row is None or not visible:
        raise NotFound(f"token {token_id} not found; `farm tokens list` shows yours")
    return row


def create_token(
    session: Session, user: m.User, spec: schemas.TokenCreate, *, now: datetime
) -> tuple[m.ApiToken, str]:
    """A new token of ``user``; returns the row and the secret (shown once, stored hashed)."""
    live = session.scalar(
        select(func.count())
        .select_from(m.ApiToken)
        .where(m.ApiToken.user_id == user.id, m.ApiToken.revoked_at.is_(None))
    )
    if (live or 0) >= MAX_LIVE_TOKENS:
        raise Conflict(
            f"you already hold {MAX_LIVE_TOKENS} unrevoked tokens; revoke some with "
            "`farm tokens revoke ID` first"
        )
    expires_at = None
    if spec.expires_in_days is not None:
        expires_at = now + timedelta(days=spec.expires_in_days)
    token = new_token()
    return add_token(session, user, spec.name, token, expires_at=expires_at), token


def revoke_token(session: Session, user: m.User, token_id: int, *, now: datetime) -> m.ApiToken:
    """Revoke a token at once (revoking it again changes nothing)."""
    row = get_token(session, user, token_id)
    if row.revoked_at is None:
        row.revoked_at = now
        session.flush()
    return row


def rotate_token(
    session: Session, user: m.User, token_id: int, *, now: datetime
) -> tuple[m.ApiToken, str]:
    """Revoke one of the user's own tokens and issue its successor (same name, same lifetime)."""
    row = get_token(session, user, token_id)
    if row.user_id != user.id:
        # An admin may revoke a studio token, but a rotated secret would let them act as its user.
        raise Forbidden(
            f"token {token_id} belongs to {row.user.name}: you may revoke it, but only its "
            "owner may rotate it"
        )
    if row.revoked_at is not None:
        raise Conflict(f"token {token_id} is revoked; create a new one with `farm tokens create`")
    expires_at = None
    if row.expires_at is not None:
        expires_at = now + (row.expires_at - row.created_at)
    row.revoked_at = now
    token = new_token()
    return add_token(session, user, row.name, token, expires_at=expires_at), token


def add_token(
    session: Session,
    user: m.User,
    name: str,
    token: str,
    *,
    expires_at: datetime | None = None,
) -> m.ApiToken:
    row = m.ApiToken(
        user=user,
        studio_id=user.studio_id,
        name=name,
        prefix=token[: len(TOKEN_PREFIX) + 4],
        token_hash=hash_token(token),
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row
