"""Request dependencies: a DB session per request and the authenticated user."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from farm.api.context import FarmContext
from farm.db import models as m
from farm.db import tokens
from farm.db.types import MAX_INTEGER
from farm.errors import Forbidden, Unauthenticated
from farm.vocab import Role

_bearer = HTTPBearer(auto_error=False, description="API token of a studio user")


def get_context(request: Request) -> FarmContext:
    context: FarmContext = request.app.state.farm
    return context


def get_session(context: Annotated[FarmContext, Depends(get_context)]) -> Iterator[Session]:
    with context.db.session() as session:
        yield session


def get_user(
    session: Annotated[Session, Depends(get_session, scope="function")],
    context: Annotated[FarmContext, Depends(get_context)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> m.User:
    """The user whose token the request carries: live, well formed, known, unrevoked, unexpired."""
    if credentials is None or not credentials.credentials:
        raise Unauthenticated("missing API token: send 'Authorization: Bearer <token>'")
    now = datetime.now(UTC)
    token = tokens.token_for_secret(session, credentials.credentials, now=now)
    if tokens.token_needs_touch(token, now):
        # Its own short transaction: the request's session may stay open for seconds (a job
        # command waiting for the dispatcher), and on SQLite a write in it would hold the one
        # write lock that long. A failed request still counts as a use of the token.
        with context.db.session() as own:
            tokens.touch_token(own, token.id, now)
    return token.user


def require_role(*roles: Role) -> Any:
    allowed = {r.value for r in roles}

    def check(user: Annotated[m.User, Depends(get_user)]) -> m.User:
        if user.role not in allowed:
            raise Forbidden(
                f"role {user.role!r} may not do this; allowed: {', '.join(sorted(allowed))}"
            )
        return user

    return Depends(check)


Ctx = Annotated[FarmContext, Depends(get_context)]
Db = Annotated[Session, Depends(get_session, scope="function")]
"""A session committed when the route returns, *before* the response is sent: a client that
reads right after a 201 finds the row (FastAPI's default would commit after sending)."""
CurrentUser = Annotated[m.User, Depends(get_user)]
Id = Annotated[int, Path(ge=1, le=MAX_INTEGER, description="numeric id")]
"""A path id: out-of-range numbers are a 422, never an overflow inside the database (ids are
32-bit on PostgreSQL, whatever :data:`farm.vocab.MAX_ID` says)."""
SUBMITTERS = (Role.ARTIST, Role.TD, Role.ADMIN)
