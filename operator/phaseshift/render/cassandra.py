"""The NoSQL store of phase 4, beside PostgreSQL: SQL for transactions, NoSQL for scale.

Cassandra rather than ScyllaDB: Cassandra runs unprivileged with nothing but its own
configuration, while ScyllaDB's image expects to tune the host (CPU pinning, I/O setup)
under a root supervisord, which a restricted pod security context forbids.

The image supplies the Cassandra distribution under /opt/cassandra, nothing else: the
pod copies the distribution's conf/ (JVM options, logback) into its own directory, puts
cassandra.yaml and cassandra-rackdc.properties from the ConfigMap beside them with its
own address, and runs `cassandra -f` on that directory (CASSANDRA_CONF) with the JMX
exporter (render.jmx) in JVM_EXTRA_OPTS, never an
image's entrypoint or its CASSANDRA_* environment conventions.
"""

from __future__ import annotations

from typing import Any

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

COMPONENT = "nosql"
SUFFIX = "cassandra"
PEERS = "cassandra-hl"
CONFIG = "cassandra-config"
CASSANDRA_UID = 999  # the cassandra user of the official image
SEEDS = 2
HOME = "/opt/cassandra"
DATA = "/var/lib/cassandra"
CONF_DIR = "/etc/phaseshift/cassandra"  # an emptyDir the start script fills
LOGS = "/var/log/cassandra"
CQL_PORT = 9042
# The app's keyspace (its activity feed): each plan has a ring of its own, so one name.
APP_KEYSPACE = "phaseshift"


def contact_point(scope: Scope) -> str:
    """The client Service: the driver reaches one node through it and discovers the
    others from that node's system.peers."""
    return f"{scope.name(SUFFIX)}:{CQL_PORT}"


def cassandra_yaml(scope: Scope) -> str:
    """The node's settings but its own address (appended at start). The directories are
    the ones the official image used, so volumes it wrote keep working; num_tokens and
    the allocator are the distribution's defaults, which a node's ring position depends
    on."""
    peers = scope.name(PEERS)
    count = min(SEEDS, components.cassandra_nodes(scope))
    seeds = ",".join(f"{scope.name(SUFFIX)}-{i}.{peers}" for i in range(count))
    return f"""cluster_name: "{scope.plan_label}"
num_tokens: 16
allocate_tokens_for_local_replication_factor: 3
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: GossipingPropertyFileSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "{seeds}"
storage_port: 7000
native_transport_port: 9042
rpc_address: 0.0.0.0
data_file_directories:
  - {DATA}/data
commitlog_directory: {DATA}/commitlog
saved_caches_directory: {DATA}/saved_caches
hints_directory: {DATA}/hints
cdc_raw_directory: {DATA}/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
"""


RACKDC = "dc=dc1\nrack=rack1\n"

_START = f"""set -eu
cp -R {HOME}/conf/. {CONF_DIR}/
cp /config/cassandra.yaml /config/cassandra-rackdc.properties {CONF_DIR}/
{{
  echo "listen_address: $POD_IP"
  echo "broadcast_rpc_address: $POD_IP"
}} >> {CONF_DIR}/cassandra.yaml
{jmx.load_agent("JVM_EXTRA_OPTS")}exec {HOME}/bin/cassandra -f
"""


def start_script() -> str:
    return _START


def heap_env(scope: Scope) -> dict[str, str]:
    """MAX_HEAP_SIZE (half the memory request, 2G by default) and HEAP_NEWSIZE (about a
    fifth of it, 400M by default), which cassandra-env.sh passes to the JVM."""
    heap = components.jvm_heap_mib(components.size(scope, "cassandra"))
    return {
        "MAX_HEAP_SIZE": components.jvm_size(heap, upper=True),
        "HEAP_NEWSIZE": components.jvm_size(max(16, heap * 25 // 128), upper=True),
    }


def _statefulset(scope: Scope) -> dict[str, Any]:
    cassandra = {
        "name": "cassandra",
        "image": scope.image("cassandra"),
        "command": ["sh", "-c", start_script()],
        "env": [
            env_from_pod("POD_IP", "status.podIP"),
            # Read by Cassandra's own scripts (cassandra.in.sh, cassandra-env.sh).
            {"name": "CASSANDRA_CONF", "value": CONF_DIR},
            {"name": "CASSANDRA_LOG_DIR", "value": LOGS},
            *({"name": name, "value": value} for name, value in heap_env(scope).items()),
        ],
        "ports": [
            {"name": "cql", "containerPort": 9042},
            {"name": "intra-node", "containerPort": 7000},
            jmx.metrics_port(),
        ],
        "readinessProbe": tcp_probe("cql", period=10),
        "livenessProbe": tcp_probe("intra-node", period=20),
        "resources": resources(components.size(scope, "cassandra")),
        # The JVM may write heap dumps below the install tree.
        "securityContext": container_security(read_only_root=False),
        "volumeMounts": [
            {"name": "data", "mountPath": DATA},
            {"name": "config", "mountPath": "/config", "readOnly": True},
            {"name": "conf", "mountPath": CONF_DIR},
            {"name": "logs", "mountPath": LOGS},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    spec = {
        "securityContext": pod_security(CASSANDRA_UID),
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 120,
        "containers": [cassandra],
        "volumes": [
            {"name": "config", "configMap": {"name": scope.name(CONFIG)}},
            empty_dir("conf"),
            empty_dir("logs"),
            empty_dir("tmp"),
        ],
    }
    return data_statefulset(
        scope,
        suffix=SUFFIX,
        component=COMPONENT,
        replicas=components.cassandra_nodes(scope),
        service_name=scope.name(PEERS),
        # Cassandra bootstraps one node at a time into the ring.
        pod_management="OrderedReady",
        template=pod_template(
            scope,
            workload=SUFFIX,
            component=COMPONENT,
            spec=spec,
            metrics_port=jmx.METRICS_PORT,
            meshed=False,
            annotations={ANNOTATION_CONFIG_HASH: content_hash(cassandra_yaml(scope), RACKDC)},
        ),
        storage=components.storage(scope, "cassandra"),
    )


def objects(scope: Scope) -> list[dict[str, Any]]:
    if not scope.catalog.database.cassandra:
        return []
    # Drains take one node at a time: QUORUM reads and writes at RF 3 keep working.
    return clustered_tier(
        scope,
        suffix=SUFFIX,
        peers=PEERS,
        component=COMPONENT,
        config_name=CONFIG,
        config={"cassandra.yaml": cassandra_yaml(scope), "cassandra-rackdc.properties": RACKDC},
        peer_ports=[port("cql", 9042), port("intra-node", 7000)],
        client_ports=[port("cql", 9042)],
        statefulset=_statefulset(scope),
    )
