"""Phase 4 on the real node, with examples/laptop.yaml's sizes: the gateway in front of
the user-service and the data-service, Kafka's three KRaft brokers and their consumer,
the Prometheus that manifests/ installs scraping every exporter, and a canary analysed
on the app's real metrics through it.

One plan serves every test of the module (phase 4 takes minutes to come up on two
cores); the tests run in file order, and each leaves the topology whole for the next.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from phaseshift.api import GROUP, PLURAL
from phaseshift.lab.cluster import Kubectl, LocalCluster, load_images
from phaseshift.lab.monitoring import install_prometheus
from phaseshift.lab.operator_process import OperatorProcess
from phaseshift.lab.realshop import (
    PLAN,
    app_metric,
    apply_plan,
    get,
    laptop_sizes,
    phase_images,
    pinned_plan,
    pod_metric,
    pods,
    request,
    served,
    service_url,
    settled,
)
from phaseshift.lab.wait import wait_for

pytestmark = pytest.mark.integration

WORKLOADS = (
    "statefulset/shop-postgres",
    "statefulset/shop-postgres-replica",
    "statefulset/shop-redis-cluster",
    "statefulset/shop-kafka",
    "statefulset/shop-cassandra",
    "deployment/shop-gateway",
    "deployment/shop-user-service",
    "deployment/shop-data-service",
    "deployment/shop-event-consumer",
)
# Quick checks, so a test sees a release through in minutes; lenient latency, since two
# cores also run three brokers, Cassandra and the Redis Cluster.
CANARY = {
    "intervalSeconds": 20,
    "iterations": 2,
    "threshold": 3,
    "weightPercent": 50,
    "maxP95LatencySeconds": 5,
}


class Shop:
    def __init__(self, namespace: str, prometheus: str) -> None:
        self.namespace = namespace
        self.prometheus = prometheus


@pytest.fixture(scope="module")
def shop(
    cluster: LocalCluster, kubectl: Kubectl, module_namespace: str, module_operator: OperatorProcess
) -> Iterator[Shop]:
    """Phase 4 settled, every workload rolled out, and Prometheus installed from
    manifests/ as the plan's metrics source."""
    namespace = module_namespace
    prometheus = install_prometheus(cluster)
    load_images(
        cluster,
        phase_images(
            "app", "postgres", "postgres-exporter", "redis", "redis-exporter", "rabbitmq",
            "nginx", "kafka", "cassandra",
        ),
    )  # fmt: skip
    body = pinned_plan(4, **laptop_sizes())
    body["spec"]["metrics"] = {"prometheusUrl": prometheus}
    body["spec"]["rollout"] = {"canary": CANARY}
    apply_plan(kubectl, namespace, body)
    wait_for(lambda: settled(kubectl, namespace, 4), timeout=1200, poll=3, what="phase 4 to settle")
    for workload in WORKLOADS:
        kubectl("-n", namespace, "rollout", "status", workload, "--timeout=600s")
    yield Shop(namespace, prometheus)


def query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as response:
        return list(json.load(response)["data"]["result"])


def test_the_gateway_routes_users_and_items_to_their_services(kubectl: Kubectl, shop: Shop) -> None:
    namespace = shop.namespace
    gateway = service_url(kubectl, namespace, f"{PLAN}-gateway")
    served(gateway)
    users = service_url(kubectl, namespace, f"{PLAN}-user-service")
    data = service_url(kubectl, namespace, f"{PLAN}-data-service")
    users_before = app_metric(users, "http_requests_total", route="/users")
    items_before = app_metric(data, "http_requests_total", route="/items")

    user = request("POST", f"{gateway}/users", {"name": "Ada", "email": "ada@example.com"})
    item = request("POST", f"{gateway}/items", {"owner": user["id"], "name": "loom"})
    assert request("GET", f"{gateway}/users/{user['id']}")["email"] == "ada@example.com"
    assert request("GET", f"{gateway}/items/{item['id']}")["name"] == "loom"

    # Each request reached the service that owns it, and only that one.
    assert app_metric(users, "http_requests_total", route="/users") == users_before + 1
    assert app_metric(data, "http_requests_total", route="/items") == items_before + 1
    assert app_metric(users, "http_requests_total", route="/items") == 0


def kafka(kubectl: Kubectl, namespace: str, pod: str, script: str, *args: str) -> str:
    return str(
        kubectl(
            "-n", namespace, "exec", pod, "-c", "kafka", "--",
            f"/opt/kafka/bin/{script}", "--bootstrap-server", "localhost:9092", *args,
        ).stdout
    )  # fmt: skip


def in_sync_replicas(kubectl: Kubectl, namespace: str, pod: str) -> list[int]:
    """The in-sync replicas of each partition of the app's topic, as counts."""
    text = kafka(kubectl, namespace, pod, "kafka-topics.sh", "--describe", "--topic", TOPIC)
    return [
        len(line.split("Isr:")[1].split()[0].split(","))
        for line in text.splitlines()
        if "Isr:" in line
    ]


TOPIC = "phaseshift.events"


