"""The cache tier: one Redis in phase 2, a six-node Redis Cluster from phase 3.

Both run as caches (no RDB snapshots, no AOF, LRU eviction), so losing a node loses only
cached values. The cluster keeps nodes.conf on a small volume: a node that restarts
must remember its identity and slots to rejoin.

Every setting the server needs is on its command line or in the ConfigMap: the image
supplies `redis-server`, `redis-cli` and `/redis_exporter` and nothing else (the official
image's build turns protected mode off by default; Debian's redis-server keeps it on).
"""

from __future__ import annotations

from typing import Any

from phaseshift.catalog import COMPONENT_SIZES
from phaseshift.render import components
from phaseshift.render.autoscaling import pdb
from phaseshift.render.encoding import content_hash
from phaseshift.render.pods import (
    container_security,
    empty_dir,
    env_from_pod,
    exec_probe,
    pod_security,
    pod_template,
    resources,
    volume_claim_template,
)
from phaseshift.render.scope import Scope
from phaseshift.render.service import port, service
from phaseshift.render.workload import ANNOTATION_CONFIG_HASH

COMPONENT = "cache"
SINGLE = "redis"
CLUSTER = "redis-cluster"
PEERS = "redis-cluster-hl"
REDIS_UID = 999  # the redis user of the official image
EXPORTER_PORT = 9121


def maxmemory(scope: Scope) -> str:
    """Redis' own memory cap: about 78% of the container's memory request (400mb of the
    default 512Mi), the rest for the server, its buffers and fragmentation."""
    return f"{max(1, components.memory_request_mib(components.size(scope, 'redis')) * 25 // 32)}mb"


def cache_flags(scope: Scope) -> list[str]:
    return [
        "--port",
        "6379",
        "--dir",
        "/data",
        # Protected mode refuses every client but loopback when no password is set.
        "--protected-mode",
        "no",
        "--save",
        "",
        "--appendonly",
        "no",
        "--maxmemory",
        maxmemory(scope),
        "--maxmemory-policy",
        "allkeys-lru",
    ]


_CLUSTER_CONF = """port 6379
dir /data
cluster-enabled yes
cluster-config-file /data/nodes.conf
cluster-node-timeout 5000
# Clients follow MOVED redirects by DNS name, which survives a pod's new IP.
cluster-preferred-endpoint-type hostname
protected-mode no
save ""
appendonly no
maxmemory {maxmemory}
maxmemory-policy allkeys-lru
"""


def cluster_conf(scope: Scope) -> str:
    return _CLUSTER_CONF.format(maxmemory=maxmemory(scope))


# Idempotent: an already formed cluster is left alone, so the Job can run again safely.
_FORM_CLUSTER = """set -eu
nodes=""
for host in {hosts}; do
  until redis-cli -h "$host" ping 2>/dev/null | grep -q PONG; do
    echo "waiting for $host"; sleep 2
  done
  nodes="$nodes $(getent hosts "$host" | awk '{{print $1}}'):6379"
done
if redis-cli -h {first} cluster info | grep -q '^cluster_state:ok'; then
  echo "cluster already formed"
  exit 0
fi
redis-cli --cluster create $nodes --cluster-replicas 1 --cluster-yes
"""


# A cluster node's start. Peers gossip by IP, and every pod comes back with a new one, so
# a node that already belonged to a formed cluster (nodes.conf names more than itself)
# meets each peer again at the address its DNS name has now: a node answering with a
# known ID takes its new address, and a cluster whose pods were all replaced at once
# forms again. A peer counts as rejoined only when it answers at that address: for a
# while after the pods are replaced, DNS may still give old addresses, which nodes.conf
# lists as connected until gossip finds them gone. The watch goes on for the pod's life
# (every 30 s once whole), so a later change of address is met too. A node that never
# joined (nodes.conf names only itself) waits for the init Job, which needs it empty.
_START_CLUSTER_NODE = """set -eu
self="$POD_NAME.{peers}"
rejoin() {{
  until redis-cli ping 2>/dev/null | grep -q PONG; do sleep 1; done
  whole=0
  while :; do
    missing=0
    for host in {hosts}; do
      [ "$host" = "$self" ] && continue
      ip=$(getent hosts "$host" | awk '{{print $1}}') || true
      if [ -z "$ip" ] || ! timeout 2 redis-cli -h "$ip" ping 2>/dev/null | grep -q PONG; then
        missing=1; continue
      fi
      if ! redis-cli cluster nodes | grep -w connected | grep -qF " $ip:6379@"; then
        missing=1
        redis-cli cluster meet "$ip" 6379 >/dev/null 2>&1 || true
      fi
    done
    if [ "$missing" = 0 ] && redis-cli cluster info | grep -q '^cluster_state:ok'; then
      [ "$whole" = 1 ] || echo "every peer connected at its current address"
      whole=1; sleep 30
    else
      whole=0; sleep 3
    fi
  done
}}
if [ -s /data/nodes.conf ] && [ "$(grep -cv '^vars' /data/nodes.conf)" -gt 1 ]; then
  rejoin &
fi
exec redis-server /etc/redis/redis.conf --cluster-announce-hostname "$self"
"""


def start_cluster_node(scope: Scope) -> str:
    hosts = _cluster_hosts(scope)
    return _START_CLUSTER_NODE.format(peers=scope.name(PEERS), hosts=" ".join(hosts))


