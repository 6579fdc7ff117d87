"""The job queue from phase 3: a three-node RabbitMQ cluster.

Nodes find each other through classic_config peer discovery (a fixed list of the
StatefulSet's stable DNS names), which needs no access to the Kubernetes API.

The image supplies `rabbitmq-server` and its tools on PATH, nothing else: an
initContainer writes the Erlang cookie and the node's configuration (the ConfigMap plus
the default user's password from the Secret) into place, and the server is started with
RabbitMQ's own RABBITMQ_* settings pointing at them, never through an image's
entrypoint or its RABBITMQ_DEFAULT_* conventions.
"""

from __future__ import annotations

from typing import Any

from phaseshift.catalog import Queue
from phaseshift.render import components
from phaseshift.render import credentials as cred
from phaseshift.render.encoding import content_hash
from phaseshift.render.pods import (
    container_security,
    empty_dir,
    env_from_pod,
    env_from_secret,
    exec_probe,
    pod_security,
    pod_template,
    resources,
)
from phaseshift.render.scope import Scope
from phaseshift.render.service import port
from phaseshift.render.statefulset import clustered_tier, data_statefulset
from phaseshift.render.workload import ANNOTATION_CONFIG_HASH

COMPONENT = "queue"
SUFFIX = "rabbitmq"
PEERS = "rabbitmq-hl"
CONFIG = "rabbitmq-config"
RABBITMQ_UID = 999  # the rabbitmq user of the official image
METRICS_PORT = 15692  # rabbitmq_prometheus
HOME = "/var/lib/rabbitmq"  # the data volume; Erlang reads $HOME/.erlang.cookie
CONF_DIR = "/etc/rabbitmq"  # an emptyDir the initContainer fills


def host(scope: Scope) -> str:
    return scope.name(SUFFIX)


def _node_host(scope: Scope, ordinal: int) -> str:
    return f"{scope.name(SUFFIX)}-{ordinal}.{scope.name(PEERS)}"


ENABLED_PLUGINS = "[rabbitmq_management,rabbitmq_prometheus].\n"


def rabbitmq_conf(scope: Scope) -> str:
    """The node's configuration but for the default user's password (see _SETUP)."""
    lines = [
        "cluster_formation.peer_discovery_backend = classic_config",
        *(
            f"cluster_formation.classic_config.nodes.{i + 1} = rabbit@{_node_host(scope, i)}"
            for i in range(components.rabbitmq_nodes(scope))
        ),
        f"default_user = {cred.RABBITMQ_USER}",
        "loopback_users.guest = true",
        "queue_leader_locator = balanced",
        # The watermark is a share of this, the container's limit, not of the node's RAM.
        "total_memory_available_override_value = "
        f"{components.memory_limit_bytes(components.size(scope, 'rabbitmq'))}",
        "vm_memory_high_watermark.relative = 0.6",
    ]
    return "\n".join(lines) + "\n"


# The Erlang cookie must be a file only its owner can read; a Secret volume cannot give
# it that owner, so it is installed into the data volume before RabbitMQ starts. The old
# copy is removed first: it is read-only (0400), and the volume outlives the pod.
# rabbitmq.conf holds the default user's password, so it is written here from the
# Secret rather than kept in the ConfigMap.
_SETUP = f"""set -eu
cookie={HOME}/.erlang.cookie
rm -f "$cookie"
install -m 0400 /secret/erlang-cookie "$cookie"
umask 077
cp /config/enabled_plugins {CONF_DIR}/enabled_plugins
{{ cat /config/rabbitmq.conf; printf 'default_pass = %s\\n' "$RABBITMQ_PASSWORD"; }} \\
  > {CONF_DIR}/rabbitmq.conf
"""


def setup_script() -> str:
    return _SETUP


# Quorum queues take their members from the cluster's nodes when they are declared, and
# RabbitMQ 3.10 adds none later: a queue declared before this node joined (the app
# connects as soon as one node answers) would never have a copy here. Once the node
# runs, it adds itself to every quorum queue that lacks it, and again one and five
# minutes later for declarations that raced its join.
_START = """set -eu
grow() {
  until rabbitmq-queues grow "$RABBITMQ_NODENAME" all --errors-only >/dev/null 2>&1; do
    sleep 15
  done
  echo "quorum queues have a member on $RABBITMQ_NODENAME"
  for later in 60 240; do
    sleep "$later"
    rabbitmq-queues grow "$RABBITMQ_NODENAME" all --errors-only || true
  done
}
grow &
exec rabbitmq-server
"""


def start_script() -> str:
    return _START


def _mounts() -> list[dict[str, Any]]:
    return [{"name": "data", "mountPath": HOME}, {"name": "conf", "mountPath": CONF_DIR}]