def test_kafka_runs_three_kraft_brokers_and_an_event_survives_the_loss_of_one(
    kubectl: Kubectl, shop: Shop
) -> None:
    namespace = shop.namespace
    brokers = pods(kubectl, namespace, "kafka")
    assert len(brokers) == 3
    quorum = kafka(
        kubectl, namespace, brokers[0], "kafka-metadata-quorum.sh", "describe", "--status"
    )
    voters = next(line for line in quorum.splitlines() if line.startswith("CurrentVoters"))
    assert voters.count('"id"') == 3, quorum

    gateway = service_url(kubectl, namespace, f"{PLAN}-gateway")
    consumer = pods(kubectl, namespace, "event-consumer")[0]
    request("POST", f"{gateway}/users", {"name": "Barbara", "email": "barbara@example.com"})
    described = kafka(
        kubectl, namespace, brokers[0], "kafka-topics.sh", "--describe", "--topic", TOPIC
    )
    assert "ReplicationFactor: 3" in described, described
    assert in_sync_replicas(kubectl, namespace, brokers[0]) and all(
        n == 3 for n in in_sync_replicas(kubectl, namespace, brokers[0])
    )

    def consumed() -> float:
        # Read through the API server's proxy: the consumer has no Service.
        count = pod_metric(
            kubectl, namespace, consumer, 8080, "events_consumed_total", type="user_created"
        )
        return count or 0.0

    before = consumed()
    # One broker gone: the two left are a KRaft majority and min.insync.replicas.
    lost = f"{PLAN}-kafka-2"
    kubectl("-n", namespace, "delete", "pod", lost, "--wait=false")
    written = [
        request("POST", f"{gateway}/users", {"name": f"n{i}", "email": f"n{i}@example.com"})
        for i in range(5)
    ]
    assert len(written) == 5
    wait_for(
        lambda: consumed() >= before + 5,
        timeout=180,
        poll=2,
        what="the consumer to receive the events written while a broker was away",
    )
    kubectl("-n", namespace, "rollout", "status", "statefulset/shop-kafka", "--timeout=300s")
    wait_for(
        lambda: all(n == 3 for n in in_sync_replicas(kubectl, namespace, brokers[0])),
        timeout=300,
        poll=5,
        what=f"{lost} to catch up and rejoin every partition's in-sync replicas",
    )


def test_the_consumer_keeps_each_users_activity_feed_in_cassandra(
    kubectl: Kubectl, shop: Shop
) -> None:
    """What the NoSQL store is for here: the event consumer writes a per-user read model
    into Cassandra from Kafka, and the data-service serves it through the gateway."""
    namespace = shop.namespace
    gateway = service_url(kubectl, namespace, f"{PLAN}-gateway")
    consumer = pods(kubectl, namespace, "event-consumer")[0]
    written_before = pod_metric(kubectl, namespace, consumer, 8080, "feed_writes_total") or 0
    user = request("POST", f"{gateway}/users", {"name": "Edsger", "email": "edsger@example.com"})
    first = request("POST", f"{gateway}/items", {"owner": user["id"], "name": "pen"})
    second = request("POST", f"{gateway}/items", {"owner": user["id"], "name": "ink"})

    def feed() -> list[dict[str, Any]]:
        return list(request("GET", f"{gateway}/users/{user['id']}/activity")["activity"])

    wait_for(
        lambda: len(feed()) == 3,
        timeout=180,
        poll=2,
        what="the user's three events in the activity feed",
        retry_on=(OSError,),
    )
    # Newest first: the feed is one Cassandra partition read in clustering order.
    assert [entry["id"] for entry in feed()] == [second["id"], first["id"], user["id"]]
    assert [entry["type"] for entry in feed()] == ["item_created", "item_created", "user_created"]
    latest = request("GET", f"{gateway}/users/{user['id']}/activity?limit=1")["activity"]
    assert [entry["id"] for entry in latest] == [second["id"]]
    # The rows came from the consumer's writes to the cluster's Cassandra.
    written = pod_metric(kubectl, namespace, consumer, 8080, "feed_writes_total") or 0
    assert written >= written_before + 3
    node = pods(kubectl, namespace, "cassandra")[0]
    tables = kubectl(
        "-n", namespace, "exec", node, "-c", "cassandra", "--",
        "nodetool", "tablestats", "phaseshift.activity_by_user",
    ).stdout  # fmt: skip
    assert "activity_by_user" in tables, tables


