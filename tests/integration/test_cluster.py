"""The farm on a real multi-node Ray cluster (``ray.cluster_utils.Cluster``), issue 20.

One head that runs nothing and one node per pool (cpu, a virtual h100, a virtual ascend), each
declared by :func:`scheduler.worker.node_resources`, the function ``farm worker`` uses. The tests
add and remove nodes, kill worker processes and the farm server itself, and check after each
fault that every tile is accounted for exactly once
(:func:`tests.invariants.assert_tiles_accounted`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from farm.db import models as m
from farm.db.session import Database
from farm.pool_config import DEFAULT_FARM_CONFIG
from farm.states import TileState
from scheduler.dispatch.dispatcher import Dispatcher
from scheduler.worker import POOL_LABEL, Hardware, find_pool, node_resources
from tests.conftest import Farm
from tests.factories import make_studio
from tests.integration.test_fair_share_farm import job_row, job_tiles, noop_job, tick_until
from tests.invariants import assert_tiles_accounted

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

MACHINE = Hardware(cpus=1, memory_gb=2.0)
"""What each test node claims to be: one core (the CI machine has two for all of them)."""


@dataclass
class FarmCluster:
    cluster: Any  # ray.cluster_utils.Cluster
    nodes: dict[str, Any]  # pool -> its first node

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def add(self, pool: str) -> Any:
        """A node of ``pool``, declared as ``farm worker --pool POOL --num-cpus 1`` would."""
        spec = find_pool(DEFAULT_FARM_CONFIG, pool)
        node = node_resources(spec, MACHINE, num_cpus=1, virtual=True)
        return self.cluster.add_node(
            num_cpus=node.num_cpus,
            num_gpus=node.num_gpus,
            memory=node.memory_bytes,
            resources=node.resources,
            labels=node.labels,
            object_store_memory=80 * 1024 * 1024,
        )


def node_ids_of(pool: str) -> set[str]:
    import ray

    return {
        n["NodeID"]
        for n in ray.nodes()
        if n["Alive"] and n.get("Labels", {}).get(POOL_LABEL) == pool
    }


@pytest.fixture(scope="module")
def farm_cluster() -> Iterator[FarmCluster]:
    """Head + one node per pool; the test process is its driver (as ``farm server`` is)."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()  # the local Ray of earlier tests; ray_local starts it again later
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "object_store_memory": 80 * 1024 * 1024},
    )
    farm = FarmCluster(cluster, {})
    for pool in ("cpu", "h100", "ascend"):
        farm.nodes[pool] = farm.add(pool)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield farm
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_tiles_land_only_on_nodes_of_the_pool_they_fit(
    farm_cluster: FarmCluster, farm: Farm
) -> None:
    db, store, out = farm
    who = make_studio(db, "nimble")
    jobs = {
        "cpu": noop_job(db, who, cols=3, hold_s=0.05),
        "h100": noop_job(
            db, who, cols=3, hold_s=0.05, pool="h100", requirements={"accelerator": "nvidia-h100"}
        ),
        "ascend": noop_job(
            db, who, cols=3, hold_s=0.05, pool="ascend", requirements={"accelerator": "ascend-910b"}
        ),
    }
    Dispatcher(db, store, out).run_until_done(jobs.values(), timeout_s=120)
    for pool, job_id in jobs.items():
        assert job_row(db, job_id).state == "done", pool
        ran_on = {t.node_id for t in job_tiles(db, job_id)}
        assert ran_on and ran_on <= node_ids_of(pool), (pool, ran_on, node_ids_of(pool))
        assert_tiles_accounted(db, job_id)


