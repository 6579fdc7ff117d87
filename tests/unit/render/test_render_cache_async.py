"""Redis, Redis Cluster, RabbitMQ with workers, and Kafka in KRaft mode."""

from __future__ import annotations

from render_helpers import containers, env_of, find, names

from phaseshift.transition import component_of, is_app


def _server_properties(objects: list[dict]) -> dict[str, str]:
    text = find(objects, "ConfigMap", "shop-kafka-config")["data"]["server.properties"]
    return dict(line.split("=", 1) for line in text.splitlines())


def test_phase2_runs_a_single_redis_cache(render) -> None:
    objects = render(2)
    redis = find(objects, "Deployment", "shop-redis")
    assert redis["spec"]["replicas"] == 1
    args = containers(redis)[0]["args"]
    assert args[args.index("--maxmemory-policy") + 1] == "allkeys-lru"
    assert names(objects, "Job") == []


def test_phase3_forms_a_six_node_redis_cluster(render) -> None:
    objects = render(3)
    cluster = find(objects, "StatefulSet", "shop-redis-cluster")
    assert cluster["spec"]["replicas"] == 6
    assert (
        "cluster-enabled yes"
        in find(objects, "ConfigMap", "shop-redis-cluster-config")["data"]["redis.conf"]
    )
    job = find(objects, "Job", "shop-redis-cluster-init")
    script = containers(job)[0]["command"][-1]
    assert "--cluster create" in script and "--cluster-replicas 1" in script
    assert all(f"shop-redis-cluster-{i}.shop-redis-cluster-hl" in script for i in range(6))
    assert "shop-redis" not in names(objects, "Deployment")


def test_phase3_runs_rabbitmq_and_workers(render) -> None:
    objects = render(3)
    rabbit = find(objects, "StatefulSet", "shop-rabbitmq")
    assert rabbit["spec"]["replicas"] == 3
    assert rabbit["metadata"]["annotations"]["phaseshift.dev/stateful"] == "true"
    conf = find(objects, "ConfigMap", "shop-rabbitmq-config")["data"]["rabbitmq.conf"]
    for i in range(3):
        assert f"rabbit@shop-rabbitmq-{i}.shop-rabbitmq-hl" in conf
    worker = containers(find(objects, "Deployment", "shop-worker"))[0]
    assert worker["command"] == ["python", "-m", "sample_app", "worker"]
    assert env_of(worker)["APP_ROLE"] == "worker"


def test_phase4_streams_through_a_kraft_quorum(render) -> None:
    objects = render(4)
    kafka = find(objects, "StatefulSet", "shop-kafka")
    assert kafka["spec"]["replicas"] == 3
    props = _server_properties(objects)
    assert props["process.roles"] == "broker,controller"
    voters = props["controller.quorum.voters"].split(",")
    assert voters == [f"{i}@shop-kafka-{i}.shop-kafka-hl:9093" for i in range(3)]
    [container] = containers(kafka)
    env = env_of(container)
    assert env["NODE_ID"]["fieldRef"]["fieldPath"].endswith("['apps.kubernetes.io/pod-index']")
    assert len(env["CLUSTER_ID"]) == 22
    script = container["command"][-1]
    assert container["command"][:2] == ["sh", "-c"]
    assert '--cluster-id="$CLUSTER_ID"' in script and "--ignore-formatted" in script
    assert "exec /opt/kafka/bin/kafka-server-start.sh" in script
    assert not [name for name in env if name.startswith("KAFKA_") and name != "KAFKA_HEAP_OPTS"]
    # Phase 4 keeps the job queue for the workers beside the stream.
    assert "shop-rabbitmq" in names(objects, "StatefulSet")


def test_kafka_cluster_id_is_stable_for_a_plan_and_differs_between_plans(render, make_plan) -> None:
    def cluster_id(name: str) -> str:
        kafka = find(render(4, make_plan(name)), "StatefulSet", f"{name}-kafka")
        return env_of(containers(kafka)[0])["CLUSTER_ID"]

    assert cluster_id("shop") == cluster_id("shop")
    assert cluster_id("shop") != cluster_id("blog")


def test_phase4_runs_one_event_consumer_per_partition(render) -> None:
    assert "shop-event-consumer" not in names(render(3), "Deployment")
    objects = render(4)
    deployment = find(objects, "Deployment", "shop-event-consumer")
    partitions = int(_server_properties(objects)["num.partitions"])
    assert deployment["spec"]["replicas"] == partitions == 3
    template = deployment["spec"]["template"]
    assert component_of(deployment) == "consumer" and is_app(deployment)
    assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    consumer = containers(deployment)[0]
    assert consumer["command"] == ["python", "-m", "sample_app", "consume"]
    assert env_of(consumer)["APP_ROLE"] == "consumer"
    # KAFKA_BOOTSTRAP and DATABASE_URL come from the app's own ConfigMap and Secret.
    worker = containers(find(objects, "Deployment", "shop-worker"))[0]
    assert consumer["envFrom"] == worker["envFrom"]
    assert consumer["securityContext"] == worker["securityContext"]
    assert consumer["livenessProbe"]["httpGet"]["path"] == "/metrics"
    assert "readinessProbe" not in consumer


def test_quorum_tiers_lose_at_most_one_member_to_a_drain(render) -> None:
    objects = render(4)
    for name in ("shop-redis-cluster", "shop-rabbitmq", "shop-kafka", "shop-cassandra"):
        budget = find(objects, "PodDisruptionBudget", name)
        statefulset = find(objects, "StatefulSet", name)
        assert budget["spec"]["maxUnavailable"] == 1
        assert budget["spec"]["selector"] == statefulset["spec"]["selector"]
    assert sorted(names(render(3), "PodDisruptionBudget")) == [
        "shop-app",
        "shop-rabbitmq",
        "shop-redis-cluster",
    ]
    assert names(render(2), "PodDisruptionBudget") == []
