"""spec.overrides[].components reaches every size and count the builders render."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from render_helpers import containers, env_of, find

from phaseshift.api import InvalidSpec, parse_plan
from phaseshift.catalog import COMPONENT_SIZES, STORAGE
from phaseshift.render import jmx


def _override(phase: int, **components: Any) -> list[dict[str, Any]]:
    return [{"phase": phase, "components": components}]


def _res(cpu: str, memory: str, cpu_limit: str | None = None, memory_limit: str | None = None):
    resources: dict[str, Any] = {"requests": {"cpu": cpu, "memory": memory}}
    if cpu_limit or memory_limit:
        resources["limits"] = {
            k: v for k, v in (("cpu", cpu_limit), ("memory", memory_limit)) if v is not None
        }
    return resources


def _container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    (match,) = [c for c in containers(workload) if c["name"] == name]
    return match


def _claim_size(statefulset: dict[str, Any]) -> str:
    (template,) = statefulset["spec"]["volumeClaimTemplates"]
    return str(template["spec"]["resources"]["requests"]["storage"])


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_without_components_every_builder_keeps_the_catalog(render) -> None:
    objects = render(4)
    pg = find(objects, "StatefulSet", "shop-postgres")
    assert _container(pg, "postgres")["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert _claim_size(pg) == STORAGE["postgres"]
    kafka = find(objects, "StatefulSet", "shop-kafka")
    assert env_of(containers(kafka)[0])["KAFKA_HEAP_OPTS"] == "-Xms1g -Xmx1g"
    cassandra = env_of(containers(find(objects, "StatefulSet", "shop-cassandra"))[0])
    assert (cassandra["MAX_HEAP_SIZE"], cassandra["HEAP_NEWSIZE"]) == ("2G", "400M")
    assert find(objects, "Deployment", "shop-edge")["spec"]["replicas"] == 2


def test_postgres_primary_replicas_and_storage(render, make_plan) -> None:
    plan = make_plan(
        overrides=_override(
            3,
            postgres={
                "resources": _res("300m", "512Mi"),
                "replicaResources": _res("200m", "384Mi", "1", "768Mi"),
                "storage": "5Gi",
            },
        )
    )
    objects = render(3, plan)
    primary = find(objects, "StatefulSet", "shop-postgres")
    replica = find(objects, "StatefulSet", "shop-postgres-replica")
    server = _container(primary, "postgres")["resources"]
    assert server["requests"] == {"cpu": "300m", "memory": "512Mi"}
    # limits the override leaves alone keep the catalog's
    assert server["limits"] == {"cpu": "2", "memory": "2Gi"}
    assert _container(primary, "initdb")["resources"] == server
    assert _container(replica, "postgres")["resources"] == {
        "requests": {"cpu": "200m", "memory": "384Mi"},
        "limits": {"cpu": "1", "memory": "768Mi"},
    }
    assert _container(replica, "clone-primary")["resources"]["requests"]["cpu"] == "200m"
    assert _claim_size(primary) == _claim_size(replica) == "5Gi"
    # shared_buffers: a quarter of the smaller memory request (the config is shared)
    conf = find(objects, "ConfigMap", "shop-postgres-config")["data"]["postgresql.conf"]
    assert "shared_buffers = 96MB" in conf


def test_replica_resources_default_to_the_primarys(render, make_plan) -> None:
    plan = make_plan(overrides=_override(2, postgres={"resources": _res("300m", "512Mi")}))
    objects = render(2, plan)
    replica = find(objects, "StatefulSet", "shop-postgres-replica")
    assert _container(replica, "postgres")["resources"]["requests"] == {
        "cpu": "300m",
        "memory": "512Mi",
    }


def test_volume_sizes_of_shared_tiers_hold_in_every_phase(render, make_plan) -> None:
    plan = make_plan(
        overrides=_override(
            2, postgres={"storage": "7Gi"}, redis={"resources": _res("50m", "64Mi")}
        )
        + _override(3, rabbitmq={"storage": "2Gi", "nodes": 1}, redis={"nodes": 8})
    )
    for phase in (2, 3, 4):
        assert _claim_size(find(render(phase, plan), "StatefulSet", "shop-postgres")) == "7Gi"
    for phase in (3, 4):
        objects = render(phase, plan)
        assert _claim_size(find(objects, "StatefulSet", "shop-rabbitmq")) == "2Gi"
        assert find(objects, "StatefulSet", "shop-rabbitmq")["spec"]["replicas"] == 1
        assert find(objects, "StatefulSet", "shop-redis-cluster")["spec"]["replicas"] == 8


def test_redis_size_sets_maxmemory_and_cluster_nodes(render, make_plan) -> None:
    plan = make_plan(
        overrides=_override(2, redis={"resources": _res("50m", "64Mi", memory_limit="96Mi")})
        + _override(
            3,
            redis={"resources": _res("100m", "128Mi"), "nodes": 8, "storage": "64Mi"},
            exporters={"resources": _res("10m", "16Mi")},
        )
    )
    single = find(render(2, plan), "Deployment", "shop-redis")
    redis = _container(single, "redis")
    assert redis["args"][redis["args"].index("--maxmemory") + 1] == "50mb"
    assert redis["resources"]["limits"]["memory"] == "96Mi"

    objects = render(3, plan)
    cluster = find(objects, "StatefulSet", "shop-redis-cluster")
    assert cluster["spec"]["replicas"] == 8
    assert _claim_size(cluster) == "64Mi"
    assert _container(cluster, "redis")["resources"]["requests"] == {
        "cpu": "100m",
        "memory": "128Mi",
    }
    assert _container(cluster, "exporter")["resources"]["requests"] == {
        "cpu": "10m",
        "memory": "16Mi",
    }
    conf = find(objects, "ConfigMap", "shop-redis-cluster-config")["data"]["redis.conf"]
    assert "maxmemory 100mb" in conf
    script = containers(find(objects, "Job", "shop-redis-cluster-init"))[0]["command"][-1]
    assert all(f"shop-redis-cluster-{i}.shop-redis-cluster-hl" in script for i in range(8))


def test_exporter_size_reaches_postgres_pods(render, make_plan) -> None:
    plan = make_plan(overrides=_override(2, exporters={"resources": _res("5m", "16Mi")}))
    pg = find(render(2, plan), "StatefulSet", "shop-postgres")
    assert _container(pg, "exporter")["resources"]["requests"] == {"cpu": "5m", "memory": "16Mi"}


def test_rabbitmq_nodes_resources_and_memory_ceiling(render, make_plan) -> None:
    plan = make_plan(
        overrides=_override(
            3, rabbitmq={"nodes": 5, "resources": _res("100m", "256Mi", memory_limit="512Mi")}
        )
    )
    objects = render(3, plan)
    rabbit = find(objects, "StatefulSet", "shop-rabbitmq")
    assert rabbit["spec"]["replicas"] == 5
    assert _container(rabbit, "rabbitmq")["resources"]["limits"]["memory"] == "512Mi"
    conf = find(objects, "ConfigMap", "shop-rabbitmq-config")["data"]["rabbitmq.conf"]
    assert [f"rabbit@shop-rabbitmq-{i}.shop-rabbitmq-hl" in conf for i in range(6)] == [
        True
    ] * 5 + [False]
    assert f"total_memory_available_override_value = {512 * 2**20}" in conf
    default = find(render(3), "ConfigMap", "shop-rabbitmq-config")["data"]["rabbitmq.conf"]
    assert f"total_memory_available_override_value = {2 * 2**30}" in default


def test_kafka_nodes_partitions_heap_and_consumers(render, make_plan) -> None:
    plan = make_plan(
        overrides=_override(
            4,
            kafka={
                "nodes": 1,
                "partitions": 2,
                "storage": "3Gi",
                "resources": _res("100m", "768Mi", memory_limit="1Gi"),
            },
        )
    )
    objects = render(4, plan)
    kafka = find(objects, "StatefulSet", "shop-kafka")
    assert kafka["spec"]["replicas"] == 1
    assert _claim_size(kafka) == "3Gi"
    assert env_of(containers(kafka)[0])["KAFKA_HEAP_OPTS"] == "-Xms384m -Xmx384m"
    props = _props(find(objects, "ConfigMap", "shop-kafka-config")["data"]["server.properties"])
    assert props["controller.quorum.voters"] == "0@shop-kafka-0.shop-kafka-hl:9093"
    assert props["num.partitions"] == "2"
    assert props["default.replication.factor"] == props["min.insync.replicas"] == "1"
    assert props["offsets.topic.replication.factor"] == "1"
    assert find(objects, "Deployment", "shop-event-consumer")["spec"]["replicas"] == 2
    config = find(objects, "ConfigMap", "shop-app-config")["data"]
    assert config["KAFKA_BOOTSTRAP"] == "shop-kafka-0.shop-kafka-hl:9092"


def test_kafka_of_five_replicates_three_times(render, make_plan) -> None:
    objects = render(4, make_plan(overrides=_override(4, kafka={"nodes": 5})))
    props = _props(find(objects, "ConfigMap", "shop-kafka-config")["data"]["server.properties"])
    assert len(props["controller.quorum.voters"].split(",")) == 5
    assert (props["default.replication.factor"], props["min.insync.replicas"]) == ("3", "2")


def test_cassandra_nodes_heap_and_seeds(render, make_plan) -> None:
    plan = make_plan(
        overrides=_override(
            4,
            cassandra={
                "nodes": 1,
                "storage": "4Gi",
                "resources": _res("200m", "1Gi", memory_limit="1536Mi"),
            },
        )
    )
    objects = render(4, plan)
    cassandra = find(objects, "StatefulSet", "shop-cassandra")
    assert cassandra["spec"]["replicas"] == 1
    assert _claim_size(cassandra) == "4Gi"
    env = env_of(containers(cassandra)[0])
    assert (env["MAX_HEAP_SIZE"], env["HEAP_NEWSIZE"]) == ("512M", "100M")
    conf = find(objects, "ConfigMap", "shop-cassandra-config")["data"]["cassandra.yaml"]
    assert 'seeds: "shop-cassandra-0.shop-cassandra-hl"' in conf


def test_edge_workers_and_consumers(render, make_plan) -> None:
    small = _res("25m", "64Mi")
    plan = make_plan(
        app={"resources": _res("50m", "128Mi")},
        overrides=_override(
            4,
            edge={"replicas": 1, "resources": small},
            worker={"replicas": 1},
            eventConsumer={"replicas": 2, "resources": small},
        ),
    )
    objects = render(4, plan)
    edge = find(objects, "Deployment", "shop-edge")
    assert edge["spec"]["replicas"] == 1
    assert containers(edge)[0]["resources"]["requests"] == {"cpu": "25m", "memory": "64Mi"}
    worker = find(objects, "Deployment", "shop-worker")
    assert worker["spec"]["replicas"] == 1
    # a worker's size starts from the app's
    assert containers(worker)[0]["resources"]["requests"] == {"cpu": "50m", "memory": "128Mi"}
    consumer = find(objects, "Deployment", "shop-event-consumer")
    assert consumer["spec"]["replicas"] == 2
    assert containers(consumer)[0]["resources"]["requests"] == {"cpu": "25m", "memory": "64Mi"}
    # phase 3 has no override: the catalog's counts
    assert find(render(3, plan), "Deployment", "shop-worker")["spec"]["replicas"] == 2


def test_sqlite_storage(render, make_plan) -> None:
    plan = make_plan(overrides=_override(1, sqlite={"storage": "1Gi"}))
    claim = find(render(1, plan), "PersistentVolumeClaim", "shop-sqlite")
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"


def test_a_request_above_the_default_limit_raises_the_limit(render, make_plan) -> None:
    plan = make_plan(overrides=_override(4, cassandra={"resources": _res("3", "8Gi")}))
    cassandra = find(render(4, plan), "StatefulSet", "shop-cassandra")
    assert containers(cassandra)[0]["resources"]["limits"] == {"cpu": "3", "memory": "8Gi"}
    low = make_plan(
        overrides=_override(4, kafka={"resources": {"limits": {"cpu": "500m", "memory": "1Gi"}}})
    )
    kafka = find(render(4, low), "StatefulSet", "shop-kafka")
    assert containers(kafka)[0]["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert COMPONENT_SIZES["kafka"].cpu == "1"  # the default itself is untouched


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        (_override(3, redis={"nodes": 4}), "spec.overrides[0].components.redis.nodes", "6"),
        (_override(3, redis={"nodes": 7}), "spec.overrides[0].components.redis", "even"),
        (_override(3, rabbitmq={"nodes": 2}), "spec.overrides[0].components.rabbitmq", "odd"),
        (_override(4, kafka={"nodes": 4}), "spec.overrides[0].components.kafka", "odd"),
        (_override(4, kafka={"partitions": 0}), "spec.overrides[0].components.kafka", ""),
        (_override(4, cassandra={"nodes": 0}), "spec.overrides[0].components.cassandra", ""),
        (_override(2, kafka={"nodes": 3}), "spec.overrides[0]", "components.kafka"),
        (_override(1, postgres={"storage": "1Gi"}), "spec.overrides[0]", "components.postgres"),
        (_override(2, redis={"nodes": 6}), "spec.overrides[0]", "components.redis.nodes"),
        (_override(3, edge={"replicas": -1}), "spec.overrides[0].components.edge.replicas", ""),
        (
            _override(2, postgres={"storage": "lots"}),
            "spec.overrides[0].components.postgres.storage",
            "",
        ),
        (
            _override(2, postgres={"storage": "5Gi"}) + _override(3, postgres={"storage": "6Gi"}),
            "spec.overrides",
            "components.postgres.storage",
        ),
        (
            _override(3, redis={"nodes": 6}) + _override(4, redis={"nodes": 8}),
            "spec.overrides",
            "components.redis.nodes",
        ),
        (_override(3, mysql={}), "spec.overrides[0].components.mysql", ""),
    ],
)
def test_nonsense_sizes_are_refused_naming_the_field(
    overrides: list[dict[str, Any]], field: str, words: str
) -> None:
    body = {"metadata": {"name": "shop"}, "spec": {"overrides": overrides}}
    with pytest.raises(InvalidSpec) as raised:
        parse_plan(body)
    assert raised.value.message.startswith(f"{field}"), raised.value.message
    assert words in raised.value.message


def _jvm_options_after(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", f'set -eu\nJAVA_OPTS=-Xmx1g\n{script}echo "$JAVA_OPTS"\n'],
        capture_output=True,
        text=True,
        check=True,
    )


def test_a_jvm_tier_without_the_jmx_exporter_starts_and_says_so(tmp_path: Path) -> None:
    """An overriding image without the agent: the options stay as they were, a line says
    why there are no metrics, and the script goes on to start the node."""
    done = _jvm_options_after(jmx.load_agent("JAVA_OPTS", str(tmp_path / "absent.jar")))
    assert done.stdout == "-Xmx1g\n"
    assert "serves no metrics" in done.stderr


def test_a_jvm_tier_with_the_jmx_exporter_loads_it_into_the_jvm_options(tmp_path: Path) -> None:
    agent = tmp_path / "agent.jar"
    agent.write_bytes(b"")
    done = _jvm_options_after(jmx.load_agent("JAVA_OPTS", str(agent)))
    assert done.stdout.split() == ["-Xmx1g", f"-javaagent:{agent}=9404:{jmx.SELECTION}"]
    assert done.stderr == ""


@pytest.mark.parametrize("tier", ["kafka", "cassandra"])
def test_the_jvm_tiers_load_the_exporter_and_are_scraped_on_its_port(render, tier: str) -> None:
    template = find(render(4), "StatefulSet", f"shop-{tier}")["spec"]["template"]
    (container,) = template["spec"]["containers"]
    options = "KAFKA_OPTS" if tier == "kafka" else "JVM_EXTRA_OPTS"
    assert jmx.load_agent(options) in container["command"][-1]
    assert {"name": "metrics", "containerPort": jmx.METRICS_PORT} in container["ports"]
    assert template["metadata"]["annotations"]["prometheus.io/port"] == str(jmx.METRICS_PORT)
