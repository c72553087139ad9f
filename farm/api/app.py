"""The FastAPI application (OpenAPI at /docs)."""

from __future__ import annotations

from fastapi import FastAPI

from farm.api.context import FarmContext
from farm.api.errors import COMMON_ERRORS, install_error_handlers
from farm.api.routes import admin, assets, events, jobs, outputs, reports, sharing, shows, tokens


def create_app(context: FarmContext) -> FastAPI:
    """The API over one farm context; the dispatcher, if any, is started beside it by the caller."""
    app = FastAPI(
        title="Delta render farm",
        version="0.1.0",
        description="Shared asset-management and job API of the Delta render farm.",
    )
    app.state.farm = context
    install_error_handlers(app)
    for module in (shows, assets, jobs, outputs, reports, admin, tokens, sharing, events):
        app.include_router(module.router, responses=COMMON_ERRORS)

    @app.get("/health", tags=["health"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
