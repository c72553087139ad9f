"""infra/kuberay-cluster.yaml declares what ``farm worker`` declares, and keeps Ray private.

Each KubeRay worker group must offer Ray exactly what ``farm worker --pool NAME`` offers on a
machine of the pool's shape (:func:`scheduler.worker.node_resources`, pools of
infra/farm.example.toml), so the manifest and the command cannot drift apart.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from farm.pool_config import PoolSpec, load_farm_config
from farm.vocab import accelerator_vendor
from scheduler.runtime import GIB
from scheduler.worker import Hardware, node_resources

yaml = pytest.importorskip("yaml")

INFRA = Path(__file__).resolve().parents[2] / "infra"
MANIFEST = INFRA / "kuberay-cluster.yaml"
POOLS = load_farm_config(INFRA / "farm.example.toml").pools

ACCELERATOR_LIMIT = {"nvidia": "nvidia.com/gpu", "ascend": "huawei.com/Ascend910"}
"""The Kubernetes device-plugin resource of each accelerator vendor the farm knows."""

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def manifest() -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if doc]


def only(manifest: list[Doc], kind: str) -> Doc:
    (doc,) = [d for d in manifest if d["kind"] == kind]
    return doc


def ray_cluster(manifest: list[Doc]) -> Doc:
    cluster = only(manifest, "RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    return cluster


def groups(manifest: list[Doc]) -> dict[str, Doc]:
    return {g["groupName"]: g for g in ray_cluster(manifest)["spec"]["workerGroupSpecs"]}


def container(pod_template: Doc) -> Doc:
    (first, *_) = pod_template["spec"]["containers"]
    return first


def env(of: Doc) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in of.get("env", [])}


def quantity(value: str | int) -> float:
    """A Kubernetes quantity of the kinds this manifest uses: ``32``, ``128Gi``."""
    found = re.fullmatch(r"(\d+(?:\.\d+)?)(Gi)?", str(value))
    assert found, f"unexpected quantity {value!r}"
    return float(found.group(1)) * (GIB if found.group(2) else 1)


def test_one_worker_group_per_pool_of_the_example_pools_file(manifest: list[Doc]) -> None:
    names = [g["groupName"] for g in ray_cluster(manifest)["spec"]["workerGroupSpecs"]]
    assert sorted(names) == sorted(pool.name for pool in POOLS)


@pytest.mark.parametrize("pool", POOLS, ids=lambda pool: pool.name)
def test_each_group_declares_what_farm_worker_declares(manifest: list[Doc], pool: PoolSpec) -> None:
    machine = Hardware(
        cpus=pool.cores_per_node,
        memory_gb=pool.memory_gb,
        accelerators=pool.accelerators_per_node,
        accelerator_type=pool.ray_accelerator_type,
    )
    node = node_resources(pool, machine)
    assert not node.notes  # the machine is exactly the pool's shape
    group = groups(manifest)[pool.name]
    params = group["rayStartParams"]
    assert params["num-cpus"] == str(node.num_cpus)
    assert int(params["memory"]) == node.memory_bytes
    assert params.get("num-gpus") == (None if node.num_gpus is None else str(node.num_gpus))
    # KubeRay pastes the value into a shell command: JSON inside single quotes.
    assert params["resources"].startswith("'") and params["resources"].endswith("'")
    assert json.loads(params["resources"][1:-1]) == node.resources
    # Ray node labels go in the group's `labels` (KubeRay >= 1.5 rejects rayStartParams.labels).
    assert "labels" not in params
    assert group["labels"] == node.labels

    limits = container(group["template"])["resources"]["limits"]
    assert quantity(limits["cpu"]) == pool.cores_per_node
    assert quantity(limits["memory"]) == pool.memory_gb * GIB
    devices = {k: v for k, v in limits.items() if k in ACCELERATOR_LIMIT.values()}
    if pool.ray_accelerator_type is None:
        assert devices == {}
    else:
        vendor = accelerator_vendor(pool.accelerator)
        assert devices == {ACCELERATOR_LIMIT[vendor]: pool.accelerators_per_node}
        tolerated = {t["key"] for t in group["template"]["spec"].get("tolerations", [])}
        assert ACCELERATOR_LIMIT[vendor] in tolerated


def test_the_head_runs_no_tiles_and_keeps_its_dashboard_on_the_pod(manifest: list[Doc]) -> None:
    head = ray_cluster(manifest)["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"


def test_every_ray_node_and_the_farm_server_use_the_cluster_token(manifest: list[Doc]) -> None:
    spec = ray_cluster(manifest)["spec"]
    pods = [spec["headGroupSpec"]["template"]]
    pods += [g["template"] for g in spec["workerGroupSpecs"]]
    pods.append(only(manifest, "Deployment")["spec"]["template"])
    secrets = set()
    for pod in pods:
        found = env(container(pod))
        assert found["RAY_AUTH_MODE"] == "token"
        ref = found["RAY_AUTH_TOKEN"]["secretKeyRef"]
        secrets.add((ref["name"], ref["key"]))
    assert secrets == {("delta-ray-auth", "auth_token")}  # KubeRay's key name for the token


def test_every_container_runs_the_same_farm_image(manifest: list[Doc]) -> None:
    spec = ray_cluster(manifest)["spec"]
    pods = [spec["headGroupSpec"]["template"], only(manifest, "Deployment")["spec"]["template"]]
    pods += [g["template"] for g in spec["workerGroupSpecs"]]
    images = {c["image"] for pod in pods for c in pod["spec"]["containers"]}
    assert len(images) == 1, images


def test_the_farm_server_joins_the_head_with_a_shared_farm_home(manifest: list[Doc]) -> None:
    cluster = ray_cluster(manifest)
    head = f"{cluster['metadata']['name']}-head-svc:6379"  # KubeRay's head service
    server = only(manifest, "Deployment")
    assert server["spec"]["replicas"] == 1  # one dispatcher
    assert server["spec"]["strategy"]["type"] == "Recreate"
    main = container(server["spec"]["template"])
    script = " ".join(main["args"])
    # A Ray driver needs a local Ray node: one without CPUs or pool, started before the server.
    ray_start = script.index(f"ray start --address={head} --num-cpus=0")
    assert ray_start < script.index(f"farm server --host 0.0.0.0 --port 8765 --ray-address {head}")
    found = env(main)
    assert found["FARM_DATABASE_URL"]["secretKeyRef"]["name"] == "delta-farm-db"
    mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
    volumes = {v["name"]: v for v in server["spec"]["template"]["spec"]["volumes"]}
    assert mounts["farm-home"] == found["FARM_HOME"]
    claim = volumes["farm-home"]["persistentVolumeClaim"]["claimName"]
    for group in cluster["spec"]["workerGroupSpecs"]:
        worker = container(group["template"])
        assert env(worker)["FARM_HOME"] == found["FARM_HOME"]
        assert {"name": "farm-home", "mountPath": found["FARM_HOME"]} in worker["volumeMounts"]
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in group["template"]["spec"]["volumes"]
        }
        assert claims["farm-home"] == claim
    pvc = only(manifest, "PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == claim
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]

    service = only(manifest, "Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == server["spec"]["template"]["metadata"]["labels"]
    assert [p["port"] for p in service["spec"]["ports"]] == [8765]


def test_ray_takes_traffic_only_from_its_own_pods_and_the_farm_server(
    manifest: list[Doc],
) -> None:
    cluster_pods = {"ray.io/cluster": ray_cluster(manifest)["metadata"]["name"]}
    server_pods = only(manifest, "Deployment")["spec"]["template"]["metadata"]["labels"]
    policies = {
        json.dumps(p["spec"]["podSelector"]["matchLabels"], sort_keys=True): p["spec"]
        for p in manifest
        if p["kind"] == "NetworkPolicy"
    }
    ray = policies[json.dumps(cluster_pods, sort_keys=True)]
    assert "Ingress" in ray["policyTypes"]
    allowed = [peer for rule in ray["ingress"] for peer in rule["from"]]
    assert allowed == [
        {"podSelector": {"matchLabels": cluster_pods}},
        {"podSelector": {"matchLabels": server_pods}},
    ]

    # The server's pod is a Ray node too: only its API port is open beyond the Ray cluster.
    server = policies[json.dumps(server_pods, sort_keys=True)]
    assert "Ingress" in server["policyTypes"]
    for rule in server["ingress"]:
        if "from" in rule:
            assert rule["from"] == [{"podSelector": {"matchLabels": cluster_pods}}]
        else:
            assert rule["ports"] == [{"port": 8765, "protocol": "TCP"}]
