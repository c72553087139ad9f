"""Uploading a tree of many small files: first upload and unchanged re-upload, against Deadline
Cloud's job-attachments upload in the same run, to the same local S3 endpoint.

*Endpoint*: one moto S3 server (``python -m moto.server``) started here on 127.0.0.1, in its
own process so that neither side shares an interpreter with it. Every upload below goes to it:
ours to the bucket ``bench``, the peer's to ``peer-bench``.

*Ours*: :class:`studio_client.upload.Uploader` (what ``farm upload`` and ``Client.upload_tree``
run) through an embedded farm's API over HTTP, the farm's store being S3 on that endpoint: hash
in threads, one ``POST /blobs/missing`` per 1,000 hashes, only missing blobs sent (small ones
packed, ``POST /blobs/pack``), then the manifest. ``first_s`` is the first upload;
``reupload_s`` runs it again on the unchanged tree with the state file the first run left (the
artist's second ``farm upload``); ``reupload_cold_s`` without it (another workstation: every
file hashed again, nothing sent). ``--disk`` keeps our blobs in the disk store instead (the
peer still uploads to the S3 endpoint).

*Peer*: ``../shared/peers/deadline_upload.py`` (``deadline`` package, job-attachments
``S3AssetManager``: xxh128 hashing with its sqlite hash cache, a HEAD then a PUT per missing
file, 5 at a time, and the manifest), run in its own interpreter (``--peer-python``, default
``/tmp/peer-venv/bin/python``; see ``../shared/peers/README.md`` to install it): first with
``--fresh-cache``, then again keeping its caches (its re-upload). Its figures are its own
``total_s`` (client set-up, hashing and upload; interpreter start-up and imports excluded, as
ours exclude ours). Without the peer's interpreter the peer is skipped: its figures are null.

Tree: ``--files`` files of ``--size`` random bytes (default 10,000 x 10 kB, ~100 MB) in folders
of 100.

Run: ``.venv/bin/python bench/upload.py`` (``--quick``: 2,000 x 5 kB, under a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# A Ray of our own even when another one runs on this machine (`ray start` leaves its address
# in /tmp/ray/ray_current_cluster, which a bare ray.init() would join).
os.environ.setdefault("RAY_ADDRESS", "local")

from farm.settings import Settings
from farm.vocab import Role
from scheduler.embedded import EmbeddedFarm, free_port
from studio_client import Client
from studio_client.upload import Uploader

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
PEER_SCRIPT = Path(__file__).resolve().parents[2] / "shared" / "peers" / "deadline_upload.py"
PEER_PYTHON = Path("/tmp/peer-venv/bin/python")
OUR_BUCKET, OUR_REGION = "bench", "us-east-1"
PEER_BUCKET, PEER_REGION = "peer-bench", "us-west-2"  # the peer runner's default region


def make_tree(root: Path, files: int, size: int) -> int:
    """``files`` files of random bytes under ``root``, 100 to a folder; their total bytes."""
    for i in range(files):
        path = root / f"sq{i // 100:03d}" / f"f{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    return files * size


def start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """moto's S3 server in its own process on 127.0.0.1, with both buckets; its URL."""
    import boto3

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ[key] = "testing"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            s3 = boto3.client("s3", endpoint_url=url, region_name=OUR_REGION)
            s3.list_buckets()
            break
        except Exception:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"moto's server did not start on {url}: see {log}") from None
            time.sleep(0.2)
    s3.create_bucket(Bucket=OUR_BUCKET)
    boto3.client("s3", endpoint_url=url, region_name=PEER_REGION).create_bucket(
        Bucket=PEER_BUCKET, CreateBucketConfiguration={"LocationConstraint": PEER_REGION}
    )
    return server, url


def studio_token(farm: EmbeddedFarm, name: str) -> str:
    from farm.db import queries

    with farm.context.db.session() as session:
        studio = queries.create_studio(session, name)
        _, token = queries.create_user(session, studio, f"td-{secrets.token_hex(3)}", Role.TD)
    return token


def ours(url: str, token: str, tree: Path, state_dir: Path) -> tuple[float, int]:
    """Seconds for one upload of ``tree`` and the blob bytes it sent (manifest included)."""
    with Client(url, token, timeout_s=600) as client:
        start = time.perf_counter()
        result = Uploader(client, state_dir=state_dir).run(tree)
        elapsed = time.perf_counter() - start
    assert result.manifest is not None
    manifest_bytes = len(result.manifest.canonical_bytes()) if result.manifest_sent else 0
    return elapsed, result.progress.bytes_sent + manifest_bytes


