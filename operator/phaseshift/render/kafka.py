"""The event stream of phase 4: Kafka in KRaft mode, three combined broker/controllers."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from phaseshift.catalog import COMPONENT_SIZES, KAFKA_BROKERS, STORAGE
from phaseshift.render.pods import (
    container_security,
    env_from_pod,
    pod_security,
    pod_template,
    resources,
    tcp_probe,
)
from phaseshift.render.scope import Scope
from phaseshift.render.service import port, service
from phaseshift.render.statefulset import data_statefulset

COMPONENT = "stream"
SUFFIX = "kafka"
PEERS = "kafka-hl"
KAFKA_UID = 1000  # appuser of the apache/kafka image
DATA = "/var/lib/kafka/data"
# Partitions of an auto-created topic (the app's event topic): one per event consumer.
PARTITIONS = 3


def broker_hosts(scope: Scope) -> list[str]:
    return [f"{scope.name(SUFFIX)}-{i}.{scope.name(PEERS)}:9092" for i in range(KAFKA_BROKERS)]


def cluster_id(scope: Scope) -> str:
    """A KRaft cluster id (16 bytes, base64url) fixed by the plan's identity: a recreated
    plan that finds its retained volumes must present the id they were formatted with."""
    digest = hashlib.sha256(f"{scope.plan.namespace}/{scope.plan.name}".encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _env(scope: Scope) -> list[dict[str, Any]]:
    peers = scope.name(PEERS)
    voters = ",".join(f"{i}@{scope.name(SUFFIX)}-{i}.{peers}:9093" for i in range(KAFKA_BROKERS))
    quorum = str(KAFKA_BROKERS // 2 + 1)
    settings = {
        "CLUSTER_ID": cluster_id(scope),
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": voters,
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://$(POD_NAME).{peers}:9092",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
        "KAFKA_LOG_DIRS": DATA,
        "KAFKA_DEFAULT_REPLICATION_FACTOR": str(KAFKA_BROKERS),
        "KAFKA_NUM_PARTITIONS": str(PARTITIONS),
        "KAFKA_MIN_INSYNC_REPLICAS": quorum,
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": str(KAFKA_BROKERS),
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": str(KAFKA_BROKERS),
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": quorum,
        "KAFKA_HEAP_OPTS": "-Xms1g -Xmx1g",
    }
    return [
        env_from_pod("POD_NAME", "metadata.name"),
        # The pod-index label (Kubernetes >= 1.28) is the StatefulSet ordinal: a stable node id.
        env_from_pod("KAFKA_NODE_ID", "metadata.labels['apps.kubernetes.io/pod-index']"),
        *({"name": key, "value": value} for key, value in settings.items()),
    ]


def _statefulset(scope: Scope) -> dict[str, Any]:
    kafka = {
        "name": "kafka",
        "image": scope.image("kafka"),
        "env": _env(scope),
        "ports": [
            {"name": "client", "containerPort": 9092},
            {"name": "controller", "containerPort": 9093},
        ],
        "readinessProbe": tcp_probe("client", period=10),
        "livenessProbe": tcp_probe("controller", period=20),
        "resources": resources(COMPONENT_SIZES["kafka"]),
        # The image renders server.properties into its install tree at start-up.
        "securityContext": container_security(read_only_root=False),
        "volumeMounts": [{"name": "data", "mountPath": DATA}],
    }
    spec = {
        "securityContext": pod_security(KAFKA_UID),
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 120,
        "containers": [kafka],
    }
    # Kafka exposes metrics only over JMX; there is no Prometheus endpoint to scrape.
    return data_statefulset(
        scope,
        suffix=SUFFIX,
        component=COMPONENT,
        replicas=KAFKA_BROKERS,
        service_name=scope.name(PEERS),
        # A KRaft quorum needs a majority up to elect a leader: start all together.
        pod_management="Parallel",
        template=pod_template(
            scope,
            workload=SUFFIX,
            component=COMPONENT,
            spec=spec,
            metrics_port=None,
            meshed=False,
        ),
        storage=STORAGE["kafka"],
    )


def objects(scope: Scope) -> list[dict[str, Any]]:
    if scope.phase < 4:
        return []
    selector = scope.selector(SUFFIX)
    return [
        service(
            scope,
            PEERS,
            COMPONENT,
            selector,
            [port("client", 9092), port("controller", 9093)],
            headless=True,
        ),
        service(scope, SUFFIX, COMPONENT, selector, [port("client", 9092)]),
        _statefulset(scope),
    ]
