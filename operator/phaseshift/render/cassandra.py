"""The NoSQL store of phase 4, beside PostgreSQL: SQL for transactions, NoSQL for scale.

Cassandra rather than ScyllaDB: the official cassandra image runs unprivileged and is
configured entirely through documented environment variables, while ScyllaDB's image
expects to tune the host (CPU pinning, I/O setup) under a root supervisord, which a
restricted pod security context forbids.
"""

from __future__ import annotations

from typing import Any

from phaseshift.catalog import CASSANDRA_NODES, COMPONENT_SIZES, STORAGE
from phaseshift.render.pods import (
    container_security,
    pod_security,
    pod_template,
    resources,
    tcp_probe,
)
from phaseshift.render.scope import Scope
from phaseshift.render.service import port, service
from phaseshift.render.statefulset import data_statefulset

COMPONENT = "nosql"
SUFFIX = "cassandra"
PEERS = "cassandra-hl"
CASSANDRA_UID = 999  # the cassandra user of the official image
SEEDS = 2


def _statefulset(scope: Scope) -> dict[str, Any]:
    peers = scope.name(PEERS)
    seeds = ",".join(f"{scope.name(SUFFIX)}-{i}.{peers}" for i in range(SEEDS))
    cassandra = {
        "name": "cassandra",
        "image": scope.image("cassandra"),
        "env": [
            {"name": "CASSANDRA_SEEDS", "value": seeds},
            {"name": "CASSANDRA_CLUSTER_NAME", "value": scope.plan_label},
            {"name": "CASSANDRA_DC", "value": "dc1"},
            {"name": "CASSANDRA_ENDPOINT_SNITCH", "value": "GossipingPropertyFileSnitch"},
            {"name": "MAX_HEAP_SIZE", "value": "2G"},
            {"name": "HEAP_NEWSIZE", "value": "400M"},
        ],
        "ports": [
            {"name": "cql", "containerPort": 9042},
            {"name": "intra-node", "containerPort": 7000},
        ],
        "readinessProbe": tcp_probe("cql", period=10),
        "livenessProbe": tcp_probe("intra-node", period=20),
        "resources": resources(COMPONENT_SIZES["cassandra"]),
        # The entrypoint writes the environment into /etc/cassandra/cassandra.yaml.
        "securityContext": container_security(read_only_root=False),
        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/cassandra"}],
    }
    spec = {
        "securityContext": pod_security(CASSANDRA_UID),
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 120,
        "containers": [cassandra],
    }
    # Cassandra exposes metrics only over JMX; there is no Prometheus endpoint to scrape.
    return data_statefulset(
        scope,
        suffix=SUFFIX,
        component=COMPONENT,
        replicas=CASSANDRA_NODES,
        service_name=peers,
        # Cassandra bootstraps one node at a time into the ring.
        pod_management="OrderedReady",
        template=pod_template(
            scope,
            workload=SUFFIX,
            component=COMPONENT,
            spec=spec,
            metrics_port=None,
            meshed=False,
        ),
        storage=STORAGE["cassandra"],
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
            [port("cql", 9042), port("intra-node", 7000)],
            headless=True,
        ),
        service(scope, SUFFIX, COMPONENT, selector, [port("cql", 9042)]),
        _statefulset(scope),
    ]
