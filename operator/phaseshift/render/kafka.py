"""The event stream of phase 4: Kafka in KRaft mode, three combined broker/controllers.

The image supplies Kafka's own scripts under /opt/kafka/bin, nothing else: the pod writes
server.properties from the ConfigMap plus its node id and advertised listener, formats
its log directory once (`kafka-storage.sh format --ignore-formatted`) with the plan's
cluster id, then execs `kafka-server-start.sh` with the JMX exporter (render.jmx) in
KAFKA_OPTS. No KAFKA_* translation by an image.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from phaseshift.catalog import Stream
from phaseshift.render import components, jmx
from phaseshift.render.encoding import content_hash
from phaseshift.render.pods import (
    container_security,
    empty_dir,
    env_from_pod,
    pod_security,
    pod_template,
    resources,
    tcp_probe,
)
from phaseshift.render.scope import Scope
from phaseshift.render.service import port
from phaseshift.render.statefulset import clustered_tier, data_statefulset
from phaseshift.render.workload import ANNOTATION_CONFIG_HASH

COMPONENT = "stream"
SUFFIX = "kafka"
PEERS = "kafka-hl"
CONFIG = "kafka-config"
KAFKA_UID = 1000  # appuser of the apache/kafka image
DATA = "/var/lib/kafka/data"
# A directory below the mount point: the broker takes every directory in log.dirs for a
# partition or its metadata, and a fresh volume's lost+found is neither.
LOG_DIRS = f"{DATA}/logs"
BIN = "/opt/kafka/bin"
CONFIG_DIR = "/etc/phaseshift/kafka"


def broker_hosts(scope: Scope) -> list[str]:
    return [
        f"{scope.name(SUFFIX)}-{i}.{scope.name(PEERS)}:9092"
        for i in range(components.kafka_nodes(scope))
    ]


def cluster_id(scope: Scope) -> str:
    """A KRaft cluster id (16 bytes, base64url) fixed by the plan's identity: a recreated
    plan that finds its retained volumes must present the id they were formatted with."""
    digest = hashlib.sha256(f"{scope.plan.namespace}/{scope.plan.name}".encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def server_properties(scope: Scope) -> str:
    """Everything but node.id and advertised.listeners, which are the pod's own."""
    peers = scope.name(PEERS)
    nodes = components.kafka_nodes(scope)
    voters = ",".join(f"{i}@{scope.name(SUFFIX)}-{i}.{peers}:9093" for i in range(nodes))
    copies = components.kafka_replication_factor(scope)
    quorum = str(copies // 2 + 1)
    settings = {
        "process.roles": "broker,controller",
        "controller.quorum.voters": voters,
        "listeners": "PLAINTEXT://:9092,CONTROLLER://:9093",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": LOG_DIRS,
        "default.replication.factor": str(copies),
        # Partitions of an auto-created topic (the app's event topic).
        "num.partitions": str(components.kafka_partitions(scope)),
        "min.insync.replicas": quorum,
        "offsets.topic.replication.factor": str(copies),
        "transaction.state.log.replication.factor": str(copies),
        "transaction.state.log.min.isr": quorum,
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


# `--cluster-id=...` in one word: a base64url id may start with '-'.
_START = f"""set -eu
props=/tmp/server.properties
{{
  cat {CONFIG_DIR}/server.properties
  echo "node.id=$NODE_ID"
  echo "advertised.listeners=PLAINTEXT://$POD_NAME.$PEERS:9092"
}} > "$props"
{BIN}/kafka-storage.sh format --ignore-formatted --cluster-id="$CLUSTER_ID" --config "$props"
{jmx.load_agent("KAFKA_OPTS")}exec {BIN}/kafka-server-start.sh "$props"
"""


def start_script() -> str:
    return _START


def heap_opts(scope: Scope) -> str:
    """KAFKA_HEAP_OPTS: a fixed heap of half the memory request (-Xms1g -Xmx1g by default)."""
    heap = components.jvm_size(components.jvm_heap_mib(components.size(scope, "kafka")))
    return f"-Xms{heap} -Xmx{heap}"


def _statefulset(scope: Scope) -> dict[str, Any]:
    kafka = {
        "name": "kafka",
        "image": scope.image("kafka"),
        "command": ["sh", "-c", start_script()],
        "env": [
            env_from_pod("POD_NAME", "metadata.name"),
            # The pod-index label (Kubernetes >= 1.28) is the StatefulSet ordinal: a stable
            # node id.
            env_from_pod("NODE_ID", "metadata.labels['apps.kubernetes.io/pod-index']"),
            {"name": "PEERS", "value": scope.name(PEERS)},
            {"name": "CLUSTER_ID", "value": cluster_id(scope)},
            # Read by Kafka's own scripts: the heap, and where its log4j files go.
            {"name": "KAFKA_HEAP_OPTS", "value": heap_opts(scope)},
            {"name": "LOG_DIR", "value": "/var/log/kafka"},
        ],
        "ports": [
            {"name": "client", "containerPort": 9092},
            {"name": "controller", "containerPort": 9093},
            jmx.metrics_port(),
        ],
        "readinessProbe": tcp_probe("client", period=10),
        "livenessProbe": tcp_probe("controller", period=20),
        "resources": resources(components.size(scope, "kafka")),
        # The JVM and Kafka's scripts are not known to write only where told.
        "securityContext": container_security(read_only_root=False),
        "volumeMounts": [
            {"name": "data", "mountPath": DATA},
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "logs", "mountPath": "/var/log/kafka"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    spec = {
        "securityContext": pod_security(KAFKA_UID),
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 120,
        "containers": [kafka],
        "volumes": [
            {"name": "config", "configMap": {"name": scope.name(CONFIG)}},
            empty_dir("logs"),
            empty_dir("tmp"),
        ],
    }
    return data_statefulset(
        scope,
        suffix=SUFFIX,
        component=COMPONENT,
        replicas=components.kafka_nodes(scope),
        service_name=scope.name(PEERS),
        # A KRaft quorum needs a majority up to elect a leader: start all together.
        pod_management="Parallel",
        template=pod_template(
            scope,
            workload=SUFFIX,
            component=COMPONENT,
            spec=spec,
            metrics_port=jmx.METRICS_PORT,
            meshed=False,
            annotations={ANNOTATION_CONFIG_HASH: content_hash(server_properties(scope))},
        ),
        storage=components.storage(scope, "kafka"),
    )


def objects(scope: Scope) -> list[dict[str, Any]]:
    if scope.catalog.stream is not Stream.KAFKA:
        return []
    # Drains take one broker at a time: the KRaft quorum and min.insync.replicas hold.
    return clustered_tier(
        scope,
        suffix=SUFFIX,
        peers=PEERS,
        component=COMPONENT,
        config_name=CONFIG,
        config={"server.properties": server_properties(scope)},
        peer_ports=[port("client", 9092), port("controller", 9093)],
        client_ports=[port("client", 9092)],
        statefulset=_statefulset(scope),
    )
