"""One mapping from errors to HTTP answers: ``{"error": code, "message": ..., "field": ...}``.

Routes raise :mod:`farm.errors` classes and never build ``HTTPException`` by hand. Pydantic's
validation errors are rewritten to name the field plainly (``layers[1].kind``), with what was
given and what is allowed.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from farm.db.types import MAX_INTEGER
from farm.errors import Conflict, FarmError, InvalidSpec, Unavailable, invalid_spec_from_errors
from farm.schemas import ErrorOut

log = logging.getLogger("farm.api")

_WHEN: dict[int, str] = {
    401: "no API token, or one the farm does not accept",
    403: "the caller's role may not do this",
    404: "no such object in the caller's studio (another studio's objects look the same)",
    409: "the request clashes with the object's state: a duplicate, an illegal transition, "
    "a limit reached, or a concurrent change (retry)",
    413: "the upload is bigger than the farm's limit (FARM_MAX_UPLOAD_BYTES); the message "
    "names it; nothing was stored",
    422: "a body field, path or query parameter is invalid; 'field' names it",
    503: "the database or the blob store is unreachable or busy; retry in a moment",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` declaring these error statuses with the farm's error body.

    Example:
        >>> @router.get("/jobs/{job_id}", responses=error_responses(404))  # doctest: +SKIP
    """
    return {status: {"model": ErrorOut, "description": _WHEN[status]} for status in statuses}


COMMON_ERRORS = error_responses(401, 422, 503)
"""What any route of the API can answer: every one needs a token and takes checked parameters
(replacing FastAPI's own 422 schema: :func:`install_error_handlers` renders ours instead), and
any may find the database busy. :func:`farm.api.app.create_app` adds it to every router."""


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FarmError)
    async def _farm_error(_request: Request, exc: FarmError) -> JSONResponse:
        return JSONResponse(status_code=exc.http_status, content=exc.to_dict())

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        body = invalid_spec_from_errors(list(exc.errors())).to_dict()
        return JSONResponse(status_code=422, content=body)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI could not read a JSON body (bytes not UTF-8)
            error = InvalidSpec(
                "request body is not valid JSON: its bytes are not UTF-8 text; send a UTF-8 "
                "JSON document with 'Content-Type: application/json'",
                field="body",
            )
            return JSONResponse(status_code=error.http_status, content=error.to_dict())
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            status_code=exc.status_code,
            content={"error": code, "message": str(exc.detail), "field": None},
        )

    @app.exception_handler(IntegrityError)
    async def _integrity(_request: Request, exc: IntegrityError) -> JSONResponse:
        error = Conflict("a concurrent request changed the same object; retry the request")
        return JSONResponse(status_code=error.http_status, content=error.to_dict())

    @app.exception_handler(DataError)
    async def _unstorable(_request: Request, exc: DataError) -> JSONResponse:
        # PostgreSQL refuses values SQLite takes, such as a number past a 32-bit column (ids,
        # counts) that the edge did not bound: the request's fault, never the server's.
        log.info("value refused by the database: %s", exc.orig)
        error = InvalidSpec(_unstorable_message(exc))
        return JSONResponse(status_code=error.http_status, content=error.to_dict())

    @app.exception_handler(OperationalError)
    async def _database_down(_request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database error: %s", exc.orig)
        error = Unavailable("the farm's database is busy or unreachable; retry in a moment")
        return JSONResponse(status_code=error.http_status, content=error.to_dict())

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(
            status_code=500,
            content={
                "error": "internal",
                "message": f"internal error ({type(exc).__name__}); the server log has details",
                "field": None,
            },
        )


def _unstorable_message(exc: DataError) -> str:
    """What to tell a client whose value the database refused (PostgreSQL's reason)."""
    if getattr(exc.orig, "sqlstate", None) == "22003":  # numeric_value_out_of_range
        return (
            f"a number in the request is out of range: ids and counts go up to {MAX_INTEGER:,}; "
            "send a smaller one"
        )
    reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else "invalid value"
    return f"a value in the request cannot be stored ({reason}); correct it and send it again"
