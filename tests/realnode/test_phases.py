"""Each phase's topology doing its job on the real node, checked by behaviour, not by Ready.

The operator runs as a process against the real node's cluster with the image table
that maps every component to the images built here (`images.component_images`), and a
plan pinned to one phase by minPhase/maxPhase (rule 3 of the policy moves it there
without any metrics). Sizes come from examples/laptop.yaml where a phase needs them.
"""

from __future__ import annotations

import json

import pytest

from phaseshift.lab.cluster import Kubectl, LocalCluster, load_images
from phaseshift.lab.operator_process import OperatorProcess
from phaseshift.lab.realshop import (
    PLAN,
    app_metric,
    apply_plan,
    delete_pods,
    laptop_sizes,
    phase_images,
    pinned_plan,
    pod_metric,
    psql,
    request,
    served,
    service_url,
    settled,
)
from phaseshift.lab.wait import wait_for
from phaseshift.render.postgres import EXPORTER_PORT

pytestmark = pytest.mark.integration


def test_phase_1_serves_crud_from_sqlite_and_keeps_its_data_across_a_pod_deletion(
    cluster: LocalCluster, kubectl: Kubectl, namespace: str, operator: OperatorProcess
) -> None:
    load_images(cluster, phase_images("app"))
    apply_plan(kubectl, namespace, pinned_plan(1))
    wait_for(lambda: settled(kubectl, namespace, 1), timeout=180, poll=1, what="phase 1 to settle")
    kubectl("-n", namespace, "rollout", "status", f"deployment/{PLAN}-app", "--timeout=180s")
    url = service_url(kubectl, namespace, f"{PLAN}-app")
    served(url)

    user = request("POST", f"{url}/users", {"name": "Grace", "email": "grace@example.com"})
    item = request(
        "POST", f"{url}/items", {"owner": user["id"], "name": "lamp", "price_cents": 1999}
    )
    assert request("GET", f"{url}/items/{item['id']}")["name"] == "lamp"

    # The monolith's database is the SQLite file on its PersistentVolumeClaim.
    pod = kubectl(
        "-n",
        namespace,
        "get",
        "pods",
        "-l",
        f"phaseshift.dev/plan={PLAN},phaseshift.dev/workload=app",
        "-o",
        "name",
    ).stdout.split()
    assert len(pod) == 1
    files = kubectl("-n", namespace, "exec", pod[0], "--", "sh", "-c", "ls /data").stdout.split()
    assert any(name.endswith(".db") for name in files), files

    delete_pods(kubectl, namespace, pod[0].removeprefix("pod/"))
    kubectl("-n", namespace, "rollout", "status", f"deployment/{PLAN}-app", "--timeout=180s")
    again = wait_for(
        lambda: request("GET", f"{url}/users/{user['id']}"),
        retry_on=(OSError,),
        timeout=120,
        poll=1,
        what="the new pod to serve",
    )
    assert again["email"] == "grace@example.com"
    assert request("GET", f"{url}/items/{item['id']}")["price_cents"] == 1999


def test_phase_2_replicates_to_its_read_replica_and_caches_in_redis(
    cluster: LocalCluster, kubectl: Kubectl, namespace: str, operator: OperatorProcess
) -> None:
    load_images(
        cluster, phase_images("app", "postgres", "postgres-exporter", "redis", "redis-exporter")
    )
    apply_plan(kubectl, namespace, pinned_plan(2, **laptop_sizes()))
    status = wait_for(
        lambda: settled(kubectl, namespace, 2), timeout=420, poll=2, what="phase 2 to settle"
    )
    colour = status.get("liveColour", "blue")
    for workload in (
        "statefulset/shop-postgres",
        "statefulset/shop-postgres-replica",
        "deployment/shop-redis",
        f"deployment/shop-app-{colour}",
    ):
        kubectl("-n", namespace, "rollout", "status", workload, "--timeout=300s")
    url = service_url(kubectl, namespace, f"{PLAN}-app")
    served(url)

    user = request("POST", f"{url}/users", {"name": "Linus", "email": "linus@example.com"})
    # The row reaches the replica by streaming replication.
    replica = f"{PLAN}-postgres-replica-0"
    wait_for(
        lambda: (
            psql(kubectl, namespace, replica, f"select email from users where id = '{user['id']}'")
            == "linus@example.com"
        ),
        timeout=60,
        poll=1,
        what="the row on the read replica",
    )
    assert psql(kubectl, namespace, replica, "select pg_is_in_recovery()") == "t"
    senders = psql(
        kubectl, namespace, f"{PLAN}-postgres-0", "select state from pg_stat_replication"
    )
    assert "streaming" in senders.split()
    # The exporter beside the replica exports its lag; streaming, it stays small.
    wait_for(
        lambda: pod_metric(kubectl, namespace, replica, EXPORTER_PORT, "pg_standby_streaming") == 1,
        timeout=120,
        poll=2,
        what="the replica's exporter to report it streaming",
    )
    lag = pod_metric(kubectl, namespace, replica, EXPORTER_PORT, "pg_standby_lag_seconds")
    assert lag is not None and lag >= 0
    assert pod_metric(kubectl, namespace, replica, EXPORTER_PORT, "pg_standby_is_replica") == 1

    # Repeated reads are served from Redis: the app counts hits, Redis counts keyspace hits.
    before = app_metric(url, "cache_hits_total")
    for _ in range(3):
        assert request("GET", f"{url}/users/{user['id']}")["name"] == "Linus"
    assert app_metric(url, "cache_hits_total") > before
    redis_pod = kubectl(
        "-n",
        namespace,
        "get",
        "pods",
        "-l",
        f"phaseshift.dev/plan={PLAN},phaseshift.dev/workload=redis",
        "-o",
        "name",
    ).stdout.split()[0]
    stats = kubectl(
        "-n", namespace, "exec", redis_pod, "-c", "redis", "--", "redis-cli", "info", "stats"
    ).stdout
    hits = int(
        next(line.split(":")[1] for line in stats.splitlines() if line.startswith("keyspace_hits:"))
    )
    assert hits > 0

    # The Service sends traffic to the live colour only.
    service = json.loads(
        kubectl("-n", namespace, "get", "service", f"{PLAN}-app", "-o", "json").stdout
    )
    assert service["spec"]["selector"]["phaseshift.dev/colour"] == colour
    endpoints = json.loads(
        kubectl(
            "-n",
            namespace,
            "get",
            "endpointslices",
            "-l",
            f"kubernetes.io/service-name={PLAN}-app",
            "-o",
            "json",
        ).stdout
    )
    pods = {e["targetRef"]["name"] for s in endpoints["items"] for e in s.get("endpoints") or []}
    assert pods and all(p.startswith(f"{PLAN}-app-{colour}-") for p in pods), pods