def _statefulset(scope: Scope) -> dict[str, Any]:
    secret = cred.secret_name(scope)
    check = ["rabbitmq-diagnostics", "-q", "check_port_connectivity"]
    size = components.size(scope, "rabbitmq")
    rabbitmq = {
        "name": "rabbitmq",
        "image": scope.image("rabbitmq"),
        "command": ["sh", "-c", start_script()],
        # RabbitMQ's own settings (rabbitmq-env), so no default of a packaging applies:
        # the data directory, the files the initContainer wrote, and logs on stdout.
        "env": [
            env_from_pod("POD_NAME", "metadata.name"),
            {"name": "HOME", "value": HOME},
            {"name": "RABBITMQ_USE_LONGNAME", "value": "true"},
            {"name": "RABBITMQ_NODENAME", "value": f"rabbit@$(POD_NAME).{scope.name(PEERS)}"},
            {"name": "RABBITMQ_MNESIA_BASE", "value": f"{HOME}/mnesia"},
            {"name": "RABBITMQ_LOG_BASE", "value": f"{HOME}/log"},
            {"name": "RABBITMQ_LOGS", "value": "-"},
            {"name": "RABBITMQ_CONFIG_FILE", "value": f"{CONF_DIR}/rabbitmq.conf"},
            {"name": "RABBITMQ_ENABLED_PLUGINS_FILE", "value": f"{CONF_DIR}/enabled_plugins"},
        ],
        "ports": [
            {"name": "amqp", "containerPort": 5672},
            {"name": "management", "containerPort": 15672},
            {"name": "metrics", "containerPort": METRICS_PORT},
            {"name": "epmd", "containerPort": 4369},
            {"name": "dist", "containerPort": 25672},
        ],
        "readinessProbe": exec_probe(check, period=10),
        "livenessProbe": exec_probe(
            ["rabbitmq-diagnostics", "-q", "status"], period=30, failures=6
        ),
        "resources": resources(size),
        # Erlang and the plugins may write below the install tree (crash dumps, expanded
        # plugins); the root filesystem stays writable for them.
        "securityContext": container_security(read_only_root=False),
        "volumeMounts": _mounts(),
    }
    setup = {
        "name": "setup",
        "image": scope.image("rabbitmq"),
        "command": ["sh", "-c", setup_script()],
        "env": [env_from_secret("RABBITMQ_PASSWORD", secret, cred.RABBITMQ_KEY)],
        # The node's own size: a larger init container would raise the pod's request.
        "resources": resources(size),
        "securityContext": container_security(),
        "volumeMounts": [
            *_mounts(),
            {"name": "config", "mountPath": "/config", "readOnly": True},
            {"name": "secret", "mountPath": "/secret", "readOnly": True},
        ],
    }
    spec = {
        "securityContext": pod_security(RABBITMQ_UID),
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 120,
        "initContainers": [setup],
        "containers": [rabbitmq],
        "volumes": [
            {"name": "config", "configMap": {"name": scope.name(CONFIG)}},
            {
                "name": "secret",
                "secret": {
                    "secretName": secret,
                    "items": [{"key": cred.ERLANG_COOKIE_KEY, "path": "erlang-cookie"}],
                },
            },
            empty_dir("conf"),
        ],
    }
    return data_statefulset(
        scope,
        suffix=SUFFIX,
        component=COMPONENT,
        replicas=components.rabbitmq_nodes(scope),
        service_name=scope.name(PEERS),
        # Nodes that restart together wait for each other; OrderedReady would deadlock.
        pod_management="Parallel",
        template=pod_template(
            scope,
            workload=SUFFIX,
            component=COMPONENT,
            spec=spec,
            metrics_port=METRICS_PORT,
            meshed=False,
            annotations={
                ANNOTATION_CONFIG_HASH: content_hash(rabbitmq_conf(scope), ENABLED_PLUGINS)
            },
        ),
        storage=components.storage(scope, "rabbitmq"),
    )


def objects(scope: Scope) -> list[dict[str, Any]]:
    if scope.catalog.queue is not Queue.RABBITMQ:
        return []
    # Drains take one node at a time, so a majority of the cluster stays up.
    return clustered_tier(
        scope,
        suffix=SUFFIX,
        peers=PEERS,
        component=COMPONENT,
        config_name=CONFIG,
        config={"rabbitmq.conf": rabbitmq_conf(scope), "enabled_plugins": ENABLED_PLUGINS},
        peer_ports=[port("epmd", 4369), port("dist", 25672)],
        client_ports=[port("amqp", 5672), port("management", 15672)],
        statefulset=_statefulset(scope),
    )
