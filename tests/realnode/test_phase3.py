"""Phase 3 on the real node, with examples/laptop.yaml's sizes: three app replicas behind
the edge, the Redis Cluster, RabbitMQ's three nodes and the workers, each checked by
what it does.

One plan serves every test of the module (phase 3 takes minutes to come up on two
cores); the tests run in file order, and each leaves the topology whole for the next.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from phaseshift.lab.cluster import Kubectl, LocalCluster, load_images
from phaseshift.lab.operator_process import OperatorProcess
from phaseshift.lab.realshop import (
    PLAN,
    apply_plan,
    delete_pods,
    get,
    laptop_sizes,
    phase_images,
    pinned_plan,
    pods,
    psql,
    request,
    served,
    service_url,
    settled,
)
from phaseshift.lab.wait import wait_for

pytestmark = pytest.mark.integration
SHARDS = 2

WORKLOADS = (
    "statefulset/shop-postgres",
    "statefulset/shop-postgres-replica",
    "statefulset/shop-postgres-shard",
    "statefulset/shop-redis-cluster",
    "statefulset/shop-rabbitmq",
    "deployment/shop-app",
    "deployment/shop-worker",
    "deployment/shop-edge",
)


@pytest.fixture(scope="module")
def shop(
    cluster: LocalCluster, kubectl: Kubectl, module_namespace: str, module_operator: OperatorProcess
) -> Iterator[str]:
    """Phase 3 settled and every workload rolled out; yields the namespace."""
    namespace = module_namespace
    load_images(
        cluster,
        phase_images(
            "app", "postgres", "postgres-exporter", "redis", "redis-exporter", "rabbitmq", "nginx"
        ),
    )
    # Users reach the shop through a NodePort, as on a laptop's kind cluster.
    sizes = laptop_sizes()
    # Users and their items hash-sharded across two PostgreSQL primaries.
    for override in sizes["overrides"]:
        if override["phase"] == 3:
            override["shards"] = SHARDS
    apply_plan(kubectl, namespace, pinned_plan(3, exposure={"type": "NodePort"}, **sizes))
    wait_for(lambda: settled(kubectl, namespace, 3), timeout=900, poll=2, what="phase 3 to settle")
    for workload in WORKLOADS:
        kubectl("-n", namespace, "rollout", "status", workload, "--timeout=600s")
    yield namespace


def test_shards_hold_the_users_between_them_and_the_app_reads_each_back(
    kubectl: Kubectl, shop: str
) -> None:
    namespace = shop
    url = service_url(kubectl, namespace, f"{PLAN}-app")
    written = [
        request("POST", f"{url}/users", {"name": "S", "email": f"shard{i}@example.com"})["id"]
        for i in range(24)
    ]
    counts = [
        int(
            psql(
                kubectl, namespace, f"{PLAN}-postgres-shard-{i}",
                "SELECT count(*) FROM users WHERE email LIKE 'shard%'",
            )
        )
        for i in range(SHARDS)
    ]  # fmt: skip
    assert sum(counts) == len(written) and all(counts), counts
    # The unsharded primary holds no user at all: the app made its tables on the shards.
    tables = psql(
        kubectl, namespace, f"{PLAN}-postgres-0",
        "SELECT count(*) FROM pg_tables WHERE tablename = 'users'",
    )  # fmt: skip
    assert tables == "0"
    for user in written:
        assert request("GET", f"{url}/users/{user}")["id"] == user


def redis_cluster_info(kubectl: Kubectl, namespace: str, pod: str) -> dict[str, str]:
    text = kubectl(
        "-n", namespace, "exec", pod, "-c", "redis", "--", "redis-cli", "cluster", "info"
    ).stdout
    return dict(line.strip().split(":", 1) for line in text.splitlines() if ":" in line)


def redis_cluster_ok(kubectl: Kubectl, namespace: str) -> bool:
    """Every node sees the cluster whole: state ok, six nodes known, all slots served."""
    nodes = pods(kubectl, namespace, "redis-cluster")
    if len(nodes) != 6:
        return False
    for pod in nodes:
        try:
            info = redis_cluster_info(kubectl, namespace, pod)
        except Exception:  # a pod still starting refuses exec
            return False
        if (
            info.get("cluster_state") != "ok"
            or info.get("cluster_known_nodes") != "6"
            or info.get("cluster_slots_ok") != "16384"
        ):
            return False
    return True


def rabbitmqctl(kubectl: Kubectl, namespace: str, *args: str, pod: str = "shop-rabbitmq-0") -> Any:
    out = kubectl(
        "-n", namespace, "exec", pod, "-c", "rabbitmq", "--",
        *args, "--formatter", "json",
    ).stdout  # fmt: skip
    return json.loads(out)


def running_rabbitmq_nodes(kubectl: Kubectl, namespace: str, pod: str) -> list[str]:
    status = rabbitmqctl(kubectl, namespace, "rabbitmqctl", "cluster_status", pod=pod)
    return sorted(status["running_nodes"])


def test_three_app_replicas_behind_the_service_with_an_hpa_on_real_cpu_and_a_pdb(
    kubectl: Kubectl, shop: str
) -> None:
    namespace = shop
    app_pods = pods(kubectl, namespace, "app")
    assert len(app_pods) >= 3, app_pods
    endpoints = json.loads(
        kubectl(
            "-n", namespace, "get", "endpointslices",
            "-l", f"kubernetes.io/service-name={PLAN}-app", "-o", "json",
        ).stdout
    )  # fmt: skip
    ready = {
        e["targetRef"]["name"]
        for s in endpoints["items"]
        for e in s.get("endpoints") or []
        if e.get("conditions", {}).get("ready")
    }
    assert len(ready) >= 3 and ready <= set(app_pods), (ready, app_pods)

    hpa = get(kubectl, namespace, "hpa", f"{PLAN}-app")
    behavior = hpa["spec"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] > 0
    assert behavior["scaleDown"]["policies"] and behavior["scaleUp"]["policies"]

    # metrics-server's CPU reaches the HPA: its status carries a measured utilisation.
    def measured() -> int | None:
        metrics = get(kubectl, namespace, "hpa", f"{PLAN}-app")["status"].get("currentMetrics")
        for metric in metrics or []:
            current = metric.get("resource", {}).get("current", {})
            if "averageUtilization" in current:
                return int(current["averageUtilization"])
        return None

    assert wait_for(measured, timeout=180, poll=5, what="the HPA to read CPU") >= 0

    # The budget lets one app pod go at a time, counted over the pods the HPA runs.
    def budget() -> dict[str, Any] | None:
        status = get(kubectl, namespace, "pdb", f"{PLAN}-app").get("status") or {}
        return status if status.get("expectedPods", 0) >= 3 else None

    status = wait_for(budget, timeout=60, poll=2, what="the app's PDB to count its pods")
    assert status["disruptionsAllowed"] == 1


def test_the_edge_is_on_the_traffic_path_and_caches_static_content(
    kubectl: Kubectl, shop: str
) -> None:
    namespace = shop
    # The plan's exposure (a NodePort) sends users to the edge from phase 3.
    public = get(kubectl, namespace, "service", f"{PLAN}-public")
    assert public["spec"]["selector"]["phaseshift.dev/workload"] == "edge"
    node = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"][0]
    address = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    edge = f"http://{address}:{public['spec']['ports'][0]['nodePort']}"
    served(edge)

    def fetch(path: str) -> tuple[str | None, bytes]:
        with urllib.request.urlopen(f"{edge}{path}", timeout=10) as response:
            return response.headers.get("X-Cache-Status"), response.read()

    first, body = fetch("/static/style.css")
    assert first in ("MISS", "EXPIRED")
    # nginx files the response into its cache as it finishes it: a request right on its
    # heels may still miss.
    _, again = wait_for(
        lambda: fetch("/static/style.css"),
        until=lambda answer: answer[0] == "HIT",
        timeout=10,
        poll=0.2,
        what="the edge to answer from its cache",
    )
    assert body == again and body
    # Dynamic requests pass through the edge to the app, uncached.
    user = request("POST", f"{edge}/users", {"name": "Ada", "email": "ada@example.com"})
    assert request("GET", f"{edge}/users/{user['id']}")["email"] == "ada@example.com"


def test_the_redis_cluster_forms_and_forms_again_after_all_its_pods_are_deleted(
    kubectl: Kubectl, shop: str
) -> None:
    namespace = shop
    # The StatefulSet rolls out before its bootstrap has assigned every slot.
    wait_for(
        lambda: redis_cluster_ok(kubectl, namespace),
        timeout=300,
        poll=3,
        what="the Redis Cluster to form with six nodes",
    )
    url = service_url(kubectl, namespace, f"{PLAN}-app")
    user = request("POST", f"{url}/users", {"name": "Barbara", "email": "barbara@example.com"})

    delete_pods(
        kubectl,
        namespace,
        "-l",
        f"phaseshift.dev/plan={PLAN},phaseshift.dev/workload=redis-cluster",
    )
    kubectl(
        "-n", namespace, "rollout", "status", "statefulset/shop-redis-cluster", "--timeout=300s"
    )
    wait_for(
        lambda: redis_cluster_ok(kubectl, namespace),
        timeout=180,
        poll=3,
        what="the Redis Cluster to form again with six nodes",
    )

    # The app reads through the re-formed cluster and caches there again, once its client
    # has found the nodes at their new addresses (until then it serves from PostgreSQL).
    def cached_keys() -> int:
        assert request("GET", f"{url}/users/{user['id']}")["name"] == "Barbara"
        return sum(
            int(
                kubectl(
                    "-n", namespace, "exec", pod, "-c", "redis", "--", "redis-cli", "dbsize"
                ).stdout.strip()
            )
            for pod in pods(kubectl, namespace, "redis-cluster")
        )  # fmt: skip

    wait_for(
        cached_keys,
        until=lambda keys: keys > 0,
        retry_on=(OSError,),
        timeout=180,
        poll=2,
        what="the app to cache in the re-formed cluster",
    )


def test_rabbitmq_forms_one_cluster_and_jobs_survive_the_loss_of_a_node(
    kubectl: Kubectl, shop: str
) -> None:
    namespace = shop
    expected = [f"rabbit@shop-rabbitmq-{i}.shop-rabbitmq-hl" for i in range(3)]
    assert running_rabbitmq_nodes(kubectl, namespace, "shop-rabbitmq-0") == sorted(expected)

    url = service_url(kubectl, namespace, f"{PLAN}-app")
    user = request("POST", f"{url}/users", {"name": "Edsger", "email": "edsger@example.com"})
    request("POST", f"{url}/items", {"owner": user["id"], "name": "pen", "price_cents": 100})
    # The worker consumed the job: the user's derived count is the worker's.
    wait_for(
        lambda: request("GET", f"{url}/users/{user['id']}")["item_count"] == 1,
        timeout=120,
        poll=1,
        what="the worker to count the item",
    )
    queues = rabbitmqctl(
        kubectl, namespace, "rabbitmqctl", "list_queues", "name", "type", "members"
    )
    jobs = next(q for q in queues if q["name"] == "phaseshift.jobs")
    assert jobs["type"] == "quorum"
    assert len(jobs["members"]) == 3

    # One node goes; the queue keeps a majority, so jobs are still accepted and consumed.
    delete_pods(kubectl, namespace, "shop-rabbitmq-2")
    for name in ("ink", "paper"):
        request("POST", f"{url}/items", {"owner": user["id"], "name": name, "price_cents": 5})
    wait_for(
        lambda: request("GET", f"{url}/users/{user['id']}")["item_count"] == 3,
        timeout=180,
        poll=1,
        what="the worker to count the items published while a node was down",
    )
    kubectl("-n", namespace, "rollout", "status", "statefulset/shop-rabbitmq", "--timeout=300s")
    wait_for(
        lambda: running_rabbitmq_nodes(kubectl, namespace, "shop-rabbitmq-2") == sorted(expected),
        timeout=180,
        poll=3,
        what="the returning node to rejoin the cluster",
    )