def test_the_prometheus_of_the_manifests_scrapes_the_app_and_every_exporter(
    kubectl: Kubectl, shop: Shop
) -> None:
    namespace = shop.namespace
    expected = {
        f"{PLAN}-postgres-0",
        f"{PLAN}-postgres-replica-0",
        *pods(kubectl, namespace, "redis-cluster"),
        *pods(kubectl, namespace, "rabbitmq"),
        *pods(kubectl, namespace, "gateway"),
        *pods(kubectl, namespace, "user-service"),
        *pods(kubectl, namespace, "data-service"),
        *pods(kubectl, namespace, "event-consumer"),
        *pods(kubectl, namespace, "kafka"),
        *pods(kubectl, namespace, "cassandra"),
    }

    def scraped() -> set[str]:
        series = query(shop.prometheus, f'up{{namespace="{namespace}"}} == 1')
        return {s["metric"].get("pod", "") for s in series}

    wait_for(
        lambda: expected <= scraped(),
        timeout=120,
        poll=5,
        what=f"Prometheus to scrape {sorted(expected)}",
    )
    # The exporters' own series are there, labelled with the plan.
    for metric in ("pg_up", "redis_up", "pg_standby_is_replica", "rabbitmq_identity_info"):
        series = query(shop.prometheus, f'{metric}{{namespace="{namespace}"}}')
        assert series, metric

    # Kafka's and Cassandra's MBeans, through the JMX exporter: the brokers agree on one
    # active controller, no partition stays under-replicated once the broker the Kafka
    # test deleted has caught up, and the feed's writes are counted.
    def value(promql: str) -> float | None:
        series = query(shop.prometheus, promql)
        return float(series[0]["value"][1]) if series else None

    selector = f'namespace="{namespace}"'
    checks = {
        "active controllers": (
            f'sum(kafka_controller_kafkacontroller_value{{{selector},name="ActiveControllerCount"}})',
            lambda v: v == 1,
        ),
        "brokers reporting under-replicated partitions": (
            f'count(kafka_server_replicamanager_value{{{selector},name="UnderReplicatedPartitions"}})',
            lambda v: v == 3,
        ),
        "under-replicated partitions": (
            f'sum(kafka_server_replicamanager_value{{{selector},name="UnderReplicatedPartitions"}})',
            lambda v: v == 0,
        ),
        "Cassandra writes": (
            f'sum(org_apache_cassandra_metrics_clientrequest_count{{{selector},scope="Write",name="Latency"}})',
            lambda v: v > 0,
        ),
    }

    def failing() -> dict[str, float | None]:
        values = {what: value(promql) for what, (promql, _) in checks.items()}
        return {w: v for w, v in values.items() if v is None or not checks[w][1](v)}

    wait_for(
        failing,
        until=lambda failed: not failed,
        timeout=180,
        poll=5,
        what="the JVM tiers' metrics to read as expected",
    )
    # The app's series carry `track`, which the canary analysis selects by.
    tracks = query(
        shop.prometheus,
        f'count by (track) (http_requests_total{{namespace="{namespace}",plan="{PLAN}"}})',
    )
    assert {s["metric"].get("track") for s in tracks} >= {"stable"}


def events(kubectl: Kubectl, namespace: str, reason: str) -> list[str]:
    listed = json.loads(
        kubectl(
            "-n", namespace, "get", "events",
            "--field-selector", f"reason={reason},involvedObject.name={PLAN}",
            "-o", "json",
        ).stdout
    )  # fmt: skip
    return [e["message"] for e in listed["items"]]


def test_a_canary_is_analysed_on_real_metrics_and_promoted(kubectl: Kubectl, shop: Shop) -> None:
    namespace = shop.namespace
    gateway = service_url(kubectl, namespace, f"{PLAN}-gateway")
    user = request("POST", f"{gateway}/users", {"name": "Grace", "email": "grace@example.com"})
    plan = get(kubectl, namespace, f"{PLURAL}.{GROUP}", PLAN)
    revision = plan["status"]["release"]["revision"]

    stop = threading.Event()

    def traffic() -> None:
        # Both tracks need requests for the analysis to have a rate to read.
        while not stop.is_set():
            try:
                request("GET", f"{gateway}/users/{user['id']}")
                request("GET", f"{gateway}/items?owner={user['id']}")
            except OSError:
                pass
            stop.wait(0.05)

    driver = threading.Thread(target=traffic, daemon=True)
    driver.start()
    try:
        env = [*(plan["spec"]["app"].get("env") or []), {"name": "RELEASE", "value": "2"}]
        kubectl(
            "-n", namespace, "patch", f"{PLURAL}.{GROUP}", PLAN, "--type=merge",
            "-p", json.dumps({"spec": {"app": {"env": env}}}),
        )  # fmt: skip

        def released() -> bool:
            status = get(kubectl, namespace, f"{PLURAL}.{GROUP}", PLAN)["status"]
            rollout = status.get("rollout") or {}
            assert rollout.get("state") != "RolledBack", rollout
            return status["release"]["revision"] != revision and rollout.get("state") == "Succeeded"

        wait_for(released, timeout=600, poll=3, what="the canary to be analysed and promoted")
    finally:
        stop.set()
        driver.join()
    passed = events(kubectl, namespace, "CanaryCheckPassed")
    # Each check read a real error rate and p95 from Prometheus: numbers, never "n/a".
    assert len(passed) >= CANARY["iterations"], passed
    assert all("n/a" not in m and "unavailable" not in m for m in passed), passed
    assert events(kubectl, namespace, "CanaryPromoted")
    assert not events(kubectl, namespace, "CanaryCheckFailed")
    for name in ("gateway", "user-service", "data-service"):
        deployment = get(kubectl, namespace, "deployment", f"{PLAN}-{name}")
        env_names = {
            e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert "RELEASE" in env_names, name
    assert app_metric(gateway, "http_requests_total") > 0
