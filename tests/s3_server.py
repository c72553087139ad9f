"""A real S3 endpoint on loopback for the S3 store's tests (imported by ``tests/conftest.py``).

- ``s3_endpoint`` (one per run): moto's S3 server on ``127.0.0.1`` and a free port, in a thread
  of the test process, with one bucket for the run. ``FARM_TEST_S3_ENDPOINT_URL`` points the
  tests at another endpoint instead (MinIO, Ceph), with credentials from ``AWS_ACCESS_KEY_ID``
  and ``AWS_SECRET_ACCESS_KEY``.
- ``s3_store``: an :class:`~farm.storage.S3Store` on that bucket under a prefix of its own, with
  an empty cache in the test's tmp folder. Its credentials come from the environment, set to
  the endpoint's (dummy ones for moto), with AWS config files and profiles out of reach so
  nothing ever touches real AWS.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from farm.storage import S3Store

EXTERNAL_URL = os.environ.get("FARM_TEST_S3_ENDPOINT_URL")
REGION = "us-east-1"  # moto: any other region needs a LocationConstraint to create a bucket


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    bucket: str
    access_key_id: str
    secret_access_key: str
    region: str = REGION

    def client(self) -> Any:
        """A plain boto3 client on the endpoint, to look at or damage objects behind the store."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    def store(
        self, cache_dir: Path, *, prefix: str = "", explicit_credentials: bool = False
    ) -> S3Store:
        """A store on the run's bucket; explicit credentials travel with it (to Ray workers)."""
        return S3Store(
            self.bucket,
            prefix=prefix,
            endpoint_url=self.url,
            region=self.region,
            cache_dir=cache_dir,
            access_key_id=self.access_key_id if explicit_credentials else None,
            secret_access_key=self.secret_access_key if explicit_credentials else None,
        )


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[S3Endpoint]:
    """A local S3 endpoint with one bucket for the run."""
    bucket = f"delta-test-{uuid.uuid4().hex[:12]}"
    server = None
    if EXTERNAL_URL:
        endpoint = S3Endpoint(
            EXTERNAL_URL,
            bucket,
            os.environ.get("AWS_ACCESS_KEY_ID", ""),
            os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
        )
    else:
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = S3Endpoint(f"http://{host}:{port}", bucket, "testing", "testing")
    client = endpoint.client()
    client.create_bucket(Bucket=bucket)
    try:
        yield endpoint
    finally:
        if server is not None:
            server.stop()
        else:  # an external endpoint outlives the run: leave it as it was
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for item in page.get("Contents", []):
                    client.delete_object(Bucket=bucket, Key=item["Key"])
            client.delete_bucket(Bucket=bucket)


def isolate_aws_env(monkeypatch: pytest.MonkeyPatch, endpoint: S3Endpoint, home: Path) -> None:
    """boto3's default chain finds the endpoint's credentials and nothing of the developer's."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", endpoint.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", endpoint.secret_access_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", endpoint.region)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def s3_store(s3_endpoint: S3Endpoint, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3Store:
    """An S3 store with a prefix of its own in the run's bucket and an empty cache."""
    isolate_aws_env(monkeypatch, s3_endpoint, tmp_path)
    return s3_endpoint.store(tmp_path / "s3-cache", prefix=f"t-{uuid.uuid4().hex[:12]}")
