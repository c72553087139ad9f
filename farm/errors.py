"""One error hierarchy for the whole farm, mapped three ways: HTTP status, CLI exit code, SDK class.

::

    FarmError                  (500, exit 1)  anything unexpected
    ├── InvalidSpec            (422, exit 2)  bad spec, argument or input file; names the field
    ├── Unauthenticated        (401, exit 3)  missing or unknown token
    ├── Forbidden              (403, exit 3)  the user's role may not do this
    ├── NotFound               (404, exit 3)  also another studio's objects: never reveal they exist
    ├── Conflict               (409, exit 4)  illegal transition, duplicate, hash mismatch on write
    ├── TooLarge               (413, exit 2)  an upload bigger than the farm takes; names the limit
    └── Unavailable            (503, exit 5)  DB, store or Ray unreachable; the only retryable one

The API renders every ``FarmError`` as ``{"error": code, "message": ..., "field": ...}``; the SDK
maps ``error`` back to the same class with :data:`ERRORS_BY_CODE`; the CLI prints one
``error: <message>`` line and exits with ``exit_code``.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar


class FarmError(Exception):
    """Base of every error the farm raises on purpose.

    Args:
        message: what happened and what to do next, in one sentence a user can act on.
        field: dotted path of the offending field (``layers[1].kind``), when there is one.
    """

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, str | None]:
        """The JSON body the API sends for this error."""
        return {"error": self.code, "message": self.message, "field": self.field}

    def __str__(self) -> str:
        return self.message


class InvalidSpec(FarmError):
    """A spec, argument or input file is wrong; the message names the field and what is allowed."""

    code = "invalid_spec"
    http_status = 422
    exit_code = 2


class Unauthenticated(FarmError):
    """No token, or a token the farm does not know."""

    code = "unauthenticated"
    http_status = 401
    exit_code = 3


class Forbidden(FarmError):
    """The caller is known but their role may not do this."""

    code = "forbidden"
    http_status = 403
    exit_code = 3


class NotFound(FarmError):
    """The object does not exist *for this studio* (another studio's objects look absent)."""

    code = "not_found"
    http_status = 404
    exit_code = 3


class Conflict(FarmError):
    """The request clashes with the current state: illegal transition, duplicate, hash mismatch."""

    code = "conflict"
    http_status = 409
    exit_code = 4


class TooLarge(FarmError):
    """An upload is bigger than the farm accepts (``FARM_MAX_UPLOAD_BYTES``); nothing is stored."""

    code = "too_large"
    http_status = 413
    exit_code = 2


class Unavailable(FarmError):
    """A service the farm needs (database, asset store, Ray) cannot be reached; retry later."""

    code = "unavailable"
    http_status = 503
    exit_code = 5
    retryable = True


ERRORS_BY_CODE: dict[str, type[FarmError]] = {
    cls.code: cls
    for cls in (
        FarmError,
        InvalidSpec,
        Unauthenticated,
        Forbidden,
        NotFound,
        Conflict,
        TooLarge,
        Unavailable,
    )
}
"""Maps the ``error`` code of an API body back to its class (used by the SDK)."""


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


_NAMED_MESSAGE = re.compile(r"^([A-Za-z_][\w.]*(?:\[\d+\][\w.]*)*): ")


def validation_message(errors: list[Any]) -> tuple[str, str]:
    """One readable sentence (and the field) for the first pydantic error."""
    first = errors[0]
    if first.get("type") == "json_invalid":
        return f"request body is not valid JSON: {first.get('msg', '')}", "body"
    field = field_path(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    ctx = first.get("ctx") or {}
    if first.get("type") == "enum" and "expected" in ctx:
        message = f"{message}; got {first.get('input')!r}"
    named = _NAMED_MESSAGE.match(message)
    if named:
        # A model-level check names a nested field itself ("layers[2].depends_on: ..."): the
        # error belongs to that field, below wherever pydantic raised it.
        inner = named.group(1)
        field = inner if field == "body" else f"{field}.{inner}"
        text = message if field == inner else f"{field}{message[len(inner) :]}"
    else:
        text = f"{field}: {message}"
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return text, field


def invalid_spec_from_errors(errors: list[Any]) -> InvalidSpec:
    """An :class:`InvalidSpec` for pydantic's error list (``ValidationError.errors()``)."""
    message, field = validation_message(errors)
    return InvalidSpec(message, field=field)