def peer(python: Path, script: Path, endpoint: str, tree: Path, cache: Path, fresh: bool) -> Any:
    """One run of the Deadline peer; its last stdout line (JSON) as a dict."""
    command = [
        str(python),
        str(script),
        "--endpoint",
        endpoint,
        "--bucket",
        PEER_BUCKET,
        "--root-prefix",
        "peerbench",
        "--region",
        PEER_REGION,
        "--cache-dir",
        str(cache),
        *(["--fresh-cache"] if fresh else []),
        str(tree),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise RuntimeError(f"the Deadline peer failed (exit {done.returncode}): {command}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 x 5 kB, under a minute")
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=10_000, help="bytes per file")
    parser.add_argument("--disk", action="store_true", help="our blobs in the disk store")
    parser.add_argument(
        "--peer-python",
        type=Path,
        default=PEER_PYTHON,
        help="the interpreter with the `deadline` package (default %(default)s)",
    )
    parser.add_argument("--peer-script", type=Path, default=PEER_SCRIPT)
    args = parser.parse_args()
    files, size = (2000, 5000) if args.quick else (args.files, args.size)
    store = "disk" if args.disk else "s3"
    run_peer = args.peer_python.exists() and args.peer_script.is_file()
    if not run_peer:
        print(
            f"peer skipped: no {args.peer_python} or no {args.peer_script} (install it as "
            "../shared/peers/README.md says); the peer's figures are null",
            file=sys.stderr,
        )
    work = Path(tempfile.mkdtemp(prefix="delta-bench-upload-"))
    try:
        tree = work / "tree"
        total = make_tree(tree, files, size)
        moto, endpoint = start_moto(work / "moto.log")
        try:
            if args.disk:
                settings = Settings(home=work / "home")
            else:
                settings = Settings(
                    home=work / "home",
                    store="s3",
                    s3_bucket=OUR_BUCKET,
                    s3_endpoint_url=endpoint,
                    s3_region=OUR_REGION,
                )
            with EmbeddedFarm(settings, num_cpus=1) as farm:
                token = studio_token(farm, "ours")
                first_s, first_bytes = ours(farm.url, token, tree, work / "state")
                reupload_s, reupload_bytes = ours(farm.url, token, tree, work / "state")
                cold_s, cold_bytes = ours(farm.url, token, tree, work / "state-cold")
            peer_first = peer_again = None
            if run_peer:
                cache = work / "peer-cache"
                peer_first = peer(args.peer_python, args.peer_script, endpoint, tree, cache, True)
                peer_again = peer(args.peer_python, args.peer_script, endpoint, tree, cache, False)
        finally:
            moto.terminate()
            moto.wait(10)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert first_bytes >= total  # every file's bytes, and the manifest
    summary = (
        f"{files} files, {total / 1e6:.0f} MB ({store} store): ours {first_s:.2f} s then "
        f"{reupload_s:.3f} s ({reupload_bytes} bytes; cold {cold_s:.2f} s, {cold_bytes} bytes)"
    )
    if peer_first is not None and peer_again is not None:
        assert peer_first["files"] == files and peer_first["bytes_uploaded"] == total
        summary += (
            f"; Deadline {peer_first['version']} {peer_first['total_s']:.2f} s (hash "
            f"{peer_first['hash_s']:.2f} s, {peer_first['s3_requests']}) then "
            f"{peer_again['total_s']:.3f} s ({peer_again['bytes_uploaded']} bytes; hash "
            f"{peer_again['hash_s']:.3f} s, {peer_again['s3_requests']})"
        )
    print(summary, file=sys.stderr)
    peer_first_s = peer_first["total_s"] if peer_first is not None else None
    peer_reupload_s = peer_again["total_s"] if peer_again is not None else None
    result = {
        "bench": "upload",
        "first_s": round(first_s, 3),
        "reupload_s": round(reupload_s, 3),
        "reupload_bytes_sent": reupload_bytes,
        "reupload_cold_s": round(cold_s, 3),
        "peer": f"deadline-job-attachments {peer_first['version']}" if peer_first else None,
        "peer_first_s": peer_first_s,
        "peer_reupload_s": peer_reupload_s,
        "peer_reupload_bytes_sent": peer_again["bytes_uploaded"] if peer_again else None,
        "first_vs_peer": round(peer_first_s / first_s, 2) if peer_first_s else None,
        "reupload_vs_peer": round(peer_reupload_s / reupload_s, 2) if peer_reupload_s else None,
        "files": files,
        "bytes": total,
        "store": store,
        "goal": "unchanged re-upload <= 1 s with 0 blob bytes sent; >= 2x faster than the peer "
        "(Deadline Cloud job attachments, same S3 endpoint) on the first upload and on the "
        "re-upload",
        "machine": f"{os.cpu_count()} cpus, python {PYTHON}",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
