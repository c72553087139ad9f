"""One mapping from errors to HTTP answers: ``{"error": code, "message": ..., "field": ...}``.

Routes raise :mod:`farm.errors` classes and never build ``HTTPException`` by hand. Pydantic's
validation errors are rewritten to name the field plainly (``layers[1].kind``), with what was
given and what is allowed.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from farm.errors import Conflict, FarmError, Unavailable, invalid_spec_from_errors

log = logging.getLogger("farm.api")


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
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            status_code=exc.status_code,
            content={"error": code, "message": str(exc.detail), "field": None},
        )

    @app.exception_handler(IntegrityError)
    async def _integrity(_request: Request, exc: IntegrityError) -> JSONResponse:
        error = Conflict("a concurrent request changed the same object; retry the request")
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
