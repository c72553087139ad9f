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
from starlette.exceptions import HTTPException as StarletteHTTPException

from farm.errors import FarmError, InvalidSpec

log = logging.getLogger("farm.api")


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "layers", 1, "kind")`` -> ``"layers[1].kind"``; pydantic's union tags dropped."""
    parts: list[str] = []
    for item in loc:
        if item in ("body", "query", "path") and not parts:
            continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif isinstance(item, str) and ("[" in item or "function-after" in item):
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "body"


def validation_message(errors: list[Any]) -> tuple[str, str]:
    """One readable sentence (and the field) for the first pydantic error."""
    first = errors[0]
    field = field_path(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    ctx = first.get("ctx") or {}
    if first.get("type") == "enum" and "expected" in ctx:
        message = f"{message}; got {first.get('input')!r}"
    if message.startswith(field.split(".")[0] + "[") or message.startswith(field + ":"):
        text = message
    else:
        text = f"{field}: {message}"
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return text, field


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FarmError)
    async def _farm_error(_request: Request, exc: FarmError) -> JSONResponse:
        return JSONResponse(status_code=exc.http_status, content=exc.to_dict())

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        message, field = validation_message(list(exc.errors()))
        body = InvalidSpec(message, field=field).to_dict()
        return JSONResponse(status_code=422, content=body)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            status_code=exc.status_code,
            content={"error": code, "message": str(exc.detail), "field": None},
        )

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
