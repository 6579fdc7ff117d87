"""Sizes and counts of everything but the app: the catalog's defaults, or the plan's
`spec.overrides[].components`.

Per-phase values (resources, Deployment replicas, Kafka and Cassandra) come from the
scope's own override. Volume sizes and node counts of the tiers several phases run
(PostgreSQL, the Redis Cluster, RabbitMQ) are one value for the whole plan, taken from
whichever override sets it (the API keeps them equal), because a StatefulSet's volume
claims cannot change size and a formed cluster does not regroup by itself.
"""

from __future__ import annotations

from typing import Any

from phaseshift.api import Components
from phaseshift.catalog import (
    CASSANDRA_NODES,
    COMPONENT_SIZES,
    EDGE_REPLICAS,
    KAFKA_BROKERS,
    KAFKA_PARTITIONS,
    RABBITMQ_NODES,
    REDIS_CLUSTER_NODES,
    STORAGE,
    Size,
)
from phaseshift.render.quantity import memory_bytes
from phaseshift.render.scope import Scope
from phaseshift.render.sizing import app_size, merge_size

MIB = 2**20
# The replication factor of Kafka's topics: three copies at most, fewer on fewer brokers.
MAX_REPLICATION_FACTOR = 3

# Size key -> the components field that overrides it.
_SIZE_FIELDS = {
    "postgres": "postgres",
    "exporter": "exporters",
    "redis": "redis",
    "rabbitmq": "rabbitmq",
    "kafka": "kafka",
    "cassandra": "cassandra",
    "nginx": "edge",
}
# Storage key -> the components field that overrides it, and whether it is plan-wide.
_STORAGE_FIELDS = {
    "sqlite": ("sqlite", False),
    "postgres": ("postgres", True),
    "redis-cluster": ("redis", True),
    "rabbitmq": ("rabbitmq", True),
    "kafka": ("kafka", False),
    "cassandra": ("cassandra", False),
}


def _own(scope: Scope, component: str) -> Any:
    """This phase's override of `component`, or None."""
    override = scope.override
    parts: Components | None = override.components if override is not None else None
    return getattr(parts, component, None) if parts is not None else None


def _plan_wide(scope: Scope, component: str, field: str) -> Any:
    """The value any override sets for a plan-wide field (the API keeps them equal)."""
    for override in scope.plan.spec.overrides:
        part = getattr(override.components, component, None) if override.components else None
        value = getattr(part, field, None) if part is not None else None
        if value is not None:
            return value
    return None


def _field(part: Any, field: str) -> Any:
    return getattr(part, field, None) if part is not None else None


def size(scope: Scope, key: str) -> Size:
    """Requests and limits of a backing service's container in the scope's phase: one of
    postgres, postgres-replica, exporter, redis, rabbitmq, kafka, cassandra, nginx (the
    edge), worker, consumer."""
    if key == "postgres-replica":
        return merge_size(
            size(scope, "postgres"), _field(_own(scope, "postgres"), "replica_resources")
        )
    if key == "worker":
        return merge_size(app_size(scope), _field(_own(scope, "worker"), "resources"))
    if key == "consumer":
        return merge_size(app_size(scope), _field(_own(scope, "event_consumer"), "resources"))
    return merge_size(COMPONENT_SIZES[key], _field(_own(scope, _SIZE_FIELDS[key]), "resources"))


def storage(scope: Scope, key: str) -> str:
    """The size of a volume: sqlite, postgres, redis-cluster, rabbitmq, kafka, cassandra."""
    component, plan_wide = _STORAGE_FIELDS[key]
    value = (
        _plan_wide(scope, component, "storage")
        if plan_wide
        else _field(_own(scope, component), "storage")
    )
    return str(value) if value is not None else STORAGE[key]


def redis_cluster_nodes(scope: Scope) -> int:
    value = _plan_wide(scope, "redis", "nodes")
    return int(value) if value is not None else REDIS_CLUSTER_NODES


def rabbitmq_nodes(scope: Scope) -> int:
    value = _plan_wide(scope, "rabbitmq", "nodes")
    return int(value) if value is not None else RABBITMQ_NODES


def kafka_nodes(scope: Scope) -> int:
    value = _field(_own(scope, "kafka"), "nodes")
    return int(value) if value is not None else KAFKA_BROKERS


def kafka_replication_factor(scope: Scope) -> int:
    return min(kafka_nodes(scope), MAX_REPLICATION_FACTOR)


def kafka_partitions(scope: Scope) -> int:
    value = _field(_own(scope, "kafka"), "partitions")
    return int(value) if value is not None else KAFKA_PARTITIONS


def cassandra_nodes(scope: Scope) -> int:
    value = _field(_own(scope, "cassandra"), "nodes")
    return int(value) if value is not None else CASSANDRA_NODES


def cassandra_replication_factor(scope: Scope) -> int:
    """The activity feed keyspace's replicas: three, or every node of a smaller ring."""
    return min(cassandra_nodes(scope), MAX_REPLICATION_FACTOR)


def edge_replicas(scope: Scope) -> int:
    value = _field(_own(scope, "edge"), "replicas")
    return int(value) if value is not None else EDGE_REPLICAS


def worker_replicas(scope: Scope) -> int:
    value = _field(_own(scope, "worker"), "replicas")
    return int(value) if value is not None else scope.catalog.worker_replicas


def consumer_replicas(scope: Scope) -> int:
    """One consumer per partition unless set: a group leaves any consumer beyond that idle."""
    value = _field(_own(scope, "event_consumer"), "replicas")
    return int(value) if value is not None else kafka_partitions(scope)


def memory_request_mib(container_size: Size) -> int:
    return memory_bytes(container_size.memory) // MIB


def memory_limit_bytes(container_size: Size) -> int:
    return memory_bytes(container_size.memory_limit)


def jvm_heap_mib(container_size: Size) -> int:
    """A JVM's heap: half the memory request, the rest for metaspace, threads, direct
    buffers and the page cache the JVM tiers lean on (at least 64 MiB)."""
    return max(64, memory_request_mib(container_size) // 2)


def jvm_size(mib: int, *, upper: bool = False) -> str:
    """A JVM size option value: 1g for whole gibibytes, else 384m."""
    text = f"{mib // 1024}g" if mib % 1024 == 0 else f"{mib}m"
    return text.upper() if upper else text
