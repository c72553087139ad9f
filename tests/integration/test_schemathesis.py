"""Schemathesis over the OpenAPI (issue 21): every operation, called with a valid token on a
seeded farm, never answers a server error, a status its OpenAPI does not declare, or a body that
does not match its declared schema.

In process (the ASGI app, no network) and deterministic (a fixed seed, derandomized Hypothesis,
no example database), sized for CI:

- every operation as a studio admin (who may do all a TD or an artist may, and more), and the
  ``/admin`` operations as the farm's operator: examples, boundary values (schemathesis'
  coverage phase) and 10 random cases each, valid and invalid;
- every operation as each other role: 5 random cases each, each case sent as every role.

A failure prints the request that reproduces it (``curl ... http://testserver/...``).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select

from farm import schemas
from farm.api.app import create_app
from farm.api.context import FarmContext
from farm.db import models as m
from farm.db import queries, tokens
from farm.db.session import Database
from farm.storage import DiskStore
from farm.vocab import Role
from tests.conftest import DB_PARAMS, migrated_database
from tests.factories import StudioUser, job_spec, make_studio
from tests.integration.test_api import seed_version, shot_and_show

_CONFIG = """
seed = 21
suppress-health-check = ["too_slow", "filter_too_much", "data_too_large"]
[generation]
max-examples = {examples}
deterministic = true
database = "none"
[phases.examples]
enabled = {explicit}
[phases.coverage]
enabled = {explicit}
[phases.stateful]
enabled = false
[parameters]
# Seconds a job command waits for the dispatcher, which does not run here: up to 30 otherwise.
"query.wait" = 0.01
"""
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]

# The blob pack is opaque bytes to the schema, like application/octet-stream.
schemathesis.serializer.alias(schemas.PACK_MEDIA_TYPE, "application/octet-stream")

APP = create_app(None)  # type: ignore[arg-type]  # each database's farm: `seeded_farm`


def _schema(examples: int, explicit: bool) -> Any:
    config = _CONFIG.format(examples=examples, explicit=str(explicit).lower())
    return schemathesis.openapi.from_asgi(
        "/openapi.json", APP, config=schemathesis.Config.from_str(config)
    ).exclude(path="/health")


THOROUGH = _schema(examples=10, explicit=True)
QUICK = _schema(examples=5, explicit=False)
OPERATOR_ROUTES = THOROUGH.include(path_regex="^/admin/")


class SeededFarm:
    """The seeded farm and its users, one per role, whose tokens the cases carry."""

    def __init__(self, db: Database, users: dict[Role, StudioUser]) -> None:
        self.db, self.users = db, users
        self._names = count(1)

    def call(self, case: Any, role: Role) -> None:
        response = case.call_and_validate(headers=self.users[role].headers, checks=CHECKS)
        if case.path.startswith("/tokens/") and response.status_code < 300:
            self._reissue_revoked_tokens()

    def _reissue_revoked_tokens(self) -> None:
        """A case revoked or rotated a token of ours: give its user a new one, or every later
        case of that user would be a 401."""
        with self.db.session() as session:
            for role, who in self.users.items():
                row = session.scalar(
                    select(m.ApiToken).where(m.ApiToken.token_hash == tokens.hash_token(who.token))
                )
                if row is not None and row.revoked_at is None:
                    continue
                token = tokens.new_token()
                user = session.get_one(m.User, who.user_id)
                tokens.add_token(session, user, f"reissued-{next(self._names)}", token)
                self.users[role] = StudioUser(who.studio_id, who.user_id, token)


@pytest.fixture(scope="module", params=DB_PARAMS)
def seeded_farm(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SeededFarm]:
    """One farm per database, shared by every operation and role: studio ``alpha`` with a user
    of each role, a show, a shot, a seed asset version, a submitted job and a share of the show
    with studio ``beta`` (each id 1, where generated ids often land)."""
    tmp_path = tmp_path_factory.mktemp("schemathesis")
    db = migrated_database(request.param, tmp_path)
    APP.state.farm = FarmContext(db=db, store=DiskStore(tmp_path / "blobs"), output_root=tmp_path)
    td = make_studio(db, "alpha", Role.TD)
    users = {Role.TD: td}
    with db.session() as session:
        studio = session.get_one(m.Studio, td.studio_id)
        for role in Role:
            if role != Role.TD:
                user, token = queries.create_user(session, studio, f"alpha-{role.value}", role)
                users[role] = StudioUser(studio.id, user.id, token)
    make_studio(db, "beta")
    shot_id, show_id = shot_and_show(db, td)
    with TestClient(APP) as client:
        version_id = seed_version(client, td, show_id, tmp_path)
        spec = job_spec(shot_id, version_id).model_dump(mode="json")
        assert client.post("/jobs", json=spec, headers=td.headers).status_code == 201
        share = {"studio": "beta", "show_id": show_id}
        assert client.post("/shares", json=share, headers=td.headers).status_code == 201
    yield SeededFarm(db, users)
    db.dispose()


@THOROUGH.parametrize()
def test_every_operation_as_a_studio_admin(case: Any, seeded_farm: SeededFarm) -> None:
    seeded_farm.call(case, Role.ADMIN)


@OPERATOR_ROUTES.parametrize()
def test_operator_routes_as_the_operator(case: Any, seeded_farm: SeededFarm) -> None:
    seeded_farm.call(case, Role.OPERATOR)


@QUICK.parametrize()
def test_every_operation_as_every_other_role(case: Any, seeded_farm: SeededFarm) -> None:
    for role in (Role.TD, Role.ARTIST, Role.PRODUCER, Role.OPERATOR):
        seeded_farm.call(case, role)
