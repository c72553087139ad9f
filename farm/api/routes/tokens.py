"""API tokens: each user manages their own; a studio admin also lists and revokes the studio's.

A token the caller may not see, another studio's included, answers 404 exactly as a missing
one would. The secret is in the answer of create and rotate only; the farm keeps its sha256.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from farm import schemas
from farm.api.deps import CurrentUser, Db, Id
from farm.api.errors import error_responses
from farm.api.paging import Paging
from farm.db import models as m
from farm.db import tokens

router = APIRouter(prefix="/tokens", tags=["tokens"])


def _created(row: m.ApiToken, token: str) -> schemas.TokenCreated:
    out = schemas.TokenOut.model_validate(row)
    return schemas.TokenCreated(**out.model_dump(), token=token)


@router.get("")
def list_tokens(user: CurrentUser, session: Db, page: Paging) -> schemas.Page[schemas.TokenOut]:
    """Your tokens (a studio admin sees every token of the studio), revoked ones included;
    oldest first."""
    rows = tokens.list_tokens(session, user, page)
    return schemas.Page[schemas.TokenOut].model_validate(rows)


@router.post("", status_code=201, responses=error_responses(409))  # 409: too many tokens
def create_token(spec: schemas.TokenCreate, user: CurrentUser, session: Db) -> schemas.TokenCreated:
    """A new token of yours; the answer holds the secret, shown this once."""
    row, token = tokens.create_token(session, user, spec, now=datetime.now(UTC))
    return _created(row, token)


@router.delete("/{token_id}", responses=error_responses(404))
def revoke_token(token_id: Id, user: CurrentUser, session: Db) -> schemas.TokenOut:
    """Revoke a token at once: its next request is a 401 "token revoked"."""
    row = tokens.revoke_token(session, user, token_id, now=datetime.now(UTC))
    return schemas.TokenOut.model_validate(row)


# 403: an admin may revoke a studio member's token, but only its owner may rotate it;
# 409: the token is already revoked.
@router.post("/{token_id}/rotate", status_code=201, responses=error_responses(403, 404, 409))
def rotate_token(token_id: Id, user: CurrentUser, session: Db) -> schemas.TokenCreated:
    """Revoke one of your tokens and issue its successor (same name and lifetime) with a new
    secret, shown this once."""
    row, token = tokens.rotate_token(session, user, token_id, now=datetime.now(UTC))
    return _created(row, token)