@pytest.mark.parametrize("execution", ["task", "session"])
def test_a_node_lost_mid_job_costs_no_attempt_and_loses_nothing(
    farm_cluster: FarmCluster, farm: Farm, execution: str
) -> None:
    """Two cpu nodes; the second dies abruptly while it runs a tile (as a task, or in a render
    session). That tile goes back to pending without consuming an attempt (forgiven, its usage
    row unbilled) and the job ends done on the node that is left."""
    db, store, out = farm
    who = make_studio(db, "nimble")
    doomed = farm_cluster.add("cpu")
    farm_cluster.cluster.wait_for_nodes()
    doomed_id = doomed.node_id
    # Tiles of 3 s: the one seen running on the doomed node must not end before the node
    # dies (a worker outlives its raylet a little and replies straight to the driver: with
    # 1 s tiles on a loaded CI machine a tile once finished there first).
    job_id = noop_job(db, who, cols=6, hold_s=3.0, execution=execution)
    dispatcher = Dispatcher(db, store, out, max_attempts=1)
    try:
        raylet = doomed.all_processes["raylet"][0].process.pid
        tick_until(dispatcher, lambda: bool(_tile_workers(parent=raylet)), timeout_s=60)
        farm_cluster.cluster.remove_node(doomed, allow_graceful=False)
        dispatcher.run_until_done([job_id], timeout_s=180)
    finally:
        dispatcher.stop()  # its sessions hand their slots back even when the test fails

    assert job_row(db, job_id).state == "done", [t.reason for t in job_tiles(db, job_id)]
    tiles = job_tiles(db, job_id)
    lost = [t for t in tiles if t.forgiven]
    # max_attempts=1: a lost node counted as a failure would have failed the job.
    assert lost, "no tile was running on the removed node"
    assert all(t.node_id != doomed_id for t in tiles)  # every success on the surviving node
    assert_tiles_accounted(db, job_id)
    with db.session() as session:
        usage = session.execute(
            select(m.UsageRecord.node_id, m.UsageRecord.cost, m.UsageRecord.succeeded).where(
                m.UsageRecord.job_id == job_id
            )
        ).all()
    on_doomed = [row for row in usage if row.node_id == doomed_id]
    assert on_doomed and all(row.cost == 0 and not row.succeeded for row in on_doomed), usage


def _tile_workers(parent: int | None = None) -> list[int]:
    """PIDs of Ray worker processes running a farm tile now (their title names it), only
    those of the raylet ``parent`` when given (a node's workers are its raylet's children)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        running = cmdline.startswith((b"ray::run_tile", b"ray::TileSession.run"))
        if running and parent in (None, ppid):
            pids.append(int(entry.name))
    return pids


def test_a_worker_killed_mid_tile_is_retried_and_counted_once(
    farm_cluster: FarmCluster, farm: Farm
) -> None:
    db, store, out = farm
    who = make_studio(db, "nimble")
    job_id = noop_job(db, who, cols=4, hold_s=1.0)
    dispatcher = Dispatcher(db, store, out)
    deadline = time.monotonic() + 60
    while not (victims := _tile_workers()):
        dispatcher.tick()
        assert time.monotonic() < deadline, "no tile started"
    os.kill(victims[0], signal.SIGKILL)
    dispatcher.run_until_done([job_id], timeout_s=120)
    assert job_row(db, job_id).state == "done"
    tiles = job_tiles(db, job_id)
    assert sum(t.attempts for t in tiles) > len(tiles)  # the killed attempt is on record
    assert_tiles_accounted(db, job_id)


def _farm(*argv: str, env: dict[str, str], **kwargs: Any) -> subprocess.Popen[bytes]:
    farm_bin = Path(sys.executable).parent / "farm"
    return subprocess.Popen([str(farm_bin), *argv], env=env, **kwargs)


def test_farm_worker_joins_its_pool_and_leaves_when_stopped(
    farm_cluster: FarmCluster, tmp_path: Path
) -> None:
    """The real command: ``farm worker --address HEAD --pool cpu`` starts a Ray node with the
    pool's resource and label; SIGTERM takes it out of the cluster."""
    import ray

    before = node_ids_of("cpu")
    env = {**os.environ, "FARM_HOME": str(tmp_path / "home"), "RAY_AUTH_MODE": "disabled"}
    argv = ["worker", "--address", farm_cluster.address, "--pool", "cpu", "--num-cpus", "1"]
    process = _farm(*argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while not (node_ids_of("cpu") - before):
            assert process.poll() is None, process.communicate()[0].decode()
            assert time.monotonic() < deadline, "farm worker never joined"
            time.sleep(0.5)
        (joined,) = node_ids_of("cpu") - before
        node = next(n for n in ray.nodes() if n["NodeID"] == joined)
        assert node["Resources"]["pool:cpu"] == 1.0 and node["Resources"]["CPU"] == 1.0
        assert "pool:h100" not in node["Resources"]
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=90)[0].decode()
    assert process.returncode == 0, output
    assert "node of pool cpu joining" in output and "node of pool cpu stopped" in output
    deadline = time.monotonic() + 60
    while joined in node_ids_of("cpu"):
        assert time.monotonic() < deadline, "the stopped node is still alive"
        time.sleep(0.5)


def test_farm_worker_refuses_an_accelerator_pool_on_a_cpu_machine(tmp_path: Path) -> None:
    env = {**os.environ, "FARM_HOME": str(tmp_path / "home")}
    argv = ["worker", "--address", "127.0.0.1:1", "--pool", "h100"]
    done = subprocess.run(
        [str(Path(sys.executable).parent / "farm"), *argv], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: pool h100 needs nvidia-h100 accelerators and this machine has none that Ray can "
        "see (no nvidia device); start it in a pool without accelerators, or pass --virtual to "
        "stand in on CPU for a test"
    ]