def url(scope: Scope) -> str:
    if scope.catalog.cache.redis_cluster:
        return f"redis://{scope.name(CLUSTER)}:6379"
    return f"redis://{scope.name(SINGLE)}:6379/0"


def _cluster_hosts(scope: Scope) -> list[str]:
    statefulset, peers = scope.name(CLUSTER), scope.name(PEERS)
    return [f"{statefulset}-{i}.{peers}" for i in range(components.redis_cluster_nodes(scope))]


def _ping() -> dict[str, Any]:
    return exec_probe(["redis-cli", "ping"], period=5)


def _redis_container(
    scope: Scope, command: list[str], args: list[str], *, cluster: bool
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "redis",
        "image": scope.image("redis"),
        "command": command,
        **({"args": args} if args else {}),
        "ports": [{"name": "redis", "containerPort": 6379}],
        "readinessProbe": _ping(),
        "livenessProbe": _ping(),
        "resources": resources(components.size(scope, "redis")),
        "securityContext": container_security(),
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    if cluster:
        container["ports"].append({"name": "gossip", "containerPort": 16379})
        container["env"] = [env_from_pod("POD_NAME", "metadata.name")]
        container["volumeMounts"].append(
            {"name": "config", "mountPath": "/etc/redis", "readOnly": True}
        )
    return container


def _exporter(scope: Scope) -> dict[str, Any]:
    return {
        "name": "exporter",
        "image": scope.image("redis-exporter"),
        "command": ["/redis_exporter"],
        "args": [
            "-redis.addr=redis://127.0.0.1:6379",
            f"-web.listen-address=:{EXPORTER_PORT}",
        ],
        "ports": [{"name": "metrics", "containerPort": EXPORTER_PORT}],
        "resources": resources(components.size(scope, "exporter")),
        "securityContext": container_security(),
    }


def _pod_spec(scope: Scope, redis: dict[str, Any], volumes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "securityContext": pod_security(REDIS_UID),
        "automountServiceAccountToken": False,
        "containers": [redis, _exporter(scope)],
        "volumes": volumes,
    }


def _single(scope: Scope) -> list[dict[str, Any]]:
    spec = _pod_spec(
        scope,
        _redis_container(scope, ["redis-server"], cache_flags(scope), cluster=False),
        [empty_dir("data")],
    )
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": scope.metadata(SINGLE, COMPONENT),
        "spec": {
            "replicas": 1,
            # A cache holds nothing worth two copies during an update.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": scope.selector(SINGLE)},
            "template": pod_template(
                scope,
                workload=SINGLE,
                component=COMPONENT,
                spec=spec,
                metrics_port=EXPORTER_PORT,
                meshed=False,
            ),
        },
    }
    return [
        service(scope, SINGLE, COMPONENT, scope.selector(SINGLE), [port("redis", 6379)]),
        deployment,
    ]


def _cluster(scope: Scope) -> list[dict[str, Any]]:
    volumes = [{"name": "config", "configMap": {"name": scope.name("redis-cluster-config")}}]
    spec = _pod_spec(
        scope,
        _redis_container(scope, ["sh", "-c", start_cluster_node(scope)], [], cluster=True),
        volumes,
    )
    selector = scope.selector(CLUSTER)
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": scope.metadata(CLUSTER, COMPONENT),
        "spec": {
            "replicas": components.redis_cluster_nodes(scope),
            "serviceName": scope.name(PEERS),
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector},
            # Cache volumes hold only nodes.conf: they go with the StatefulSet.
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": "Delete",
                "whenScaled": "Delete",
            },
            "template": pod_template(
                scope,
                workload=CLUSTER,
                component=COMPONENT,
                spec=spec,
                metrics_port=EXPORTER_PORT,
                meshed=False,
                annotations={ANNOTATION_CONFIG_HASH: content_hash(cluster_conf(scope))},
            ),
            "volumeClaimTemplates": [
                volume_claim_template(components.storage(scope, "redis-cluster"))
            ],
        },
    }
    hosts = _cluster_hosts(scope)
    form = {
        "name": "form-cluster",
        "image": scope.image("redis"),
        "command": ["sh", "-c", _FORM_CLUSTER.format(hosts=" ".join(hosts), first=hosts[0])],
        "resources": resources(COMPONENT_SIZES["job"]),
        "securityContext": container_security(),
    }
    job_spec = {
        "securityContext": pod_security(REDIS_UID),
        "automountServiceAccountToken": False,
        "restartPolicy": "Never",
        "containers": [form],
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": scope.metadata("redis-cluster-init", COMPONENT),
        "spec": {
            "backoffLimit": 6,
            "template": pod_template(
                scope,
                workload="redis-cluster-init",
                component=COMPONENT,
                spec=job_spec,
                metrics_port=None,
                meshed=False,
            ),
        },
    }
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": scope.metadata("redis-cluster-config", COMPONENT),
        "data": {"redis.conf": cluster_conf(scope)},
    }
    ports = [port("redis", 6379), port("gossip", 16379)]
    return [
        config,
        service(scope, PEERS, COMPONENT, selector, ports, headless=True),
        service(scope, CLUSTER, COMPONENT, selector, [port("redis", 6379)]),
        statefulset,
        job,
        # A voluntary eviction takes one node at a time: its replica takes over its slots.
        pdb(scope, CLUSTER, COMPONENT, selector),
    ]


def objects(scope: Scope) -> list[dict[str, Any]]:
    if scope.catalog.cache.redis_cluster:
        return _cluster(scope)
    if scope.catalog.cache.redis:
        return _single(scope)
    return []
