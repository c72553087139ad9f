"""HTTP plumbing of the SDK: one httpx client, errors mapped back to :mod:`farm.errors` classes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from farm.errors import ERRORS_BY_CODE, FarmError, Unavailable

M = TypeVar("M")


class Http:
    """A thin wrapper that turns every non-2xx answer into the farm's own exception."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unavailable(
                f"cannot reach the farm at {self.url} ({type(exc).__name__}): is `farm server` "
                "running, and is FARM_API_URL right?"
            ) from exc
        if response.is_success:
            return response
        raise error_from_response(response)

    @contextlib.contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A response whose body is read as it arrives (downloads); errors as in ``request``."""
        try:
            with self._client.stream(method, path, **kwargs) as response:
                if not response.is_success:
                    response.read()
                    raise error_from_response(response)
                yield response
        except httpx.TransportError as exc:
            raise Unavailable(
                f"lost the farm at {self.url} ({type(exc).__name__}): is `farm server` "
                "running, and is FARM_API_URL right?"
            ) from exc

    def call(self, method: str, path: str, out: type[M] | Any, **kwargs: Any) -> M:
        response = self.request(method, path, **kwargs)
        result: M = TypeAdapter(out).validate_python(response.json())
        return result

    def send(self, method: str, path: str, body: BaseModel, out: type[M] | Any) -> M:
        return self.call(method, path, out, json=body.model_dump(mode="json"))


def error_from_response(response: httpx.Response) -> FarmError:
    """The farm error an API answer carries (a plain FarmError if the body is not ours)."""
    try:
        body = response.json()
        cls = ERRORS_BY_CODE.get(body.get("error", ""), FarmError)
        return cls(str(body.get("message", response.reason_phrase)), field=body.get("field"))
    except (ValueError, AttributeError):
        codes = {401: "unauthenticated", 404: "not_found", 503: "unavailable"}
        error_cls = ERRORS_BY_CODE.get(codes.get(response.status_code, ""), FarmError)
        return error_cls(f"HTTP {response.status_code} from {response.url}: {response.text[:200]}")