def test_farm_worker_dry_run_checks_the_address_and_token_and_shows_the_auth(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "FARM_HOME": str(tmp_path / "home")}
    farm = str(Path(sys.executable).parent / "farm")

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [farm, "worker", "--pool", "cpu", "--dry-run", *argv],
            env=env,
            capture_output=True,
            text=True,
        )

    nocolon = run("--address", "nocolon")
    assert nocolon.returncode == 2
    assert nocolon.stderr.strip().splitlines() == [
        "error: --address 'nocolon' is not HOST:PORT of the Ray head, e.g. head:6379"
    ]
    missing = run("--address", "head:6379", "--token-file", str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"error: --token-file {tmp_path / 'nope'}: no such file"
    token = tmp_path / "token"
    token.write_text("secret-token\n")
    shown = run("--address", "head:6379", "--token-file", str(token))
    assert shown.returncode == 0, shown.stderr
    assert f"RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={token} " in shown.stdout
    assert "--address head:6379" in shown.stdout or "--address=head:6379" in shown.stdout
    assert "secret-token" not in shown.stdout  # the token never goes on a command line


def test_farm_server_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """systemd, Kubernetes and `kill` stop a server with SIGTERM: a clean stop, said in one
    line, exit 0; Ray's handler printed a crash report (``*** SIGTERM received``)."""
    env = {**os.environ, "FARM_HOME": str(tmp_path / "home")}
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "farm"), "server", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", server)  # type: ignore[arg-type]
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0, err
    assert out.strip().splitlines()[-1] == "farm stopped"
    assert "SIGTERM received" not in err and "Traceback" not in err


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float = 90) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        assert process.poll() is None, "farm server exited"
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "farm server never answered"
        time.sleep(0.5)


def test_farm_server_on_the_cluster_killed_mid_job_loses_nothing(
    farm_cluster: FarmCluster, tmp_path: Path
) -> None:
    """``farm server --ray-address`` drives the cluster; ``kill -9`` of the server mid-job and
    a restart finish the job with every tile accounted once. On PostgreSQL where
    FARM_TEST_PG_URL is set (as in CI), else on SQLite."""
    from studio_client.client import Client
    from tests.conftest import PG_URL, _reset_postgres
    from tests.factories import small_camera

    if PG_URL:
        _reset_postgres(PG_URL)
        url = PG_URL
    else:
        url = f"sqlite:///{tmp_path / 'farm.db'}"
    env = {
        **os.environ,
        "FARM_HOME": str(tmp_path / "home"),
        "FARM_DATABASE_URL": url,
        "RAY_AUTH_MODE": "disabled",
    }
    made = subprocess.run(
        [str(Path(sys.executable).parent / "farm"), "admin", "create-studio", "nimble"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    token = made.stdout.strip().splitlines()[-1]
    port = _free_port()
    api = f"http://127.0.0.1:{port}"
    argv = ["server", "--port", str(port), "--ray-address", farm_cluster.address]
    server = _farm(*argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_healthy(api, server)
        with Client(api, token) as client:
            show = client.create_show("show")
            shot = client.create_shot(show.id, "sh010", sequence="sq01")
            spec = {
                "name": "survivor",
                "shot_id": shot.id,
                "frames": {"first": 1, "last": 3},
                "resolution": {"width": 64, "height": 48},
                "camera": small_camera().model_dump(),
                "layers": [
                    {
                        "name": "work",
                        "kind": "noop",
                        "pool": "cpu",
                        "hold_s": 0.4,
                        "tiles": {"cols": 4, "rows": 1, "overscan": 0},
                    }
                ],
            }
            from farm import schemas

            job_id = client.submit(schemas.JobSpec.model_validate(spec)).id
            deadline = time.monotonic() + 90
            while client.job(job_id).layers[0].tile_counts.get(TileState.DONE, 0) < 2:
                assert time.monotonic() < deadline, "no tile finished"
                time.sleep(0.2)
            assert client.job(job_id).state == "running"
        server.kill()  # kill -9 mid-job: no shutdown code runs
        server.wait(timeout=30)
        server = _farm(*argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_healthy(api, server)
        with Client(api, token) as client:
            deadline = time.monotonic() + 120
            while (job := client.job(job_id)).state not in ("done", "failed", "cancelled"):
                assert time.monotonic() < deadline, f"job stuck in {job.state}"
                time.sleep(0.5)
        assert job.state == "done"
    finally:
        server.kill()
        server.wait(timeout=30)
    db = Database(url)
    try:
        assert_tiles_accounted(db, job_id)
        ran_on = {t.node_id for t in job_tiles(db, job_id)}
        assert ran_on <= node_ids_of("cpu")
    finally:
        db.dispose()
