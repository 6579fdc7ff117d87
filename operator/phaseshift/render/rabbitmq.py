"""The job queue from phase 3: a three-node RabbitMQ cluster.

Nodes find each other through classic_config peer discovery (a fixed list of the
StatefulSet's stable DNS names), which needs no access to the Kubernetes API.
"""

from __future__ import annotations

from typing import Any

from phaseshift.catalog import COMPONENT_SIZES, RABBITMQ_NODES, STORAGE
from phaseshift.render import credentials as cred
from phaseshift.render.pods import (
    container_security,
    env_from_pod,
    env_from_secret,
    exec_probe,
    pod_security,
    pod_template,
    resources,
)
from phaseshift.render.scope import Scope
from phaseshift.render.service import port, service
from phaseshift.render.statefulset import data_statefulset

COMPONENT = "queue"
SUFFIX = "rabbitmq"
PEERS = "rabbitmq-hl"
CONFIG = "rabbitmq-config"
RABBITMQ_UID = 999  # the rabbitmq user of the official image
METRICS_PORT = 15692  # rabbitmq_prometheus


def host(scope: Scope) -> str:
    return scope.name(SUFFIX)


def _node_host(scope: Scope, ordinal: int) -> str:
    return f"{scope.name(SUFFIX)}-{ordinal}.{scope.name(PEERS)}"


def _config(scope: Scope) -> dict[str, Any]:
    lines = [
        "cluster_formation.peer_discovery_backend = classic_config",
        *(
            f"cluster_formation.classic_config.nodes.{i + 1} = rabbit@{_node_host(scope, i)}"
            for i in range(RABBITMQ_NODES)
        ),
        f"default_user = {cred.RABBITMQ_USER}",
        "loopback_users.guest = true",
        "queue_leader_locator = balanced",
        "vm_memory_high_watermark.relative = 0.6",
    ]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": scope.metadata(CONFIG, COMPONENT),
        "data": {
            "rabbitmq.conf": "\n".join(lines) + "\n",
            "enabled_plugins": "[rabbitmq_management,rabbitmq_prometheus].\n",
        },
    }


# The Erlang cookie must be a file readable by its owner only; a Secret volume cannot
# give it that owner, so it is copied into the data volume before RabbitMQ starts.
_COPY_COOKIE = "cp /cookie/erlang-cookie /var/lib/rabbitmq/.erlang.cookie && chmod 400 /var/lib/rabbitmq/.erlang.cookie"


def _statefulset(scope: Scope) -> dict[str, Any]:
    secret = cred.secret_name(scope)
    check = ["rabbitmq-diagnostics", "-q", "check_port_connectivity"]
    rabbitmq = {
        "name": "rabbitmq",
        "image": scope.image("rabbitmq"),
        "env": [
            env_from_pod("POD_NAME", "metadata.name"),
            {"name": "RABBITMQ_USE_LONGNAME", "value": "true"},
            {"name": "RABBITMQ_NODENAME", "value": f"rabbit@$(POD_NAME).{scope.name(PEERS)}"},
            env_from_secret("RABBITMQ_DEFAULT_PASS", secret, cred.RABBITMQ_KEY),
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
        "resources": resources(COMPONENT_SIZES["rabbitmq"]),
        # The image writes generated config under /etc/rabbitmq/conf.d and its install tree.
        "securityContext": container_security(read_only_root=False),
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/rabbitmq"},
            {
                "name": "config",
                "mountPath": "/etc/rabbitmq/rabbitmq.conf",
                "subPath": "rabbitmq.conf",
            },
            {
                "name": "config",
                "mountPath": "/etc/rabbitmq/enabled_plugins",
                "subPath": "enabled_plugins",
            },
        ],
    }
    cookie = {
        "name": "erlang-cookie",
        "image": scope.image("rabbitmq"),
        "command": ["sh", "-c", _COPY_COOKIE],
        "resources": resources(COMPONENT_SIZES["job"]),
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/rabbitmq"},
            {"name": "cookie", "mountPath": "/cookie", "readOnly": True},
        ],
    }
    spec = {
        "securityContext": pod_security(RABBITMQ_UID),
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 120,
        "initContainers": [cookie],
        "containers": [rabbitmq],
        "volumes": [
            {"name": "config", "configMap": {"name": scope.name(CONFIG)}},
            {
                "name": "cookie",
                "secret": {
                    "secretName": secret,
                    "items": [{"key": cred.ERLANG_COOKIE_KEY, "path": "erlang-cookie"}],
                },
            },
        ],
    }
    return data_statefulset(
        scope,
        suffix=SUFFIX,
        component=COMPONENT,
        replicas=RABBITMQ_NODES,
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
        ),
        storage=STORAGE["rabbitmq"],
    )


def objects(scope: Scope) -> list[dict[str, Any]]:
    if scope.phase < 3:
        return []
    selector = scope.selector(SUFFIX)
    peer_ports = [port("epmd", 4369), port("dist", 25672)]
    return [
        _config(scope),
        service(scope, PEERS, COMPONENT, selector, peer_ports, headless=True),
        service(
            scope, SUFFIX, COMPONENT, selector, [port("amqp", 5672), port("management", 15672)]
        ),
        _statefulset(scope),
    ]
